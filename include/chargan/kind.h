/* A kind of model that the training loop, the checkpoints and the inference commands handle
 * alike: a GAN (generator and discriminator) or a VAE (encoder and decoder). A kind brings
 * its own step and its own tensors; everything around the step (data, the reduction over the
 * ranks, checkpoints, samples, scores, logs, resume) works on this interface.
 *
 * A model is a cg_kind: an operations table, the model itself (impl) and a view of what the
 * shared code needs: its networks in checkpoint order with their names, which of them is
 * reduced first, the generating network's input size, batch shares, the labels buffer and
 * the EMA, if any. The kind of a model name is found by cg_kind_find. */
#ifndef CHARGAN_KIND_H
#define CHARGAN_KIND_H
#include <stdint.h>

#include "chargan/interp.h"
#include "chargan/model.h"

struct cg_train_opts;
struct cg_trace;

#define CG_KIND_NETS 2
#define CG_KIND_STATS 4

/* A network of a model: its checkpoint group name and its optimizer's update counter (saved
 * as the attribute adam_t of /optimizer/NAME). */
typedef struct {
    const char *name;
    cg_net *net;
    long *opt_t;
} cg_kind_net;

/* Called by a step as soon as the gradient of the network nets[first_ready] is final, before
 * the other network's backward pass, so its reduction can overlap with that pass. */
typedef struct {
    void (*ready)(void *user);
    void *user;
} cg_kind_hooks;

/* What a model is built for. run: the training run's resolved settings (NULL: inference from
 * a checkpoint, with the defaults of cg_gan_default_config / cg_vae_default_config). */
typedef struct {
    const char *model;
    int latent_dim;      /* the generating network's input size; 0: the preset's */
    int n_classes;       /* > 0: conditional */
    int global_batch, local_batch;
    uint64_t seed;
    double ema;          /* GAN: EMA decay of the generator's weights; 0: none */
    const struct cg_train_opts *run;
} cg_kind_setup;

typedef struct cg_kind cg_kind;

typedef struct {
    const char *name; /* "gan", "vae": the checkpoint attribute kind */
    const char *net_names[CG_KIND_NETS]; /* the networks' names, in checkpoint order */
    /* The step's statistics, sums over a rank's samples each divided by the global batch, so
     * that a sum over ranks gives the global means: keys in metrics.jsonl and labels on the
     * progress line, in the order grads fills them. */
    int n_stats;
    const char *stat_keys[CG_KIND_STATS];
    const char *stat_labels[CG_KIND_STATS];
    /* Builds the model (the view included). Returns 0, or -1 with e set. */
    int (*init)(cg_kind *k, const cg_kind_setup *s, cg_error *e);
    void (*free)(cg_kind *k);
    /* Weights from the seed; optimizer state (and EMA) reset. */
    void (*init_weights)(cg_kind *k);
    /* Exact sums over `groups` groups of the global batch (cg_gan_set_groups). */
    int (*set_groups)(cg_kind *k, int groups, int first_group, int local_groups, cg_error *e);
    /* This rank's gradients of global step `step` for images x (local_batch, in
     * [data_lo, 1]) of global samples first_sample.. (labels filled in k->labels); stats
     * receives n_stats values. */
    void (*grads)(cg_kind *k, const float *x, long step, long first_sample,
                  const cg_kind_hooks *hooks, double *stats);
    /* Exact mode: the count of unusable gradient values (0: fine); apply reads the sums. */
    long (*finish_grads)(cg_kind *k);
    /* The optimizer's update from the reduced gradients, then the EMA when there is one
     * (timed as spans of the trace given to set_trace). */
    void (*apply)(cg_kind *k);
    /* The generating network as a cg_decoder (codes of latent_dim values to images in
     * [0, 1], in batches of at most local_batch; the kind's interpolation path). */
    void (*decoder)(cg_kind *k, cg_decoder *d);
    /* FLOPs of one training step at batch B. */
    double (*step_flops)(const cg_kind *k, int B);
    /* The learning-rate schedule (cg_lr_scale): constant until update `start`, then
     * linearly to 0 at `end`; start < 0: constant. */
    void (*set_schedule)(cg_kind *k, long start, long end);
    /* The learning rates actually used, written back into the run's settings. */
    void (*save_rates)(const cg_kind *k, struct cg_train_opts *o);
    /* Exchanges the generating network's weights with its EMA (no EMA: nothing). */
    void (*ema_swap)(cg_kind *k);
    /* Records the step's passes as spans of t (chargan/trace.h); NULL: none. */
    void (*set_trace)(cg_kind *k, struct cg_trace *t);
} cg_kind_ops;

struct cg_kind {
    const cg_kind_ops *ops;
    void *impl;                  /* the cg_gan or cg_vae */
    char model[16];
    int n_nets;
    cg_kind_net nets[CG_KIND_NETS]; /* checkpoint order */
    int first_ready;  /* the network whose gradient is final first (cg_kind_hooks) */
    int gen;          /* the network that draws images (the generator, the decoder) */
    int latent_dim, n_classes, global_batch, local_batch;
    uint64_t seed;
    float data_lo;    /* images are scaled to [data_lo, 1] for training */
    int32_t *labels;  /* local_batch classes of the batch (conditional models) */
    float *ema;       /* EMA of nets[gen]'s parameters; NULL: none */
    double ema_decay;
};

/* The operations of the kind that has a preset named model; NULL when none does. */
const cg_kind_ops *cg_kind_find(const char *model);
/* Every preset name of every kind, comma-separated (test_kind checks it against the tables). */
const char *cg_kind_model_names(void);

/* Builds k as a model of s->model's kind. Returns 0, or -1 with e set (unknown model...). */
int cg_kind_init(cg_kind *k, const cg_kind_setup *s, cg_error *e);
/* Frees what cg_kind_init allocated; a zeroed k is fine. */
void cg_kind_free(cg_kind *k);

/* Draws n images from codes z ~ temperature * N(0, 1): code of image i is
 * normal(seed, stream(CG_RNG_SAMPLE, 1), (first + i) * latent_dim + j), as cg_generate. */
void cg_kind_generate(cg_kind *k, uint64_t seed, long first, int n, const int32_t *labels,
                      float temperature, float *out, float *z_scratch);

/* The kinds (kind_gan.c, kind_vae.c). */
extern const cg_kind_ops cg_kind_gan, cg_kind_vae;

/* A view of an existing GAN (not owned: k->ops->free is not to be called on it), for code
 * that holds a cg_gan and uses the shared machinery (checkpoints, the reduction). */
struct cg_gan;
void cg_kind_wrap_gan(cg_kind *k, struct cg_gan *gan);

#endif
