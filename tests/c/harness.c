/* tests/c/harness.c: a correctness harness for one rung of the kernel ladder, in plain C11.
 *
 * It needs no Python, so it runs wherever a rung can be compiled: under another compiler, or
 * cross-compiled for aarch64 and run under qemu-user (.ci/portability builds and runs it for
 * every rung, compiler and ISA). Build it with the rung it tests, named by KR_RUNG:
 *
 *   cc -std=c11 -O2 -Icsrc -DKR_RUNG=packed tests/c/harness.c csrc/packed.c -lm -pthread
 *   ./a.out            every case          ./a.out --quick    a smaller list, for emulators
 *
 * Each case calls kr_sgemm_<rung> once, for one shape, layout, set of knobs and thread count,
 * and checks four things:
 *   - every element of C agrees with a double-precision reference, within 1e-5 * sqrt(K)
 *     of sum_k |A[i][k] * B[k][j]| (float32 rounding grows like sqrt(K) times that sum);
 *   - nothing outside the M x N result is written: C sits in a buffer whose guard zones
 *     (before it, after it and in the ldc - N padding of every row) hold a NaN pattern
 *     that must survive bit for bit; the result itself starts as NaN, so a rung that reads C
 *     before writing it (C += instead of C =) fails too;
 *   - A and B are not written, and the elements between and around them (the gaps of a
 *     strided view) are NaN, so a rung that reads one and uses it gets NaN in its result;
 *   - with 2 or 3 threads the result is bitwise equal to the one-thread result: the threads
 *     split rows and columns of C, never the sums.
 * A rung may decline a layout it does not support (simd and regblock need unit-stride B rows;
 * the Python side copies B for them): KR_EINVAL for a B with a column stride other than 1 is
 * counted as "declined", and C must then be untouched. Any other nonzero return is a failure.
 *
 * Inputs are deterministic (a fixed-seed xorshift generator), so a failure repeats exactly.
 * Every failure prints one line naming the case (a crash too, on stderr); the exit status is 1
 * if any case failed.
 */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "krypton.h"

#ifndef KR_RUNG
#  error "compile with -DKR_RUNG=<name>, the rung whose kr_sgemm_<name> is linked in (e.g. -DKR_RUNG=packed)"
#endif
#define KR_PASTE(a, b) a##b
#define KR_FUNCTION(rung) KR_PASTE(kr_sgemm_, rung)
#define KR_STRING(x) #x
#define KR_NAME(x) KR_STRING(x)

/* The one signature of krypton.h, declared again for the rung under test, so that a rung
 * krypton.h does not list yet can be tested too. */
int KR_FUNCTION(KR_RUNG)(int64_t M, int64_t N, int64_t K,
                         const float *A, int64_t rsa, int64_t csa,
                         const float *B, int64_t rsb, int64_t csb,
                         float *C, int64_t ldc, const kr_knobs *knobs);

#define GUARD 37                        /* floats of guard zone before and after each buffer */
#define MAX_FAILURE_LINES 40            /* then only count them */
static const uint32_t GUARD_BITS = 0x7fc0a5a5u;   /* a quiet NaN no arithmetic produces */
static const uint32_t UNSET_BITS = 0x7fc05a5au;   /* the result region before the call */

typedef struct { int64_t M, N, K; int quick; } shape;

/* 0 and 1, primes, and sizes that are no multiple of any block size, tall and wide; the
 * ones marked quick (1) also run under --quick. */
static const shape SHAPES[] = {
    {0, 0, 0, 1}, {0, 7, 5, 1}, {7, 0, 5, 1}, {7, 5, 0, 1}, {1, 1, 0, 0},
    {1, 1, 1, 1}, {1, 13, 1, 0}, {13, 1, 1, 0}, {1, 1, 37, 1}, {2, 3, 5, 1}, {3, 2, 1, 0},
    {7, 13, 11, 1}, {17, 19, 23, 1}, {31, 37, 29, 0}, {41, 1, 43, 1}, {1, 47, 53, 1},
    {67, 61, 3, 1}, {257, 5, 7, 1}, {5, 257, 7, 0}, {97, 1, 131, 0}, {1, 97, 131, 0},
    {9, 3, 17, 1}, {3, 9, 17, 0}, {131, 67, 73, 0}, {19, 23, 521, 0}, {37, 41, 261, 1},
    {203, 197, 101, 0},
};

