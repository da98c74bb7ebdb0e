"""The kernel ladder: one C file per rung in csrc/, and ``matmul`` to run any of them.

Every rung computes ``C = A @ B`` for float32 matrices of any shape and exports the same C
signature (csrc/krypton.h). This module knows, for each rung, which knobs it has, compiles it
through the seam (cached), validates everything in Python before entering C, and turns the
C return code into an exception.

Two kinds of knob:
    code knobs      change the generated code, so they are ``-D`` macros and each value is a
                    separate compiled module: ``isa`` (vector ISA), ``mr``/``nr`` (micro-tile).
    runtime knobs   sizes passed as arguments: ``loop_order``, ``tile_m``/``tile_n``/``tile_k``,
                    ``mc``/``kc``/``nc``; and ``threads`` for the parallel rung.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from krypton import blocking, machine, seam, tuning
from krypton.checks import positive_int

KERNELS = ("naive", "tiled", "simd", "regblock", "packed", "parallel", "small")
"""The rungs of the ladder, slowest first; the last is ``matmul``'s default."""

LOOP_ORDERS = ("ijk", "ikj")

_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class KernelSpec:
    """What the package knows about one rung."""

    name: str
    rung: int
    idea: str
    runtime_knobs: tuple[str, ...]
    code_knobs: tuple[str, ...]
    flags: tuple[str, ...] = ()
    optional_flags: tuple[str, ...] = ()  # passed where the compiler takes them (seam)
    needs_unit_stride_b: bool = False
    threaded: bool = False
    exports: tuple[str, ...] = ()  # C functions of the module besides the kernel (krypton.h)

    @property
    def function(self) -> str:
        return f"kr_sgemm_{self.name}"

    @property
    def knobs(self) -> tuple[str, ...]:
        return self.runtime_knobs + self.code_knobs


_TILES = ("tile_m", "tile_n", "tile_k")
_BLOCKS = ("mc", "kc", "nc")
_SCALAR = ("-fno-tree-vectorize",)  # rungs 1-2 stay scalar: vectors are rung 3's lesson
# gcc's -O3 copies each loop over a run-time stride into a second version for stride 1, to
# vectorize it (-fversion-loops-for-strides). Rungs 5-7 load with explicit vectors and meet
# run-time strides only where they walk C, an operand read in place, or a packer's ragged
# rest, so the copies buy nothing there and only cost compile time.
# Measure: compile a rung (krypton.kernels.compile_source) with and without the flag
# (KRYPTON_CFLAGS=-fversion-loops-for-strides undoes it), then `python -m krypton.bench`.
_NO_STRIDE_COPIES = ("-fno-version-loops-for-strides",)

SPECS: dict[str, KernelSpec] = {
    spec.name: spec for spec in (
        KernelSpec("naive", 1, "the triple loop; loop order", ("loop_order",), (), _SCALAR),
        KernelSpec("tiled", 2, "cache blocking", _TILES, (), _SCALAR),
        KernelSpec("simd", 3, "vector FMAs", _TILES, ("isa",), needs_unit_stride_b=True),
        KernelSpec("regblock", 4, "MR x NR register-blocked micro-kernel", _TILES,
                   ("isa", "mr", "nr"), needs_unit_stride_b=True),
        KernelSpec("packed", 5, "packed panels, the BLIS five loops", _BLOCKS,
                   ("isa", "mr", "nr"), optional_flags=_NO_STRIDE_COPIES),
        KernelSpec("parallel", 6, "threads over the ic and jr loops", _BLOCKS,
                   ("isa", "mr", "nr"), optional_flags=_NO_STRIDE_COPIES, threaded=True,
                   exports=("kr_parallel_threads",)),
        KernelSpec("small", 7, "a plan for small products: in place, dot products", _BLOCKS,
                   ("isa", "mr", "nr"), optional_flags=_NO_STRIDE_COPIES, threaded=True,
                   exports=("kr_small_plan", "kr_small_thresholds", "kr_parallel_threads")),
    )
}

