/* EMA of the generator's weights (src/ema.c) and its place in checkpoints (src/ckpt.c):
 *   - the warm-up decay and the update against values computed by hand;
 *   - cg_gan_ema_update on a whole network (batch-norm running averages included), swap;
 *   - checkpoint round trip: /ema/generator and its decay attribute, cg_ckpt_load,
 *     cg_gan_open with and without the EMA;
 *   - checkpoints without /ema (as every chargan before the EMA wrote them) still load, and
 *     then the EMA starts from the raw weights;
 *   - a damaged /ema (flipped bit, missing tensor or decay, bad decay) is refused. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chargan/ckpt.h"
#include "chargan/ema.h"
#include "chargan/gan.h"
#include "chargan/generate.h"
#include "testutil.h"

static char root[256];

static void make_gan(cg_gan *gan, const char *model)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.global_batch = cfg.local_batch = 4;
    cfg.n_classes = 0;
    cg_error e = {{0}};
    if (cg_gan_init(gan, &cfg, &e)) {
        fprintf(stderr, "cg_gan_init(%s): %s\n", model, e.msg);
        exit(2);
    }
    cg_gan_init_weights(gan);
}

static int same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, sizeof(float) * n) == 0;
}

/* ---- arithmetic ---------------------------------------------------------------------- */

static void test_arithmetic(void)
{
    /* d_t = min(decay, (1 + t) / (10 + t)) */
    CHECK(cg_ema_decay_at(0.999, 0) == (float)(1.0 / 10.0));
    CHECK(cg_ema_decay_at(0.999, 1) == (float)(2.0 / 11.0));
    CHECK(cg_ema_decay_at(0.999, 90) == (float)(91.0 / 100.0));
    CHECK(cg_ema_decay_at(0.999, 8990) == (float)(8991.0 / 9000.0)); /* 0.999 exactly */
    CHECK(cg_ema_decay_at(0.999, 8991) == 0.999f);
    CHECK(cg_ema_decay_at(0.999, 1000000) == 0.999f);
    CHECK(cg_ema_decay_at(0.5, 3) == (float)(4.0 / 13.0)); /* 0.3077 < 0.5 */
    CHECK(cg_ema_decay_at(0.25, 3) == 0.25f);
    CHECK(cg_ema_decay_at(0.9, 0) == 0.1f);

    /* Three updates by hand: ema 1, params 0 then 2 then -1, decays 0.1, 2/11, 0.5.
     *   after 1: 1 + 0.9 * (0 - 1)        = 0.1
     *   after 2: 0.1 + (9/11) * (2 - 0.1) = 0.1 + 1.5545454... = 1.6545454...
     *   after 3: 1.6545 + 0.5 * (-1 - 1.6545) = 0.3272727... */
    float ema[3] = {1.0f, 1.0f, -4.0f}, p[3];
    const float d[3] = {0.1f, 2.0f / 11.0f, 0.5f};
    const float seq[3][3] = {{0.0f, 1.0f, 4.0f}, {2.0f, 1.0f, 0.0f}, {-1.0f, 1.0f, 8.0f}};
    for (int s = 0; s < 3; s++) {
        memcpy(p, seq[s], sizeof p);
        cg_ema_update(ema, p, 3, d[s]);
    }
    CHECK_NEAR(ema[0], 0.1 + (9.0 / 11.0) * 1.9 + 0.5 * (-1.0 - (0.1 + (9.0 / 11.0) * 1.9)),
               1e-6);
    CHECK_NEAR(ema[0], 18.0 / 55.0, 1e-6); /* 0.32727..., the same by fractions */
    CHECK(ema[1] == 1.0f);                  /* a constant parameter stays put exactly */
    /* -4 -> -4 + 0.9*8 = 3.2 -> 3.2 + (9/11)(-3.2) = 0.581818 -> 0.581818 + 0.5*(8-0.5818) */
    CHECK_NEAR(ema[2], 3.2 * 2.0 / 11.0 + 0.5 * (8.0 - 3.2 * 2.0 / 11.0), 1e-5);

    /* A long run converges on a constant target; decay 0 style copy when d = 0. */
    float x = 0.0f, one = 1.0f;
    for (long t = 1; t <= 20000; t++)
        cg_ema_update(&x, &one, 1, cg_ema_decay_at(0.999, t));
    CHECK_NEAR(x, 1.0, 1e-5);
    float y = 5.0f, seven = 7.0f;
    cg_ema_update(&y, &seven, 1, 0.0f);
    CHECK(y == 7.0f);
    CHECK(cg_ema_default("dcgan") == 0.999 && cg_ema_default("small") == 0.0 &&
          cg_ema_default("seed") == 0.0);
}

