"""The C <-> Python seam: compile C source with the system compiler and load it through cffi.

cffi runs in API mode, out of line: cffi writes a small C wrapper around our declarations
(the cdef), the system C compiler builds wrapper and kernel into one extension module, and
Python imports it. Calls through it release the GIL, so two Python threads can run kernels
on two cores at once. One module is not cffi's: ``compile_extension`` builds C that is a
CPython extension of its own (csrc/kr_fastcall.c, the short way from Python into a rung), with
the same compiler, flags, cache and checks.

Built modules are cached on disk. The cache key is a hash of everything that changes the
binary: the source, the cdef, the macros, the compiler flags, the compiler's version, the
target those flags resolve to on this machine (the macros the compiler predefines, such as
``__AVX512F__``: what ``-march=native`` means here), every file in the include directories and
every other header the source includes by quoted or absolute path, and the Python ABI. Change
any of them and the next call compiles again; change none and the module loads in
milliseconds. A cache copied to a machine with another CPU therefore builds anew rather than
loading code that may use instructions this CPU lacks. A module is compiled in a private
temporary directory and moved into the cache with an atomic rename, so two processes
compiling the same kernel at once both succeed and nobody ever loads half a file.

The cache holds code that will run, so it must be private: it is created with mode 0700, and
an existing directory that another user owns, or that group or others may write to, is
refused (``CacheDirectoryError`` says how to fix it) rather than trusted. The digest written
beside each module detects damage; the directory's permissions keep out tampering.

What the compiler says on a successful build (its warnings) is shown once per build, as a
``CompilerWarning``: a cache hit compiles nothing and so shows nothing.

Environment variables:
    CC                  the C compiler (default: ``cc``)
    KRYPTON_CACHE       the cache directory (default: ``~/.cache/krypton/kernels``); it must
                        be yours and not writable by group or others
    KRYPTON_COMPILE_TIMEOUT  seconds one compile may take before it is stopped (default 300)
    KRYPTON_CFLAGS      extra flags appended to every compile, last, so they override the
                        module's own (e.g. ``-g``, or ``-fversion-loops-for-strides``)
    KRYPTON_NO_NATIVE   set to 1 to drop ``-march=native`` (e.g. to build for another machine)
    KRYPTON_SANITIZE    sanitizers to build every module with, e.g. ``address,undefined``: adds
                        ``-fsanitize=...`` with frame pointers and debug info, and makes UBSan
                        abort on its first report rather than print and go on. The flags are in
                        the cache key, so sanitized modules never replace normal ones. Python
                        itself is not sanitized: preload the runtime, e.g. ``LD_PRELOAD=$(gcc
                        -print-file-name=libasan.so)`` (tests/test_sanitizers.py shows how).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cffi

from krypton.checks import finite_float

_PACKAGED_CSRC = Path(__file__).resolve().parent / "csrc"
CSRC = _PACKAGED_CSRC if _PACKAGED_CSRC.is_dir() else _PACKAGED_CSRC.parent.parent / "csrc"
"""The C sources of the kernel ladder: the repository's csrc/ in a checkout (and an editable
install); krypton/csrc in an installed package, copied there from csrc/ when it is built."""

# Read once, at import: Python 3.11's sysconfig fills its table of variables on first use
# without a lock, so a thread asking while another fills it can get None (CPython issue
# gh-92452), and two threads compiling their first kernels at once would name a module
# "_kr_...None".
_EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
_PYTHON_INCLUDE = sysconfig.get_paths()["include"]

_loaded: dict[str, "CompiledModule"] = {}


class CompileError(RuntimeError):
    """The C compiler rejected the source; ``compiler_output`` holds what it said."""

    def __init__(self, message: str, compiler_output: str = "", command: Sequence[str] = ()):
        super().__init__(message)
        self.compiler_output = compiler_output
        self.command = list(command)


class CompilerNotFoundError(CompileError):
    """No C compiler could be run."""


class CompilerWarning(UserWarning):
    """The compiler built the module but had something to say; the message is its own text."""


class CacheDirectoryError(OSError):
    """The kernel cache directory cannot be used: it is a file, or it is not private."""


DEFAULT_COMPILE_TIMEOUT = 300.0
"""Seconds a compile may take (``$KRYPTON_COMPILE_TIMEOUT`` overrides): a hung compiler, such
as one told to ``#include`` a pipe, is stopped rather than waited for forever."""


