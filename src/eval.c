/* The GAN quality score; see eval.h. */
#include "chargan/eval.h"

#include <math.h>
#include <string.h>

#include "chargan/generate.h"
#include "chargan/kind.h"
#include "chargan/json.h"
#include "chargan/rng.h"

#define PIX CG_IMG_PIXELS
#define FEAT CG_CLF_FEATURES

/* Cumulative class mix of the held-out part (uniform without statistics). */
static void class_mix(const cg_classifier *clf, double *cdf)
{
    const int K = clf->n_classes;
    double total = 0.0, acc = 0.0;
    for (int k = 0; k < K; k++)
        total += clf->has_stats ? (double)clf->class_counts[k] : 1.0;
    for (int k = 0; k < K; k++) {
        acc += clf->has_stats ? (double)clf->class_counts[k] : 1.0;
        cdf[k] = total > 0 ? acc / total : (double)(k + 1) / K;
    }
    cdf[K - 1] = 1.0;
}

int cg_eval_setup(cg_evaluator *ev, cg_classifier *clf, const cg_gauss *ref, int batch,
                  int noise_dim, cg_error *e)
{
    memset(ev, 0, sizeof *ev);
    if (batch < 1 || batch > clf->max_batch)
        return cg_fail(e, "eval: batch %d not in 1..%d (the classifier's)", batch,
                       clf->max_batch);
    if (!ref || !ref->mean || ref->d != FEAT)
        return cg_fail(e, "eval: the classifier has no reference feature statistics");
    ev->clf = clf;
    ev->batch = batch;
    ev->temperature = 1.0f;
    ev->noise_dim = noise_dim;
    if (cg_fid_setup(&ev->ref, ref)) {
        cg_fid_free(&ev->ref);
        return cg_fail(e, "eval: eigen-decomposition of the reference covariance failed");
    }
    const int K = clf->n_classes;
    ev->z = cg_alloc(sizeof(float) * (size_t)batch * (noise_dim > 0 ? noise_dim : 1));
    ev->imgs = cg_alloc(sizeof(float) * (size_t)batch * PIX);
    ev->feats = cg_alloc(sizeof(float) * (size_t)batch * FEAT);
    ev->probs = cg_alloc(sizeof(float) * (size_t)batch * K);
    ev->labels = cg_alloc(sizeof(int32_t) * (size_t)batch);
    ev->idx = cg_alloc(sizeof(int64_t) * (size_t)batch);
    cg_moments_init(&ev->mom, FEAT);
    cg_gauss_init(&ev->fit, FEAT);
    class_mix(clf, ev->class_cdf);
    return 0;
}

void cg_eval_free(cg_evaluator *ev)
{
    cg_fid_free(&ev->ref);
    cg_free(ev->z);
    cg_free(ev->imgs);
    cg_free(ev->feats);
    cg_free(ev->probs);
    cg_free(ev->labels);
    cg_free(ev->idx);
    cg_moments_free(&ev->mom);
    cg_gauss_free(&ev->fit);
    memset(ev, 0, sizeof *ev);
}

/* Scores one batch of images in ev->imgs; want[i] (may be NULL) the classifier class each
 * should be (-1: counts as a miss). */
static void score_batch(cg_evaluator *ev, int m, const int32_t *want, double *conf,
                        long *match, cg_eval_result *r)
{
    const int K = ev->clf->n_classes;
    cg_classifier_forward(ev->clf, ev->imgs, m, ev->feats, ev->probs);
    cg_moments_add(&ev->mom, ev->feats, m);
    for (int i = 0; i < m; i++) {
        const float *p = ev->probs + (size_t)i * K;
        const int best = cg_argmax(p, K);
        *conf += p[best];
        r->class_hist[best]++;
        if (want)
            *match += best == want[i];
    }
}

static int finish(cg_evaluator *ev, cg_eval_result *r, double conf, long match, int has_match,
                  double t0, cg_error *e)
{
    const int K = ev->clf->n_classes;
    if (cg_gauss_from_moments(&ev->mom, &ev->fit))
        return cg_fail(e, "eval: at least 2 images are needed (got %ld)", r->n);
    r->fid = cg_fid_to(&ev->ref, &ev->fit);
    r->confidence = conf / (double)r->n;
    r->classes_covered = 0;
    double total = 0.0;
    for (int k = 0; k < K; k++)
        total += (double)ev->clf->class_counts[k];
    r->classes_covered_rel = 0;
    for (int k = 0; k < K; k++) {
        const double share = (double)r->class_hist[k] / (double)r->n;
        r->classes_covered += share >= 0.005;
        const double real = total > 0 ? (double)ev->clf->class_counts[k] / total : 1.0 / K;
        r->classes_covered_rel += share >= 0.5 * real;
    }
    r->class_match = has_match ? (double)match / (double)r->n : NAN;
    r->seconds = cg_now() - t0;
    return 0;
}

/* GAN class <-> classifier class, matched by character (-1: none). all_mapped: every class
 * the held-out part has is drawable, so the held-out mix can be asked for. */
typedef struct {
    int to_clf[CG_MAX_CLASSES], to_gan[CG_MAX_CLASSES];
    int all_mapped;
} class_map;

