/* Checkpoint and sample files (src/ckpt.c): round trips, refusals, directory handling and
 * crash safety of writes.
 *
 *   test_ckpt                    the unit tests (ctest), plus the seed model's write time/size
 *   test_ckpt --write-files DIR  writes DIR/ckpt/step-00000003.h5 (model small, with EMA) and
 *                                DIR/samples.h5 (9 samples with labels) for test_ckpt_h5dump.sh
 *   test_ckpt --measure          only the seed model's checkpoint timings */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chargan/ckpt.h"
#include "chargan/ema.h"
#include "chargan/gan.h"
#include "testutil.h"

static char root[256];

/* ---- helpers ------------------------------------------------------------------------- */

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
}

static unsigned char *read_all(const char *p, long *n)
{
    *n = file_size(p);
    if (*n < 0)
        return NULL;
    unsigned char *b = malloc((size_t)*n + 1);
    FILE *f = fopen(p, "rb");
    if (!b || !f || fread(b, 1, (size_t)*n, f) != (size_t)*n) {
        fprintf(stderr, "cannot read %s\n", p);
        exit(2);
    }
    fclose(f);
    return b;
}

static void write_bytes(const char *p, const void *b, long n)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(b, 1, (size_t)n, f) != (size_t)n || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(2);
    }
}

/* Copies the first `limit` bytes of src (all when limit < 0). */
static void copy_file(const char *src, const char *dst, long limit)
{
    long n;
    unsigned char *b = read_all(src, &n);
    write_bytes(dst, b, limit >= 0 && limit < n ? limit : n);
    free(b);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int same_state(const cg_gan *a, const cg_gan *b)
{
    const cg_net *na[2] = {&a->g, &a->d}, *nb[2] = {&b->g, &b->d};
    for (int k = 0; k < 2; k++) {
        const size_t bytes = sizeof(float) * na[k]->n_params;
        if (na[k]->n_params != nb[k]->n_params || memcmp(na[k]->param, nb[k]->param, bytes) ||
            memcmp(na[k]->adam_m, nb[k]->adam_m, bytes) ||
            memcmp(na[k]->adam_v, nb[k]->adam_v, bytes))
            return 0;
    }
    return a->adam_g.t == b->adam_g.t && a->adam_d.t == b->adam_d.t;
}

static int make_gan(cg_gan *gan, const char *model, int noise_dim, uint64_t seed)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    if (noise_dim)
        cfg.noise_dim = noise_dim;
    cfg.global_batch = cfg.local_batch = 4;
    cfg.seed = seed;
    cg_error e = {{0}};
    if (cg_gan_init(gan, &cfg, &e)) {
        fprintf(stderr, "cg_gan_init(%s): %s\n", model, e.msg);
        exit(2);
    }
    cg_gan_init_weights(gan);
    return 0;
}

static void path_in(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", root, rel);
}

/* The message mentions every needle. */
static int mentions(const char *msg, const char *a, const char *b, const char *c)
{
    return (!a || strstr(msg, a)) && (!b || strstr(msg, b)) && (!c || strstr(msg, c));
}

static const char *nz(const char *s) { return s ? s : ""; }

#define CHECK_MSG(e, a, b, c)                                                                \
    CHECKF(mentions((e).msg, a, b, c), "message '%s' lacks '%s' / '%s' / '%s'", (e).msg,      \
           nz(a), nz(b), nz(c))

/* Runs fn with stderr captured into buf. */
static void capture_stderr_begin(int *saved, const char *file)
{
    fflush(stderr);
    *saved = dup(2);
    FILE *f = fopen(file, "w");
    dup2(fileno(f), 2);
    fclose(f);
}

static void capture_stderr_end(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

static int count_dir(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, prefix, strlen(prefix)))
            n++;
    if (d)
        closedir(d);
    return n;
}

/* Opens a file read-write with HDF5 (to damage it in controlled ways). */
static hid_t h5_rw(const char *p)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "cannot open %s read-write\n", p);
        exit(2);
    }
    return f;
}

static void set_int_attr(hid_t obj, const char *name, int v)
{
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void replace_dataset(hid_t f, const char *name, hid_t type, int ndim, const hsize_t *dims)
{
    if (H5Ldelete(f, name, H5P_DEFAULT) < 0) {
        fprintf(stderr, "cannot delete %s\n", name);
        exit(2);
    }
    if (ndim == 0)
        return;
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    double *zero = calloc(n, sizeof(double));
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    free(zero);
    H5Dclose(d);
    H5Sclose(sp);
}

/* File offset of the middle of a dataset's (first) chunk. */
static long chunk_middle(const char *p, const char *name)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hsize_t off[4];
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    hid_t sp = H5Dget_space(d);
    herr_t r = H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size);
    if (r < 0)
        H5Eprint2(H5E_DEFAULT, stderr);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    if (r < 0) {
        fprintf(stderr, "no chunk info for %s in %s\n", name, p);
        exit(2);
    }
    return (long)(addr + size / 2);
}

static void flip_byte(const char *p, long off)
{
    long n;
    unsigned char *b = read_all(p, &n);
    b[off] ^= 0x40;
    write_bytes(p, b, n);
    free(b);
}

