/* conv.c: im2col, col2im and max-pooling, each one pass over its arrays.
 *
 * Around a convolution's product, a training step copies pixels: the patches into columns
 * (im2col), the columns' gradients back onto the image (col2im), and through each pooling
 * window (its maximum forward, its gradient backward). NumPy does each as a strided view and a
 * copy, or as one pass per kernel offset with a boolean mask between passes; here each is one
 * pass, and max-pooling remembers where each maximum was (argmax), so its backward is a
 * scatter instead of kh·kw comparisons of the whole input. Layouts and rules: kr_conv.h.
 *
 * The loops walk one (n, c) plane at a time: a 28 x 28 plane of floats is 3 KiB, so it stays
 * in L1 while every kernel offset reads (im2col) or adds into (col2im, the pool's backward) it.
 */
#include <stddef.h>
#include <string.h>
#include "kr_conv.h"
#ifdef _OPENMP
#  include <omp.h>
#endif
#include "kr_fork_guard.h"  /* a child forked after a team ran computes on one thread */

/* The planes are independent, so the work splits over threads by (channel, sample) pairs, each
 * thread writing its own planes: the result does not depend on the thread count. Waking a team
 * costs microseconds, more than a small image's whole pass: below KR_CONV_SPLIT_MIN floats
 * moved, one thread does it (measure: krypton.fused.im2col with threads=1 and 2). */
#define KR_CONV_SPLIT_MIN 65536

/* How many threads share `units` independent pieces of work moving `floats` floats. */
static int kr_conv_team(int64_t floats, int64_t units, int64_t threads)
{
#ifdef _OPENMP
    if (threads > 1 && units > 1 && floats >= KR_CONV_SPLIT_MIN && kr_teams_allowed())
        return (int)(threads < units ? threads : units);
#endif
    (void)floats;
    (void)units;
    (void)threads;
    return 1;
}

/* Whether the window sizes fit: a kh x kw window, strides >= 1, padding >= 0, no larger than
 * the padded image, and (ho, wo) the number of positions those give. */
static int kr_window_fits(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t ho, int64_t wo)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0
        || pw < 0 || h > INT32_MAX || w > INT32_MAX || h * w > INT32_MAX)
        return 0;
    if (h + 2 * ph < kh || w + 2 * pw < kw)
        return 0;
    return ho == (h + 2 * ph - kh) / sh + 1 && wo == (w + 2 * pw - kw) / sw + 1;
}

/* Output columns q whose pixel q·s + offset lies in 0..size-1: the range [*first, *last). */
static void kr_inside(int64_t size, int64_t s, int64_t offset, int64_t positions,
                      int64_t *first, int64_t *last)
{
    int64_t lo = offset < 0 ? (-offset + s - 1) / s : 0;
    int64_t hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / s + 1;
    hi = hi < positions ? hi : positions;
    *first = lo < hi ? lo : hi;
    *last = hi;
}

int kr_im2col(int64_t n, int64_t c, int64_t h, int64_t w, const float *x, int64_t plane_n,
              int64_t plane_c, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
              int64_t pw, int64_t ho, int64_t wo, float *cols, int64_t threads)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo) || plane_n < 0
        || plane_c < 0 || threads < 1)
        return KR_CONV_EINVAL;
    const int64_t columns = n * ho * wo;
    if (columns == 0 || c == 0)
        return KR_CONV_OK;
    if (x == NULL || cols == NULL)
        return KR_CONV_EINVAL;
    const int team = kr_conv_team(c * kh * kw * columns, c * n, threads);
    (void)team;                                    /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
#endif
    for (int64_t unit = 0; unit < c * n; ++unit) { /* one (channel, sample) plane each */
        const int64_t ci = unit / n, ni = unit % n;
        const float *plane = x + ni * plane_n + ci * plane_c;  /* read from L1 k·k times */
        for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
                float *row = cols + ((ci * kh + i) * kw + j) * columns + ni * ho * wo;
                int64_t first, last;  /* the output columns whose pixel is not padding */
                kr_inside(w, sw, j - pw, wo, &first, &last);
                for (int64_t r = 0; r < ho; ++r) {
                    float *out = row + r * wo;   /* contiguous: the copy runs along Wo */
                    const int64_t y = r * sh + i - ph;
                    if (y < 0 || y >= h) {
                        memset(out, 0, (size_t)wo * sizeof(float));
                        continue;
                    }
                    const float *in = plane + y * w + (j - pw);
                    for (int64_t q = 0; q < first; ++q)
                        out[q] = 0.0f;
                    if (sw == 1)
                        memcpy(out + first, in + first, (size_t)(last - first) * sizeof(float));
                    else
                        for (int64_t q = first; q < last; ++q)
                            out[q] = in[q * sw];
                    for (int64_t q = last; q < wo; ++q)
                        out[q] = 0.0f;
                }
            }
    }
    return KR_CONV_OK;
}

