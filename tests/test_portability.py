"""Portability: every rung on other compilers and ISAs, through the C harness (tests/c/harness.c).

The slow tests run pieces of `.ci/portability` (the full matrix is CI's job, in .ci/run): each
compiler family builds every rung and runs the harness natively, or cross-compiled for aarch64
under qemu-user. They skip, naming the Debian package, when a compiler or qemu is missing, and
when .ci/run has just run the whole script (it sets KRYPTON_PORTABILITY_RAN=1); they build with
-Werror unless KR_WERROR=0.

The fast tests check the harness itself: a correct rung passes, and rungs broken in the ways a
kernel goes wrong (a column skipped, a write past the row, C read before it is written, a
stride ignored, thread counts that change the sums) each fail with a line that says so.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "c" / "harness.c"
PORTABILITY = ROOT / ".ci" / "portability"
X86 = platform.machine() in ("x86_64", "AMD64")


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def _build_harness(rung: str, sources: list[Path], out: Path) -> Path:
    cc = _compiler()
    if shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler {cc[0]!r} (set CC, or apt install gcc)")
    binary = out / f"harness_{rung}"
    command = [*cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
               f"-I{ROOT / 'csrc'}", f"-DKR_RUNG={rung}", str(HARNESS), *map(str, sources),
               "-o", str(binary), "-lm"]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, f"{shlex.join(command)} failed:\n{built.stderr}"
    return binary


def _run_harness(binary: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "--quick"], capture_output=True, text=True, timeout=120)


def test_harness_passes_a_correct_rung(tmp_path):
    result = _run_harness(_build_harness("naive", [ROOT / "csrc" / "naive.c"], tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout.splitlines()[-1]


# A small rung that is right except for one mistake, each a way real kernels have gone wrong.
BROKEN_RUNG = """
#include "krypton.h"
int kr_sgemm_broken(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                    const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc,
                    const kr_knobs *knobs)
{
    (void)knobs, (void)csb;   /* some mistakes do not use them */
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < COLUMNS; ++j) {
            float sum = START;
            for (int64_t k = 0; k < K; ++k)
                sum += A[i * rsa + k * csa] * B[k * rsb + j * B_COLUMN_STRIDE];
            C[i * ldc + j] = sum * SCALE;
            AFTER_STORE;
        }
    return KR_OK;
}
"""
CORRECT = {"COLUMNS": "N", "START": "0.0f", "B_COLUMN_STRIDE": "csb", "SCALE": "1.0f",
           "AFTER_STORE": "(void)0"}
MISTAKES = {
    "skips the last column": ({"COLUMNS": "N - 1"}, "C[0]["),
    "writes the padding of a row": ({"AFTER_STORE": "if (j == N - 1 && ldc > N) C[i * ldc + N] = 0"},
                                    "in a row's padding"),
    "adds to C instead of writing it": ({"START": "C[i * ldc + j]"}, "= nan"),
    "ignores B's column stride": ({"B_COLUMN_STRIDE": "1"}, "B^T"),
    "sums differently on more threads": ({"SCALE": "(knobs->threads > 1 ? 1.0f + 1e-7f : 1.0f)"},
                                         "not bitwise equal to the threads=1 result"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_harness_catches_a_wrong_rung(tmp_path, mistake):
    changes, expected = MISTAKES[mistake]
    source = BROKEN_RUNG
    for name, value in {**CORRECT, **changes}.items():
        source = source.replace(name, value)
    path = tmp_path / "broken.c"
    path.write_text(source)
    result = _run_harness(_build_harness("broken", [path], tmp_path))
    assert result.returncode == 1, f"the harness passed a rung that {mistake}:\n{result.stdout}"
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL broken ")]
    assert failures and any(expected in line for line in failures), result.stdout


# Pieces of .ci/portability: a compiler family, the tools it needs (with the Debian package that
# provides each), and the configurations (compiler/isa/openmp) it builds.
QEMU = ("qemu-aarch64", "qemu-user")
PIECES = {
    "gcc": ([("gcc", "gcc")], ["gcc/native/omp", "gcc/scalar/no-omp"], True),
    "clang": ([("clang", "clang")], ["clang/native/omp", "clang/avx2/no-omp"], True),
    "clang-16": ([("clang-16", "clang-16")], ["clang-16/native/no-omp", "clang-16/scalar/no-omp"],
                 True),
    "aarch64-gcc": ([("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"), QEMU],
                    ["aarch64-gcc/neon/omp", "aarch64-gcc/scalar/no-omp"], False),
    "aarch64-clang-16": ([("clang-16", "clang-16"), ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
                          QEMU], ["aarch64-clang-16/neon/no-omp"], False),
}


@pytest.mark.slow
@pytest.mark.parametrize("piece", list(PIECES))
def test_every_rung_builds_and_passes_the_harness(piece):
    if os.environ.get("KRYPTON_PORTABILITY_RAN") == "1":
        pytest.skip(".ci/run ran the whole of .ci/portability already (KRYPTON_PORTABILITY_RAN=1)")
    tools, configurations, needs_x86 = PIECES[piece]
    if needs_x86 and not X86:
        pytest.skip(f"{piece} builds for x86-64; this machine is {platform.machine()}")
    for tool, package in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: apt install {package}")
    only = [arg for configuration in configurations for arg in ("--only", configuration)]
    result = subprocess.run([str(PORTABILITY), *only], capture_output=True, text=True,
                            timeout=900, env=dict(os.environ, KR_WERROR=os.environ.get("KR_WERROR", "1")))
    assert result.returncode == 0, result.stdout + result.stderr
    built = [line for line in result.stdout.splitlines() if line.startswith(f"{piece}/")]
    assert built, f"no configuration of {piece} was built:\n{result.stdout}"


# Notebook 03 shows the simd rung's inner loop compiled for the other architecture.
def test_cross_disassembly_for_aarch64_has_a_neon_fma():
    from krypton import notebook
    try:
        assembly, command = notebook.cross_disassemble("simd", "aarch64")
    except notebook.CrossCompilerNotFoundError as error:
        pytest.skip(str(error))
    assert "fmla" in assembly and ".4s" in assembly, assembly
    assert "csrc/simd.c" in command


def test_cross_disassembly_without_a_cross_compiler_says_what_to_install(monkeypatch):
    from krypton import notebook
    which = shutil.which
    monkeypatch.setattr(notebook.shutil, "which", lambda name: which(name) if "objdump" in name else None)
    if which("aarch64-linux-gnu-objdump") is None and which("llvm-objdump") is None:
        pytest.skip("no aarch64 disassembler either: the message names binutils instead")
    with pytest.raises(notebook.CrossCompilerNotFoundError, match="apt install gcc-aarch64-linux-gnu"):
        notebook.cross_disassemble("simd", "aarch64")
