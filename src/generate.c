#include "chargan/generate.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/ema.h"
#include "chargan/rng.h"

#define IMAGE_PIXELS 784

/* The class characters are kept in the run's configuration JSON ("classes": "01..."). */
static void classes_from_config(const char *json, int n_classes, char *classes)
{
    memset(classes, 0, CG_GEN_MAX_CLASSES + 1);
    const char *p = json ? strstr(json, "\"classes\": \"") : NULL;
    if (!p)
        return;
    p += strlen("\"classes\": \"");
    for (int k = 0; k < n_classes && k < CG_GEN_MAX_CLASSES && p[k] && p[k] != '"'; k++)
        classes[k] = p[k];
}

int cg_gan_open(const char *path, int batch, int use_ema, cg_gan *gan, cg_ckpt_meta *m,
                char *classes, cg_error *e)
{
    if (cg_ckpt_read_meta(path, m, e))
        return -1;
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", m->model);
    cfg.noise_dim = m->noise_dim;
    cfg.n_classes = m->n_classes;
    cfg.seed = m->seed;
    cfg.global_batch = cfg.local_batch = batch;
    if (cg_gan_init(gan, &cfg, e)) {
        cg_ckpt_meta_free(m);
        return cg_fail(e, "%s: %s", path, e->msg);
    }
    if (m->has_ema)
        cg_gan_ema_enable(gan, m->ema_decay);
    if (cg_ckpt_load(path, gan, NULL, e)) {
        cg_gan_free(gan);
        cg_ckpt_meta_free(m);
        return -1;
    }
    if (use_ema && gan->ema_g)
        memcpy(gan->g.param, gan->ema_g, sizeof(float) * gan->g.n_params);
    if (classes)
        classes_from_config(m->config_json, m->n_classes, classes);
    return 0;
}

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
    const int nz = gan->preset.noise_dim, chunk = gan->cfg.local_batch;
    for (int i = 0; i < n; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        cg_sample_noise(z_scratch, (long)b * nz, seed, cg_stream(CG_RNG_SAMPLE, 1),
                        (uint64_t)(first + i) * (uint64_t)nz, temperature);
        cg_gan_generate(gan, z_scratch, labels ? labels + i : NULL, b,
                        out + (size_t)i * IMAGE_PIXELS);
    }
}