/* How A and B are laid out, as element strides: rs is the step to the next row, cs to the
 * next column. The extra row and column widths make a slice of a larger matrix. ldc_extra is
 * C's row padding, which must not be written. */
typedef struct {
    const char *name;
    int a_transposed, b_transposed;   /* stored column by column, as NumPy's x.T */
    int64_t a_extra, b_extra;         /* the storage is this much wider than the matrix */
    int64_t a_step, b_step;           /* step between neighbours along a stored row */
    int64_t ldc_extra;
} layout;

static const layout LAYOUTS[] = {
    {"row-major",            0, 0, 0, 0, 1, 1, 0},
    {"A^T",                  1, 0, 0, 0, 1, 1, 3},
    {"B^T",                  0, 1, 0, 0, 1, 1, 1},
    {"A^T B^T",              1, 1, 0, 0, 1, 1, 5},
    {"sliced",               0, 0, 3, 5, 1, 1, 2},
    {"strided (every 2nd)",  0, 0, 1, 2, 2, 3, 4},
    {"sliced A^T B^T",       1, 1, 2, 3, 1, 1, 7},
};

/* Knob sets: each rung reads the fields it has. Small odd sizes make every block boundary
 * fall inside the matrix; "ones" makes every loop step by a single element. */
typedef struct { const char *name; kr_knobs knobs; int64_t max_volume; } knob_set;

static const knob_set KNOBS[] = {
    {"typical", {.loop_order = 1, .tile_m = 64, .tile_n = 256, .tile_k = 128,
                 .mc = 120, .kc = 256, .nc = 4096}, INT64_MAX},
    {"odd", {.loop_order = 0, .tile_m = 5, .tile_n = 7, .tile_k = 3,
             .mc = 7, .kc = 5, .nc = 11}, INT64_MAX},
    {"primes", {.loop_order = 1, .tile_m = 13, .tile_n = 17, .tile_k = 19,
                .mc = 9, .kc = 33, .nc = 37}, INT64_MAX},
    /* one element per step makes calls slow, so only on small products */
    {"ones", {.loop_order = 0, .tile_m = 1, .tile_n = 1, .tile_k = 1,
              .mc = 1, .kc = 1, .nc = 1}, 30000},
};

static const int64_t THREADS[] = {1, 2, 3};

#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

/* xorshift64*: small, fast, and the same numbers on every platform. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static float random_uniform(void)   /* in [-1, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    const uint64_t bits = rng_state * 0x2545f4914f6cdd1du;
    return (float)((double)(bits >> 40) / (double)(1u << 23) - 1.0);
}

static float from_bits(uint32_t bits) { float x; memcpy(&x, &bits, sizeof x); return x; }
static uint32_t to_bits(float x) { uint32_t bits; memcpy(&bits, &x, sizeof bits); return bits; }

static void *checked_malloc(size_t bytes)
{
    void *p = malloc(bytes > 0 ? bytes : 1);
    if (!p) {
        fprintf(stderr, "harness: out of memory allocating %zu bytes\n", bytes);
        exit(2);
    }
    return p;
}

/* A matrix stored with strides inside a NaN-filled buffer with guard zones. */
typedef struct { float *buffer, *data; int64_t size, rs, cs; } strided;

static strided lay_out(const float *values, int64_t rows, int64_t cols, int transposed,
                       int64_t extra, int64_t step)
{
    strided m;
    /* stored row by row (or column by column when transposed), `step` apart, with `extra`
     * unused elements at the end of each stored row */
    const int64_t inner = transposed ? rows : cols, outer = transposed ? cols : rows;
    const int64_t stored_row = inner * step + extra;
    m.cs = transposed ? stored_row : step;
    m.rs = transposed ? step : stored_row;
    const int64_t extent = outer * stored_row;
    m.size = GUARD + extent + GUARD;
    m.buffer = checked_malloc((size_t)m.size * sizeof(float));
    for (int64_t i = 0; i < m.size; ++i)
        m.buffer[i] = from_bits(GUARD_BITS);
    m.data = m.buffer + GUARD;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            m.data[r * m.rs + c * m.cs] = values[r * cols + c];
    return m;
}

static int failures = 0, passed = 0, declined = 0;

