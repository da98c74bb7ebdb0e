"""The micro-kernel as each compiler builds it: its accumulators must be registers.

Rungs 5-7 are fast only if the k loop of their full MR x NR tile holds the MR x NV
accumulators in vector registers (kr_microtile.h, rule 3). Whether it does is up to the
compiler: the loops over rows and vectors must be unrolled completely, or the accumulators are
an array on the stack and every FMA waits on a load and a store. clang once unrolled them only
partly in rung 7 (KR_UNROLL in kr_common.h), and `small` ran at a third of gcc's speed with no
test failing. So these tests read the machine code, as notebook 04 does, for gcc and clang and
for every ISA they can target here (x86 natively, aarch64 cross-compiled): some innermost loop
must do a whole number of the tile's steps of k (a multiple of MR x NV FMAs) without touching
the stack. No timing: the machine code says it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from krypton import kernels, machine

CSRC = Path(__file__).resolve().parent.parent / "csrc"

# name: (compiler command, flags that select the ISA, objdump, the package that provides them)
BUILDS = {
    "gcc avx512": (["gcc"], ["-march=x86-64-v4"], "objdump", "gcc"),
    "gcc avx2": (["gcc"], ["-mavx2", "-mfma"], "objdump", "gcc"),
    "clang avx512": (["clang"], ["-march=x86-64-v4"], "objdump", "clang"),
    "clang avx2": (["clang"], ["-mavx2", "-mfma"], "objdump", "clang"),
    "gcc neon": (["aarch64-linux-gnu-gcc"], ["-march=armv8-a"], "aarch64-linux-gnu-objdump",
                 "gcc-aarch64-linux-gnu"),
    "clang neon": (["clang", "--target=aarch64-linux-gnu"], ["-march=armv8-a"],
                   "aarch64-linux-gnu-objdump", "clang gcc-aarch64-linux-gnu"),
}
JUMP_BACK = re.compile(r"\s(?:0x)?([0-9a-f]+) <[^>]*>\s*(//.*)?$")  # GNU aarch64: "// b.any"
FMA = re.compile(r"\t(vfmadd\d*ps|fmla)\s")
STACK = re.compile(r"\(%rsp|\[sp\b")   # a load or store at the stack pointer: a spill slot
# A vector loaded from the stack: x86's `op ..(%rsp), %?mm` (AT&T: the source first, so an
# FMA's memory operand too), AArch64's ldr/ldp/ld1r of a q, d or s register or of v lanes.
VECTOR_FROM_STACK = re.compile(r"\(%rsp[^)]*\),.*%[xyz]mm\d"
                               r"|\tld(?:r|p|ur|1r?)\t[{]?[qdsv]\d.*\[sp\b")
CALL_OR_RETURN = re.compile(r"\t(?:call|ret|bl|blr)\b")
FUNCTION = re.compile(r"^[0-9a-f]+ <([\w.]+)>:\n(.*?)(?=\n\n|\Z)", re.S | re.M)


def innermost_loops(listing: str) -> list[list[str]]:
    """The loops of an objdump listing that contain no other loop: from a backward jump's
    target to the jump."""
    lines = [line for line in listing.splitlines() if re.match(r"\s+[0-9a-f]+:", line)]
    addresses = [int(line.split(":")[0], 16) for line in lines]
    where = {address: i for i, address in enumerate(addresses)}
    loops = []
    for end, line in enumerate(lines):
        jump = JUMP_BACK.search(line)
        target = int(jump.group(1), 16) if jump else None
        if target is not None and target < addresses[end] and target in where:
            loops.append((where[target], end))
    return [lines[start:end + 1] for start, end in loops
            if not any(start <= s and e < end for s, e in loops if (s, e) != (start, end))]


def build(rung: str, name: str, out: Path) -> str:
    compiler, flags, objdump, package = BUILDS[name]
    if shutil.which(compiler[0]) is None or shutil.which(objdump) is None:
        pytest.skip(f"{name}: no {compiler[0]} or {objdump} here (apt install {package})")
    isa = name.split()[1]
    obj = out / f"{rung}.o"
    as_the_seam = ["-fno-version-loops-for-strides"] if compiler[0].endswith("gcc") else []
    command = [*compiler, "-O3", "-std=gnu11", "-fPIC", *flags, *as_the_seam,
               f"-DKR_ISA={machine.ISA_MACROS[isa]}", f"-I{CSRC}", "-c", str(CSRC / f"{rung}.c"),
               "-o", str(obj)]
    built = subprocess.run(command, capture_output=True, text=True)
    cross_clang = any(arg.startswith("--target") for arg in compiler[1:])
    if built.returncode != 0 and cross_clang and "stdint.h" in built.stderr:
        pytest.skip(f"{name}: clang has no aarch64 headers here (apt install {package})")
    assert built.returncode == 0, f"{' '.join(command)} failed:\n{built.stderr}"
    return subprocess.run([objdump, "-d", "--no-show-raw-insn", str(obj)], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("rung", ["packed", "small"])
@pytest.mark.parametrize("name", list(BUILDS))
def test_the_full_tile_keeps_its_accumulators_in_registers(rung, name, tmp_path):
    isa = name.split()[1]
    mr, nr = kernels.DEFAULT_MICROTILE[isa]   # the ISA's default tile, from kr_microtile.h
    nv = nr // machine.VECTOR_WIDTH[isa]
    loops = innermost_loops(build(rung, name, tmp_path))
    found = [(sum(bool(FMA.search(line)) for line in body),
              sum(bool(STACK.search(line)) for line in body)) for body in loops]
    tiles = [(fmas, stack) for fmas, stack in found if fmas and fmas % (mr * nv) == 0]
    assert any(stack == 0 for _, stack in tiles), (
        f"{rung} built by {name}: no innermost loop does whole steps of the {mr} x {nv}-vector "
        f"tile ({mr * nv} FMAs each) in registers; loops with FMAs (FMAs, stack accesses): "
        f"{sorted(f for f in found if f[0])[-8:]}")


@pytest.mark.parametrize("name", list(BUILDS))
def test_no_tile_loop_of_rung_7_reads_vectors_from_the_stack(name, tmp_path):
    # Rung 7 inlines many copies of the micro-kernel (A packed or in place, tall tiles, edges),
    # each with its own k loop; none may keep accumulators, B's vectors or A's broadcasts on the
    # stack (the step's values reloaded at every pass). clang once did, unrolling the k loop of
    # the tall and in-place copies on AArch64 (KR_UNROLL_K in kr_common.h), and gcc with NEON
    # tall tiles of 11 rows (KR_TALL_ROWS). A loop that calls or returns is not a tile's loop
    # (the listing's loops are found from backward jumps, and may take in an epilogue).
    listing = build("small", name, tmp_path)
    found = []
    for function, body in FUNCTION.findall(listing):
        for loop in innermost_loops(body):
            fmas = sum(bool(FMA.search(line)) for line in loop)
            if fmas and not any(CALL_OR_RETURN.search(line) for line in loop):
                found.append((function, fmas, sum(bool(VECTOR_FROM_STACK.search(line))
                                                  for line in loop)))
    assert found, f"small built by {name}: no loop with FMAs found; is the listing empty?"
    reloading = [loop for loop in found if loop[2]]
    assert not reloading, (
        f"small built by {name}: loops that load vectors from the stack (function, FMAs, "
        f"loads from the stack): {reloading}")


def test_loops_are_found_with_aarch64s_branch_comments():
    listing = """
  10:	ldr	q0, [x1]
  14:	fmla	v1.4s, v0.4s, v2.s[0]
  18:	subs	x2, x2, #0x1
  1c:	b.ne	10 <kr_loop+0x10>  // b.any
  20:	ldr	q3, [sp, #16]
  24:	ret
"""
    (loop,) = innermost_loops(listing)
    assert len(loop) == 4 and "fmla" in loop[1] and not STACK.search("".join(loop))
    assert STACK.search("ldr q3, [sp, #16]") and STACK.search("vmovaps %zmm1,0x40(%rsp)")
    for reload in ("vmovaps 0x40(%rsp),%zmm1", "vfmadd231ps 0x80(%rsp),%zmm2,%zmm3",
                   "\tldr\tq6, [sp, #368]", "\tldp\tq1, q2, [sp, #32]", "\tld1r\t{v0.4s}, [sp]"):
        assert VECTOR_FROM_STACK.search(reload), reload
    for other in ("vmovaps %zmm1,0x40(%rsp)", "mov    0xd0(%rsp),%r13", "\tstr\tq0, [sp, #368]",
                  "\tldr\tx2, [sp, #208]", "vmovups (%rax),%zmm1"):
        assert not VECTOR_FROM_STACK.search(other), other
