/* The variational autoencoder's training step, independent of MPI, in cg_gan's shape: forward
 * and backward passes of the encoder and the decoder for this rank's part of the global
 * batch, and the optimizer's update. The trainer adds the gradient reduction.
 *
 * One step (Kingma & Welling 2014; the VAE of Geron's Hands-On ML, ch. 17): the encoder maps
 * image x (and, conditional, its class) to h = [mean | log_var] of a coding of coding_dim
 * values; the coding is sampled by reparameterization,
 *   z = mean + exp(log_var / 2) * eps,   eps ~ N(0, 1)
 * and the decoder maps z (and the class) to the logits l of the reconstruction sigmoid(l).
 * The loss of one sample is
 *   recon = sum over the 784 pixels of BCE(sigmoid(l), x)     (x in [0, 1] is the target)
 *   kl    = -1/2 sum over the coding of (1 + log_var - exp(log_var) - mean^2)
 * and the step's loss is the mean of recon + kl over the global batch. The book's Keras code
 * minimizes mean-over-pixels BCE + mean(kl) / 784, i.e. this loss / 784: the same minimum and
 * the same gradient directions; with RMSprop or Adam, which divide by the gradient's running
 * size, the factor only scales eps (the book's eps 1e-7 equals 7.84e-5 here). The sum is kept
 * because it is the evidence lower bound itself, comparable across image sizes and models.
 *
 * Random numbers depend only on (seed, step, global sample index): eps of global sample i is
 * normal(seed, stream(CODING, step), i * coding_dim + j), so any split of the batch over ranks
 * draws the same. Nothing else in a step is random. */
#ifndef CHARGAN_VAE_H
#define CHARGAN_VAE_H
#include <stdint.h>

#include "chargan/model.h"
#include "chargan/optim.h"
#include "chargan/preset.h"
#include "chargan/prof.h"

typedef struct {
    char model[16];   /* a VAE preset: "vae" or "cvae" */
    int coding_dim;   /* 0: the preset's (10) */
    int global_batch; /* B */
    int local_batch;  /* this rank's share */
    int n_classes;    /* > 0: conditional on this many classes */
    int optimizer;    /* CG_OPT_RMSPROP or CG_OPT_ADAM; -1: the preset's */
    float lr;         /* 0: the preset's */
    float rho;        /* RMSprop */
    float beta1, beta2; /* Adam */
    float eps;        /* both */
    uint64_t seed;
    /* Learning-rate schedule, as cg_gan_config's: constant until lr_decay_start, then
     * linearly to 0 at lr_decay_end; lr_decay_start < 0: constant. */
    long lr_decay_start, lr_decay_end;
} cg_vae_config;

/* Sums over this rank's samples, each divided by the global batch, so that a SUM over ranks
 * gives global means: loss = recon + kl. */
typedef struct {
    double loss, recon, kl;
} cg_vae_stats;

typedef struct cg_vae cg_vae;
typedef struct {
    /* Called as soon as the decoder's gradient is final (before the encoder's backward pass),
     * so its reduction can overlap with it. May be NULL. */
    void (*dec_grads_ready)(void *user, cg_vae *vae);
    void *user;
} cg_vae_hooks;

struct cg_vae {
    cg_vae_config cfg;
    cg_vae_preset preset;
    cg_net enc, dec;
    cg_tape tape_enc, tape_dec;
    /* The optimizer of cfg.optimizer, one per network, taking their updates together. Adam
     * keeps its moments in net.adam_m and net.adam_v; RMSprop its mean square in net.adam_v
     * (each one contiguous buffer in the parameters' layout). */
    cg_adam adam_enc, adam_dec;
    cg_rmsprop rms_enc, rms_dec;
    float *eps;      /* local_batch x coding_dim: the step's reparameterization noise */
    float *z;        /* local_batch x coding_dim: the sampled codings */
    float *dlogit;   /* local_batch x 784 */
    float *dz;       /* local_batch x coding_dim: dL/dz from the decoder */
    float *dh;       /* local_batch x 2 coding_dim: dL/d[mean | log_var] */
    int32_t *labels; /* local_batch: classes of the batch (conditional models; the caller
                        fills them before cg_vae_grads) */
    cg_prof *prof;   /* where the step's time goes; NULL: not timed */
};

