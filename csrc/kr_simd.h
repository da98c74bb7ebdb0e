/* kr_simd.h: one small vocabulary of vector operations, mapped onto each ISA.
 *
 * The rungs from `simd` up are written once against this vocabulary:
 *   kr_vec          one vector register of KR_VLEN floats
 *   kr_load/kr_store          aligned-or-not full-width load and store
 *   kr_load_n/kr_store_n      the first n lanes only (n < KR_VLEN): the edge of a row
 *   kr_set1         broadcast one float to every lane
 *   kr_fma(a, b, c) a * b + c in one instruction, one rounding
 *   kr_sum4(a, b, c, d, out)  the lane sums of four vectors, sharing the shuffles
 *   KR_IN_REGISTER(v)  an empty asm statement that makes the compiler hold v in a register
 *                   at that point. x86 FMAs can take one operand straight from memory, and gcc
 *                   likes to fold a load into every FMA that uses it: one load of B becomes
 *                   four, and on a core that loads one 512-bit vector per cycle the kernel
 *                   waits on loads, not FMAs (csrc/small.c, kr_dot_step).
 *
 * The ISA is chosen at compile time. By default it is the widest one the compiler
 * targets (with -march=native: what this CPU has). Defining KR_ISA forces a narrower
 * one, so a notebook can compare AVX2 with AVX-512 on the same machine.
 */
#ifndef KR_SIMD_H
#define KR_SIMD_H
#include <stdint.h>

#define KR_ISA_SCALAR 0
#define KR_ISA_NEON 1
#define KR_ISA_AVX2 2
#define KR_ISA_AVX512 3

/* Every ISA's name, float lanes per vector register and architectural vector registers (for
 * scalar code: a typical count of float registers). The branches below pick one row for the
 * code; csrc/isa.c reports them all, so Python never keeps a copy. */
#define KR_ISA_NAME_SCALAR "scalar"
#define KR_VLEN_SCALAR 1
#define KR_VREGS_SCALAR 16
#define KR_ISA_NAME_NEON "neon"
#define KR_VLEN_NEON 4
#define KR_VREGS_NEON 32
#define KR_ISA_NAME_AVX2 "avx2"
#define KR_VLEN_AVX2 8
#define KR_VREGS_AVX2 16
#define KR_ISA_NAME_AVX512 "avx512"
#define KR_VLEN_AVX512 16
#define KR_VREGS_AVX512 32

#ifndef KR_ISA
#  if defined(__AVX512F__)
#    define KR_ISA KR_ISA_AVX512
#  elif defined(__AVX2__) && defined(__FMA__)
#    define KR_ISA KR_ISA_AVX2
#  elif defined(__ARM_NEON) && defined(__aarch64__)
#    define KR_ISA KR_ISA_NEON
#  else
#    define KR_ISA KR_ISA_SCALAR
#  endif
#endif

#if KR_ISA == KR_ISA_AVX512
#  if !defined(__AVX512F__)
#    error "KR_ISA=AVX512 was asked for, but the compiler does not target AVX-512 (-mavx512f)"
#  endif
#  include <immintrin.h>
#  define KR_VLEN KR_VLEN_AVX512
#  define KR_VREGS KR_VREGS_AVX512
typedef __m512 kr_vec;
static inline kr_vec kr_zero(void) { return _mm512_setzero_ps(); }
static inline kr_vec kr_set1(float x) { return _mm512_set1_ps(x); }
static inline kr_vec kr_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void kr_store(float *p, kr_vec v) { _mm512_storeu_ps(p, v); }
static inline kr_vec kr_fma(kr_vec a, kr_vec b, kr_vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline kr_vec kr_add(kr_vec a, kr_vec b) { return _mm512_add_ps(a, b); }
#  define KR_IN_REGISTER(v) __asm__("" : "+v"(v))
/* The lane sums of four vectors at once: fold 512 -> 256 -> 128 bits, pairing the vectors so
 * that every add works on full registers, then sum the four lanes left of each. */
static inline void kr_sum4(kr_vec a, kr_vec b, kr_vec c, kr_vec d, float out[4]) {
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44),   /* a.lo | b.lo */
                                    _mm512_shuffle_f32x4(a, b, 0xEE));  /* a.hi | b.hi */
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44),
                                    _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88),         /* 128-bit blocks: */
                             _mm512_shuffle_f32x4(ab, cd, 0xDD));        /* a | b | c | d */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));                    /* swap lane pairs */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));                    /* swap lane halves */
    const __m512i first_lanes = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(first_lanes, v)));
}
/* AVX-512 mask registers make a partial row one instruction: lanes >= n are not touched. */
static inline __mmask16 kr_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }
static inline kr_vec kr_load_n(const float *p, int64_t n) {
    return _mm512_maskz_loadu_ps(kr_mask(n), p);
}
static inline void kr_store_n(float *p, kr_vec v, int64_t n) {
    _mm512_mask_storeu_ps(p, kr_mask(n), v);
}

