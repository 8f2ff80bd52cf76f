#include "chargan/gan.h"

#include <stdio.h>
#include <string.h>

#include "chargan/data.h"
#include "chargan/rng.h"
#include "chargan/trace.h"

void cg_gan_default_config(cg_gan_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->model, sizeof cfg->model, "seed");
    cfg->noise_dim = 150;
    cfg->global_batch = 64;
    cfg->local_batch = 64;
    cfg->lr_g = 0.0f; /* the preset's */
    cfg->lr_d = 0.0f;
    cfg->beta1 = 0.5f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-7f;
    cfg->seed = 1;
    cfg->loss = CG_LOSS_BCE;
    cfg->lr_decay_start = -1;
}

static void alloc_buffers(cg_gan *gan, int B)
{
    const size_t n = (size_t)B, img = n * CG_IMG_PIXELS;
    gan->gs = B;
    gan->z = cg_alloc(sizeof(float) * n * (size_t)gan->preset.noise_dim);
    gan->target = cg_alloc(sizeof(float) * 2 * n);
    gan->ones = cg_alloc(sizeof(float) * 2 * n);
    for (size_t i = 0; i < 2 * n; i++) {
        gan->target[i] = i < n ? 1.0f : 0.0f;
        gan->ones[i] = 1.0f;
    }
    gan->logits = cg_alloc(sizeof(float) * 2 * n);
    gan->dlogit = cg_alloc(sizeof(float) * 3 * n);
    gan->d_in = cg_alloc(sizeof(float) * 2 * img);
    gan->d_scale = cg_alloc(sizeof(float) * 2 * n);
    gan->d_dx = cg_alloc(sizeof(float) * 2 * img);
    gan->d_labels = cg_alloc(sizeof(int32_t) * 2 * n);
    gan->d_ids = cg_alloc(sizeof(uint64_t) * 2 * n);
    gan->dfake = cg_alloc(sizeof(float) * img);
    gan->labels = cg_alloc(sizeof(int32_t) * n);
}

int cg_gan_init(cg_gan *gan, const cg_gan_config *cfg, cg_error *e)
{
    memset(gan, 0, sizeof *gan);
    gan->cfg = *cfg;
    if (cg_preset_get(cfg->model, cfg->noise_dim, cfg->n_classes, &gan->preset))
        return cg_fail(e, "unknown model '%s' (known: %s)", cfg->model, cg_preset_names());
    if (cfg->n_classes < 0 || cfg->n_classes > 256)
        return cg_fail(e, "%d classes: not in 0..256", cfg->n_classes);
    if (gan->cfg.lr_g <= 0.0f)
        gan->cfg.lr_g = gan->preset.lr_g;
    if (gan->cfg.lr_d <= 0.0f)
        gan->cfg.lr_d = gan->preset.lr_d;
    cfg = &gan->cfg;
    gan->data_lo = gan->preset.tanh_output ? -1.0f : 0.0f;
    if (cfg->local_batch < 1 || cfg->global_batch < cfg->local_batch)
        return cg_fail(e, "batch %d (local %d) is not valid", cfg->global_batch,
                       cfg->local_batch);
    const cg_preset *p = &gan->preset;
    const int B = cfg->local_batch;
    if (cg_net_build(&gan->g, "generator", p->g, p->n_g, p->noise_dim, 0, 0, B, 0, e) ||
        cg_net_build(&gan->d, "discriminator", p->d, p->n_d, 1, 28, 28, 2 * B, 0, e))
        return -1;
    if (cg_net_out_size(&gan->g) != CG_IMG_PIXELS || cg_net_out_size(&gan->d) != 1)
        return cg_fail(e, "model '%s': generator must make 28x28 images and the "
                          "discriminator one logit", cfg->model);
    if (!cg_net_samples_apart(&gan->d)) /* one pass of reals and fakes would mix them */
        return cg_fail(e, "model '%s': the discriminator must not have batch norm",
                       cfg->model);
    cg_net_share_scratch(&gan->g, &gan->d);
    cg_tape_alloc(&gan->g, &gan->tape_g);
    cg_tape_alloc(&gan->d, &gan->tape_d);
    alloc_buffers(gan, B);
    gan->adam_g = (cg_adam){cfg->lr_g, cfg->beta1, cfg->beta2, cfg->eps, 0};
    gan->adam_d = (cg_adam){cfg->lr_d, cfg->beta1, cfg->beta2, cfg->eps, 0};
    return 0;
}

