/* `chargan classifier train|test`: the EMNIST classifier behind `chargan eval`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chargan/classifier.h"
#include "cli.h"
#include "chargan/data.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chargan classifier train [options]\n"
            "       chargan classifier test --classifier FILE [options]\n"
            "\n"
            "train: trains the EMNIST classifier used by `chargan eval` on the classifier-train\n"
            "  part (about 80%%) of a data set, reports its accuracy on the held-out part (about\n"
            "  20%%, never trained on) and writes FILE.h5 with the weights, the held-out\n"
            "  accuracy and the feature statistics of both parts (the FID references). Image i\n"
            "  is held out when splitmix64(i ^ 0x%016llX) %% 5 == 0: a fixed split of the\n"
            "  index, the same for every tool and run.\n"
            "  The network: conv 32 (3x3, stride 2) + ReLU, conv 64 (3x3, stride 2) + ReLU,\n"
            "  dense 128 + ReLU (the features), dropout 0.3, dense K (softmax cross-entropy).\n"
            "test: held-out accuracy of an existing classifier file on a data set.\n"
            "\n"
            "options:\n",
            (unsigned long long)CG_HELDOUT_SALT);
}

typedef struct {
    const char *data, *split, *out, *classifier, *mapping;
    long limit;
    int threads;
    cg_clf_train_opts t;
} clf_opts;

static int load_parts(const clf_opts *o, cg_dataset *ds, int64_t **train, long *nt,
                      int64_t **held, long *nh, cg_error *e)
{
    cg_data_opts d = {0};
    d.data = o->data;
    d.split = o->split;
    d.limit = o->limit;
    d.mapping = o->mapping;
    if (cg_data_load_local(&d, ds, e))
        return -1;
    *train = malloc(sizeof(int64_t) * (size_t)ds->n);
    *held = malloc(sizeof(int64_t) * (size_t)ds->n);
    if (!*train || !*held)
        return cg_fail(e, "out of memory");
    *nt = cg_part_indices(ds->n, 0, *train);
    *nh = cg_part_indices(ds->n, 1, *held);
    if (*nh < 2 || *nt < 2)
        return cg_fail(e, "%s: %ld images are too few for an 80/20 split", ds->source, ds->n);
    return 0;
}

/* What a sub-command holds; run() sets it up and releases it. */
typedef struct {
    cg_error e;
    cg_dataset ds;
    int64_t *train, *held;
    long nt, nh;
    cg_classifier c;
} clf_run;

/* The sub-commands return 0, or 1 with r->e set. */
static int do_train(const clf_opts *o, clf_run *r)
{
    const double t0 = cg_now();
    if (o->t.epochs < 1 || o->t.batch < 2 || !(o->t.lr > 0.0f) || o->t.shift < 0 ||
        o->t.shift > 8) {
        cg_fail(&r->e, "classifier train: needs --epochs >= 1, --batch >= 2, --lr > 0, "
                       "--shift 0..8");
        return 1;
    }
    if (load_parts(o, &r->ds, &r->train, &r->nt, &r->held, &r->nh, &r->e))
        return 1;
    char chars[CG_MAX_CLASSES];
    for (int k = 0; k < r->ds.n_classes; k++)
        chars[k] = r->ds.chars[k] ? r->ds.chars[k] : '?';
    if (cg_classifier_init(&r->c, r->ds.n_classes, chars, o->t.batch < 256 ? 256 : o->t.batch,
                           o->t.seed, &r->e))
        return 1;
    snprintf(r->c.source, sizeof r->c.source, "%s", r->ds.source);
    printf("data: %s\n", r->ds.source);
    printf("split: %ld classifier-train images, %ld held-out images (%d classes)\n", r->nt,
           r->nh, r->ds.n_classes);
    printf("classifier: %zu parameters; %d epochs, batch %d, lr %g -> %g (cosine), shift "
           "+-%d px, seed %llu, %d thread(s)\n",
           r->c.net.n_params, o->t.epochs, o->t.batch, (double)o->t.lr,
           (double)(o->t.lr * o->t.lr_final), o->t.shift, (unsigned long long)o->t.seed,
           o->threads);
    fflush(stdout);
    if (cg_classifier_train(&r->c, &r->ds, r->train, r->nt, r->held, r->nh, &o->t, stdout,
                            &r->e))
        return 1;
    const double t_stats = cg_now();
    if (cg_classifier_compute_stats(&r->c, &r->ds, r->held, r->nh, r->train, r->nt, &r->e))
        return 1;
    const double fid_rr = cg_frechet_distance(&r->c.train, &r->c.heldout);
    printf("feature statistics: %.1f s; Frechet distance held-out vs classifier-train "
           "(all images) %.4f\n",
           cg_now() - t_stats, fid_rr);
    if (cg_classifier_save(o->out, &r->c, o->t.epochs, o->t.seed, &r->e))
        return 1;
    struct stat st;
    const long bytes = stat(o->out, &st) ? -1 : (long)st.st_size;
    printf("held-out accuracy: %.4f (%ld held-out images never trained on)\n",
           r->c.heldout_accuracy, r->nh);
    printf("wrote %s (%ld bytes) in %.1f s total\n", o->out, bytes, cg_now() - t0);
    return 0;
}

