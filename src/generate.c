#include "chargan/generate.h"

#include <ctype.h>
#include <math.h>

#include "chargan/data.h"
#include "chargan/kind.h"
#include "chargan/rng.h"

int cg_class_of_char(const char *classes, char ch)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; classes[k]; k++)
            if (classes[k] == ch)
                return k;
        /* EMNIST merges the lowercase letters that look like their capitals. */
        if (!islower((unsigned char)ch))
            break;
        ch = (char)toupper((unsigned char)ch);
    }
    return -1;
}

const cg_text_layout cg_line_layout = {.glyph = 28, .advance = 20, .gap = 14, .margin = 4,
                                       .scale = 2};

int cg_temperature_valid(float t) { return isfinite(t) && t > 0.0f && t <= 10.0f; }

void cg_sample_noise(float *z, long n, uint64_t seed, uint64_t stream, uint64_t first,
                     float temperature)
{
    cg_rng_normal_fill(z, n, seed, stream, first);
    if (temperature != 1.0f)
        for (long k = 0; k < n; k++)
            z[k] *= temperature;
}

void cg_generate(cg_gan *gan, uint64_t seed, long first, int n, const int32_t *labels,
                 float temperature, float *out, float *z_scratch)
{
    cg_kind k;
    cg_kind_wrap_gan(&k, gan);
    cg_kind_generate(&k, seed, first, n, labels, temperature, out, z_scratch);
}

void cg_style_noise(float *z, int noise_dim, uint64_t seed, float temperature)
{
    cg_sample_noise(z, noise_dim, seed, cg_stream(CG_RNG_SAMPLE, 2), 0, temperature);
}

static void gan_forward(void *model, const float *z, const int32_t *labels, int n, float *out)
{
    cg_gan_generate(model, z, labels, n, out);
}

/* cg_decoder's decode for a cg_gan: batches of at most the local batch it was built for. */
static void gan_decode(void *model, const float *z, const int32_t *labels, int n, float *out)
{
    cg_gan *gan = model;
    cg_decode_batches(gan_forward, gan, gan->preset.noise_dim, gan->cfg.local_batch, z, labels, n, out);
}

void cg_gan_decoder(cg_gan *gan, cg_decoder *d)
{
    d->model = gan;
    d->code_dim = gan->preset.noise_dim;
    d->path = cg_slerp;
    d->decode = gan_decode;
}
