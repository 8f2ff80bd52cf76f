/* `chargan eval`: the quality score of a checkpoint, as one JSON object on stdout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/ckpt.h"
#include "chargan/classifier.h"
#include "cli.h"
#include "chargan/data.h"
#include "chargan/eval.h"
#include "chargan/generate.h"
#include "chargan/json.h"
#include "chargan/kind.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chargan eval --checkpoint FILE [options]\n"
            "\n"
            "Scores a checkpoint (a GAN, or a VAE through its decoder) with the EMNIST\n"
            "classifier (`chargan classifier train`) and prints one JSON object:\n"
            "  generated   n samples of the checkpoint (noise of sample i from its seed, the\n"
            "              same samples every time; from the EMA of the generator's weights\n"
            "              when the checkpoint has one, unless --no-ema; \"generator\" says\n"
            "              which): fid = Frechet distance between the\n"
            "              classifier's 128 penultimate features of the samples and of the real\n"
            "              held-out images (fit stored in the classifier file; with --reference\n"
            "              train the classifier-train images', and no floors); confidence =\n"
            "              mean max-softmax probability; classes_covered = classes receiving\n"
            "              >= 0.5%% of the samples (on bymerge's natural mix a few classes\n"
            "              hold less than that: real data covers ~41 of 47);\n"
            "              classes_covered_rel = classes receiving at least half of their share\n"
            "              among the real held-out images; class_match = fraction classified\n"
            "              as the class asked for (conditional models; null otherwise)\n"
            "  real_floor  the same numbers for n real held-out images against the features of\n"
            "              the real classifier-train images (class_match = their accuracy).\n"
            "              Needs the data (--data, else $EMNIST_DIR, else ./data/emnist); null\n"
            "              when it cannot be found.\n"
            "  matched_floor  n real classifier-train images (the images the GAN trains on\n"
            "              with --exclude-heldout) scored exactly as the samples are, against\n"
            "              the held-out fit: what a perfect generator would score. real_floor\n"
            "              compares against the larger classifier-train fit, whose smaller\n"
            "              estimation noise puts it lower\n"
            "  fid_over_floor, fid_over_matched_floor  generated fid / each floor's fid\n"
            "  uniform_classes (conditional models) the same numbers for n samples asking for\n"
            "              every class equally often: classes_covered then counts the classes\n"
            "              the model draws recognizably (>= 0.5%% of the samples classified as\n"
            "              them), which the natural mix cannot show for its rare classes; its\n"
            "              fid is against the natural mix, so not comparable\n"
            "  uniform_real_floor (conditional models) the same numbers for n real held-out\n"
            "              images drawn class by class, every class equally often (images of\n"
            "              rare classes repeat): how many classes a perfect generator asked\n"
            "              for every class equally often would cover with this classifier\n"
            "  temperature  the noise scale of the samples (--temperature; 1: as trained)\n"
            "  fid_reference  heldout or train (--reference): which images' fit \"fid\" is\n"
            "              against. Choose sampling settings with train, which never looks at\n"
            "              the held-out images, then score them with heldout\n"
            "\n"
            "options:\n");
}

/* n indices of held-out images with every class equally often: sample i is of class
 * i mod K, the next image of that class in the fixed random order of `held` (hm images),
 * cycling through the class's images. Classes without held-out images are skipped.
 * Returns the count filled (n, or 0 when no class has images). */
static long balanced_indices(const cg_dataset *ds, const int64_t *held, long hm, long n,
                             int64_t *out)
{
    const int K = ds->n_classes;
    long *count = calloc((size_t)K, sizeof *count), *next = calloc((size_t)K, sizeof *next);
    int64_t **of = calloc((size_t)K, sizeof *of);
    long m = 0;
    if (count && next && of) {
        for (long i = 0; i < hm; i++)
            count[ds->labels[held[i]]]++;
        int ok = 1;
        for (int k = 0; k < K && ok; k++)
            ok = !count[k] || (of[k] = malloc(sizeof(int64_t) * (size_t)count[k])) != NULL;
        for (long i = 0; i < hm && ok; i++) {
            const int k = ds->labels[held[i]];
            of[k][next[k]++] = held[i];
        }
        memset(next, 0, sizeof(long) * (size_t)K);
        /* `empty` counts classes skipped in a row: K of them means no class has images. */
        for (int k = 0, empty = 0; ok && m < n && empty < K; k = (k + 1) % K) {
            if (!count[k]) {
                empty++;
                continue;
            }
            empty = 0;
            out[m++] = of[k][next[k]];
            next[k] = (next[k] + 1) % count[k];
        }
        for (int k = 0; k < K; k++)
            free(of[k]);
    }
    free(count), free(next), free(of);
    return m;
}