static const char *CONFIG =
    "{\"model\": \"small\", \"batch\": 4, \"lr_g\": 1e-05, \"note\": \"quote \\\" and "
    "unicode \xc3\xa9\xe2\x82\xac\"}";

/* ---- tests --------------------------------------------------------------------------- */

static void test_round_trip(const char *ck)
{
    cg_gan a, b;
    make_gan(&a, "small", 0, 42);
    make_gan(&b, "small", 0, 7);
    tu_fill_gan_state(&a, 100);
    char dir[512], path[512], want[600];
    path_in(dir, sizeof dir, "rt/deeper/ck");
    cg_error e = {{0}};
    int r = cg_ckpt_write(dir, &a, 5, 1, 4, CONFIG, path, sizeof path, &e);
    CHECKF(r == 0, "write: %s", e.msg);
    snprintf(want, sizeof want, "%s/step-00000005.h5", dir);
    CHECKF(!strcmp(path, want), "path_out %s", path);
    CHECK(count_dir(dir, ".") == 2); /* only "." and ".." start with '.': no temporary left */
    snprintf((char *)ck, 512, "%s", path);

    CHECK(!same_state(&a, &b));
    cg_ckpt_meta m;
    r = cg_ckpt_load(path, &b, &m, &e);
    CHECKF(r == 0, "load: %s", e.msg);
    CHECK(same_state(&a, &b));
    CHECK(b.adam_g.t == 117 && b.adam_d.t == 123);
    if (r == 0) {
        CHECK(!strcmp(m.model, "small"));
        CHECK(m.step == 5 && m.epoch == 1 && m.seed == 42 && m.world_size == 4);
        CHECK(m.global_batch == 4 && m.noise_dim == 150 && m.n_classes == 0);
        CHECK(m.format_version == 1 && m.adam_t_g == 117 && m.adam_t_d == 123);
        CHECKF(!strcmp(m.config_json, CONFIG), "config '%s'", m.config_json);
        CHECKF(strlen(m.created) == 20 && m.created[10] == 'T' && m.created[19] == 'Z',
               "created '%s'", m.created);
        cg_ckpt_meta_free(&m);
    }
    /* Meta alone, and full validation. */
    r = cg_ckpt_read_meta(path, &m, &e);
    CHECKF(r == 0 && m.step == 5 && !strcmp(m.config_json, CONFIG), "read_meta: %s", e.msg);
    if (r == 0)
        cg_ckpt_meta_free(&m);
    CHECKF(cg_ckpt_validate(path, "small", NULL, &e) == 0, "validate: %s", e.msg);
    CHECKF(cg_ckpt_validate(path, NULL, NULL, &e) == 0, "validate: %s", e.msg);
    CHECK(cg_ckpt_validate(path, "seed", NULL, &e) == -1);
    CHECK_MSG(e, path, "'small'", "'seed'");
    CHECK(cg_h5_file_kind(path, &e) == CG_FILE_CHECKPOINT);
    /* A NULL config, a 200 kB config (beyond HDF5's 64 kB compact attribute limit). */
    char *big = malloc(200001);
    memset(big, 'x', 200000);
    big[0] = '{', big[199999] = '}', big[200000] = 0;
    char dir2[512];
    path_in(dir2, sizeof dir2, "rt/big");
    r = cg_ckpt_write(dir2, &a, 0, 0, 1, big, path, sizeof path, &e);
    CHECKF(r == 0, "write big config: %s", e.msg);
    r = cg_ckpt_read_meta(path, &m, &e);
    CHECKF(r == 0 && !strcmp(m.config_json, big), "big config round trip: %s", e.msg);
    if (r == 0)
        cg_ckpt_meta_free(&m);
    r = cg_ckpt_write(dir2, &a, 1, 0, 1, NULL, path, sizeof path, &e);
    r = r ? r : cg_ckpt_read_meta(path, &m, &e);
    CHECKF(r == 0 && !strcmp(m.config_json, "{}"), "NULL config: %s", e.msg);
    if (r == 0)
        cg_ckpt_meta_free(&m);
    free(big);
    /* Step numbers beyond 8 digits keep all digits. */
    r = cg_ckpt_write(dir2, &a, 123456789, 3, 1, NULL, path, sizeof path, &e);
    CHECKF(r == 0 && strstr(path, "/step-123456789.h5"), "9-digit step: %s %s", path, e.msg);
    /* Invalid arguments. */
    CHECK(cg_ckpt_write(dir2, &a, -1, 0, 1, NULL, NULL, 0, &e) == -1);
    CHECK(cg_ckpt_write("", &a, 1, 0, 1, NULL, NULL, 0, &e) == -1);
    cg_gan_free(&a);
    cg_gan_free(&b);
}

/* Every preset the engine knows, unconditional and conditional (whatever tensors it has:
 * batch-norm running averages, label embeddings): write, load into a fresh gan, compare; a
 * conditional checkpoint is refused by the unconditional gan. */
