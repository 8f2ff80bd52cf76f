/* The kinds of models and what they share (chargan/kind.h). */
#include "chargan/kind.h"

#include <string.h>

#include "chargan/data.h"
#include "chargan/generate.h"
#include "chargan/preset.h"
#include "chargan/rng.h"
#include "chargan/vae.h"

const cg_kind_ops *cg_kind_find(const char *model)
{
    cg_vae_preset vp;
    if (!model)
        return NULL;
    if (cg_preset_find(model))
        return &cg_kind_gan;
    if (cg_vae_preset_get(model, 0, 0, &vp) == 0)
        return &cg_kind_vae;
    return NULL;
}

const char *cg_kind_model_names(void) { return "seed, small, dcgan, cdcgan, deep, vae, cvae"; }

int cg_kind_init(cg_kind *k, const cg_kind_setup *s, cg_error *e)
{
    memset(k, 0, sizeof *k);
    const cg_kind_ops *ops = cg_kind_find(s->model);
    if (!ops)
        return cg_fail(e, "unknown model '%s' (known: %s)", s->model ? s->model : "(none)",
                       cg_kind_model_names());
    if (ops->init(k, s, e)) {
        memset(k, 0, sizeof *k);
        return -1;
    }
    k->ops = ops;
    return 0;
}

void cg_kind_free(cg_kind *k)
{
    if (k->ops && k->impl)
        k->ops->free(k);
    memset(k, 0, sizeof *k);
}

void cg_kind_generate(cg_kind *k, uint64_t seed, long first, int n, const int32_t *labels,
                      float temperature, float *out, float *z_scratch)
{
    cg_decoder d;
    k->ops->decoder(k, &d);
    const int nz = k->latent_dim, chunk = k->local_batch;
    for (int i = 0; i < n; i += chunk) {
        const int b = n - i < chunk ? n - i : chunk;
        cg_sample_noise(z_scratch, (long)b * nz, seed, cg_stream(CG_RNG_SAMPLE, 1),
                        (uint64_t)(first + i) * (uint64_t)nz, temperature);
        d.decode(d.model, z_scratch, labels ? labels + i : NULL, b,
                 out + (size_t)i * CG_IMG_PIXELS);
    }
}