DEFAULT_MICROTILE = machine._IsaColumn("microtile")
"""The default micro-tile (MR, NR) per ISA, as csrc/kr_microtile.h defines it (and explains
it: enough accumulators to cover the FMA latency on every pipe, all in registers)."""


def registers_needed(mr: int, nr: int, isa: str) -> int:
    """Vector registers an ``mr x nr`` micro-kernel needs: accumulators, B vectors, A broadcast."""
    return machine.registers_needed(mr, nr, isa)


def default_knobs(kernel: str, isa: str | None = None, tuned: bool = True,
                  c_shape: tuple[int, int] | None = None, threads: int = 1) -> dict[str, Any]:
    """The knob values ``kernel`` uses when none are given, derived from this machine's caches.

    Tiles (rungs 2-4): a tile_k x tile_n tile of B fills about half of L2, so it stays
    there while tile_m rows of C are computed from it. Blocks (rungs 5-7): the analytical
    model of Low et al. (``krypton.blocking``): kc so that B's kc x NR micro-panel and A's
    streaming MR x kc micro-panels share L1 by ways, mc so that A's mc x kc block fills L2's
    ways beside B's micro-panel, nc so that B's kc x nc block fills L3's; and for a product
    whose C (``c_shape``, rows x columns) is larger than L2, kc at least ``blocking.KC_FAR``.
    Blocks are per thread: ``threads`` threads that share an L1 or L2 each get their share of
    its ways (``machine.cache_sharers``: none while each core has its own and threads <= cores).
    When autotune has saved measured values for this machine, rungs 5-7 use those instead, for
    every shape (pass ``tuned=False`` to see the model's).
    """
    spec = _spec(kernel)
    caches = machine.cache_sizes()
    isa = isa or machine.native_isa()
    knobs: dict[str, Any] = {}
    if "loop_order" in spec.knobs:
        knobs["loop_order"] = "ijk"
    if "tile_m" in spec.knobs:
        tile_n = 256
        tile_k = _clamp(caches.l2 // 2 // (tile_n * 4), 16, 512)
        knobs.update(tile_m=64, tile_n=tile_n, tile_k=tile_k)
    if "mr" in spec.knobs:
        knobs["mr"], knobs["nr"] = DEFAULT_MICROTILE[isa]
    if "isa" in spec.knobs:
        knobs["isa"] = isa
    if "mc" in spec.knobs:
        mr, nr = knobs["mr"], knobs["nr"]
        derived = blocking.for_this_machine(mr, nr, element=4, threads=threads)
        far = c_shape is not None and c_shape[0] * c_shape[1] > c_floats_in_l2()
        knobs.update(mc=derived.mc, kc=derived.kc_far if far else derived.kc, nc=derived.nc)
        if tuned:
            knobs.update(tuning.load_tuned(isa) or {})
    return knobs


def c_floats_in_l2() -> int:
    """How many floats of C this machine's L2 holds: a default product with a larger C takes
    ``blocking.KC_FAR``'s deeper kc (``default_knobs(..., c_shape=)``)."""
    return machine.cache_sizes().l2 // 4


def forget_defaults() -> None:
    """Drop the defaults resolved so far and the kernels compiled with them, and read the
    tuning file again (after autotuning saved new values)."""
    _default_kernel.clear()
    _compile.cache_clear()
    tuning.forget()


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, int(value)))


def _spec(kernel: str) -> KernelSpec:
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a name (str), one of {', '.join(KERNELS)}; got "
                        f"{type(kernel).__name__} {kernel!r}")
    if kernel not in SPECS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return SPECS[kernel]


def kernel_source(kernel: str) -> str:
    """The C source of a rung, as compiled (csrc/<kernel>.c)."""
    return (seam.CSRC / f"{_spec(kernel).name}.c").read_text()


@functools.lru_cache(maxsize=None)
def _fastcall() -> Callable[..., np.ndarray | None] | None:
    """The short way into a rung (csrc/kr_fastcall.c), compiled once; None, with a warning, if
    it cannot be built here: every product then takes ``Kernel``'s full path, a microsecond or
    two slower and otherwise the same."""
    try:
        return seam.compile_extension((seam.CSRC / "kr_fastcall.c").read_text(),
                                      "fastcall").fastcall
    except (seam.CompileError, ImportError, OSError) as error:
        warnings.warn(f"krypton: the short way into the kernels (csrc/kr_fastcall.c) could "
                      f"not be built, so every product takes the full path (slower on small "
                      f"matrices, the same results): {error}", RuntimeWarning, stacklevel=3)
        return None


