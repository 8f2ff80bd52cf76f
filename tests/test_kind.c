/* Model kinds (chargan/kind.h) and their checkpoints: which kind a preset is, a VAE's round
 * trip through a checkpoint (networks, optimizer state and counters under their names), a GAN
 * file without the kind attribute (written before VAEs) still opening as a GAN, a kind
 * attribute that contradicts the model refused, and the GAN wrapper drawing what cg_generate
 * draws. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/ckpt.h"
#include "chargan/data.h"
#include "chargan/generate.h"
#include "chargan/kind.h"
#include "chargan/preset.h"
#include "testutil.h"

static char root[256];

static void test_find(void)
{
    CHECK(cg_kind_find("small") == &cg_kind_gan);
    CHECK(cg_kind_find("deep") == &cg_kind_gan);
    CHECK(cg_kind_find("vae") == &cg_kind_vae);
    CHECK(cg_kind_find("cvae") == &cg_kind_vae);
    CHECK(cg_kind_find("nope") == NULL && cg_kind_find(NULL) == NULL);
    char names[256];
    snprintf(names, sizeof names, "%s, %s", cg_preset_names(), cg_vae_preset_names());
    CHECKF(!strcmp(names, cg_kind_model_names()), "'%s' vs '%s'", names, cg_kind_model_names());
    cg_kind k;
    cg_error e = {{0}};
    const cg_kind_setup s = {"nope", 0, 0, 4, 4, 1, 0.0, NULL};
    CHECK(cg_kind_init(&k, &s, &e) == -1 && strstr(e.msg, "unknown model 'nope'"));
}

/* A model of `model` at batch 8 with weights from seed and a few updates' worth of state. */
static void make(cg_kind *k, const char *model, int n_classes, uint64_t seed)
{
    cg_error e = {{0}};
    const cg_kind_setup s = {model, 0, n_classes, 8, 8, seed, 0.0, NULL};
    if (cg_kind_init(k, &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(2);
    }
    k->ops->init_weights(k);
    for (int i = 0; i < k->n_nets; i++) {
        cg_net *n = k->nets[i].net;
        tu_fill_uniform(n->adam_v, n->n_params, 0.0f, 1.0f, seed + 10 + (uint64_t)i);
        *k->nets[i].opt_t = 7 + i;
    }
}

static int same_state(const cg_kind *a, const cg_kind *b)
{
    int same = a->n_nets == b->n_nets;
    for (int i = 0; same && i < a->n_nets; i++) {
        const cg_net *x = a->nets[i].net, *y = b->nets[i].net;
        const size_t bytes = sizeof(float) * x->n_params;
        same = x->n_params == y->n_params && !memcmp(x->param, y->param, bytes) &&
               !memcmp(x->adam_v, y->adam_v, bytes) && *a->nets[i].opt_t == *b->nets[i].opt_t;
    }
    return same;
}

static void test_vae_round_trip(void)
{
    cg_kind a, b;
    make(&a, "vae", 47, 3);
    make(&b, "vae", 47, 4);
    char dir[300], path[400];
    cg_error e = {{0}};
    snprintf(dir, sizeof dir, "%s/vae", root);
    CHECK(cg_ckpt_write_model(dir, &a, 5, 0, 2, "{\"classes\": \"0123\"}", path, sizeof path,
                              &e) == 0);
    CHECK(!same_state(&a, &b));
    cg_ckpt_meta m;
    CHECKF(cg_ckpt_load_model(path, &b, &m, &e) == 0, "%s", e.msg);
    CHECK(same_state(&a, &b));
    CHECK(!strcmp(m.kind, "vae") && m.noise_dim == 10 && m.n_classes == 47 && m.step == 5);
    CHECK(m.adam_t_g == 7 && m.adam_t_d == 8 && !m.has_ema);
    cg_ckpt_meta_free(&m);
    CHECKF(cg_ckpt_validate(path, "vae", NULL, &e) == 0, "%s", e.msg);
    /* another model, and a GAN reader, refuse it in one line naming the file */
    cg_kind c;
    make(&c, "cvae", 47, 3);
    CHECK(cg_ckpt_load_model(path, &c, NULL, &e) == -1 && strstr(e.msg, path) &&
          strstr(e.msg, "'vae'") && strstr(e.msg, "'cvae'") && !strchr(e.msg, '\n'));
    cg_gan gan;
    CHECK(cg_gan_open(path, 1, 1, &gan, &m, NULL, &e) == -1 && strstr(e.msg, "not of a GAN"));
    /* opening it for inference: the decoder draws images in [0, 1] */
    cg_kind d;
    char classes[CG_GEN_MAX_CLASSES + 1];
    CHECKF(cg_model_open(path, 4, 1, &d, &m, classes, &e) == 0, "%s", e.msg);
    CHECK(same_state(&a, &d) && !strcmp(classes, "0123"));
    float z[4 * 10], img[4 * CG_IMG_PIXELS];
    cg_kind_generate(&d, 1, 0, 4, NULL, 1.0f, img, z);
    int in01 = 1;
    for (int i = 0; i < 4 * CG_IMG_PIXELS; i++)
        in01 &= img[i] >= 0.0f && img[i] <= 1.0f;
    CHECK(in01);
    cg_ckpt_meta_free(&m);
    cg_kind_free(&a), cg_kind_free(&b), cg_kind_free(&c), cg_kind_free(&d);
}

/* Files written before VAEs have no kind attribute: they are GANs. */
static void test_gan_without_kind(void)
{
    cg_kind a, b;
    make(&a, "small", 0, 3);
    make(&b, "small", 0, 4);
    char dir[300], path[400];
    cg_error e = {{0}};
    snprintf(dir, sizeof dir, "%s/gan", root);
    CHECK(cg_ckpt_write_model(dir, &a, 5, 0, 1, NULL, path, sizeof path, &e) == 0);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Adelete(f, "kind") >= 0);
    H5Fclose(f);
    cg_ckpt_meta m;
    CHECKF(cg_ckpt_load_model(path, &b, &m, &e) == 0, "%s", e.msg);
    CHECK(same_state(&a, &b) && !strcmp(m.kind, "gan"));
    cg_ckpt_meta_free(&m);
    /* a kind attribute that contradicts the model is refused */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, 4);
    hid_t at = H5Acreate2(f, "kind", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(at >= 0 && H5Awrite(at, t, "vae") >= 0);
    H5Aclose(at), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
    CHECK(cg_ckpt_read_meta(path, &m, &e) == -1 && strstr(e.msg, "kind") &&
          strstr(e.msg, "'small' is a gan"));
    cg_kind_free(&a), cg_kind_free(&b);
}

/* The GAN wrapper draws exactly what cg_generate draws. */
static void test_gan_wrapper(void)
{
    cg_kind k;
    make(&k, "small", 0, 5);
    float z[8 * 150], a[8 * CG_IMG_PIXELS], b[8 * CG_IMG_PIXELS];
    cg_generate(k.impl, 9, 3, 8, NULL, 0.7f, a, z);
    cg_kind_generate(&k, 9, 3, 8, NULL, 0.7f, b, z);
    CHECK(!memcmp(a, b, sizeof a));
    cg_kind_free(&k);
}

int main(void)
{
    snprintf(root, sizeof root, "%s/chargan-kind-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                             : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    test_find();
    test_vae_round_trip();
    test_gan_without_kind();
    test_gan_wrapper();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_kind");
}
