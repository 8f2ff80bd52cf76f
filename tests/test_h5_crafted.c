/* Crafted HDF5 files: checkpoints, sample files and classifier files that come from elsewhere
 * (another tool, a damaged copy, a hostile hand) must never crash, hang or silently load. Each
 * case copies a valid file written by chargan's own writers, changes one thing with the HDF5
 * API, and runs every loader of that kind of file on it; the loaders that must refuse it
 * must return -1 with a one-line message naming the file and the object, the others (and
 * every loader on the valid variants, e.g. compressed or big-endian data) must load it.
 *
 * Each case runs in a child process under an alarm, so a crash or a hang is reported as such
 * in its row of the table and the other cases still run.
 *
 *   test_h5_crafted                    every case, one row each
 *   test_h5_crafted --write-files DIR  writes a few crafted files to DIR (the files that
 *                                      test_h5_crafted_cli.sh hands to `chargan info` and
 *                                      `chargan sample`), one NAME.h5 per line of DIR/list.txt
 *                                      as "KIND NAME OBJECT" */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chargan/ckpt.h"
#include "chargan/classifier.h"
#include "chargan/ema.h"
#include "chargan/fid.h"
#include "chargan/gan.h"
#include "chargan/samples.h"
#include "testutil.h"

#define CASE_SECONDS 60 /* a child still running after this is a hang */

static char root[256];
static char base_ck[512], bn_ck[512], base_sm[512], base_clf[512];
static char other_ck[512], other_sm[512], fifo_path[512], raw_path[512];
static cg_gan base_gan; /* what base_ck holds */

/* The tensor most cases replace, and one of each other kind of state. */
#define T_PARAM "/generator/dense0.kernel"
#define T_EMA "/ema/generator/dense0.kernel"
#define T_ADAM_M "/optimizer/discriminator/m/conv0.kernel"
#define T_ADAM_V "/optimizer/generator/v/dense0.bias"
#define T_BN_VAR "/generator/bn0.running_var"
#define CLASSES "0123456789"

/* ---- files ----------------------------------------------------------------------------- */

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "test_h5_crafted: setup failed: %s: %s\n", what, detail);
    exit(2);
}

static void copy_file(const char *src, const char *dst, long limit)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out)
        die("copy", src);
    char buf[65536];
    size_t n;
    long done = 0;
    while ((limit < 0 || done < limit) && (n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (limit >= 0 && done + (long)n > limit)
            n = (size_t)(limit - done);
        if (fwrite(buf, 1, n, out) != n)
            die("copy", dst);
        done += (long)n;
    }
    fclose(in);
    if (fclose(out))
        die("copy", dst);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
}

/* ---- the valid files ------------------------------------------------------------------- */

static void make_gan(cg_gan *gan, const char *model, int noise_dim, int n_classes)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    if (noise_dim)
        cfg.noise_dim = noise_dim;
    cfg.n_classes = n_classes;
    cfg.global_batch = cfg.local_batch = 2;
    cfg.seed = 42;
    cg_error e = {{0}};
    if (cg_gan_init(gan, &cfg, &e))
        die("cg_gan_init", e.msg);
    cg_gan_init_weights(gan);
    cg_gan_ema_enable(gan, 0.999);
}

/* A checkpoint of model/noise_dim/n_classes with every value set, written by cg_ckpt_write. */
static void write_ckpt(cg_gan *gan, const char *model, int noise_dim, int n_classes,
                       const char *sub, char *path)
{
    make_gan(gan, model, noise_dim, n_classes);
    tu_fill_gan_state(gan, 100);
    tu_fill_uniform(gan->ema_g, gan->g.n_params, -0.2f, 0.2f, 777);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, sub);
    char config[128];
    snprintf(config, sizeof config, "{\"model\": \"%s\", \"classes\": \"%s\"}", model,
             n_classes ? CLASSES : "");
    cg_error e = {{0}};
    if (cg_ckpt_write(dir, gan, 3, 1, 2, config, path, 512, &e))
        die("cg_ckpt_write", e.msg);
}

static void write_samples(const char *path)
{
    float img[9 * 784];
    int32_t lab[9];
    tu_fill_uniform(img, 9 * 784, 0.0f, 1.0f, 5);
    for (int i = 0; i < 9; i++)
        lab[i] = i;
    cg_error e = {{0}};
    if (cg_samples_write(path, img, 9, 3, "small", 42, lab, &e))
        die("cg_samples_write", e.msg);
}

static void write_classifier(const char *path)
{
    cg_classifier c;
    cg_error e = {{0}};
    if (cg_classifier_init(&c, 10, CLASSES, 4, 1, &e))
        die("cg_classifier_init", e.msg);
    const int d = CG_CLF_FEATURES;
    cg_gauss_init(&c.heldout, d);
    cg_gauss_init(&c.train, d);
    for (int i = 0; i < d; i++)
        c.heldout.cov[i * d + i] = c.train.cov[i * d + i] = 1.0;
    for (int k = 0; k < 10; k++)
        c.class_counts[k] = 5;
    c.heldout.n = c.train.n = 50;
    c.has_stats = 1;
    if (cg_classifier_save(path, &c, 1, 1, &e))
        die("cg_classifier_save", e.msg);
    cg_classifier_free(&c);
}

/* ---- crafting: HDF5 helpers ------------------------------------------------------------ */

static hid_t cur_file; /* the file being crafted */

static void del(const char *path)
{
    if (H5Ldelete(cur_file, path, H5P_DEFAULT) < 0)
        die("H5Ldelete", path);
}

static hid_t space_of(int ndim, const hsize_t *dims)
{
    return ndim < 0 ? H5Screate(H5S_NULL) : ndim == 0 ? H5Screate(H5S_SCALAR)
                                                       : H5Screate_simple(ndim, dims, NULL);
}

/* Replaces dataset `path` (when it exists) by one of file type ftype and shape ndim/dims
 * (0: scalar, -1: null dataspace) with creation properties dcpl; writes buf (memory type
 * mtype) unless buf is NULL. */
static void put_dset(const char *path, hid_t ftype, int ndim, const hsize_t *dims, hid_t dcpl,
                     hid_t mtype, const void *buf)
{
    if (H5Lexists(cur_file, path, H5P_DEFAULT) > 0)
        del(path);
    hid_t sp = space_of(ndim, dims);
    hid_t d = H5Dcreate2(cur_file, path, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0)
        die("H5Dcreate2", path);
    if (buf && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        die("H5Dwrite", path);
    H5Dclose(d);
    H5Sclose(sp);
}

/* The data and shape of a float dataset of the crafted file (malloc'd). */
static float *get_f32(const char *path, int *ndim, hsize_t *dims, size_t *n)
{
    hid_t d = H5Dopen2(cur_file, path, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    if (sp < 0)
        die("H5Dopen2", path);
    *ndim = H5Sget_simple_extent_dims(sp, dims, NULL);
    *n = (size_t)H5Sget_simple_extent_npoints(sp);
    float *x = malloc(sizeof(float) * (*n ? *n : 1));
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        die("H5Dread", path);
    H5Sclose(sp);
    H5Dclose(d);
    return x;
}

/* Rewrites `path` with the same values as file type ftype, with dcpl. */
static void restore_as(const char *path, hid_t ftype, hid_t dcpl)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    float *x = get_f32(path, &nd, dims, &n);
    put_dset(path, ftype, nd, dims, dcpl, H5T_NATIVE_FLOAT, x);
    free(x);
}

/* Same shape as `path`, another file type, zero-filled data written through mtype. */
static void retype(const char *path, hid_t ftype, hid_t mtype)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(path, &nd, dims, &n));
    void *zero = calloc(n ? n : 1, H5Tget_size(mtype) > 64 ? H5Tget_size(mtype) : 64);
    put_dset(path, ftype, nd, dims, H5P_DEFAULT, mtype, zero);
    free(zero);
}

