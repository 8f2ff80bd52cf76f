/* The GAN training step, independent of MPI: forward and backward passes of both networks for
 * this rank's part of the global batch, and the Adam updates. The trainer adds the gradient
 * reduction through a hook, so a single process and P ranks run the same code.
 *
 * One step (the notebook's): z ~ N(0,1) for every sample, fake = G(z);
 *   L_D = mean over the 2B samples of concat(real, fake) of BCE(D(x), 1 for real, 0 for fake)
 *   L_G = mean over the B fakes of BCE(D(fake), 1)
 * or with the hinge loss (Lim & Ye 2017; Miyato et al. 2018):
 *   L_D = mean over the B reals of max(0, 1 - D(real)) + mean over the fakes of max(0, 1 + D(fake))
 *   L_G = -mean over the B fakes of D(fake)
 * D runs once on the real half and once on the fake half (the same as on the concatenation:
 * no layer of D mixes samples); D(fake) and its activations serve both losses. Each fake's
 * gradients are linear in its own seed, so one backward pass through D from unit seeds gives
 * both losses' gradients, each scaled sample by sample (with batch norm in D, an extra
 * input-gradient pass would be needed instead). Both gradients come from the weights before
 * the update (as in a single GradientTape step).
 *
 * Random numbers depend only on (seed, step, global sample index): noise of global sample i is
 * normal(seed, stream(NOISE, step), i*noise_dim + j); dropout treats real sample i as global
 * sample i and fake sample i as global sample B + i. */
#ifndef CHARGAN_GAN_H
#define CHARGAN_GAN_H
#include <stdint.h>

#include "chargan/model.h"
#include "chargan/preset.h"
#include "chargan/optim.h"
#include "chargan/prof.h"

typedef struct {
    char model[16];
    int noise_dim;
    int global_batch; /* B */
    int local_batch;  /* this rank's share, B / P */
    float lr_g, lr_d, beta1, beta2, eps; /* lr 0: the preset's default */
    uint64_t seed;
    int n_classes;    /* > 0: conditional generation over this many classes */
    int loss;         /* CG_LOSS_BCE (the notebook's) or CG_LOSS_HINGE */
    /* Learning-rate schedule: constant until step lr_decay_start, then falling linearly to 0
     * at step lr_decay_end (the run's last step); lr_decay_start < 0: constant. */
    long lr_decay_start, lr_decay_end;
} cg_gan_config;

enum { CG_LOSS_BCE, CG_LOSS_HINGE };

/* Sums over this rank's samples, each divided by the global count, so that a SUM over ranks
 * gives global means. */
typedef struct {
    double loss_d, loss_g, d_real, d_fake;
} cg_gan_stats;

typedef struct cg_gan cg_gan;
typedef struct {
    /* Called as soon as D's gradient is final (before G's backward pass), so its reduction can
     * overlap with G's backward pass. May be NULL. */
    void (*d_grads_ready)(void *user, cg_gan *gan);
    void *user;
} cg_gan_hooks;

struct cg_gan {
    cg_gan_config cfg;
    cg_preset preset;
    cg_net g, d;
    /* D sees the reals and the fakes of a step as one pass of 2 x local_batch samples, group
     * by group: the reals of a group of the exact sums, then its fakes (`gs` each), so that
     * every GEMM of D is twice as wide and D's gradient of a group is one sum, on any rank
     * count. */
    cg_tape tape_g, tape_d;
    cg_adam adam_g, adam_d;
    int gs;         /* samples of G per group (local_batch without groups) */
    float *z;       /* local_batch x noise_dim */
    float *target;  /* local_batch ones, then local_batch zeros */
    float *ones;    /* 2 x local_batch ones: the unit seeds of D's backward pass */
    float *logits;  /* 2 x local_batch: D's logits of the reals, then of the fakes */
    float *dlogit;  /* 3 x local_batch: D's loss's seeds of the reals and of the fakes, then
                       G's loss's seeds of the fakes */
    float *d_in;    /* 2 x local_batch x 784: D's input, grouped as above */
    float *d_scale; /* 2 x local_batch: D's loss's seed of each of D's samples */
    float *d_dx;    /* 2 x local_batch x 784: D's input gradient from unit seeds */
    int32_t *d_labels;   /* 2 x local_batch: the class of each of D's samples */
    uint64_t *d_ids;     /* 2 x local_batch: the global sample index of each (dropout) */
    float *dfake;   /* local_batch x 784: dL_G / d fake */
    int32_t *labels; /* local_batch: classes of the real batch (conditional models; the
                        caller fills them before cg_gan_grads). The fakes of a step are
                        asked for the same classes, so G sees the data's class mix. */
    float data_lo;  /* real images are scaled to [data_lo, 1]: 0 (sigmoid G), -1 (tanh G) */
    float *ema_g;      /* EMA of G's parameters, G's layout (chargan/ema.h); NULL: no EMA */
    double ema_decay;  /* its decay (0 without EMA) */
    cg_prof *prof;     /* where the step's time goes by kind of work; NULL: not timed */
    struct cg_trace *trace; /* the step's passes as timeline spans (chargan/trace.h); NULL */
};

