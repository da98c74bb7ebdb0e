/* Rung 5 - packed: packing, and the five loops of BLIS around the micro-kernel.
 *
 * Keeps rung 4 (the KR_MR x KR_NR register-blocked micro-kernel, now in kr_microkernel.h) and
 * adds one idea: before computing, copy ("pack") the blocks of A and B the micro-kernel will
 * read into small contiguous buffers, laid out in exactly the order it reads them (kr_pack.h).
 * Then every load in the micro-kernel is sequential, whatever the strides of A and B were (a
 * transposed view costs nothing extra: the packer reads it in its own order), and the panels
 * are padded with zeros to whole MR and NR, so the micro-kernel never needs a scalar tail.
 *
 * The five loops are one function, as in BLIS's gemmlike (bls_gemm_bp_var1; Van Zee & van de
 * Geijn 2015). Each block is sized for one level of the cache (Low et al. 2016), so that what
 * the loop inside reads again and again stays there (the defaults: krypton.kernels.
 * default_knobs; `python -m krypton.bench` measures them):
 *
 *   jc  nc columns of C      the kc x nc block of B lives in L3
 *   pc  kc of the depth      pack that block of B
 *   ic  mc rows of C         pack the mc x kc block of A, which lives in L2
 *   jr  NR columns           one kc x NR micro-panel of B, which lives in L1
 *   ir  MR rows              the micro-kernel: an MR x NR tile of C in registers
 *
 * Rung 6 (parallel.c) is this function with a range of the loops per thread; rung 7 (small.c)
 * reads small operands in place instead of packing them.
 */
#include "krypton.h"
#include "kr_pack.h"
#include "kr_workspace.h"

/* C = A*B for an M x N C with strides (rsc, csc). */
static int kr_packed_five_loops(int64_t M, int64_t N, int64_t K, const kr_operand *A,
                                const kr_operand *B, float *restrict C, int64_t rsc,
                                int64_t csc, const kr_knobs *knobs)
{
    const kr_blocks max = kr_blocks_for(M, N, K, knobs);
    float *Ap = kr_thread_buffer(KR_BUFFER_A, max.mc, max.kc);
    float *Bp = kr_thread_buffer(KR_BUFFER_B, max.nc, max.kc);
    if (!Ap || !Bp)
        return KR_ENOMEM;
    const int64_t panel_stride = max.kc * KR_NR;

    for (int64_t jc = 0; jc < N; jc += max.nc) {            /* jc: nc columns, B block in L3 */
        const int64_t nc = kr_min(max.nc, N - jc);
        for (int64_t pc = 0; pc < K; pc += max.kc) {        /* pc: kc of the depth */
            const int64_t kc = kr_min(max.kc, K - pc);
            const kr_view b = kr_pack_b(B, pc, jc, kc, nc, 0, nc, Bp, panel_stride);
            for (int64_t ic = 0; ic < M; ic += max.mc) {    /* ic: mc rows, A block in L2 */
                const int64_t mc = kr_min(max.mc, M - ic);
                const kr_view a = kr_pack_a(A, ic, pc, mc, kc, Ap);
                for (int64_t jr = 0; jr < nc; jr += KR_NR)         /* jr: B micro-panel, L1 */
                    for (int64_t ir = 0; ir < mc; ir += KR_MR)     /* ir: tile in registers */
                        kr_microkernel(kr_min(KR_MR, mc - ir), kr_min(KR_NR, nc - jr), kc,
                                       a.data + ir / KR_MR * a.ps, a.rs, a.cs, a.ps,
                                       b.data + jr / KR_NR * b.ps, b.rs,
                                       C + (ic + ir) * rsc + (jc + jr) * csc, rsc, csc,
                                       pc == 0);
            }
        }
    }
    return KR_OK;
}

int kr_sgemm_packed(int64_t M, int64_t N, int64_t K,
                    const float *restrict A, int64_t rsa, int64_t csa,
                    const float *restrict B, int64_t rsb, int64_t csb,
                    float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->mc < 1 || knobs->kc < 1 || knobs->nc < 1)
        return KR_EINVAL;
    if (kr_trivial_product(M, N, K, C, ldc))
        return KR_OK;
    const kr_operand a = {.data = A, .rs = rsa, .cs = csa};
    const kr_operand b = {.data = B, .rs = rsb, .cs = csb};
    return kr_packed_five_loops(M, N, K, &a, &b, C, ldc, 1, knobs);
}