#elif KR_ISA == KR_ISA_AVX2
#  if !defined(__AVX2__) || !defined(__FMA__)
#    error "KR_ISA=AVX2 was asked for, but the compiler does not target AVX2+FMA (-mavx2 -mfma)"
#  endif
#  include <immintrin.h>
#  define KR_VLEN KR_VLEN_AVX2
#  define KR_VREGS KR_VREGS_AVX2
typedef __m256 kr_vec;
static inline kr_vec kr_zero(void) { return _mm256_setzero_ps(); }
static inline kr_vec kr_set1(float x) { return _mm256_set1_ps(x); }
static inline kr_vec kr_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void kr_store(float *p, kr_vec v) { _mm256_storeu_ps(p, v); }
static inline kr_vec kr_fma(kr_vec a, kr_vec b, kr_vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline kr_vec kr_add(kr_vec a, kr_vec b) { return _mm256_add_ps(a, b); }
#  define KR_IN_REGISTER(v) __asm__("" : "+v"(v))
static inline void kr_sum4(kr_vec a, kr_vec b, kr_vec c, kr_vec d, float out[4]) {
    const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);  /* pairs of lanes */
    const __m256 abcd = _mm256_hadd_ps(ab, cd);      /* per 128-bit half: a | b | c | d */
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
/* AVX2 has no mask registers; maskload/maskstore take the mask as a vector of lane flags. */
static inline __m256i kr_mask(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
}
static inline kr_vec kr_load_n(const float *p, int64_t n) { return _mm256_maskload_ps(p, kr_mask(n)); }
static inline void kr_store_n(float *p, kr_vec v, int64_t n) { _mm256_maskstore_ps(p, kr_mask(n), v); }

#elif KR_ISA == KR_ISA_NEON
#  if !defined(__ARM_NEON)
#    error "KR_ISA=NEON was asked for, but the compiler does not target NEON"
#  endif
#  include <arm_neon.h>
#  define KR_VLEN KR_VLEN_NEON
#  define KR_VREGS KR_VREGS_NEON
typedef float32x4_t kr_vec;
static inline kr_vec kr_zero(void) { return vdupq_n_f32(0.0f); }
static inline kr_vec kr_set1(float x) { return vdupq_n_f32(x); }
static inline kr_vec kr_load(const float *p) { return vld1q_f32(p); }
static inline void kr_store(float *p, kr_vec v) { vst1q_f32(p, v); }
static inline kr_vec kr_fma(kr_vec a, kr_vec b, kr_vec c) { return vfmaq_f32(c, a, b); }
static inline kr_vec kr_add(kr_vec a, kr_vec b) { return vaddq_f32(a, b); }
#  define KR_IN_REGISTER(v) __asm__("" : "+w"(v))
static inline void kr_sum4(kr_vec a, kr_vec b, kr_vec c, kr_vec d, float out[4]) {
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}
/* NEON has no masked memory access, but a vector is only four lanes: a partial row is a 64-bit
 * half and a lane, never touching a byte past n (no round trip through memory). */
static inline kr_vec kr_load_n(const float *p, int64_t n) {
    const float32x2_t zero = vdup_n_f32(0.0f);
    if (n >= 2)
        return vcombine_f32(vld1_f32(p), n == 3 ? vld1_lane_f32(p + 2, zero, 0) : zero);
    return vcombine_f32(n == 1 ? vld1_lane_f32(p, zero, 0) : zero, zero);
}
static inline void kr_store_n(float *p, kr_vec v, int64_t n) {
    if (n >= 2) {
        vst1_f32(p, vget_low_f32(v));
        if (n == 3)
            vst1q_lane_f32(p + 2, v, 2);
    } else if (n == 1) {
        vst1q_lane_f32(p, v, 0);
    }
}

#elif KR_ISA == KR_ISA_SCALAR
#  define KR_VLEN KR_VLEN_SCALAR
#  define KR_VREGS KR_VREGS_SCALAR
typedef float kr_vec;
static inline kr_vec kr_zero(void) { return 0.0f; }
static inline kr_vec kr_set1(float x) { return x; }
static inline kr_vec kr_load(const float *p) { return *p; }
static inline void kr_store(float *p, kr_vec v) { *p = v; }
static inline kr_vec kr_fma(kr_vec a, kr_vec b, kr_vec c) { return a * b + c; }
static inline kr_vec kr_add(kr_vec a, kr_vec b) { return a + b; }
#  define KR_IN_REGISTER(v) ((void)(v))
static inline void kr_sum4(kr_vec a, kr_vec b, kr_vec c, kr_vec d, float out[4]) {
    out[0] = a, out[1] = b, out[2] = c, out[3] = d;
}
static inline kr_vec kr_load_n(const float *p, int64_t n) { return n > 0 ? *p : 0.0f; }
static inline void kr_store_n(float *p, kr_vec v, int64_t n) { if (n > 0) *p = v; }

#else
#  error "KR_ISA must be one of KR_ISA_SCALAR, KR_ISA_NEON, KR_ISA_AVX2, KR_ISA_AVX512"
#endif

/* kr_transpose_block(src, lds, dst, ldd): dst[c * ldd + r] = src[r * lds + c] for r, c <
 * KR_TRANSPOSE_BLOCK, in registers: one load and one store per row instead of a move per float.
 * The packing of a transposed B uses it (kr_pack.h). Defined only where the ISA has the
 * shuffles (KR_TRANSPOSE_BLOCK is then its size), so a caller guards it with #ifdef: a call
 * the ISA cannot compile is an error at compile time, not a branch never taken at run time. */
#if KR_ISA == KR_ISA_AVX512 || KR_ISA == KR_ISA_AVX2
/* 8 x 8 in 24 shuffles, the classic three stages: interleave pairs of rows (unpack), then
 * pairs of pairs (shuffle), then swap 128-bit halves (permute2f128). */
#  define KR_TRANSPOSE_BLOCK 8
static inline void kr_transpose_block(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8], t[8], s[8];
    for (int i = 0; i < 8; ++i)
        r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {       /* t[i] = r[i]0 r[i+1]0 r[i]1 r[i+1]1 | ... */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {       /* four rows' worth of one column per 128-bit half */
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {          /* rows 0-3 from the low halves, 4-7 from the high */
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
    }
}
#elif KR_ISA == KR_ISA_NEON
/* 4 x 4 in 8 shuffles: transpose the 2 x 2 blocks of floats (trn1/trn2 on 32-bit lanes), then
 * the 2 x 2 blocks of pairs (trn1/trn2 on 64-bit lanes). */
#  define KR_TRANSPOSE_BLOCK 4
static inline void kr_transpose_block(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    const float32x4_t r0 = vld1q_f32(src), r1 = vld1q_f32(src + lds);
    const float32x4_t r2 = vld1q_f32(src + 2 * lds), r3 = vld1q_f32(src + 3 * lds);
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));   /* r0_0 r1_0 r0_2 r1_2 */
    const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));   /* r0_1 r1_1 r0_3 r1_3 */
    const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
    const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
    vst1q_f32(dst, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(dst + ldd, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(dst + 2 * ldd, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(dst + 3 * ldd, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}
#endif

#endif