static void test_all_presets(void)
{
    char names[256];
    snprintf(names, sizeof names, "%s", cg_preset_names());
    int count = 0;
    for (char *tok = strtok(names, ", "); tok; tok = strtok(NULL, ", ")) {
        for (int cond = 0; cond < 2; cond++) {
            cg_gan_config cfg;
            cg_gan_default_config(&cfg);
            snprintf(cfg.model, sizeof cfg.model, "%s", tok);
            cfg.global_batch = cfg.local_batch = 1;
            cfg.n_classes = cond ? 47 : 0;
            cg_gan a, b;
            cg_error e = {{0}};
            if (cg_gan_init(&a, &cfg, &e) || cg_gan_init(&b, &cfg, &e)) {
                CHECKF(0, "preset %s (n_classes %d): %s", tok, cfg.n_classes, e.msg);
                continue;
            }
            tu_fill_gan_state(&a, 900 + (uint64_t)count);
            char dir[512], p[600];
            snprintf(dir, sizeof dir, "%s/presets/%s-%d", root, tok, cond);
            int r = cg_ckpt_write(dir, &a, 11, 2, 3, NULL, p, sizeof p, &e);
            CHECKF(r == 0, "preset %s write: %s", tok, e.msg);
            cg_ckpt_meta m;
            r = r ? r : cg_ckpt_load(p, &b, &m, &e);
            CHECKF(r == 0, "preset %s load: %s", tok, e.msg);
            CHECKF(same_state(&a, &b), "preset %s n_classes %d: state differs", tok,
                   cfg.n_classes);
            if (r == 0) {
                CHECK(m.n_classes == cfg.n_classes && !strcmp(m.model, tok));
                cg_ckpt_meta_free(&m);
            }
            CHECKF(cg_ckpt_validate(p, tok, NULL, &e) == 0, "preset %s validate: %s", tok,
                   e.msg);
            if (cond) {
                cg_gan u;
                cfg.n_classes = 0;
                if (cg_gan_init(&u, &cfg, &e) == 0) {
                    CHECK(cg_ckpt_load(p, &u, NULL, &e) == -1);
                    CHECK_MSG(e, p, "n_classes 47", NULL);
                    cg_gan_free(&u);
                }
            }
            printf("  preset %-6s n_classes %2d: G %zu + D %zu parameters, %d + %d tensors, "
                   "file %.2f MB\n",
                   tok, cond ? 47 : 0, a.g.n_params, a.d.n_params, a.g.n_tensors, a.d.n_tensors,
                   (double)file_size(p) / 1e6);
            cg_gan_free(&a);
            cg_gan_free(&b);
            count++;
        }
    }
    CHECK(count >= 4);
}

