/* isa.c: the ISA tables of kr_simd.h and kr_microtile.h, for Python to read.
 *
 * Compiled once for any target: the tables describe every ISA, not only the one compiled for,
 * so krypton.machine reads them here instead of keeping copies. */
#include "krypton.h"
#include "kr_microtile.h"

#define KR_DESCRIBE(isa)                                                                        \
    case KR_ISA_##isa:                                                                          \
        *info = (kr_isa_info){.name = KR_ISA_NAME_##isa, .vector_width = KR_VLEN_##isa,         \
                              .vector_registers = KR_VREGS_##isa, .mr = KR_MR_##isa,            \
                              .nr = KR_NR_##isa};                                               \
        return KR_OK;

int kr_describe_isa(int64_t isa, kr_isa_info *info)
{
    switch (isa) {
    KR_DESCRIBE(SCALAR)
    KR_DESCRIBE(NEON)
    KR_DESCRIBE(AVX2)
    KR_DESCRIBE(AVX512)
    default:
        return KR_EINVAL;
    }
}

int64_t kr_registers_needed(int64_t mr, int64_t vectors_per_row)
{
    return KR_REGISTERS_NEEDED(mr, vectors_per_row);
}
