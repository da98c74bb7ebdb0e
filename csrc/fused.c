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

int kr_softmax_xent_forward(int64_t rows, int64_t cols, const float *logits,
                            const int64_t *labels, float *probs, float *losses)
{
    if (rows < 0 || cols < 0 || (rows > 0 && (cols == 0 || logits == NULL || labels == NULL
                                               || probs == NULL || losses == NULL)))
        return KR_FUSED_EINVAL;
    if (!labels_in_range(rows, cols, labels))
        return KR_FUSED_EINVAL;
    for (int64_t i = 0; i < rows; ++i) {           /* one row: one sample's logits */
        const float *z = logits + i * cols;
        float *p = probs + i * cols;
        /* Shift by the row's maximum so exp never overflows; NaN anywhere makes it NaN. */
        float top = z[0];
        for (int64_t j = 1; j < cols; ++j)
            top = (z[j] > top || z[j] != z[j]) ? z[j] : top;
        if (top != top)
            top = NAN;
        float total = 0.0f;
        for (int64_t j = 0; j < cols; ++j) {
            p[j] = expf(z[j] - top);
            total += p[j];
        }
        for (int64_t j = 0; j < cols; ++j)         /* normalize: one division, no second exp */
            p[j] /= total;
        losses[i] = -((z[labels[i]] - top) - logf(total));
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

int kr_sgd_step(int64_t n, float *param, const float *grad, float *buffer, double lr,
                double momentum, double dampening, double weight_decay, int32_t nesterov,
                int32_t first)
{
    if (n < 0 || (n > 0 && (param == NULL || grad == NULL || (momentum != 0.0 && !buffer))))
        return KR_FUSED_EINVAL;
    const float rate = (float)lr, mu = (float)momentum, decay = (float)weight_decay;
    const float keep = (float)(1.0 - dampening);
    for (int64_t i = 0; i < n; ++i) {              /* every element of the parameter, once */
        float g = decay != 0.0f ? grad[i] + decay * param[i] : grad[i];
        if (mu != 0.0f) {
            float b = first ? g : mu * buffer[i] + (dampening != 0.0 ? keep * g : g);
            buffer[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        param[i] -= rate * g;
    }
    return KR_FUSED_OK;
}

int kr_adam_step(int64_t n, float *param, const float *grad, float *exp_avg,
                 float *exp_avg_sq, double beta1, double beta2, double eps,
                 double weight_decay, double step_size, double correction2_sqrt)
{
    if (n < 0 || (n > 0 && (param == NULL || grad == NULL || exp_avg == NULL
                            || exp_avg_sq == NULL)))
        return KR_FUSED_EINVAL;
    const float b1 = (float)beta1, rest1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, rest2 = (float)(1.0 - beta2);
    const float epsilon = (float)eps, decay = (float)weight_decay;
    const float rate = (float)step_size, root2 = (float)correction2_sqrt;
    for (int64_t i = 0; i < n; ++i) {              /* every element of the parameter, once */
        float g = decay != 0.0f ? grad[i] + decay * param[i] : grad[i];
        float m = b1 * exp_avg[i] + rest1 * g;
        float v = b2 * exp_avg_sq[i] + rest2 * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] -= rate * (m / (sqrtf(v) / root2 + epsilon));
    }
    return KR_FUSED_OK;
}