/* ---- a whole generator --------------------------------------------------------------- */

static void test_gan_update(void)
{
    cg_gan gan;
    make_gan(&gan, "dcgan"); /* with batch-norm running averages in G's buffer */
    CHECK(gan.ema_g == NULL);
    cg_gan_ema_update(&gan); /* no EMA: nothing happens */
    cg_gan_ema_swap(&gan);
    cg_gan_ema_enable(&gan, 0.999);
    CHECK(gan.ema_g != NULL && gan.ema_decay == 0.999);
    const size_t n = gan.g.n_params;
    CHECK(same_floats(gan.ema_g, gan.g.param, n));
    float *before = malloc(sizeof(float) * n), *raw = malloc(sizeof(float) * n);
    memcpy(before, gan.ema_g, sizeof(float) * n);
    tu_fill_uniform(gan.g.param, n, -1.0f, 1.0f, 77);
    memcpy(raw, gan.g.param, sizeof(float) * n);
    gan.adam_g.t = 1;
    cg_gan_ema_update(&gan);
    const float d = 2.0f / 11.0f;
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += gan.ema_g[i] != before[i] + (1.0f - d) * (raw[i] - before[i]);
    CHECKF(bad == 0, "%ld of %zu EMA entries differ from before + (1-d)(param-before)", bad, n);
    /* Every tensor moved, the batch-norm running averages (non-trainable) included. */
    int bn = 0;
    for (int t = 0; t < gan.g.n_tensors; t++) {
        const cg_tensor *T = &gan.g.tensors[t];
        bn += !T->trainable;
        CHECKF(!same_floats(gan.ema_g + T->offset, before + T->offset, T->count),
               "tensor %s did not move", T->name);
    }
    CHECK(bn == 4);
    CHECK(same_floats(gan.g.param, raw, n)); /* the raw weights are untouched */
    /* Swap twice restores every bit; once exchanges. */
    float *ema = malloc(sizeof(float) * n);
    memcpy(ema, gan.ema_g, sizeof(float) * n);
    cg_gan_ema_swap(&gan);
    CHECK(same_floats(gan.g.param, ema, n) && same_floats(gan.ema_g, raw, n));
    cg_gan_ema_swap(&gan);
    CHECK(same_floats(gan.g.param, raw, n) && same_floats(gan.ema_g, ema, n));
    cg_gan_ema_reset(&gan);
    CHECK(same_floats(gan.ema_g, raw, n));
    free(before), free(raw), free(ema);
    cg_gan_free(&gan);
}

/* ---- checkpoints --------------------------------------------------------------------- */

static void write_ckpt(const cg_gan *gan, const char *dir, long step, char *path, size_t n)
{
    char d[400];
    snprintf(d, sizeof d, "%s/%s", root, dir);
    cg_error e = {{0}};
    if (cg_ckpt_write(d, gan, step, 0, 2, "{\"classes\": \"\"}", path, n, &e)) {
        fprintf(stderr, "cg_ckpt_write: %s\n", e.msg);
        exit(2);
    }
}