static void test_refusals(const char *ck, const char *seed_ck)
{
    cg_gan g;
    make_gan(&g, "small", 0, 9);
    tu_fill_gan_state(&g, 300);
    cg_gan ref;
    make_gan(&ref, "small", 0, 9);
    tu_fill_gan_state(&ref, 300);
    cg_error e = {{0}};
    cg_ckpt_meta m;
    char p[512];
    const long size = file_size(ck);

    /* Truncated copies: every one refused by meta/load/validate, naming the file. */
    const long cuts[] = {0, 7, 8, 100, 1000, 4096, size / 4, size / 2, size - 4096, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(p, sizeof p, "%s/trunc-%ld.h5", root, cuts[i]);
        copy_file(ck, p, cuts[i]);
        int r1 = cg_ckpt_load(p, &g, NULL, &e);
        CHECKF(r1 == -1 && strstr(e.msg, p), "truncated at %ld of %ld: load %d (%s)", cuts[i],
               size, r1, e.msg);
        int r2 = cg_ckpt_validate(p, "small", NULL, &e);
        CHECKF(r2 == -1, "truncated at %ld: validate %d", cuts[i], r2);
        if (i == 0)
            CHECK_MSG(e, p, "empty file", NULL);
        else if (i == 1)
            CHECK_MSG(e, p, "not an HDF5 file", NULL);
        else if (i == 9)
            CHECK_MSG(e, p, "truncated or damaged", NULL);
        if (i == 9)
            printf("  truncated by one byte: %s\n", e.msg);
        unlink(p);
    }

    /* Garbage bytes. */
    snprintf(p, sizeof p, "%s/garbage.h5", root);
    unsigned char junk[20000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(cg_rng_u64(1, 2, i) >> 13);
    write_bytes(p, junk, sizeof junk);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "not an HDF5 file", NULL);
    CHECK(cg_h5_file_kind(p, &e) == -1);
    /* Garbage after a valid HDF5 signature. */
    memcpy(junk, "\x89HDF\r\n\x1a\n", 8);
    write_bytes(p, junk, sizeof junk);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "damaged", NULL);
    printf("  signature + garbage: %s\n", e.msg);
    unlink(p);

    /* Missing file, a directory. */
    snprintf(p, sizeof p, "%s/does-not-exist.h5", root);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "No such file", NULL);
    CHECK(cg_ckpt_read_meta(root, &m, &e) == -1);
    CHECK_MSG(e, root, "directory", NULL);

    /* An HDF5 file that is not a chargan checkpoint. */
    snprintf(p, sizeof p, "%s/foreign.h5", root);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    {
        hsize_t d2[2] = {3, 4};
        hid_t s2 = H5Screate_simple(2, d2, NULL);
        hid_t x = H5Dcreate2(f, "x", H5T_IEEE_F32LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(x);
        H5Sclose(s2);
    }
    H5Fclose(f);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "not a chargan checkpoint", "format");
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK(cg_h5_file_kind(p, &e) == -1);
    CHECK_MSG(e, p, "not a chargan", NULL);
    unlink(p);

    /* Wrong format_version. */
    snprintf(p, sizeof p, "%s/version2.h5", root);
    copy_file(ck, p, -1);
    f = h5_rw(p);
    set_int_attr(f, "format_version", 2);
    H5Fclose(f);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "format_version 2", "version 1");
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    unlink(p);

    /* A missing root attribute. */
    snprintf(p, sizeof p, "%s/nostep.h5", root);
    copy_file(ck, p, -1);
    f = h5_rw(p);
    H5Adelete(f, "step");
    H5Fclose(f);
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "'step'", "missing");
    unlink(p);

    /* Another model's checkpoint. */
    CHECK(cg_ckpt_load(seed_ck, &g, NULL, &e) == -1);
    CHECK_MSG(e, seed_ck, "model 'seed'", "'small'");
    printf("  seed into small: %s\n", e.msg);

    /* Another noise_dim. */
    {
        cg_gan n100;
        make_gan(&n100, "small", 100, 9);
        char dir[512], q[512];
        path_in(dir, sizeof dir, "nd");
        CHECKF(cg_ckpt_write(dir, &n100, 1, 0, 1, NULL, q, sizeof q, &e) == 0, "%s", e.msg);
        CHECK(cg_ckpt_load(q, &g, NULL, &e) == -1);
        CHECK_MSG(e, q, "noise_dim 100", "150");
        CHECKF(cg_ckpt_validate(q, "small", NULL, &e) == 0, "noise 100 validates: %s", e.msg);
        cg_gan_free(&n100);
    }

    /* A tensor of the wrong shape, a missing one, a float64 one, an extra one. */
    const cg_tensor *T = &g.g.tensors[cg_net_find_tensor(&g.g, "dense0.kernel")];
    char want[64];
    snprintf(want, sizeof want, "[%d, %d]", T->dims[0], T->dims[1]);
    snprintf(p, sizeof p, "%s/shape.h5", root);
    copy_file(ck, p, -1);
    f = h5_rw(p);
    hsize_t bad[2] = {10, 10};
    replace_dataset(f, "/generator/dense0.kernel", H5T_IEEE_F32LE, 2, bad);
    H5Fclose(f);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "/generator/dense0.kernel", "[10, 10]");
    CHECK_MSG(e, want, "model 'small'", NULL);
    printf("  wrong shape: %s\n", e.msg);
    CHECK(cg_ckpt_validate(p, NULL, NULL, &e) == -1);
    CHECK_MSG(e, "/generator/dense0.kernel", "[10, 10]", want);

    copy_file(ck, p, -1);
    f = h5_rw(p);
    replace_dataset(f, "/optimizer/discriminator/v/conv1.bias", 0, 0, NULL);
    H5Fclose(f);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "/optimizer/discriminator/v/conv1.bias", "missing");

    copy_file(ck, p, -1);
    f = h5_rw(p);
    hsize_t bd[1] = {(hsize_t)g.d.tensors[cg_net_find_tensor(&g.d, "conv0.bias")].dims[0]};
    replace_dataset(f, "/discriminator/conv0.bias", H5T_IEEE_F64LE, 1, bd);
    H5Fclose(f);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "/discriminator/conv0.bias", "float32");

    copy_file(ck, p, -1);
    f = h5_rw(p);
    hsize_t xd[1] = {3};
    hid_t sp = H5Screate_simple(1, xd, NULL);
    hid_t ds = H5Dcreate2(f, "/generator/extra.kernel", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "extra.kernel", "not a tensor");

    /* The Adam counter missing. */
    copy_file(ck, p, -1);
    f = h5_rw(p);
    hid_t og = H5Gopen2(f, "/optimizer/generator", H5P_DEFAULT);
    H5Adelete(og, "adam_t");
    H5Gclose(og);
    H5Fclose(f);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "adam_t", "missing");

    /* A flipped bit inside a tensor's stored data: the checksum catches it. */
    copy_file(ck, p, -1);
    flip_byte(p, chunk_middle(p, "/optimizer/generator/m/dense0.kernel"));
    CHECK(cg_ckpt_read_meta(p, &m, &e) == 0); /* attributes are intact */
    cg_ckpt_meta_free(&m);
    CHECK(cg_ckpt_load(p, &g, NULL, &e) == -1);
    CHECK_MSG(e, p, "/optimizer/generator/m/dense0.kernel", NULL);
    printf("  flipped data bit: %s\n", e.msg);
    unlink(p);

    /* None of that changed the gan. */
    CHECK(same_state(&g, &ref));
    cg_gan_free(&g);
    cg_gan_free(&ref);
}

