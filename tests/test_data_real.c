/* The real EMNIST files in ../shared/data/emnist (or $EMNIST_DIR): counts, label ranges and
 * class counts from the data's README, the pixel mean of bymerge-test (44.3 / 255), the IDX and
 * CSV copies of balanced-train-part decoding to identical bytes (the full gzip bymerge-test's
 * load time is printed) and the orientation of the decoded images:
 *   '1' is a vertical stroke (ink spread over rows >> over columns): catches a missing or
 *       double transpose;
 *   '7' has its bar at the top (more ink in the top half): catches an upside-down image;
 *   '3' opens to the left (ink centroid right of the middle): catches a mirrored image.
 * The data is part of the test setup: missing data fails the test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chargan/data.h"
#include "chargan/dist.h"
#include "testutil.h"

/* Open MPI keeps allocations past MPI_Finalize that LeakSanitizer reports, from libraries built
 * without frame pointers (so they cannot be suppressed by module). In sanitizer builds, leak
 * detection is therefore off for this MPI program; the MPI-free paths are leak-checked by
 * test_data_sampler and were checked by hand (no leak has a frame in chargan's code). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

static cg_ctx *ctx;
static char dir[2048];

static void find_dir(void)
{
    const char *env = getenv("EMNIST_DIR");
    struct stat st;
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
    } else {
        /* SOURCE_DIR/../shared/data/emnist, SOURCE_DIR taken from this file's path */
        char src[1024];
        snprintf(src, sizeof src, "%s", __FILE__);
        char *slash = strrchr(src, '/');
        if (slash) {
            *slash = 0; /* .../tests */
            slash = strrchr(src, '/');
        }
        if (slash && src[0] == '/') {
            *slash = 0;
            snprintf(dir, sizeof dir, "%s/../shared/data/emnist", src);
        } else {
            snprintf(dir, sizeof dir, "../../shared/data/emnist"); /* cwd is tests/ */
        }
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "EMNIST data not found at %s (set EMNIST_DIR)\n", dir);
        exit(1);
    }
    printf("EMNIST data: %s\n", dir);
}

static int load(const char *split, const char *file, long limit, cg_dataset *ds)
{
    char path[2200];
    cg_data_opts o = {.data = dir, .split = split, .limit = limit};
    if (file) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        o.data = path;
    }
    cg_error e;
    double t0 = cg_now();
    int rc = cg_data_load(ctx, &o, ds, &e);
    double t = cg_now() - t0;
    CHECKF(rc == 0, "%s: %s", split ? split : file, e.msg);
    if (rc == 0)
        printf("  %-45s %7ld images in %.3f s  (%s)\n", split ? split : file, ds->n, t,
               ds->source);
    return rc;
}

static void class_counts(const cg_dataset *ds, long *count)
{
    memset(count, 0, sizeof(long) * CG_MAX_CLASSES);
    for (long i = 0; i < ds->n; i++)
        count[ds->labels[i]]++;
}

static void check_orientation(const cg_dataset *ds)
{
    double w[3] = {0}, sr[3] = {0}, sc[3] = {0}, srr[3] = {0}, scc[3] = {0}, top[3] = {0};
    const int cls[3] = {1, 7, 3};
    for (long i = 0; i < ds->n; i++)
        for (int k = 0; k < 3; k++) {
            if (ds->labels[i] != cls[k])
                continue;
            const uint8_t *p = ds->pixels + i * 784;
            for (int r = 0; r < 28; r++)
                for (int c = 0; c < 28; c++) {
                    double v = p[r * 28 + c];
                    w[k] += v, sr[k] += v * r, sc[k] += v * c, srr[k] += v * r * r,
                        scc[k] += v * c * c, top[k] += r < 14 ? v : 0;
                }
        }
    double var_r = srr[0] / w[0] - (sr[0] / w[0]) * (sr[0] / w[0]);
    double var_c = scc[0] / w[0] - (sc[0] / w[0]) * (sc[0] / w[0]);
    CHECKF(var_r > 2.5 * var_c, "'1' not vertical: ink variance rows %.1f, columns %.1f", var_r,
           var_c);
    double top_share = top[1] / w[1];
    CHECKF(top_share > 0.6, "'7' bar not at the top: %.2f of its ink in the top half", top_share);
    double c3 = sc[2] / w[2];
    CHECKF(c3 > 14.0, "'3' mirrored? ink centroid column %.2f (upright ~14.8, mirrored ~12.2)",
           c3);
    printf("  orientation: '1' row/col ink variance %.1f/%.1f, '7' top-half ink %.2f, "
           "'3' centroid column %.2f\n", var_r, var_c, top_share, c3);
}

