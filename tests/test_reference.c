/* Independent reference check of the engine: one training step of both presets compared with
 * PyTorch (float64), from the committed fixture tests/reference/fixture.h5 written by
 * tests/reference/make_fixture.py (see tests/reference/README.md).
 *
 * Both sides regenerate the same inputs from seed 1234: a TEST initialization (uniform in
 * [-L, L], L = Glorot limit for kernels and 0.05 for biases, so that biases are non-zero), the
 * noise of step 0, real images from raw stream 77 and the dropout masks of step 0. chargan runs
 * cg_gan_grads once; the fake images, logits, losses, D(real)/D(fake) and every gradient are
 * compared with the fixture (every gradient entry for `small`; for `seed` each gradient tensor's
 * L2 norm and a few hundred entries at fixed positions).
 *
 * Error measure: per tensor, max_i |c_i - ref_i| / max(max_i |ref_i|, tiny). An elementwise
 * relative error would be meaningless for entries near zero (float32 rounding in a sum of
 * thousands of terms is relative to the size of the terms, not of the result). Scalars (losses,
 * norms, D means) use the plain relative error |c - ref| / |ref|. Tolerance 1e-4 throughout.
 *
 * The parameter counts of both presets are checked against the model tables' numbers,
 * independently of the fixture. The test runs with cwd = tests/. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/gan.h"
#include "chargan/model.h"
#include "chargan/rng.h"
#include "chargan/util.h"

#define FIXTURE "reference/fixture.h5"
#define FORMAT_VERSION 1
#define SEED 1234u
#define BATCH 4
#define NOISE_DIM 150
#define REAL_STREAM 77u
#define TOL 1e-4
#define TINY 1e-30

static int failures;

/* ---------------------------------------------------------------------------------------- */
/* Result table. */

typedef struct {
    char what[72];
    long n;
    double ref_scale; /* max|ref| (or |ref| for scalars) */
    double abs_err;
    double rel_err;
    long worst; /* flat index of the worst entry, -1 for scalars */
    double c_val, ref_val;
} row;

#define MAX_ROWS 128
static row rows[MAX_ROWS];
static int n_rows;

static void add_row(const char *what, long n, double scale, double abs_err, long worst,
                    double c_val, double ref_val)
{
    if (n_rows >= MAX_ROWS)
        return;
    row *r = &rows[n_rows++];
    snprintf(r->what, sizeof r->what, "%s", what);
    r->n = n;
    r->ref_scale = scale;
    r->abs_err = abs_err;
    r->rel_err = abs_err / (scale > TINY ? scale : TINY);
    if (!(r->rel_err <= TOL)) /* also catches NaN */
        failures++;
    r->worst = worst;
    r->c_val = c_val;
    r->ref_val = ref_val;
}

static void print_table(void)
{
    printf("\n%-48s %9s %11s %11s %10s %9s %14s %14s  %s\n", "quantity", "n", "max|ref|",
           "max abs err", "rel err", "worst at", "chargan", "reference", "");
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        char at[24] = "-";
        if (r->worst >= 0)
            snprintf(at, sizeof at, "%ld", r->worst);
        printf("%-48s %9ld %11.4e %11.4e %10.3e %9s %14.7e %14.7e  %s\n", r->what, r->n,
               r->ref_scale, r->abs_err, r->rel_err, at, r->c_val, r->ref_val,
               r->rel_err <= TOL ? "ok" : "FAIL");
    }
    /* the worst few, for the log summary */
    int order[MAX_ROWS];
    for (int i = 0; i < n_rows; i++)
        order[i] = i;
    for (int i = 0; i < n_rows; i++)
        for (int j = i + 1; j < n_rows; j++)
            if (rows[order[j]].rel_err > rows[order[i]].rel_err ||
                isnan(rows[order[j]].rel_err)) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    printf("\nworst relative errors (tolerance %.0e):\n", TOL);
    for (int i = 0; i < n_rows && i < 8; i++)
        printf("  %-48s %10.3e\n", rows[order[i]].what, rows[order[i]].rel_err);
}

/* Compares n values: max|c - ref| / max(max|ref|, tiny). scale_override > 0 replaces max|ref|
 * (used for sampled entries, whose scale is the full tensor's max|ref|). */
