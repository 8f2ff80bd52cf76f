/* chargan info FILE: what a checkpoint or sample file holds, and whether it is valid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../h5io.h"
#include "chargan/ckpt.h"
#include "chargan/data.h"
#include "chargan/samples.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: chargan info FILE\n"
               "Prints what a chargan checkpoint or sample file (HDF5) holds: format, model,\n"
               "step, epoch, seed, world size, global batch, creation time, the training\n"
               "configuration, and every tensor with its shape, L2 norm, range and the L2\n"
               "norms of its Adam moments (checkpoints), or the number of samples, their\n"
               "value range and labels (sample files). Checkpoints are then validated\n"
               "against their model preset (every tensor present, shapes, checksums).\n"
               "Exit code 1 when the file is not a chargan file or not valid.\n");
}

typedef struct {
    double l2, min, max;
    long long count, nonfinite;
} stats;

static void stats_of(const float *x, size_t n, stats *s)
{
    double ss = 0.0, lo = INFINITY, hi = -INFINITY;
    long long bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        ss += v * v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    s->l2 = sqrt(ss);
    s->min = lo;
    s->max = hi;
    s->count = (long long)n;
    s->nonfinite = bad;
}

/* Elements of a dataset. */
static size_t count_of(const cg_h5_dinfo *d)
{
    size_t n = 1;
    for (int k = 0; k < d->ndim; k++)
        n *= (size_t)d->dims[k];
    return n;
}

/* Reads dataset gpath/name as float: 0 with *x malloc'd and d filled, -1 when absent, not
 * numeric or unreadable (type then says what it is, when it is a dataset). */
static int read_floats(hid_t f, const char *gpath, const char *name, float **x, cg_h5_dinfo *d,
                       char *type, size_t tlen)
{
    *x = NULL;
    char full[256];
    snprintf(full, sizeof full, "%s/%s", gpath, name);
    cg_error ignored = {{0}};
    if (H5Lexists(f, gpath, H5P_DEFAULT) <= 0 ||
        cg_h5_dset_info(f, full, d, "", "", &ignored) || d->ndim > CG_H5_MAX_DIMS)
        return -1;
    snprintf(type, tlen, "%s%zu",
             d->cls == H5T_FLOAT ? "float" : d->cls == H5T_INTEGER ? "int" : "?", 8 * d->size);
    if (d->cls != H5T_FLOAT && d->cls != H5T_INTEGER)
        return -1;
    const size_t n = count_of(d);
    *x = malloc(sizeof(float) * (n ? n : 1));
    if (*x && cg_h5_dset_load(f, full, H5T_NATIVE_FLOAT, *x, "", "", &ignored) == 0)
        return 0;
    free(*x);
    *x = NULL;
    snprintf(type + strlen(type), tlen - strlen(type), ", unreadable");
    return -1;
}

/* L2 norms of the Adam moments m and v of tensor `name` of network `who` (NAN: none, as for
 * the EMA). */
static void moment_norms(hid_t f, const char *who, const char *name, double mv[2])
{
    for (int w = 0; w < 2; w++) {
        char op[96];
        snprintf(op, sizeof op, "/optimizer/%s/%c", who, w ? 'v' : 'm');
        float *y = NULL;
        cg_h5_dinfo d;
        char type[48] = "";
        mv[w] = NAN;
        if (read_floats(f, op, name, &y, &d, type, sizeof type) == 0) {
            stats s;
            stats_of(y, count_of(&d), &s);
            mv[w] = s.l2;
            free(y);
        }
    }
}

/* One tensor line; returns its element count (0 when it is not a numeric dataset). */
static long long print_tensor(hid_t f, const char *who, const char *gpath, const char *name)
{
    float *x = NULL;
    cg_h5_dinfo d;
    char type[48] = "", shape[96];
    if (read_floats(f, gpath, name, &x, &d, type, sizeof type)) {
        printf("  %-16s (not a numeric dataset%s%s)\n", name, type[0] ? ": " : "", type);
        return 0;
    }
    cg_shape_str(shape, sizeof shape, d.ndim, d.dims);
    stats s;
    stats_of(x, count_of(&d), &s);
    free(x);
    double mv[2];
    moment_norms(f, who, name, mv);
    printf("  %-16s %-20s %10lld %11.5g %11.4g %11.4g", name, shape, s.count, s.l2, s.min,
           s.max);
    for (int w = 0; w < 2; w++) {
        if (isnan(mv[w]))
            printf(" %11s", "-");
        else
            printf(" %11.4g", mv[w]);
    }
    if (strcmp(type, "float32"))
        printf("  (%s)", type);
    if (s.nonfinite)
        printf("  (%lld non-finite)", s.nonfinite);
    printf("\n");
    return s.count;
}

/* The tensors of one network as the file holds them, in creation (= model) order. */
static void print_net(hid_t f, const char *who)
{
    char gpath[64];
    snprintf(gpath, sizeof gpath, "/%s", who);
    if (H5Lexists(f, gpath, H5P_DEFAULT) <= 0) {
        printf("%s: (missing)\n", who);
        return;
    }
    hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        printf("%s: (unreadable)\n", who);
        if (g >= 0)
            H5Gclose(g);
        return;
    }
    printf("%s:\n  %-16s %-20s %10s %11s %11s %11s %11s %11s\n", who, "tensor", "shape",
           "count", "l2", "min", "max", "adam_m l2", "adam_v l2");
    long long total = 0;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0 &&
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            continue;
        total += print_tensor(f, who, gpath, name);
    }
    printf("  %lld parameters in %llu tensors\n", total, (unsigned long long)info.nlinks);
    H5Gclose(g);
}

