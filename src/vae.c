#include "chargan/vae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/data.h"
#include "chargan/gan.h" /* cg_lr_scale */
#include "chargan/rng.h"

void cg_vae_default_config(cg_vae_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->model, sizeof cfg->model, "vae");
    cfg->global_batch = cfg->local_batch = 128;
    cfg->optimizer = -1; /* the preset's */
    cfg->rho = CG_RMSPROP_RHO;
    cfg->beta1 = 0.5f;
    cfg->beta2 = 0.999f;
    cfg->eps = CG_RMSPROP_EPS; /* Keras' epsilon for both */
    cfg->seed = 1;
    cfg->lr_decay_start = -1;
}

/* The networks from the preset's tables; the encoder must make 2 * coding_dim outputs and
 * the decoder an image. */
static int build_nets(cg_vae *vae, cg_error *e)
{
    const cg_vae_preset *p = &vae->preset;
    const int B = vae->cfg.local_batch;
    if (cg_net_build(&vae->enc, "encoder", p->enc, p->n_enc, p->in_c, p->in_h, p->in_w, B, 0,
                     e) ||
        cg_net_build(&vae->dec, "decoder", p->dec, p->n_dec, p->coding_dim, 0, 0, B, 0, e))
        return -1;
    if (cg_net_out_size(&vae->enc) != 2 * (size_t)p->coding_dim ||
        cg_net_out_size(&vae->dec) != CG_IMG_PIXELS)
        return cg_fail(e, "model '%s': the encoder must make 2 x %d values and the decoder "
                          "28x28 logits", p->name, p->coding_dim);
    /* The two never run at the same time: the decoder's input gradient goes to vae->dz. */
    cg_net_share_scratch(&vae->enc, &vae->dec);
    cg_tape_alloc(&vae->enc, &vae->tape_enc);
    cg_tape_alloc(&vae->dec, &vae->tape_dec);
    return 0;
}

int cg_vae_init(cg_vae *vae, const cg_vae_config *cfg, cg_error *e)
{
    memset(vae, 0, sizeof *vae);
    vae->cfg = *cfg;
    cg_vae_config *c = &vae->cfg;
    if (c->n_classes < 0 || c->n_classes > 256)
        return cg_fail(e, "%d classes: not in 0..256", c->n_classes);
    if (cg_vae_preset_get(c->model, c->coding_dim, c->n_classes, &vae->preset))
        return cg_fail(e, "unknown VAE '%s' (known: %s)", c->model, cg_vae_preset_names());
    if (c->local_batch < 1 || c->global_batch < c->local_batch)
        return cg_fail(e, "batch %d (local %d) is not valid", c->global_batch, c->local_batch);
    c->coding_dim = vae->preset.coding_dim;
    if (c->optimizer < 0)
        c->optimizer = vae->preset.optimizer;
    if (c->optimizer != CG_OPT_ADAM && c->optimizer != CG_OPT_RMSPROP)
        return cg_fail(e, "unknown optimizer %d", c->optimizer);
    if (c->lr <= 0.0f)
        c->lr = vae->preset.lr;
    if (build_nets(vae, e))
        return -1;
    const size_t B = (size_t)c->local_batch, nc = (size_t)c->coding_dim;
    vae->eps = cg_alloc(sizeof(float) * B * nc);
    vae->z = cg_alloc(sizeof(float) * B * nc);
    vae->dz = cg_alloc(sizeof(float) * B * nc);
    vae->dh = cg_alloc(sizeof(float) * B * 2 * nc);
    vae->dlogit = cg_alloc(sizeof(float) * B * CG_IMG_PIXELS);
    vae->labels = cg_alloc(sizeof(int32_t) * B);
    vae->adam_enc = vae->adam_dec = (cg_adam){c->lr, c->beta1, c->beta2, c->eps, 0};
    vae->rms_enc = vae->rms_dec = (cg_rmsprop){c->lr, c->rho, c->eps, 0};
    return 0;
}

void cg_vae_free(cg_vae *vae)
{
    cg_tape_free(&vae->tape_enc);
    cg_tape_free(&vae->tape_dec);
    cg_net_free(&vae->enc);
    cg_net_free(&vae->dec);
    cg_free(vae->eps);
    cg_free(vae->z);
    cg_free(vae->dz);
    cg_free(vae->dh);
    cg_free(vae->dlogit);
    cg_free(vae->labels);
    memset(vae, 0, sizeof *vae);
}

