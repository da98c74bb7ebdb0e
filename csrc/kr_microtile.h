/* kr_microtile.h: the default MR x NR micro-tile per ISA, defined once, here.
 *
 * Read by every rung with a micro-kernel (regblock.c, and packed, parallel and small through
 * kr_microkernel.h) and, through csrc/isa.c, by Python (krypton.kernels.DEFAULT_MICROTILE).
 * A module compiled with -DKR_MR=.. -DKR_NR=.. (krypton.get_kernel(..., mr=, nr=)) overrides
 * them; the checks at the end refuse a tile that cannot work.
 *
 * Notebook 04's model picks the tile: per step of k the micro-kernel does MR x NV vector FMAs
 * (NV = NR / VLEN) for NV vector loads of B and MR broadcasts of A, and runs at the FMA peak
 * only if
 *   1. MR x NV accumulators >= FMA latency x FMA pipes (about 4 cycles x 1 or 2 pipes on x86,
 *      x 2 to 4 on ARM): otherwise the pipes wait for results;
 *   2. the loads within the load ports: NV / (MR x NV) whole-vector loads per FMA <= vector
 *      load ports / FMA pipes (2 / 2 on Zen 3 and 4 and most Intel cores), and (MR + NV) /
 *      (MR x NV) loads of any width per FMA <= load ports / FMA pipes (3 / 2 on Zen 3 and 4,
 *      where a 4-byte broadcast of A takes the third port): otherwise they wait for operands;
 *   3. KR_REGISTERS_NEEDED(MR, NV) <= the ISA's vector registers: otherwise the compiler
 *      spills accumulators to the stack inside the k loop.
 * Among the tiles that pass, NV = 2 vectors of B: NR stays small, so a matrix pads little to a
 * whole number of micro-tiles. How each default was chosen:
 *   AVX2 6 x 16: 12 accumulators (8 needed with 2 pipes), 0.67 loads per FMA, 15 of 16
 *     registers; measured on Zen 3: within the noise of the fastest tiles of notebook 04's map
 *     of the micro-kernel alone (operands in L1), and in interleaved A/B runs of the packed rung
 *     as fast as 4 x 24 and 5 x 16, and faster than the tall NR = 8 tiles (8 x 8, 12 x 8) that
 *     win regblock's map, where B is read in place.
 *   AVX-512 8 x 32: the model's choice, 16 accumulators (8 needed with Intel's 2 pipes, 4 with
 *     Zen 4's one full-width pipe), 0.63 loads per FMA, 19 of 32 registers; 16 accumulators in
 *     8 x 32 pad less than 24 in 6 x 64 (784 columns pad to 800, not 832). Measured on an
 *     Intel Xeon with two 512-bit pipes (Sapphire Rapids class): in interleaved A/B runs of
 *     the packed rung as fast as 12 x 32 (BLIS's Skylake-X tile, 24 accumulators) and 14 x 32;
 *     alone (operands in L1, a quiet core) each of 8 x 32, 12 x 32, 14 x 32 and 6 x 64 runs
 *     within a few percent of the probe's peak, so what the rung loses beyond that is C's
 *     traffic and the packing, not the tile (check: notebook 04's map of the micro-kernel
 *     alone beside the rung's).
 *   NEON 8 x 8: the model's choice, 16 accumulators (4-cycle latency x 4 pipes on the widest
 *     cores), 0.63 loads per FMA, 19 of 32 registers. 8 x 12 (24 in 28) fits on paper, but
 *     gcc 12 keeps accumulators on the stack in its k loop (check: cross-compile with
 *     aarch64-linux-gnu-gcc -O3 -S and look for `[sp` among the fmla instructions).
 *   scalar 4 x 2: 8 independent chains of single floats for the plain C fallback.
 * `python -m krypton.autotune` measures every tile that fits on your machine. */
#ifndef KR_MICROTILE_H
#define KR_MICROTILE_H
#include "kr_simd.h"

#define KR_MR_SCALAR 4
#define KR_NR_SCALAR 2
#define KR_MR_NEON 8
#define KR_NR_NEON 8
#define KR_MR_AVX2 6
#define KR_NR_AVX2 16
#define KR_MR_AVX512 8
#define KR_NR_AVX512 32

#define KR_REGISTERS_NEEDED(mr, vectors_per_row) ((mr) * (vectors_per_row) + (vectors_per_row) + 1)

#if KR_ISA == KR_ISA_AVX512
#  define KR_MR_DEFAULT KR_MR_AVX512
#  define KR_NR_DEFAULT KR_NR_AVX512
#elif KR_ISA == KR_ISA_AVX2
#  define KR_MR_DEFAULT KR_MR_AVX2
#  define KR_NR_DEFAULT KR_NR_AVX2
#elif KR_ISA == KR_ISA_NEON
#  define KR_MR_DEFAULT KR_MR_NEON
#  define KR_NR_DEFAULT KR_NR_NEON
#else
#  define KR_MR_DEFAULT KR_MR_SCALAR
#  define KR_NR_DEFAULT KR_NR_SCALAR
#endif
#ifndef KR_MR
#  define KR_MR KR_MR_DEFAULT
#endif
#ifndef KR_NR
#  define KR_NR KR_NR_DEFAULT
#endif
#define KR_NV (KR_NR / KR_VLEN)   /* vectors per row of the micro-tile */

#if KR_MR < 1 || KR_NR < 1 || KR_NR % KR_VLEN != 0
#  error "KR_MR must be positive and KR_NR a positive multiple of the vector width KR_VLEN"
#endif
#if KR_REGISTERS_NEEDED(KR_MR, KR_NV) > KR_VREGS
#  error "KR_MR x KR_NR needs more vector registers than the ISA has"
#endif
#endif
