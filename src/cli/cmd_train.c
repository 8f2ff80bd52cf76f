/* chargan train: option parsing and validation; the loop is in train.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/train.h"

static void usage(FILE *f, const cg_opt *opts, int n)
{
    fprintf(f, "usage: [mpirun -np P] chargan train [options]\n"
               "Trains the GAN data-parallel over the MPI ranks. Every step the global batch\n"
               "is split over the ranks; the result does not depend on the number of ranks.\n"
               "Defaults are the seed's: model seed, batch 64, first 60,000 images, 50 epochs,\n"
               "Adam lr 1e-5 (G) / 3e-5 (D), beta1 0.5, beta2 0.999.\n\noptions:\n");
    cg_print_opts(f, opts, n);
}

/* The same checks run on every rank on the same arguments, so every rank reaches the same
 * verdict without communicating; only rank 0 prints it. */
static int validate(const cg_ctx *c, const cg_train_opts *o, const char *model, cg_error *e)
{
    cg_preset p;
    if (cg_preset_get(model, o->gan.noise_dim, 0, &p))
        return cg_fail(e, "--model '%s' is unknown (known: %s)", model, cg_preset_names());
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
    /* A launcher that could not wire the tasks together (srun without PMI, or the mpiexec of
     * another MPI than the one chargan was built with) starts every task as a singleton that
     * would train alone: refuse instead of silently running P independent jobs. */
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

int cg_cmd_train(cg_ctx *c, int argc, char **argv)
{
    cg_train_opts o;
    cg_train_default_opts(&o);
    const char *model = o.gan.model;
    long seed = (long)o.gan.seed;
    float time_limit = 0.0f;
    const char *loss = "bce";
    const char *ema_arg = NULL; /* parsed as a double: 0.999 stays 0.999 in the file */
    const cg_opt opts[] = {
        {"data", CG_OPT_STR, &o.data.data, "EMNIST images file, CSV or directory (default: "
                                           "$EMNIST_DIR, then ./data/emnist)"},
        {"split", CG_OPT_STR, &o.data.split, "split in a directory (default balanced-train)"},
        {"labels", CG_OPT_STR, &o.data.labels, "labels file for an images file"},
        {"limit", CG_OPT_LONG, &o.data.limit, "use the first N images (default 60000; 0 = all)"},
        {"model", CG_OPT_STR, &model, "seed | small | dcgan | cdcgan | deep (default seed)"},
        {"batch", CG_OPT_INT, &o.gan.global_batch, "global batch, divisible by the ranks (64)"},
        {"epochs", CG_OPT_LONG, &o.epochs, "epochs to train (default 50)"},
        {"steps", CG_OPT_LONG, &o.steps, "steps to train (overrides --epochs)"},
        {"conditional", CG_OPT_FLAG, &o.conditional,
         "class-conditional G and D (the label joins G's noise and D's features; cdcgan, deep: "
         "also every batch norm of G)"},
        {"lr-g", CG_OPT_FLOAT, &o.gan.lr_g,
         "generator learning rate (seed, small: 1e-5; the others: 2e-4)"},
        {"lr-d", CG_OPT_FLOAT, &o.gan.lr_d,
         "discriminator learning rate (seed, small: 3e-5; the others: 1e-4)"},
        {"lr-decay-start", CG_OPT_LONG, &o.gan.lr_decay_start,
         "from this step on both learning rates fall linearly to 0 at the last step "
         "(default: constant)"},
        {"loss", CG_OPT_STR, &loss, "bce (the seed's: non-saturating cross-entropy) | hinge"},
        {"beta1", CG_OPT_FLOAT, &o.gan.beta1, "Adam beta1 (0.5)"},
        {"beta2", CG_OPT_FLOAT, &o.gan.beta2, "Adam beta2 (0.999)"},
        {"eps", CG_OPT_FLOAT, &o.gan.eps, "Adam epsilon (1e-7)"},
        {"noise-dim", CG_OPT_INT, &o.gan.noise_dim, "noise dimension (150)"},
        {"seed", CG_OPT_LONG, &seed, "random seed: weights, noise, data order (1)"},
        {"out", CG_OPT_STR, &o.out, "output directory (chargan-out)"},
        {"log-every", CG_OPT_INT, &o.log_every, "progress line every N steps (50; 0 = quiet)"},
        {"check-every", CG_OPT_INT, &o.check_every,
         "debug: verify every N steps that all ranks hold bit-identical parameters"},
        {"sum-groups", CG_OPT_INT, &o.sum_groups,
         "gradients are summed exactly over G fixed groups of the batch: bit-identical "
         "results on every rank count dividing G (default: 8, or the rank count if larger)"},
        {"float-sums", CG_OPT_FLAG, &o.float_sums,
         "sum gradients in float32: half the allreduce bytes, results then depend on the "
         "rank count in the last bits (summation order)"},
        {"threads", CG_OPT_INT, &o.threads, "BLAS threads per rank (cores / ranks per node)"},
        {"ckpt-every", CG_OPT_LONG, &o.ckpt_every,
         "checkpoint every N steps (always at the end and on SIGTERM/SIGINT/SIGUSR1)"},
        {"keep", CG_OPT_INT, &o.keep, "keep the newest K checkpoints (3; 0 = all)"},
        {"resume", CG_OPT_STR, &o.resume,
         "auto (newest valid checkpoint in OUT/checkpoints) or a checkpoint file"},
        {"sample-every", CG_OPT_LONG, &o.sample_every,
         "write OUT/samples/step-N.h5 and .png every N steps (and at the end)"},
        {"time-limit", CG_OPT_FLOAT, &time_limit,
         "stop after this many seconds of training: checkpoint, exit 0 (0 = none)"},
        {"eval-every", CG_OPT_LONG, &o.eval_every,
         "quality score (FID etc., see chargan eval) on rank 0 every N steps, to metrics.jsonl"},
        {"classifier", CG_OPT_STR, &o.classifier, "classifier file for --eval-every"},
        {"eval-n", CG_OPT_LONG, &o.eval_n, "samples per score (2000)"},
        {"ema", CG_OPT_STR, &ema_arg,
         "decay of an exponential moving average of G's weights, saved in checkpoints and "
         "used by samples and scores (with a warm-up; default 0.999 for dcgan, cdcgan and "
         "deep, 0 = none for seed and small)"},
        {"exclude-heldout", CG_OPT_FLAG, &o.exclude_heldout,
         "train only on the classifier's training part of the data, never on the held-out "
         "images that `chargan eval` uses as FID reference (use the classifier's --split "
         "and --limit)"},
    };
    const int n = (int)(sizeof opts / sizeof opts[0]);
    cg_error e = {{0}};
    int r = cg_parse_opts(opts, n, argc, argv, NULL, &e);
    if (r == 1) {
        if (c->rank == 0)
            usage(stdout, opts, n);
        return 0;
    }
    if (r == 0 && !(time_limit >= 0.0f))
        r = cg_fail(&e, "--time-limit must not be negative");
    if (r == 0 && seed < 0)
        r = cg_fail(&e, "--seed %ld must not be negative", seed);
    double ema = -1.0; /* the model's default */
    if (r == 0 && ema_arg) {
        char *end = NULL;
        ema = strtod(ema_arg, &end);
        if (end == ema_arg || *end || !(ema >= 0.0 && ema < 1.0))
            r = cg_fail(&e, "--ema '%s' must be a number in [0, 1) (0: no EMA)", ema_arg);
    }
    if (r == 0 && !strcmp(loss, "hinge"))
        o.gan.loss = CG_LOSS_HINGE;
    else if (r == 0 && strcmp(loss, "bce"))
        r = cg_fail(&e, "--loss '%s': expected bce or hinge", loss);
    if (r == 0 && o.gan.lr_decay_start < -1)
        r = cg_fail(&e, "--lr-decay-start %ld is not a step (>= 0)", o.gan.lr_decay_start);
    if (r == 0)
        r = validate(c, &o, model, &e);
    if (r) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: train: %s\n", e.msg);
        return 2;
    }
    snprintf(o.gan.model, sizeof o.gan.model, "%s", model);
    o.time_limit = time_limit;
    o.ema = ema;
    o.gan.seed = (uint64_t)seed;
    return cg_train(c, &o);
}