typedef struct {
    const char *ckpt, *clf_path, *data, *split, *reference;
    long n;
    float temperature;
    int batch, no_floor, no_ema, threads;
    int train_ref; /* --reference train */
} eval_opts;

/* The first bad option into e (parse errors are already there when bad). Returns -1 when
 * one is bad, else 0. */
static int eval_check(const eval_opts *o, int bad, cg_error *e)
{
    if (bad)
        return -1;
    if (!o->ckpt)
        return cg_fail(e, "--checkpoint FILE is required (see --help)");
    if (o->n < 2 || o->n > 10000000 || o->batch < 1 || o->batch > 4096)
        return cg_fail(e, "--n must be 2..10000000 and --batch 1..4096");
    if (!cg_temperature_valid(o->temperature))
        return cg_fail(e, "--temperature %g is not in (0, 10]", (double)o->temperature);
    if (!o->train_ref && strcmp(o->reference, "heldout"))
        return cg_fail(e, "--reference '%s': use heldout or train", o->reference);
    return 0;
}

/* Parses and checks the options into o. Returns -1 to go on, else the exit status (0 after
 * --help). */
static int eval_parse(cg_ctx *c, int argc, char **argv, eval_opts *o)
{
    const char *env_clf = getenv("CHARGAN_CLASSIFIER");
    *o = (eval_opts){.clf_path = env_clf && env_clf[0] ? env_clf : "classifier.h5",
                     .split = "bymerge-test", .reference = "heldout", .n = 10000,
                     .temperature = 1.0f, .batch = 250, .threads = c->threads};
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &o->ckpt, "checkpoint to score (required)"},
        {"classifier", CG_OPT_STR, &o->clf_path,
         "classifier file (default $CHARGAN_CLASSIFIER, else ./classifier.h5)"},
        {"n", CG_OPT_LONG, &o->n, "samples to generate and real images for the floor (10000)"},
        {"data", CG_OPT_STR, &o->data,
         "EMNIST data for the floor (default $EMNIST_DIR, then ./data/emnist)"},
        {"split", CG_OPT_STR, &o->split,
         "split the classifier was trained on (default bymerge-test)"},
        {"no-floor", CG_OPT_FLAG, &o->no_floor, "skip the real-vs-real floor"},
        {"no-ema", CG_OPT_FLAG, &o->no_ema,
         "score the raw generator weights, not their EMA (when the checkpoint has one)"},
        {"batch", CG_OPT_INT, &o->batch, "images per forward pass (default 250)"},
        {"threads", CG_OPT_INT, &o->threads, "BLAS/OpenMP threads (default: all cores)"},
        {"temperature", CG_OPT_FLOAT, &o->temperature,
         "noise scale of the samples, as `chargan sample --temperature` (1)"},
        {"reference", CG_OPT_STR, &o->reference,
         "heldout (default) | train: score the samples against the classifier-train images' "
         "fit instead, to choose sampling settings without looking at the held-out images "
         "(no floors then, so --data and --split go unused)"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const int root = c->rank == 0;
    cg_error e = {{0}};
    const int pr = cg_parse_opts(opts, n_opts, argc, argv, NULL, &e);
    if (pr == 1) {
        if (root) {
            usage(stdout);
            cg_print_opts(stdout, opts, n_opts);
        }
        return 0;
    }
    o->train_ref = !strcmp(o->reference, "train");
    if (eval_check(o, pr < 0, &e)) {
        if (root)
            fprintf(stderr, "chargan: error: eval: %s\n", e.msg);
        return 2;
    }
    return -1;
}

/* What one evaluation holds; zeroed at the start, released by eval_free. */
typedef struct {
    cg_classifier clf;
    cg_kind model;
    cg_ckpt_meta meta;
    cg_evaluator ev;       /* against the reference fit (--reference) */
    cg_evaluator ev_floor; /* against the classifier-train fit */
    cg_dataset ds;
    int64_t *idx, *held;
    int have_gan, have_floor, have_ufloor;
    char classes[CG_GEN_MAX_CLASSES + 1];
    char floor_note[700];
    cg_eval_result gen, uni;      /* generated: natural mix, every class equally often */
    cg_eval_result flo, mfl, ufl; /* real_floor, matched_floor, uniform_real_floor */
} eval_state;

static void eval_free(eval_state *s)
{
    free(s->idx);
    free(s->held);
    cg_eval_free(&s->ev);
    cg_eval_free(&s->ev_floor);
    cg_data_free(&s->ds);
    if (s->have_gan) {
        cg_kind_free(&s->model);
        cg_ckpt_meta_free(&s->meta);
    }
    cg_classifier_free(&s->clf);
}

