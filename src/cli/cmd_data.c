/* `chargan data`: load a data set the way training will, describe it, draw its first images. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/data.h"
#include "chargan/png.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chargan data [PATH] [options]\n"
            "\n"
            "Loads an EMNIST data set exactly as training does (one shared copy per node) and\n"
            "prints the image count, the class histogram with characters, the pixel mean and the\n"
            "load time.\n"
            "\n"
            "PATH (or --data PATH): a directory holding emnist-SPLIT-images-idx3-ubyte[.gz] and\n"
            "  emnist-SPLIT-labels-idx1-ubyte[.gz] or emnist-SPLIT.csv; an IDX images file; or a\n"
            "  Kaggle CSV file (*.csv, no header). Default: $EMNIST_DIR, then ./data/emnist.\n"
            "\n"
            "options:\n"
            "  --split NAME     split in a directory (default balanced-train), e.g. bymerge-test\n"
            "  --labels FILE    IDX labels file (default: images file name with labels-idx1)\n"
            "  --mapping FILE   class -> character mapping (default emnist-FAMILY-mapping.txt\n"
            "                   next to the data, else EMNIST's own mapping for that split)\n"
            "  --limit N        keep only the first N images (0 = all)\n"
            "  --png FILE       draw the first 100 images (10x10, upright, captioned with their\n"
            "                   characters) into FILE\n"
            "  --scale K        pixels per image pixel in the PNG (default 3)\n"
            "  --stats          also print memory: peak RSS and PSS of every rank (from\n"
            "                   /proc/self/smaps_rollup, after every rank has read all images)\n"
            "  -h, --help       this text\n");
}

/* Rss and Pss of this process in MB from smaps_rollup (Linux >= 4.14); -1 if unavailable. */
static void read_rollup(double *rss_mb, double *pss_mb)
{
    *rss_mb = *pss_mb = -1;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "Rss: %ld kB", &kb) == 1)
            *rss_mb = kb / 1024.0;
        else if (sscanf(line, "Pss: %ld kB", &kb) == 1)
            *pss_mb = kb / 1024.0;
    }
    fclose(f);
}

static int parse_long(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return -1;
    *out = v;
    return 0;
}

typedef struct {
    cg_data_opts data;
    const char *png; /* --png FILE, or NULL */
    long scale;      /* --scale */
    int stats;       /* --stats */
} data_args;

/* The field a string option sets, or NULL when opt is not one. */
static const char **string_option(data_args *a, const char *opt)
{
    if (!strcmp(opt, "--data"))
        return &a->data.data;
    if (!strcmp(opt, "--split"))
        return &a->data.split;
    if (!strcmp(opt, "--labels"))
        return &a->data.labels;
    if (!strcmp(opt, "--mapping"))
        return &a->data.mapping;
    if (!strcmp(opt, "--png"))
        return &a->png;
    return NULL;
}

/* --limit or --scale with its value val (NULL when missing). Returns 0, or -1 after printing
 * the error (rank 0). */
static int number_option(data_args *a, const char *opt, const char *val, int root)
{
    const int is_scale = !strcmp(opt, "--scale");
    long v;
    if (!val || parse_long(val, &v) || v < 0 || (is_scale && (v < 1 || v > 16))) {
        if (root)
            fprintf(stderr, "chargan: error: %s needs a%s integer, not '%s'\n", opt,
                    is_scale ? " 1..16" : " non-negative", val ? val : "");
        return -1;
    }
    *(is_scale ? &a->scale : &a->data.limit) = v;
    return 0;
}

/* Parses the arguments into a. Returns -1 to go on, else the exit status (0 after --help). */
static int data_parse(int argc, char **argv, int root, data_args *a)
{
    memset(a, 0, sizeof *a);
    a->scale = 3;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        const char **str = string_option(a, opt);
        if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
            if (root)
                usage(stdout);
            return 0;
        } else if (!strcmp(opt, "--stats")) {
            a->stats = 1;
        } else if (str && val) {
            *str = val;
            i++;
        } else if (str) {
            if (root)
                fprintf(stderr, "chargan: error: %s needs a value\n", opt);
            return 2;
        } else if (!strcmp(opt, "--limit") || !strcmp(opt, "--scale")) {
            if (number_option(a, opt, val, root))
                return 2;
            i++;
        } else if (opt[0] != '-' && !a->data.data) {
            a->data.data = opt;
        } else {
            if (root) {
                fprintf(stderr, "chargan: error: data: unexpected argument '%s'\n", opt);
                usage(stderr);
            }
            return 2;
        }
    }
    return -1;
}

static uint64_t pixel_sum(const cg_dataset *ds)
{
    uint64_t sum = 0;
    const size_t total = (size_t)ds->n * CG_IMG_PIXELS;
    for (size_t i = 0; i < total; i++)
        sum += ds->pixels[i];
    return sum;
}