/* Sets element `at` of float dataset `path` to v. */
static void poke(const char *path, size_t at, float v)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    float *x = get_f32(path, &nd, dims, &n);
    hid_t d = H5Dopen2(cur_file, path, H5P_DEFAULT);
    x[at] = v;
    if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        die("H5Dwrite", path);
    H5Dclose(d);
    free(x);
}

static hid_t chunked(int ndim, const hsize_t *chunk)
{
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(p, ndim, chunk);
    return p;
}

/* Attribute NAME of object opath: replaced by one of type t and shape ndim/dims holding buf. */
static void put_attr(const char *opath, const char *name, hid_t t, int ndim,
                     const hsize_t *dims, const void *buf)
{
    hid_t o = H5Oopen(cur_file, opath, H5P_DEFAULT);
    if (o < 0)
        die("H5Oopen", opath);
    if (H5Aexists(o, name) > 0)
        H5Adelete(o, name);
    hid_t sp = space_of(ndim, dims);
    hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || (buf && H5Awrite(a, t, buf) < 0))
        die("attribute", name);
    H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
}

/* A string attribute: variable length (len 0) or fixed length len with padding pad. */
static void put_str_attr(const char *opath, const char *name, const char *s, size_t len,
                         H5T_str_t pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len ? len : H5T_VARIABLE);
    H5Tset_strpad(t, pad);
    if (len) {
        char *buf = calloc(len, 1);
        memcpy(buf, s, strlen(s) < len ? strlen(s) : len);
        put_attr(opath, name, t, 0, NULL, buf);
        free(buf);
    } else {
        put_attr(opath, name, t, 0, NULL, &s);
    }
    H5Tclose(t);
}

static void put_i64_attr(const char *opath, const char *name, hid_t t, int64_t v)
{
    hid_t mt = H5Tget_sign(t) == H5T_SGN_NONE ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64;
    hid_t a = H5Tcopy(t);
    put_attr(opath, name, a, 0, NULL, NULL);
    hid_t o = H5Oopen(cur_file, opath, H5P_DEFAULT);
    hid_t at = H5Aopen(o, name, H5P_DEFAULT);
    if (H5Awrite(at, mt, &v) < 0)
        die("H5Awrite", name);
    H5Aclose(at);
    H5Oclose(o);
    H5Tclose(a);
}

static void put_f64_attr(const char *opath, const char *name, double v)
{
    put_attr(opath, name, H5T_IEEE_F64LE, 0, NULL, NULL);
    hid_t o = H5Oopen(cur_file, opath, H5P_DEFAULT);
    hid_t at = H5Aopen(o, name, H5P_DEFAULT);
    H5Awrite(at, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(at);
    H5Oclose(o);
}

/* ---- crafting: dataset types ----------------------------------------------------------- */

static void c_int32(void) { retype(T_PARAM, H5T_STD_I32LE, H5T_NATIVE_INT32); }
static void c_float64(void) { retype(T_PARAM, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE); }
static void c_float16(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE); /* a 2-byte float: HDF5 has no predefined half */
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    retype(T_PARAM, t, t);
    H5Tclose(t);
}
static void c_str_fixed(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    retype(T_PARAM, t, t);
    H5Tclose(t);
}
static void c_str_vlen(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(T_PARAM, &nd, dims, &n));
    const char **s = malloc(sizeof(char *) * n);
    for (size_t i = 0; i < n; i++)
        s[i] = "0.5";
    put_dset(T_PARAM, t, nd, dims, H5P_DEFAULT, t, s);
    free(s);
    H5Tclose(t);
}
static void c_compound(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(t, "re", 0, H5T_NATIVE_FLOAT);
    H5Tinsert(t, "im", 4, H5T_NATIVE_FLOAT);
    retype(T_PARAM, t, t);
    H5Tclose(t);
}
static void c_compound4(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, 4); /* one float member: the size of a float */
    H5Tinsert(t, "x", 0, H5T_NATIVE_FLOAT);
    retype(T_PARAM, t, t);
    H5Tclose(t);
}
static void c_array_type(void)
{
    hsize_t two[1] = {2};
    hid_t t = H5Tarray_create2(H5T_NATIVE_FLOAT, 1, two);
    retype(T_PARAM, t, t);
    H5Tclose(t);
}
static void c_vlen_seq(void)
{
    hid_t t = H5Tvlen_create(H5T_NATIVE_FLOAT);
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(T_PARAM, &nd, dims, &n));
    static float one = 0.5f;
    hvl_t *v = malloc(sizeof(hvl_t) * n);
    for (size_t i = 0; i < n; i++)
        v[i] = (hvl_t){1, &one};
    put_dset(T_PARAM, t, nd, dims, H5P_DEFAULT, t, v);
    free(v);
    H5Tclose(t);
}
static void c_opaque(void)
{
    hid_t t = H5Tcreate(H5T_OPAQUE, 4);
    H5Tset_tag(t, "four bytes");
    retype(T_PARAM, t, t);
    H5Tclose(t);
}

/* ---- crafting: dataset shapes ---------------------------------------------------------- */

/* T_PARAM with shape ndim/dims (zeros written unless the shape is empty). */
static void reshape(int ndim, const hsize_t *dims)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    float *z = calloc(n ? n : 1, sizeof(float));
    put_dset(T_PARAM, H5T_IEEE_F32LE, ndim, dims, H5P_DEFAULT, H5T_NATIVE_FLOAT,
             ndim < 0 || n == 0 ? NULL : z);
    free(z);
}
static hsize_t param_dim(int i)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(T_PARAM, &nd, dims, &n));
    return dims[i];
}
static void c_rank1(void)
{
    hsize_t d[1] = {param_dim(0) * param_dim(1)};
    reshape(1, d);
}
static void c_rank3(void)
{
    hsize_t d[3] = {param_dim(0), param_dim(1), 1};
    reshape(3, d);
}
static void c_rank32(void)
{
    hsize_t d[32];
    for (int i = 0; i < 32; i++)
        d[i] = 1;
    reshape(32, d);
}
static void c_too_small(void)
{
    hsize_t d[2] = {param_dim(0), 1};
    reshape(2, d);
}
static void c_too_large(void)
{
    hsize_t d[2] = {param_dim(0) + 1, param_dim(1)};
    reshape(2, d);
}
static void c_zero_size(void)
{
    hsize_t d[2] = {0, param_dim(1)};
    reshape(2, d);
}
static void c_scalar(void) { reshape(0, NULL); }
static void c_null(void) { reshape(-1, NULL); }

/* ---- crafting: storage ----------------------------------------------------------------- */

