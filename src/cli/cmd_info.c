/* chargan info FILE: what a checkpoint or sample file holds, and whether it is valid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../h5io.h"
#include "chargan/ckpt.h"
#include "chargan/data.h"
#include "chargan/kind.h"
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

/* The most elements of one tensor that info reads (1 GiB as float, far above any preset's
 * largest tensor): a file may declare any shape, and one compressed to almost nothing would
 * otherwise be read whole. */
#define INFO_MAX_ELEMENTS ((hsize_t)1 << 28)

/* A message of the h5io functions called with an empty file name, without its ": ". */
static const char *reason(const char *msg) { return strncmp(msg, ": ", 2) ? msg : msg + 2; }

/* Reads dataset gpath/name as float: 0 with *x malloc'd, d filled and note its type
 * ("float32"), or -1 with note saying why it is not shown: what cg_h5_dset_info refuses
 * (links, kind, storage), a type that is not numeric, too many elements, or what
 * cg_h5_dset_load refuses (values never written, checksums). */
static int read_floats(hid_t f, const char *gpath, const char *name, float **x, cg_h5_dinfo *d,
                       char *note, size_t nlen)
{
    *x = NULL;
    char full[CG_PATH_CAP];
    snprintf(full, sizeof full, "%s/%s", gpath, name);
    cg_error e = {{0}};
    if (cg_h5_dset_info(f, full, d, "", "", &e)) {
        snprintf(note, nlen, "%s", reason(e.msg));
        return -1;
    }
    const int numeric = d->cls == H5T_FLOAT || d->cls == H5T_INTEGER;
    snprintf(note, nlen, "%s%s%zu", numeric ? "" : "not a numeric dataset: ",
             d->cls == H5T_FLOAT ? "float" : d->cls == H5T_INTEGER ? "int" : "?", 8 * d->size);
    if (!numeric)
        return -1;
    if (d->npoints > INFO_MAX_ELEMENTS) {
        snprintf(note, nlen, "%llu elements, too many to show",
                 (unsigned long long)d->npoints);
        return -1;
    }
    *x = malloc(sizeof(float) * (d->npoints ? (size_t)d->npoints : 1));
    if (*x && cg_h5_dset_load(f, full, H5T_NATIVE_FLOAT, *x, "", "", &e) == 0)
        return 0;
    free(*x);
    *x = NULL;
    snprintf(note, nlen, "unreadable: %s", *e.msg ? reason(e.msg) : "out of memory");
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
        char note[CG_PATH_CAP + 256];
        mv[w] = NAN;
        if (read_floats(f, op, name, &y, &d, note, sizeof note) == 0) {
            stats s;
            stats_of(y, (size_t)d.npoints, &s);
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
    char type[CG_PATH_CAP + 256], shape[96], shown[256];
    cg_h5_printable(name, shown, sizeof shown);
    if (read_floats(f, gpath, name, &x, &d, type, sizeof type)) {
        printf("  %-16s (%s)\n", shown, type);
        return 0;
    }
    if (d.ndim <= CG_H5_MAX_DIMS)
        cg_shape_str(shape, sizeof shape, d.ndim, d.dims);
    else
        snprintf(shape, sizeof shape, "(%d dimensions)", d.ndim);
    stats s;
    stats_of(x, (size_t)d.npoints, &s);
    free(x);
    double mv[2];
    moment_norms(f, who, name, mv);
    printf("  %-16s %-20s %10lld %11.5g %11.4g %11.4g", shown, shape, s.count, s.l2, s.min,
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

/* The tensors of one network as the file holds them, in creation (= model) order. The group
 * is opened as the loaders open it (hard links only: see cg_h5_group_open). */
static void print_net(hid_t f, const char *who)
{
    char gpath[64];
    snprintf(gpath, sizeof gpath, "/%s", who);
    cg_error e = {{0}};
    hid_t g = cg_h5_group_open(f, gpath, "", "checkpoint", &e);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        printf("%s: (%s)\n", who, g < 0 ? reason(e.msg) : "unreadable");
        cg_h5_close(g);
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
    H5Oclose(g);
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
    const cg_kind_ops *ops = cg_kind_find(m.model);
    const char *net0 = ops ? ops->net_names[0] : "generator";
    const char *net1 = ops ? ops->net_names[1] : "discriminator";
    const int vae = ops == &cg_kind_vae;
    printf("model:         %s (%s, %s %d)\n", m.model, m.kind, vae ? "coding_dim" : "noise_dim",
           m.noise_dim);
    printf("step:          %ld\n", m.step);
    printf("epoch:         %ld\n", m.epoch);
    printf("seed:          %llu\n", (unsigned long long)m.seed);
    printf("world size:    %d\n", m.world_size);
    printf("global batch:  %d\n", m.global_batch);
    printf("created:       %s\n", m.created[0] ? m.created : "(not recorded)");
    print_stack(&m.stack);
    printf("%s steps:    %s %ld, %s %ld\n", vae ? "opt. " : "adam", net0, m.adam_t_g, net1,
           m.adam_t_d);
    if (m.has_ema)
        printf("ema:           present, decay %g (/ema/generator: sample, write and eval use "
               "it unless --no-ema)\n", m.ema_decay);
    else if (!vae)
        printf("ema:           absent (samples come from the raw generator weights)\n");
    printf("config:        %s\n", m.config_json);
    const int has_ema = m.has_ema;
    cg_ckpt_meta_free(&m);
    hid_t f = cg_h5_open_ro(path, &e);
    if (f < 0) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    print_net(f, net0);
    print_net(f, net1);
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