class Kernel:
    """A compiled rung (or a learner's own C with a rung's signature), callable like ``matmul``.

    ``Kernel(a, b, threads=None, **runtime_knobs)`` validates its inputs, runs the C function
    with the GIL released, and returns a new float32 (M, N) array.
    """

    def __init__(self, spec: KernelSpec, module: seam.CompiledModule, function: str,
                 code_knobs: Mapping[str, Any]):
        self.spec = spec
        self.module = module
        self.function_name = function
        self.code_knobs = dict(code_knobs)
        self._function = getattr(module.lib, function)
        self._ffi = module.ffi
        self._default_knobs: dict[tuple[int, bool], tuple[dict[str, int], Any]] = {}
        self._explicit_knobs: dict[tuple, tuple[dict[str, int], Any]] = {}
        # The short path of __call__, per thread count asked: for None (all cores) the core
        # count the defaults were resolved for (else None: a count given is kept), the
        # fastcall function, and the address and C struct of the defaults for a C within L2
        # (the near kc), as the full path last resolved them.
        self._fast: dict[int | None, tuple[int | None, Any, int, Any]] = {}
        # A C larger than this takes the deeper kc of blocking.KC_FAR (rungs with blocks).
        self._near_c_floats = c_floats_in_l2() if "kc" in spec.runtime_knobs else sys.maxsize
        # What fastcall needs to know of this rung: its C function, the largest C the short
        # path may take, and whether B's columns must be contiguous.
        address = int(self._ffi.cast("uintptr_t", self._ffi.addressof(module.lib, function)))
        self._fastcall_kernel = (address, self._near_c_floats, spec.needs_unit_stride_b)

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.code_knobs.items())
        return f"<Kernel {self.spec.name} ({self.function_name}{', ' if knobs else ''}{knobs})>"

    def __call__(self, a: np.ndarray, b: np.ndarray, threads: int | None = None,
                 **knobs: Any) -> np.ndarray:
        # Training calls this thousands of times a second on small matrices, where each
        # microsecond of Python shows: the output layer's products (128 x 10 x 256) compute
        # for a few microseconds. So the common case, no knobs and a thread count seen before,
        # goes to C at once (csrc/kr_fastcall.c: it checks the arrays, allocates C and calls
        # the rung with the knobs the full path resolved, or declines and returns None).
        # Anything else takes the full path, with its checks and messages.
        if not knobs and (threads is None or type(threads) is int):
            fast = self._fast.get(threads)
            if fast is not None and (fast[0] is None or fast[0] == machine.cpu_count()):
                c = fast[1](self._fastcall_kernel, fast[2], ALIGN_C_FLOATS, a, b)
                if c is not None:
                    return c
        return self._call(a, b, threads, knobs)

    def _call(self, a: np.ndarray, b: np.ndarray, threads: int | None,
              knobs: dict[str, Any]) -> np.ndarray:
        """The full path of ``__call__``: every check, any strides, knobs, empty shapes."""
        if not (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype is _FLOAT32
                and b.dtype is _FLOAT32 and a.ndim == 2 and b.ndim == 2
                and a.shape[1] == b.shape[0]):
            _check_operands(a, b)
        m, k = a.shape
        n = b.shape[1]
        if knobs:  # a sweep: the same few sets of knobs again and again
            runtime, c_knobs = self._explicit(threads, knobs)
        else:  # the common case in training: defaults, resolved once per thread count (and
            # per side of the line between a C that fits in L2 and a larger one)
            runtime, c_knobs = self._defaults(threads, (m, n))
            if (threads is None or type(threads) is int) and m * n <= self._near_c_floats:
                self._remember_short_path(threads, c_knobs)
        c = _empty_c(m, n)
        if m == 0 or n == 0:
            return c
        if k == 0:  # an empty sum is 0 (and the strides of empty arrays mean nothing)
            c.fill(0.0)
            return c
        if self.spec.needs_unit_stride_b and n > 1 and b.strides[1] != 4:
            b = np.ascontiguousarray(b)  # rungs 3-4 load rows of B as vectors
        ffi = self._ffi
        a_pointer, rsa, csa = _operand(ffi, a)
        b_pointer, rsb, csb = _operand(ffi, b)
        status = self._function(m, n, k, a_pointer, rsa, csa, b_pointer, rsb, csb,
                                ffi.from_buffer("float[]", c), n, c_knobs)
        if status != 0:
            _raise_for_status(self.module.lib, status, self.spec.name, m, n, k, runtime)
        return c

    def _remember_short_path(self, threads: int | None, c_knobs: Any) -> None:
        """Keep what ``__call__``'s short path needs for this thread count (unless it has it):
        for None the core count, the fastcall function, and the defaults' address."""
        count = machine.cpu_count() if threads is None and self.spec.threaded else None
        entry = self._fast.get(threads)
        if entry is not None and entry[0] == count and entry[3] is c_knobs:
            return
        fastcall = _fastcall()
        if fastcall is not None:
            address = int(self._ffi.cast("uintptr_t", c_knobs))
            self._fast[threads] = count, fastcall, address, c_knobs

    def _explicit(self, threads: int | None, knobs: Mapping[str, Any]) -> tuple[dict[str, int], Any]:
        """Explicit knobs and the C struct that carries them, checked and built once per
        distinct set: resolving them fills the rest from the defaults and the tuning file, which
        costs more than a small product (measure: time ``kernel(a, b, kc=64)`` on 1 x 1
        matrices with and without this cache)."""
        if threads is None:  # all cores, asked every call, as for the defaults
            threads = machine.cpu_count() if self.spec.threaded else 1
        try:
            # the types too: True == 1 as a key, but a knob of True is refused and 1 is not
            key = (threads, type(threads), tuple(sorted((k, type(v), v) for k, v in knobs.items())))
            cached = self._explicit_knobs.get(key)
        except TypeError:  # an unhashable value: the checks below say what is wrong with it
            key, cached = None, None
        if cached is None:
            resolved = _resolve_threads(self.spec, threads)
            runtime = _resolve_runtime_knobs(self.spec, self.code_knobs, knobs, threads=resolved)
            cached = runtime, self._ffi.new("kr_knobs *", dict(runtime, threads=resolved))
            if key is not None:
                if len(self._explicit_knobs) >= 256:  # a long sweep: keep the memory bounded
                    self._explicit_knobs.clear()
                self._explicit_knobs[key] = cached
        return cached

    def _defaults(self, threads: int | None,
                  c_shape: tuple[int, int]) -> tuple[dict[str, int], Any]:
        """The default runtime knobs for a thread count and a C of ``c_shape``, and the C
        struct that carries them: checked and built once per count and per side of
        ``c_floats_in_l2`` (the only way the shape changes them). Read-only for C, so one struct
        can serve concurrent calls from many threads."""
        if threads is None:  # all cores, asked every call: the process's affinity may change
            threads = machine.cpu_count() if self.spec.threaded else 1
        far = c_shape[0] * c_shape[1] > self._near_c_floats
        cached = self._default_knobs.get((threads, far)) if type(threads) is int else None
        if cached is None:
            resolved = _resolve_threads(self.spec, threads)  # raises for a bad count
            runtime = _resolve_runtime_knobs(self.spec, self.code_knobs, {}, c_shape, resolved)
            cached = runtime, self._ffi.new("kr_knobs *", dict(runtime, threads=resolved))
            self._default_knobs[resolved, far] = cached
        return cached