/* The right shape, chunked, but chunks [0, nwrite) only written (-1: none). */
static void sparse_at(const char *path, int ndim, const hsize_t *dims, const hsize_t *chunk,
                      int rows_written)
{
    hid_t p = chunked(ndim, chunk);
    put_dset(path, H5T_IEEE_F32LE, ndim, dims, p, 0, NULL);
    H5Pclose(p);
    if (rows_written <= 0)
        return;
    hid_t d = H5Dopen2(cur_file, path, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t start[8] = {0}, count[8];
    for (int i = 0; i < ndim; i++)
        count[i] = i ? dims[i] : (hsize_t)rows_written;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(ndim, count, NULL);
    size_t n = (size_t)H5Sget_simple_extent_npoints(ms);
    float *x = calloc(n, sizeof(float));
    H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, x);
    free(x);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
}
static void c_unallocated(void)
{
    hsize_t d[2] = {param_dim(0), param_dim(1)}, ch[2] = {1, param_dim(1)};
    sparse_at(T_PARAM, 2, d, ch, 0);
}
static void c_partial(void)
{
    hsize_t d[2] = {param_dim(0), param_dim(1)}, ch[2] = {1, param_dim(1)};
    sparse_at(T_PARAM, 2, d, ch, 3);
}
/* An extra tensor of 2^62 elements that occupies no space: what a tool that reads it all
 * would allocate (or overflow) for. */
static void c_extra_huge(void)
{
    hsize_t d[2] = {(hsize_t)1 << 31, (hsize_t)1 << 31}, ch[2] = {1, 1024};
    sparse_at("/generator/zz_huge", 2, d, ch, 0);
}
/* T_PARAM with its raw data in file `raw` (external storage). */
static void external_storage(const char *raw)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(T_PARAM, &nd, dims, &n));
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(p, raw, 0, (hsize_t)(n * sizeof(float)));
    put_dset(T_PARAM, H5T_IEEE_F32LE, nd, dims, p, 0, NULL);
    H5Pclose(p);
}
static void c_external_storage(void) { external_storage(raw_path); }
static void c_external_storage_fifo(void) { external_storage(fifo_path); }
/* T_PARAM as a virtual dataset mapping T_PARAM of file src. */
static void virtual_of(const char *src)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    free(get_f32(T_PARAM, &nd, dims, &n));
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    hid_t vs = H5Screate_simple(nd, dims, NULL), ss = H5Screate_simple(nd, dims, NULL);
    if (H5Pset_virtual(p, vs, src, T_PARAM, ss) < 0)
        die("H5Pset_virtual", src);
    put_dset(T_PARAM, H5T_IEEE_F32LE, nd, dims, p, 0, NULL);
    H5Sclose(vs);
    H5Sclose(ss);
    H5Pclose(p);
}
static void c_virtual(void) { virtual_of(other_ck); }
static void c_virtual_fifo(void) { virtual_of(fifo_path); }

/* A filter this HDF5 has only while the file is written: it is unregistered afterwards. */
#define TEST_FILTER 32123
static size_t pass_filter(unsigned flags, size_t nelmts, const unsigned cd[], size_t nbytes,
                          size_t *buf_size, void **buf)
{
    (void)flags, (void)nelmts, (void)cd, (void)buf_size, (void)buf;
    return nbytes;
}
static void c_missing_filter(void)
{
    const H5Z_class2_t cls = {H5Z_CLASS_T_VERS, TEST_FILTER, 1, 1, "chargan-test-filter",
                              NULL, NULL, pass_filter};
    H5Zregister(&cls);
    hsize_t ch[2] = {1, param_dim(1)};
    hid_t p = chunked(2, ch);
    if (H5Pset_filter(p, TEST_FILTER, H5Z_FLAG_MANDATORY, 0, NULL) < 0)
        die("H5Pset_filter", "test filter");
    restore_as(T_PARAM, H5T_IEEE_F32LE, p);
    H5Pclose(p);
    H5Fflush(cur_file, H5F_SCOPE_GLOBAL);
}
static void after_missing_filter(void) { H5Zunregister(TEST_FILTER); }

/* Valid variants: the same values stored otherwise. */
static void c_gzip(void)
{
    hsize_t ch[2] = {7, 5};
    hid_t p = chunked(2, ch);
    H5Pset_shuffle(p);
    H5Pset_deflate(p, 6);
    restore_as(T_PARAM, H5T_IEEE_F32LE, p);
    H5Pclose(p);
}
static void c_contiguous(void) { restore_as(T_PARAM, H5T_IEEE_F32LE, H5P_DEFAULT); }
static void c_big_endian(void) { restore_as(T_PARAM, H5T_IEEE_F32BE, H5P_DEFAULT); }
static void c_compact(void)
{
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(p, H5D_COMPACT);
    restore_as("/discriminator/conv0.bias", H5T_IEEE_F32LE, p);
    H5Pclose(p);
}

/* ---- crafting: values ------------------------------------------------------------------ */

static void c_nan_param(void) { poke(T_PARAM, 7, NAN); }
static void c_inf_ema(void) { poke(T_EMA, 3, INFINITY); }
static void c_ninf_adam_m(void) { poke(T_ADAM_M, 0, -INFINITY); }
static void c_nan_adam_v(void) { poke(T_ADAM_V, 1, NAN); }
static void c_nan_bn_var(void) { poke(T_BN_VAR, 2, NAN); }

/* ---- crafting: links ------------------------------------------------------------------- */

static void soft(const char *path, const char *target)
{
    del(path);
    if (H5Lcreate_soft(target, cur_file, path, H5P_DEFAULT, H5P_DEFAULT) < 0)
        die("H5Lcreate_soft", path);
}
static void ext(const char *path, const char *file, const char *target)
{
    del(path);
    if (H5Lcreate_external(file, target, cur_file, path, H5P_DEFAULT, H5P_DEFAULT) < 0)
        die("H5Lcreate_external", path);
}
static void c_soft_dset(void) { soft(T_PARAM, T_EMA); }
static void c_soft_dangling(void) { soft(T_PARAM, "/nowhere"); }
static void c_soft_group(void) { soft("/ema/generator", "/generator"); }
static void c_soft_loop(void) { soft("/discriminator", "/discriminator"); }
static void c_ext_dset(void) { ext(T_PARAM, other_ck, T_PARAM); }
static void c_ext_group(void) { ext("/discriminator", other_ck, "/discriminator"); }
static void c_ext_missing(void) { ext("/discriminator", "/nonexistent/x.h5", "/discriminator"); }
static void c_ext_fifo(void) { ext("/optimizer/generator", fifo_path, "/x"); }
static void c_ext_self(void) { ext(T_PARAM, base_ck, T_PARAM); }

