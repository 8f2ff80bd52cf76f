/* Walking between two codes of a generative model: the images along a path from code a to
 * code b (`chargan interpolate`).
 *
 * The path depends on the model. A GAN's noise is Gaussian, so in many dimensions nearly all
 * its mass lies on a thin shell of radius sqrt(dim): the straight line between two draws
 * dips well inside the shell, through codes of a norm the generator never saw, while the
 * great circle (slerp) stays on it (White 2016, "Sampling generative networks"). A VAE's
 * codes come from an encoder trained towards a unit Gaussian with small per-code spread, and
 * a straight line (lerp) between two codings is the usual walk there. A model plugs in as a
 * cg_decoder: its path, and a function that turns codes into images. */
#ifndef CHARGAN_INTERP_H
#define CHARGAN_INTERP_H
#include <stdint.h>

/* The point at t of a path from a to b (n values each); t = 0 gives a and t = 1 gives b,
 * bit for bit. out may not alias a or b. */
typedef void (*cg_path_fn)(const float *a, const float *b, int n, float t, float *out);

/* (1 - t) a + t b. */
void cg_lerp(const float *a, const float *b, int n, float t, float *out);

/* Spherical interpolation: sin((1-t) w) / sin w * a + sin(t w) / sin w * b, w the angle
 * between a and b. For a and b of equal norm every point keeps that norm. When a and b are
 * nearly parallel or nearly opposite (sin w < 1e-6) the great circle is not defined by them
 * (or the division would only amplify rounding) and this is cg_lerp; a zero vector too. */
void cg_slerp(const float *a, const float *b, int n, float t, float *out);

/* A model that draws images from codes: decode(model, codes [n][code_dim], labels (n
 * classes; NULL for an unconditional model), n, out [n][28][28] in [0,1]). */
typedef struct {
    void *model;
    int code_dim;
    cg_path_fn path;
    void (*decode)(void *model, const float *codes, const int32_t *labels, int n, float *out);
} cg_decoder;

/* A network's forward pass on n <= its batch: codes [n][dim] to images [n][28][28]. */
typedef void (*cg_forward_fn)(void *model, const float *z, const int32_t *labels, int n,
                              float *out);
/* Runs forward over n codes in batches of at most `batch` (labels may be NULL): the shared
 * body of every cg_decoder's decode. */
void cg_decode_batches(cg_forward_fn forward, void *model, int dim, int batch, const float *z,
                       const int32_t *labels, int n, float *out);

/* The images at `steps` (>= 2) evenly spaced points t = k / (steps - 1) of d->path from a to
 * b, one row of them for each of the `rows` classes in labels (labels NULL: one row, no
 * class): out [rows][steps][28][28]. Every row walks through the same codes, so a column
 * shows one style in every class. */
void cg_interp_images(const cg_decoder *d, const float *a, const float *b, int steps,
                      const int32_t *labels, int rows, float *out);

#endif
