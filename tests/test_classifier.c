/* The classifier and the quality score (src/classifier.c):
 *  - softmax cross-entropy: value against a direct double computation, gradient against
 *    central finite differences, stability for huge logits, probabilities summing to 1;
 *  - the classifier network's parameter gradient through softmax cross-entropy (a few entries
 *    of every tensor, finite differences, in training mode with fixed dropout masks);
 *  - the held-out split: about 20%, a pure function of the index;
 *  - a tiny classifier trained on the first 6000 images of bymerge-test (2 epochs, ~4800
 *    training images) reaches a held-out accuracy far above chance (1/47) — above 50%;
 *  - the classifier file: save/load round trip (same outputs, stats, attributes), refusal of
 *    a missing / non-HDF5 / truncated file;
 *  - evaluation: real held-out images scored against their own fit give FID ~ 0, against
 *    the classifier-train fit a small positive FID, class_match = accuracy; an untrained GAN
 *    (unconditional and conditional) is scored deterministically with sane ranges and a
 *    far larger FID.
 * Runs in a few seconds on 2 cores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chargan/classifier.h"
#include "chargan/eval.h"
#include "chargan/gan.h"
#include "chargan/json.h"
#include "testutil.h"

/* ---- softmax cross-entropy ----------------------------------------------------------- */

typedef struct {
    int B, K;
    float *logits;
    const int32_t *labels;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return cg_softmax_xent(c->B, c->K, c->logits, c->labels, 0.25f, NULL, NULL);
}

static void test_xent(void)
{
    enum { B = 4, K = 7 };
    float logits[B * K], d[B * K], probs[B * K];
    int32_t labels[B] = {0, 6, 3, 3};
    tu_fill_uniform(logits, B * K, -3.0f, 3.0f, 1);
    const double loss = cg_softmax_xent(B, K, logits, labels, 0.25f, d, probs);
    double want = 0.0;
    for (int i = 0; i < B; i++) {
        double s = 0.0;
        for (int k = 0; k < K; k++)
            s += exp((double)logits[i * K + k]);
        want += log(s) - logits[i * K + labels[i]];
        double ps = 0.0;
        for (int k = 0; k < K; k++)
            ps += probs[i * K + k];
        CHECK_NEAR(ps, 1.0, 1e-6);
    }
    CHECK_NEAR(loss, 0.25 * want, 1e-6);
    xent_ctx c = {B, K, logits, labels};
    tu_fd_opts o = {1e-2f, 1e-3, 1e-4, 0, 0};
    tu_fd_check("softmax_xent dlogits", logits, d, B * K, NULL, 0, xent_loss, &c, &o);

    /* cg_softmax equals the probabilities of the loss function. */
    float p2[B * K];
    cg_softmax(B, K, logits, p2);
    CHECK(tu_max_rel_diff(p2, probs, B * K) < 1e-6);

    /* Huge logits: no overflow, the right answer. */
    float big[2 * 3] = {1000.0f, 0.0f, -1000.0f, 500.0f, 500.0f, 500.0f};
    int32_t lb[2] = {0, 2};
    float db[6];
    const double lbig = cg_softmax_xent(2, 3, big, lb, 1.0f, db, NULL);
    CHECK(isfinite(lbig));
    CHECK_NEAR(lbig, log(3.0), 1e-5);
    CHECK_NEAR(db[0], 0.0, 1e-6);
    CHECK_NEAR(db[5], 1.0 / 3.0 - 1.0, 1e-6);
}

/* ---- the network's gradient ---------------------------------------------------------- */

typedef struct {
    cg_classifier *c;
    const float *x;
    const int32_t *labels;
    int B;
} net_ctx;

static double net_loss(void *p)
{
    net_ctx *n = p;
    const cg_fwd_opts o = {1, 3, 9, 0, NULL, NULL}; /* training: fixed dropout masks (seed, step) */
    const float *l = cg_net_forward(&n->c->net, &n->c->tape, n->x, n->B, &o);
    return cg_softmax_xent(n->B, n->c->n_classes, l, n->labels, 1.0f / n->B, NULL, NULL);
}

