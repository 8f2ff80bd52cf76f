/* Layer primitives: each a forward/backward pair over a whole batch.
 *
 * Layout. Spatial activations are stored channel-major across the batch, [C][B][H][W]
 * ("CBHW"). With that layout a convolution over a chunk of samples is one im2col followed by
 * one large GEMM whose result lands directly in place (rows of the output are channels), so no
 * transposes are needed between layers. Flat activations (dense layers) are [B][F] row-major.
 * For C == 1 the two layouts coincide with NCHW, so images enter and leave the networks as
 * ordinary [B][28][28] arrays.
 *
 * Weights use PyTorch's layouts: dense kernel [in][out] (Keras' layout, y = x W + b),
 * conv kernel [out][in][k][k], transposed-conv kernel [in][out][k][k].
 *
 * Gradients of parameters are ACCUMULATED (+=) so that several passes (real and fake
 * halves of the discriminator batch) add up; passing NULL skips them. Input gradients are
 * overwritten; NULL skips them. */
#ifndef CHARGAN_NN_H
#define CHARGAN_NN_H
#include <stddef.h>
#include <stdint.h>

#include "chargan/blas.h" /* cg_sgemm: every GEMM of the layers goes through it */

typedef struct {
    int cin, hin, win;
    int cout, hout, wout;
    int k, stride, pad, out_pad; /* out_pad only for transposed convolutions */
} cg_conv_geom;

/* Output size of a convolution / transposed convolution along one axis. */
int cg_conv_out(int in, int k, int stride, int pad);
int cg_convt_out(int in, int k, int stride, int pad, int out_pad);

/* im2col for samples [b0, b0+nb) of x ([C][B][H][W], B = total batch), convolution geometry
 * (k, stride, pad) producing Ho x Wo. col is [C*k*k][nb*Ho*Wo]. col2im is its adjoint and
 * ACCUMULATES into x. */
void cg_im2col(const float *x, int C, int H, int W, int B, int b0, int nb, int k, int stride,
               int pad, int Ho, int Wo, float *col);
void cg_col2im(const float *col, int C, int H, int W, int B, int b0, int nb, int k, int stride,
               int pad, int Ho, int Wo, float *x);

/* Samples per chunk so that a [rows][nb*cols] scratch fits in col_cap floats (at least 1). */
int cg_chunk_samples(size_t rows, size_t cols, size_t col_cap, int B);

/* The convolutions' scratch: cap floats of im2col columns at col. When prof is not NULL the
 * convolutions add their GEMM time and their column/copy time to it (chargan/prof.h). */
typedef struct cg_prof cg_prof;
typedef struct {
    float *col;
    size_t cap;
    cg_prof *prof;
} cg_work;

/* Convolution: y[cout][B][hout][wout] = conv(x) + b, for the samples [b0, b0+n) of a batch of
 * B (the other samples are not touched; activations keep the stride of the whole batch, so a
 * batch can be processed in groups whose GEMM shapes do not depend on B). */
void cg_conv2d_forward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                       const float *w, const float *b, float *y, const cg_work *wk);
void cg_conv2d_backward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                        const float *w, const float *dy, float *dw, float *db, float *dx,
                        const cg_work *wk);

/* Transposed convolution (the adjoint of a convolution with the same k/stride/pad),
 * hout = (hin-1)*stride - 2*pad + k + out_pad; samples [b0, b0+n) of a batch of B. */
void cg_convt2d_forward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                        const float *w, const float *b, float *y, const cg_work *wk);
void cg_convt2d_backward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                         const float *w, const float *dy, float *dw, float *db, float *dx,
                         const cg_work *wk);

/* Dense: y[B][out] = x[B][in] w[in][out] + b. */
void cg_dense_forward(int B, int in, int out, const float *x, const float *w, const float *b,
                      float *y);
void cg_dense_backward(int B, int in, int out, const float *x, const float *w, const float *dy,
                       float *dw, float *db, float *dx);

/* Point-wise activations, applied in place. The backward pass needs only the activation's
 * OUTPUT y (all of these have derivatives expressible through y; LeakyReLU needs alpha > 0),
 * so a layer can store its post-activation output alone. dy is turned into dx in place.
 * SELU (Klambauer et al. 2017): y = scale * x for x > 0, scale * alpha * (e^x - 1) otherwise,
 * with the paper's (and Keras', PyTorch's, ONNX's) constants below; its derivative is scale
 * where y > 0 and y + scale * alpha elsewhere. */
typedef enum {
    CG_ACT_NONE = 0,
    CG_ACT_RELU,
    CG_ACT_LEAKY,
    CG_ACT_SIGMOID,
    CG_ACT_TANH,
    CG_ACT_SELU,
} cg_act;
#define CG_SELU_ALPHA 1.6732632423543772
#define CG_SELU_SCALE 1.0507009873554805
void cg_act_forward(cg_act act, float alpha, size_t n, float *y);
void cg_act_backward(cg_act act, float alpha, size_t n, const float *y, float *dy);

/* Inverted dropout on flat activations y[B][F] of global samples first_sample.., the mask of
 * element (i, f) drawn from (seed, stream, (first_sample+i)*F + f), so any split of the batch
 * over ranks draws the same masks. mask (B*F bytes) is kept for the backward pass. */
void cg_dropout_forward(int B, int F, float rate, uint64_t seed, uint64_t stream,
                        uint64_t first_sample, float *y, uint8_t *mask);
void cg_dropout_backward(int B, int F, float rate, const uint8_t *mask, float *dy);