ALIGN_C_FLOATS = 1 << 18
"""A C of at least this many floats (1 MiB) starts on a cache line of its own."""
_MAX_BYTES = np.iinfo(np.intp).max


def _empty_c(m: int, n: int) -> np.ndarray:
    """A new (m, n) float32 array for C. NumPy starts its arrays 16 bytes into a 64-byte cache
    line, so each row of a micro-tile of a large C straddles one line more than it fills, and
    every kc block loads and stores that line too. A large C is carved out of a slightly larger
    buffer at the first whole line; a small one, which stays in cache, is left as NumPy makes
    it (finding the offset costs more than allocating a small array). Measure: time a large product, e.g.
    2048 x 2048, interleaved with ``kernels.ALIGN_C_FLOATS`` set above and below its size."""
    if m * n < ALIGN_C_FLOATS or (m * n + 16) * 4 > _MAX_BYTES:
        # (a C past any address space gets NumPy's own error). The dtype goes by position, not
        # as dtype=: NumPy parses the keyword more slowly, 50-200 ns of a call of a few µs.
        return np.empty((m, n), _FLOAT32)
    return aligned_empty((m, n))


def aligned_empty(shape: int | tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data start on a 64-byte cache line (NumPy promises 16
    bytes: a fresh large array usually starts 16 bytes past a line, a small one anywhere on 16).
    Carved out of a buffer one line larger, at its first whole line, so that no vector load from
    its first row straddles two lines."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = np.empty(nbytes + 64, dtype=np.uint8)
    start = -buffer.__array_interface__["data"][0] % 64
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def _operand(ffi: Any, x: np.ndarray) -> tuple[Any, int, int]:
    """What C is handed for the matrix x: a pointer to its first element and its row and column
    strides in elements. Transposes and slices are read in place; only a view that C cannot
    index with whole-element strides from an aligned pointer (a buffer at an odd byte offset,
    say) is copied first (ascontiguousarray would keep it misaligned). from_buffer, the fast way
    to a pointer, takes C-contiguous arrays only; a transpose (F-contiguous, like w.T) starts
    where its C-contiguous transpose does; any other view goes by its address."""
    flags = x.flags
    if not flags.aligned:
        x = x.copy()
        flags = x.flags
    if flags.c_contiguous:
        return ffi.from_buffer("float[]", x), x.shape[1], 1
    if flags.f_contiguous:
        return ffi.from_buffer("float[]", x.T), 1, x.shape[0]
    rows, cols = x.strides
    return ffi.cast("float *", x.ctypes.data), rows // 4, cols // 4


def _check_operands(a: Any, b: Any) -> None:
    for label, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"{label} must be a NumPy array, got {type(x).__name__}: "
                f"pass np.asarray({label}, dtype=np.float32)")
        if isinstance(x, np.ma.MaskedArray):  # the kernels would read the masked values
            raise TypeError(
                f"{label} is a masked array, and the kernels do not know masks: pass "
                f"{label}.filled(0) to treat masked entries as 0")
        if x.dtype != np.float32:
            raise TypeError(
                f"{label} must be float32, got {x.dtype}: pass {label}.astype(np.float32)")
        if x.ndim != 2:
            raise ValueError(
                f"{label} must be 2-D ({'M, K' if label == 'a' else 'K, N'}), got "
                f"{x.ndim}-D shape {x.shape}: reshape it, e.g. {label}.reshape(1, -1)")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"shapes {a.shape} and {b.shape} do not multiply: a is (M, K) = {a.shape}, so b "
            f"must be (K, N) with K = {a.shape[1]}, but b.shape[0] = {b.shape[0]}")