/* Settings shared by the presets: the book's RMSprop (Keras' defaults: rho 0.9, eps 1e-7),
 * Adam's beta1 0.5, beta2 0.999 when chosen, the preset's optimizer, rate and coding size,
 * model "vae" at batch 128, seed 1, unconditional. */
void cg_vae_default_config(cg_vae_config *cfg);

/* Allocates everything a step needs. Returns 0, or -1 with e set. */
int cg_vae_init(cg_vae *vae, const cg_vae_config *cfg, cg_error *e);
void cg_vae_free(cg_vae *vae);

/* Weights from cfg.seed (the encoder's tensor t from init stream t, the decoder's from
 * 100 + t; kernels as their layers ask, biases 0); optimizer state reset. */
void cg_vae_init_weights(cg_vae *vae);

/* Zeroes both gradients and computes this rank's part of them for global step `step`.
 * x: local_batch images [28][28] in [0, 1] of global samples first_sample ..
 * first_sample + local_batch - 1 of the global batch (0-based within it). stats may be NULL. */
void cg_vae_grads(cg_vae *vae, const float *x, long step, long first_sample,
                  const cg_vae_hooks *hooks, cg_vae_stats *stats);

/* Exact, rank-count independent gradients, as cg_gan_set_groups: the global batch is cut into
 * `groups` groups, this rank holding local_groups of them from group first_group; after
 * cg_vae_grads each network's sum is in net.gsum (sum it over ranks with MPI_SUM) and
 * cg_vae_finish_grads turns the sums into float gradients, returning how many values were not
 * finite or out of range (0: fine). */
int cg_vae_set_groups(cg_vae *vae, int groups, int first_group, int local_groups, cg_error *e);
long cg_vae_finish_grads(cg_vae *vae);
/* That count alone, without the float gradients: cg_vae_apply reads the sums themselves. */
long cg_vae_unusable_grads(const cg_vae *vae);

/* The optimizer's update of both networks from the (reduced) gradients (in exact mode read
 * from the sums, as cg_gan_apply), at the learning rate of the schedule for this update. */
void cg_vae_apply(cg_vae *vae);

/* Times every step from now on into prof (NULL: no more). */
void cg_vae_set_prof(cg_vae *vae, cg_prof *prof);

/* Decodes n codings z (n x coding_dim, n <= local_batch) into images out [n][28][28] in
 * [0, 1] (the sigmoid of the logits). Conditional models draw class labels[i] (labels NULL:
 * i mod n_classes); unconditional ones ignore labels. */
void cg_vae_generate(cg_vae *vae, const float *z, const int32_t *labels, int n, float *out);

/* Encodes n images x [n][28][28] (n <= local_batch) of classes labels (conditional models;
 * NULL: i mod n_classes) into the coding's mean and log-variance (n x coding_dim each; either
 * may be NULL). */
void cg_vae_encode(cg_vae *vae, const float *x, const int32_t *labels, int n, float *mean,
                   float *logvar);

/* FLOPs (2 per multiply-add) of one training step at batch B: both forward passes, the
 * decoder's backward pass with its input gradient, the encoder's without. */
double cg_vae_step_flops(const cg_vae *vae, int B);

/* ---- the latent layer, for n samples of c codings; h is [n][2c] = [mean | log_var] ---- */

/* z = mean + exp(log_var / 2) * eps (z and eps [n][c]). */
void cg_vae_sample(int n, int c, const float *h, const float *eps, float *z);
/* Adds to dh the gradient through cg_vae_sample of dz = dL/dz:
 *   dmean += dz;  dlog_var += dz * eps * exp(log_var / 2) / 2 */
void cg_vae_sample_backward(int n, int c, const float *h, const float *eps, const float *dz,
                            float *dh);
/* scale * (sum over the n samples of kl) in double; when dh is not NULL, sets (overwrites) it
 * to the gradient of that: dmean = scale * mean, dlog_var = scale * (exp(log_var) - 1) / 2. */
double cg_vae_kl(int n, int c, const float *h, float scale, float *dh);

#endif