/* Times every step from now on into prof (NULL: no more): both networks' layers, the noise,
 * Adam and the EMA. */
void cg_gan_set_prof(cg_gan *gan, cg_prof *prof);

/* Fills cfg with the settings shared by every preset (beta1 0.5, beta2 0.999, eps 1e-7, noise
 * 150, the preset's learning rates, unconditional) for model seed at batch 64; a run takes
 * the rest from its preset's row (chargan/preset.h). */
void cg_gan_default_config(cg_gan_config *cfg);

/* Allocates everything a step needs. Returns 0, or -1 with e set (unknown model, ...). */
int cg_gan_init(cg_gan *gan, const cg_gan_config *cfg, cg_error *e);
void cg_gan_free(cg_gan *gan);

/* Glorot-uniform weights and zero biases from cfg.seed; Adam state reset. */
void cg_gan_init_weights(cg_gan *gan);

/* Where sample i (0 .. local_batch - 1) of the reals (fake 0) or of the fakes (fake 1) sits
 * in D's pass of a step (tape_d, d_in). */
size_t cg_gan_d_sample(const cg_gan *gan, int i, int fake);

/* A step's forward passes alone: G's fakes from the step's noise, then D on the reals and the
 * fakes, its logits into gan->logits (reals, then fakes). Arguments as cg_gan_grads'. */
void cg_gan_forward(cg_gan *gan, const float *real, long step, long first_sample);

/* Zeroes both gradients and computes this rank's part of them for global step `step`.
 * real: local_batch images [28][28] in the model's range, of global samples
 * first_sample .. first_sample + local_batch - 1 of the global batch (0-based within it). */
void cg_gan_grads(cg_gan *gan, const float *real, long step, long first_sample,
                  const cg_gan_hooks *hooks, cg_gan_stats *stats);

/* Exact, rank-count independent gradients (see cg_net_set_groups): the global batch is cut
 * into `groups` groups, this rank holding local_groups of them from group first_group.
 * Then cg_gan_grads leaves each network's sum in net.gsum (int64 fixed point; sum it over
 * ranks with MPI_SUM) and cg_gan_finish_grads turns the sums into the float gradients,
 * returning how many values were not finite or out of range (0: fine). */
int cg_gan_set_groups(cg_gan *gan, int groups, int first_group, int local_groups, cg_error *e);
long cg_gan_finish_grads(cg_gan *gan);
/* That count alone, without the float gradients: cg_gan_apply reads the sums themselves. */
long cg_gan_unusable_grads(const cg_gan *gan);

/* The learning-rate factor of update t (0-based: the updates already taken) under the
 * schedule of cg_gan_config: 1 before `start` (or when start < 0), then (end - t) /
 * (end - start), which reaches 1 / (end - start) at the last update t = end - 1. */
double cg_lr_scale(long t, long start, long end);

/* Adam on both networks from the (reduced) gradients -- in exact mode read from the sums, so
 * cg_gan_finish_grads is not needed first -- at the learning rates of the schedule for this
 * update. */
void cg_gan_apply(cg_gan *gan);

/* FLOPs (2 per multiply-add) of one training step at batch B: G forward (B), D forward on
 * real and fake (2B), D backward for the D loss (weights and inputs, no input gradient for D's
 * first layer), D input-gradient pass for the G loss (B), G backward (none into the noise). */
double cg_gan_step_flops(const cg_gan *gan, int B);
/* Layer i of net (gan's G or D): its forward and backward FLOPs in one step of batch B. */
void cg_gan_layer_flops(const cg_gan *gan, const cg_net *net, int i, int B, double *fwd,
                        double *bwd);

/* Generates n images (n <= local_batch) from the noise vectors z (n x noise_dim) into out
 * [n][28][28], in [0,1] whatever G's output range, inference mode (batch norm uses its
 * running averages; nothing is synchronized). Conditional models draw class labels[i]
 * (labels NULL: classes i mod n_classes); unconditional ones ignore labels. */
void cg_gan_generate(cg_gan *gan, const float *z, const int32_t *labels, int n, float *out);

#endif