/* Projection output: y[i] = h_i . (w + embed[label_i]) + b for h [B][F], embed [K][F].
 * Backward accumulates dw, db, dembed (rows of the labels present) and writes dh. */
void cg_project_forward(int B, int F, const float *h, const float *w, const float *b,
                        const float *embed, const int32_t *labels, float *y);
void cg_project_backward(int B, int F, const float *h, const float *w, const float *embed,
                         const int32_t *labels, const float *dy, float *dw, float *db,
                         float *dembed, float *dh);

/* Appends the one-hot code of each sample's label to flat activations: y[B][F+K] =
 * [x | onehot(label, K)]. The backward pass keeps the first F columns. */
void cg_labels_forward(int B, int F, int K, const float *x, const int32_t *labels, float *y);
void cg_labels_backward(int B, int F, int K, const float *dy, float *dx);

/* Binary cross-entropy on logits, stable form max(l,0) - l*t + log1p(exp(-|l|)).
 * Returns scale * sum_i loss_i and, when dlogit is not NULL, sets
 * dlogit[i] = scale * (sigmoid(l_i) - t_i). */
double cg_bce_logits(int n, const float *logit, const float *target, float scale,
                     float *dlogit);

/* Hinge loss on logits with sign s (+1: real, -1: fake): scale * sum_i max(0, 1 - s l_i);
 * dlogit[i] = -s * scale where 1 - s l_i > 0, else 0 (when dlogit is not NULL). */
double cg_hinge_logits(int n, const float *logit, float sign, float scale, float *dlogit);

/* Numerically stable logistic function. */
float cg_sigmoidf(float x);

/* Sums a small array of doubles over every process that shares a batch (MPI_Allreduce in
 * training); NULL function: a single process. Batch normalization uses it so that its
 * statistics are those of the GLOBAL batch, which keeps training independent of the number
 * of ranks.
 *
 * Bit-exact statistics: the global batch is cut into `groups` equal parts (0 or 1: one part),
 * this process holding `local_groups` consecutive parts starting at part `first_group`. The
 * partial sums of each part stay apart — every process fills its own rows of a [groups][...]
 * table and zeros elsewhere, so the sum over processes only adds zeros, which is exact — and
 * the parts are then added in part order. The result does not depend on how the parts are
 * spread over processes. */
typedef struct {
    void (*sum)(void *user, double *buf, int n);
    void *user;
    int groups, first_group, local_groups;
} cg_sync;

/* Batch normalization over the n elements of each of C channels, element j of channel c at
 * c*cs + j*es (CBHW: cs = B*H*W, es = 1; flat [B][F]: cs = 1, es = F). In training the
 * statistics are the batch's (synchronized through sync), biased variance, and the running
 * averages move by `momentum` (running = (1-m) running + m batch, unbiased variance as
 * PyTorch); in inference the running averages are used. y holds the input and receives
 * gamma * xhat + beta; xhat (same layout) and invstd (C) are kept for the backward pass. */
void cg_bn_forward(int C, size_t n, size_t cs, size_t es, float *y, float *xhat,
                   float *invstd, const float *gamma, const float *beta, float *run_mean,
                   float *run_var, float momentum, float eps, int training, const cg_sync *sync,
                   double *scratch /* 2C * max(groups, 1) + 1 */);
/* g holds dL/d(output) and receives dL/d(input). dgamma, dbeta accumulate (may be NULL) this
 * process's sums; afterwards scratch row k (k = 0..groups-1) holds part k's sums of
 * dL/dbeta (C doubles), then of dL/dgamma (C doubles). */
void cg_bn_backward(int C, size_t n, size_t cs, size_t es, float *g, const float *xhat,
                    const float *invstd, const float *gamma, float *dgamma, float *dbeta,
                    const cg_sync *sync, double *scratch /* 2C * max(groups, 1) + 1 */);

/* Class-conditional affine (conditional batch norm, de Vries et al. 2017): element p of
 * sample b in channel c, at c*cs + (b*HW + p)*es (the batch-norm view with n = B*HW: CBHW
 * cs = B*HW, es = 1; flat [B][F] HW = 1, cs = 1, es = F), becomes
 *   y = x * (1 + gamma[label_b][c]) + beta[label_b][c]
 * with gamma, beta [K][C] and labels in [0, K). y may be x. Zero gamma and beta give y = x. */
void cg_cond_affine_forward(int C, int B, int HW, size_t cs, size_t es, const int32_t *labels,
                            const float *x, const float *gamma, const float *beta, float *y);
/* The forward input x of a conditional affine that follows a batch norm, recomputed from
 * what the batch norm keeps instead of stored: x = scale[c] * xhat + shift[c] in float, as
 * cg_bn_forward computes it (bit for bit). */
typedef struct {
    const float *xhat, *scale, *shift;
} cg_bn_output;

/* g holds dL/dy and receives dL/dx (same layout); x is the forward input. dgamma, dbeta
 * accumulate (may be NULL) into the rows of the labels present. */
void cg_cond_affine_backward(int C, int B, int HW, size_t cs, size_t es, const int32_t *labels,
                             const cg_bn_output *x, const float *gamma, float *g,
                             float *dgamma, float *dbeta);

/* Copies between [B][C*HW] (flat, NCHW order per sample) and [C][B][HW]. */
void cg_flat_to_cbhw(int B, int C, int HW, const float *flat, float *cbhw);
void cg_cbhw_to_flat(int B, int C, int HW, const float *cbhw, float *flat);

#endif
