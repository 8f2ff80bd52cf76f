/* Model presets, one row each: the layer tables of G and D and the preset's time-to-quality
 * recipe (what `chargan train --model NAME` runs unless flags say otherwise). Everything that
 * needs a fact about a model (training defaults, help texts, the EMA default, benchmarks)
 * reads it from here. */
#ifndef CHARGAN_PRESET_H
#define CHARGAN_PRESET_H
#include "chargan/model.h"

typedef struct {
    const char *name;
    const char *help;                 /* what the model is, one line */
    void (*layers)(cg_preset *p);     /* fills G's and D's layer tables and the output kind */
    /* The recipe: */
    int conditional;                  /* condition on the data set's classes */
    int batch;                        /* global batch */
    float lr_g, lr_d;                 /* Adam learning rates (beta1 0.5, beta2 0.999) */
    long steps;                       /* the run's length; 0: `epochs` epochs */
    long epochs;
    int lr_decay_pct;                 /* both rates fall linearly to 0 from this percentage of
                                         the steps on; 0: constant */
    double ema;                       /* EMA decay of G's weights; 0: none */
    const char *split;                /* EMNIST split when --data is a directory */
    long limit;                       /* the first N images; 0: all */
} cg_preset_row;

/* The preset `chargan train` runs without --model. */
#define CG_DEFAULT_PRESET "deep"

/* The row of the named preset, or NULL. */
const cg_preset_row *cg_preset_find(const char *name);
/* All rows; *n gets their number. */
const cg_preset_row *cg_preset_rows(int *n);
/* Comma-separated names of all rows, for help and error messages. */
const char *cg_preset_names(void);
/* Fills p with the named preset's layers; n_classes > 0 makes it conditional. Returns 0, or
 * -1 for an unknown name. */
int cg_preset_get(const char *name, int noise_dim, int n_classes, cg_preset *p);

/* The variational autoencoders: an encoder table from the image to 2 * coding_dim outputs
 * (the coding's mean in columns 0..coding_dim-1, its log-variance in the rest: the two dense
 * heads of a VAE as one layer, the same function and gradients) and a decoder table from the
 * coding to 784 logits. The decoder's sigmoid is not in its table: the loss takes the logits
 * (BCE with logits stays finite where a float sigmoid saturates to 0 or 1) and generation
 * applies it (chargan/vae.h). */
typedef struct {
    const char *name;
    int coding_dim;
    int n_classes;          /* > 0: conditional (the one-hot class joins the encoder after
                               flattening and the decoder's input) */
    int in_c, in_h, in_w;   /* the encoder's input: 784 flat, or 1 x 28 x 28 */
    int n_enc, n_dec;
    cg_layer_spec enc[CG_MAX_LAYERS], dec[CG_MAX_LAYERS];
    /* The recipe (what a run uses unless told otherwise): */
    int batch;
    int optimizer;          /* CG_OPT_RMSPROP or CG_OPT_ADAM (chargan/optim.h) */
    float lr;
    long steps;             /* the run's length */
    const char *split;      /* EMNIST split when --data is a directory */
    const char *help;       /* what the model is, one line */
} cg_vae_preset;

#define CG_VAE_CODING_DIM 10

/* Fills p with the named VAE ("vae", "cvae"); coding_dim <= 0: CG_VAE_CODING_DIM;
 * n_classes > 0 makes it conditional. Returns 0, or -1 for an unknown name. */
int cg_vae_preset_get(const char *name, int coding_dim, int n_classes, cg_vae_preset *p);
/* Comma-separated names of the VAE presets. */
const char *cg_vae_preset_names(void);

#endif