static void test_find_latest(const char *ck)
{
    char dir[512], p[600], got[600];
    cg_error e = {{0}};
    cg_gan a;
    make_gan(&a, "small", 0, 42);
    path_in(dir, sizeof dir, "fl");
    for (long s = 1; s <= 3; s++)
        CHECKF(cg_ckpt_write(dir, &a, s, 0, 1, NULL, NULL, 0, &e) == 0, "%s", e.msg);
    /* step 3: damaged data; 4: truncated; 5: garbage; 9: only a temporary; junk names. */
    snprintf(p, sizeof p, "%s/step-00000003.h5", dir);
    flip_byte(p, chunk_middle(p, "/generator/dense0.kernel"));
    snprintf(p, sizeof p, "%s/step-00000004.h5", dir);
    copy_file(ck, p, file_size(ck) - 100);
    snprintf(p, sizeof p, "%s/step-00000005.h5", dir);
    write_bytes(p, "not hdf5 at all", 15);
    snprintf(p, sizeof p, "%s/.step-00000009.h5.tmp", dir);
    copy_file(ck, p, -1);
    snprintf(p, sizeof p, "%s/step-0000000x.h5", dir);
    write_bytes(p, "x", 1);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    write_bytes(p, "x", 1);

    char errf[600];
    snprintf(errf, sizeof errf, "%s/stderr.txt", root);
    int saved;
    capture_stderr_begin(&saved, errf);
    int r = cg_ckpt_find_latest(dir, "small", got, sizeof got, &e);
    capture_stderr_end(saved);
    snprintf(p, sizeof p, "%s/step-00000002.h5", dir);
    CHECKF(r == 1 && !strcmp(got, p), "find_latest %d '%s' (%s)", r, r == 1 ? got : "", e.msg);
    long n;
    char *warn = (char *)read_all(errf, &n);
    warn[n] = 0;
    printf("  find_latest warnings:\n%s", warn);
    int lines = 0;
    for (char *q = warn; (q = strstr(q, "chargan: warning: skipping ")); q++)
        lines++;
    CHECKF(lines == 3, "%d warnings", lines);
    for (int s = 3; s <= 5; s++) {
        snprintf(p, sizeof p, "skipping %s/step-%08d.h5: ", dir, s);
        CHECKF(strstr(warn, p) != NULL, "no warning for step %d", s);
    }
    CHECK(strstr(warn, ".tmp") == NULL);
    free(warn);

    /* Without a model filter the same; with another model: an error, not a skip. */
    capture_stderr_begin(&saved, errf);
    r = cg_ckpt_find_latest(dir, NULL, got, sizeof got, &e);
    CHECK(r == 1);
    r = cg_ckpt_find_latest(dir, "seed", got, sizeof got, &e);
    capture_stderr_end(saved);
    CHECK(r == -1);
    CHECK_MSG(e, dir, "model 'small'", "'seed'"); /* decided on the newest readable meta */
    /* Buffer too small. */
    capture_stderr_begin(&saved, errf);
    r = cg_ckpt_find_latest(dir, "small", got, 10, &e);
    capture_stderr_end(saved);
    CHECK(r == -1);

    /* Missing directory, empty directory, only bad files: none. */
    path_in(p, sizeof p, "fl-missing");
    CHECK(cg_ckpt_find_latest(p, "small", got, sizeof got, &e) == 0);
    path_in(p, sizeof p, "fl-empty");
    mkdir(p, 0755);
    CHECK(cg_ckpt_find_latest(p, "small", got, sizeof got, &e) == 0);
    for (int s = 1; s <= 2; s++) {
        snprintf(p, sizeof p, "%s/step-%08d.h5", dir, s);
        unlink(p);
    }
    capture_stderr_begin(&saved, errf);
    r = cg_ckpt_find_latest(dir, "small", got, sizeof got, &e);
    capture_stderr_end(saved);
    CHECK(r == 0);
    /* A regular file as the directory. */
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    CHECK(cg_ckpt_find_latest(p, "small", got, sizeof got, &e) == -1);
    cg_gan_free(&a);
}

static void test_prune(void)
{
    char dir[512], p[600];
    cg_error e = {{0}};
    cg_gan a;
    make_gan(&a, "small", 0, 42);
    path_in(dir, sizeof dir, "pr");
    for (long s = 1; s <= 5; s++)
        CHECKF(cg_ckpt_write(dir, &a, s * 10, 0, 1, NULL, NULL, 0, &e) == 0, "%s", e.msg);
    snprintf(p, sizeof p, "%s/.step-00000020.h5.tmp", dir);
    write_bytes(p, "x", 1);
    snprintf(p, sizeof p, "%s/.step-00000070.h5.tmp", dir);
    write_bytes(p, "x", 1);
    CHECK(cg_ckpt_prune(dir, 0, &e) == 0);
    CHECK(count_dir(dir, "step-") == 5);
    CHECK(cg_ckpt_prune(dir, 10, &e) == 0);
    int r = cg_ckpt_prune(dir, 2, &e);
    CHECKF(r == 3, "prune returned %d (%s)", r, e.msg);
    CHECK(count_dir(dir, "step-") == 2);
    snprintf(p, sizeof p, "%s/step-00000040.h5", dir);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/step-00000050.h5", dir);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/.step-00000020.h5.tmp", dir);
    CHECK(!exists(p)); /* stale temporary removed */
    snprintf(p, sizeof p, "%s/.step-00000070.h5.tmp", dir);
    CHECK(exists(p)); /* newer than every checkpoint: left alone */
    CHECK(cg_ckpt_prune(dir, 1, &e) == 1);
    CHECK(count_dir(dir, "step-") == 1);
    path_in(p, sizeof p, "pr-missing");
    CHECK(cg_ckpt_prune(p, 1, &e) == 0);
    cg_gan_free(&a);
}