int kr_col2im(int64_t n, int64_t c, int64_t h, int64_t w, const float *cols, int64_t kh,
              int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t ho,
              int64_t wo, float *x, int64_t plane_n, int64_t plane_c, int64_t threads)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo) || plane_n < 0
        || plane_c < 0 || threads < 1)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0 || h * w == 0)
        return KR_CONV_OK;
    if (x == NULL || cols == NULL)
        return KR_CONV_EINVAL;
    const int64_t columns = n * ho * wo;
    const int team = kr_conv_team(c * kh * kw * columns, c * n, threads);
    (void)team;
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
#endif
    for (int64_t unit = 0; unit < c * n; ++unit) { /* one (channel, sample) plane each */
        const int64_t ci = unit / n, ni = unit % n;
        float *plane = x + ni * plane_n + ci * plane_c;  /* summed into in L1 */
        memset(plane, 0, (size_t)(h * w) * sizeof(float));
        /* Offsets in the order NumPy's reference adds them (i, then j): for one offset the
         * pixels are distinct, so each pixel's sum is taken in the same order, from 0. */
        for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
                const float *row = cols + ((ci * kh + i) * kw + j) * columns + ni * ho * wo;
                int64_t first, last;
                kr_inside(w, sw, j - pw, wo, &first, &last);
                for (int64_t r = 0; r < ho; ++r) {
                    const int64_t y = r * sh + i - ph;
                    if (y < 0 || y >= h)
                        continue;  /* that row of the patch was padding: no pixel */
                    const float *in = row + r * wo;
                    float *out = plane + y * w + (j - pw);
                    for (int64_t q = first; q < last; ++q)
                        out[q * sw] += in[q];
                }
            }
    }
    return KR_CONV_OK;
}

/* Whether b beats a for the window's maximum: only if strictly larger (ties keep the first),
 * and a NaN counts as largest (the first NaN stays), so a window holding one gives NaN, as
 * np.maximum does. An int from comparisons: no branch. */
static inline int kr_later_wins(float a, float b)
{
    return (b > a) | ((b != b) & (a == a));
}

/* take ? yes : no, on the bits. gcc compiles a float `?:` whose condition depends on the data
 * to a branch, which random pixels mispredict half the time (the 2 x 2 pool below ran about
 * 8x slower that way); masks on the bits have no branch, and the loop vectorizes. */
static inline float kr_pick(int take, float yes, float no)
{
    uint32_t a, b;
    memcpy(&a, &yes, sizeof a);
    memcpy(&b, &no, sizeof b);
    const uint32_t mask = 0u - (uint32_t)take;
    const uint32_t bits = (a & mask) | (b & ~mask);
    float picked;
    memcpy(&picked, &bits, sizeof picked);
    return picked;
}

/* 2 x 2 windows side by side (kernel 2, stride 2), the CNN's pooling: a tournament of two
 * pairs, one per row, then the two winners. It picks what the general loop picks (the first
 * largest in row-major order); with no branch and no loop over the window, the compiler
 * vectorizes it along the output row. */
static void kr_pool_2x2(const float *restrict plane, int64_t w, int64_t ho, int64_t wo,
                        float shift, float *restrict top, int32_t *restrict where)
{
    for (int64_t r = 0; r < ho; ++r) {
        const float *upper = plane + 2 * r * w, *lower = upper + w;
        float *best_row = top + r * wo;
        int32_t *where_row = where + r * wo;
        const int32_t corner = (int32_t)(2 * r * w), below = (int32_t)w;
        for (int64_t q = 0; q < wo; ++q) {
            const float a = upper[2 * q] + shift, b = upper[2 * q + 1] + shift;
            const float c = lower[2 * q] + shift, d = lower[2 * q + 1] + shift;
            const int take_b = kr_later_wins(a, b), take_d = kr_later_wins(c, d);
            const float first = kr_pick(take_b, b, a), second = kr_pick(take_d, d, c);
            const int take_second = kr_later_wins(first, second);
            best_row[q] = kr_pick(take_second, second, first);
            where_row[q] = corner + 2 * (int32_t)q + take_b
                           + take_second * (below + take_d - take_b);
        }
    }
}