static void print_stack(const cg_stack *s)
{
    if (!s->chargan[0]) {
        printf("written by:    (not recorded)\n");
        return;
    }
    printf("written by:    chargan %s\n", s->chargan);
    printf("  MPI:         %s\n  BLAS:        %s\n  HDF5:        %s\n", s->mpi, s->blas, s->hdf5);
}

static int info_checkpoint(const char *path)
{
    cg_error e = {{0}};
    cg_ckpt_meta m;
    if (cg_ckpt_read_meta(path, &m, &e)) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    printf("file:          %s\n", path);
    printf("format:        %s (version %d)\n", CG_CKPT_FORMAT, m.format_version);
    printf("model:         %s (noise_dim %d)\n", m.model, m.noise_dim);
    printf("step:          %ld\n", m.step);
    printf("epoch:         %ld\n", m.epoch);
    printf("seed:          %llu\n", (unsigned long long)m.seed);
    printf("world size:    %d\n", m.world_size);
    printf("global batch:  %d\n", m.global_batch);
    printf("created:       %s\n", m.created[0] ? m.created : "(not recorded)");
    print_stack(&m.stack);
    printf("adam steps:    generator %ld, discriminator %ld\n", m.adam_t_g, m.adam_t_d);
    if (m.has_ema)
        printf("ema:           present, decay %g (/ema/generator: sample, write and eval use "
               "it unless --no-ema)\n", m.ema_decay);
    else
        printf("ema:           absent (samples come from the raw generator weights)\n");
    printf("config:        %s\n", m.config_json);
    const int has_ema = m.has_ema;
    cg_ckpt_meta_free(&m);
    hid_t f = cg_h5_open_ro(path, &e);
    if (f < 0) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    print_net(f, "generator");
    print_net(f, "discriminator");
    if (has_ema)
        print_net(f, "ema/generator");
    H5Fclose(f);
    if (cg_ckpt_validate(path, NULL, NULL, &e)) {
        printf("valid:         NO\n");
        fflush(stdout);
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    printf("valid:         yes (all tensors and Adam moments%s present with the shapes of "
           "model '%s'; checksums verified)\n", has_ema ? " and the EMA" : "", m.model);
    return 0;
}

static int info_samples(const char *path)
{
    cg_error e = {{0}};
    cg_samples_meta m;
    float *x = NULL;
    int32_t *lab = NULL;
    int n = 0;
    if (cg_samples_read_meta(path, &m, &e) || cg_samples_read(path, &x, &n, &lab, &e)) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    printf("file:          %s\n", path);
    if (m.format_version)
        printf("format:        %s (version %d)\n", CG_SAMPLES_FORMAT, m.format_version);
    else
        printf("format:        sample layout without a 'format' attribute\n");
    printf("model:         %s\n", m.model[0] ? m.model : "(not recorded)");
    printf("step:          %ld\n", m.step);
    printf("seed:          %llu\n", (unsigned long long)m.seed);
    printf("created:       %s\n", m.created[0] ? m.created : "(not recorded)");
    print_stack(&m.stack);
    printf("samples:       %d images [%d, 28, 28] float32\n", n, n);
    const size_t total = (size_t)n * CG_IMG_PIXELS;
    stats s;
    stats_of(x, total, &s);
    double sum = 0.0;
    long long outside = 0;
    for (size_t i = 0; i < total; i++) {
        if (isfinite(x[i]))
            sum += x[i];
        if (!(x[i] >= 0.0f && x[i] <= 1.0f))
            outside++;
    }
    printf("values:        min %.6g, max %.6g, mean %.6g; %lld outside [0,1], %lld non-finite\n",
           s.min, s.max,
           total > (size_t)s.nonfinite ? sum / (double)(total - (size_t)s.nonfinite) : NAN,
           outside, s.nonfinite);
    if (lab) {
        int32_t lo = lab[0], hi = lab[0];
        for (int i = 1; i < n; i++) {
            lo = lab[i] < lo ? lab[i] : lo;
            hi = lab[i] > hi ? lab[i] : hi;
        }
        printf("labels:        present, int32 [%d], values %d..%d\n", n, (int)lo, (int)hi);
    } else {
        printf("labels:        absent\n");
    }
    free(x);
    free(lab);
    if (outside) {
        fprintf(stderr, "chargan: error: %s: %lld sample values outside [0,1]\n", path, outside);
        return 1;
    }
    return 0;
}

int cg_cmd_info(cg_ctx *c, int argc, char **argv)
{
    const char *file = NULL;
    cg_error e = {{0}};
    int r = cg_parse_opts(NULL, 0, argc, argv, &file, &e);
    if (r == 1) {
        if (c->rank == 0)
            usage(stdout);
        return 0;
    }
    if (r == 0 && !file)
        r = cg_fail(&e, "which file? (chargan info FILE)");
    if (r) {
        if (c->rank == 0) {
            fprintf(stderr, "chargan: error: info: %s\n", e.msg);
            usage(stderr);
        }
        return 2;
    }
    /* One rank inspects; under mpirun every rank exits with its verdict. */
    int rc = 0;
    if (c->rank == 0) {
        int kind = cg_h5_file_kind(file, &e);
        if (kind < 0) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            rc = 1;
        } else {
            rc = kind == CG_FILE_CHECKPOINT ? info_checkpoint(file) : info_samples(file);
        }
        fflush(stdout);
        fflush(stderr);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, c->world);
    return rc;
}