static void test_samples(const char *ck)
{
    enum { N = 7 };
    float *imgs = tu_falloc((size_t)N * 784);
    tu_fill_uniform(imgs, (size_t)N * 784, 0.0f, 1.0f, 55);
    imgs[0] = 0.0f, imgs[1] = 1.0f;
    int32_t labels[N] = {0, 5, 46, 3, 3, 1, 12};
    char p[512];
    cg_error e = {{0}};
    path_in(p, sizeof p, "smp/new/step-00000100.h5");
    int r = cg_samples_write(p, imgs, N, 100, "small", 42, labels, &e);
    CHECKF(r == 0, "samples write: %s", e.msg);
    float *back = NULL;
    int32_t *lb = NULL;
    int n = 0;
    r = cg_samples_read(p, &back, &n, &lb, &e);
    CHECKF(r == 0, "samples read: %s", e.msg);
    if (r == 0) {
        CHECK(n == N);
        CHECK(!memcmp(back, imgs, sizeof(float) * N * 784));
        CHECK(lb && !memcmp(lb, labels, sizeof labels));
        int in_range = 1;
        for (size_t i = 0; i < (size_t)n * 784; i++)
            in_range &= back[i] >= 0.0f && back[i] <= 1.0f;
        CHECK(in_range);
    }
    free(back);
    free(lb);
    cg_samples_meta sm;
    r = cg_samples_read_meta(p, &sm, &e);
    CHECKF(r == 0 && sm.n == N && sm.step == 100 && sm.seed == 42 && !strcmp(sm.model, "small") &&
               sm.has_labels && sm.format_version == 1,
           "samples meta: %s", e.msg);
    CHECK(cg_h5_file_kind(p, &e) == CG_FILE_SAMPLES);
    /* Shape [N,28,28] as HDF5 sees it. */
    {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "/samples", H5P_DEFAULT);
        hid_t sp = H5Dget_space(d);
        hsize_t dims[3] = {0, 0, 0};
        CHECK(H5Sget_simple_extent_ndims(sp) == 3);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        CHECK(dims[0] == N && dims[1] == 28 && dims[2] == 28);
        H5Sclose(sp);
        H5Dclose(d);
        H5Fclose(f);
    }
    /* Without labels; labels not asked for. */
    path_in(p, sizeof p, "smp/nolabels.h5");
    CHECKF(cg_samples_write(p, imgs, 1, 0, "seed", 1, NULL, &e) == 0, "%s", e.msg);
    lb = (int32_t *)1;
    r = cg_samples_read(p, &back, &n, &lb, &e);
    CHECK(r == 0 && n == 1 && lb == NULL);
    free(back);
    r = cg_samples_read(p, &back, &n, NULL, &e);
    CHECK(r == 0 && n == 1);
    free(back);
    /* A relative path (the test runs in tests/; write into the temp dir via chdir). */
    char cwd[1024];
    if (getcwd(cwd, sizeof cwd) && chdir(root) == 0) {
        CHECKF(cg_samples_write("rel.h5", imgs, 2, 0, "seed", 1, NULL, &e) == 0, "%s", e.msg);
        CHECK(exists("rel.h5") && !exists(".rel.h5.tmp"));
        if (chdir(cwd))
            perror("chdir");
    }
    /* Refused: values outside [0,1], NaN, n = 0; checkpoints read as samples and back. */
    path_in(p, sizeof p, "smp/bad.h5");
    imgs[5] = 1.5f;
    CHECK(cg_samples_write(p, imgs, N, 0, "seed", 1, NULL, &e) == -1);
    CHECK_MSG(e, p, "1.5", "[0,1]");
    imgs[5] = NAN;
    CHECK(cg_samples_write(p, imgs, N, 0, "seed", 1, NULL, &e) == -1);
    CHECK(cg_samples_write(p, imgs, 0, 0, "seed", 1, NULL, &e) == -1);
    CHECK(!exists(p));
    CHECK(cg_samples_read(ck, &back, &n, &lb, &e) == -1);
    CHECK_MSG(e, ck, "checkpoint, not a sample file", NULL);
    path_in(p, sizeof p, "smp/new/step-00000100.h5");
    cg_ckpt_meta m;
    CHECK(cg_ckpt_read_meta(p, &m, &e) == -1);
    CHECK_MSG(e, p, "sample file, not a checkpoint", NULL);
    /* A sample file with the wrong shape. */
    path_in(p, sizeof p, "smp/shape.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {3, 784};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "samples", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    CHECK(cg_h5_file_kind(p, &e) == CG_FILE_SAMPLES); /* layout without format attribute */
    CHECK(cg_samples_read(p, &back, &n, &lb, &e) == -1);
    CHECK_MSG(e, p, "[N, 28, 28]", NULL);
    free(imgs);
}