/* The case being run, so that a rung that crashes is named: the handler prints it and then dies
 * of the same signal. (stdio in a signal handler is not async-signal-safe; the process is
 * about to end, and the line is what the reader needs.) */
static const char *running = "no case yet";
static void name_the_crash(int sig)
{
    fprintf(stderr, "CRASH %s: signal %d\n", running, sig);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void report(const char *fmt_case, const char *what)
{
    if (++failures <= MAX_FAILURE_LINES)
        printf("FAIL %s: %s\n", fmt_case, what);
}

/* Checks C (ldc apart, inside buffer) against the reference; returns 1 if all is well. */
static int check_c(const char *label, const float *buffer, int64_t size, const float *C,
                   int64_t M, int64_t N, int64_t K, int64_t ldc,
                   const double *ref, const double *magnitude)
{
    char what[256];
    const double tolerance = 1e-5 * sqrt((double)(K > 1 ? K : 1));
    int64_t wrong = 0, first_i = -1, first_j = -1;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            const double got = C[i * ldc + j], want = ref[i * N + j];
            if (!(fabs(got - want) <= tolerance * magnitude[i * N + j])) {
                if (wrong++ == 0)
                    first_i = i, first_j = j;
            }
        }
    if (wrong) {
        const int64_t at = first_i * N + first_j;
        snprintf(what, sizeof what,
                 "C[%lld][%lld] = %.9g, expected %.9g (error %.3g > tolerance %.3g); "
                 "%lld of %lld elements wrong",
                 (long long)first_i, (long long)first_j, (double)C[first_i * ldc + first_j],
                 ref[at], fabs((double)C[first_i * ldc + first_j] - ref[at]),
                 tolerance * magnitude[at], (long long)wrong, (long long)(M * N));
        report(label, what);
        return 0;
    }
    /* The guard zones: before C, after its last row, and the padding of every row. */
    for (int64_t p = 0; p < size; ++p) {
        const int64_t offset = p - (int64_t)(C - buffer);
        const int inside = offset >= 0 && offset < M * ldc && offset % ldc < N;
        if (!inside && to_bits(buffer[p]) != GUARD_BITS) {
            const char *where = offset < 0 ? "before C" : offset >= M * ldc ? "after C's last row"
                                                                             : "in a row's padding";
            snprintf(what, sizeof what, "wrote %s (at row %lld, column %lld of ldc = %lld)", where,
                     (long long)(offset >= 0 ? offset / ldc : -1),
                     (long long)(offset >= 0 ? offset % ldc : offset), (long long)ldc);
            report(label, what);
            return 0;
        }
    }
    return 1;
}

static int untouched(const float *now, const float *before, int64_t size)
{
    return memcmp(now, before, (size_t)size * sizeof(float)) == 0;
}