static void compare(const char *what, const float *c, const double *ref, long n,
                    double scale_override)
{
    double scale = 0, err = -1;
    long worst = 0;
    for (long i = 0; i < n; i++) {
        double a = fabs(ref[i]);
        if (a > scale)
            scale = a;
        double e = fabs((double)c[i] - ref[i]);
        if (e > err || isnan(e)) {
            err = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    if (scale_override > 0)
        scale = scale_override;
    add_row(what, n, scale, err, worst, n ? c[worst] : 0, n ? ref[worst] : 0);
}

static void compare_scalar(const char *what, double c, double ref)
{
    double e = fabs(c - ref);
    add_row(what, 1, fabs(ref), isnan(e) ? INFINITY : e, -1, c, ref);
}

static void check(int ok, const char *fmt, const char *arg)
{
    if (!ok) {
        printf("FAIL: ");
        printf(fmt, arg);
        printf("\n");
        failures++;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* HDF5 reading. */

/* Reads a whole dataset (any float/int type) as doubles; returns the element count, or -1 when
 * absent. *out is malloc'ed. dims/ndim receive the shape when not NULL. */
static long read_f64(hid_t f, const char *path, double **out, int *ndim, hsize_t *dims)
{
    *out = NULL;
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8] = {0};
    if (nd > 0)
        H5Sget_simple_extent_dims(sp, d, NULL);
    long n = (long)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (ndim)
        *ndim = nd;
    if (dims)
        for (int i = 0; i < nd && i < 4; i++)
            dims[i] = d[i];
    double *buf = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!buf || H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Dclose(ds);
        return -1;
    }
    H5Dclose(ds);
    *out = buf;
    return n;
}

static long read_i64(hid_t f, const char *path, long long **out)
{
    *out = NULL;
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    long n = (long)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    long long *buf = malloc(sizeof(long long) * (size_t)(n > 0 ? n : 1));
    if (!buf || H5Dread(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Dclose(ds);
        return -1;
    }
    H5Dclose(ds);
    *out = buf;
    return n;
}

static int read_scalar(hid_t f, const char *path, double *v)
{
    double *b;
    long n = read_f64(f, path, &b, NULL, NULL);
    if (n != 1) {
        free(b);
        return -1;
    }
    *v = b[0];
    free(b);
    return 0;
}

static int read_attr_long(hid_t obj, const char *name, long long *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t r = H5Aread(a, H5T_NATIVE_LLONG, v);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The engine side. */

static int make_gan(cg_gan *gan, const char *model)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.global_batch = BATCH;
    cfg.local_batch = BATCH;
    cfg.seed = SEED;
    cg_error e = {{0}};
    memset(gan, 0, sizeof *gan);
    if (cg_gan_init(gan, &cfg, &e) != 0) {
        printf("FAIL: cg_gan_init(%s): %s\n", model, e.msg);
        failures++;
        return -1;
    }
    return 0;
}

/* The fixture's test initialization: element i of tensor t =
 * (2 * uniform(S, stream(INIT, base + t), i) - 1) * L, in float32, L = float32(sqrt(6 /
 * (fan_in + fan_out))) for kernels and 0.05 for biases (fan_in == 0). */
static void test_init(cg_net *net, uint64_t stream_base)
{
    size_t covered = 0;
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        uint64_t s = cg_stream(CG_RNG_INIT, stream_base + (uint64_t)t);
        float lim = T->fan_in == 0 ? 0.05f : (float)sqrt(6.0 / (double)(T->fan_in + T->fan_out));
        float *p = net->param + T->offset;
        for (size_t i = 0; i < T->count; i++)
            p[i] = (2.0f * cg_rng_uniform(SEED, s, i) - 1.0f) * lim;
        covered += T->count;
    }
    if (covered != net->n_params) {
        printf("FAIL: %s: tensors cover %zu of %zu parameters\n", net->name, covered,
               net->n_params);
        failures++;
    }
}

/* Expected fans of each tensor (Keras' Glorot fans), as the fixture generator assumes them:
 * dense [in][out]: (in, out); conv [out][in][k][k] and transposed conv [in][out][k][k] alike:
 * fan_in = dims[1]*k*k, fan_out = dims[0]*k*k; biases (0, 0). */
static void check_fans(const cg_net *net)
{
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        int fi = 0, fo = 0;
        if (strstr(T->name, ".bias") == NULL) {
            if (T->ndim == 2) {
                fi = T->dims[0];
                fo = T->dims[1];
            } else if (T->ndim == 4) {
                fi = T->dims[1] * T->dims[2] * T->dims[3];
                fo = T->dims[0] * T->dims[2] * T->dims[3];
            }
        }
        if (T->fan_in != fi || T->fan_out != fo) {
            printf("FAIL: %s %s: fans (%d, %d), expected (%d, %d)\n", net->name, T->name,
                   T->fan_in, T->fan_out, fi, fo);
            failures++;
        }
    }
}

static void check_counts(void)
{
    static const struct {
        const char *model;
        size_t g, d;
    } want[] = {{"seed", 2780417, 699137}, {"small", 529217, 119585}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cg_gan gan;
        if (make_gan(&gan, want[i].model) != 0)
            continue;
        int ok = gan.g.n_params == want[i].g && gan.d.n_params == want[i].d;
        printf("parameter counts %-5s: G %zu (want %zu)  D %zu (want %zu)  %s\n", want[i].model,
               gan.g.n_params, want[i].g, gan.d.n_params, want[i].d, ok ? "ok" : "FAIL");
        if (!ok)
            failures++;
        cg_gan_free(&gan);
    }
}

/* ---------------------------------------------------------------------------------------- */

static void compare_output(hid_t f, const char *preset, const char *name, const float *c,
                           long n)
{
    char path[160], what[96];
    double *ref;
    snprintf(path, sizeof path, "/%s/%s", preset, name);
    long m = read_f64(f, path, &ref, NULL, NULL);
    if (m != n) {
        printf("FAIL: %s: %ld values in the fixture, expected %ld\n", path, m, n);
        failures++;
        free(ref);
        return;
    }
    snprintf(what, sizeof what, "%s %s", preset, name);
    compare(what, c, ref, n, 0);
    free(ref);
}

static void compare_stat(hid_t f, const char *preset, const char *name, double c)
{
    char path[160], what[96];
    double ref;
    snprintf(path, sizeof path, "/%s/%s", preset, name);
    if (read_scalar(f, path, &ref) != 0) {
        check(0, "fixture lacks %s", path);
        return;
    }
    snprintf(what, sizeof what, "%s %s", preset, name);
    compare_scalar(what, c, ref);
}

/* Every entry of every gradient tensor. */
static void compare_grads_full(hid_t f, const char *preset, const cg_net *net)
{
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        char path[192], what[96];
        snprintf(path, sizeof path, "/%s/grad/%s/%s", preset, net->name, T->name);
        double *ref;
        int nd = 0;
        hsize_t dims[4] = {0};
        long n = read_f64(f, path, &ref, &nd, dims);
        if (n < 0) {
            check(0, "fixture lacks %s", path);
            continue;
        }
        int shape_ok = n == (long)T->count && nd == T->ndim;
        for (int i = 0; shape_ok && i < nd; i++)
            shape_ok = dims[i] == (hsize_t)T->dims[i];
        if (!shape_ok) {
            check(0, "%s: shape differs from the engine's tensor", path);
            free(ref);
            continue;
        }
        snprintf(what, sizeof what, "%s grad %c %s", preset, net->name[0], T->name);
        compare(what, net->grad + T->offset, ref, n, 0);
        free(ref);
    }
}

