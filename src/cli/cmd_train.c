/* chargan train: option parsing and validation; the loop is in train.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/kind.h"
#include "chargan/settings.h"
#include "chargan/trace.h"
#include "chargan/train.h"

/* A launcher that could not wire the tasks together (srun without PMI, or the mpiexec of
 * another MPI than the one chargan was built with) starts every task as a singleton that
 * would train alone: refuse instead of silently running P independent jobs. */
static int check_launcher(const cg_ctx *c, cg_error *e)
{
    static const struct {
        const char *var, *who;
    } launchers[] = {
        {"SLURM_NTASKS", "srun did not connect the tasks (use 'srun --mpi=pmix' with Open MPI, "
                         "'srun --mpi=pmi2' with MPICH, or the MPI's own mpirun)"},
        {"OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun started it, but chargan was built with "
                                 "another MPI (chargan --version names it): use that MPI's "
                                 "launcher"},
        {"PMI_SIZE", "an MPICH-style launcher (mpiexec.hydra) started it, but chargan was built "
                     "with another MPI (chargan --version names it): use that MPI's launcher"},
    };
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0] && c->size == 1; i++) {
        const char *n = getenv(launchers[i].var);
        if (n && atoi(n) > 1)
            return cg_fail(e, "this is a single MPI rank but %s=%s: %s", launchers[i].var, n,
                           launchers[i].who);
    }
    return 0;
}

/* --trace FILE needs a file name, --trace-steps A:B with 1 <= A <= B and a --trace. */
static int validate_trace(const cg_train_opts *o, cg_error *e)
{
    long a, b;
    if (o->trace && !*o->trace)
        return cg_fail(e, "--trace needs a file name");
    if (o->trace_steps && !o->trace)
        return cg_fail(e, "--trace-steps needs --trace FILE");
    if (o->trace_steps && cg_trace_parse_steps(o->trace_steps, &a, &b))
        return cg_fail(e, "--trace-steps '%s': expected A:B with 1 <= A <= B", o->trace_steps);
    return 0;
}

/* The settings that belong to one kind of model: --optimizer, --lr and --coding-dim to a
 * VAE, --ema to a GAN. */
static int validate_kind(const cg_train_opts *o, cg_error *e)
{
    const int vae = cg_kind_find(o->model) == &cg_kind_vae;
    if (o->optimizer && strcmp(o->optimizer, "rmsprop") && strcmp(o->optimizer, "adam"))
        return cg_fail(e, "--optimizer '%s': expected rmsprop or adam", o->optimizer);
    if (!vae && (o->optimizer || o->lr != 0.0f || o->coding_dim))
        return cg_fail(e, "--optimizer, --lr and --coding-dim are for VAEs (--model vae or "
                          "cvae); a GAN trains with Adam at --lr-g and --lr-d");
    if (vae && o->ema > 0.0)
        return cg_fail(e, "--ema is for GANs; model '%s' keeps no moving average", o->model);
    if (!(o->lr >= 0.0f))
        return cg_fail(e, "--lr must be positive (0: the model's default)");
    if (o->coding_dim < 0 || o->coding_dim > 4096)
        return cg_fail(e, "--coding-dim %d must be in 1..4096 (0: the model's)", o->coding_dim);
    return 0;
}

/* The same checks run on every rank on the same arguments, so every rank reaches the same
 * verdict without communicating; only rank 0 prints it. */
