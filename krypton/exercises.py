"""Run a learner's answer to an exercise and say clearly what is right or wrong.

The checkers, one per kind of exercise in the course:

- ``check_backward(op_name, learner_fn)``: the backward of ``add``, ``mul`` or ``matmul``
  written micrograd-style, as a function ``learner_fn(a, b, out)`` that adds (``+=``) into
  ``a.grad`` and ``b.grad`` from ``out.grad``. It is compared with krypton's engine and with
  central finite differences, in float64, on fresh and on already-filled gradients (so a
  ``=`` where ``+=`` belongs shows) and with an input used twice (``x * x``).
- ``check_kernel(c_source, function, like="packed")``: a learner's C kernel with the signature
  of csrc/krypton.h, compiled through ``krypton.kernels.compile_source`` and compared with
  NumPy in float64 on awkward shapes: empty, 1, primes, transposed inputs.
- ``check_edge_kernel(c_source)`` (notebook 04): rung 4 with the right edge of each MR-row
  block computed by the learner's own edge micro-kernel, checked on every edge width.
- ``check_kc(learner_fn)`` (notebook 05): kc from L1 size and ways, as ``krypton.blocking``.
- ``check_prefetch_off(c_source)`` (notebook 05): rung 5 built without the prefetch of C: right,
  and with no prefetch instruction left in its machine code.
- ``check_thread_count(learner_fn)`` (notebook 06): rung 6's rule for small products, as the C.
- ``check_columns_only(c_source)`` (notebook 06): rung 6 with a thread grid of columns only:
  right on several threads, and its ``kr_thread_grid`` asked for the grid it chooses.

All return a ``Verdict``: true when every case passed, printed as one line per case.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from krypton import blocking, kernels, machine, seam
from krypton.autograd import Tensor
from krypton.kernels import compile_source, get_kernel

BACKWARD_OPS = ("add", "mul", "matmul")
FINITE_DIFFERENCE_STEP = 1e-6
GRADIENT_TOLERANCE = 1e-7
# (M, N, K) for check_kernel: empty products, single rows and columns, primes that leave a
# remainder for every block size, and one shape larger than a register tile in every direction.
KERNEL_SHAPES = ((0, 5, 3), (4, 0, 3), (3, 4, 0), (1, 1, 1), (1, 7, 5), (7, 1, 5), (5, 7, 1),
                 (13, 17, 11), (31, 37, 29), (64, 61, 67))


@dataclass
class Verdict:
    """What a checker found: ``ok`` when every case passed, ``lines`` one per case."""

    what: str
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"WRONG  {line}")

    def passed(self, line: str) -> None:
        self.lines.append(f"ok     {line}")

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join([self._head(), *(f"  {line}" for line in self.lines)])

    def summary(self, shown: int = 5) -> str:
        """The verdict's first line, and only its first ``shown`` wrong cases (for a notebook)."""
        wrong = [line for line in self.lines if line.startswith("WRONG")]
        more = [f"  ... and {len(wrong) - shown} more wrong"] if len(wrong) > shown else []
        return "\n".join([self._head(), *(f"  {line}" for line in wrong[:shown]), *more])

    def _head(self) -> str:
        return f"{self.what}: " + ("all cases right" if self.ok else "not right yet")

    __repr__ = __str__


# ---------------------------------------------------------------------------- backward

