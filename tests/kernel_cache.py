"""What the tests that inspect the kernel cache share: which files in it are built modules."""

from pathlib import Path


def built_modules(cache: Path) -> list[Path]:
    """The kernel modules in the cache (besides the ISA table, csrc/isa.c, which the first
    compile of a process reads, and the short way into the kernels, csrc/kr_fastcall.c, which
    the first product builds: one module more each, whatever the test compiles)."""
    return sorted(p for p in cache.glob("_kr_*")
                  if not p.name.endswith(".sha256")
                  and not p.name.startswith(("_kr_isa_", "_kr_fastcall_")))