static void test_net_grad(void)
{
    enum { B = 3, K = 5 };
    cg_classifier c;
    cg_error e;
    CHECK(cg_classifier_init(&c, K, "abcde", B, 7, &e) == 0);
    CHECK(cg_net_out_size(&c.net) == K);
    CHECK(c.net.layers[c.feat_layer].out_c == CG_CLF_FEATURES);
    /* Small random biases so no unit sits exactly at a ReLU kink. */
    for (int t = 0; t < c.net.n_tensors; t++)
        if (c.net.tensors[t].fan_in == 0)
            tu_fill_uniform(c.net.param + c.net.tensors[t].offset, c.net.tensors[t].count,
                            -0.05f, 0.05f, 50 + (uint64_t)t);
    float *x = tu_falloc(B * 784), dl[B * K];
    tu_fill_uniform(x, B * 784, 0.0f, 1.0f, 2);
    int32_t labels[B] = {1, 4, 0};
    net_ctx n = {&c, x, labels, B};
    memset(c.net.grad, 0, sizeof(float) * c.net.n_params);
    const cg_fwd_opts o = {1, 3, 9, 0, NULL, NULL};
    const float *l = cg_net_forward(&c.net, &c.tape, x, B, &o);
    cg_softmax_xent(B, K, l, labels, 1.0f / B, dl, NULL);
    cg_net_backward(&c.net, &c.tape, dl, 1, NULL);
    float *grad = tu_fdup(c.net.grad, c.net.n_params);
    for (int t = 0; t < c.net.n_tensors; t++) {
        const cg_tensor *T = &c.net.tensors[t];
        size_t idx[12];
        for (int k = 0; k < 12; k++)
            idx[k] = T->offset + (size_t)(cg_rng_u64(TU_SEED, 60 + t, k) % T->count);
        double rms = 0.0;
        for (size_t i = 0; i < T->count; i++)
            rms += (double)grad[T->offset + i] * grad[T->offset + i];
        rms = sqrt(rms / (double)T->count);
        /* h = 1e-4: the loss is computed in float (rounding noise ~1e-7 / h) and a perturbed conv
         * kernel moves hundreds of ReLU units (kinks); 1e-4 balances the two. An entry passes
         * within 10% of max(|analytic|, 0.1 RMS of the tensor's gradient); one of 12 may fail. */
        tu_fd_opts fo = {1e-4f, 0.1, fmax(1e-5, 0.1 * rms), 1, 1};
        char what[64];
        snprintf(what, sizeof what, "classifier %s", T->name);
        tu_fd_check(what, c.net.param, grad, c.net.n_params, idx, 12, net_loss, &n, &fo);
    }
    free(grad);
    free(x);
    cg_classifier_free(&c);
}

/* ---- data, training, file, evaluation ------------------------------------------------ */

static const char *data_dir(void)
{
    const char *env = getenv("EMNIST_DIR");
    return env && env[0] ? env : "../../shared/data/emnist"; /* cwd is tests/ */
}

static void test_split(void)
{
    long held = 0;
    const long n = 116323;
    for (long i = 0; i < n; i++)
        held += cg_heldout(i);
    const double frac = (double)held / n;
    CHECKF(fabs(frac - 0.2) < 0.005, "held-out fraction %.4f", frac);
    CHECK(cg_heldout(12345) == cg_heldout(12345));
    int64_t idx[100];
    CHECK(cg_split_indices(n, 1, 100, idx) == 100);
    for (int i = 0; i < 100; i++)
        CHECK(cg_heldout(idx[i]));
    printf("  split: %ld of %ld held out (%.2f%%)\n", held, n, 100.0 * frac);
}