/* L2 norm and sampled entries of every gradient tensor. */
static void compare_grads_sampled(hid_t f, const char *preset, const cg_net *net)
{
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        char base[160], path[192], what[96];
        snprintf(base, sizeof base, "/%s/grad/%s/%s", preset, net->name, T->name);
        hid_t g = H5Gopen2(f, base, H5P_DEFAULT);
        if (g < 0) {
            check(0, "fixture lacks %s", base);
            continue;
        }
        long long count = -1;
        read_attr_long(g, "count", &count);
        H5Gclose(g);
        if (count != (long long)T->count) {
            check(0, "%s: element count differs from the engine's tensor", base);
            continue;
        }
        const float *cg = net->grad + T->offset;

        double ref_norm = 0, ref_max = 0;
        snprintf(path, sizeof path, "%s/norm", base);
        int r1 = read_scalar(f, path, &ref_norm);
        snprintf(path, sizeof path, "%s/max_abs", base);
        int r2 = read_scalar(f, path, &ref_max);
        long long *idx;
        double *val;
        snprintf(path, sizeof path, "%s/index", base);
        long ni = read_i64(f, path, &idx);
        snprintf(path, sizeof path, "%s/value", base);
        long nv = read_f64(f, path, &val, NULL, NULL);
        if (r1 || r2 || ni < 1 || ni != nv) {
            check(0, "%s: incomplete in the fixture", base);
            free(idx);
            free(val);
            continue;
        }

        double ss = 0;
        for (size_t i = 0; i < T->count; i++)
            ss += (double)cg[i] * cg[i];
        snprintf(what, sizeof what, "%s grad %c %s |norm|", preset, net->name[0], T->name);
        compare_scalar(what, sqrt(ss), ref_norm);

        float *c = malloc(sizeof(float) * (size_t)ni);
        int idx_ok = 1;
        for (long i = 0; i < ni; i++) {
            if (idx[i] < 0 || idx[i] >= (long long)T->count) {
                idx_ok = 0;
                c[i] = 0;
            } else {
                c[i] = cg[idx[i]];
            }
        }
        check(idx_ok, "%s: sampled position out of range", base);
        /* scale: max|ref| over the whole tensor, as for the full comparison */
        snprintf(what, sizeof what, "%s grad %c %s (%ld entries)", preset, net->name[0], T->name,
                 ni);
        compare(what, c, val, ni, ref_max > 0 ? ref_max : TINY);
        /* report the flat tensor position, not the sample number */
        if (n_rows > 0 && rows[n_rows - 1].worst >= 0)
            rows[n_rows - 1].worst = (long)idx[rows[n_rows - 1].worst];
        free(c);
        free(idx);
        free(val);
    }
}