def _forward(op_name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return {"add": np.add, "mul": np.multiply, "matmul": np.matmul}[op_name](a, b)


def _engine_gradients(op_name: str, a: np.ndarray, b: np.ndarray, g: np.ndarray,
                      same_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """d(sum(g * op(a, b)))/da and /db from krypton's engine (b is a when same_input)."""
    ta = Tensor(a.copy(), requires_grad=True, dtype=np.float64)
    tb = ta if same_input else Tensor(b.copy(), requires_grad=True, dtype=np.float64)
    out = {"add": lambda: ta + tb, "mul": lambda: ta * tb, "matmul": lambda: ta @ tb}[op_name]()
    out.backward(g)
    return ta.grad.numpy(), (ta if same_input else tb).grad.numpy()


def _finite_difference(op_name: str, a: np.ndarray, b: np.ndarray, g: np.ndarray,
                       same_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of sum(g * op(a, b)), one element at a time."""
    def weighted(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.sum(g * _forward(op_name, x, x if same_input else y)))

    h = FINITE_DIFFERENCE_STEP
    grads = []
    for which in (0, 1):
        value = (a, b)[which]
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = [a.copy(), b.copy()], [a.copy(), b.copy()]
            plus[which][index] += h
            minus[which][index] -= h
            numeric[index] = (weighted(*plus) - weighted(*minus)) / (2 * h)
        grads.append(numeric)
    if same_input:  # one input used twice: its gradient is the sum of both uses
        return grads[0] + grads[1], grads[0] + grads[1]
    return grads[0], grads[1]


def _backward_cases(op_name: str, rng: np.random.Generator):
    """(description, a, b, same_input, filled) for each case check_backward runs."""
    if op_name == "matmul":
        shapes = [((3, 4), (4, 2)), ((1, 5), (5, 1)), ((2, 2), (2, 2))]
    else:
        shapes = [((3, 4), (3, 4)), ((1, 1), (1, 1))]
    for a_shape, b_shape in shapes:
        a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
        yield f"a {a_shape}, b {b_shape}, fresh gradients", a, b, False, False
    a, b = rng.standard_normal(shapes[0][0]), rng.standard_normal(shapes[0][1])
    yield "gradients already holding values (+= adds to them)", a, b, False, True
    square = rng.standard_normal((3, 3))
    yield "the same input twice (x op x): both uses add up", square, square, True, False


def _describe_difference(name: str, found: np.ndarray, expected: np.ndarray) -> str:
    if found.shape != expected.shape:
        return f"{name} has shape {found.shape}, expected {expected.shape}"
    if np.allclose(found, -expected, atol=GRADIENT_TOLERANCE) and np.abs(expected).max() > 0:
        return f"{name} has the wrong sign"
    if expected.ndim == 2 and found.shape == expected.T.shape \
            and np.allclose(found, expected.T, atol=GRADIENT_TOLERANCE):
        return f"{name} is the transpose of the right gradient"
    return f"{name} is off by up to {np.abs(found - expected).max():.2e}"


def check_backward(op_name: str, learner_fn: Callable[..., None], seed: int = 0) -> Verdict:
    """Check a learner's backward of ``add``, ``mul`` or ``matmul``.

    Args:
        op_name: "add", "mul" or "matmul" (out = a + b, a * b or a @ b, same shapes for the
            element-wise two).
        learner_fn: ``learner_fn(a, b, out)``, where each argument has ``.data`` and ``.grad``
            (float64 arrays); it must add the gradient of the loss with respect to ``a`` and
            ``b`` into ``a.grad`` and ``b.grad``, given ``out.grad``.
        seed: seed of the random inputs.

    Returns:
        A ``Verdict``, true when every case matches both krypton's engine and central
        finite differences within 1e-7; a placeholder that raises ``NotImplementedError``
        gives a verdict saying "not done yet".
    """
    if op_name not in BACKWARD_OPS:
        raise ValueError(f"op_name must be one of {', '.join(BACKWARD_OPS)}, got {op_name!r}")
    if not callable(learner_fn):
        raise TypeError(f"learner_fn must be a function learner_fn(a, b, out), got "
                        f"{type(learner_fn).__name__}")
    verdict = Verdict(f"backward of {op_name} ({getattr(learner_fn, '__name__', 'your answer')})")
    rng = np.random.default_rng(seed)
    for description, a, b, same_input, filled in _backward_cases(op_name, rng):
        out_data = _forward(op_name, a, b)
        g = rng.standard_normal(out_data.shape)
        start_a = rng.standard_normal(a.shape) if filled else np.zeros_like(a)
        start_b = rng.standard_normal(b.shape) if filled else np.zeros_like(b)
        node_a = SimpleNamespace(data=a.copy(), grad=start_a.copy())
        node_b = node_a if same_input else SimpleNamespace(data=b.copy(), grad=start_b.copy())
        out = SimpleNamespace(data=out_data, grad=g.copy())
        try:
            learner_fn(node_a, node_b, out)
        except NotImplementedError as error:
            verdict.ok = False
            verdict.lines = [f"not done yet: {getattr(learner_fn, '__name__', 'your answer')} "
                             f"raises NotImplementedError ({error}); replace the placeholder "
                             "with your code and run the check again"]
            return verdict
        except Exception as error:  # the learner's code: any failure is reported, not raised
            verdict.fail(f"{description}: raised {type(error).__name__}: {error}")
            continue
        engine = _engine_gradients(op_name, a, b, g, same_input)
        numeric = _finite_difference(op_name, a, b, g, same_input)
        problems = []
        for name, node, start, reference, estimate in (
                ("a.grad", node_a, start_a, engine[0], numeric[0]),
                ("b.grad", node_b, start_b, engine[1], numeric[1])):
            if same_input and name == "b.grad":
                continue
            found = np.asarray(node.grad, dtype=np.float64) - start
            if found.shape != reference.shape \
                    or not np.allclose(found, reference, atol=GRADIENT_TOLERANCE):
                hint = " (did you assign with = instead of adding with +=?)" \
                    if filled and found.shape == reference.shape \
                    and np.allclose(found + start, reference, atol=GRADIENT_TOLERANCE) else ""
                problems.append(_describe_difference(name, found, reference) + hint)
            elif not np.allclose(reference, estimate, atol=1e-6):
                problems.append(f"{name} matches the engine but not finite differences: "
                                "tell the course's maintainers")
        if problems:
            verdict.fail(f"{description}: " + "; ".join(problems))
        else:
            verdict.passed(f"{description}: matches krypton's engine and finite differences")
    return verdict


# ---------------------------------------------------------------------------- kernels

def _kernel_operands(m: int, n: int, k: int, transposed: bool, rng: np.random.Generator):
    if transposed:  # views with swapped strides, as the backward pass passes them
        return (rng.standard_normal((k, m)).astype(np.float32).T,
                rng.standard_normal((n, k)).astype(np.float32).T)
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((k, n)).astype(np.float32))


def check_kernel(c_source: str, function: str, like: str = "packed", seed: int = 0,
                 shapes: Sequence[tuple[int, int, int]] = KERNEL_SHAPES,
                 threads: Sequence[int] = (1,), **code_knobs) -> Verdict:
    """Compile a learner's C kernel and check it against NumPy float64 on awkward shapes.

    Args:
        c_source: C source defining ``function`` with the signature of csrc/krypton.h.
        function: the name of the function, e.g. ``"kr_sgemm_mine"``.
        like: the rung whose flags, knobs and stride needs the kernel shares.
        seed: seed of the random inputs.
        shapes: the (M, N, K) to try; by default empty, single, prime and larger shapes.
        threads: the thread counts each shape runs on, for a threaded ``like``.
        **code_knobs: ``isa``/``mr``/``nr``, as for ``krypton.compile_source``.

    Returns:
        A ``Verdict``, true when every shape, plain and transposed, is within float32
        rounding of the float64 product; a source that does not compile gives a verdict
        carrying the compiler's message.
    """
    verdict = Verdict(f"kernel {function} (compiled like {like!r})")
    try:
        kernel = compile_source(c_source, function, like=like, name=f"exercise_{function}",
                                **code_knobs)
    except (seam.CompileError, ValueError) as error:
        verdict.fail(f"does not compile or load: {error}")
        return verdict
    rng = np.random.default_rng(seed)
    thread_counts = tuple(threads) if kernel.spec.threaded else (1,)
    for (m, n, k), transposed, count in itertools.product(shapes, (False, True), thread_counts):
        a, b = _kernel_operands(m, n, k, transposed, rng)
        description = (f"M={m} N={n} K={k}" + (", A and B transposed views" if transposed
                                               else "")
                       + (f", {count} threads" if len(thread_counts) > 1 else ""))
        try:
            found = kernel(a, b, threads=count) if kernel.spec.threaded else kernel(a, b)
        except Exception as error:  # the learner's kernel: report, do not raise
            verdict.fail(f"{description}: raised {type(error).__name__}: {error}")
            continue
        expected = a.astype(np.float64) @ b.astype(np.float64)
        # float32 rounding of a K-term dot product: about K * eps * sum(|a| |b|).
        bound = 4 * max(k, 1) * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64)
                                                           @ np.abs(b)) + 1e-30
        with np.errstate(invalid="ignore"):  # a learner's NaN or inf is reported below
            error = np.abs(found - expected)
        bad = error > bound
        if found.shape != expected.shape:
            verdict.fail(f"{description}: shape {found.shape}, expected {expected.shape}")
        elif bad.any() or not np.isfinite(found).all():
            rows, columns = np.nonzero(bad | ~np.isfinite(found))
            where = _wrong_region(rows, columns, m, n)
            verdict.fail(f"{description}: {bad.sum()} of {m * n} entries wrong ({where}), "
                         f"largest error {np.nanmax(error):.2e}")
        else:
            verdict.passed(f"{description}")
    return verdict


def _wrong_region(rows: np.ndarray, columns: np.ndarray, m: int, n: int) -> str:
    """Name the wrong entries by where they lie: a whole last column, a last row, or a range."""
    if np.all(columns == n - 1) and len(columns) == m:
        return "the last column of C"
    if np.all(rows == m - 1) and len(rows) == n:
        return "the last row of C"
    return (f"rows {rows.min()}-{rows.max()}, columns {columns.min()}-{columns.max()}")


def edge_shapes(mr: int, nr: int, vlen: int) -> list[tuple[int, int, int]]:
    """(M, N, K) whose last columns leave every kind of right edge of an MR x NR micro-tile:
    one column, a part of one vector, whole vectors, whole vectors and a part, NR - 1."""
    widths = sorted({1, vlen - 1, vlen, vlen + 1, nr // 2, nr - 1} - {0})
    return [(2 * mr + 1, 2 * nr + width, 7) for width in widths if width < nr] \
        + [(mr, width, 33) for width in widths if width < nr]


def check_edge_kernel(c_source: str, function: str = "kr_sgemm_mine", **code_knobs) -> Verdict:
    """Check notebook 04's edge exercise: rung 4 whose right edge (the last N mod NR columns of
    each MR-row block) runs on the learner's own edge micro-kernel.

    Args:
        c_source: a copy of csrc/regblock.c with the edge micro-kernel written in.
        function: the name its entry point has in the copy.
        **code_knobs: ``isa``/``mr``/``nr`` as for ``krypton.get_kernel("regblock", ...)``;
            the defaults are the package's.

    Returns:
        ``check_kernel``'s verdict on its awkward shapes and on a shape for every edge width
        from one column to NR - 1, for this micro-tile.
    """
    code = get_kernel("regblock", **code_knobs).code_knobs
    mr, nr, vlen = code["mr"], code["nr"], machine.VECTOR_WIDTH[code["isa"]]
    verdict = check_kernel(c_source, function, like="regblock",
                           shapes=KERNEL_SHAPES + tuple(edge_shapes(mr, nr, vlen)), **code)
    verdict.what = f"edge micro-kernel in {function} ({mr} x {nr} micro-tile, {vlen} lanes)"
    return verdict


KC_CASES = ((32 * 1024, 8, 64, 6, 16, 4), (32 * 1024, 8, 64, 8, 32, 4), (48 * 1024, 12, 64, 8, 32, 4),
            (64 * 1024, 4, 64, 8, 8, 4), (128 * 1024, 8, 128, 8, 24, 4), (32 * 1024, 8, 64, 6, 8, 8))
"""(L1 bytes, ways, line bytes, MR, NR, element bytes): Zen 3/4, Intel, ARM-like and doubles."""


def check_kc(learner_fn: Callable[..., int]) -> Verdict:
    """Check a learner's ``kc(l1_bytes, ways, line, mr, nr, element)`` against the model of
    ``krypton.blocking``: the deepest kc, a multiple of 8, whose B and A micro-panels, each in
    whole ways, leave one L1 way free."""
    verdict = Verdict("kc from L1 size and ways")
    for l1_bytes, ways, line, mr, nr, element in KC_CASES:
        case = f"L1 {l1_bytes // 1024} KiB {ways}-way, {line} B lines, {mr} x {nr}, {element} B"
        expected = blocking.deepest_kc(blocking.Cache(l1_bytes, ways, line), mr, nr, element)
        try:
            found = learner_fn(l1_bytes, ways, line, mr, nr, element)
        except Exception as error:  # the learner's code: report, do not raise
            verdict.fail(f"{case}: raised {type(error).__name__}: {error}")
            continue
        if found == expected:
            verdict.passed(f"{case}: kc = {found}")
        else:
            verdict.fail(f"{case}: kc = {found!r}, expected {expected}")
    return verdict


PREFETCH_MNEMONIC = re.compile(r"^\s*[0-9a-f]+:\s+(prefetch\w*|prfm)\b", re.MULTILINE)
"""A prefetch instruction in objdump's listing: x86 prefetcht0/prefetchw..., ARM prfm."""


def _prefetches(path: Path) -> int | None:
    """Prefetch instructions in a compiled module's machine code (None without objdump)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(path)],
                             capture_output=True, text=True, check=True).stdout
    return len(PREFETCH_MNEMONIC.findall(listing))


def check_prefetch_off(c_source: str, function: str = "kr_sgemm_packed") -> Verdict:
    """Check notebook 05's prefetch exercise: rung 5 compiled with ``KR_PREFETCH_C 0``.

    Args:
        c_source: the learner's source, e.g. a ``#define`` and ``#include "packed.c"``.
        function: the entry point it defines.

    Returns:
        ``check_kernel``'s verdict (like rung 5), and one more line: the compiled module must
        have no prefetch instruction left, where the package's rung 5 has some. Without
        objdump that line says it could not look, and only the product is checked.
    """
    verdict = check_kernel(c_source, function, like="packed")
    verdict.what = f"rung 5 without the prefetch of C ({function})"
    if not verdict:
        return verdict
    mine = compile_source(c_source, function, like="packed", name=f"exercise_{function}")
    found, default = _prefetches(mine.module.path), _prefetches(get_kernel("packed").module.path)
    if found is None:
        verdict.lines.append("?      no objdump here (binutils): the machine code was not read")
    elif found == 0:
        verdict.passed(f"no prefetch instruction in its machine code (the package's rung 5 "
                       f"has {default})")
    else:
        verdict.fail(f"its machine code still has {found} prefetch instruction(s), as the "
                     f"package's rung 5 ({default}): is KR_PREFETCH_C defined as 0 before the "
                     "#include?")
    return verdict


THREAD_FAILURES_SHOWN = 3
"""Wrong cases the thread checker lists; the rest are counted."""
THREAD_CASES = ((1, 1, 1), (32, 32, 32), (64, 64, 64), (100, 100, 100), (128, 128, 128),
                (126, 126, 126), (1, 4096, 4096), (256, 256, 256), (1000, 10, 10))


def check_thread_count(learner_fn: Callable[[int, int, int, int], int]) -> Verdict:
    """Check a learner's ``threads_for(m, n, k, threads)`` against rung 6's own rule, the C
    function ``kr_parallel_threads`` (csrc/parallel.c), on 1 to 8 threads."""
    verdict = Verdict("threads used for a small product")
    rule = get_kernel("parallel").module.lib.kr_parallel_threads
    right = 0
    for threads in (1, 2, 4, 8):
        for m, n, k in THREAD_CASES:
            case = f"{m} x {n} x {k} on {threads} threads"
            expected = rule(m, n, k, threads)
            try:
                found = learner_fn(m, n, k, threads)
            except Exception as error:  # the learner's code: report, do not raise
                verdict.fail(f"{case}: raised {type(error).__name__}: {error}")
                continue
            if found == expected:
                right += 1
            elif len(verdict.lines) < THREAD_FAILURES_SHOWN:
                verdict.fail(f"{case}: {found!r}, the C says {expected}")
            else:
                verdict.ok = False
    total = 4 * len(THREAD_CASES)
    if verdict:
        verdict.passed(f"{right} of {total} cases agree with the C")
    else:
        verdict.lines.append(f"...    {right} of {total} cases agree with the C")
    return verdict


GRID_PROBE = r"""
/* Appended by krypton.exercises: asks this source's kr_thread_grid for its grid. */
void kr_exercise_thread_grid(int64_t m_panels, int64_t n_panels, int64_t threads,
                             int a_in_place, int64_t *threads_m, int64_t *threads_n)
{
    *threads_m = *threads_n = 0;
    kr_thread_grid(m_panels, n_panels, threads, a_in_place, threads_m, threads_n);
}
"""
GRID_PROBE_CDEF = ("void kr_exercise_thread_grid(int64_t m_panels, int64_t n_panels, "
                   "int64_t threads, int a_in_place, int64_t *threads_m, int64_t *threads_n);")
GRID_CASES = ((683, 4, 2, 0), (22, 256, 2, 0), (100, 100, 4, 0), (7, 5, 3, 1), (64, 1, 4, 0),
              (1, 64, 8, 1))
"""(MR-row panels of A, NR-wide panels of B, threads, A read in place): tall, wide, square,
odd thread counts and one side a single panel."""
COLUMNS_ONLY_SHAPES = ((0, 5, 3), (1, 1, 1), (13, 17, 11), (97, 131, 61), (300, 7, 40),
                       (5, 300, 40))


def _thread_grids(c_source: str, code: dict) -> Callable[..., tuple[int, int]]:
    """kr_thread_grid of ``c_source``, compiled with rung 6's macros and flags: a function of
    (MR-row panels, NR-wide panels, threads, A read in place)."""
    spec = kernels.SPECS["parallel"]
    macros, flags = kernels._macros_and_flags(spec, code)
    module = seam.compile_c(c_source + GRID_PROBE, GRID_PROBE_CDEF, name="exercise_grid",
                            macros=macros, flags=flags)

    def grid(m_panels: int, n_panels: int, threads: int, a_in_place: int):
        threads_m, threads_n = module.ffi.new("int64_t *"), module.ffi.new("int64_t *")
        module.lib.kr_exercise_thread_grid(m_panels, n_panels, threads, a_in_place,
                                           threads_m, threads_n)
        return threads_m[0], threads_n[0]
    return grid


def check_columns_only(c_source: str, function: str = "kr_sgemm_parallel",
                       **code_knobs) -> Verdict:
    """Check notebook 06's exercise: rung 6 whose ``kr_thread_grid`` splits only columns.

    Args:
        c_source: a copy of csrc/parallel.c with ``kr_thread_grid`` changed.
        function: the entry point it defines.
        **code_knobs: as for ``krypton.get_kernel("parallel", ...)``; the defaults are the
            package's.

    Returns:
        A ``Verdict``: the product against NumPy on 1, 2 and 4 threads, then the grid its
        ``kr_thread_grid`` chooses for tall, wide and square products, which must be
        1 x threads (the package's grid is printed beside it).
    """
    code = get_kernel("parallel", **code_knobs).code_knobs
    verdict = check_kernel(c_source, function, like="parallel", shapes=COLUMNS_ONLY_SHAPES,
                           threads=(1, 2, 4), **code)
    verdict.what = f"rung 6 with a grid of columns only ({function})"
    if not verdict:
        return verdict
    try:
        mine = _thread_grids(c_source, code)
    except (seam.CompileError, ImportError) as error:  # ImportError: no such symbol to load
        verdict.fail(f"kr_thread_grid could not be asked for its grid (keep its name and its "
                     f"arguments): {error}")
        return verdict
    default = _thread_grids(kernels.kernel_source("parallel"), code)
    for m_panels, n_panels, threads, a_in_place in GRID_CASES:
        case = f"{m_panels} x {n_panels} panels on {threads} threads"
        (tm, tn), (dm, dn) = mine(m_panels, n_panels, threads, a_in_place), \
            default(m_panels, n_panels, threads, a_in_place)
        if (tm, tn) == (1, threads):
            verdict.passed(f"{case}: a 1 x {tn} grid (the package's: {dm} x {dn})")
        else:
            verdict.fail(f"{case}: a {tm} x {tn} grid, expected 1 x {threads} (the package's: "
                         f"{dm} x {dn})")
    return verdict

