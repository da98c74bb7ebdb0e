/* fused.c: the element-wise work of a training step, one pass per array.
 *
 * After the matrix products are fast, what is left of a step is memory traffic: NumPy's
 * `np.maximum(x + b, 0)` reads x, writes a temporary, reads it again and writes y; Adam's
 * update in NumPy is about a dozen such passes over each parameter. Each function below reads
 * its inputs once and writes its outputs once, so it moves the fewest bytes the arithmetic
 * allows. The formulas are those of the NumPy reference beside each wrapper in
 * krypton/fused.py (and PyTorch's), in the same order of operations; the file is compiled with
 * -ffp-contract=off so that a*b + c rounds twice, as NumPy does, and not once (an FMA).
 *
 * Arrays are float32, C-contiguous, rows x cols row-major (see kr_fused.h); an output may be
 * its input (in place). Loops walk the contiguous axis innermost, so the compiler vectorizes
 * them.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "kr_fused.h"

int kr_bias_relu_forward(int64_t rows, int64_t cols, const float *x, const float *bias,
                         float *y)
{
    if (rows < 0 || cols < 0 || ((x == NULL || y == NULL) && rows > 0 && cols > 0))
        return KR_FUSED_EINVAL;
    for (int64_t i = 0; i < rows; ++i) {           /* rows: the samples of the batch */
        const float *xi = x + i * cols;
        float *yi = y + i * cols;
        for (int64_t j = 0; j < cols; ++j) {       /* cols: the units, contiguous */
            float v = bias ? xi[j] + bias[j] : xi[j];
            yi[j] = (v > 0.0f || v != v) ? v : 0.0f;  /* NaN stays NaN, as np.maximum */
        }
    }
    return KR_FUSED_OK;
}

int kr_bias_relu_backward(int64_t rows, int64_t cols, const float *grad, const float *y,
                          float *grad_x, float *grad_bias)
{
    if (rows < 0 || cols < 0
        || ((grad == NULL || y == NULL || grad_x == NULL) && rows > 0 && cols > 0))
        return KR_FUSED_EINVAL;
    if (grad_bias)
        for (int64_t j = 0; j < cols; ++j)
            grad_bias[j] = 0.0f;
    for (int64_t i = 0; i < rows; ++i) {           /* rows: the bias gradient sums over them */
        const float *gi = grad + i * cols, *yi = y + i * cols;
        float *gxi = grad_x + i * cols;
        for (int64_t j = 0; j < cols; ++j) {
            /* A multiply, not a select: NaN or inf * 0 is NaN, as NumPy's g * (y > 0). */
            float g = gi[j] * (yi[j] > 0.0f ? 1.0f : 0.0f);
            gxi[j] = g;
            if (grad_bias)
                grad_bias[j] += g;
        }
    }
    return KR_FUSED_OK;
}

static int labels_in_range(int64_t rows, int64_t cols, const int64_t *labels)
{
    for (int64_t i = 0; i < rows; ++i)
        if (labels[i] < 0 || labels[i] >= cols)
            return 0;
    return 1;
}

/* exp(x) for a shifted logit (x <= 0, or NaN), written so that the compiler vectorizes it:
 * glibc's expf is a call per element, which made this pass slower than NumPy's vectorized
 * np.exp (measure: fused.softmax_cross_entropy against its reference on 128 x 10 logits).
 * Cephes' method: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so n ln2 is exact),
 * exp(r) by a degree-6 polynomial (within 2 float32 ulps of the true value), and 2^n written
 * into the exponent bits. Below -87.3 the true value is under FLT_MIN: this gives 0 (NumPy the
 * subnormal, less than 1.2e-38 away). NaN stays NaN. */