static void test_failed_writes(void)
{
    char dir[512], p[600], q[700];
    cg_error e = {{0}};
    cg_gan a, b;
    make_gan(&a, "small", 0, 42);
    make_gan(&b, "small", 0, 43);
    tu_fill_gan_state(&a, 500);
    tu_fill_gan_state(&b, 600);
    path_in(dir, sizeof dir, "fw");
    char good[600];
    CHECKF(cg_ckpt_write(dir, &a, 7, 0, 1, NULL, good, sizeof good, &e) == 0, "%s", e.msg);
    long n0;
    unsigned char *before = read_all(good, &n0);

    /* A regular file where a directory should be. */
    snprintf(p, sizeof p, "%s/plain", dir);
    write_bytes(p, "x", 1);
    snprintf(q, sizeof q, "%s/plain/sub", dir);
    CHECK(cg_ckpt_write(q, &b, 7, 0, 1, NULL, NULL, 0, &e) == -1);
    CHECK_MSG(e, "plain", "Not a directory", NULL);
    printf("  directory under a file: %s\n", e.msg);
    snprintf(q, sizeof q, "%s/plain/x.h5", dir);
    CHECK(cg_samples_write(q, b.g.param, 1, 0, "small", 1, NULL, &e) == -1);

    /* The disk "fills up" mid-write (RLIMIT_FSIZE: writes beyond 64 kB fail with EFBIG),
     * both for a new step and for the step that already exists. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    setrlimit(RLIMIT_FSIZE, &lim);
    int r7 = cg_ckpt_write(dir, &b, 7, 0, 1, NULL, NULL, 0, &e);
    cg_error e7 = e;
    int r8 = cg_ckpt_write(dir, &b, 8, 0, 1, NULL, NULL, 0, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(r7 == -1 && r8 == -1);
    CHECK_MSG(e7, "step-00000007.h5", "File too large", NULL);
    printf("  disk full: %s\n", e7.msg);
    snprintf(p, sizeof p, "%s/step-00000008.h5", dir);
    CHECK(!exists(p));
    CHECK(count_dir(dir, ".step") == 0);

    /* The temporary's name is taken by a directory. */
    snprintf(p, sizeof p, "%s/.step-00000007.h5.tmp", dir);
    mkdir(p, 0755);
    CHECK(cg_ckpt_write(dir, &b, 7, 0, 1, NULL, NULL, 0, &e) == -1);
    CHECK_MSG(e, "step-00000007.h5", ".step-00000007.h5.tmp", NULL);
    rmdir(p);

    /* The final name is a non-empty directory: the rename fails. */
    snprintf(p, sizeof p, "%s/step-00000009.h5", dir);
    mkdir(p, 0755);
    snprintf(q, sizeof q, "%s/x", p);
    write_bytes(q, "x", 1);
    CHECK(cg_ckpt_write(dir, &b, 9, 0, 1, NULL, NULL, 0, &e) == -1);
    CHECK_MSG(e, "rename", "step-00000009.h5", NULL);
    CHECK(count_dir(dir, ".step") == 0);
    unlink(q);
    rmdir(p);

    /* The good checkpoint is byte-identical and still loads. */
    long n1;
    unsigned char *after = read_all(good, &n1);
    CHECK(n0 == n1 && !memcmp(before, after, (size_t)n0));
    free(before);
    free(after);
    cg_gan c;
    make_gan(&c, "small", 0, 1);
    CHECKF(cg_ckpt_load(good, &c, NULL, &e) == 0, "%s", e.msg);
    CHECK(same_state(&a, &c));
    /* And a successful overwrite of the same step replaces it. */
    CHECKF(cg_ckpt_write(dir, &b, 7, 0, 1, NULL, NULL, 0, &e) == 0, "%s", e.msg);
    CHECKF(cg_ckpt_load(good, &c, NULL, &e) == 0, "%s", e.msg);
    CHECK(same_state(&b, &c));
    cg_gan_free(&a);
    cg_gan_free(&b);
    cg_gan_free(&c);
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The seed model: write time and size; leaves a checkpoint for the refusal tests. */
static void measure_seed(char *out, size_t len)
{
    cg_gan s;
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "seed");
    cfg.global_batch = cfg.local_batch = 1;
    cg_error e = {{0}};
    if (cg_gan_init(&s, &cfg, &e)) {
        fprintf(stderr, "seed gan: %s\n", e.msg);
        exit(2);
    }
    cg_gan_init_weights(&s);
    tu_fill_gan_state(&s, 700);
    char dir[512];
    path_in(dir, sizeof dir, "seed");
    enum { REPS = 3 };
    double w[REPS];
    for (int i = 0; i < REPS; i++) {
        double t0 = cg_now();
        int r = cg_ckpt_write(dir, &s, i + 1, 0, 1, CONFIG, out, len, &e);
        w[i] = cg_now() - t0;
        CHECKF(r == 0, "seed write: %s", e.msg);
    }
    qsort(w, REPS, sizeof w[0], cmp_d);
    double t0 = cg_now();
    int r = cg_ckpt_validate(out, "seed", NULL, &e);
    double tv = cg_now() - t0;
    CHECKF(r == 0, "seed validate: %s", e.msg);
    cg_gan s2;
    if (cg_gan_init(&s2, &cfg, &e)) {
        fprintf(stderr, "seed gan: %s\n", e.msg);
        exit(2);
    }
    t0 = cg_now();
    r = cg_ckpt_load(out, &s2, NULL, &e);
    double tl = cg_now() - t0;
    CHECKF(r == 0, "seed load: %s", e.msg);
    CHECK(same_state(&s, &s2));
    const size_t np = s.g.n_params + s.d.n_params;
    printf("seed checkpoint: G %zu + D %zu parameters (x3 with Adam moments = %.1f MB of "
           "float32); file %.1f MB; write %.0f ms (median of %d, incl. fsync; min %.0f, max "
           "%.0f); load %.0f ms; validate %.0f ms\n",
           s.g.n_params, s.d.n_params, 3.0 * 4.0 * (double)np / 1e6, (double)file_size(out) / 1e6,
           1e3 * w[REPS / 2], REPS, 1e3 * w[0], 1e3 * w[REPS - 1], 1e3 * tl, 1e3 * tv);
    fflush(stdout);
    cg_gan_free(&s);
    cg_gan_free(&s2);
}