def _resolve_runtime_knobs(spec: KernelSpec, code_knobs: Mapping[str, Any],
                           knobs: Mapping[str, Any], c_shape: tuple[int, int] | None = None,
                           threads: int = 1) -> dict[str, int]:
    unknown = sorted(set(knobs) - set(spec.runtime_knobs))
    if unknown:
        hint = (" (code knobs are given when the kernel is compiled, as they are for "
                "krypton.matmul)" if set(unknown) & set(spec.code_knobs) else "")
        raise ValueError(
            f"kernel {spec.name!r} has no knob {', '.join(map(repr, unknown))}{hint}; its knobs "
            f"are {', '.join(spec.runtime_knobs) or 'none'}")
    values = {k: v for k, v in default_knobs(spec.name, code_knobs.get("isa"), c_shape=c_shape,
                                             threads=threads).items()
              if k in spec.runtime_knobs}
    values.update(knobs)
    resolved: dict[str, int] = {}
    for name, value in values.items():
        if name == "loop_order":
            if value not in LOOP_ORDERS:
                raise ValueError(f"loop_order must be one of {LOOP_ORDERS}, got {value!r}")
            resolved[name] = LOOP_ORDERS.index(value)
        else:
            resolved[name] = positive_int(name, value)
    return resolved


def _resolve_threads(spec: KernelSpec, threads: Any) -> int:
    if threads is None:
        return machine.cpu_count() if spec.threaded else 1
    threads = positive_int("threads", threads)
    if not spec.threaded and threads != 1:
        raise ValueError(
            f"kernel {spec.name!r} runs on one thread; threads={threads} applies only to "
            f"{' and '.join(repr(s.name) for s in SPECS.values() if s.threaded)} (pass "
            f"kernel={KERNELS[-1]!r}, or leave threads unset)")
    if threads > 1024:
        raise ValueError(f"threads={threads} is more than 1024; pass at most the core count "
                         f"({machine.cpu_count()} here)")
    return threads


