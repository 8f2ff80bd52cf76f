/* Networks described as data: a preset is a table of layers; building a network walks the
 * table once to compute shapes, lay out all parameters in one contiguous buffer (with the
 * gradient and both Adam moments in buffers of the same layout) and size every scratch buffer,
 * so nothing is allocated inside a training step. */
#ifndef CHARGAN_MODEL_H
#define CHARGAN_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "chargan/json.h"
#include "chargan/nn.h"
#include "chargan/util.h"

typedef enum {
    CG_OP_DENSE,     /* out = units */
    CG_OP_UNFLATTEN, /* [B][C*H*W] -> [C][B][H][W]; out = C, k = H = W */
    CG_OP_FLATTEN,   /* [C][B][H][W] -> [B][C*H*W] */
    CG_OP_CONV,      /* out = channels, k, stride, pad */
    CG_OP_CONVT,     /* out = channels, k, stride, pad, out_pad */
    CG_OP_DROPOUT,   /* rate; active in training only */
    CG_OP_LABELS,    /* flat [B][F] -> [B][F+out]: appends the one-hot class label */
    CG_OP_PROJECT,   /* flat [B][F] -> [B][1]: w.h + b + embed[label].h (out = classes),
                        the projection discriminator's output (Miyato & Koyama 2018) */
} cg_op;

typedef struct {
    cg_op op;
    int out;
    int k, stride, pad, out_pad;
    cg_act act;
    float alpha; /* LeakyReLU slope */
    float rate;  /* dropout rate */
    int bn;      /* batch normalization between the linear op (then without bias) and act */
    int cbn;     /* > 0 (with bn): conditional batch norm over cbn classes, a per-class affine
                    after the batch norm's own (cg_cond_affine_forward) */
    int init;    /* the kernel's initialization: CG_INIT_GLOROT (0) or CG_INIT_LECUN */
} cg_layer_spec;

/* Kernel initializations (cg_net_init). Glorot uniform is Keras' default; LeCun normal is
 * Keras' lecun_normal, the one SELU's self-normalization assumes (Klambauer et al. 2017):
 * a normal of standard deviation sqrt(1 / fan_in) / 0.87962566 truncated to two standard
 * deviations (the divisor restores the variance the truncation removes). */
enum { CG_INIT_GLOROT = 0, CG_INIT_LECUN = 1 };

/* Batch normalization's epsilon (var + eps under the square root) and running-average
 * momentum (running = (1 - m) running + m batch), PyTorch's defaults; exported models
 * (chargan/export.h) and the checkpoint's layer table use the same. */
#define CG_BN_EPS 1e-5f
#define CG_BN_MOMENTUM 0.1f

#define CG_MAX_LAYERS 16
#define CG_MAX_TENSORS 64

/* One named parameter tensor inside the flat buffers. */
typedef struct {
    char name[48];      /* e.g. "dense0.kernel" */
    size_t offset;      /* in floats, into param/grad/adam_m/adam_v */
    size_t count;
    int ndim;
    int dims[4];        /* natural shape, row-major */
    int fan_in, fan_out; /* Keras' Glorot fans; 0 for tensors set to `init` instead */
    float init;          /* initial value when fan_in == 0: 0 (biases, beta), 1 (gamma) */
    int init_kind;       /* with fan_in > 0: CG_INIT_GLOROT or CG_INIT_LECUN (the layer's) */
    int trainable;       /* 0: state kept with the parameters (BN running averages) */
} cg_tensor;

/* A callback between layers, e.g. to let a non-blocking MPI reduction progress; `layer` is
 * the layer just done (in a backward pass its parameters' gradients are then final), or -1
 * between the groups of one layer. */
typedef struct {
    void (*fn)(void *user, int layer);
    void *user;
} cg_progress;

typedef struct {
    cg_layer_spec spec;
    char name[24];
    int in_c, in_h, in_w;    /* in_h = in_w = 0 for flat inputs: in_c features */
    int out_c, out_h, out_w; /* likewise */
    int w_tensor, b_tensor;  /* tensor indices, -1 when absent */
    int bn_gamma, bn_beta, bn_mean, bn_var; /* batch-norm tensors, -1 without bn */
    int cbn_gamma, cbn_beta; /* [classes][channels] of conditional batch norm, -1 without */
    int e_tensor;            /* class embedding of a projection layer, -1 otherwise */
    cg_conv_geom geom;
    double fwd_flops, bwd_w_flops, bwd_x_flops; /* per sample */
} cg_layer;