void cg_vae_init_weights(cg_vae *vae)
{
    cg_net_init(&vae->enc, vae->cfg.seed, 0);
    cg_net_init(&vae->dec, vae->cfg.seed, 100);
    cg_net *nets[2] = {&vae->enc, &vae->dec};
    for (int k = 0; k < 2; k++) {
        memset(nets[k]->adam_m, 0, sizeof(float) * nets[k]->n_params);
        memset(nets[k]->adam_v, 0, sizeof(float) * nets[k]->n_params);
    }
    vae->adam_enc.t = vae->adam_dec.t = vae->rms_enc.t = vae->rms_dec.t = 0;
}

/* ---- the latent layer ---------------------------------------------------------------- */

void cg_vae_sample(int n, int c, const float *h, const float *eps, float *z)
{
    for (int i = 0; i < n; i++) {
        const float *m = h + (size_t)i * 2 * c, *lv = m + c;
        for (int j = 0; j < c; j++)
            z[(size_t)i * c + j] = m[j] + expf(0.5f * lv[j]) * eps[(size_t)i * c + j];
    }
}

void cg_vae_sample_backward(int n, int c, const float *h, const float *eps, const float *dz,
                            float *dh)
{
    for (int i = 0; i < n; i++) {
        const float *lv = h + (size_t)i * 2 * c + c;
        float *dm = dh + (size_t)i * 2 * c, *dlv = dm + c;
        for (int j = 0; j < c; j++) {
            const float g = dz[(size_t)i * c + j];
            dm[j] += g;
            dlv[j] += g * eps[(size_t)i * c + j] * 0.5f * expf(0.5f * lv[j]);
        }
    }
}

double cg_vae_kl(int n, int c, const float *h, float scale, float *dh)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *m = h + (size_t)i * 2 * c, *lv = m + c;
        for (int j = 0; j < c; j++) {
            const double e = exp((double)lv[j]);
            sum += -0.5 * (1.0 + lv[j] - e - (double)m[j] * m[j]);
            if (dh) {
                dh[(size_t)i * 2 * c + j] = scale * m[j];
                dh[(size_t)i * 2 * c + c + j] = scale * 0.5f * (expf(lv[j]) - 1.0f);
            }
        }
    }
    return sum * scale;
}

/* ---- the step ------------------------------------------------------------------------ */

/* Encoder, sampling and decoder for this rank's samples; returns the logits (in the tape). */
static const float *vae_forward(cg_vae *vae, const float *x, long step, long first_sample)
{
    const cg_vae_config *cfg = &vae->cfg;
    const int B = cfg->local_batch, c = cfg->coding_dim;
    const cg_fwd_opts o = {1, cfg->seed, (uint64_t)step, (uint64_t)first_sample, vae->labels,
                           NULL};
    const float *h = cg_net_forward(&vae->enc, &vae->tape_enc, x, B, &o);
    const cg_prof_mark m = cg_prof_begin(vae->prof);
    cg_rng_normal_fill(vae->eps, (long)B * c, cfg->seed,
                       cg_stream(CG_RNG_CODING, (uint64_t)step), (uint64_t)first_sample * c);
    cg_vae_sample(B, c, h, vae->eps, vae->z);
    cg_prof_end(vae->prof, CG_PROF_NOISE, m);
    return cg_net_forward(&vae->dec, &vae->tape_dec, vae->z, B, &o);
}

void cg_vae_grads(cg_vae *vae, const float *x, long step, long first_sample,
                  const cg_vae_hooks *hooks, cg_vae_stats *stats)
{
    const cg_vae_config *cfg = &vae->cfg;
    const int B = cfg->local_batch, c = cfg->coding_dim;
    const float scale = 1.0f / (float)cfg->global_batch;
    cg_net_zero_grads(&vae->enc);
    cg_net_zero_grads(&vae->dec);
    const float *logit = vae_forward(vae, x, step, first_sample);
    const double recon = cg_bce_logits(B * CG_IMG_PIXELS, logit, x, scale, vae->dlogit);
    cg_net_backward(&vae->dec, &vae->tape_dec, vae->dlogit, 1, vae->dz);
    if (hooks && hooks->dec_grads_ready)
        hooks->dec_grads_ready(hooks->user, vae);
    const float *h = vae->tape_enc.act[vae->enc.n_layers - 1];
    const double kl = cg_vae_kl(B, c, h, scale, vae->dh);
    cg_vae_sample_backward(B, c, h, vae->eps, vae->dz, vae->dh);
    cg_net_backward(&vae->enc, &vae->tape_enc, vae->dh, 1, NULL);
    if (stats)
        *stats = (cg_vae_stats){recon + kl, recon, kl};
}