static void test_train_and_eval(void)
{
    cg_dataset ds;
    cg_error e;
    cg_data_opts o = {0};
    o.data = data_dir();
    o.split = "bymerge-test";
    o.limit = 6000;
    if (cg_data_load_local(&o, &ds, &e)) {
        fprintf(stderr, "cannot load EMNIST (%s); set EMNIST_DIR\n", e.msg);
        CHECK(0);
        return;
    }
    int64_t *tr = malloc(sizeof(int64_t) * ds.n), *ho = malloc(sizeof(int64_t) * ds.n);
    long nt = 0, nh = 0;
    for (long i = 0; i < ds.n; i++) {
        if (cg_heldout(i))
            ho[nh++] = i;
        else
            tr[nt++] = i;
    }
    cg_classifier c;
    CHECK(cg_classifier_init(&c, ds.n_classes, ds.chars, 256, 1, &e) == 0);
    cg_clf_train_opts t;
    cg_clf_default_train_opts(&t);
    t.epochs = 2;
    const double t0 = cg_now();
    CHECK(cg_classifier_train(&c, &ds, tr, nt, ho, nh, &t, stdout, &e) == 0);
    const double acc = cg_classifier_accuracy(&c, &ds, ho, nh);
    printf("  tiny classifier: %ld train, %ld held-out images, held-out accuracy %.4f "
           "(%.1f s)\n", nt, nh, acc, cg_now() - t0);
    CHECKF(acc > 0.5, "held-out accuracy %.4f (chance 0.02)", acc);
    CHECK_NEAR(acc, c.heldout_accuracy, 1e-12);
    CHECK(cg_classifier_compute_stats(&c, &ds, ho, nh, tr, nt, &e) == 0);
    snprintf(c.source, sizeof c.source, "%s", ds.source);

    /* File round trip. */
    char path[] = "/tmp/chargan-test-clf-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(cg_classifier_save(path, &c, 2, 1, &e) == 0);
    cg_classifier c2;
    if (cg_classifier_load(path, &c2, 100, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        CHECK(0);
    } else {
        CHECK(c2.n_classes == c.n_classes && !memcmp(c2.chars, c.chars, c.n_classes));
        CHECK(!memcmp(c2.net.param, c.net.param, sizeof(float) * c.net.n_params));
        CHECK(c2.has_stats && c2.heldout.n == nh && c2.train.n == nt);
        CHECK(!memcmp(c2.heldout.cov, c.heldout.cov, sizeof(double) * 128 * 128));
        CHECK(c2.heldout_accuracy == c.heldout_accuracy);
        CHECK(c2.class_counts[ds.labels[ho[0]]] == c.class_counts[ds.labels[ho[0]]]);
        CHECK_NEAR(cg_classifier_accuracy(&c2, &ds, ho, nh), acc, 1e-12);

        /* Evaluation of real images. */
        cg_evaluator ev;
        cg_eval_result r;
        CHECK(cg_eval_setup(&ev, &c2, &c2.heldout, 100, 0, &e) == 0);
        CHECK(cg_eval_images(&ev, &ds, ho, nh, &r, &e) == 0);
        CHECKF(r.fid < 1e-6, "held-out vs its own fit: FID %.3g", r.fid);
        CHECK_NEAR(r.class_match, acc, 1e-12);
        CHECK(r.confidence > 0.3 && r.confidence <= 1.0);
        cg_eval_free(&ev);
        CHECK(cg_eval_setup(&ev, &c2, &c2.train, 100, 0, &e) == 0);
        CHECK(cg_eval_images(&ev, &ds, ho, nh, &r, &e) == 0);
        const double floor_fid = r.fid;
        CHECKF(r.fid > 0.0 && r.fid < 5.0, "held-out vs train fit: FID %.4g", r.fid);
        printf("  real floor: fid %.4f confidence %.4f classes %d class_match %.4f\n", r.fid,
               r.confidence, r.classes_covered, r.class_match);
        CHECK(r.classes_covered > 10 && r.classes_covered <= ds.n_classes);
        CHECK(r.classes_covered_rel > 10 && r.classes_covered_rel <= ds.n_classes);
        cg_eval_free(&ev);

        /* An untrained GAN, unconditional and conditional: deterministic, far from real. */
        for (int cond = 0; cond < 2; cond++) {
            cg_gan gan;
            cg_gan_config cfg;
            cg_gan_default_config(&cfg);
            snprintf(cfg.model, sizeof cfg.model, "small");
            cfg.global_batch = cfg.local_batch = 32;
            cfg.n_classes = cond ? ds.n_classes : 0;
            CHECK(cg_gan_init(&gan, &cfg, &e) == 0);
            cg_gan_init_weights(&gan);
            CHECK(cg_eval_setup(&ev, &c2, &c2.heldout, 100, gan.preset.noise_dim, &e) == 0);
            cg_eval_result g1, g2;
            CHECK(cg_eval_gan(&ev, &gan, cond ? ds.chars : NULL, 301, &g1, &e) == 0);
            CHECK(cg_eval_gan(&ev, &gan, cond ? ds.chars : NULL, 301, &g2, &e) == 0);
            CHECK(g1.fid == g2.fid && g1.confidence == g2.confidence);
            CHECKF(g1.fid > 10.0 * floor_fid, "untrained GAN fid %.4g vs floor %.4g", g1.fid,
                   floor_fid);
            CHECK(g1.confidence > 0.0 && g1.confidence <= 1.0);
            CHECK(g1.classes_covered >= 1 && g1.classes_covered <= ds.n_classes);
            CHECK(cond ? (g1.class_match >= 0.0 && g1.class_match <= 1.0)
                       : isnan(g1.class_match));
            char buf[512];
            json_t *js = cg_eval_result_json(&g1);
            char *text = cg_json_text(js);
            snprintf(buf, sizeof buf, "%s", text ? text : "");
            free(text);
            json_decref(js);
            printf("  untrained %s GAN: %s\n", cond ? "conditional" : "unconditional", buf);
            CHECK(strstr(buf, cond ? "\"class_match\": 0" : "\"class_match\": null") != NULL);
            cg_eval_free(&ev);
            cg_gan_free(&gan);
        }
        cg_classifier_free(&c2);
    }

    /* Refused files: one-line messages naming the file. */
    CHECK(cg_classifier_load("/nonexistent/clf.h5", &c2, 10, &e) == -1);
    CHECK(strstr(e.msg, "/nonexistent/clf.h5") != NULL);
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 0, SEEK_END);
        const long size = ftell(f);
        fclose(f);
        CHECK(truncate(path, size / 2) == 0);
        CHECK(cg_classifier_load(path, &c2, 10, &e) == -1);
        printf("  truncated file: %s\n", e.msg);
        f = fopen(path, "wb");
        fputs("not hdf5\n", f);
        fclose(f);
        CHECK(cg_classifier_load(path, &c2, 10, &e) == -1);
        CHECK(strstr(e.msg, "not an HDF5 file") != NULL);
    }
    unlink(path);
    cg_classifier_free(&c);
    free(tr);
    free(ho);
    cg_data_free(&ds);
}

int main(void)
{
    test_xent();
    test_net_grad();
    test_split();
    test_train_and_eval();
    return tu_finish("test_classifier");
}
