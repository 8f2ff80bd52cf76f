/* Sample files; the layout is in samples.h, the HDF5 conventions in h5io.h. */
#include "chargan/samples.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5io.h"

#define SIDE 28
#define WHAT "chargan sample file"

typedef struct {
    const float *imgs;
    int n;
    long step;
    const char *model;
    uint64_t seed;
    const int32_t *labels;
} samples_ctx;

static int fill_samples(hid_t f, const void *vctx, const char *fname, cg_error *e)
{
    const samples_ctx *c = vctx;
    if (cg_h5_attr_put_str(f, "format", CG_SAMPLES_FORMAT, fname, e) ||
        cg_h5_attr_put_i32(f, "format_version", CG_SAMPLES_FORMAT_VERSION, fname, e) ||
        cg_h5_attr_put_i64(f, "step", c->step, fname, e) ||
        cg_h5_attr_put_str(f, "model", c->model, fname, e) ||
        cg_h5_attr_put_u64(f, "seed", c->seed, fname, e) ||
        cg_h5_attr_put_created(f, fname, e) || cg_h5_attr_put_stack(f, fname, e))
        return -1;
    const hsize_t n = (hsize_t)c->n;
    hsize_t dims[3] = {n, SIDE, SIDE}, chunk[3] = {n < 256 ? n : 256, SIDE, SIDE};
    if (cg_h5_dset_put(f, "samples", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dims, chunk,
                       c->imgs, fname, "", e))
        return -1;
    if (c->labels) {
        hsize_t lchunk[1] = {n < 65536 ? n : 65536};
        if (cg_h5_dset_put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, lchunk,
                           c->labels, fname, "", e))
            return -1;
    }
    return 0;
}

int cg_samples_write(const char *path, const float *imgs, int n, long step, const char *model,
                     uint64_t seed, const int32_t *labels, cg_error *e)
{
    if (!path || !path[0])
        return cg_fail(e, "sample file name is empty");
    if (n < 1 || !imgs)
        return cg_fail(e, "%s: no samples to write (n = %d)", path, n);
    if (step < 0)
        return cg_fail(e, "%s: step %ld is negative", path, step);
    for (size_t i = 0; i < (size_t)n * SIDE * SIDE; i++)
        if (!(imgs[i] >= 0.0f && imgs[i] <= 1.0f))
            return cg_fail(e, "%s: sample %zu pixel %zu is %g, not in [0,1]", path,
                           i / (SIDE * SIDE), i % (SIDE * SIDE), (double)imgs[i]);
    char dir[CG_PATH_CAP], final[CG_PATH_CAP];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!base[0])
        return cg_fail(e, "%s: names a directory, not a file", path);
    /* DIR/NAME: a bare NAME is written as ./NAME, and messages name it so. */
    if (cg_path_dir(path, dir, sizeof dir) ||
        snprintf(final, sizeof final, "%s/%s", dir, base) >= (int)sizeof final)
        return cg_fail(e, "%s: path too long", path);
    samples_ctx c = {imgs, n, step, model ? model : "", seed, labels};
    const size_t bytes = (size_t)n * (sizeof(float) * SIDE * SIDE + sizeof(int32_t));
    return cg_h5_write(final, "sample file", 1, fill_samples, &c, bytes, e);
}

/* Root attribute NAME: required when strict (our own files carry all of them), else 0 when
 * absent. */
static int get_attr(hid_t f, const char *name, hid_t mtype, void *out, int strict,
                    const char *path, cg_error *e)
{
    return strict ? cg_h5_attr_need(f, name, mtype, out, path, WHAT, e)
                  : cg_h5_attr_get(f, name, mtype, out, path, e) < 0 ? -1 : 0;
}

/* The root's attributes into m. */
static int samples_attrs(hid_t f, const char *path, int strict, cg_samples_meta *m,
                         cg_error *e)
{
    int64_t step = 0;
    uint64_t seed = 0;
    if (get_attr(f, "step", H5T_NATIVE_INT64, &step, strict, path, e) ||
        get_attr(f, "seed", H5T_NATIVE_UINT64, &seed, strict, path, e))
        return -1;
    const int r = cg_h5_attr_get_strbuf(f, "model", m->model, sizeof m->model, path, e);
    if (r < 0)
        return -1;
    if (r == 0 && strict)
        return cg_fail(e, "%s: not a valid %s: attribute 'model' is missing", path, WHAT);
    if (cg_h5_attr_get_strbuf(f, "created", m->created, sizeof m->created, path, e) < 0 ||
        cg_h5_attr_get_stack(f, &m->stack, path, e))
        return -1;
    m->step = (long)step;
    m->seed = seed;
    return 0;
}