@dataclass(frozen=True)
class CompiledModule:
    """A compiled and loaded cffi extension: ``lib`` holds the C functions, ``ffi`` the types."""

    ffi: Any
    lib: Any
    path: Path
    key: str


def cache_dir() -> Path:
    """The directory compiled kernels are cached in (created, private, if missing).

    Raises:
        CacheDirectoryError: the path is a file, or the directory is owned by another user or
            writable by group or others (anyone who can write there could plant code that
            the next ``matmul`` would run). The message says how to fix it.
    """
    root = os.environ.get("KRYPTON_CACHE")
    if root:
        path, origin = Path(root).expanduser(), "$KRYPTON_CACHE"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path, origin = Path(base) / "krypton" / "kernels", "the default kernel cache"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CacheDirectoryError(
            f"{origin} {str(path)!r} is a file (or inside one), not a directory: point "
            "KRYPTON_CACHE at a directory (it is created if missing)") from None
    _check_private(path, origin)
    return path


def _check_private(path: Path, origin: str) -> None:
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheDirectoryError(
            f"{origin} {str(path)!r} belongs to another user (uid {info.st_uid}); krypton "
            "loads compiled code from it, so it must be yours: set KRYPTON_CACHE to a "
            "directory of your own, e.g. ~/.cache/krypton/kernels")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheDirectoryError(
            f"{origin} {str(path)!r} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); krypton loads compiled code from it, so anyone "
            f"who can write there could run code as you. Make it private with `chmod 700 "
            f"{shlex.quote(str(path))}`, or set KRYPTON_CACHE to a private directory")


def compiler() -> list[str]:
    """The C compiler command, from ``$CC`` or ``cc``; raises if it cannot be found."""
    command = shlex.split(os.environ.get("CC", "cc"))
    if not command or shutil.which(command[0]) is None:
        raise CompilerNotFoundError(
            f"no C compiler found (looked for {command[0] if command else '$CC'!r} on PATH). "
            "Krypton compiles its kernels from C: install one (Debian/Ubuntu: "
            "`sudo apt-get install gcc`; macOS: `xcode-select --install`; conda: "
            "`conda install -c conda-forge c-compiler`) or point $CC at it."
        )
    return command


@functools.lru_cache(maxsize=None)
def compiler_version() -> str:
    """The first line the compiler prints for ``--version`` (e.g. ``gcc (Debian 12.2.0) 12.2.0``)."""
    result = subprocess.run([*compiler(), "--version"], capture_output=True, text=True,
                            timeout=_compile_timeout())
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _compiler_accepts(flags: Sequence[str], source: str = "int main(void) { return 0; }") -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(source)
        result = subprocess.run(
            [*compiler(), *flags, str(src), "-o", str(Path(tmp, "probe"))],
            capture_output=True, text=True, timeout=_compile_timeout(),
        )
        return result.returncode == 0


@functools.lru_cache(maxsize=None)
def native_flags() -> tuple[str, ...]:
    """Flags that target this very CPU (``-march=native`` or ``-mcpu=native``), if accepted."""
    if os.environ.get("KRYPTON_NO_NATIVE") == "1":
        return ()
    for flag in ("-march=native", "-mcpu=native"):
        if _compiler_accepts([flag]):
            return (flag,)
    return ()