static void map_classes(const cg_evaluator *ev, int Kg, const char *gan_class_chars,
                        class_map *cm)
{
    const cg_classifier *clf = ev->clf;
    const int K = clf->n_classes;
    for (int k = 0; k < CG_MAX_CLASSES; k++)
        cm->to_clf[k] = cm->to_gan[k] = -1;
    for (int g = 0; g < Kg; g++) {
        if (!gan_class_chars) {
            cm->to_clf[g] = g < K ? g : -1;
        } else {
            for (int k = 0; k < K; k++)
                if (gan_class_chars[g] && clf->chars[k] == gan_class_chars[g])
                    cm->to_clf[g] = k;
        }
        if (cm->to_clf[g] >= 0)
            cm->to_gan[cm->to_clf[g]] = g;
    }
    cm->all_mapped = Kg > 0;
    for (int k = 0; k < K && Kg > 0; k++)
        if (cm->to_gan[k] < 0 && (!clf->has_stats || clf->class_counts[k] > 0))
            cm->all_mapped = 0;
}

/* The GAN class sample i asks for: drawn from the held-out mix, else i mod Kg. */
static int32_t pick_class(const cg_evaluator *ev, const class_map *cm, uint64_t seed, long i,
                          int Kg)
{
    if (!cm->all_mapped || ev->uniform_classes)
        return (int32_t)(i % Kg);
    const int K = ev->clf->n_classes;
    const double u = cg_rng_uniform(seed, cg_stream(CG_RNG_SAMPLE, 2), (uint64_t)i);
    int k = 0;
    while (k < K - 1 && (ev->class_cdf[k] <= u || cm->to_gan[k] < 0))
        k++;
    while (cm->to_gan[k] < 0) /* u fell past the last mapped class */
        k--;
    return cm->to_gan[k];
}

int cg_eval_gan(cg_evaluator *ev, cg_gan *gan, const char *gan_class_chars, long n,
                cg_eval_result *r, cg_error *e)
{
    cg_kind k;
    cg_kind_wrap_gan(&k, gan);
    return cg_eval_model(ev, &k, gan_class_chars, n, r, e);
}

int cg_eval_model(cg_evaluator *ev, cg_kind *k, const char *gan_class_chars, long n,
                  cg_eval_result *r, cg_error *e)
{
    const double t0 = cg_now();
    memset(r, 0, sizeof *r);
    r->n = n;
    const int nz = k->latent_dim, Kg = k->n_classes;
    if (nz > ev->noise_dim)
        return cg_fail(e, "eval: noise dimension %d exceeds the evaluator's %d", nz,
                       ev->noise_dim);
    if (n < 2)
        return cg_fail(e, "eval: at least 2 samples are needed (got %ld)", n);
    if (Kg > CG_MAX_CLASSES)
        return cg_fail(e, "eval: the model has %d classes (at most %d supported)", Kg,
                       CG_MAX_CLASSES);
    class_map cm;
    map_classes(ev, Kg, gan_class_chars, &cm);
    const int chunk = ev->batch < k->local_batch ? ev->batch : k->local_batch;
    const int wchunk = chunk < 1024 ? chunk : 1024;
    const uint64_t seed = k->seed;
    cg_moments_reset(&ev->mom);
    int32_t want[1024];
    double conf = 0.0;
    long match = 0;
    for (long first = 0; first < n; first += wchunk) {
        const int m = n - first < wchunk ? (int)(n - first) : wchunk;
        for (int i = 0; i < m && Kg > 0; i++) {
            ev->labels[i] = pick_class(ev, &cm, seed, first + i, Kg);
            want[i] = cm.to_clf[ev->labels[i]];
        }
        cg_kind_generate(k, seed, first, m, Kg > 0 ? ev->labels : NULL, ev->temperature,
                         ev->imgs, ev->z);
        score_batch(ev, m, Kg > 0 ? want : NULL, &conf, &match, r);
    }
    return finish(ev, r, conf, match, Kg > 0, t0, e);
}

int cg_eval_images(cg_evaluator *ev, const cg_dataset *ds, const int64_t *idx, long n,
                   cg_eval_result *r, cg_error *e)
{
    const double t0 = cg_now();
    memset(r, 0, sizeof *r);
    r->n = n;
    if (n < 2)
        return cg_fail(e, "eval: at least 2 images are needed (got %ld)", n);
    cg_moments_reset(&ev->mom);
    double conf = 0.0;
    long match = 0;
    for (long s = 0; s < n; s += ev->batch) {
        const int m = n - s < ev->batch ? (int)(n - s) : ev->batch;
        cg_data_batch(ds, idx + s, m, 0.0f, 1.0f, ev->imgs, ev->labels);
        score_batch(ev, m, ev->labels, &conf, &match, r);
    }
    return finish(ev, r, conf, match, 1, t0, e);
}

json_t *cg_eval_result_json(const cg_eval_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer(r->n));
    json_object_set_new(o, "fid", cg_json_num(r->fid, 4));
    json_object_set_new(o, "confidence", cg_json_num(r->confidence, 4));
    json_object_set_new(o, "classes_covered", json_integer(r->classes_covered));
    json_object_set_new(o, "classes_covered_rel", json_integer(r->classes_covered_rel));
    json_object_set_new(o, "class_match", cg_json_num(r->class_match, 4));
    json_object_set_new(o, "seconds", cg_json_num(r->seconds, 2));
    return o;
}