typedef struct {
    char name[16]; /* "generator" / "discriminator" */
    int n_layers;
    cg_layer layers[CG_MAX_LAYERS];
    int n_tensors;
    cg_tensor tensors[CG_MAX_TENSORS];
    size_t n_params;
    float *param, *grad, *adam_m, *adam_v; /* each n_params floats, one allocation each */
    int max_batch;
    cg_work work;   /* im2col scratch, and where the step's time is profiled (NULL: not) */
    size_t max_act;        /* largest activation of one layer at max_batch, in floats */
    float *dbuf[2];        /* ping-pong buffers for activation gradients */
    int borrowed_col, borrowed_dbuf; /* work.col / dbuf belong to another net */
    double *fwd_seconds, *bwd_seconds; /* per layer, accumulated (for bench) */
    cg_sync sync;          /* sums batch-norm statistics over ranks; {NULL} alone */
    cg_progress progress;  /* called after each layer of a backward pass; {NULL}: none */
    double *bn_scratch;    /* 2 * widest bn layer * max(sync.groups, 1) + 1 */
    int widest_bn;         /* channels of the widest batch-norm layer */
    /* Exact gradient sums (cg_net_set_groups): training passes run in groups of `group`
     * samples with the same GEMM shapes on any rank count, and each group's parameter
     * gradient is added to gsum in fixed point (round(g * 2^32) in int64), which is exact and
     * so independent of the order of the additions -- within a rank and in the MPI_SUM over
     * ranks. 0 / NULL: one pass over the batch, gradients summed in float into grad. */
    int group;
    int64_t *gsum; /* n_params + 1; the last counts values that were not finite or too large */
    uint8_t *unset; /* per tensor: its sums not yet written in this step (see zero_grads) */
} cg_net;

/* Activations of one forward pass, kept for its backward pass. */
typedef struct {
    int batch;
    int training; /* of the forward pass (inference dropout is the identity) */
    const float *input;
    float *act[CG_MAX_LAYERS]; /* output of layer i, max_batch sized */
    uint8_t *mask[CG_MAX_LAYERS];
    float *xhat[CG_MAX_LAYERS];   /* batch-norm: normalized pre-activation */
    float *invstd[CG_MAX_LAYERS]; /* batch-norm: per channel */
    const int32_t *labels;        /* of the pass, for the layers that use classes */
} cg_tape;

/* Options of one forward pass. Dropout keys its masks by global sample index. */
typedef struct {
    int training;
    uint64_t seed;
    uint64_t step;
    uint64_t first_sample; /* global index of the tape's sample 0 */
    const int32_t *labels; /* class of each sample, for conditional networks */
    const uint64_t *sample_ids; /* global index of each sample; NULL: first_sample + i */
} cg_fwd_opts;

typedef struct {
    const char *name;
    int noise_dim;
    int n_classes;    /* > 0: conditional (labels enter G's input and D after flatten) */
    int tanh_output;  /* G ends in tanh: data are scaled to [-1, 1] for training */
    int cond_bn;      /* conditional: every batch norm of G also gets the class (cbn) */
    float lr_g, lr_d; /* the preset's Adam learning rates (beta1 0.5, beta2 0.999) */
    int n_g, n_d;
    cg_layer_spec g[CG_MAX_LAYERS], d[CG_MAX_LAYERS];
} cg_preset;


/* Builds a network from a layer table for inputs of shape (in_c, in_h, in_w) (in_h = in_w = 0:
 * flat input of in_c features) and batches up to max_batch. col_cap_floats bounds the im2col
 * scratch (0: a default of 4M floats). Returns 0 or -1 with e set. */
int cg_net_build(cg_net *net, const char *name, const cg_layer_spec *layers, int n_layers,
                 int in_c, int in_h, int in_w, int max_batch, size_t col_cap_floats,
                 cg_error *e);
void cg_net_free(cg_net *net);
/* For two nets that never run at the same time (a GAN's G and D): each of the im2col and the
 * activation-gradient scratch is kept in the net whose is larger and lent to the other, which
 * frees its own (about 4.6 MB for `deep`). Sizes, and so every GEMM's shape, stay as built. */
void cg_net_share_scratch(cg_net *a, cg_net *b);

/* Kernels as their layer asks (Glorot uniform unless CG_INIT_LECUN) and zero biases, from
 * (seed, CG_RNG_INIT, stream_base + tensor). */
void cg_net_init(cg_net *net, uint64_t seed, uint64_t stream_base);