_ERROR_CODES = ("KR_ENOMEM", "KR_EINVAL")
"""The names of krypton.h's return codes; their values are read from the compiled module."""


def _raise_for_status(lib: Any, status: int, kernel: str, m: int, n: int, k: int,
                      knobs: Mapping[str, int]) -> None:
    name = next((code for code in _ERROR_CODES if getattr(lib, code) == status),
                f"error {status}")
    detail = ", ".join(f"{key}={value}" for key, value in knobs.items())
    if name == "KR_ENOMEM":
        raise MemoryError(f"kernel {kernel!r} could not allocate its packing buffers for "
                          f"M={m}, N={n}, K={k} ({detail}); try smaller mc/kc/nc")
    raise RuntimeError(f"kernel {kernel!r} returned {name} for M={m}, N={n}, K={k} ({detail})")


def _resolve_code_knobs(spec: KernelSpec, knobs: Mapping[str, Any]) -> dict[str, Any]:
    isa = knobs.get("isa")
    if "isa" in spec.code_knobs:
        isa = isa or machine.native_isa()
        if isa not in machine.available_isas():
            raise ValueError(f"isa {isa!r} is not available on this machine; choose one of "
                             f"{', '.join(machine.available_isas())}")
    resolved: dict[str, Any] = {"isa": isa} if "isa" in spec.code_knobs else {}
    if "mr" in spec.code_knobs:
        tuned = tuning.load_tuned(isa) if "mc" in spec.knobs else None
        default_mr, default_nr = (tuned["mr"], tuned["nr"]) if tuned else DEFAULT_MICROTILE[isa]
        mr = positive_int("mr", knobs.get("mr", default_mr))
        nr = positive_int("nr", knobs.get("nr", default_nr))
        width = machine.VECTOR_WIDTH[isa]
        if nr % width:
            raise ValueError(f"nr must be a multiple of the {isa} vector width {width}, got "
                             f"nr={nr}; try nr={max(width, nr // width * width)}")
        needed, available = registers_needed(mr, nr, isa), machine.VECTOR_REGISTERS[isa]
        if needed > available:
            raise ValueError(
                f"an mr x nr = {mr} x {nr} micro-tile needs {needed} vector registers "
                f"({mr} x {nr // width} accumulators + {nr // width} for B + 1 for A) but "
                f"{isa} has {available}; choose a smaller mr or nr")
        resolved.update(mr=mr, nr=nr)
    return resolved


@functools.lru_cache(maxsize=None)
def _compile(name: str, code_items: tuple[tuple[str, Any], ...]) -> Kernel:
    spec = SPECS[name]
    code = dict(code_items)
    macros, flags = _macros_and_flags(spec, code)
    module = seam.compile_c(kernel_source(name), seam.cdef_for([spec.function, *spec.exports]),
                            name=name, macros=macros, flags=flags)
    return Kernel(spec, module, spec.function, code)


