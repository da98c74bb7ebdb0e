/* kr_conv.h: the memory movement of a convolutional layer (csrc/conv.c).
 *
 * A convolution's products run on the kernel ladder; what is left is copying pixels: im2col
 * copies every patch into a column, col2im adds the columns' gradients back, max-pooling picks
 * the largest pixel of each window and later sends the gradient to it. Each function here is
 * one pass over its arrays (NumPy's versions are a strided view and a copy, or one pass per
 * kernel offset, in krypton/autograd/conv.py, which stays the readable reference).
 *
 * Images are float32 (N, C, H, W) whose every (n, c) plane is an H x W row-major block;
 * plane (n, c) starts plane_n * n + plane_c * c elements into the buffer. So one signature
 * serves the batch-first layout (plane_n = C·H·W, plane_c = H·W) and the channels-first
 * layout the CNN keeps (plane_n = H·W, plane_c = N·H·W); krypton/fused.py reads both from a
 * NumPy array's strides. The columns are a C-contiguous (C·kh·kw, N·Ho·Wo) matrix: row
 * (c, i, j), column (n, ho, wo) holds x[n, c, sh·ho + i - ph, sw·wo + j - pw], zero outside
 * the image. Window positions (argmax) are int32 offsets r·W + q into their input plane.
 *
 * threads (>= 1): at most this many threads share the planes of a large image; the result
 * does not depend on it. Every function checks its sizes (Ho and Wo must be what the window sizes give) and returns
 * KR_CONV_EINVAL rather than touching memory when they do not fit; an argmax outside its
 * plane is refused too. The declarations below are also the cffi cdef.
 */
#ifndef KR_CONV_H
#define KR_CONV_H
#include <stdint.h>

/* Return codes: 0 on success, a positive value on a failure C can detect. */
enum { KR_CONV_OK = 0, KR_CONV_EINVAL = 2 };

/* cols (C·kh·kw, N·Ho·Wo) = the patches of x, stride (sh, sw), zero padding (ph, pw). */
int kr_im2col(int64_t n, int64_t c, int64_t h, int64_t w, const float *x, int64_t plane_n,
              int64_t plane_c, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
              int64_t pw, int64_t ho, int64_t wo, float *cols, int64_t threads);
/* x = col2im(cols): every plane of x written, each column added back onto its patch (the
 * adjoint of kr_im2col; where patches overlap, their values add up). */
int kr_col2im(int64_t n, int64_t c, int64_t h, int64_t w, const float *cols, int64_t kh,
              int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t ho,
              int64_t wo, float *x, int64_t plane_n, int64_t plane_c, int64_t threads);

/* out = the maximum of each kh x kw window of x, windows (sh, sw) apart, no padding, and
 * argmax = where it is (the first largest in row-major order; a NaN counts as largest, so a
 * window holding one gives NaN, as np.maximum does). bias (may be NULL): one number per
 * channel added to each maximum; relu != 0: then max(., 0). out and argmax share a layout
 * (out_n, out_c). */
int kr_maxpool2d_forward(int64_t n, int64_t c, int64_t h, int64_t w, const float *x,
                         int64_t plane_n, int64_t plane_c, int64_t kh, int64_t kw, int64_t sh,
                         int64_t sw, int64_t ho, int64_t wo, const float *bias, int32_t relu,
                         float *out, int32_t *argmax, int64_t out_n, int64_t out_c,
                         int64_t threads);
/* grad_x = every plane zeroed, then each window's grad added at its argmax; grad and argmax
 * share a layout (out_n, out_c). out (may be NULL): the forward's output, and then the grad
 * is first multiplied by (out > 0), a ReLU's backward; grad_bias (may be NULL): that product
 * summed over each channel. */
int kr_maxpool2d_backward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                          const float *grad, int64_t grad_n, int64_t grad_c,
                          const int32_t *argmax, const float *out, int64_t out_n, int64_t out_c,
                          float *grad_x, int64_t plane_n, int64_t plane_c, float *grad_bias,
                          int64_t threads);

#endif
