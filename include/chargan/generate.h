/* Generating from a trained GAN: name its classes, draw samples. Shared by `chargan sample`,
 * `chargan write`, `chargan compare` and `chargan eval` (which open the checkpoint with
 * cg_gan_open, chargan/ckpt.h). */
#ifndef CHARGAN_GENERATE_H
#define CHARGAN_GENERATE_H
#include "chargan/gan.h"
#include "chargan/interp.h"

/* The class that draws character ch: its own class, or for a lowercase letter EMNIST merges
 * into its uppercase class (c i j k l m o p s u v w x y z) that class. -1 when none. */
int cg_class_of_char(const char *classes, char ch);

/* Generates n images [n][28][28] in [0,1] in batches of the gan's local batch; noise of image
 * i is temperature * normal(seed, stream(CG_RNG_SAMPLE, 1), (first + i) * noise_dim + j), so
 * any image can be regenerated alone. labels (n, may be NULL) picks classes of a conditional
 * model. temperature 1 draws from the noise the generator was trained on; other values
 * widen (> 1) or narrow (< 1: reduced-variance sampling, cf. BigGAN's truncation) the noise,
 * same directions. */
void cg_generate(cg_gan *gan, uint64_t seed, long first, int n, const int32_t *labels,
                 float temperature, float *out, float *z_scratch);

/* How `chargan write` lays out a line, in glyph pixels (and the browser page, which reads
 * these numbers from `chargan export --meta`): glyphs of glyph x glyph pixels sit `advance`
 * apart (EMNIST centres characters in 28 px with wide margins), a space advances `gap`, a
 * margin surrounds the line, and every glyph pixel becomes scale x scale image pixels
 * (write's default --scale). Dark ink on white paper. */
typedef struct {
    int glyph, advance, gap, margin, scale;
} cg_text_layout;
extern const cg_text_layout cg_line_layout;

/* The temperatures the commands accept: finite, in (0, 10]. */
int cg_temperature_valid(float t);
/* Sampling noise: n normals (cg_rng_normal_fill(z, n, seed, stream, first)) times
 * temperature; what cg_generate and `chargan write` draw. */
void cg_sample_noise(float *z, long n, uint64_t seed, uint64_t stream, uint64_t first,
                     float temperature);
/* The style of `chargan write --seed seed`: the one noise vector (noise_dim values) every
 * glyph of its line is drawn from, cg_sample_noise(z, noise_dim, seed,
 * stream(CG_RNG_SAMPLE, 2), 0, temperature). `chargan interpolate` starts and ends there. */
void cg_style_noise(float *z, int noise_dim, uint64_t seed, float temperature);

/* gan as a cg_decoder (chargan/interp.h): its noise walked by slerp, images drawn by
 * cg_gan_generate in batches of the gan's local batch. d refers to gan, not a copy. */
void cg_gan_decoder(cg_gan *gan, cg_decoder *d);

#endif