def _macros_and_flags(spec: KernelSpec, code: Mapping[str, Any]) -> tuple[dict, tuple]:
    macros: dict[str, Any] = {}
    flags = spec.flags + seam.supported_flags(spec.optional_flags)
    if "isa" in code:
        macros["KR_ISA"] = machine.ISA_MACROS[code["isa"]]
        flags = flags + machine.ISA_FLAGS[code["isa"]]
    if "mr" in code:
        macros.update(KR_MR=code["mr"], KR_NR=code["nr"])
    return macros, flags


def get_kernel(kernel: str = KERNELS[-1], **code_knobs: Any) -> Kernel:
    """Compile (or load from the cache) one rung with the given code knobs.

    Args:
        kernel: a name from ``KERNELS``.
        **code_knobs: ``isa`` ("avx512", "avx2", "neon", "scalar"), ``mr``, ``nr``, for the
            rungs that have them.

    Returns:
        A ``Kernel``; call it as ``kernel(a, b, threads=None, **runtime_knobs)``.
    """
    spec = _spec(kernel)
    unknown = sorted(set(code_knobs) - set(spec.code_knobs))
    if unknown:
        raise ValueError(f"kernel {kernel!r} has no code knob {', '.join(map(repr, unknown))}; "
                         f"its code knobs are {', '.join(spec.code_knobs) or 'none'}")
    code = _resolve_code_knobs(spec, code_knobs)
    return _compile(kernel, tuple(sorted(code.items())))


