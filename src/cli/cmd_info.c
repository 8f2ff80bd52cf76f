/* chargan info FILE: what a checkpoint or sample file holds, and whether it is valid. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/ckpt.h"
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

/* Reads dataset gpath/name as float; 0 with *x malloc'd, -1 when absent or not numeric. */
static int read_floats(hid_t f, const char *gpath, const char *name, float **x, int *ndim,
                       hsize_t *dims, char *type, size_t tlen)
{
    *x = NULL;
    char full[256];
    snprintf(full, sizeof full, "%s/%s", gpath, name);
    if (H5Lexists(f, gpath, H5P_DEFAULT) <= 0 || H5Lexists(f, full, H5P_DEFAULT) <= 0)
        return -1;
    hid_t d = H5Dopen2(f, full, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rc = -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t >= 0 && nd >= 0 && nd <= 8) {
        H5T_class_t cl = H5Tget_class(t);
        snprintf(type, tlen, "%s%zu", cl == H5T_FLOAT ? "float" : cl == H5T_INTEGER ? "int" : "?",
                 8 * H5Tget_size(t));
        H5Sget_simple_extent_dims(sp, dims, NULL);
        *ndim = nd;
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        if ((cl == H5T_FLOAT || cl == H5T_INTEGER) && np >= 0) {
            *x = malloc(sizeof(float) * (size_t)(np ? np : 1));
            if (*x && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) >= 0)
                rc = 0;
            else {
                free(*x);
                *x = NULL;
                snprintf(type + strlen(type), tlen - strlen(type), ", unreadable");
            }
        }
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    H5Dclose(d);
    return rc;
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
    /* Count parameters first for the header line. */
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
        float *x = NULL;
        int nd = 0;
        hsize_t dims[8];
        char type[48] = "", shape[96];
        if (read_floats(f, gpath, name, &x, &nd, dims, type, sizeof type)) {
            printf("  %-16s (not a numeric dataset%s%s)\n", name, type[0] ? ": " : "", type);
            continue;
        }
        cg_shape_str(shape, sizeof shape, nd, dims);
        stats s;
        size_t n = 1;
        for (int k = 0; k < nd; k++)
            n *= (size_t)dims[k];
        stats_of(x, n, &s);
        free(x);
        total += s.count;
        double mv[2] = {NAN, NAN};
        for (int w = 0; w < 2; w++) {
            char op[96];
            snprintf(op, sizeof op, "/optimizer/%s/%c", who, w ? 'v' : 'm');
            float *y = NULL;
            int nd2 = 0;
            hsize_t d2[8];
            char t2[48] = "";
            if (read_floats(f, op, name, &y, &nd2, d2, t2, sizeof t2) == 0) {
                size_t n2 = 1;
                for (int k = 0; k < nd2; k++)
                    n2 *= (size_t)d2[k];
                stats s2;
                stats_of(y, n2, &s2);
                mv[w] = s2.l2;
                free(y);
            }
        }
        printf("  %-16s %-20s %10lld %11.5g %11.4g %11.4g", name, shape, s.count, s.l2, s.min,
               s.max);
        for (int w = 0; w < 2; w++) { /* no moments: the EMA */
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
    }
    printf("  %lld parameters in %llu tensors\n", total, (unsigned long long)info.nlinks);
    H5Gclose(g);
}

static hid_t open_plain(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#endif
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
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
    hid_t f = open_plain(path);
    if (f < 0) {
        fprintf(stderr, "chargan: error: %s: cannot open\n", path);
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
    const size_t total = (size_t)n * 784;
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