OPENMP_HINT = ("For threads, build with a compiler that takes -fopenmp: gcc does; clang does with "
               "its OpenMP runtime (apt install libomp-dev on Debian and Ubuntu); Apple's clang "
               "does not (Homebrew's gcc should, CC=gcc-14 or the version it installed: not "
               "tested here). Set CC, then restart Python.")
"""How to get OpenMP where ``openmp_flags()`` found none: what the bench, ``krypton.train`` and
notebooks 00, 06, 07, 09 and 10 print."""


@functools.lru_cache(maxsize=None)
def openmp_flags() -> tuple[str, ...]:
    """The flag that enables OpenMP, or ``()`` when the compiler has none (kernels still work,
    on one thread)."""
    probe = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    if _compiler_accepts(["-fopenmp"], probe):
        return ("-fopenmp",)
    return ()


@functools.lru_cache(maxsize=None)
def predefined_macros(extra_flags: tuple[str, ...] = ()) -> frozenset[str]:
    """The macros the compiler defines for this target (``__AVX512F__``, ``__ARM_NEON``, ...)."""
    result = subprocess.run(
        [*compiler(), *native_flags(), *extra_flags, "-dM", "-E", "-x", "c", os.devnull],
        capture_output=True, text=True, timeout=_compile_timeout(),
    )
    return frozenset(re.findall(r"^#define (\w+)", result.stdout, flags=re.MULTILINE))


def base_flags() -> list[str]:
    """The flags every module is compiled with, before per-kernel flags and macros."""
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-pthread", *native_flags(),
             *openmp_flags()]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    flags += sanitizer_flags()
    return flags


def supported_flags(flags: Sequence[str]) -> tuple[str, ...]:
    """Those of ``flags`` that the compiler takes without a word, in their order: each is
    tried alone, with -Werror (clang warns of some gcc flags that it ignores, and refuses
    others)."""
    return _supported_flags(tuple(flags), tuple(compiler()))


@functools.lru_cache(maxsize=None)
def _supported_flags(flags: tuple[str, ...], _compiler: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(flag for flag in flags if _compiler_accepts([flag, "-Werror"]))


def sanitizer_flags() -> list[str]:
    """The flags ``$KRYPTON_SANITIZE`` asks for (e.g. ``address,undefined``), or ``[]``."""
    requested = os.environ.get("KRYPTON_SANITIZE", "").split(",")
    sanitizers = [name.strip() for name in requested if name.strip()]
    if not sanitizers:
        return []
    # -O1, as the AddressSanitizer documentation advises: the kernels' explicit vectors, tails
    # and buffers touch the same memory at any level, and gcc's -O3 with the sanitizers' checks
    # on every load of the unrolled micro-kernels takes over ten times longer to compile
    # (compare `gcc -O3` and `gcc -O1` with -fsanitize=address,undefined on csrc/small.c).
    flags = [f"-fsanitize={','.join(sanitizers)}", "-fno-omit-frame-pointer", "-g", "-O1"]
    if "undefined" in sanitizers:
        flags.append("-fno-sanitize-recover=undefined")
    return flags


@functools.lru_cache(maxsize=None)
def _target_macros(command: tuple[str, ...], flags: tuple[str, ...]) -> tuple[str, ...]:
    # What the flags mean on this machine, as the compiler announces it to the code: the ISA
    # feature macros (__AVX512F__, __ARM_NEON, ...) and the CPU (__znver3__) that
    # -march=native resolves to. Asked once per process per compiler and flag set.
    result = subprocess.run([*command, *flags, "-dM", "-E", "-x", "c", os.devnull],
                            capture_output=True, text=True, timeout=_compile_timeout())
    return tuple(sorted(result.stdout.splitlines()))


_INCLUDE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<(/[^>]+)>)', re.MULTILINE)


