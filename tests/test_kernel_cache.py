"""The kernel cache loads only what this user built for this machine, and a compile never
hangs, never leaves a build folder behind, and never hides what the compiler said.

Anything that could hang or crash (a compiler reading a pipe, a Ctrl-C, another machine's
cache) runs in a subprocess with a timeout.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from krypton import seam
from kernel_cache import built_modules
from ctrl_c import sigint_default

ROOT = Path(__file__).resolve().parent.parent
ADD_SOURCE = "int kr_add(int a, int b) { return a + b; }\n"
ADD_CDEF = "int kr_add(int a, int b);"


def child_env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KRYPTON_CACHE": str(cache), **extra}


def run_child(code: str, env: dict[str, str], timeout: float = 300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---- a private directory --------------------------------------------------------------------


def test_a_new_cache_directory_is_private(cache):
    seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o757, 0o1777])
def test_a_cache_others_can_write_to_is_refused_with_the_fix(cache, mode):
    cache.mkdir()
    cache.chmod(mode)
    with pytest.raises(seam.CacheDirectoryError,
                       match=rf"writable by group or others.*chmod 700 {cache}"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")
    assert not list(cache.iterdir()), "something was built in an unsafe directory"
    cache.chmod(0o700)
    assert seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder").lib.kr_add(2, 3) == 5


def test_a_cache_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        other = tmp_path / "theirs"
        other.mkdir(mode=0o755)
        os.chown(other, 65534, 65534)
    else:
        other = Path("/usr")   # exists, and belongs to root
    monkeypatch.setenv("KRYPTON_CACHE", str(other))
    monkeypatch.setattr(seam, "_loaded", {})
    with pytest.raises(seam.CacheDirectoryError, match="belongs to another user.*of your own"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")


def test_a_symlink_to_a_private_cache_is_followed_and_to_an_open_one_refused(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(seam, "_loaded", {})
    target, link = tmp_path / "real", tmp_path / "link"
    target.mkdir(mode=0o700)
    link.symlink_to(target)
    monkeypatch.setenv("KRYPTON_CACHE", str(link))
    assert seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder").path.parent == link
    target.chmod(0o777)
    seam._loaded.clear()
    with pytest.raises(seam.CacheDirectoryError, match="writable by group or others"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")


@pytest.mark.parametrize("below", ["", "kernels"])
def test_krypton_cache_pointing_at_a_file_is_a_clear_error(tmp_path, monkeypatch, below):
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("KRYPTON_CACHE", str(tmp_path / "a-file" / below))
    monkeypatch.setattr(seam, "_loaded", {})
    with pytest.raises(seam.CacheDirectoryError, match=r"\$KRYPTON_CACHE .* is a file"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")


def test_a_module_planted_in_a_world_writable_cache_is_never_loaded(tmp_path):
    # The attack of issue 21: a cache anyone may write to, holding a module (and its digest)
    # under the name krypton would compute. Build the real thing there, then open it up.
    shared = tmp_path / "shared"
    built = run_child("import krypton, numpy as np; a = np.ones((2, 2), np.float32); "
                      "krypton.matmul(a, a, kernel='naive'); print('built')", child_env(shared))
    assert built.returncode == 0, built.stderr
    shared.chmod(0o777)
    result = run_child("import krypton, numpy as np; a = np.ones((2, 2), np.float32); "
                       "print(krypton.matmul(a, a, kernel='naive'))", child_env(shared))
    assert result.returncode != 0
    assert "CacheDirectoryError" in result.stderr and "chmod 700" in result.stderr
    assert "[[2." not in result.stdout


# ---- the key: this machine's target, every header -------------------------------------------


FAKE_COMPILER = """#!/bin/sh
# The same compiler on "another machine": what -march=native means differs, nothing else.
exec {cc} $FAKE_TARGET "$@"
"""


def test_a_cache_copied_to_another_cpu_builds_anew_instead_of_loading(tmp_path):
    compiler = tmp_path / "cc"
    compiler.write_text(FAKE_COMPILER.format(cc=shutil.which(seam.compiler()[0])))
    compiler.chmod(0o755)
    build = ("from krypton import seam; "
             f"m = seam.compile_c({ADD_SOURCE!r}, {ADD_CDEF!r}, name='adder'); "
             "print(m.path, m.lib.kr_add(2, 3))")
    here, there = tmp_path / "here", tmp_path / "there"
    first = run_child(build, child_env(here, CC=str(compiler), FAKE_TARGET=""))
    assert first.returncode == 0, first.stderr
    shutil.copytree(here, there)
    other_cpu = "-D__KRYPTON_TEST_FEATURE_THIS_CPU_LACKS__=1"
    second = run_child(build, child_env(there, CC=str(compiler), FAKE_TARGET=other_cpu))
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[1] == "5"
    assert second.stdout.split()[0] != first.stdout.split()[0].replace(str(here), str(there))
    assert len(built_modules(there)) == 2
    again = run_child(build, child_env(there, CC=str(compiler), FAKE_TARGET=""))
    assert again.returncode == 0 and len(built_modules(there)) == 2, "the first module was " \
        "not reused on its own machine"


def test_the_key_holds_the_resolved_target():
    command = tuple(seam.compiler())
    native = seam._target_macros(command, tuple(seam.base_flags()))
    generic = seam._target_macros(command, ("-O3",))
    assert native and any("__STDC__" in line for line in native)
    if seam.native_flags():
        assert native != generic, "-march=native resolved to nothing"


def test_editing_a_header_included_by_absolute_path_recompiles(cache, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "offset.h").write_text('#include "inner.h"\n#define OFFSET (INNER + 1)\n')
    (elsewhere / "inner.h").write_text("#define INNER 10\n")
    source = (f'#include "{elsewhere}/offset.h"\n'
              "int kr_add(int a, int b) { return a + b + OFFSET; }\n")
    assert seam.compile_c(source, ADD_CDEF, name="adder").lib.kr_add(1, 1) == 13
    (elsewhere / "offset.h").write_text('#include "inner.h"\n#define OFFSET (INNER + 2)\n')
    assert seam.compile_c(source, ADD_CDEF, name="adder").lib.kr_add(1, 1) == 14
    (elsewhere / "inner.h").write_text("#define INNER 100\n")   # included by the header
    assert seam.compile_c(source, ADD_CDEF, name="adder").lib.kr_add(1, 1) == 104
    assert len(built_modules(cache)) == 3


# ---- a compiler that never finishes ---------------------------------------------------------


def no_one_reads(fifo: Path) -> bool:
    """True if no process has the FIFO open for reading (so no compiler is left over)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        return error.errno == errno.ENXIO
    return False