static int validate(const cg_ctx *c, const cg_train_opts *o, cg_error *e)
{
    if (o->gan.global_batch < 1)
        return cg_fail(e, "--batch %d must be positive", o->gan.global_batch);
    if (o->gan.global_batch % c->size)
        return cg_fail(e, "--batch %d is not divisible by the %d ranks; use a multiple of %d",
                       o->gan.global_batch, c->size, c->size);
    cg_error ge;
    if (o->sum_groups < 0)
        return cg_fail(e, "--sum-groups %d must not be negative", o->sum_groups);
    if (o->float_sums && o->sum_groups)
        return cg_fail(e, "--float-sums and --sum-groups exclude each other");
    if (!o->float_sums && cg_sum_groups(o->gan.global_batch, c->size, o->sum_groups, &ge) < 0)
        return cg_fail(e, "%s", ge.msg);
    if (o->steps < 0)
        return cg_fail(e, "--steps %ld must not be negative", o->steps);
    if (!(o->time_limit >= 0.0))
        return cg_fail(e, "--time-limit must not be negative");
    if (o->seed < 0)
        return cg_fail(e, "--seed %ld must not be negative", o->seed);
    if (!(o->ema >= 0.0 && o->ema < 1.0))
        return cg_fail(e, "--ema '%g' must be a number in [0, 1) (0: no EMA)", o->ema);
    if (!o->loss || (strcmp(o->loss, "bce") && strcmp(o->loss, "hinge")))
        return cg_fail(e, "--loss '%s': expected bce or hinge", o->loss ? o->loss : "null");
    if (o->gan.lr_decay_start < -1 && o->gan.lr_decay_start != CG_DECAY_PRESET)
        return cg_fail(e, "--lr-decay-start %ld is not a step (>= 0)", o->gan.lr_decay_start);
    if (o->steps == 0 && o->epochs < 1)
        return cg_fail(e, "--epochs %ld must be positive", o->epochs);
    if (!(o->gan.lr_g >= 0.0f) || !(o->gan.lr_d >= 0.0f))
        return cg_fail(e, "--lr-g and --lr-d must be positive (0: the model's default)");
    if (!(o->gan.beta1 >= 0.0f && o->gan.beta1 < 1.0f) ||
        !(o->gan.beta2 >= 0.0f && o->gan.beta2 < 1.0f))
        return cg_fail(e, "--beta1 and --beta2 must be in [0, 1)");
    if (!(o->gan.eps > 0.0f))
        return cg_fail(e, "--eps must be positive");
    if (o->gan.noise_dim < 1 || o->gan.noise_dim > 100000)
        return cg_fail(e, "--noise-dim %d must be in 1..100000", o->gan.noise_dim);
    if (o->data.limit < 0)
        return cg_fail(e, "--limit %ld must not be negative", o->data.limit);
    if (o->log_every < 0 || o->check_every < 0 || o->threads < 0)
        return cg_fail(e, "--log-every, --check-every and --threads must not be negative");
    if (o->eval_every < 0 || o->eval_n < 1)
        return cg_fail(e, "--eval-every must not be negative and --eval-n must be positive");
    if (o->ckpt_every < 0 || o->sample_every < 0 || o->keep < 0)
        return cg_fail(e, "--ckpt-every, --sample-every and --keep must not be negative");
    if (o->resume && !*o->resume)
        return cg_fail(e, "--resume needs 'auto' or a checkpoint file");
    if (!o->out || !*o->out)
        return cg_fail(e, "--out must name a directory");
    if (validate_trace(o, e) || validate_kind(o, e))
        return -1;
    return check_launcher(c, e);
}

int cg_cmd_train(cg_ctx *c, int argc, char **argv)
{
    cg_train_opts o;
    cg_train_default_opts(&o);
    cg_error e = {{0}};
    json_t *saved = NULL; /* a --config's settings; o's strings may point into it */
    int r = cg_settings_parse(&o, argc, argv, &saved, &e);
    if (r == 1) {
        if (c->rank == 0)
            cg_settings_help(stdout);
        json_decref(saved);
        return 0;
    }
    if (r == 0)
        r = cg_settings_resolve(&o, &e);
    if (r == 0)
        r = validate(c, &o, &e);
    if (r) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: train: %s\n", e.msg);
        json_decref(saved);
        return 2;
    }
    r = cg_train(c, &o);
    json_decref(saved);
    return r;
}