static inline float kr_exp_nonpositive(float x)
{
    /* x > 0 cannot come (a logit minus its row's maximum); clamped all the same, so that
     * no input overflows the exponent bits below. */
    float t = x < -87.3f ? -87.3f : (x > 0.0f || x != x ? 0.0f : x);
    float n = rintf(t * 1.44269504088896341f);     /* t / ln2, to the nearest integer */
    float r = (t - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    int32_t bits = ((int32_t)n + 127) << 23;        /* 2^n, n in -126..0 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = (p * r * r + r + 1.0f) * scale;
    return x != x ? x : (x < -87.3f ? 0.0f : y);
}

int kr_softmax_xent_forward(int64_t rows, int64_t cols, const float *logits,
                            const int64_t *labels, float *probs, float *losses)
{
    if (rows < 0 || cols < 0 || (rows > 0 && (cols == 0 || logits == NULL || labels == NULL
                                               || probs == NULL || losses == NULL)))
        return KR_FUSED_EINVAL;
    if (!labels_in_range(rows, cols, labels))
        return KR_FUSED_EINVAL;
    /* Three passes, so that the exponentials (most of the work) run over the whole batch in
     * one loop the compiler vectorizes, not over rows of a few classes each. */
    for (int64_t i = 0; i < rows; ++i) {           /* one row: one sample's logits */
        const float *z = logits + i * cols;
        float *p = probs + i * cols;
        /* Shift by the row's maximum so exp never overflows; NaN anywhere makes it NaN. */
        float top = z[0];
        for (int64_t j = 1; j < cols; ++j)
            top = (z[j] > top || z[j] != z[j]) ? z[j] : top;
        if (top != top)
            top = NAN;
        for (int64_t j = 0; j < cols; ++j)
            p[j] = z[j] - top;
        losses[i] = p[labels[i]];                  /* the label's shifted logit, kept */
    }
    for (int64_t k = 0; k < rows * cols; ++k)      /* every element of the batch */
        probs[k] = kr_exp_nonpositive(probs[k]);
    for (int64_t i = 0; i < rows; ++i) {           /* normalize: one division, no second exp */
        float *p = probs + i * cols;
        float total = 0.0f;
        for (int64_t j = 0; j < cols; ++j)
            total += p[j];
        for (int64_t j = 0; j < cols; ++j)
            p[j] /= total;
        losses[i] = -(losses[i] - logf(total));
    }
    return KR_FUSED_OK;
}

int kr_softmax_xent_backward(int64_t rows, int64_t cols, const float *probs,
                             const int64_t *labels, const float *scale, int64_t scale_stride,
                             float *grad)
{
    if (rows < 0 || cols < 0 || scale_stride < 0
        || (rows > 0 && (probs == NULL || labels == NULL || scale == NULL || grad == NULL)))
        return KR_FUSED_EINVAL;
    if (!labels_in_range(rows, cols, labels))
        return KR_FUSED_EINVAL;
    for (int64_t i = 0; i < rows; ++i) {           /* one row: softmax - onehot, scaled */
        const float *p = probs + i * cols;
        float *g = grad + i * cols;
        float s = scale[i * scale_stride];
        for (int64_t j = 0; j < cols; ++j)
            g[j] = (p[j] - (j == labels[i] ? 1.0f : 0.0f)) * s;
    }
    return KR_FUSED_OK;
}

/* The optimizer updates every parameter of a group in one call: a step crosses from Python into
 * C once, not once per parameter (each crossing, with its checks, costs microseconds, as much
 * as the whole pass over a bias; measure: optim.SGD.step on an MLP's four parameters against
 * fused.sgd_step on each). A large parameter is split over the threads: Adam's pass is bound by
 * its square root and division (over a cycle per element), SGD's by memory, and on two cores a
 * 784 x 256 weight updates about twice as fast on two threads as on one (measure: notebook 10,
 * or fused.adam_step with threads=1 and threads=2), while waking a team costs microseconds, more
 * than a small parameter's whole pass: below KR_FUSED_SPLIT_MIN elements one thread does it. */
#define KR_FUSED_SPLIT_MIN 16384

#ifdef _OPENMP
#  include <omp.h>
#endif
#include "kr_fork_guard.h"  /* a child forked after a team ran updates on one thread */

/* How many threads update parameters of sizes[0..count) when the caller offers `threads`:
 * enough for the largest one to be split (whole parameters below the threshold are not). */
static int kr_team_size(int64_t count, const int64_t *sizes, int64_t threads)
{
    int64_t n = 0;
    for (int64_t p = 0; p < count; ++p)
        n = sizes[p] > n ? sizes[p] : n;
#ifdef _OPENMP
    if (threads > 1 && n >= KR_FUSED_SPLIT_MIN && kr_teams_allowed()) {
        return threads < n / (KR_FUSED_SPLIT_MIN / 2) ? (int)threads
                                                       : (int)(n / (KR_FUSED_SPLIT_MIN / 2));
    }
#endif
    (void)n;
    (void)threads;
    return 1;
}

/* This thread's share [*begin, *end) of parameter number p, n elements. A large one is cut
 * into whole 64-byte lines of 16 floats, one run per thread, so no two threads write one cache
 * line; a small one goes whole to thread p mod team. Outside a team (or without OpenMP) it is
 * all of it. */
static void kr_my_share(int64_t p, int64_t n, int64_t *begin, int64_t *end)
{
    int64_t tid = 0, team = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    team = omp_get_num_threads();
#endif
    if (n < KR_FUSED_SPLIT_MIN) {
        *begin = 0;
        *end = p % team == tid ? n : 0;
        return;
    }
    int64_t lines = (n + 15) / 16;
    int64_t first = lines * tid / team * 16, last = lines * (tid + 1) / team * 16;
    *begin = first < n ? first : n;
    *end = last < n ? last : n;
}

/* The arrays of a list of parameters are valid: sizes >= 0, and every pointer a pass would
 * follow is there (`state` arrays may be NULL only where `state_optional`). */
static int kr_parameters_valid(int64_t count, const int64_t *sizes, float **params,
                               const float **grads, float **state_a, float **state_b,
                               int state_optional)
{
    if (count < 0 || (count > 0 && (sizes == NULL || params == NULL || grads == NULL
                                    || (!state_optional && (!state_a || !state_b)))))
        return 0;
    for (int64_t p = 0; p < count; ++p) {
        if (sizes[p] < 0)
            return 0;
        if (sizes[p] > 0 && (params[p] == NULL || grads[p] == NULL
                             || (!state_optional && (!state_a[p] || !state_b[p]))))
            return 0;
    }
    return 1;
}

/* One SGD pass over [begin, end). The flags are arguments of an inline function called with
 * constants (sgd_cases), so each case compiles to its own branch-free loop that the compiler
 * vectorizes: one loop testing five flags per element was left scalar by gcc 12, several times
 * slower than NumPy's five passes (measure: fused.sgd_step against fused.sgd_step_numpy on a
 * 256 x 784 weight). `keep` = 1 - dampening: keep * g is g exactly when dampening is 0. */
static inline __attribute__((always_inline)) void
sgd_range(int64_t begin, int64_t end, float *param, const float *grad, float *buffer,
          float rate, float mu, float keep, float decay, const int with_decay,
          const int momentum, const int first, const int nesterov)
{
    for (int64_t i = begin; i < end; ++i) {        /* this thread's elements, each once */
        float g = with_decay ? grad[i] + decay * param[i] : grad[i];
        if (momentum) {
            float b = first ? g : mu * buffer[i] + keep * g;
            buffer[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        param[i] -= rate * g;
    }
}

/* The 2 x 3 x 2 cases: weight decay or not; no momentum, its first step, a later step;
 * Nesterov or not. Each call below is one loop with its flags constant. */
static void sgd_cases(int64_t begin, int64_t end, float *param, const float *grad, float *buffer,
                      float rate, float mu, float keep, float decay, int nesterov, int first)
{
#define KR_SGD(D, M, F, N) sgd_range(begin, end, param, grad, buffer, rate, mu, keep, decay, \
                                     D, M, F, N)
#define KR_SGD_MOMENTUM(D)                                                                    \
    (mu == 0.0f ? KR_SGD(D, 0, 0, 0)                                                          \
     : first ? (nesterov ? KR_SGD(D, 1, 1, 1) : KR_SGD(D, 1, 1, 0))                            \
             : (nesterov ? KR_SGD(D, 1, 0, 1) : KR_SGD(D, 1, 0, 0)))
    if (decay != 0.0f)
        KR_SGD_MOMENTUM(1);
    else
        KR_SGD_MOMENTUM(0);
#undef KR_SGD_MOMENTUM
#undef KR_SGD
}

int kr_sgd_step(int64_t count, const int64_t *sizes, float **params, const float **grads,
                float **buffers, const int32_t *firsts, double lr, double momentum,
                double dampening, double weight_decay, int32_t nesterov, int64_t threads)
{
    if (threads < 1 || !kr_parameters_valid(count, sizes, params, grads, buffers, buffers,
                                             momentum == 0.0)
        || (count > 0 && momentum != 0.0 && firsts == NULL))
        return KR_FUSED_EINVAL;
    const float rate = (float)lr, mu = (float)momentum, decay = (float)weight_decay;
    const float keep = (float)(1.0 - dampening);
    const int team = kr_team_size(count, sizes, threads);
    (void)team;                                    /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    for (int64_t p = 0; p < count; ++p) {          /* every parameter; each thread its share */
        int64_t begin, end;
        kr_my_share(p, sizes[p], &begin, &end);
        sgd_cases(begin, end, params[p], grads[p], buffers ? buffers[p] : NULL, rate, mu,
                  keep, decay, nesterov, firsts ? firsts[p] : 0);
    }
    return KR_FUSED_OK;
}

/* One Adam pass over [begin, end), weight decay a constant of each call (as sgd_range).
 * PyTorch divides sqrt(v) by sqrt(1 - beta2^t); here it is multiplied by the reciprocal,
 * `unroot2`, rounded once per parameter, so each element costs one square root and one
 * division, not one and two: with the arrays in cache the divider is what bounds this loop
 * (measure: fused.adam_step on a 256 x 784 weight, with the division put back and without).
 * The results stay within an ulp of the division's, and krypton.fused.adam_step_numpy
 * computes the same. */
static inline __attribute__((always_inline)) void
adam_range(int64_t begin, int64_t end, float *param, const float *grad, float *exp_avg,
           float *exp_avg_sq, float b1, float rest1, float b2, float rest2, float epsilon,
           float decay, float rate, float unroot2, const int with_decay)
{
    for (int64_t i = begin; i < end; ++i) {        /* this thread's elements, each once */
        float g = with_decay ? grad[i] + decay * param[i] : grad[i];
        float m = b1 * exp_avg[i] + rest1 * g;
        float v = b2 * exp_avg_sq[i] + rest2 * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] -= rate * (m / (sqrtf(v) * unroot2 + epsilon));
    }
}

int kr_adam_step(int64_t count, const int64_t *sizes, float **params, const float **grads,
                 float **exp_avgs, float **exp_avg_sqs, const double *step_sizes,
                 const double *corrections2_sqrt, double beta1, double beta2, double eps,
                 double weight_decay, int64_t threads)
{
    if (threads < 1 || !kr_parameters_valid(count, sizes, params, grads, exp_avgs,
                                             exp_avg_sqs, 0)
        || (count > 0 && (step_sizes == NULL || corrections2_sqrt == NULL)))
        return KR_FUSED_EINVAL;
    const float b1 = (float)beta1, rest1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, rest2 = (float)(1.0 - beta2);
    const float epsilon = (float)eps, decay = (float)weight_decay;
    const int team = kr_team_size(count, sizes, threads);
    (void)team;                                    /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    for (int64_t p = 0; p < count; ++p) {          /* every parameter; each thread its share */
        int64_t begin, end;
        kr_my_share(p, sizes[p], &begin, &end);
        const float rate = (float)step_sizes[p];
        const float unroot2 = (float)(1.0 / corrections2_sqrt[p]);
        if (decay != 0.0f)
            adam_range(begin, end, params[p], grads[p], exp_avgs[p], exp_avg_sqs[p], b1,
                       rest1, b2, rest2, epsilon, decay, rate, unroot2, 1);
        else
            adam_range(begin, end, params[p], grads[p], exp_avgs[p], exp_avg_sqs[p], b1,
                       rest1, b2, rest2, epsilon, decay, rate, unroot2, 0);
    }
    return KR_FUSED_OK;
}

/* The batch gather: a training step starts by copying its samples, scattered over the dataset
 * (Fashion-MNIST's train split: 188 MB in float32, 47 MB as bytes, far larger than the
 * caches), into one array. Each row
 * is a run of whole cache lines in a page of its own, so the copy waits on memory, not on
 * arithmetic: what helps is having more misses in flight. Two ways here: each thread asks for
 * the row after next while it copies this one (__builtin_prefetch), and a large batch is
 * split over the threads, each with its own stream of misses (measure: fused.gather_rows with
 * threads=1 and 2 against NumPy's images[indices], on a shuffled order of a 60000 x 784 array).
 * Below KR_GATHER_SPLIT_MIN bytes one thread copies it all: waking a team costs more. */
#define KR_GATHER_SPLIT_MIN 65536
#define KR_GATHER_AHEAD 2                          /* rows prefetched ahead of the copy */

/* How one row of a batch is made from its source row: copied as bytes (kr_gather_rows), or
 * pixels standardized on the way (kr_gather_pixels). */
typedef struct kr_gather_job {
    const char *src;           /* the source, row_bytes per row */
    int64_t row_bytes;
    void *dst;                 /* the batch: rows as the source's, or (pixels) row_bytes floats */
    float scale, shift;        /* kr_gather_pixels: each byte p becomes p * scale + shift */
} kr_gather_job;

static void kr_copy_row(const kr_gather_job *job, int64_t r, const char *from)
{
    memcpy((char *)job->dst + r * job->row_bytes, from, (size_t)job->row_bytes);
}

static void kr_standardize_row(const kr_gather_job *job, int64_t r, const char *from)
{
    const unsigned char *restrict pixel = (const unsigned char *)from;
    float *restrict to = (float *)job->dst + r * job->row_bytes;   /* a float per pixel */
    const float scale = job->scale, shift = job->shift;
    for (int64_t j = 0; j < job->row_bytes; ++j)   /* a multiply, then an add (no FMA) */
        to[j] = (float)pixel[j] * scale + shift;
}

/* Row r of the batch from row indices[r] of the source, for r in [0, count), by `row`; the
 * rows split over up to `threads` threads for a batch of at least KR_GATHER_SPLIT_MIN bytes
 * read (the source's), each thread prefetching KR_GATHER_AHEAD rows ahead of its copy. */
static int kr_gather(int64_t count, int64_t src_rows, const int64_t *indices, int64_t threads,
                     const kr_gather_job *job,
                     void (*row)(const kr_gather_job *, int64_t, const char *))
{
    if (count < 0 || job->row_bytes < 0 || src_rows < 0 || threads < 1
        || (count > 0 && job->row_bytes > 0
            && (job->src == NULL || indices == NULL || job->dst == NULL)))
        return KR_FUSED_EINVAL;
    if (count == 0 || job->row_bytes == 0)
        return KR_FUSED_OK;
    for (int64_t r = 0; r < count; ++r)            /* every index valid before any copy */
        if (indices[r] < 0 || indices[r] >= src_rows)
            return KR_FUSED_EINVAL;
    const int64_t row_bytes = job->row_bytes;
    int team = 1;
#ifdef _OPENMP
    if (threads > 1 && count > 1 && count * row_bytes >= KR_GATHER_SPLIT_MIN
        && kr_teams_allowed())
        team = threads < count ? (int)threads : (int)count;
#endif
    (void)team;                                    /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    {
        int64_t tid = 0, size = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        size = omp_get_num_threads();
#endif
        int64_t first = count * tid / size, last = count * (tid + 1) / size;
        for (int64_t r = first; r < last; ++r) {   /* this thread's rows of the batch */
            if (r + KR_GATHER_AHEAD < last) {
                const char *ahead = job->src + indices[r + KR_GATHER_AHEAD] * row_bytes;
                for (int64_t byte = 0; byte < row_bytes; byte += 64)
                    __builtin_prefetch(ahead + byte);
            }
            row(job, r, job->src + indices[r] * row_bytes);
        }
    }
    return KR_FUSED_OK;
}

int kr_gather_rows(int64_t count, int64_t row_bytes, const void *src, int64_t src_rows,
                   const int64_t *indices, void *dst, int64_t threads)
{
    const kr_gather_job job = {.src = src, .row_bytes = row_bytes, .dst = dst};
    return kr_gather(count, src_rows, indices, threads, &job, kr_copy_row);
}

/* A batch of 8-bit images stored as they come (MNIST's pixels), standardized as it is
 * gathered: a quarter of the bytes a float32 copy of the dataset would read from memory, and
 * one pass that writes the floats, where copying the floats and then standardizing is two. */
int kr_gather_pixels(int64_t count, int64_t pixels, const unsigned char *src, int64_t src_rows,
                     const int64_t *indices, float scale, float shift, float *dst,
                     int64_t threads)
{
    const kr_gather_job job = {.src = (const char *)src, .row_bytes = pixels, .dst = dst,
                               .scale = scale, .shift = shift};
    return kr_gather(count, src_rows, indices, threads, &job, kr_standardize_row);
}