void cg_gan_free(cg_gan *gan)
{
    cg_tape_free(&gan->tape_g);
    cg_tape_free(&gan->tape_d);
    cg_net_free(&gan->g);
    cg_net_free(&gan->d);
    void *bufs[] = {gan->z,     gan->target,   gan->ones, gan->logits,   gan->dlogit,
                    gan->d_in,  gan->d_scale,  gan->d_dx, gan->d_labels, gan->d_ids,
                    gan->dfake, gan->labels,   gan->ema_g};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        cg_free(bufs[i]);
    memset(gan, 0, sizeof *gan);
}

void cg_gan_init_weights(cg_gan *gan)
{
    /* Disjoint init streams for the two networks: tensor t of G uses stream 0 + t, of D
     * 100 + t. */
    cg_net_init(&gan->g, gan->cfg.seed, 0);
    cg_net_init(&gan->d, gan->cfg.seed, 100);
    cg_net *nets[2] = {&gan->g, &gan->d};
    for (int k = 0; k < 2; k++) {
        memset(nets[k]->adam_m, 0, sizeof(float) * nets[k]->n_params);
        memset(nets[k]->adam_v, 0, sizeof(float) * nets[k]->n_params);
    }
    gan->adam_g.t = gan->adam_d.t = 0;
}

static double sum_sigmoid(int n, const float *logit)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += cg_sigmoidf(logit[i]);
    return s;
}

size_t cg_gan_d_sample(const cg_gan *gan, int i, int fake)
{
    const int gs = gan->gs;
    return (size_t)(i / gs) * 2 * (size_t)gs + (size_t)(fake ? gs : 0) + (size_t)(i % gs);
}

/* D's input, classes and sample indices, group by group. A real is global sample
 * first_sample + i; the fakes follow the reals in the concatenated batch of the D loss. */
static void d_batch(cg_gan *gan, const float *real, const float *fake, long first_sample)
{
    const int B = gan->cfg.local_batch;
    const size_t run = sizeof(float) * (size_t)gan->gs * CG_IMG_PIXELS;
    for (int i = 0; i < B; i += gan->gs)
        for (int k = 0; k < 2; k++)
            memcpy(gan->d_in + cg_gan_d_sample(gan, i, k) * CG_IMG_PIXELS,
                   (k ? fake : real) + (size_t)i * CG_IMG_PIXELS, run);
    for (int i = 0; i < B; i++)
        for (int k = 0; k < 2; k++) {
            const size_t at = cg_gan_d_sample(gan, i, k);
            gan->d_labels[at] = gan->labels[i];
            gan->d_ids[at] = (uint64_t)(k ? gan->cfg.global_batch : 0) +
                             (uint64_t)first_sample + (uint64_t)i;
        }
}

void cg_gan_forward(cg_gan *gan, const float *real, long step, long first_sample)
{
    const cg_gan_config *cfg = &gan->cfg;
    const int B = cfg->local_batch, nz = gan->preset.noise_dim;
    const double t0 = cg_trace_start(gan->trace);
    const cg_prof_mark m = cg_prof_begin(gan->prof);
    cg_rng_normal_fill(gan->z, (long)B * nz, cfg->seed, cg_stream(CG_RNG_NOISE, (uint64_t)step),
                       (uint64_t)first_sample * (uint64_t)nz);
    cg_prof_end(gan->prof, CG_PROF_NOISE, m);
    cg_fwd_opts o = {1, cfg->seed, (uint64_t)step, (uint64_t)first_sample, gan->labels,
                     NULL};
    const float *fake = cg_net_forward(&gan->g, &gan->tape_g, gan->z, B, &o);
    cg_trace_add(gan->trace, CG_SPAN_G_FWD, t0, 0);
    const double t1 = cg_trace_start(gan->trace);
    d_batch(gan, real, fake, first_sample);
    o.labels = gan->d_labels;
    o.sample_ids = gan->d_ids;
    const float *l = cg_net_forward(&gan->d, &gan->tape_d, gan->d_in, 2 * B, &o);
    for (int i = 0; i < B; i++) {
        gan->logits[i] = l[cg_gan_d_sample(gan, i, 0)];
        gan->logits[B + i] = l[cg_gan_d_sample(gan, i, 1)];
    }
    cg_trace_add(gan->trace, CG_SPAN_D_FWD, t1, 0);
}