/* Loads the classifier and the checkpoint and scores the generated samples (and, for
 * conditional models, those asking for every class equally often). 0, or -1 with e set. */
static int eval_generated(const eval_opts *o, eval_state *s, cg_error *e)
{
    if (cg_classifier_load(o->clf_path, &s->clf, o->batch, e))
        return -1;
    if (!s->clf.has_stats)
        return cg_fail(e, "%s: the classifier file holds no feature statistics (/stats); make "
                          "it with `chargan classifier train`", o->clf_path);
    if (cg_model_open(o->ckpt, o->batch, !o->no_ema, &s->model, &s->meta, s->classes, e))
        return -1;
    s->have_gan = 1;
    const int cond = s->model.n_classes > 0;
    const char *classes = s->classes[0] ? s->classes : NULL;
    if (cg_eval_setup(&s->ev, &s->clf, o->train_ref ? &s->clf.train : &s->clf.heldout,
                      o->batch, s->model.latent_dim, e))
        return -1;
    s->ev.temperature = o->temperature;
    if (cg_eval_model(&s->ev, &s->model, cond ? classes : NULL, o->n, &s->gen, e))
        return -1;
    if (!cond)
        return 0;
    s->ev.uniform_classes = 1;
    return cg_eval_model(&s->ev, &s->model, classes, o->n, &s->uni, e) ? -1 : 0;
}

/* uniform_real_floor: n held-out images, every class equally often. 0, or -1 with e set. */
static int eval_uniform_floor(const eval_opts *o, eval_state *s, cg_error *e)
{
    const cg_dataset *ds = &s->ds;
    s->held = malloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1));
    if (!s->held)
        return cg_fail(e, "out of memory");
    const long hm = cg_split_indices(ds->n, 1, ds->n, s->held);
    const long mb = balanced_indices(ds, s->held, hm, o->n, s->idx);
    if (mb >= 2 && cg_eval_images(&s->ev_floor, ds, s->idx, mb, &s->ufl, e))
        return -1;
    s->have_ufloor = mb >= 2;
    return 0;
}

/* The floors on the loaded data set. 0, or -1 with e set. */
static int eval_floor_scores(const eval_opts *o, eval_state *s, cg_error *e)
{
    const cg_dataset *ds = &s->ds;
    s->idx = malloc(sizeof(int64_t) * (size_t)o->n);
    if (!s->idx)
        return cg_fail(e, "out of memory");
    /* real_floor: n real held-out images against the classifier-train fit */
    const long m = cg_split_indices(ds->n, 1, o->n, s->idx);
    if (cg_eval_setup(&s->ev_floor, &s->clf, &s->clf.train, o->batch, 0, e) ||
        cg_eval_images(&s->ev_floor, ds, s->idx, m, &s->flo, e))
        return -1;
    s->have_floor = 1;
    /* matched_floor: n classifier-train images scored exactly as the samples are, against
     * the held-out fit (real_floor compares against the larger classifier-train fit, whose
     * estimate is less noisy, so it sits lower). */
    const long mt = cg_split_indices(ds->n, 0, o->n, s->idx);
    if (cg_eval_images(&s->ev, ds, s->idx, mt, &s->mfl, e))
        return -1;
    if (m < o->n)
        snprintf(s->floor_note, sizeof s->floor_note,
                 "the held-out part has only %ld images (fewer than --n)", m);
    return s->model.n_classes ? eval_uniform_floor(o, s, e) : 0;
}

/* The floors, or the note why there are none: data missing is an error only when --data
 * names it. 0, or -1 with e set. */
static int eval_floors(const eval_opts *o, eval_state *s, cg_error *e)
{
    if (o->no_floor || o->train_ref) {
        snprintf(s->floor_note, sizeof s->floor_note, "%s",
                 o->train_ref ? "skipped: the floors are defined against the held-out images"
                              : "skipped (--no-floor)");
        return 0;
    }
    cg_data_opts d = {0};
    d.data = o->data;
    d.split = o->split;
    cg_error de = {{0}};
    if (cg_data_load_local(&d, &s->ds, &de)) {
        if (o->data) {
            *e = de;
            return -1;
        }
        snprintf(s->floor_note, sizeof s->floor_note, "no data for the floor: %.600s", de.msg);
        return 0;
    }
    if (s->ds.n_classes != s->clf.n_classes)
        return cg_fail(e, "%s has %d classes, but the classifier %s has %d", s->ds.source,
                       s->ds.n_classes, o->clf_path, s->clf.n_classes);
    return eval_floor_scores(o, s, e);
}

