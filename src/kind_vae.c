/* The variational autoencoder as a kind of model (chargan/kind.h): encoder and decoder, the
 * decoder's gradient final first, the decoder drawing images from codings. */
#include <stdlib.h>
#include <string.h>

#include "chargan/data.h"
#include "chargan/kind.h"
#include "chargan/optim.h"
#include "chargan/trace.h"
#include "chargan/train.h"
#include "chargan/vae.h"

/* The model and the span recorder of its updates (cg_vae has none of its own). */
typedef struct {
    cg_vae vae;
    cg_trace *trace;
} vae_impl;

static vae_impl *impl_of(const cg_kind *k) { return k->impl; }
static cg_vae *vae_of(const cg_kind *k) { return &impl_of(k)->vae; }

/* The optimizer named by --optimizer; -1 (the preset's) for NULL. */
static int optimizer_of(const char *name)
{
    return !name ? -1 : !strcmp(name, "adam") ? CG_OPT_ADAM : CG_OPT_RMSPROP;
}

static void fill_config(cg_vae_config *cfg, const cg_kind_setup *s)
{
    cg_vae_default_config(cfg);
    const cg_train_opts *o = s->run;
    if (o) {
        cfg->optimizer = optimizer_of(o->optimizer);
        cfg->lr = o->lr;
        cfg->beta1 = o->gan.beta1, cfg->beta2 = o->gan.beta2, cfg->eps = o->gan.eps;
    }
    snprintf(cfg->model, sizeof cfg->model, "%s", s->model);
    cfg->coding_dim = s->latent_dim;
    cfg->n_classes = s->n_classes;
    cfg->global_batch = s->global_batch;
    cfg->local_batch = s->local_batch;
    cfg->seed = s->seed;
}

/* The view: the encoder first in checkpoints, the decoder's gradient final first. */
static void fill_view(cg_kind *k)
{
    cg_vae *vae = vae_of(k);
    const int rms = vae->cfg.optimizer == CG_OPT_RMSPROP;
    snprintf(k->model, sizeof k->model, "%s", vae->cfg.model);
    k->n_nets = 2;
    long *t_enc = rms ? &vae->rms_enc.t : &vae->adam_enc.t;
    long *t_dec = rms ? &vae->rms_dec.t : &vae->adam_dec.t;
    k->nets[0] = (cg_kind_net){cg_kind_vae.net_names[0], &vae->enc, t_enc};
    k->nets[1] = (cg_kind_net){cg_kind_vae.net_names[1], &vae->dec, t_dec};
    k->first_ready = 1;
    k->gen = 1;
    k->latent_dim = vae->cfg.coding_dim;
    k->n_classes = vae->preset.n_classes;
    k->global_batch = vae->cfg.global_batch;
    k->local_batch = vae->cfg.local_batch;
    k->seed = vae->cfg.seed;
    k->data_lo = 0.0f; /* the reconstruction's BCE target is in [0, 1] */
    k->labels = vae->labels;
    k->ema = NULL;
    k->ema_decay = 0.0;
}

static int vae_init(cg_kind *k, const cg_kind_setup *s, cg_error *e)
{
    cg_vae_config cfg;
    fill_config(&cfg, s);
    vae_impl *v = calloc(1, sizeof *v);
    if (!v)
        return cg_fail(e, "out of memory");
    if (cg_vae_init(&v->vae, &cfg, e)) {
        cg_vae_free(&v->vae);
        free(v);
        return -1;
    }
    k->impl = v;
    fill_view(k);
    return 0;
}

static void vae_free(cg_kind *k)
{
    cg_vae_free(vae_of(k));
    free(k->impl);
}

static void vae_init_weights(cg_kind *k) { cg_vae_init_weights(vae_of(k)); }

static int vae_set_groups(cg_kind *k, int groups, int first, int local, cg_error *e)
{
    return cg_vae_set_groups(vae_of(k), groups, first, local, e);
}

static void dec_ready(void *user, cg_vae *vae)
{
    (void)vae;
    const cg_kind_hooks *h = user;
    if (h->ready)
        h->ready(h->user);
}

/* stats: loss, recon, kl (per sample). */
static void vae_grads(cg_kind *k, const float *x, long step, long first_sample,
                      const cg_kind_hooks *hooks, double *stats)
{
    cg_vae_stats vs;
    const cg_vae_hooks h = {dec_ready, (void *)hooks};
    const double t0 = cg_trace_start(impl_of(k)->trace);
    cg_vae_grads(vae_of(k), x, step, first_sample, hooks ? &h : NULL, &vs);
    cg_trace_add(impl_of(k)->trace, CG_SPAN_VAE, t0, 0);
    stats[0] = vs.loss, stats[1] = vs.recon, stats[2] = vs.kl, stats[3] = 0.0;
}

static long vae_finish_grads(cg_kind *k) { return cg_vae_unusable_grads(vae_of(k)); }

static void vae_apply(cg_kind *k)
{
    const double t0 = cg_trace_start(impl_of(k)->trace);
    cg_vae_apply(vae_of(k));
    cg_trace_add(impl_of(k)->trace, CG_SPAN_ADAM, t0, 0);
}

static void vae_forward(void *model, const float *z, const int32_t *labels, int n, float *out)
{
    cg_vae_generate(model, z, labels, n, out);
}

/* cg_decoder's decode: batches of at most the local batch the VAE was built for. */
static void vae_decode(void *model, const float *z, const int32_t *labels, int n, float *out)
{
    cg_vae *vae = model;
    cg_decode_batches(vae_forward, vae, vae->cfg.coding_dim, vae->cfg.local_batch, z, labels, n, out);
}

/* A VAE's codings are walked in a straight line (chargan/interp.h). */
static void vae_decoder(cg_kind *k, cg_decoder *d)
{
    d->model = vae_of(k);
    d->code_dim = vae_of(k)->cfg.coding_dim;
    d->path = cg_lerp;
    d->decode = vae_decode;
}

static double vae_flops(const cg_kind *k, int B) { return cg_vae_step_flops(vae_of(k), B); }

static void vae_set_schedule(cg_kind *k, long start, long end)
{
    vae_of(k)->cfg.lr_decay_start = start;
    vae_of(k)->cfg.lr_decay_end = end;
}

static void vae_save_rates(const cg_kind *k, cg_train_opts *o)
{
    const cg_vae_config *c = &vae_of(k)->cfg;
    o->lr = c->lr;
    o->optimizer = c->optimizer == CG_OPT_ADAM ? "adam" : "rmsprop";
    o->coding_dim = c->coding_dim;
}

static void vae_ema_swap(cg_kind *k) { (void)k; }

static void vae_set_trace(cg_kind *k, cg_trace *t) { impl_of(k)->trace = t; }

const cg_kind_ops cg_kind_vae = {
    .name = "vae",
    .net_names = {"encoder", "decoder"},
    .n_stats = 3,
    .stat_keys = {"loss", "recon", "kl"},
    .stat_labels = {"loss", "recon", "kl"},
    .init = vae_init,
    .free = vae_free,
    .init_weights = vae_init_weights,
    .set_groups = vae_set_groups,
    .grads = vae_grads,
    .finish_grads = vae_finish_grads,
    .apply = vae_apply,
    .decoder = vae_decoder,
    .step_flops = vae_flops,
    .set_schedule = vae_set_schedule,
    .save_rates = vae_save_rates,
    .ema_swap = vae_ema_swap,
    .set_trace = vae_set_trace,
};