/* The seeds of both losses: D's on the reals (dr) and the fakes (dd), the mean over the 2B
 * samples of the global concatenated batch for BCE, the mean over the reals plus the mean
 * over the fakes for hinge; G's on the fakes (dg). Returns D's loss, G's in *loss_g. */
static double loss_seeds(cg_gan *gan, float *dr, float *dd, float *dg, double *loss_g)
{
    const int B = gan->cfg.local_batch, hinge = gan->cfg.loss == CG_LOSS_HINGE;
    const float Bg = (float)gan->cfg.global_batch;
    const float sd = hinge ? 1.0f / Bg : 1.0f / (2.0f * Bg);
    const float *lr = gan->logits, *lf = gan->logits + B;
    double loss_d = hinge ? cg_hinge_logits(B, lr, 1.0f, sd, dr)
                          : cg_bce_logits(B, lr, gan->target, sd, dr);
    loss_d += hinge ? cg_hinge_logits(B, lf, -1.0f, sd, dd)
                    : cg_bce_logits(B, lf, gan->target + B, sd, dd);
    if (hinge) {
        *loss_g = 0.0;
        for (int i = 0; i < B; i++) {
            *loss_g -= lf[i];
            dg[i] = -1.0f / Bg;
        }
        *loss_g /= Bg;
    } else {
        *loss_g = cg_bce_logits(B, lf, gan->target, 1.0f / Bg, dg);
    }
    return loss_d;
}

/* D's parameter gradients of its loss and dL_G/dfake into gan->dfake, from one backward pass
 * through D from unit seeds: no layer of D mixes samples, so each sample's gradients are
 * linear in its own seed. The parameter gradients are scaled sample by sample by D's loss's
 * seeds (dr, dd), the input gradient by G's (dg). Calls the hook once D's gradient is final. */
static void d_backward(cg_gan *gan, const float *dr, const float *dd, const float *dg,
                       const cg_gan_hooks *hooks)
{
    const int B = gan->cfg.local_batch;
    for (int i = 0; i < B; i++) {
        gan->d_scale[cg_gan_d_sample(gan, i, 0)] = dr[i];
        gan->d_scale[cg_gan_d_sample(gan, i, 1)] = dd[i];
    }
    cg_net_backward_scaled(&gan->d, &gan->tape_d, gan->ones, gan->d_scale, gan->d_dx);
    if (hooks && hooks->d_grads_ready)
        hooks->d_grads_ready(hooks->user, gan);
    for (int i = 0; i < B; i++) {
        const float *src = gan->d_dx + cg_gan_d_sample(gan, i, 1) * CG_IMG_PIXELS;
        float *dst = gan->dfake + (size_t)i * CG_IMG_PIXELS;
        for (int j = 0; j < CG_IMG_PIXELS; j++)
            dst[j] = src[j] * dg[i];
    }
}

void cg_gan_grads(cg_gan *gan, const float *real, long step, long first_sample,
                  const cg_gan_hooks *hooks, cg_gan_stats *stats)
{
    const int B = gan->cfg.local_batch;
    cg_net_zero_grads(&gan->g);
    cg_net_zero_grads(&gan->d);
    cg_gan_forward(gan, real, step, first_sample);
    double t0 = cg_trace_start(gan->trace), loss_g;
    float *dr = gan->dlogit, *dd = gan->dlogit + B, *dg = gan->dlogit + 2 * B;
    const double loss_d = loss_seeds(gan, dr, dd, dg, &loss_g);
    d_backward(gan, dr, dd, dg, hooks);
    cg_trace_add(gan->trace, CG_SPAN_D_BWD, t0, 0);
    t0 = cg_trace_start(gan->trace);
    cg_net_backward(&gan->g, &gan->tape_g, gan->dfake, 1, NULL);
    cg_trace_add(gan->trace, CG_SPAN_G_BWD, t0, 0);
    if (stats) {
        const float Bg = (float)gan->cfg.global_batch;
        stats->loss_d = loss_d;
        stats->loss_g = loss_g;
        stats->d_real = sum_sigmoid(B, gan->logits) / Bg;
        stats->d_fake = sum_sigmoid(B, gan->logits + B) / Bg;
    }
}