int cg_vae_set_groups(cg_vae *vae, int groups, int first_group, int local_groups, cg_error *e)
{
    const int B = vae->cfg.local_batch;
    if (cg_net_set_groups(&vae->enc, groups, first_group, local_groups, B, e) ||
        cg_net_set_groups(&vae->dec, groups, first_group, local_groups, B, e))
        return -1;
    return 0;
}

long cg_vae_finish_grads(cg_vae *vae)
{
    return cg_net_exact_finish(&vae->enc) + cg_net_exact_finish(&vae->dec);
}

long cg_vae_unusable_grads(const cg_vae *vae)
{
    return cg_net_exact_unusable(&vae->enc) + cg_net_exact_unusable(&vae->dec);
}

void cg_vae_apply(cg_vae *vae)
{
    /* Both networks take their t-th update together; the schedule reads the encoder's count. */
    const int rms = vae->cfg.optimizer == CG_OPT_RMSPROP;
    const long t = rms ? vae->rms_enc.t : vae->adam_enc.t;
    const float lr =
        (float)(vae->cfg.lr * cg_lr_scale(t, vae->cfg.lr_decay_start, vae->cfg.lr_decay_end));
    cg_net *enc = &vae->enc, *dec = &vae->dec;
    const cg_prof_mark m = cg_prof_begin(vae->prof);
    if (rms) {
        vae->rms_enc.lr = vae->rms_dec.lr = lr;
        cg_rmsprop_step_net(&vae->rms_enc, enc);
        cg_rmsprop_step_net(&vae->rms_dec, dec);
    } else {
        vae->adam_enc.lr = vae->adam_dec.lr = lr;
        cg_adam_step_net(&vae->adam_enc, enc);
        cg_adam_step_net(&vae->adam_dec, dec);
    }
    cg_prof_end(vae->prof, CG_PROF_ADAM, m);
}

void cg_vae_set_prof(cg_vae *vae, cg_prof *prof)
{
    vae->prof = vae->enc.work.prof = vae->dec.work.prof = prof;
}

/* The labels of an inference pass: the caller's, or classes i mod n_classes. */
static const int32_t *pass_labels(cg_vae *vae, const int32_t *labels, int n)
{
    const int K = vae->preset.n_classes;
    if (K > 0 && !labels) {
        for (int i = 0; i < n; i++)
            vae->labels[i] = i % K;
        labels = vae->labels;
    }
    return labels;
}

void cg_vae_generate(cg_vae *vae, const float *z, const int32_t *labels, int n, float *out)
{
    const cg_fwd_opts o = {0, vae->cfg.seed, 0, 0, pass_labels(vae, labels, n), NULL};
    const float *l = cg_net_forward(&vae->dec, &vae->tape_dec, z, n, &o);
    const size_t count = (size_t)n * CG_IMG_PIXELS;
    for (size_t i = 0; i < count; i++)
        out[i] = cg_sigmoidf(l[i]);
}

void cg_vae_encode(cg_vae *vae, const float *x, const int32_t *labels, int n, float *mean,
                   float *logvar)
{
    const int c = vae->cfg.coding_dim;
    const cg_fwd_opts o = {0, vae->cfg.seed, 0, 0, pass_labels(vae, labels, n), NULL};
    const float *h = cg_net_forward(&vae->enc, &vae->tape_enc, x, n, &o);
    for (int i = 0; i < n; i++) {
        if (mean)
            memcpy(mean + (size_t)i * c, h + (size_t)i * 2 * c, sizeof(float) * (size_t)c);
        if (logvar)
            memcpy(logvar + (size_t)i * c, h + (size_t)i * 2 * c + c, sizeof(float) * (size_t)c);
    }
}

double cg_vae_step_flops(const cg_vae *vae, int B)
{
    return B * (cg_net_fwd_flops(&vae->enc) + cg_net_fwd_flops(&vae->dec) +
                cg_net_bwd_flops(&vae->dec, 1, 1) + cg_net_bwd_flops(&vae->enc, 1, 0));
}