int kr_maxpool2d_forward(int64_t n, int64_t c, int64_t h, int64_t w, const float *x,
                         int64_t plane_n, int64_t plane_c, int64_t kh, int64_t kw, int64_t sh,
                         int64_t sw, int64_t ho, int64_t wo, const float *bias, int32_t relu,
                         float *out, int32_t *argmax, int64_t out_n, int64_t out_c,
                         int64_t threads)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, 0, 0, ho, wo) || plane_n < 0 || plane_c < 0
        || out_n < 0 || out_c < 0 || threads < 1)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0)
        return KR_CONV_OK;
    if (x == NULL || out == NULL || argmax == NULL)
        return KR_CONV_EINVAL;
    const int team = kr_conv_team(n * c * h * w, c * n, threads);
    (void)team;
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
#endif
    for (int64_t unit = 0; unit < c * n; ++unit) { /* one (channel, sample) plane each */
        const int64_t ci = unit / n, ni = unit % n;
        const float *plane = x + ni * plane_n + ci * plane_c;
        float *top = out + ni * out_n + ci * out_c;
        int32_t *where = argmax + ni * out_n + ci * out_c;
        const float shift = bias ? bias[ci] : 0.0f;
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {
            kr_pool_2x2(plane, w, ho, wo, shift, top, where);
            if (relu)
                for (int64_t k = 0; k < ho * wo; ++k)
                    top[k] = (top[k] > 0.0f || top[k] != top[k]) ? top[k] : 0.0f;
            continue;  /* the next plane */
        }
        for (int64_t r = 0; r < ho; ++r)
            for (int64_t q = 0; q < wo; ++q) {
                /* The bias is added before comparing, as the reference adds it before
                 * pooling: the same window wins even where rounding makes a tie. */
                int64_t at = r * sh * w + q * sw;
                float best = bias ? plane[at] + shift : plane[at];
                for (int64_t i = 0; i < kh; ++i)
                    for (int64_t j = 0; j < kw; ++j) {
                        const int64_t k = (r * sh + i) * w + q * sw + j;
                        const float v = bias ? plane[k] + shift : plane[k];
                        const int later = kr_later_wins(best, v);
                        best = kr_pick(later, v, best);
                        at = later ? k : at;
                    }
                if (relu && !(best > 0.0f || best != best))
                    best = 0.0f;       /* relu(max) = max(relu): the ReLU after the pool */
                top[r * wo + q] = best;
                where[r * wo + q] = (int32_t)at;
            }
    }
    return KR_CONV_OK;
}

int kr_maxpool2d_backward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                          const float *grad, int64_t grad_n, int64_t grad_c,
                          const int32_t *argmax, const float *out, int64_t out_n, int64_t out_c,
                          float *grad_x, int64_t plane_n, int64_t plane_c, float *grad_bias,
                          int64_t threads)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || ho < 0 || wo < 0 || h > INT32_MAX
        || w > INT32_MAX || h * w > INT32_MAX
        || grad_n < 0 || grad_c < 0 || out_n < 0 || out_c < 0 || plane_n < 0 || plane_c < 0
        || threads < 1)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0) {
        for (int64_t ci = 0; grad_bias && ci < c; ++ci)
            grad_bias[ci] = 0.0f;
        return KR_CONV_OK;
    }
    if (grad_x == NULL || (ho * wo > 0 && (grad == NULL || argmax == NULL)))
        return KR_CONV_EINVAL;
    const int64_t size = h * w, windows = ho * wo;
    int refused = 0;
    /* By channel: each thread sums its own channels' bias gradients. */
    const int team = kr_conv_team(n * c * size, c, threads);
    (void)team;
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static) reduction(|:refused)
#endif
    for (int64_t ci = 0; ci < c; ++ci) {
        double total = 0.0;                /* the bias gradient, summed in double */
        for (int64_t ni = 0; ni < n; ++ni) {
            const float *g = grad + ni * grad_n + ci * grad_c;
            const int32_t *where = argmax + ni * out_n + ci * out_c;
            const float *y = out ? out + ni * out_n + ci * out_c : NULL;
            float *plane = grad_x + ni * plane_n + ci * plane_c;
            memset(plane, 0, (size_t)size * sizeof(float));
            for (int64_t k = 0; k < windows; ++k) {
                const int32_t at = where[k];
                if (at < 0 || at >= size) {
                    refused = 1;           /* not an argmax of this plane: never written */
                    continue;
                }
                /* A multiply, not a select: NaN or inf * 0 is NaN, as NumPy's g * (y > 0). */
                const float v = y ? g[k] * (y[k] > 0.0f ? 1.0f : 0.0f) : g[k];
                plane[at] += v;            /* += : overlapping windows add their gradients */
                total += v;
            }
        }
        if (grad_bias)
            grad_bias[ci] = (float)total;
    }
    return refused ? KR_CONV_EINVAL : KR_CONV_OK;
}