int cg_gan_set_groups(cg_gan *gan, int groups, int first_group, int local_groups, cg_error *e)
{
    const int B = gan->cfg.local_batch;
    if (cg_net_set_groups(&gan->g, groups, first_group, local_groups, B, e) ||
        cg_net_set_groups(&gan->d, groups, first_group, local_groups, 2 * B, e))
        return -1;
    gan->gs = B / local_groups;
    return 0;
}

long cg_gan_finish_grads(cg_gan *gan)
{
    return cg_net_exact_finish(&gan->g) + cg_net_exact_finish(&gan->d);
}

long cg_gan_unusable_grads(const cg_gan *gan)
{
    return cg_net_exact_unusable(&gan->g) + cg_net_exact_unusable(&gan->d);
}

double cg_lr_scale(long t, long start, long end)
{
    if (start < 0 || t < start || end <= start)
        return 1.0;
    return t >= end ? 0.0 : (double)(end - t) / (double)(end - start);
}

void cg_gan_apply(cg_gan *gan)
{
    /* Both optimizers take their t-th update together; the schedule reads G's count. */
    const double f = cg_lr_scale(gan->adam_g.t, gan->cfg.lr_decay_start, gan->cfg.lr_decay_end);
    gan->adam_g.lr = (float)(gan->cfg.lr_g * f);
    gan->adam_d.lr = (float)(gan->cfg.lr_d * f);
    const cg_prof_mark m = cg_prof_begin(gan->prof);
    cg_adam_step_net(&gan->adam_g, &gan->g);
    cg_adam_step_net(&gan->adam_d, &gan->d);
    cg_prof_end(gan->prof, CG_PROF_ADAM, m);
}

void cg_gan_set_prof(cg_gan *gan, cg_prof *prof)
{
    gan->prof = gan->g.work.prof = gan->d.work.prof = prof;
}

void cg_gan_generate(cg_gan *gan, const float *z, const int32_t *labels, int n, float *out)
{
    const int K = gan->preset.n_classes;
    if (K > 0 && !labels) {
        for (int i = 0; i < n; i++)
            gan->labels[i] = i % K;
        labels = gan->labels;
    }
    cg_fwd_opts o = {0, gan->cfg.seed, 0, 0, labels, NULL};
    const float *y = cg_net_forward(&gan->g, &gan->tape_g, z, n, &o);
    const size_t count = (size_t)n * CG_IMG_PIXELS;
    if (gan->preset.tanh_output)
        for (size_t i = 0; i < count; i++)
            out[i] = 0.5f * (y[i] + 1.0f);
    else
        memcpy(out, y, sizeof(float) * count);
}

void cg_gan_layer_flops(const cg_gan *gan, const cg_net *net, int i, int B, double *fwd,
                        double *bwd)
{
    /* G: one forward pass, one backward pass for its parameters. D: forward on the reals and
     * on the fakes, a backward pass of each for D's parameters, and one through the fakes for
     * G's input gradient. */
    const int is_g = net == &gan->g;
    *fwd = (is_g ? 1.0 : 2.0) * B * net->layers[i].fwd_flops;
    *bwd = is_g ? B * cg_layer_bwd_flops(net, i, 1, 0)
                : 2.0 * B * cg_layer_bwd_flops(net, i, 1, 0) + B * cg_layer_bwd_flops(net, i, 0, 1);
}

double cg_gan_step_flops(const cg_gan *gan, int B)
{
    double total = 0.0, f, b;
    const cg_net *nets[2] = {&gan->g, &gan->d};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nets[k]->n_layers; i++) {
            cg_gan_layer_flops(gan, nets[k], i, B, &f, &b);
            total += f + b;
        }
    return total;
}