def compile_source(source: str, function: str, like: str = "packed", *, name: str = "custom",
                   exports: tuple[str, ...] = (), **code_knobs: Any) -> Kernel:
    """Compile a learner's own C kernel through the same seam, callable like ``matmul``.

    Args:
        source: C source defining ``function`` with the signature of csrc/krypton.h; it may
            ``#include "krypton.h"``, ``"kr_simd.h"`` or any file of csrc/.
        function: the name of the function to call, e.g. ``"kr_sgemm_mine"``.
        like: the rung whose knobs, stride needs and threading the new kernel shares.
        name: a short identifier for the compiled module.
        exports: other functions of csrc/krypton.h the source defines, to call through
            ``kernel.module.lib`` (e.g. ``("kr_small_plan",)`` for a variant of small.c).
        **code_knobs: ``isa``/``mr``/``nr`` as for ``like``; passed as ``-D`` macros.

    Raises:
        CompileError: with the compiler's own message, when the source does not compile.
    """
    spec = _spec(like)
    code = _resolve_code_knobs(spec, code_knobs)
    macros, flags = _macros_and_flags(spec, code)
    if not isinstance(source, str):
        raise TypeError(f"source must be C code as a str, got {type(source).__name__}"
                        + (": decode it, source.decode()" if isinstance(source, bytes) else ""))
    if not isinstance(function, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", function):
        raise ValueError(f"function must be a C identifier, got {function!r}")
    # The cdef is the ladder's own signature under the learner's function name.
    cdef = seam.cdef_for(["kr_sgemm_naive", *exports]).replace("kr_sgemm_naive(", f"{function}(")
    try:
        module = seam.compile_c(source, cdef, name=name, macros=macros, flags=flags)
    except ImportError as error:  # it compiled, but the loader finds no such function
        if not re.search(r"undefined symbol|symbol not found", str(error)):  # Linux, macOS
            raise
        raise ValueError(f"the source does not define the function {function!r} (it compiled, "
                         "but loading it found the symbol undefined); define it with the "
                         "signature of csrc/krypton.h") from None
    return Kernel(spec, module, function, code)


def matmul(a: np.ndarray, b: np.ndarray, kernel: str = KERNELS[-1], threads: int | None = None,
           **knobs: Any) -> np.ndarray:
    """``a @ b`` computed by one rung of the kernel ladder.

    Args:
        a: (M, K) float32 array, any strides (transposed views and slices are read in place).
        b: (K, N) float32 array, any strides.
        kernel: a name from ``KERNELS``; default the top rung, ``"small"``.
        threads: threads for ``"parallel"`` and ``"small"`` (default: all cores); the other
            rungs run on one.
        **knobs: the rung's knobs, e.g. ``tile_m=64`` or ``mc=240, kc=256`` or ``isa="avx2"``.
            ``krypton.kernels.default_knobs(kernel)`` shows them with their defaults.

    Returns:
        A new C-contiguous float32 array of shape (M, N).

    Raises:
        TypeError: an operand is not a float32 NumPy array.
        ValueError: wrong ndim, shapes that do not multiply, an unknown kernel or knob, or a
            knob value the kernel cannot use.
    """
    if not knobs and type(kernel) is str:  # resolved before: the kernel itself, kept
        compiled = _default_kernel.get(kernel)
        if compiled is not None:
            return compiled(a, b, threads)
    spec = _spec(kernel)
    _check_operands(a, b)
    code = {k: v for k, v in knobs.items() if k in spec.code_knobs}
    runtime = {k: v for k, v in knobs.items() if k not in spec.code_knobs}
    compiled = default_kernel(kernel) if not code else get_kernel(kernel, **code)
    return compiled(a, b, threads=threads, **runtime)


def default_kernel(kernel: str) -> Kernel:
    """``get_kernel(kernel)`` with the default code knobs, resolved once and kept (until
    ``forget_defaults``): what ``matmul`` and the autograd engine's products call."""
    compiled = _default_kernel.get(kernel)
    if compiled is None:
        compiled = _default_kernel[kernel] = get_kernel(kernel)
    return compiled


_default_kernel: dict[str, Kernel] = {}
"""Each rung compiled with its default code knobs, once ``matmul`` has resolved them."""


@dataclass(frozen=True)
class SmallPlan:
    """What rung 7 does for one product (csrc/krypton.h, ``kr_plan``), as C decides it."""

    declined: bool    # nothing of rung 7's own: rung 6's loops compute it as they are
    dot: bool         # few columns: dot products along k
    transposed: bool  # computed as C^T = B^T A^T
    a_in_place: bool  # A (B^T if transposed) read where it is
    b_in_place: bool  # B (A^T if transposed) read where it is, whole panels
    threads: int      # threads it runs on


def small_plan(m: int, n: int, k: int, a_strides: tuple[int, int] | None = None,
               b_strides: tuple[int, int] | None = None, threads: int | None = None,
               **knobs: Any) -> SmallPlan:
    """Ask rung 7's C (``kr_small_plan``) what it would do for an (m, k) @ (k, n) product.

    Args:
        m, n, k: the shape.
        a_strides, b_strides: (row, column) strides in elements; default row-major
            (``(k, 1)`` and ``(n, 1)``); ``(1, m)`` is a transposed A such as ``x.T``.
        threads: as for ``matmul`` (default: all cores).
        **knobs: code knobs (``isa``, ``mr``, ``nr``) and ``nc``, as for ``matmul``.
    """
    code = {key: value for key, value in knobs.items() if key in SPECS["small"].code_knobs}
    runtime = {key: value for key, value in knobs.items() if key not in code}
    kernel = get_kernel("small", **code)
    for name, value in (("m", m), ("n", n), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    rsa, csa = a_strides or (k, 1)
    rsb, csb = b_strides or (n, 1)
    resolved = _resolve_threads(kernel.spec, threads)
    c_knobs = kernel._ffi.new("kr_knobs *", dict(_resolve_runtime_knobs(
        kernel.spec, kernel.code_knobs, runtime, threads=resolved), threads=resolved))
    plan = kernel._ffi.new("kr_plan *")
    kernel.module.lib.kr_small_plan(m, n, k, rsa, csa, rsb, csb, c_knobs, plan)
    return SmallPlan(bool(plan.declined), bool(plan.dot), bool(plan.transposed),
                     bool(plan.a_in_place), bool(plan.b_in_place), int(plan.threads))


def small_thresholds(**code_knobs: Any) -> dict[str, int]:
    """Rung 7's thresholds as compiled (``kr_small_limits`` in csrc/krypton.h)."""
    kernel = get_kernel("small", **code_knobs)
    limits = kernel._ffi.new("kr_small_limits *")
    kernel.module.lib.kr_small_thresholds(limits)
    return {name: int(getattr(limits, name)) for name, _ in kernel._ffi.typeof(
        "kr_small_limits").fields}