/* The class histogram, six classes a line. */
static void print_histogram(const cg_dataset *ds)
{
    long count[CG_MAX_CLASSES] = {0};
    for (long i = 0; i < ds->n; i++)
        count[ds->labels[i]]++;
    printf("class histogram (label 'char' images):\n");
    int shown = 0;
    for (int k = 0; k < ds->n_classes; k++) {
        if (!ds->chars[k] && !count[k])
            continue; /* an index the mapping does not use, e.g. letters class 0 */
        printf("  %2d '%c' %6ld%s", k, ds->chars[k] ? ds->chars[k] : '?', count[k],
               ++shown % 6 == 0 ? "\n" : "");
    }
    if (shown % 6)
        printf("\n");
}

/* What was loaded, how fast, the pixel mean (from sum) and the histogram. */
static void print_summary(const cg_ctx *c, const cg_dataset *ds, uint64_t sum, double t_max)
{
    const double mean = (double)sum / ((double)ds->n * CG_IMG_PIXELS);
    printf("data: %s\n", ds->source);
    printf("images: %ld   classes: %d   ranks: %d on %d node(s)\n", ds->n, ds->n_classes,
           c->size, c->n_nodes);
    printf("load: %.3f s (%.1f MB on disk, %.1f MB/s; %.1f MB decoded)\n", t_max,
           ds->file_bytes / 1e6, t_max > 0 ? ds->file_bytes / 1e6 / t_max : 0.0,
           ds->n * (double)(CG_IMG_PIXELS + 1) / 1e6);
    printf("pixel mean: %.2f / 255 = %.4f\n", mean, mean / 255.0);
    print_histogram(ds);
}

/* Draws the first 100 images into png, captioned. Returns 0, or -1 after printing the error. */
static int draw_png(const cg_dataset *ds, const char *png, int scale)
{
    const int m = ds->n < 100 ? (int)ds->n : 100;
    float *imgs = cg_alloc((size_t)m * CG_IMG_PIXELS * sizeof(float));
    int64_t idx[100];
    int32_t lab[100];
    char caps[100];
    for (int i = 0; i < m; i++)
        idx[i] = i;
    cg_data_batch(ds, idx, m, 0.0f, 1.0f, imgs, lab);
    for (int i = 0; i < m; i++)
        caps[i] = ds->chars[lab[i]] ? ds->chars[lab[i]] : '?';
    cg_error e;
    const int rc = cg_png_grid(png, imgs, m, 10, scale, caps, &e);
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", e.msg);
    else
        printf("png: %s (first %d images, upright, captioned with their characters)\n", png, m);
    cg_free(imgs);
    return rc ? -1 : 0;
}

/* --stats: memory of every rank, summed and maximized on rank 0. Collective. */
static void print_stats(cg_ctx *c, const cg_dataset *ds, double t_max)
{
    /* every rank has touched every page before anyone reads its PSS share */
    MPI_Barrier(c->world);
    double mine[3], all_sum[3], all_max[3];
    read_rollup(&mine[0], &mine[1]);
    mine[2] = cg_peak_rss_mb();
    MPI_Reduce(mine, all_sum, 3, MPI_DOUBLE, MPI_SUM, 0, c->world);
    MPI_Reduce(mine, all_max, 3, MPI_DOUBLE, MPI_MAX, 0, c->world);
    if (c->rank != 0)
        return;
    printf("stats: ranks=%d load_s=%.3f file_mb=%.1f mb_per_s=%.1f data_mb=%.1f "
           "pss_sum_mb=%.1f pss_max_mb=%.1f rss_sum_mb=%.1f peak_rss_max_mb=%.1f "
           "peak_rss_sum_mb=%.1f\n",
           c->size, t_max, ds->file_bytes / 1e6, t_max > 0 ? ds->file_bytes / 1e6 / t_max : 0.0,
           ds->n * (double)(CG_IMG_PIXELS + 1) / 1e6, all_sum[1], all_max[1], all_sum[0],
           all_max[2], all_sum[2]);
    fflush(stdout);
}

int cg_cmd_data(cg_ctx *c, int argc, char **argv)
{
    const int root = c->rank == 0;
    data_args a;
    const int pr = data_parse(argc, argv, root, &a);
    if (pr >= 0)
        return pr;

    cg_dataset ds;
    cg_error e;
    MPI_Barrier(c->world);
    const double t0 = cg_now();
    const int st = cg_data_load(c, &a.data, &ds, &e);
    double t_load = cg_now() - t0, t_max = t_load;
    MPI_Reduce(&t_load, &t_max, 1, MPI_DOUBLE, MPI_MAX, 0, c->world);
    if (st) {
        if (root) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            fflush(stderr);
        }
        return 1;
    }

    /* The pixel sum reads every page of the data set. With --stats every rank does it, so the
     * memory figures count the shared pages as mapped by all ranks (as in training). */
    const uint64_t sum = root || a.stats ? pixel_sum(&ds) : 0;
    int rc = 0;
    if (root) {
        print_summary(c, &ds, sum, t_max);
        if (a.png && draw_png(&ds, a.png, (int)a.scale))
            rc = 1;
        fflush(stdout);
    }
    if (a.stats)
        print_stats(c, &ds, t_max);
    cg_data_free(&ds);
    MPI_Bcast(&rc, 1, MPI_INT, 0, c->world);
    return rc;
}