def test_a_compile_that_hangs_is_stopped_by_the_timeout_and_cleaned_up(tmp_path):
    fifo = tmp_path / "pipe.h"
    os.mkfifo(fifo)   # a header that never ends: the compiler waits for a writer forever
    cache = tmp_path / "cache"
    started = time.monotonic()
    result = run_child(f"""
        from krypton import seam
        try:
            seam.compile_c('#include "{fifo}"\\n' + {ADD_SOURCE!r}, {ADD_CDEF!r}, name="hang")
        except seam.CompileError as error:
            print("CompileError:", error)
        """, child_env(cache, KRYPTON_COMPILE_TIMEOUT="3"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "took longer than 3 s and was stopped" in result.stdout
    assert "KRYPTON_COMPILE_TIMEOUT" in result.stdout
    assert time.monotonic() - started < 60
    assert not list(cache.glob("build-*")), "the build folder was left behind"
    assert no_one_reads(fifo), "the compiler is still running"


def test_including_dev_zero_fails_clearly_and_leaves_no_build_folder(tmp_path):
    cache = tmp_path / "cache"
    # A memory limit, so the compiler reading zeros cannot take the machine's memory first.
    result = run_child(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from krypton import seam
        try:
            seam.compile_c('#include "/dev/zero"\\n' + {ADD_SOURCE!r}, {ADD_CDEF!r}, name="zero")
        except seam.CompileError as error:
            print("CompileError:", str(error).splitlines()[0])
        else:
            print("compiled")   # a compiler may read /dev/zero as an empty file
        """, child_env(cache, KRYPTON_COMPILE_TIMEOUT="10"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "CompileError: compiling zero.c" in result.stdout or "compiled" in result.stdout
    assert not list(cache.glob("build-*")), "the build folder was left behind"


def test_ctrl_c_during_a_compile_stops_the_compiler_and_cleans_up(tmp_path):
    fifo = tmp_path / "pipe.h"
    os.mkfifo(fifo)
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", f"from krypton import seam\n"
         f"seam.compile_c('#include \"{fifo}\"\\n' + {ADD_SOURCE!r}, {ADD_CDEF!r}, name='hang')"],
        env=child_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=sigint_default)
    deadline = time.monotonic() + 60
    while no_one_reads(fifo) and time.monotonic() < deadline:   # wait for the compiler
        time.sleep(0.1)
    assert not no_one_reads(fifo), "the compiler never started"
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert not list(cache.glob("build-*")), "the build folder was left behind"
    assert no_one_reads(fifo), "the compiler is still running"


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_compile_timeout_is_named(cache, monkeypatch, value):
    monkeypatch.setenv("KRYPTON_COMPILE_TIMEOUT", value)
    with pytest.raises(ValueError, match="KRYPTON_COMPILE_TIMEOUT"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder")


# ---- warnings: shown once per build ---------------------------------------------------------


WARNING_SOURCE = ('#warning "kr_add is a toy"\n'
                  "int kr_add(int a, int b) { return (a + b) + (1 << 40); }\n")


def compile_recording(source: str, **kwargs) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seam.compile_c(source, ADD_CDEF, name="warns", **kwargs)
    return [w for w in caught if issubclass(w.category, seam.CompilerWarning)]


def test_compiler_warnings_are_shown_once_per_build(cache):
    first = compile_recording(WARNING_SOURCE)
    assert len(first) == 1
    text = str(first[0].message)
    assert "kr_add is a toy" in text and "shift" in text and "warns.c:" in text
    assert str(cache) not in text, "the private build folder's path was shown"
    assert first[0].filename == __file__, "the warning should point at the caller"
    assert compile_recording(WARNING_SOURCE) == []       # loaded in this process
    seam._loaded.clear()
    assert compile_recording(WARNING_SOURCE) == []       # loaded from the disk cache
    assert len(compile_recording(WARNING_SOURCE, force=True)) == 1   # built again


def test_a_warning_from_a_learners_kernel_points_at_the_learners_line(cache):
    import krypton
    source = '#include "krypton.h"\n#warning "unfinished"\n' + textwrap.dedent("""
        int kr_sgemm_mine(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                          int64_t csa, const float *B, int64_t rsb, int64_t csb, float *C,
                          int64_t ldc, const kr_knobs *knobs) { return 0; }
    """)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        krypton.compile_source(source, "kr_sgemm_mine", like="naive", name="mine")
    shown = [w for w in caught if issubclass(w.category, seam.CompilerWarning)]
    assert len(shown) == 1 and "unfinished" in str(shown[0].message)
    assert shown[0].filename == __file__


def test_a_clean_build_shows_no_warning(cache):
    assert compile_recording(ADD_SOURCE) == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(flags="-O2"), TypeError, r"flags must be a list.*\['-O2'\]"),
    (dict(include_dirs="/usr/include"), TypeError, "include_dirs must be a list"),
    (dict(macros={"NOT A NAME": 1}), ValueError, "macro names must be C identifiers"),
    (dict(name=3), ValueError, "module name must be a C identifier"),
])
def test_compile_arguments_of_the_wrong_shape_are_named(cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, **{"name": "adder", **kwargs})