static void test_bymerge(void)
{
    cg_dataset ds;
    double t0 = cg_now();
    if (load("bymerge-test", NULL, 0, &ds))
        return;
    double t = cg_now() - t0;
    CHECK(ds.n == 116323);
    CHECK(ds.n_classes == 47);
    CHECK(strstr(ds.source, "emnist-bymerge-test-images-idx3-ubyte.gz") != NULL);
    CHECK(memcmp(ds.chars, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt", 47) == 0);
    long count[CG_MAX_CLASSES];
    class_counts(&ds, count);
    long total = 0, lo = ds.n, hi = 0;
    for (int k = 0; k < CG_MAX_CLASSES; k++) {
        total += count[k];
        CHECKF(k < 47 || count[k] == 0, "label %d used", k);
        if (k < 47) {
            lo = count[k] < lo ? count[k] : lo;
            hi = count[k] > hi ? count[k] : hi;
        }
    }
    CHECK(total == ds.n);
    /* README: from 415 ('Q') to 6,400 ('1') */
    CHECKF(lo == 415 && count[26] == 415 && hi == 6400 && count[1] == 6400,
           "class counts %ld..%ld, Q %ld, 1 %ld", lo, hi, count[26], count[1]);
    uint64_t sum = 0;
    for (size_t i = 0; i < (size_t)ds.n * 784; i++)
        sum += ds.pixels[i];
    double mean = (double)sum / ((double)ds.n * 784);
    CHECK_NEAR(mean, 44.3, 0.1);
    printf("  bymerge-test pixel mean %.3f / 255 = %.4f\n", mean, mean / 255);
    /* the first ten, as in preview-bymerge.png: O M S 0 5 8 5 1 4 3 */
    static const uint8_t first[10] = {24, 22, 28, 0, 5, 8, 5, 1, 4, 3};
    CHECK(memcmp(ds.labels, first, 10) == 0);
    check_orientation(&ds);
    /* Printed, not asserted: a shared machine can be several times slower from one hour to
     * the next, and speed is the benchmark's business (`chargan data` prints its load time). */
    printf("  gzip bymerge-test (%ld images) loaded in %.2f s\n", ds.n, t);
    /* --limit keeps the first N */
    cg_dataset part;
    if (load("bymerge-test", NULL, 60000, &part) == 0) {
        CHECK(part.n == 60000);
        CHECK(memcmp(part.pixels, ds.pixels, 60000 * 784) == 0);
        CHECK(memcmp(part.labels, ds.labels, 60000) == 0);
        cg_data_free(&part);
    }
    cg_data_free(&ds);
}

static void test_balanced_part(void)
{
    cg_dataset idx, csv;
    if (load("balanced-train-part", NULL, 0, &idx))
        return;
    if (load(NULL, "emnist-balanced-train-part.csv", 0, &csv) == 0) {
        CHECK(idx.n == 9120 && csv.n == 9120);
        CHECK(memcmp(idx.pixels, csv.pixels, (size_t)idx.n * 784) == 0);
        CHECK(memcmp(idx.labels, csv.labels, (size_t)idx.n) == 0);
        CHECK(csv.n_classes == 47 && memcmp(csv.chars, idx.chars, sizeof csv.chars) == 0);
        cg_data_free(&csv);
    }
    long count[CG_MAX_CLASSES];
    class_counts(&idx, count);
    long lo = idx.n, hi = 0;
    for (int k = 0; k < 47; k++) {
        lo = count[k] < lo ? count[k] : lo;
        hi = count[k] > hi ? count[k] : hi;
    }
    CHECKF(lo == 174 && hi == 212, "balanced-train-part classes %ld..%ld, README 174..212", lo,
           hi);
    /* the IDX file given directly, labels found by name */
    cg_dataset file;
    if (load(NULL, "emnist-balanced-train-part-images-idx3-ubyte.gz", 0, &file) == 0) {
        CHECK(file.n == 9120 && memcmp(file.pixels, idx.pixels, 9120 * 784) == 0);
        cg_data_free(&file);
    }
    cg_data_free(&idx);
}

static void test_letters_mnist(void)
{
    cg_dataset ds;
    if (load("letters-test", NULL, 0, &ds) == 0) {
        CHECK(ds.n == 14800);
        CHECK(ds.n_classes == 27 && ds.chars[0] == 0 && ds.chars[1] == 'A' &&
              ds.chars[26] == 'Z');
        long count[CG_MAX_CLASSES];
        class_counts(&ds, count);
        /* README: A..R 800 each, S 400, no T..Z, no class 0 */
        CHECK(count[0] == 0 && count[1] == 800 && count[18] == 800 && count[19] == 400 &&
              count[20] == 0 && count[26] == 0);
        cg_data_free(&ds);
    }
    if (load("mnist-test", NULL, 0, &ds) == 0) {
        CHECK(ds.n == 10000 && ds.n_classes == 10 && ds.chars[9] == '9');
        for (long i = 0; i < ds.n; i++)
            if (ds.labels[i] > 9) {
                CHECK(ds.labels[i] <= 9);
                break;
            }
        cg_data_free(&ds);
    }
}

int main(int argc, char **argv)
{
    cg_ctx c;
    cg_ctx_init(&c, &argc, &argv);
    ctx = &c;
    find_dir();
    test_bymerge();
    test_balanced_part();
    test_letters_mnist();
    cg_ctx_finalize(&c);
    return tu_finish("test_data_real");
}
