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
              int64_t pw, int64_t ho, int64_t wo, float *cols)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo) || plane_n < 0
        || plane_c < 0)
        return KR_CONV_EINVAL;
    const int64_t columns = n * ho * wo;
    if (columns == 0 || c == 0)
        return KR_CONV_OK;
    if (x == NULL || cols == NULL)
        return KR_CONV_EINVAL;
    for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t ni = 0; ni < n; ++ni) {
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
              int64_t wo, float *x, int64_t plane_n, int64_t plane_c)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo) || plane_n < 0
        || plane_c < 0)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0 || h * w == 0)
        return KR_CONV_OK;
    if (x == NULL || cols == NULL)
        return KR_CONV_EINVAL;
    const int64_t columns = n * ho * wo;
    for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t ni = 0; ni < n; ++ni) {
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

int kr_maxpool2d_forward(int64_t n, int64_t c, int64_t h, int64_t w, const float *x,
                         int64_t plane_n, int64_t plane_c, int64_t kh, int64_t kw, int64_t sh,
                         int64_t sw, int64_t ho, int64_t wo, const float *bias, int32_t relu,
                         float *out, int32_t *argmax, int64_t out_n, int64_t out_c)
{
    if (!kr_window_fits(n, c, h, w, kh, kw, sh, sw, 0, 0, ho, wo) || plane_n < 0 || plane_c < 0
        || out_n < 0 || out_c < 0)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0)
        return KR_CONV_OK;
    if (x == NULL || out == NULL || argmax == NULL)
        return KR_CONV_EINVAL;
    for (int64_t ni = 0; ni < n; ++ni)
        for (int64_t ci = 0; ci < c; ++ci) {
            const float *plane = x + ni * plane_n + ci * plane_c;
            float *top = out + ni * out_n + ci * out_c;
            int32_t *where = argmax + ni * out_n + ci * out_c;
            const float shift = bias ? bias[ci] : 0.0f;
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
                            /* strictly larger: ties keep the first; the first NaN stays */
                            if (v > best || (v != v && best == best)) {
                                best = v;
                                at = k;
                            }
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
                          float *grad_x, int64_t plane_n, int64_t plane_c, float *grad_bias)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || ho < 0 || wo < 0 || h > INT32_MAX
        || w > INT32_MAX || h * w > INT32_MAX
        || grad_n < 0 || grad_c < 0 || out_n < 0 || out_c < 0 || plane_n < 0 || plane_c < 0)
        return KR_CONV_EINVAL;
    if (n == 0 || c == 0) {
        for (int64_t ci = 0; grad_bias && ci < c; ++ci)
            grad_bias[ci] = 0.0f;
        return KR_CONV_OK;
    }
    if (grad_x == NULL || (ho * wo > 0 && (grad == NULL || argmax == NULL)))
        return KR_CONV_EINVAL;
    const int64_t size = h * w, windows = ho * wo;
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
                if (at < 0 || at >= size)
                    return KR_CONV_EINVAL;  /* not an argmax of this plane: refuse, never write */
                /* A multiply, not a select: NaN or inf * 0 is NaN, as NumPy's g * (y > 0). */
                const float v = y ? g[k] * (y[k] > 0.0f ? 1.0f : 0.0f) : g[k];
                plane[at] += v;            /* += : overlapping windows add their gradients */
                total += v;
            }
        }
        if (grad_bias)
            grad_bias[ci] = (float)total;
    }
    return KR_CONV_OK;
}