/* Dataset /NAME: elements of mtype (class, size and sign checked); 0 with d filled. */
static int dset_of(hid_t f, const char *path, const char *name, hid_t mtype, cg_h5_dinfo *d,
                   cg_error *e)
{
    return cg_h5_dset_info(f, name, d, path, "", e) ||
                   cg_h5_dset_check_type(d, mtype, name, path, "", e)
               ? -1
               : 0;
}

/* d's shape for a message: "[9, 784]", "a scalar", "no elements". */
static const char *shape_of(const cg_h5_dinfo *d, char *buf, size_t n)
{
    if (d->space == H5S_NULL)
        snprintf(buf, n, "no elements");
    else if (d->space == H5S_SCALAR)
        snprintf(buf, n, "a scalar");
    else if (d->ndim > CG_H5_MAX_DIMS)
        snprintf(buf, n, "%d dimensions", d->ndim);
    else
        cg_shape_str(buf, n, d->ndim, d->dims);
    return buf;
}

/* /samples [N, 28, 28] and the optional /labels [N] into m. */
static int samples_shapes(hid_t f, const char *path, cg_samples_meta *m, cg_error *e)
{
    cg_h5_dinfo d, l;
    char have[96];
    if (dset_of(f, path, "samples", H5T_NATIVE_FLOAT, &d, e))
        return -1;
    if (d.space != H5S_SIMPLE || d.ndim != 3 || d.dims[1] != SIDE || d.dims[2] != SIDE ||
        d.dims[0] < 1 || d.dims[0] > INT_MAX)
        return cg_fail(e, "%s: /samples must have shape [N, 28, 28] with N >= 1 (it has %s)",
                       path, shape_of(&d, have, sizeof have));
    m->n = (int)d.dims[0];
    htri_t ex = H5Lexists(f, "labels", H5P_DEFAULT);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read /labels", path);
    if (ex == 0)
        return 0;
    if (dset_of(f, path, "labels", H5T_NATIVE_INT32, &l, e))
        return -1;
    if (l.space != H5S_SIMPLE || l.ndim != 1 || l.dims[0] != d.dims[0])
        return cg_fail(e, "%s: /labels must have shape [%d] like /samples (it has %s)", path,
                       m->n, shape_of(&l, have, sizeof have));
    m->has_labels = 1;
    return 0;
}

/* Checks the sample layout of an open file; fills m. */
static int samples_meta_f(hid_t f, const char *path, cg_samples_meta *m, cg_error *e)
{
    memset(m, 0, sizeof *m);
    int32_t ver = 0;
    const int r = cg_h5_check_format(f, path, CG_SAMPLES_FORMAT, CG_SAMPLES_FORMAT_VERSION,
                                     &ver, e);
    if (r < 0)
        return -1;
    m->format_version = ver;
    htri_t ex = H5Lexists(f, "samples", H5P_DEFAULT);
    if (ex <= 0)
        return ex < 0 ? cg_h5_fail(e, "%s: cannot read /samples", path)
                      : cg_fail(e, "%s: not a chargan sample file: no /samples dataset", path);
    if (samples_attrs(f, path, r == 1, m, e))
        return -1;
    return samples_shapes(f, path, m, e);
}

int cg_samples_read_meta(const char *path, cg_samples_meta *m, cg_error *e)
{
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    int rc = samples_meta_f(f, path, m, e);
    H5Fclose(f);
    return rc;
}

/* The images (and with lab the labels) of an open, checked file. */
static int samples_data(hid_t f, const char *path, const cg_samples_meta *m, float **x,
                        int32_t **lab, cg_error *e)
{
    *x = malloc(sizeof(float) * (size_t)m->n * SIDE * SIDE);
    if (lab)
        *lab = m->has_labels ? malloc(sizeof(int32_t) * (size_t)m->n) : NULL;
    if (!*x || (lab && m->has_labels && !*lab))
        return cg_fail(e, "%s: out of memory for %d samples", path, m->n);
    if (cg_h5_dset_load(f, "samples", H5T_NATIVE_FLOAT, *x, path, "", e))
        return -1;
    if (lab && *lab && cg_h5_dset_load(f, "labels", H5T_NATIVE_INT32, *lab, path, "", e))
        return -1;
    return 0;
}

int cg_samples_read(const char *path, float **imgs, int *n, int32_t **labels, cg_error *e)
{
    *imgs = NULL;
    *n = 0;
    if (labels)
        *labels = NULL;
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    cg_samples_meta m;
    float *x = NULL;
    int32_t *lab = NULL;
    int rc = samples_meta_f(f, path, &m, e);
    if (rc == 0)
        rc = samples_data(f, path, &m, &x, labels ? &lab : NULL, e);
    H5Fclose(f);
    if (rc) {
        free(x);
        free(lab);
        return -1;
    }
    *imgs = x;
    *n = m.n;
    if (labels)
        *labels = lab;
    return 0;
}