static void test_round_trip(char *ck, size_t len)
{
    cg_gan a;
    make_gan(&a, "dcgan");
    tu_fill_gan_state(&a, 100);
    cg_gan_ema_enable(&a, 0.995);
    tu_fill_uniform(a.ema_g, a.g.n_params, -0.2f, 0.2f, 300);
    write_ckpt(&a, "rt", 7, ck, len);

    cg_error e = {{0}};
    cg_ckpt_meta m;
    CHECK(cg_ckpt_read_meta(ck, &m, &e) == 0);
    CHECK(m.has_ema == 1 && m.ema_decay == 0.995);
    cg_ckpt_meta_free(&m);
    CHECKF(cg_ckpt_validate(ck, "dcgan", NULL, &e) == 0, "%s", e.msg);

    /* Into a gan with EMA: everything comes back bit for bit; the decay is the caller's. */
    cg_gan b;
    make_gan(&b, "dcgan");
    cg_gan_ema_enable(&b, 0.9);
    CHECKF(cg_ckpt_load(ck, &b, &m, &e) == 0, "%s", e.msg);
    CHECK(m.has_ema && m.ema_decay == 0.995 && b.ema_decay == 0.9);
    cg_ckpt_meta_free(&m);
    CHECK(same_floats(b.ema_g, a.ema_g, a.g.n_params));
    CHECK(same_floats(b.g.param, a.g.param, a.g.n_params));
    CHECK(same_floats(b.d.param, a.d.param, a.d.n_params));
    CHECK(b.adam_g.t == a.adam_g.t);
    cg_gan_free(&b);

    /* Into a gan without EMA: the EMA is read (checksums) but not kept. */
    make_gan(&b, "dcgan");
    CHECKF(cg_ckpt_load(ck, &b, NULL, &e) == 0, "%s", e.msg);
    CHECK(b.ema_g == NULL && same_floats(b.g.param, a.g.param, a.g.n_params));
    cg_gan_free(&b);

    /* Inference: the EMA generator by default, the raw one on request. */
    cg_gan c;
    CHECKF(cg_gan_open(ck, 8, 1, &c, &m, NULL, &e) == 0, "%s", e.msg);
    CHECK(m.has_ema && same_floats(c.g.param, a.ema_g, a.g.n_params));
    CHECK(same_floats(c.d.param, a.d.param, a.d.n_params));
    cg_ckpt_meta_free(&m);
    cg_gan_free(&c);
    CHECKF(cg_gan_open(ck, 8, 0, &c, &m, NULL, &e) == 0, "%s", e.msg);
    CHECK(same_floats(c.g.param, a.g.param, a.g.n_params));
    CHECK(c.ema_g && same_floats(c.ema_g, a.ema_g, a.g.n_params));
    cg_ckpt_meta_free(&m);
    /* The two generators draw different images. */
    float *za = calloc(8 * 150, sizeof(float)), *x0 = malloc(sizeof(float) * 784 * 4),
          *x1 = malloc(sizeof(float) * 784 * 4);
    cg_generate(&c, 1, 0, 4, NULL, 1.0f, x0, za);
    cg_gan_ema_swap(&c);
    cg_generate(&c, 1, 0, 4, NULL, 1.0f, x1, za);
    CHECK(!same_floats(x0, x1, 784 * 4));
    /* A temperature scales sample i's noise vector and nothing else: the images equal the
     * generator's output for the scaled noise, and differ from temperature 1's. */
    float *x2 = malloc(sizeof(float) * 784 * 4), *x3 = malloc(sizeof(float) * 784 * 4);
    cg_generate(&c, 1, 0, 4, NULL, 1.25f, x2, za);
    cg_rng_normal_fill(za, 4 * 150, 1, cg_stream(CG_RNG_SAMPLE, 1), 0);
    for (int i = 0; i < 4 * 150; i++)
        za[i] *= 1.25f;
    cg_gan_generate(&c, za, NULL, 4, x3);
    CHECK(same_floats(x2, x3, 784 * 4));
    CHECK(!same_floats(x1, x2, 784 * 4));
    free(za), free(x0), free(x1), free(x2), free(x3);
    cg_gan_free(&c);

    /* Checkpoints written without EMA have no /ema group. */
    cg_gan_free(&a);
    make_gan(&a, "small");
    char p[512];
    write_ckpt(&a, "noema", 3, p, sizeof p);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == 0 && m.has_ema == 0 && m.ema_decay == 0.0);
    cg_ckpt_meta_free(&m);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0 && H5Lexists(f, "/ema", H5P_DEFAULT) == 0);
    H5Fclose(f);
    cg_gan_free(&a);
}

/* A checkpoint as every chargan before the EMA wrote it (no /ema; the rest of the layout is
 * unchanged): it loads, and the EMA of a resumed run starts from its raw weights. */