static void c_group_for_dset(void)
{
    del(T_PARAM);
    H5Gclose(H5Gcreate2(cur_file, T_PARAM, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
}
static void c_dset_for_group(void)
{
    int nd;
    hsize_t dims[8];
    size_t n;
    float *x = get_f32(T_PARAM, &nd, dims, &n);
    del("/optimizer/generator/m");
    put_dset("/optimizer/generator/m", H5T_IEEE_F32LE, nd, dims, H5P_DEFAULT,
             H5T_NATIVE_FLOAT, x);
    free(x);
}
static void c_dset_for_ema(void)
{
    del("/ema");
    hsize_t one[1] = {1};
    float z = 0.0f;
    put_dset("/ema", H5T_IEEE_F32LE, 1, one, H5P_DEFAULT, H5T_NATIVE_FLOAT, &z);
}
static void c_datatype_for_dset(void)
{
    del(T_PARAM);
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tcommit2(cur_file, T_PARAM, t, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Tclose(t);
}
static void c_hard_other_tensor(void)
{
    del(T_PARAM);
    H5Lcreate_hard(cur_file, "/generator/dense0.bias", cur_file, T_PARAM, H5P_DEFAULT,
                   H5P_DEFAULT);
}

/* ---- crafting: attributes -------------------------------------------------------------- */

static void c_step_string(void) { put_str_attr("/", "step", "3", 0, H5T_STR_NULLTERM); }
static void c_step_double(void) { put_f64_attr("/", "step", 3.0); }
static void c_step_array(void)
{
    hsize_t two[1] = {2};
    int64_t v[2] = {3, 4};
    put_attr("/", "step", H5T_NATIVE_INT64, 1, two, v);
}
static void c_step_null(void) { put_attr("/", "step", H5T_NATIVE_INT64, -1, NULL, NULL); }
static void c_step_arraytype(void)
{
    hsize_t one[1] = {1};
    hid_t t = H5Tarray_create2(H5T_NATIVE_INT64, 1, one);
    int64_t v = 3;
    put_attr("/", "step", t, 0, NULL, &v);
    H5Tclose(t);
}
static void c_step_u64_huge(void)
{
    put_i64_attr("/", "step", H5T_STD_U64LE, (int64_t)(((uint64_t)1 << 63) + 5));
}
static void c_step_absurd(void) { put_i64_attr("/", "step", H5T_STD_I64LE, (int64_t)1 << 62); }
static void c_noise_huge(void)
{
    put_i64_attr("/", "noise_dim", H5T_STD_I64LE, (int64_t)1 << 40);
}
static void c_noise_big(void) { put_i64_attr("/", "noise_dim", H5T_STD_I32LE, 2000000000); }
static void c_classes_big(void) { put_i64_attr("/", "n_classes", H5T_STD_I32LE, 100000); }
static void c_seed_negative(void) { put_i64_attr("/", "seed", H5T_STD_I64LE, -5); }
static void c_adam_t_string(void)
{
    put_str_attr("/optimizer/generator", "adam_t", "117", 0, H5T_STR_NULLTERM);
}
static void c_adam_t_huge(void)
{
    put_i64_attr("/optimizer/discriminator", "adam_t", H5T_STD_I64LE, INT64_MAX);
}
static void c_decay_string(void)
{
    put_str_attr("/ema/generator", "decay", "0.999", 0, H5T_STR_NULLTERM);
}
static void c_decay_nan(void) { put_f64_attr("/ema/generator", "decay", NAN); }
static void c_model_int(void) { put_i64_attr("/", "model", H5T_STD_I32LE, 4); }
static void c_model_vlen_seq(void)
{
    hid_t t = H5Tvlen_create(H5T_NATIVE_CHAR);
    hvl_t v = {5, (void *)"small"};
    put_attr("/", "model", t, 0, NULL, &v);
    H5Tclose(t);
}
static void c_model_newline(void) { put_str_attr("/", "model", "sm\nall", 0, H5T_STR_NULLTERM); }
static void c_model_long(void)
{
    put_str_attr("/", "model", "smallsmallsmallsmallsmallsmall", 0, H5T_STR_NULLTERM);
}
static void c_model_fixed(void) { put_str_attr("/", "model", "small", 5, H5T_STR_NULLPAD); }
static void c_model_fixed_pad(void)
{
    put_str_attr("/", "model", "small", 40, H5T_STR_NULLTERM);
}
static void c_model_ascii(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_ASCII);
    const char *s = "small";
    put_attr("/", "model", t, 0, NULL, &s);
    H5Tclose(t);
}
/* The largest string an attribute of this file format holds (an object header message is
 * at most 64 KiB). */
#define BIG_STR 60000
static char *big_string(char fill, const char *head)
{
    char *s = malloc(BIG_STR + 1);
    memset(s, fill, BIG_STR);
    s[BIG_STR] = 0;
    memcpy(s, head, strlen(head));
    return s;
}
static void c_format_huge(void)
{
    char *s = big_string('x', "chargan-");
    put_str_attr("/", "format", s, BIG_STR, H5T_STR_NULLPAD);
    free(s);
}
static void c_format_int(void) { put_i64_attr("/", "format", H5T_STD_I32LE, 1); }
static void c_format_version_string(void)
{
    put_str_attr("/", "format_version", "1", 0, H5T_STR_NULLTERM);
}
static void c_format_newline(void)
{
    put_str_attr("/", "format", "chargan\ncheckpoint", 0, H5T_STR_NULLTERM);
}
static void c_config_not_json(void)
{
    put_str_attr("/", "config", "{\"model\": \"small\", oops", 0, H5T_STR_NULLTERM);
}
static void c_config_array(void) { put_str_attr("/", "config", "[1, 2]", 0, H5T_STR_NULLTERM); }
static void c_config_int(void) { put_i64_attr("/", "config", H5T_STD_I32LE, 7); }
static void c_config_types(void)
{
    put_str_attr("/", "config", "{\"model\": 5, \"classes\": 12, \"batch\": \"many\"}", 0,
                 H5T_STR_NULLTERM);
}
static void c_config_huge_fixed(void)
{
    char *s = big_string(' ', "{\"classes\": \"" CLASSES "\"}");
    put_str_attr("/", "config", s, BIG_STR, H5T_STR_SPACEPAD);
    free(s);
}
static void c_config_huge_garbage(void)
{
    char *s = big_string('#', "{");
    put_str_attr("/", "config", s, BIG_STR, H5T_STR_NULLPAD);
    free(s);
}
static void c_created_int(void) { put_i64_attr("/", "created", H5T_STD_I64LE, 17); }
static void c_stack_array(void)
{
    hsize_t two[1] = {2};
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    put_attr("/", "chargan_version", t, 1, two, "1.0\0002.0");
    H5Tclose(t);
}

/* ---- crafting: whole files ------------------------------------------------------------- */

static void f_text(const char *p)
{
    FILE *f = fopen(p, "w");
    fputs("{\"model\": \"small\"}\n", f);
    fclose(f);
}
static void f_truncated(const char *p) { truncate(p, file_size(p) / 2); }
static void f_empty(const char *p) { truncate(p, 0); }
static void f_fifo(const char *p)
{
    unlink(p);
    if (mkfifo(p, 0644))
        die("mkfifo", p);
}

/* ---- crafting: sample files ------------------------------------------------------------ */

static void s_retype(hid_t ft, hid_t mt) { retype("/samples", ft, mt); }
static void s_int32(void) { s_retype(H5T_STD_I32LE, H5T_NATIVE_INT32); }
static void s_string(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    s_retype(t, t);
    H5Tclose(t);
}
static void s_compound(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, 4);
    H5Tinsert(t, "x", 0, H5T_NATIVE_FLOAT);
    s_retype(t, t);
    H5Tclose(t);
}
static void s_shape(int ndim, hsize_t d0, hsize_t d1, hsize_t d2)
{
    const hsize_t d[3] = {d0, d1, d2};
    size_t n = ndim > 0 ? (size_t)(d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1)) : 1;
    float *z = calloc(n ? n : 1, sizeof(float));
    put_dset("/samples", H5T_IEEE_F32LE, ndim, d, H5P_DEFAULT, H5T_NATIVE_FLOAT,
             ndim < 0 || n == 0 ? NULL : z);
    free(z);
}
static void s_rank2(void) { s_shape(2, 9, 784, 0); }
static void s_zero(void) { s_shape(3, 0, 28, 28); }
static void s_scalar(void) { s_shape(0, 0, 0, 0); }
static void s_null(void) { s_shape(-1, 0, 0, 0); }
static void s_wide(void) { s_shape(3, 9, 28, 29); }
static void s_sparse(void)
{
    hsize_t d[3] = {100000, 28, 28}, ch[3] = {256, 28, 28};
    sparse_at("/samples", 3, d, ch, 9);
    del("/labels");
}
static void s_labels_u32(void) { retype("/labels", H5T_STD_U32LE, H5T_NATIVE_UINT32); }
static void s_labels_float(void) { retype("/labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT); }
static void s_labels_short(void)
{
    hsize_t d[1] = {8};
    int32_t z[8] = {0};
    put_dset("/labels", H5T_STD_I32LE, 1, d, H5P_DEFAULT, H5T_NATIVE_INT32, z);
}
static void s_soft(void)
{
    H5Lcreate_hard(cur_file, "/samples", cur_file, "/real", H5P_DEFAULT, H5P_DEFAULT);
    soft("/samples", "/real");
}
static void s_ext(void) { ext("/samples", other_sm, "/samples"); }
static void s_ext_fifo(void) { ext("/labels", fifo_path, "/labels"); }
static void s_group(void)
{
    del("/samples");
    H5Gclose(H5Gcreate2(cur_file, "/samples", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
}
static void s_external_storage(void)
{
    hsize_t d[3] = {9, 28, 28};
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(p, raw_path, 0, 9 * 784 * sizeof(float));
    put_dset("/samples", H5T_IEEE_F32LE, 3, d, p, 0, NULL);
    H5Pclose(p);
}
static void s_gzip(void)
{
    hsize_t ch[3] = {2, 28, 28};
    hid_t p = chunked(3, ch);
    H5Pset_deflate(p, 4);
    restore_as("/samples", H5T_IEEE_F32LE, p);
    H5Pclose(p);
}
static void s_step_string(void) { put_str_attr("/", "step", "3", 0, H5T_STR_NULLTERM); }
static void s_model_int(void) { put_i64_attr("/", "model", H5T_STD_I32LE, 4); }
static void s_model_huge(void)
{
    char *s = big_string('m', "small");
    put_str_attr("/", "model", s, BIG_STR, H5T_STR_NULLPAD);
    free(s);
}
static void s_format_int(void) { put_i64_attr("/", "format", H5T_STD_I32LE, 1); }

/* ---- crafting: classifier files -------------------------------------------------------- */

static void k_nan_weight(void) { poke("/weights/dense0.kernel", 5, NAN); }
static void k_inf_cov(void)
{
    hid_t d = H5Dopen2(cur_file, "/stats/heldout_cov", H5P_DEFAULT);
    double *x = calloc(128 * 128, sizeof(double));
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    x[129] = INFINITY;
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    free(x);
}
static void k_soft(void) { soft("/weights/dense0.bias", "/weights/dense1.bias"); }
static void k_ext(void) { ext("/weights", base_clf, "/weights"); }
static void k_weights_dset(void)
{
    del("/weights");
    hsize_t one[1] = {1};
    float z = 0.0f;
    put_dset("/weights", H5T_IEEE_F32LE, 1, one, H5P_DEFAULT, H5T_NATIVE_FLOAT, &z);
}
static void k_nclasses_string(void)
{
    put_str_attr("/", "n_classes", "10", 0, H5T_STR_NULLTERM);
}
static void k_classes_int(void) { put_i64_attr("/", "classes", H5T_STD_I32LE, 10); }
static void k_format_int(void) { put_i64_attr("/", "format", H5T_STD_I32LE, 1); }
static void k_counts_u64(void)
{
    retype("/stats/heldout_class_counts", H5T_STD_U64LE, H5T_NATIVE_UINT64);
}
static void k_mean_short(void)
{
    hsize_t d[1] = {64};
    double z[64] = {0};
    put_dset("/stats/train_mean", H5T_IEEE_F64LE, 1, d, H5P_DEFAULT, H5T_NATIVE_DOUBLE, z);
}
static void k_counts_unallocated(void)
{
    hsize_t d[1] = {10};
    hid_t p = chunked(1, d);
    put_dset("/stats/heldout_class_counts", H5T_STD_I64LE, 1, d, p, 0, NULL);
    H5Pclose(p);
}

/* ---- the cases ------------------------------------------------------------------------- */

typedef enum { K_CKPT, K_BN, K_SAMPLES, K_CLF } file_kind;

/* The loaders of each kind of file; a case names those that must refuse it. */
enum {
    L_META = 1,     /* cg_ckpt_read_meta */
    L_VALIDATE = 2, /* cg_ckpt_validate */
    L_LOAD = 4,     /* cg_ckpt_load into a built gan */
    L_OPEN = 8,     /* cg_gan_open (sample, write, eval, compare) */
    L_KIND = 16,    /* cg_h5_file_kind (info) */
    L_SMETA = 32,   /* cg_samples_read_meta */
    L_SREAD = 64,   /* cg_samples_read */
    L_CLF = 128,    /* cg_classifier_load */
};
#define L_DATA (L_VALIDATE | L_LOAD | L_OPEN)
#define L_ATTR (L_META | L_DATA)
#define L_FILE (L_ATTR | L_KIND)
#define L_SAMPLES (L_SMETA | L_SREAD)
#define L_CONFIG (L_VALIDATE | L_OPEN) /* read_meta returns the configuration as stored */

typedef struct {
    const char *name;
    file_kind kind;
    void (*craft)(void);             /* changes the open copy (cur_file) */
    void (*craft_file)(const char *); /* or the file itself */
    int refuse;                       /* loaders that must refuse it (0: a valid variant) */
    const char *object;               /* what the message must name besides the file */
} crafted;

static const crafted cases[] = {
    /* datasets of the right name but another type */
    {"dset-int32", K_CKPT, c_int32, NULL, L_DATA, T_PARAM},
    {"dset-float64", K_CKPT, c_float64, NULL, L_DATA, T_PARAM},
    {"dset-float16", K_CKPT, c_float16, NULL, L_DATA, T_PARAM},
    {"dset-string-fixed", K_CKPT, c_str_fixed, NULL, L_DATA, T_PARAM},
    {"dset-string-vlen", K_CKPT, c_str_vlen, NULL, L_DATA, T_PARAM},
    {"dset-compound", K_CKPT, c_compound, NULL, L_DATA, T_PARAM},
    {"dset-compound-4-bytes", K_CKPT, c_compound4, NULL, L_DATA, T_PARAM},
    {"dset-array-type", K_CKPT, c_array_type, NULL, L_DATA, T_PARAM},
    {"dset-vlen-sequence", K_CKPT, c_vlen_seq, NULL, L_DATA, T_PARAM},
    {"dset-opaque-4-bytes", K_CKPT, c_opaque, NULL, L_DATA, T_PARAM},
    /* ...or another rank or size */
    {"dset-rank1", K_CKPT, c_rank1, NULL, L_DATA, T_PARAM},
    {"dset-rank3", K_CKPT, c_rank3, NULL, L_DATA, T_PARAM},
    {"dset-rank32", K_CKPT, c_rank32, NULL, L_DATA, T_PARAM},
    {"dset-too-small", K_CKPT, c_too_small, NULL, L_DATA, T_PARAM},
    {"dset-too-large", K_CKPT, c_too_large, NULL, L_DATA, T_PARAM},
    {"dset-zero-size", K_CKPT, c_zero_size, NULL, L_DATA, T_PARAM},
    {"dset-scalar", K_CKPT, c_scalar, NULL, L_DATA, T_PARAM},
    {"dset-null-dataspace", K_CKPT, c_null, NULL, L_DATA, T_PARAM},
    /* ...or stored where it cannot be read, or not stored at all */
    {"dset-unallocated", K_CKPT, c_unallocated, NULL, L_DATA, T_PARAM},
    {"dset-partly-written", K_CKPT, c_partial, NULL, L_DATA, T_PARAM},
    {"dset-extra-huge-sparse", K_CKPT, c_extra_huge, NULL, L_DATA, "zz_huge"},
    {"dset-external-storage", K_CKPT, c_external_storage, NULL, L_DATA, T_PARAM},
    {"dset-external-storage-fifo", K_CKPT, c_external_storage_fifo, NULL, L_DATA, T_PARAM},
    {"dset-virtual", K_CKPT, c_virtual, NULL, L_DATA, T_PARAM},
    {"dset-virtual-fifo", K_CKPT, c_virtual_fifo, NULL, L_DATA, T_PARAM},
    {"dset-missing-filter", K_CKPT, c_missing_filter, NULL, L_DATA, T_PARAM},
    /* valid variants: the same values, stored otherwise */
    {"ok-gzip-shuffle-chunks", K_CKPT, c_gzip, NULL, 0, NULL},
    {"ok-contiguous", K_CKPT, c_contiguous, NULL, 0, NULL},
    {"ok-compact", K_CKPT, c_compact, NULL, 0, NULL},
    {"ok-big-endian", K_CKPT, c_big_endian, NULL, 0, NULL},
    {"ok-model-fixed-nullpad", K_CKPT, c_model_fixed, NULL, 0, NULL},
    {"ok-model-fixed-nullterm-40", K_CKPT, c_model_fixed_pad, NULL, 0, NULL},
    {"ok-model-vlen-ascii", K_CKPT, c_model_ascii, NULL, 0, NULL},
    {"ok-config-huge-fixed", K_CKPT, c_config_huge_fixed, NULL, 0, NULL},
    /* values no run writes */
    {"nan-param", K_CKPT, c_nan_param, NULL, L_DATA, T_PARAM "[0, 7]"},
    {"inf-ema", K_CKPT, c_inf_ema, NULL, L_DATA, T_EMA "[0, 3]"},
    {"-inf-adam-m", K_CKPT, c_ninf_adam_m, NULL, L_DATA, T_ADAM_M "[0, 0, 0, 0]"},
    {"nan-adam-v", K_CKPT, c_nan_adam_v, NULL, L_DATA, T_ADAM_V "[1]"},
    {"nan-bn-running-var", K_BN, c_nan_bn_var, NULL, L_DATA, T_BN_VAR "[2]"},
    /* links in place of datasets and groups */
    {"link-soft-dataset", K_CKPT, c_soft_dset, NULL, L_DATA, T_PARAM},
    {"link-soft-dangling", K_CKPT, c_soft_dangling, NULL, L_DATA, T_PARAM},
    {"link-soft-group", K_CKPT, c_soft_group, NULL, L_ATTR, "/ema/generator"},
    {"link-soft-loop", K_CKPT, c_soft_loop, NULL, L_DATA, "/discriminator"},
    {"link-external-dataset", K_CKPT, c_ext_dset, NULL, L_DATA, T_PARAM},
    {"link-external-group", K_CKPT, c_ext_group, NULL, L_DATA, "/discriminator"},
    {"link-external-missing", K_CKPT, c_ext_missing, NULL, L_DATA, "/discriminator"},
    {"link-external-fifo", K_CKPT, c_ext_fifo, NULL, L_ATTR, "/optimizer/generator"},
    {"link-external-self", K_CKPT, c_ext_self, NULL, L_DATA, T_PARAM},
    {"hard-group-for-dataset", K_CKPT, c_group_for_dset, NULL, L_DATA, T_PARAM},
    {"hard-dataset-for-group", K_CKPT, c_dset_for_group, NULL, L_DATA, "/optimizer/generator/m"},
    {"hard-dataset-for-ema", K_CKPT, c_dset_for_ema, NULL, L_ATTR, "/ema"},
    {"hard-datatype-for-dataset", K_CKPT, c_datatype_for_dset, NULL, L_DATA, T_PARAM},
    {"hard-other-tensor", K_CKPT, c_hard_other_tensor, NULL, L_DATA, T_PARAM},
    /* attributes of the wrong type, shape or value */
    {"attr-step-string", K_CKPT, c_step_string, NULL, L_ATTR, "'step'"},
    {"attr-step-double", K_CKPT, c_step_double, NULL, L_ATTR, "'step'"},
    {"attr-step-array", K_CKPT, c_step_array, NULL, L_ATTR, "'step'"},
    {"attr-step-null", K_CKPT, c_step_null, NULL, L_ATTR, "'step'"},
    {"attr-step-array-type", K_CKPT, c_step_arraytype, NULL, L_ATTR, "'step'"},
    {"attr-step-uint64-2^63", K_CKPT, c_step_u64_huge, NULL, L_ATTR, "'step'"},
    {"attr-step-2^62", K_CKPT, c_step_absurd, NULL, L_ATTR, "step"},
    {"attr-noise_dim-int64-2^40", K_CKPT, c_noise_huge, NULL, L_ATTR, "noise_dim"},
    {"attr-noise_dim-2e9", K_CKPT, c_noise_big, NULL, L_ATTR, "noise_dim"},
    {"attr-n_classes-100000", K_CKPT, c_classes_big, NULL, L_ATTR, "n_classes"},
    {"attr-seed-negative-int64", K_CKPT, c_seed_negative, NULL, L_ATTR, "'seed'"},
    {"attr-adam_t-string", K_CKPT, c_adam_t_string, NULL, L_ATTR, "adam_t"},
    {"attr-adam_t-int64-max", K_CKPT, c_adam_t_huge, NULL, L_ATTR, "adam_t"},
    {"attr-decay-string", K_CKPT, c_decay_string, NULL, L_ATTR, "'decay'"},
    {"attr-decay-nan", K_CKPT, c_decay_nan, NULL, L_ATTR, "decay"},
    {"attr-model-int", K_CKPT, c_model_int, NULL, L_ATTR, "'model'"},
    {"attr-model-vlen-sequence", K_CKPT, c_model_vlen_seq, NULL, L_ATTR, "'model'"},
    {"attr-model-newline", K_CKPT, c_model_newline, NULL, L_ATTR, "model"},
    {"attr-model-too-long", K_CKPT, c_model_long, NULL, L_ATTR, "model"},
    {"attr-format-int", K_CKPT, c_format_int, NULL, L_FILE, "'format'"},
    {"attr-format-60000-bytes", K_CKPT, c_format_huge, NULL, L_FILE, "format"},
    {"attr-format-newline", K_CKPT, c_format_newline, NULL, L_FILE, "format"},
    {"attr-format_version-string", K_CKPT, c_format_version_string, NULL, L_ATTR,
     "'format_version'"},
    {"attr-config-not-json", K_CKPT, c_config_not_json, NULL, L_CONFIG, "'config'"},
    {"attr-config-json-array", K_CKPT, c_config_array, NULL, L_CONFIG, "'config'"},
    {"attr-config-int", K_CKPT, c_config_int, NULL, L_ATTR, "'config'"},
    {"attr-config-wrong-types", K_CKPT, c_config_types, NULL, L_OPEN, "classes"},
    {"attr-config-60000-garbage", K_CKPT, c_config_huge_garbage, NULL, L_CONFIG, "'config'"},
    {"attr-created-int", K_CKPT, c_created_int, NULL, L_ATTR, "'created'"},
    {"attr-stack-string-array", K_CKPT, c_stack_array, NULL, L_ATTR, "'chargan_version'"},
    /* whole files */
    {"file-not-hdf5", K_CKPT, NULL, f_text, L_FILE, "not an HDF5 file"},
    {"file-truncated", K_CKPT, NULL, f_truncated, L_FILE, "truncated"},
    {"file-empty", K_CKPT, NULL, f_empty, L_FILE, "empty"},
    {"file-fifo", K_CKPT, NULL, f_fifo, L_FILE, "not a regular file"},
    /* sample files */
    {"samples-int32", K_SAMPLES, s_int32, NULL, L_SAMPLES, "/samples"},
    {"samples-string", K_SAMPLES, s_string, NULL, L_SAMPLES, "/samples"},
    {"samples-compound", K_SAMPLES, s_compound, NULL, L_SAMPLES, "/samples"},
    {"samples-rank2", K_SAMPLES, s_rank2, NULL, L_SAMPLES, "/samples"},
    {"samples-zero", K_SAMPLES, s_zero, NULL, L_SAMPLES, "/samples"},
    {"samples-scalar", K_SAMPLES, s_scalar, NULL, L_SAMPLES, "/samples"},
    {"samples-null", K_SAMPLES, s_null, NULL, L_SAMPLES, "/samples"},
    {"samples-28x29", K_SAMPLES, s_wide, NULL, L_SAMPLES, "/samples"},
    {"samples-100000-sparse", K_SAMPLES, s_sparse, NULL, L_SREAD, "/samples"},
    {"samples-external-storage", K_SAMPLES, s_external_storage, NULL, L_SAMPLES, "/samples"},
    {"samples-labels-uint32", K_SAMPLES, s_labels_u32, NULL, L_SAMPLES, "/labels"},
    {"samples-labels-float", K_SAMPLES, s_labels_float, NULL, L_SAMPLES, "/labels"},
    {"samples-labels-short", K_SAMPLES, s_labels_short, NULL, L_SAMPLES, "/labels"},
    {"samples-soft-link", K_SAMPLES, s_soft, NULL, L_SAMPLES, "/samples"},
    {"samples-external-link", K_SAMPLES, s_ext, NULL, L_SAMPLES, "/samples"},
    {"samples-external-fifo", K_SAMPLES, s_ext_fifo, NULL, L_SAMPLES, "/labels"},
    {"samples-group", K_SAMPLES, s_group, NULL, L_SAMPLES, "/samples"},
    {"samples-step-string", K_SAMPLES, s_step_string, NULL, L_SAMPLES, "'step'"},
    {"samples-model-int", K_SAMPLES, s_model_int, NULL, L_SAMPLES, "'model'"},
    {"samples-format-int", K_SAMPLES, s_format_int, NULL, L_SAMPLES | L_KIND, "'format'"},
    {"ok-samples-gzip", K_SAMPLES, s_gzip, NULL, 0, NULL},
    {"ok-samples-model-60000", K_SAMPLES, s_model_huge, NULL, 0, NULL},
    /* classifier files */
    {"clf-nan-weight", K_CLF, k_nan_weight, NULL, L_CLF, "/weights/dense0.kernel[0, 5]"},
    {"clf-inf-cov", K_CLF, k_inf_cov, NULL, L_CLF, "/stats/heldout_cov[1, 1]"},
    {"clf-soft-link", K_CLF, k_soft, NULL, L_CLF, "/weights/dense0.bias"},
    {"clf-external-link", K_CLF, k_ext, NULL, L_CLF, "/weights"},
    {"clf-weights-dataset", K_CLF, k_weights_dset, NULL, L_CLF, "/weights"},
    {"clf-n_classes-string", K_CLF, k_nclasses_string, NULL, L_CLF, "n_classes"},
    {"clf-classes-int", K_CLF, k_classes_int, NULL, L_CLF, "classes"},
    {"clf-format-int", K_CLF, k_format_int, NULL, L_CLF, "format"},
    {"clf-counts-uint64", K_CLF, k_counts_u64, NULL, L_CLF, "/stats/heldout_class_counts"},
    {"clf-mean-short", K_CLF, k_mean_short, NULL, L_CLF, "/stats/train_mean"},
    {"clf-counts-unallocated", K_CLF, k_counts_unallocated, NULL, L_CLF,
     "/stats/heldout_class_counts"},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* ---- making a case's file -------------------------------------------------------------- */

static const char *base_of(file_kind k)
{
    return k == K_CKPT ? base_ck : k == K_BN ? bn_ck : k == K_SAMPLES ? base_sm : base_clf;
}

static void make_case(const crafted *c, const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.h5", dir, c->name);
    copy_file(base_of(c->kind), path, -1);
    if (c->craft_file) {
        c->craft_file(path);
        return;
    }
    cur_file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (cur_file < 0)
        die("H5Fopen", path);
    c->craft();
    if (H5Fclose(cur_file) < 0)
        die("H5Fclose", path);
    if (c->craft == c_missing_filter)
        after_missing_filter();
}

/* ---- running the loaders on it --------------------------------------------------------- */

typedef struct {
    const char *path, *object;
    int bad;             /* a loader misbehaved */
    char first[512];     /* the first refusal's message */
} verdict;

/* One loader's result r (0 or -1, message msg) against what the case expects. */
static void judge(verdict *v, const char *loader, int must_refuse, int r, const char *msg)
{
    if (must_refuse && r == 0) {
        fprintf(stderr, "  %s: loaded, expected a refusal\n", loader);
        v->bad = 1;
    } else if (!must_refuse && r != 0) {
        fprintf(stderr, "  %s: refused: %s\n", loader, msg);
        v->bad = 1;
    } else if (must_refuse) {
        if (!v->first[0])
            snprintf(v->first, sizeof v->first, "%s", msg);
        const int named = strstr(msg, v->path) && (!v->object || strstr(msg, v->object));
        if (!named || strchr(msg, '\n') || r != -1) {
            fprintf(stderr, "  %s: returned %d, message does not name %s and '%s' on one "
                            "line: '%s'\n", loader, r, v->path, v->object ? v->object : "",
                    msg);
            v->bad = 1;
        }
    }
}

/* The loaded gan holds base_gan's state. */
static int same_as_base(const cg_gan *g)
{
    const cg_net *a[2] = {&g->g, &g->d}, *b[2] = {&base_gan.g, &base_gan.d};
    for (int k = 0; k < 2; k++) {
        const size_t bytes = sizeof(float) * a[k]->n_params;
        if (memcmp(a[k]->param, b[k]->param, bytes) || memcmp(a[k]->adam_m, b[k]->adam_m, bytes) ||
            memcmp(a[k]->adam_v, b[k]->adam_v, bytes))
            return 0;
    }
    return !memcmp(g->ema_g, base_gan.ema_g, sizeof(float) * g->g.n_params);
}

static void run_ckpt_loaders(const crafted *c, verdict *v)
{
    cg_error e = {{0}};
    cg_ckpt_meta m;
    int r = cg_ckpt_read_meta(v->path, &m, &e);
    judge(v, "read_meta", c->refuse & L_META, r, e.msg);
    if (r == 0)
        cg_ckpt_meta_free(&m);
    r = cg_ckpt_validate(v->path, NULL, NULL, &e);
    judge(v, "validate", c->refuse & L_VALIDATE, r, e.msg);
    cg_gan gan;
    if (c->kind == K_BN)
        make_gan(&gan, "dcgan", 8, 0);
    else
        make_gan(&gan, "small", 0, 10);
    r = cg_ckpt_load(v->path, &gan, NULL, &e);
    judge(v, "load", c->refuse & L_LOAD, r, e.msg);
    if (r == 0 && c->kind == K_CKPT && !same_as_base(&gan)) {
        fprintf(stderr, "  load: the values differ from the file's source\n");
        v->bad = 1;
    }
    cg_gan_free(&gan);
    char classes[CG_GEN_MAX_CLASSES + 1];
    r = cg_gan_open(v->path, 2, 1, &gan, &m, classes, &e);
    judge(v, "gan_open", c->refuse & L_OPEN, r, e.msg);
    if (r == 0) {
        cg_gan_free(&gan);
        cg_ckpt_meta_free(&m);
    }
    r = cg_h5_file_kind(v->path, &e);
    judge(v, "file_kind", c->refuse & L_KIND, r < 0 ? -1 : 0, e.msg);
}

static void run_samples_loaders(const crafted *c, verdict *v)
{
    cg_error e = {{0}};
    cg_samples_meta m;
    int r = cg_samples_read_meta(v->path, &m, &e);
    judge(v, "samples_meta", c->refuse & L_SMETA, r, e.msg);
    float *x = NULL;
    int32_t *lab = NULL;
    int n = 0;
    r = cg_samples_read(v->path, &x, &n, &lab, &e);
    judge(v, "samples_read", c->refuse & L_SREAD, r, e.msg);
    free(x);
    free(lab);
    r = cg_h5_file_kind(v->path, &e);
    judge(v, "file_kind", c->refuse & L_KIND, r < 0 ? -1 : 0, e.msg);
}

static void run_clf_loader(const crafted *c, verdict *v)
{
    cg_error e = {{0}};
    cg_classifier k;
    int r = cg_classifier_load(v->path, &k, 4, &e);
    judge(v, "classifier_load", c->refuse & L_CLF, r, e.msg);
    if (r == 0)
        cg_classifier_free(&k);
}

#define ROW "%-30s %-8s %s\n"

/* The child's work: every loader of the case's kind; exit 0 when all behaved, 10 if not. */
static void run_case_child(const crafted *c, const char *path)
{
    alarm(CASE_SECONDS);
    verdict v = {path, c->object, 0, ""};
    if (c->kind == K_SAMPLES)
        run_samples_loaders(c, &v);
    else if (c->kind == K_CLF)
        run_clf_loader(c, &v);
    else
        run_ckpt_loaders(c, &v);
    const char *msg = v.first;
    const size_t lp = strlen(path);
    if (!strncmp(msg, path, lp))
        msg += lp; /* the table shows the message without the (long) path */
    printf(ROW, c->name, v.bad ? "WRONG" : c->refuse ? "refused" : "loads",
           c->refuse ? msg : "(all loaders; values as written)");
    fflush(stdout);
    fflush(stderr);
    exit(v.bad ? 10 : 0); /* exit, not _exit: a sanitizer's leak check runs here */
}

/* Runs one case in a child; 0 when it behaved. */
static int run_case(const crafted *c)
{
    char dir[300], path[512];
    snprintf(dir, sizeof dir, "%s/cases", root);
    make_case(c, dir, path, sizeof path);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0)
        run_case_child(c, path);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFSIGNALED(st))
        printf(ROW, c->name, WTERMSIG(st) == SIGALRM ? "HANG" : "CRASH",
               WTERMSIG(st) == SIGALRM ? "(killed by the alarm)" : strsignal(WTERMSIG(st)));
    else if (WEXITSTATUS(st) != 10)
        printf(ROW, c->name, "CRASH", "(exit status from a sanitizer or an abort)");
    fflush(stdout);
    return -1;
}

/* ---- setup ----------------------------------------------------------------------------- */

static void make_bases(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/cases", root);
    if (mkdir(dir, 0755))
        die("mkdir", dir);
    write_ckpt(&base_gan, "small", 0, 10, "base", base_ck);
    cg_gan bn;
    write_ckpt(&bn, "dcgan", 8, 0, "bn", bn_ck);
    cg_gan_free(&bn);
    snprintf(other_ck, sizeof other_ck, "%s/other.h5", root);
    copy_file(base_ck, other_ck, -1);
    snprintf(base_sm, sizeof base_sm, "%s/samples.h5", root);
    write_samples(base_sm);
    snprintf(other_sm, sizeof other_sm, "%s/other-samples.h5", root);
    copy_file(base_sm, other_sm, -1);
    snprintf(base_clf, sizeof base_clf, "%s/classifier.h5", root);
    write_classifier(base_clf);
    snprintf(fifo_path, sizeof fifo_path, "%s/fifo.h5", root);
    if (mkfifo(fifo_path, 0644))
        die("mkfifo", fifo_path);
    /* raw bytes for external storage: any file chargan should never read as weights */
    snprintf(raw_path, sizeof raw_path, "%s/raw.bin", root);
    copy_file(base_ck, raw_path, -1);
}

/* The files test_h5_crafted_cli.sh hands to the command line. */
static const char *const cli_cases[] = {
    "dset-int32", "dset-string-vlen", "dset-null-dataspace", "dset-unallocated",
    "dset-extra-huge-sparse", "dset-external-storage", "dset-missing-filter", "nan-param",
    "link-soft-group", "link-external-dataset", "link-external-fifo", "hard-group-for-dataset",
    "attr-noise_dim-int64-2^40", "attr-config-not-json", "attr-model-newline",
    "attr-format-60000-bytes", "samples-null", "samples-100000-sparse",
    "samples-external-fifo", "samples-labels-uint32", "file-truncated", "file-fifo",
    /* not in list.txt: info accepts it (the configuration's types are checked where used) */
    "attr-config-wrong-types",
};

static int write_files(const char *dir)
{
    snprintf(root, sizeof root, "%s", dir);
    make_bases();
    char list[300];
    snprintf(list, sizeof list, "%s/list.txt", dir);
    FILE *f = fopen(list, "w");
    for (size_t i = 0; i < sizeof cli_cases / sizeof cli_cases[0]; i++)
        for (int k = 0; k < N_CASES; k++) {
            if (strcmp(cases[k].name, cli_cases[i]))
                continue;
            char path[512];
            make_case(&cases[k], dir, path, sizeof path);
            if (cases[k].refuse & (L_VALIDATE | L_SAMPLES)) /* what info refuses */
                fprintf(f, "%s %s %s\n", cases[k].kind == K_SAMPLES ? "samples" : "checkpoint",
                        cases[k].name, cases[k].object);
        }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc == 3 && !strcmp(argv[1], "--write-files"))
        return write_files(argv[2]);
    snprintf(root, sizeof root, "/tmp/chargan-h5crafted-XXXXXX");
    if (!mkdtemp(root))
        die("mkdtemp", strerror(errno));
    make_bases();
    printf(ROW, "case", "result", "message (after the file name)");
    int failed = 0;
    for (int i = 0; i < N_CASES; i++) {
        const int bad = run_case(&cases[i]);
        CHECKF(bad == 0, "case %s", cases[i].name);
        failed += bad != 0;
    }
    printf("%d cases, %d misbehaved\n", N_CASES, failed);
    cg_gan_free(&base_gan);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (!tu_failures && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_h5_crafted");
}
