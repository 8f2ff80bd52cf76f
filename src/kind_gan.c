/* The GAN as a kind of model (chargan/kind.h): generator and discriminator, D's gradient
 * final first, the generator drawing images. */
#include <stdlib.h>
#include <string.h>

#include "chargan/ema.h"
#include "chargan/gan.h"
#include "chargan/generate.h"
#include "chargan/kind.h"
#include "chargan/trace.h"
#include "chargan/train.h"

static cg_gan *gan_of(const cg_kind *k) { return k->impl; }

void cg_kind_wrap_gan(cg_kind *k, cg_gan *gan)
{
    memset(k, 0, sizeof *k);
    k->ops = &cg_kind_gan;
    k->impl = gan;
    snprintf(k->model, sizeof k->model, "%s", gan->cfg.model);
    k->n_nets = 2;
    k->nets[0] = (cg_kind_net){cg_kind_gan.net_names[0], &gan->g, &gan->adam_g.t};
    k->nets[1] = (cg_kind_net){cg_kind_gan.net_names[1], &gan->d, &gan->adam_d.t};
    k->first_ready = 1;
    k->gen = 0;
    k->latent_dim = gan->preset.noise_dim;
    k->n_classes = gan->preset.n_classes;
    k->global_batch = gan->cfg.global_batch;
    k->local_batch = gan->cfg.local_batch;
    k->seed = gan->cfg.seed;
    k->data_lo = gan->data_lo;
    k->labels = gan->labels;
    k->ema = gan->ema_g;
    k->ema_decay = gan->ema_decay;
}

/* The run's GAN settings (or the defaults for inference), for this model and batch share. */
static int gan_init(cg_kind *k, const cg_kind_setup *s, cg_error *e)
{
    cg_gan_config cfg;
    if (s->run) {
        cfg = s->run->gan;
        cfg.loss = strcmp(s->run->loss, "hinge") ? CG_LOSS_BCE : CG_LOSS_HINGE;
    } else {
        cg_gan_default_config(&cfg);
    }
    snprintf(cfg.model, sizeof cfg.model, "%s", s->model);
    if (s->latent_dim > 0)
        cfg.noise_dim = s->latent_dim;
    cfg.n_classes = s->n_classes;
    cfg.global_batch = s->global_batch;
    cfg.local_batch = s->local_batch;
    cfg.seed = s->seed;
    cg_gan *gan = calloc(1, sizeof *gan);
    if (!gan)
        return cg_fail(e, "out of memory");
    if (cg_gan_init(gan, &cfg, e)) {
        cg_gan_free(gan);
        free(gan);
        return -1;
    }
    if (s->ema > 0)
        cg_gan_ema_enable(gan, s->ema);
    cg_kind_wrap_gan(k, gan);
    return 0;
}

static void gan_free(cg_kind *k)
{
    cg_gan_free(gan_of(k));
    free(k->impl);
}

static void gan_init_weights(cg_kind *k)
{
    cg_gan_init_weights(gan_of(k));
    cg_gan_ema_reset(gan_of(k)); /* the EMA starts at the initial weights */
}

static int gan_set_groups(cg_kind *k, int groups, int first, int local, cg_error *e)
{
    return cg_gan_set_groups(gan_of(k), groups, first, local, e);
}

static void d_ready(void *user, cg_gan *gan)
{
    (void)gan;
    const cg_kind_hooks *h = user;
    if (h->ready)
        h->ready(h->user);
}

static void gan_grads(cg_kind *k, const float *x, long step, long first_sample,
                      const cg_kind_hooks *hooks, double *stats)
{
    cg_gan_stats gs;
    const cg_gan_hooks h = {d_ready, (void *)hooks};
    cg_gan_grads(gan_of(k), x, step, first_sample, hooks ? &h : NULL, &gs);
    stats[0] = gs.loss_g, stats[1] = gs.loss_d, stats[2] = gs.d_real, stats[3] = gs.d_fake;
}

static long gan_finish_grads(cg_kind *k) { return cg_gan_unusable_grads(gan_of(k)); }

static void gan_apply(cg_kind *k)
{
    cg_gan *gan = gan_of(k);
    double t0 = cg_trace_start(gan->trace);
    cg_gan_apply(gan);
    cg_trace_add(gan->trace, CG_SPAN_ADAM, t0, 0);
    t0 = cg_trace_start(gan->trace);
    cg_gan_ema_update(gan);
    cg_trace_add(gan->trace, CG_SPAN_EMA, t0, 0);
}

static void gan_decoder(cg_kind *k, cg_decoder *d) { cg_gan_decoder(gan_of(k), d); }

static double gan_flops(const cg_kind *k, int B) { return cg_gan_step_flops(gan_of(k), B); }

static void gan_set_schedule(cg_kind *k, long start, long end)
{
    gan_of(k)->cfg.lr_decay_start = start;
    gan_of(k)->cfg.lr_decay_end = end;
}

static void gan_save_rates(const cg_kind *k, cg_train_opts *o)
{
    o->gan.lr_g = gan_of(k)->cfg.lr_g, o->gan.lr_d = gan_of(k)->cfg.lr_d;
}

static void gan_ema_swap(cg_kind *k) { cg_gan_ema_swap(gan_of(k)); }

static void gan_set_trace(cg_kind *k, cg_trace *t) { gan_of(k)->trace = t; }

const cg_kind_ops cg_kind_gan = {
    .name = "gan",
    .net_names = {"generator", "discriminator"},
    .n_stats = 4,
    .stat_keys = {"loss_g", "loss_d", "d_real", "d_fake"},
    .stat_labels = {"loss_G", "loss_D", "D(x)", "D(G(z))"},
    .init = gan_init,
    .free = gan_free,
    .init_weights = gan_init_weights,
    .set_groups = gan_set_groups,
    .grads = gan_grads,
    .finish_grads = gan_finish_grads,
    .apply = gan_apply,
    .decoder = gan_decoder,
    .step_flops = gan_flops,
    .set_schedule = gan_set_schedule,
    .save_rates = gan_save_rates,
    .ema_swap = gan_ema_swap,
    .set_trace = gan_set_trace,
};