static int write_files(const char *dir)
{
    cg_gan a;
    make_gan(&a, "small", 0, 42);
    tu_fill_gan_state(&a, 100);
    cg_gan_ema_enable(&a, 0.999); /* with the optional /ema/generator */
    tu_fill_uniform(a.ema_g, a.g.n_params, -0.3f, 0.3f, 130);
    cg_error e = {{0}};
    char d[1024], p[1100];
    snprintf(d, sizeof d, "%s/ckpt", dir);
    if (cg_ckpt_write(d, &a, 3, 0, 2, CONFIG, p, sizeof p, &e)) {
        fprintf(stderr, "test_ckpt: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", p);
    enum { N = 9 };
    float *imgs = tu_falloc((size_t)N * 784);
    tu_fill_uniform(imgs, (size_t)N * 784, 0.0f, 1.0f, 3);
    int32_t labels[N] = {0, 1, 2, 3, 4, 5, 6, 7, 46};
    snprintf(p, sizeof p, "%s/samples.h5", dir);
    if (cg_samples_write(p, imgs, N, 3, "small", 42, labels, &e)) {
        fprintf(stderr, "test_ckpt: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", p);
    free(imgs);
    /* The expected layout, one dataset a line: "PATH DIM, DIM, ...", for the script. */
    snprintf(p, sizeof p, "%s/expected.txt", dir);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        return 1;
    }
    const cg_net *nets[2] = {&a.g, &a.d};
    for (int k = 0; k < 2; k++) {
        const char *who = k ? "discriminator" : "generator";
        for (int w = 0; w < 3; w++)
            for (int t = 0; t < nets[k]->n_tensors; t++) {
                const cg_tensor *T = &nets[k]->tensors[t];
                if (w == 0)
                    fprintf(f, "/%s/%s ", who, T->name);
                else
                    fprintf(f, "/optimizer/%s/%c/%s ", who, w == 1 ? 'm' : 'v', T->name);
                for (int i = 0; i < T->ndim; i++)
                    fprintf(f, "%s%d", i ? ", " : "", T->dims[i]);
                fprintf(f, "\n");
            }
    }
    for (int t = 0; t < a.g.n_tensors; t++) {
        const cg_tensor *T = &a.g.tensors[t];
        fprintf(f, "/ema/generator/%s ", T->name);
        for (int i = 0; i < T->ndim; i++)
            fprintf(f, "%s%d", i ? ", " : "", T->dims[i]);
        fprintf(f, "\n");
    }
    fclose(f);
    /* An HDF5 file that is not a chargan file. */
    snprintf(p, sizeof p, "%s/foreign.h5", dir);
    hid_t h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {3, 4};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t x = H5Dcreate2(h, "x", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(x);
    H5Sclose(sp);
    H5Fclose(h);
    cg_gan_free(&a);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-files"))
        return write_files(argv[2]);
    snprintf(root, sizeof root, "%s/chargan-ckpt-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                             : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    char seed_ck[512];
    measure_seed(seed_ck, sizeof seed_ck);
    if (argc == 2 && !strcmp(argv[1], "--measure")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        return system(cmd) ? 1 : tu_finish("test_ckpt --measure");
    }
    char ck[512];
    test_round_trip(ck);
    test_all_presets();
    test_refusals(ck, seed_ck);
    test_find_latest(ck);
    test_prune();
    test_samples(ck);
    test_failed_writes();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_ckpt");
}
