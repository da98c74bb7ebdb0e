/* kr_fused.h: the fused element-wise kernels of a training step (csrc/fused.c).
 *
 * Outside the matrix products, a training step is a handful of passes over arrays: add the
 * bias and take the ReLU, turn logits into a loss and its gradient, update every parameter.
 * NumPy makes each of those several passes with a temporary array between them; each function
 * here makes one pass, writing where it is told (in place when the output is the input).
 *
 * Every array is float32 and C-contiguous (krypton/fused.py checks that before calling), rows
 * x cols row-major. An output may be the same buffer as an input of the same shape (in place),
 * so the pointers carry no `restrict`. Labels are int64 class indices. Hyper-parameters come
 * as double: a constant such as 1 - beta1 is computed in double and rounded to float once,
 * as NumPy does with a Python float, so both paths multiply by the same float32 number.
 *
 * The declarations below (everything that is not a preprocessor line) are also the cffi cdef:
 * krypton/fused.py reads this file, so Python and C cannot drift.
 */
#ifndef KR_FUSED_H
#define KR_FUSED_H
#include <stdint.h>

/* Return codes: 0 on success, a positive value on a failure C can detect. */
enum { KR_FUSED_OK = 0, KR_FUSED_EINVAL = 2 };

/* y = max(x + bias, 0), bias broadcast over the rows (bias may be NULL: a plain ReLU). */
int kr_bias_relu_forward(int64_t rows, int64_t cols, const float *x, const float *bias,
                         float *y);
/* grad_x = grad * (y > 0); grad_bias (may be NULL) = grad_x summed over the rows. */
int kr_bias_relu_backward(int64_t rows, int64_t cols, const float *grad, const float *y,
                          float *grad_x, float *grad_bias);

/* probs = softmax(logits) row by row; losses[i] = -log softmax(logits)[i, labels[i]]. */
int kr_softmax_xent_forward(int64_t rows, int64_t cols, const float *logits,
                            const int64_t *labels, float *probs, float *losses);
/* grad = (probs - onehot(labels)) * scale[i * scale_stride] (stride 0: one scale for all). */
int kr_softmax_xent_backward(int64_t rows, int64_t cols, const float *probs,
                             const int64_t *labels, const float *scale, int64_t scale_stride,
                             float *grad);

/* One SGD step on `count` parameters, PyTorch's rule, in one call (one crossing from Python
 * per step, not one per parameter): parameter p has sizes[p] elements at params[p], its
 * gradient at grads[p] and its momentum at buffers[p]; buffers and firsts may be NULL when
 * momentum is 0. firsts[p]: that buffer holds nothing yet (it is set to the gradient).
 * threads (>= 1): at most this many threads share the large parameters; the result does not
 * depend on it. */
int kr_sgd_step(int64_t count, const int64_t *sizes, float **params, const float **grads,
                float **buffers, const int32_t *firsts, double lr, double momentum,
                double dampening, double weight_decay, int32_t nesterov, int64_t threads);
/* One Adam step on `count` parameters, PyTorch's rule, in one call: exp_avgs[p] and
 * exp_avg_sqs[p] are parameter p's moments; its step_sizes[p] = lr / (1 - beta1^t) and
 * corrections2_sqrt[p] = sqrt(1 - beta2^t), for its own step count t, are computed by the
 * caller in double precision; threads as for kr_sgd_step. */
int kr_adam_step(int64_t count, const int64_t *sizes, float **params, const float **grads,
                 float **exp_avgs, float **exp_avg_sqs, const double *step_sizes,
                 const double *corrections2_sqrt, double beta1, double beta2, double eps,
                 double weight_decay, int64_t threads);

/* Gather a mini-batch: row r of dst (row_bytes bytes) is row indices[r] of src, which has
 * src_rows rows; any element type (rows are copied as bytes). An index outside 0..src_rows-1
 * is refused before anything is copied. threads (>= 1): at most this many threads share a
 * large batch; the result does not depend on it. */
int kr_gather_rows(int64_t count, int64_t row_bytes, const void *src, int64_t src_rows,
                   const int64_t *indices, void *dst, int64_t threads);

/* Gather a mini-batch of 8-bit images and standardize it: dst[r, j] = src[indices[r], j] *
 * scale + shift in float32 (a multiply, then an add, rounded each), for rows of `pixels`
 * bytes; indices and threads as for kr_gather_rows. */
int kr_gather_pixels(int64_t count, int64_t pixels, const unsigned char *src, int64_t src_rows,
                     const int64_t *indices, float scale, float shift, float *dst,
                     int64_t threads);

#endif
