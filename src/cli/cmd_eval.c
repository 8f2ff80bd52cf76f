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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chargan eval --checkpoint FILE [options]\n"
            "\n"
            "Scores a GAN checkpoint with the EMNIST classifier (`chargan classifier train`)\n"
            "and prints one JSON object:\n"
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

/* Writes s as a JSON string (quotes and control characters escaped). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* One score of the output object: ` "KEY": {...},` and a newline. */
static void print_score(const char *key, const cg_eval_result *r)
{
    json_t *o = cg_eval_result_json(r);
    char *text = cg_json_text(o);
    printf(" \"%s\": %s,\n", key, text ? text : "null");
    free(text);
    json_decref(o);
}

int cg_cmd_eval(cg_ctx *c, int argc, char **argv)
{
    const char *ckpt = NULL, *clf_path = getenv("CHARGAN_CLASSIFIER"), *data = NULL;
    const char *split = "bymerge-test", *reference = "heldout";
    long n = 10000;
    float temperature = 1.0f;
    int batch = 250, no_floor = 0, no_ema = 0, threads = c->threads;
    if (!clf_path || !clf_path[0])
        clf_path = "classifier.h5";
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &ckpt, "checkpoint to score (required)"},
        {"classifier", CG_OPT_STR, &clf_path,
         "classifier file (default $CHARGAN_CLASSIFIER, else ./classifier.h5)"},
        {"n", CG_OPT_LONG, &n, "samples to generate and real images for the floor (10000)"},
        {"data", CG_OPT_STR, &data,
         "EMNIST data for the floor (default $EMNIST_DIR, then ./data/emnist)"},
        {"split", CG_OPT_STR, &split,
         "split the classifier was trained on (default bymerge-test)"},
        {"no-floor", CG_OPT_FLAG, &no_floor, "skip the real-vs-real floor"},
        {"no-ema", CG_OPT_FLAG, &no_ema,
         "score the raw generator weights, not their EMA (when the checkpoint has one)"},
        {"batch", CG_OPT_INT, &batch, "images per forward pass (default 250)"},
        {"threads", CG_OPT_INT, &threads, "BLAS/OpenMP threads (default: all cores)"},
        {"temperature", CG_OPT_FLOAT, &temperature,
         "noise scale of the samples, as `chargan sample --temperature` (1)"},
        {"reference", CG_OPT_STR, &reference,
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
    /* The first bad option is reported (parse errors are already in e). */
    const int train_ref = !strcmp(reference, "train");
    int bad = pr < 0;
    if (!bad && !ckpt)
        bad = cg_fail(&e, "--checkpoint FILE is required (see --help)");
    else if (!bad && (n < 2 || n > 10000000 || batch < 1 || batch > 4096))
        bad = cg_fail(&e, "--n must be 2..10000000 and --batch 1..4096");
    else if (!bad && !cg_temperature_valid(temperature))
        bad = cg_fail(&e, "--temperature %g is not in (0, 10]", (double)temperature);
    else if (!bad && !train_ref && strcmp(reference, "heldout"))
        bad = cg_fail(&e, "--reference '%s': use heldout or train", reference);
    if (bad) {
        if (root)
            fprintf(stderr, "chargan: error: eval: %s\n", e.msg);
        return 2;
    }
    if (c->size > 1) {
        if (root)
            fprintf(stderr, "chargan: error: eval runs in one process (started with %d "
                            "ranks); run it without mpirun\n", c->size);
        return 1;
    }
    if (threads > 0 && threads != c->threads)
        cg_ctx_set_threads(c, threads);

    const double t0 = cg_now();
    cg_classifier clf;
    cg_gan gan;
    cg_ckpt_meta meta;
    cg_evaluator ev, ev_floor;
    cg_dataset ds;
    memset(&clf, 0, sizeof clf);
    memset(&gan, 0, sizeof gan);
    memset(&meta, 0, sizeof meta);
    memset(&ev, 0, sizeof ev);
    memset(&ev_floor, 0, sizeof ev_floor);
    memset(&ds, 0, sizeof ds);
    int64_t *idx = NULL;
    int64_t *held = NULL;
    int rc = 1, have_gan = 0, have_floor = 0, have_ufloor = 0;
    char classes[CG_GEN_MAX_CLASSES + 1] = {0};
    char floor_note[700] = "";
    cg_eval_result gen, flo, mfl, uni, ufl;

    if (cg_classifier_load(clf_path, &clf, batch, &e))
        goto out;
    if (!clf.has_stats) {
        cg_fail(&e, "%s: the classifier file holds no feature statistics (/stats); make it "
                    "with `chargan classifier train`", clf_path);
        goto out;
    }
    if (cg_gan_open(ckpt, batch, !no_ema, &gan, &meta, classes, &e))
        goto out;
    have_gan = 1;
    if (cg_eval_setup(&ev, &clf, train_ref ? &clf.train : &clf.heldout, batch,
                      gan.preset.noise_dim, &e))
        goto out;
    ev.temperature = temperature;
    if (cg_eval_gan(&ev, &gan, gan.preset.n_classes && classes[0] ? classes : NULL, n, &gen,
                    &e))
        goto out;
    if (gan.preset.n_classes) {
        ev.uniform_classes = 1;
        if (cg_eval_gan(&ev, &gan, classes[0] ? classes : NULL, n, &uni, &e))
            goto out;
    }

    /* The floor: n real held-out images against the classifier-train fit. */
    if (no_floor || train_ref) {
        snprintf(floor_note, sizeof floor_note,
                 train_ref ? "skipped: the floors are defined against the held-out images"
                           : "skipped (--no-floor)");
    } else {
        cg_data_opts d = {0};
        d.data = data;
        d.split = split;
        cg_error de = {{0}};
        if (cg_data_load_local(&d, &ds, &de)) {
            if (data) { /* asked for explicitly: an error */
                e = de;
                goto out;
            }
            snprintf(floor_note, sizeof floor_note, "no data for the floor: %.600s", de.msg);
        } else if (ds.n_classes != clf.n_classes) {
            cg_fail(&e, "%s has %d classes, but the classifier %s has %d", ds.source,
                    ds.n_classes, clf_path, clf.n_classes);
            goto out;
        } else {
            idx = malloc(sizeof(int64_t) * (size_t)n);
            if (!idx) {
                cg_fail(&e, "out of memory");
                goto out;
            }
            const long m = cg_split_indices(ds.n, 1, n, idx);
            if (cg_eval_setup(&ev_floor, &clf, &clf.train, batch, 0, &e) ||
                cg_eval_images(&ev_floor, &ds, idx, m, &flo, &e))
                goto out;
            have_floor = 1;
            /* n classifier-train images scored exactly as the samples are, against the
             * held-out fit (the floor above compares against the larger classifier-train
             * fit, whose estimate is less noisy, so it sits lower). */
            const long mt = cg_split_indices(ds.n, 0, n, idx);
            if (cg_eval_images(&ev, &ds, idx, mt, &mfl, &e))
                goto out;
            if (m < n)
                snprintf(floor_note, sizeof floor_note,
                         "the held-out part has only %ld images (fewer than --n)", m);
            if (gan.preset.n_classes) {
                held = malloc(sizeof(int64_t) * (size_t)(ds.n ? ds.n : 1));
                if (!held) {
                    cg_fail(&e, "out of memory");
                    goto out;
                }
                const long hm = cg_split_indices(ds.n, 1, ds.n, held);
                const long mb = balanced_indices(&ds, held, hm, n, idx);
                if (mb >= 2 && cg_eval_images(&ev_floor, &ds, idx, mb, &ufl, &e))
                    goto out;
                have_ufloor = mb >= 2;
            }
        }
    }

    printf("{\"checkpoint\": ");
    json_str(stdout, ckpt);
    printf(", \"model\": ");
    json_str(stdout, meta.model);
    printf(", \"step\": %ld, \"conditional\": %s, \"generator\": \"%s\", \"ema_decay\": ",
           meta.step, gan.preset.n_classes ? "true" : "false",
           meta.has_ema && !no_ema ? "ema" : "raw");
    if (meta.has_ema)
        printf("%g", meta.ema_decay);
    else
        printf("null");
    printf(", \"temperature\": %g, \"fid_reference\": \"%s\"", (double)temperature,
           train_ref ? "train" : "heldout");
    printf(", \"classifier\": ");
    json_str(stdout, clf_path);
    printf(", \"classifier_heldout_accuracy\": %.4f, \"n\": %ld,\n", clf.heldout_accuracy, n);
    print_score("generated", &gen);
    if (gan.preset.n_classes)
        print_score("uniform_classes", &uni);
    if (have_floor) {
        print_score("real_floor", &flo);
        if (have_ufloor)
            print_score("uniform_real_floor", &ufl);
        print_score("matched_floor", &mfl);
        printf(" \"fid_over_floor\": %.3f, \"fid_over_matched_floor\": %.3f,",
               flo.fid > 0 ? gen.fid / flo.fid : NAN, mfl.fid > 0 ? gen.fid / mfl.fid : NAN);
    } else {
        printf(" \"real_floor\": null,\n \"matched_floor\": null,\n \"fid_over_floor\": null, "
               "\"fid_over_matched_floor\": null,");
    }
    if (floor_note[0]) {
        printf(" \"floor_note\": ");
        json_str(stdout, floor_note);
        printf(",");
    }
    if (train_ref)
        printf("\n \"reference\": \"generated: features of the %ld classifier-train images "
               "(--reference train)\",\n",
               clf.train.n);
    else
        printf("\n \"reference\": \"generated: features of the %ld held-out images of the "
               "classifier's data; real_floor: %ld held-out images vs the %ld classifier-train "
               "images; matched_floor: %ld classifier-train images vs the held-out images, as "
               "generated\",\n",
               clf.heldout.n, have_floor ? flo.n : 0L, clf.train.n, have_floor ? mfl.n : 0L);
    printf(" \"seconds\": %.2f}\n", cg_now() - t0);
    fflush(stdout);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", e.msg);
    free(idx);
    free(held);
    cg_eval_free(&ev);
    cg_eval_free(&ev_floor);
    cg_data_free(&ds);
    if (have_gan) {
        cg_gan_free(&gan);
        cg_ckpt_meta_free(&meta);
    }
    cg_classifier_free(&clf);
    return rc;
}