/* The "reference" text: what each score is measured against. */
static json_t *reference_json(const eval_opts *o, const eval_state *s)
{
    char text[600];
    if (o->train_ref)
        snprintf(text, sizeof text, "generated: features of the %ld classifier-train images "
                                    "(--reference train)", s->clf.train.n);
    else
        snprintf(text, sizeof text,
                 "generated: features of the %ld held-out images of the classifier's data; "
                 "real_floor: %ld held-out images vs the %ld classifier-train images; "
                 "matched_floor: %ld classifier-train images vs the held-out images, as "
                 "generated", s->clf.heldout.n, s->have_floor ? s->flo.n : 0L,
                 s->clf.train.n, s->have_floor ? s->mfl.n : 0L);
    return cg_json_str(text);
}

/* Adds the floors' scores and ratios to j (nulls without floors), and the note. */
static void floors_json(json_t *j, const eval_state *s)
{
    if (s->have_floor) {
        json_object_set_new(j, "real_floor", cg_eval_result_json(&s->flo));
        if (s->have_ufloor)
            json_object_set_new(j, "uniform_real_floor", cg_eval_result_json(&s->ufl));
        json_object_set_new(j, "matched_floor", cg_eval_result_json(&s->mfl));
    } else {
        json_object_set_new(j, "real_floor", json_null());
        json_object_set_new(j, "matched_floor", json_null());
    }
    const double gen = s->gen.fid, flo = s->flo.fid, mfl = s->mfl.fid;
    json_object_set_new(j, "fid_over_floor", s->have_floor && flo > 0 ? cg_json_num(gen / flo, 3)
                                                                       : json_null());
    json_object_set_new(j, "fid_over_matched_floor",
                        s->have_floor && mfl > 0 ? cg_json_num(gen / mfl, 3) : json_null());
    if (s->floor_note[0])
        json_object_set_new(j, "floor_note", cg_json_str(s->floor_note));
}

/* The output object, one line. */
static void eval_print(const eval_opts *o, const eval_state *s, double seconds)
{
    const cg_ckpt_meta *m = &s->meta;
    json_t *j = json_object();
    json_object_set_new(j, "checkpoint", cg_json_str(o->ckpt));
    json_object_set_new(j, "model", cg_json_str(m->model));
    json_object_set_new(j, "step", json_integer(m->step));
    json_object_set_new(j, "conditional", json_boolean(s->model.n_classes));
    json_object_set_new(j, "generator", cg_json_str(m->has_ema && !o->no_ema ? "ema" : "raw"));
    json_object_set_new(j, "ema_decay", m->has_ema ? cg_json_num(m->ema_decay, -1) : json_null());
    json_object_set_new(j, "temperature", cg_json_float(o->temperature));
    json_object_set_new(j, "fid_reference", cg_json_str(o->train_ref ? "train" : "heldout"));
    json_object_set_new(j, "classifier", cg_json_str(o->clf_path));
    json_object_set_new(j, "classifier_heldout_accuracy",
                        cg_json_num(s->clf.heldout_accuracy, 4));
    json_object_set_new(j, "n", json_integer(o->n));
    json_object_set_new(j, "generated", cg_eval_result_json(&s->gen));
    if (s->model.n_classes)
        json_object_set_new(j, "uniform_classes", cg_eval_result_json(&s->uni));
    floors_json(j, s);
    json_object_set_new(j, "reference", reference_json(o, s));
    json_object_set_new(j, "seconds", cg_json_num(seconds, 2));
    cg_json_print(stdout, j);
    fflush(stdout);
}

int cg_cmd_eval(cg_ctx *c, int argc, char **argv)
{
    eval_opts o;
    const int pr = eval_parse(c, argc, argv, &o);
    if (pr >= 0)
        return pr;
    if (c->size > 1) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: eval runs in one process (started with %d "
                            "ranks); run it without mpirun\n", c->size);
        return 1;
    }
    if (o.threads > 0 && o.threads != c->threads)
        cg_ctx_set_threads(c, o.threads);

    const double t0 = cg_now();
    eval_state *s = calloc(1, sizeof *s);
    cg_error e = {{0}};
    if (!s) {
        fprintf(stderr, "chargan: error: out of memory\n");
        return 1;
    }
    const int rc = eval_generated(&o, s, &e) || eval_floors(&o, s, &e) ? 1 : 0;
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", e.msg);
    else
        eval_print(&o, s, cg_now() - t0);
    eval_free(s);
    free(s);
    return rc;
}