static int do_test(const clf_opts *o, clf_run *r)
{
    if (!o->classifier) {
        cg_fail(&r->e, "classifier test: --classifier FILE is required");
        return 1;
    }
    if (cg_classifier_load(o->classifier, &r->c, 256, &r->e) ||
        load_parts(o, &r->ds, &r->train, &r->nt, &r->held, &r->nh, &r->e))
        return 1;
    if (r->ds.n_classes != r->c.n_classes) {
        cg_fail(&r->e, "%s has %d classes, but %s has %d", r->ds.source, r->ds.n_classes,
                o->classifier, r->c.n_classes);
        return 1;
    }
    const double t0 = cg_now();
    const double acc = cg_classifier_accuracy(&r->c, &r->ds, r->held, r->nh);
    printf("data: %s\n", r->ds.source);
    printf("classifier: %s (held-out accuracy recorded in the file: %.4f)\n", o->classifier,
           r->c.heldout_accuracy);
    printf("held-out accuracy: %.4f (%ld images, %.1f s)\n", acc, r->nh, cg_now() - t0);
    return 0;
}

/* Runs one sub-command: the error line on failure, then everything released. */
static int run(const clf_opts *o, int (*sub)(const clf_opts *, clf_run *))
{
    clf_run r;
    memset(&r, 0, sizeof r);
    const int rc = sub(o, &r);
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", r.e.msg);
    fflush(stdout);
    cg_classifier_free(&r.c);
    free(r.train);
    free(r.held);
    cg_data_free(&r.ds);
    return rc;
}

/* The sub-command and its options: -1 to run it, else the exit code (0 after --help, 2 for
 * a usage error, 1 when started with several ranks). */
static int parse_args(const cg_ctx *c, const cg_opt *opts, int n_opts, int argc, char **argv)
{
    const int root = c->rank == 0;
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        if (root) {
            usage(argc < 1 ? stderr : stdout);
            cg_print_opts(argc < 1 ? stderr : stdout, opts, n_opts);
        }
        return argc < 1 ? 2 : 0;
    }
    const char *sub = argv[0];
    if (strcmp(sub, "train") && strcmp(sub, "test")) {
        if (root)
            fprintf(stderr, "chargan: error: classifier: unknown sub-command '%s' (train, "
                            "test)\n", sub);
        return 2;
    }
    cg_error e = {{0}};
    int pr = cg_parse_opts(opts, n_opts, argc - 1, argv + 1, NULL, &e);
    if (pr == 1) {
        if (root) {
            usage(stdout);
            cg_print_opts(stdout, opts, n_opts);
        }
        return 0;
    }
    if (pr < 0) {
        if (root)
            fprintf(stderr, "chargan: error: classifier %s: %s\n", sub, e.msg);
        return 2;
    }
    if (c->size > 1) {
        if (root)
            fprintf(stderr, "chargan: error: classifier %s runs in one process (started with "
                            "%d ranks); run it without mpirun\n", sub, c->size);
        return 1;
    }
    return -1;
}

int cg_cmd_classifier(cg_ctx *c, int argc, char **argv)
{
    clf_opts o;
    memset(&o, 0, sizeof o);
    cg_clf_default_train_opts(&o.t);
    o.split = "bymerge-test";
    o.out = "classifier.h5";
    o.threads = c->threads;
    const cg_opt opts[] = {
        {"data", CG_OPT_STR, &o.data,
         "EMNIST directory or file (default $EMNIST_DIR, then ./data/emnist)"},
        {"split", CG_OPT_STR, &o.split, "split in a directory (default bymerge-test)"},
        {"mapping", CG_OPT_STR, &o.mapping, "class -> character mapping file"},
        {"limit", CG_OPT_LONG, &o.limit, "use only the first N images (0 = all)"},
        {"out", CG_OPT_STR, &o.out, "train: classifier file to write (default classifier.h5)"},
        {"classifier", CG_OPT_STR, &o.classifier, "test: classifier file to test"},
        {"epochs", CG_OPT_INT, &o.t.epochs, "train: epochs (default 6)"},
        {"batch", CG_OPT_INT, &o.t.batch, "train: batch size (default 128)"},
        {"lr", CG_OPT_FLOAT, &o.t.lr, "train: Adam learning rate at the start (default 2e-3)"},
        {"shift", CG_OPT_INT, &o.t.shift,
         "train: random translation of up to N pixels (default 1; 0 = off)"},
        {"seed", CG_OPT_U64, &o.t.seed, "train: seed of weights, order and shifts (default 1)"},
        {"eval-every-epoch", CG_OPT_FLAG, &o.t.eval_every_epoch,
         "train: print the held-out accuracy after every epoch"},
        {"threads", CG_OPT_INT, &o.threads, "BLAS/OpenMP threads (default: all cores)"},
    };
    const int rc = parse_args(c, opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc >= 0)
        return rc;
    if (o.threads > 0 && o.threads != c->threads)
        cg_ctx_set_threads(c, o.threads);
    o.threads = c->threads;
    return run(&o, !strcmp(argv[0], "train") ? do_train : do_test);
}