static void run_preset(hid_t f, const char *preset)
{
    cg_gan gan;
    if (make_gan(&gan, preset) != 0)
        return;
    hid_t grp = H5Gopen2(f, preset, H5P_DEFAULT);
    if (grp < 0) {
        check(0, "fixture lacks group /%s", preset);
        cg_gan_free(&gan);
        return;
    }
    long long pg = -1, pd = -1;
    read_attr_long(grp, "n_params_g", &pg);
    read_attr_long(grp, "n_params_d", &pd);
    H5Gclose(grp);
    if (pg != (long long)gan.g.n_params || pd != (long long)gan.d.n_params) {
        printf("FAIL: %s: fixture is for G %lld / D %lld parameters, engine has %zu / %zu\n",
               preset, pg, pd, gan.g.n_params, gan.d.n_params);
        failures++;
        cg_gan_free(&gan);
        return;
    }

    check_fans(&gan.g);
    check_fans(&gan.d);
    test_init(&gan.g, 0);
    test_init(&gan.d, 100);

    float *real = cg_alloc(sizeof(float) * BATCH * 784);
    for (int i = 0; i < BATCH * 784; i++)
        real[i] = cg_rng_uniform(SEED, REAL_STREAM, (uint64_t)i);

    cg_gan_stats st;
    memset(&st, 0, sizeof st);
    cg_gan_grads(&gan, real, 0, 0, NULL, &st);

    /* Diagnostic: the noise the engine drew must be normal(S, stream(NOISE, 0), i*150 + j)
     * (the fixture generator reproduces cg_rng_normal bit-exactly). */
    {
        float *z = cg_alloc(sizeof(float) * BATCH * NOISE_DIM);
        cg_rng_normal_fill(z, BATCH * NOISE_DIM, SEED, cg_stream(CG_RNG_NOISE, 0), 0);
        int same = gan.cfg.noise_dim == NOISE_DIM &&
                   memcmp(z, gan.z, sizeof(float) * BATCH * NOISE_DIM) == 0;
        check(same, "%s: gan->z differs from normal(seed, stream(NOISE, 0), i*150 + j)", preset);
        cg_free(z);
    }

    const float *fake = gan.tape_g.act[gan.g.n_layers - 1];
    const float *lr = gan.logits, *lf = gan.logits + BATCH;
    compare_output(f, preset, "fake", fake, BATCH * 784);
    compare_output(f, preset, "logits_real", lr, BATCH);
    compare_output(f, preset, "logits_fake", lf, BATCH);
    compare_stat(f, preset, "loss_d", st.loss_d);
    compare_stat(f, preset, "loss_g", st.loss_g);
    compare_stat(f, preset, "d_real", st.d_real);
    compare_stat(f, preset, "d_fake", st.d_fake);

    /* Gradients are stored either in full (a dataset per tensor) or sampled (a group per
     * tensor with norm, max_abs, index, value); tell them apart by the first G tensor. */
    char probe[192];
    snprintf(probe, sizeof probe, "/%s/grad/generator/%s", preset, gan.g.tensors[0].name);
    hid_t ds = H5Dopen2(f, probe, H5P_DEFAULT);
    if (ds >= 0) {
        H5Dclose(ds);
        compare_grads_full(f, preset, &gan.g);
        compare_grads_full(f, preset, &gan.d);
    } else {
        compare_grads_sampled(f, preset, &gan.g);
        compare_grads_sampled(f, preset, &gan.d);
    }

    cg_free(real);
    cg_gan_free(&gan);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    check_counts();

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* absent objects are reported by this test */
    hid_t f = H5Fopen(FIXTURE, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        printf("FAIL: cannot open %s (run from tests/; regenerate with "
               "/usr/bin/python3 tests/reference/make_fixture.py)\n", FIXTURE);
        return 1;
    }
    long long version = -1, seed = -1, batch = -1;
    read_attr_long(f, "format_version", &version);
    read_attr_long(f, "seed", &seed);
    read_attr_long(f, "batch", &batch);
    if (version != FORMAT_VERSION || seed != SEED || batch != BATCH) {
        printf("FAIL: fixture format %lld seed %lld batch %lld; this test expects %d / %u / %d\n",
               version, seed, batch, FORMAT_VERSION, SEED, BATCH);
        H5Fclose(f);
        return 1;
    }

    run_preset(f, "small");
    run_preset(f, "seed");
    H5Fclose(f);

    print_table();
    if (failures) {
        printf("\ntest_reference: %d failure(s)\n", failures);
        return 1;
    }
    printf("\ntest_reference: all %d comparisons within %.0e\n", n_rows, TOL);
    return 0;
}