static void run_shape(const shape *s, int quick)
{
    const int64_t M = s->M, N = s->N, K = s->K;
    float *a = checked_malloc((size_t)(M * K) * sizeof(float));
    float *b = checked_malloc((size_t)(K * N) * sizeof(float));
    double *ref = checked_malloc((size_t)(M * N) * sizeof(double));
    double *magnitude = checked_malloc((size_t)(M * N) * sizeof(double));
    for (int64_t i = 0; i < M * K; ++i) a[i] = random_uniform();
    for (int64_t i = 0; i < K * N; ++i) b[i] = random_uniform();
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double sum = 0.0, abs_sum = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const double term = (double)a[i * K + k] * (double)b[k * N + j];
                sum += term;
                abs_sum += fabs(term);
            }
            ref[i * N + j] = sum;
            magnitude[i * N + j] = abs_sum;
        }

    for (int l = 0; l < COUNT(LAYOUTS); ++l) {
        const layout *lay = &LAYOUTS[l];
        strided A = lay_out(a, M, K, lay->a_transposed, lay->a_extra, lay->a_step);
        strided B = lay_out(b, K, N, lay->b_transposed, lay->b_extra, lay->b_step);
        float *A_before = checked_malloc((size_t)A.size * sizeof(float));
        float *B_before = checked_malloc((size_t)B.size * sizeof(float));
        memcpy(A_before, A.buffer, (size_t)A.size * sizeof(float));
        memcpy(B_before, B.buffer, (size_t)B.size * sizeof(float));
        const int64_t ldc = N + lay->ldc_extra;
        const int64_t c_size = GUARD + M * ldc + GUARD;
        float *c_buffer = checked_malloc((size_t)c_size * sizeof(float));
        float *one_thread = checked_malloc((size_t)c_size * sizeof(float));

        for (int n = 0; n < COUNT(KNOBS); ++n) {
            if (M * N * K > KNOBS[n].max_volume)
                continue;
            for (int t = 0; t < COUNT(THREADS); ++t) {
                char label[256];
                snprintf(label, sizeof label,
                         "%s M=%lld N=%lld K=%lld %s (rsa=%lld csa=%lld rsb=%lld csb=%lld ldc=%lld) "
                         "knobs=%s threads=%lld", KR_NAME(KR_RUNG), (long long)M, (long long)N,
                         (long long)K, lay->name, (long long)A.rs, (long long)A.cs, (long long)B.rs,
                         (long long)B.cs, (long long)ldc, KNOBS[n].name, (long long)THREADS[t]);
                for (int64_t p = 0; p < c_size; ++p)
                    c_buffer[p] = from_bits(GUARD_BITS);
                float *C = c_buffer + GUARD;
                for (int64_t i = 0; i < M; ++i)
                    for (int64_t j = 0; j < N; ++j)
                        C[i * ldc + j] = from_bits(UNSET_BITS);
                kr_knobs knobs = KNOBS[n].knobs;
                knobs.threads = THREADS[t];

                running = label;
                const int status = KR_FUNCTION(KR_RUNG)(M, N, K, A.data, A.rs, A.cs,
                                                        B.data, B.rs, B.cs, C, ldc, &knobs);
                char what[128];
                if (status == KR_EINVAL && B.cs != 1 && N > 1) {
                    int intact = 1;
                    for (int64_t p = 0; p < c_size && intact; ++p) {
                        const int64_t o = p - GUARD;
                        const int in_c = o >= 0 && o < M * ldc && o % ldc < N;
                        intact = to_bits(c_buffer[p]) == (in_c ? UNSET_BITS : GUARD_BITS);
                    }
                    if (intact)
                        ++declined;
                    else
                        report(label, "declined the layout (KR_EINVAL) but wrote C");
                    continue;
                }
                if (status != KR_OK) {
                    snprintf(what, sizeof what, "returned %d, expected KR_OK (0)", status);
                    report(label, what);
                    continue;
                }
                int ok = check_c(label, c_buffer, c_size, C, M, N, K, ldc, ref, magnitude);
                if (ok && !untouched(A.buffer, A_before, A.size))
                    report(label, "wrote to A (or to the memory around it)"), ok = 0;
                if (ok && !untouched(B.buffer, B_before, B.size))
                    report(label, "wrote to B (or to the memory around it)"), ok = 0;
                if (ok && t == 0)
                    memcpy(one_thread, c_buffer, (size_t)c_size * sizeof(float));
                else if (ok && !untouched(c_buffer, one_thread, c_size))
                    report(label, "correct, but not bitwise equal to the threads=1 result"), ok = 0;
                passed += ok;
                if (!ok)
                    break;   /* one line per failing case is enough: skip its other thread counts */
                if (quick && t == 0 && M * N * K > 4000)
                    break;   /* under --quick, thread counts on the small products only */
            }
        }
        free(A.buffer), free(B.buffer), free(A_before), free(B_before);
        free(c_buffer), free(one_thread);
    }
    free(a), free(b), free(ref), free(magnitude);
}

int main(int argc, char **argv)
{
    int quick = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);   /* every line out before a crash can lose it */
    signal(SIGSEGV, name_the_crash);
    signal(SIGFPE, name_the_crash);
    signal(SIGILL, name_the_crash);     /* an instruction this CPU (or qemu) does not have */
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: %s [--quick]  (got %s; --quick runs a shorter list of "
                            "shapes, for emulators)\n", argv[0], argv[i]);
            return 2;
        }
    }
    for (int s = 0; s < COUNT(SHAPES); ++s)
        if (!quick || SHAPES[s].quick)
            run_shape(&SHAPES[s], quick);
    if (failures > MAX_FAILURE_LINES)
        printf("... and %d more failures not shown\n", failures - MAX_FAILURE_LINES);
    printf("%s: %d cases passed, %d failed, %d declined (B with a column stride != 1)\n",
           KR_NAME(KR_RUNG), passed, failures, declined);
    return failures ? 1 : 0;
}