/* Size of the network output per sample and of its input per sample. */
size_t cg_net_out_size(const cg_net *net);
size_t cg_net_in_size(const cg_net *net);

int cg_tape_alloc(const cg_net *net, cg_tape *t);
void cg_tape_free(cg_tape *t);

/* Forward pass of B samples (B <= max_batch). Returns the output (inside the tape). */
const float *cg_net_forward(cg_net *net, cg_tape *t, const float *input, int B,
                            const cg_fwd_opts *o);

/* Backward pass from dout (B x out_size). Accumulates parameter gradients into net->grad
 * when param_grads is set; writes the input gradient into dx when dx is not NULL. Layers
 * before the first one that has parameters (with param_grads) or all layers (with dx) are
 * visited as needed, so no unneeded gradient is computed. */
void cg_net_backward(cg_net *net, cg_tape *t, const float *dout, int param_grads, float *dx);

/* Layer L's own tensors (kernel, bias, batch norm's four, embedding) into ts, -1 where absent;
 * returns how many entries (CG_LAYER_TENSORS). */
#define CG_LAYER_TENSORS 7
int cg_layer_tensors(const cg_layer *L, int ts[CG_LAYER_TENSORS]);

/* Whether no layer mixes the samples of a batch (no batch norm), so that each sample's
 * gradients are linear in its own output gradient alone. */
int cg_net_samples_apart(const cg_net *net);
/* For such a net (cg_net_samples_apart), the backward pass of two losses at once: dx gets the
 * input gradient of dout, while the parameter gradients accumulated are those of the seeds
 * dout[i] * scale[i] (i the sample). Since every sample's gradients are linear in its own seed,
 * one pass serves a loss that needs parameter gradients and another that needs the input
 * gradient (a GAN's D and G losses on the same fakes). */
void cg_net_backward_scaled(cg_net *net, cg_tape *t, const float *dout, const float *scale,
                            float *dx);

/* Exact, rank-count independent gradient sums. The global batch of training passes is cut
 * into `groups` equal parts, this process holding `local_groups` of them starting at part
 * `first_group` (its batch must then be a multiple of local_groups). Sets net->group,
 * net->sync's part layout, allocates gsum and grows the batch-norm scratch. Returns 0 or -1
 * with e set. */
int cg_net_set_groups(cg_net *net, int groups, int first_group, int local_groups, int batch,
                      cg_error *e);
/* Zeroes grad; in exact mode, starts gsum's step (each tensor's sums read zero once the
 * step's backward passes end). */
void cg_net_zero_grads(cg_net *net);
/* Exact mode: grad = gsum * 2^-32 (after gsum was summed over ranks). Returns the number of
 * gradient values that were not finite or beyond the fixed-point range (|g| >= 2^19 per
 * group), summed like gsum; 0 without exact mode. */
long cg_net_exact_finish(cg_net *net);
/* That count alone (the optimizers can read the sums themselves: cg_adam_step_net). */
long cg_net_exact_unusable(const cg_net *net);
/* The float gradient value of an exact sum: (float)(s * 2^-32). s goes to double as its two
 * 32-bit halves, each exact, added with one rounding: the same value as (double)s, in
 * conversions that vectorize (x86 has no vector int64 -> double before AVX-512). */
static inline float cg_exact_value(int64_t s)
{
    const double hi = (double)(int32_t)(s >> 32) * 4294967296.0;
    const double lo = (double)(int32_t)((uint32_t)s ^ 0x80000000u) + 2147483648.0;
    return (float)((hi + lo) * (1.0 / 4294967296.0));
}

/* FLOPs (2 per multiply-add) of forward and backward parts, per sample. */
double cg_net_fwd_flops(const cg_net *net);
double cg_net_bwd_flops(const cg_net *net, int param_grads, int input_grad);
/* Layer i's part of cg_net_bwd_flops. */
double cg_layer_bwd_flops(const cg_net *net, int i, int param_grads, int input_grad);

/* The built network as a JSON array, one object per layer, so that other programs can rebuild
 * it from a checkpoint without a copy of the preset tables: the spec (op, out, k, stride, pad,
 * out_pad, act, alpha, rate, bn, cbn), input and output shapes ([C] flat, [C, H, W] spatial),
 * the names of the layer's tensors, and with batch norm its inference formula, eps and
 * momentum (and the conditional affine's). A new reference; NULL when out of memory. */
json_t *cg_net_layers_json(const cg_net *net);

/* Find a tensor by name; -1 when absent. */
int cg_net_find_tensor(const cg_net *net, const char *name);

#endif