static void test_old_checkpoint(const char *ck)
{
    char old[600], cmd[1300];
    snprintf(old, sizeof old, "%s/old/step-00000007.h5", root);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/old' && cp '%s' '%s'", root, ck, old);
    CHECK(system(cmd) == 0);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(old, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Ldelete(f, "/ema", H5P_DEFAULT) >= 0);
    H5Fclose(f);

    cg_error e = {{0}};
    cg_ckpt_meta m;
    CHECKF(cg_ckpt_validate(old, "dcgan", &m, &e) == 0, "%s", e.msg);
    CHECK(m.has_ema == 0);
    cg_ckpt_meta_free(&m);
    cg_gan g;
    make_gan(&g, "dcgan");
    cg_gan_ema_enable(&g, 0.999);
    tu_fill_uniform(g.ema_g, g.g.n_params, 5.0f, 6.0f, 5); /* must be overwritten */
    CHECKF(cg_ckpt_load(old, &g, &m, &e) == 0, "%s", e.msg);
    CHECK(m.has_ema == 0);
    cg_ckpt_meta_free(&m);
    CHECK(same_floats(g.ema_g, g.g.param, g.g.n_params));
    cg_gan_free(&g);
    /* Inference from it: the raw weights, whatever use_ema says. */
    CHECKF(cg_gan_open(old, 4, 1, &g, &m, NULL, &e) == 0, "%s", e.msg);
    CHECK(g.ema_g == NULL && m.has_ema == 0);
    cg_ckpt_meta_free(&m);
    cg_gan_free(&g);
}

/* Damaged /ema groups are refused with a message naming the problem. */
static void test_refusals(const char *ck)
{
    char p[600], cmd[1300];
    snprintf(p, sizeof p, "%s/bad/step-00000007.h5", root);
    const char *what[] = {"flip", "missing tensor", "missing decay", "bad decay", "no generator"};
    for (int k = 0; k < 5; k++) {
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/bad' && cp '%s' '%s'", root, ck, p);
        CHECK(system(cmd) == 0);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        if (k == 0) {
            /* one byte in the middle of /ema/generator/convt0.kernel's data */
            hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t d = H5Dopen2(f, "/ema/generator/convt0.kernel", H5P_DEFAULT);
            hsize_t off[4], size = 0;
            unsigned mask = 0;
            haddr_t addr = 0;
            hid_t sp = H5Dget_space(d);
            CHECK(H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) >= 0);
            H5Sclose(sp), H5Dclose(d), H5Fclose(f);
            FILE *fp = fopen(p, "r+b");
            CHECK(fp && fseek(fp, (long)(addr + size / 2), SEEK_SET) == 0);
            int ch = fgetc(fp);
            fseek(fp, (long)(addr + size / 2), SEEK_SET);
            fputc(ch ^ 0x40, fp);
            fclose(fp);
        } else {
            hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
            if (k == 1)
                CHECK(H5Ldelete(f, "/ema/generator/bn1.running_var", H5P_DEFAULT) >= 0);
            if (k == 2 || k == 3) {
                hid_t g = H5Gopen2(f, "/ema/generator", H5P_DEFAULT);
                CHECK(H5Adelete(g, "decay") >= 0);
                if (k == 3) {
                    double v = 1.5;
                    hid_t sp = H5Screate(H5S_SCALAR);
                    hid_t a = H5Acreate2(g, "decay", H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                                         H5P_DEFAULT);
                    H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
                    H5Aclose(a), H5Sclose(sp);
                }
                H5Gclose(g);
            }
            if (k == 4)
                CHECK(H5Ldelete(f, "/ema/generator", H5P_DEFAULT) >= 0);
            H5Fclose(f);
        }
        cg_error e = {{0}};
        cg_gan g;
        make_gan(&g, "dcgan");
        cg_gan_ema_enable(&g, 0.999);
        float *keep = malloc(sizeof(float) * g.g.n_params);
        memcpy(keep, g.ema_g, sizeof(float) * g.g.n_params);
        const int lr = cg_ckpt_load(p, &g, NULL, &e);
        CHECKF(lr != 0, "%s: loaded", what[k]);
        CHECKF(strstr(e.msg, p) && strstr(e.msg, k == 4 ? "/ema/generator" : k >= 2 ? "decay"
                                                          : "/ema/generator/"),
               "%s: message '%s'", what[k], e.msg);
        CHECKF(same_floats(keep, g.ema_g, g.g.n_params), "%s: refused load changed the EMA",
               what[k]);
        e.msg[0] = 0;
        CHECKF(cg_ckpt_validate(p, NULL, NULL, &e) != 0, "%s: validated", what[k]);
        printf("ok: %s refused: %s\n", what[k], e.msg);
        free(keep);
        cg_gan_free(&g);
    }
}

int main(void)
{
    snprintf(root, sizeof root, "%s/chargan-ema-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    test_arithmetic();
    test_gan_update();
    char ck[512];
    test_round_trip(ck, sizeof ck);
    test_old_checkpoint(ck);
    test_refusals(ck);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_ema");
}