def _headers_digest(source: str, include_dirs: Sequence[Path]) -> str:
    """A digest of every file in the include directories, and of every other file the
    source includes by quoted or absolute path, followed recursively."""
    digest = hashlib.sha256()
    for directory in include_dirs:
        for path in sorted(Path(directory).glob("*.[ch]")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    pending: list[tuple[str, Path | None]] = [(source, None)]
    seen: set[Path] = set()
    while pending:
        text, directory = pending.pop()
        for quoted, absolute in _INCLUDE.findall(text):
            path = _resolve_include(quoted or absolute, directory, include_dirs)
            if path is None or path in seen:
                continue
            seen.add(path)
            digest.update(str(path).encode())
            # Read regular files only: a device or a pipe (#include "/dev/zero") is the
            # compiler's problem, and its timeout's.
            if path.is_file():
                content = path.read_bytes()
                digest.update(content)
                pending.append((content.decode("utf-8", "replace"), path.parent))
    return digest.hexdigest()


def _resolve_include(name: str, directory: Path | None,
                     include_dirs: Sequence[Path]) -> Path | None:
    # The compiler's order for "name": the including file's directory, then the -I list.
    if os.path.isabs(name):
        return Path(name)
    for base in ([directory] if directory else []) + list(include_dirs):
        if (base / name).exists():
            return (base / name).resolve()
    return None


def _cache_key(source: str, cdef: str, macros: Mapping[str, Any], flags: Sequence[str],
               include_dirs: Sequence[Path]) -> str:
    command = tuple(compiler())
    material = {
        "source": source,
        "cdef": cdef,
        "macros": sorted((str(k), str(v)) for k, v in macros.items()),
        "flags": list(flags),
        "compiler": [*command, compiler_version()],
        "target": _target_macros(command, tuple(flags)),
        "headers": _headers_digest(source, include_dirs),
        "abi": _EXT_SUFFIX,
        "cffi": cffi.__version__,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _compile_timeout() -> float:
    text = os.environ.get("KRYPTON_COMPILE_TIMEOUT", "")
    if not text:
        return DEFAULT_COMPILE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"KRYPTON_COMPILE_TIMEOUT must be a number of seconds, got "
                         f"{text!r}") from None
    return finite_float("KRYPTON_COMPILE_TIMEOUT", value, low=0, low_open=True)


def _import_extension(module_name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_c(source: str, cdef: str, *, name: str = "kernel",
              macros: Mapping[str, Any] | None = None, flags: Sequence[str] = (),
              include_dirs: Sequence[Path | str] = (CSRC,), force: bool = False) -> CompiledModule:
    """Compile C source into a cached cffi extension module and load it.

    Args:
        source: C source text. It is saved as ``<name>.c`` and compiled; the compiler's
            messages refer to that name and its line numbers.
        cdef: plain C declarations (no preprocessor lines) of what Python may call.
        name: a short identifier for the module (letters, digits, underscores).
        macros: ``-D`` definitions; they are part of the cache key.
        flags: extra compiler flags for this module (e.g. ``["-fno-tree-vectorize"]``).
        include_dirs: searched for ``#include "..."``; the headers in them (and any other
            file the source includes by path) are part of the cache key, so editing a header
            recompiles what depends on it.
        force: recompile even when the cache has the module.

    Warns:
        CompilerWarning: the compiler printed warnings while building (on a cache hit nothing
            is compiled, so nothing is shown).

    Returns:
        The loaded module: call C through ``.lib``, make C objects with ``.ffi``.

    Raises:
        CompilerNotFoundError: there is no C compiler to run.
        CompileError: the compiler failed or took longer than ``$KRYPTON_COMPILE_TIMEOUT``;
            the message includes its own output.
        CacheDirectoryError: the cache directory is a file or is not private.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"module name must be a C identifier (letters, digits, _), got {name!r}")
    macros = dict(macros or {})
    bad_macros = [k for k in macros if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
    if bad_macros:
        raise ValueError(f"macro names must be C identifiers, got {bad_macros}")
    # A lone string would be taken apart character by character: "-O2" as "-", "O", "2".
    for label, value in (("flags", flags), ("include_dirs", include_dirs)):
        if isinstance(value, (str, bytes, os.PathLike)):
            raise TypeError(f"{label} must be a list, got the single value {value!r}: pass "
                            f"[{value!r}]")
    include_dirs = [Path(d).resolve() for d in include_dirs]
    all_flags = [*base_flags(), *flags, *shlex.split(os.environ.get("KRYPTON_CFLAGS", ""))]
    key = _cache_key(source, cdef, macros, all_flags, include_dirs)
    module_name = f"_kr_{name}_{key[:16]}"
    if not force and module_name in _loaded:
        return _loaded[module_name]

    target = cache_dir() / f"{module_name}{_EXT_SUFFIX}"
    module = _load_or_build(source, cdef, name, module_name, macros, all_flags, include_dirs,
                            target, force)
    compiled = CompiledModule(ffi=module.ffi, lib=module.lib, path=target, key=key)
    _loaded[module_name] = compiled
    return compiled


def compile_extension(source: str, name: str, *,
                      include_dirs: Sequence[Path | str] = (CSRC,)) -> Any:
    """Compile C source that is a CPython extension module of its own (it defines
    ``PyInit__kr_<name>``, and may use NumPy's C API), cached and loaded as ``compile_c``'s
    modules are; return the module. The source is compiled with ``KR_CPYTHON_EXTENSION``
    defined, so that it can keep its body from compilers run without Python's headers.
    krypton.kernels builds its short way into the rungs (csrc/kr_fastcall.c) with it."""
    import numpy

    include_dirs = [Path(d).resolve() for d in (*include_dirs, numpy.get_include())]
    all_flags = [*base_flags(), *shlex.split(os.environ.get("KRYPTON_CFLAGS", ""))]
    # NumPy's headers are included with <...>, which the key does not follow: its version is.
    macros = {"KR_CPYTHON_EXTENSION": 1, "KR_BUILT_FOR_NUMPY": json.dumps(numpy.__version__)}
    key = _cache_key(source, "", macros, all_flags, include_dirs)
    module_name = f"_kr_{name}"
    target = cache_dir() / f"{module_name}_{key[:16]}{_EXT_SUFFIX}"
    if target not in _extensions:
        _extensions[target] = _load_or_build(source, None, name, module_name, macros,
                                             all_flags, include_dirs, target)
    return _extensions[target]


def _load_or_build(source: str, cdef: str | None, name: str, module_name: str,
                   macros: Mapping[str, Any], flags: Sequence[str],
                   include_dirs: Sequence[Path], target: Path, force: bool = False) -> Any:
    """The module in the cache at ``target`` if it is there and intact, else built (``_build``)
    and loaded."""
    if target.exists() and not force and _intact(target):
        try:
            return _import_extension(module_name, target)
        except ImportError:
            pass
    said = _build(source, cdef, name, module_name, macros, flags, include_dirs, target)
    if said:
        _show_compiler_output(name, said)
    return _import_extension(module_name, target)


_extensions: dict[Path, Any] = {}
"""The modules ``compile_extension`` loaded in this process, by file."""


def _show_compiler_output(name: str, said: str) -> None:
    # Point the warning at the first caller outside krypton (the learner's cell or script),
    # not at whichever krypton function happened to ask for the build.
    depth, frame = 0, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        depth, frame = depth + 1, frame.f_back
    warnings.warn(CompilerWarning(f"compiling {name}.c, the compiler said:\n{said}"),
                  stacklevel=depth + 3)


_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def _digest_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _intact(target: Path) -> bool:
    # Loading a damaged shared library (say, truncated by a full disk or a killed process)
    # can crash the interpreter inside dlopen, so the file is checked against the digest
    # written beside it when it was built; a mismatch means: build it again.
    try:
        expected = _digest_path(target).read_text().strip()
        return hashlib.sha256(target.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def _build(source: str, cdef: str | None, name: str, module_name: str,
           macros: Mapping[str, Any], flags: Sequence[str], include_dirs: Sequence[Path],
           target: Path) -> str:
    """Compile into ``target``; return what the compiler said (its warnings), if anything.
    With a cdef, cffi's wrapper around the source is what is compiled; with None, the source
    alone (a CPython extension of its own, ``compile_extension``)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"build-{name}-", dir=target.parent))
    try:
        (workdir / f"{name}.c").write_text(source)
        wrapper = workdir / f"{name}.c"
        if cdef is not None:
            ffi = cffi.FFI()
            ffi.cdef(cdef)
            # Quiet, rather than redirecting sys.stdout around the call: the redirect is
            # process-wide, so two threads compiling at once could leave sys.stdout pointing
            # at a dead buffer.
            ffi.set_source(module_name, f'#include "{name}.c"\n', compiler_verbose=False)
            wrapper = workdir / f"{module_name}.c"
            ffi.emit_c_code(str(wrapper))
        python_include = _PYTHON_INCLUDE
        partial = workdir / target.name
        command = [
            *compiler(), *flags,
            *[f"-D{k}={v}" for k, v in macros.items()],
            f"-I{workdir}", *[f"-I{d}" for d in include_dirs], f"-I{python_include}",
            wrapper.name, "-o", partial.name,
        ]
        returncode, output = _run_compiler(command, workdir, name)
        output = output.replace(str(workdir) + os.sep, "")
        if returncode != 0:
            raise CompileError(
                f"compiling {name}.c failed (exit code {returncode}).\n"
                f"The compiler said:\n{output.strip()}\n"
                f"Command: {shlex.join(command)}",
                compiler_output=output, command=command,
            )
        digest = workdir / "digest"
        digest.write_text(hashlib.sha256(partial.read_bytes()).hexdigest())
        # Digest first, then the library: a reader that sees the new library also sees its
        # digest. Both renames are atomic, so nobody ever reads a half-written file.
        os.replace(digest, _digest_path(target))
        os.replace(partial, target)
        return output.strip()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_compiler(command: Sequence[str], workdir: Path, name: str) -> tuple[int, str]:
    """(exit code, what it printed). The compiler runs in a process group of its own, so a
    timeout or a Ctrl-C stops the driver and the cc1/ld it started, not the driver alone."""
    timeout = _compile_timeout()
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise CompileError(
            f"compiling {name}.c took longer than {timeout:g} s and was stopped. Does it "
            "#include a device or a pipe, or generate a huge function? For a slow but sound "
            "build, raise KRYPTON_COMPILE_TIMEOUT (seconds).\n"
            f"Command: {shlex.join(command)}", command=command) from None
    except BaseException:
        _stop(process)
        raise
    return process.returncode, stderr + stdout


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


_PROTOTYPE = re.compile(r"^[\w ]+?\b(kr_\w+)\s*\([^)]*\)\s*;", re.MULTILINE)


def cdef_for(functions: Sequence[str], header: Path | str = CSRC / "krypton.h") -> str:
    """A cdef for cffi from the header: its types, plus the prototypes of ``functions`` only.

    The header is the single source of truth for the C signatures; comments and preprocessor
    lines are dropped (cffi's cdef takes plain declarations), and so are the prototypes of
    functions this module does not define (API mode would look for them at link time).
    """
    text = Path(header).read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", "", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    prototypes = {m.group(1): m.group(0) for m in _PROTOTYPE.finditer(text)}
    missing = [f for f in functions if f not in prototypes]
    if missing:
        raise ValueError(f"{Path(header).name} declares no {missing}; it has {sorted(prototypes)}")
    types = _PROTOTYPE.sub("", text).strip()
    return "\n".join([types, *(prototypes[f] for f in functions)])
