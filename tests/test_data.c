/* Readers of the EMNIST pipeline on small generated files: gzip and plain IDX, Kaggle CSV
 * (LF and CRLF), finding files (directory + split, derived labels, mappings), --limit,
 * cg_data_batch, and every known bad input. Each bad input must fail with a one-line
 * message that names the file and the problem.
 *
 * The images written here have a known, asymmetric pattern stored TRANSPOSED as in EMNIST, so
 * the upright result is checked pixel by pixel. Runs as one MPI rank (cg_data_load) and without
 * MPI (cg_data_load_local, and the permission case in a child process that drops root). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "chargan/data.h"
#include "chargan/dist.h"
#include "testutil.h"

/* Open MPI keeps allocations past MPI_Finalize that LeakSanitizer reports, from libraries built
 * without frame pointers (so they cannot be suppressed by module). In sanitizer builds, leak
 * detection is therefore off for this MPI program; the MPI-free paths are leak-checked by
 * test_data_sampler and were checked by hand (no leak has a frame in chargan's code). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

static char tmpdir[256];
static cg_ctx *ctx;

static uint8_t pat(long i, int r, int c) { return (uint8_t)((i * 31 + r * 28 + c * 3) & 255); }

static const char *tpath(const char *name)
{
    /* a few rotating buffers so two paths can be used in one call */
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *name, const void *data, size_t len, int gz)
{
    const char *p = tpath(name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        if (!f || (len && gzwrite(f, data, (unsigned)len) != (int)len) || gzclose(f) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", p);
            exit(2);
        }
    } else {
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
            fprintf(stderr, "cannot write %s\n", p);
            exit(2);
        }
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* IDX images with the pattern (header fields as given), returns the byte count. */
static size_t idx_images(uint8_t *buf, long n, uint32_t magic, uint32_t rows, uint32_t cols)
{
    put_be32(buf, magic);
    put_be32(buf + 4, (uint32_t)n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    uint8_t *d = buf + 16;
    for (long i = 0; i < n; i++)
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++)
                d[i * 784 + c * 28 + r] = pat(i, r, c); /* stored transposed */
    return 16 + (size_t)n * 784;
}

static size_t idx_labels(uint8_t *buf, long n, uint32_t magic, const uint8_t *labels)
{
    put_be32(buf, magic);
    put_be32(buf + 4, (uint32_t)n);
    memcpy(buf + 8, labels, (size_t)n);
    return 8 + (size_t)n;
}

/* Kaggle CSV of the pattern: label, then the pixels in stored (transposed) order. */
static size_t csv_text(char *out, long n, const uint8_t *labels, const char *eol)
{
    size_t k = 0;
    for (long i = 0; i < n; i++) {
        k += (size_t)sprintf(out + k, "%d", labels[i]);
        for (int j = 0; j < 784; j++)
            k += (size_t)sprintf(out + k, ",%d", pat(i, j % 28, j / 28));
        k += (size_t)sprintf(out + k, "%s", eol);
    }
    return k;
}

static const char balanced_map[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt";

static void write_mapping(const char *name, const char *chars, int first)
{
    char text[2048];
    size_t k = 0;
    for (int i = 0; chars[i]; i++)
        k += (size_t)sprintf(text + k, "%d %d\n", i + first, chars[i]);
    write_bytes(name, text, k, 0);
}

static void check_content(const char *what, const cg_dataset *ds, long n, const uint8_t *labels)
{
    CHECKF(ds->n == n, "%s: n %ld, expected %ld", what, ds->n, n);
    long bad = 0;
    for (long i = 0; i < n && i < ds->n; i++) {
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++)
                bad += ds->pixels[i * 784 + r * 28 + c] != pat(i, r, c);
        bad += ds->labels[i] != labels[i];
    }
    CHECKF(bad == 0, "%s: %ld pixels/labels differ from the upright pattern", what, bad);
}

static int load(const cg_data_opts *o, cg_dataset *ds, cg_error *e, int local)
{
    memset(e, 0, sizeof *e);
    return local ? cg_data_load_local(o, ds, e) : cg_data_load(ctx, o, ds, e);
}

/* The load must fail with one line naming `file` and containing `problem`. */
static void expect_fail(const char *what, const cg_data_opts *o, const char *file,
                        const char *problem)
{
    for (int local = 0; local < 2; local++) {
        cg_dataset ds;
        cg_error e;
        int rc = load(o, &ds, &e, local);
        CHECKF(rc != 0, "%s: load succeeded", what);
        if (rc == 0) {
            cg_data_free(&ds);
            continue;
        }
        CHECKF(strstr(e.msg, file) != NULL, "%s: message does not name %s: %s", what, file, e.msg);
        CHECKF(strstr(e.msg, problem) != NULL, "%s: message lacks '%s': %s", what, problem, e.msg);
        CHECKF(strchr(e.msg, '\n') == NULL && e.msg[0], "%s: not one line: %s", what, e.msg);
        if (local == 0)
            printf("  ok %-28s %s\n", what, e.msg);
    }
}

static void test_good_idx(void)
{
    const long n = 50;
    uint8_t *img = malloc(16 + n * 784), lab[64];
    for (long i = 0; i < n; i++)
        lab[i] = (uint8_t)((i * 7) % 47);
    size_t ni = idx_images(img, n, 0x803, 28, 28);
    uint8_t lb[128];
    size_t nl = idx_labels(lb, n, 0x801, lab);
    write_bytes("emnist-balanced-train-images-idx3-ubyte.gz", img, ni, 1);
    write_bytes("emnist-balanced-train-labels-idx1-ubyte.gz", lb, nl, 1);
    write_bytes("emnist-bymerge-test-images-idx3-ubyte", img, ni, 0);
    write_bytes("emnist-bymerge-test-labels-idx1-ubyte", lb, nl, 0);
    write_mapping("emnist-balanced-mapping.txt", balanced_map, 0);
    /* mixed: gzip images next to uncompressed labels */
    write_bytes("mixed/emnist-balanced-x-images-idx3-ubyte.gz", img, ni, 1);
    write_bytes("mixed/emnist-balanced-x-labels-idx1-ubyte", lb, nl, 0);

    for (int local = 0; local < 2; local++) {
        cg_dataset ds;
        cg_error e;
        /* directory + default split (balanced-train) */
        cg_data_opts o = {.data = tmpdir};
        CHECKF(load(&o, &ds, &e, local) == 0, "dir load: %s", e.msg);
        check_content("gzip IDX via directory", &ds, n, lab);
        CHECK(ds.n_classes == 47);
        CHECK(ds.chars[10] == 'A' && ds.chars[46] == 't' && ds.chars[0] == '0');
        CHECK(strstr(ds.source, "gzip") && strstr(ds.source, "balanced-train") &&
              strstr(ds.source, "emnist-balanced-mapping.txt"));
        CHECK(ds.file_bytes > 0);
        if (!local)
            printf("  source: %s\n", ds.source);
        cg_data_free(&ds);
        cg_data_free(&ds); /* twice is harmless */

        /* plain IDX via split; mapping absent -> built-in bymerge */
        o = (cg_data_opts){.data = tmpdir, .split = "bymerge-test"};
        CHECKF(load(&o, &ds, &e, local) == 0, "plain IDX: %s", e.msg);
        check_content("plain IDX via --split", &ds, n, lab);
        CHECK(ds.n_classes == 47 && ds.chars[36] == 'a');
        CHECK(strstr(ds.source, "built-in bymerge") && !strstr(ds.source, "gzip"));
        cg_data_free(&ds);

        /* images file given, labels derived by name across .gz / plain */
        o = (cg_data_opts){.data = tpath("mixed/emnist-balanced-x-images-idx3-ubyte.gz")};
        CHECKF(load(&o, &ds, &e, local) == 0, "mixed: %s", e.msg);
        check_content("gzip images + plain labels", &ds, n, lab);
        cg_data_free(&ds);

        /* explicit --labels, --limit */
        o = (cg_data_opts){.data = tpath("emnist-bymerge-test-images-idx3-ubyte"),
                           .labels = tpath("emnist-balanced-train-labels-idx1-ubyte.gz"),
                           .limit = 17};
        CHECKF(load(&o, &ds, &e, local) == 0, "limit: %s", e.msg);
        check_content("--labels and --limit 17", &ds, 17, lab);
        cg_data_free(&ds);

        o.limit = 1000; /* more than there are: all */
        CHECKF(load(&o, &ds, &e, local) == 0, "limit>n: %s", e.msg);
        CHECK(ds.n == n);
        cg_data_free(&ds);

        /* EMNIST_DIR when data is NULL */
        setenv("EMNIST_DIR", tmpdir, 1);
        o = (cg_data_opts){0};
        CHECKF(load(&o, &ds, &e, local) == 0, "EMNIST_DIR: %s", e.msg);
        check_content("EMNIST_DIR", &ds, n, lab);
        cg_data_free(&ds);
        unsetenv("EMNIST_DIR");
    }
    free(img);
}

static void test_batch(void)
{
    cg_dataset ds;
    cg_error e;
    cg_data_opts o = {.data = tmpdir};
    if (cg_data_load(ctx, &o, &ds, &e)) {
        CHECKF(0, "batch load: %s", e.msg);
        return;
    }
    int64_t idx[3] = {4, 0, 49};
    float out[3 * 784];
    int32_t lab[3];
    cg_data_batch(&ds, idx, 3, 0.0f, 1.0f, out, lab);
    long bad = 0;
    for (int k = 0; k < 3; k++) {
        CHECK(lab[k] == ds.labels[idx[k]]);
        for (int j = 0; j < 784; j++)
            bad += fabsf(out[k * 784 + j] - ds.pixels[idx[k] * 784 + j] / 255.0f) > 1e-6f;
    }
    CHECKF(bad == 0, "batch [0,1]: %ld values off", bad);
    cg_data_batch(&ds, idx, 3, -1.0f, 1.0f, out, NULL);
    bad = 0;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 784; j++) {
            uint8_t v = ds.pixels[idx[k] * 784 + j];
            float want = v == 0 ? -1.0f : v == 255 ? 1.0f : -1.0f + 2.0f * v / 255.0f;
            bad += fabsf(out[k * 784 + j] - want) > 1e-6f;
            if (v == 0 || v == 255)
                bad += out[k * 784 + j] != want; /* the ends exactly */
        }
    CHECKF(bad == 0, "batch [-1,1]: %ld values off", bad);
    cg_data_free(&ds);
}

static void test_csv(void)
{
    const long n = 20;
    uint8_t lab[20];
    for (long i = 0; i < n; i++)
        lab[i] = (uint8_t)((i * 5 + 3) % 47);
    char *text = malloc((size_t)n * 4000);
    size_t len = csv_text(text, n, lab, "\n");
    write_bytes("csv/emnist-balanced-train.csv", text, len, 0);
    write_bytes("csv/emnist-balanced-nonl.csv", text, len - 1, 0); /* no final newline */
    write_bytes("csv/emnist-balanced-gz.csv.gz", text, len, 1);
    memcpy(text + len, "\n\n", 3); /* trailing blank lines are tolerated */
    write_bytes("csv/emnist-balanced-blank.csv", text, len + 2, 0);
    size_t lcr = csv_text(text, n, lab, "\r\n");
    write_bytes("csv/emnist-balanced-crlf.csv", text, lcr, 0);
    write_bytes("csv/train.csv", text, lcr, 0); /* not named emnist-*: built-in balanced */
    static const char *const files[] = {"emnist-balanced-train.csv", "emnist-balanced-nonl.csv",
                                        "emnist-balanced-gz.csv.gz", "emnist-balanced-blank.csv",
                                        "emnist-balanced-crlf.csv", "train.csv"};
    char name[128];
    for (int f = 0; f < 6; f++)
        for (int local = 0; local < 2; local++) {
            cg_dataset ds;
            cg_error e;
            snprintf(name, sizeof name, "csv/%s", files[f]);
            cg_data_opts o = {.data = tpath(name)};
            CHECKF(load(&o, &ds, &e, local) == 0, "%s: %s", files[f], e.msg);
            check_content(files[f], &ds, n, lab);
            CHECK(ds.n_classes == 47 && ds.chars[45] == 'r');
            if (f == 5)
                CHECKF(strstr(ds.source, "built-in balanced"), "%s", ds.source);
            cg_data_free(&ds);
        }
    /* via directory and split name; --limit */
    cg_dataset ds;
    cg_error e;
    cg_data_opts o = {.data = tpath("csv"), .split = "balanced-crlf", .limit = 5};
    CHECKF(load(&o, &ds, &e, 0) == 0, "csv dir: %s", e.msg);
    check_content("CSV via directory, --limit 5", &ds, 5, lab);
    cg_data_free(&ds);
    free(text);
}

static void test_letters(void)
{
    /* letters: mapping "index upper lower", classes 1..26, class 0 unused */
    char text[1024];
    size_t k = 0;
    for (int i = 1; i <= 26; i++)
        k += (size_t)sprintf(text + k, "%d %d %d\r\n", i, 'A' + i - 1, 'a' + i - 1);
    write_bytes("letters/emnist-letters-mapping.txt", text, k, 0);
    const long n = 10;
    uint8_t lab[10], *img = malloc(16 + n * 784), lb[64];
    for (int i = 0; i < n; i++)
        lab[i] = (uint8_t)(1 + i * 2);
    write_bytes("letters/emnist-letters-test-images-idx3-ubyte.gz", img,
                idx_images(img, n, 0x803, 28, 28), 1);
    write_bytes("letters/emnist-letters-test-labels-idx1-ubyte.gz", lb,
                idx_labels(lb, n, 0x801, lab), 1);
    cg_dataset ds;
    cg_error e;
    cg_data_opts o = {.data = tpath("letters"), .split = "letters-test"};
    CHECKF(load(&o, &ds, &e, 0) == 0, "letters: %s", e.msg);
    check_content("letters", &ds, n, lab);
    CHECK(ds.n_classes == 27 && ds.chars[0] == 0 && ds.chars[1] == 'A' && ds.chars[26] == 'Z');
    cg_data_free(&ds);
    /* label 0 is not a letters class */
    lab[3] = 0;
    write_bytes("letters/emnist-letters-bad-images-idx3-ubyte.gz", img,
                idx_images(img, n, 0x803, 28, 28), 1);
    write_bytes("letters/emnist-letters-bad-labels-idx1-ubyte.gz", lb,
                idx_labels(lb, n, 0x801, lab), 1);
    o.split = "letters-bad";
    expect_fail("letters label 0", &o, "emnist-letters-bad-labels-idx1-ubyte.gz",
                "label 0 of image 3 is not a class");
    /* without the mapping file: EMNIST's letters mapping is built in */
    remove(tpath("letters/emnist-letters-mapping.txt"));
    o.split = "letters-test";
    CHECKF(load(&o, &ds, &e, 1) == 0, "letters built-in: %s", e.msg);
    CHECK(ds.n_classes == 27 && ds.chars[0] == 0 && ds.chars[2] == 'B');
    cg_data_free(&ds);
    free(img);
}

static void test_bad_inputs(void)
{
    const long n = 8;
    uint8_t lab[8] = {0, 1, 2, 3, 4, 5, 6, 46};
    uint8_t *img = malloc(16 + 64 * 784), lb[128];
    size_t ni = idx_images(img, n, 0x803, 28, 28), nl = idx_labels(lb, n, 0x801, lab);
    cg_data_opts o;
    char msg[600];

    /* missing file / directory / nothing found */
    o = (cg_data_opts){.data = tpath("no-such-file.gz")};
    expect_fail("missing file", &o, tpath("no-such-file.gz"), "No such file");
    mkdir(tpath("emptydir"), 0755);
    write_bytes("emptydir/readme.txt", "hi\n", 3, 0);
    o = (cg_data_opts){.data = tpath("emptydir")};
    expect_fail("dir without EMNIST files", &o, tpath("emptydir"), "no EMNIST files");
    o = (cg_data_opts){.data = tmpdir, .split = "digits-train"};
    expect_fail("split missing", &o, tmpdir, "splits found: balanced-train, bymerge-test");
    expect_fail("split missing (hint)", &o, tmpdir, "--split NAME");
    {
        char cwd[1024];
        if (!getcwd(cwd, sizeof cwd))
            cwd[0] = 0;
        if (chdir(tpath("emptydir")) == 0) {
            setenv("EMNIST_DIR", tpath("nowhere"), 1);
            o = (cg_data_opts){0};
            expect_fail("nothing found", &o, "EMNIST_DIR=", "nist.gov");
            unsetenv("EMNIST_DIR");
            expect_fail("nothing found (no env)", &o, "./data/emnist", "crawford/emnist");
            if (chdir(cwd) != 0)
                CHECK(0);
        }
    }

    /* empty file */
    write_bytes("bad/emnist-balanced-empty-images-idx3-ubyte.gz", "", 0, 0);
    o = (cg_data_opts){.data = tpath("bad/emnist-balanced-empty-images-idx3-ubyte.gz")};
    expect_fail("empty file", &o, o.data, "empty file");
    write_bytes("bad/empty.csv", "", 0, 0);
    o = (cg_data_opts){.data = tpath("bad/empty.csv")};
    expect_fail("empty CSV", &o, o.data, "empty file");

    /* truncated gzip: a good gzip file cut in the middle */
    write_bytes("bad/emnist-balanced-trunc-images-idx3-ubyte.gz", img, ni, 1);
    write_bytes("bad/emnist-balanced-trunc-labels-idx1-ubyte.gz", lb, nl, 1);
    {
        const char *p = tpath("bad/emnist-balanced-trunc-images-idx3-ubyte.gz");
        struct stat st;
        stat(p, &st);
        CHECK(truncate(p, st.st_size / 2) == 0);
        o = (cg_data_opts){.data = p};
        expect_fail("truncated gzip", &o, p, "truncated gzip");
        /* cut only the 8-byte trailer: all data is there, the CRC/length are not */
        write_bytes("bad/emnist-balanced-trail-images-idx3-ubyte.gz", img, ni, 1);
        write_bytes("bad/emnist-balanced-trail-labels-idx1-ubyte.gz", lb, nl, 1);
        p = tpath("bad/emnist-balanced-trail-images-idx3-ubyte.gz");
        stat(p, &st);
        CHECK(truncate(p, st.st_size - 4) == 0);
        o = (cg_data_opts){.data = p};
        expect_fail("gzip without its trailer", &o, p, "truncated gzip");
    }
    /* gzip of garbage: a gzip header followed by bytes that are not deflate data */
    {
        uint8_t g[4096] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
        for (int i = 10; i < (int)sizeof g; i++)
            g[i] = (uint8_t)(cg_rng_u64(1, 2, (uint64_t)i) >> 56);
        g[10] = 0xff; /* BTYPE 11: an invalid block type, whatever follows */
        write_bytes("bad/emnist-balanced-garbage-images-idx3-ubyte.gz", g, sizeof g, 0);
        write_bytes("bad/emnist-balanced-garbage-labels-idx1-ubyte.gz", lb, nl, 1);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-garbage-images-idx3-ubyte.gz")};
        expect_fail("gzip of garbage (deflate)", &o, o.data, "damaged gzip data");
        /* a valid gzip stream whose content is garbage */
        write_bytes("bad/emnist-balanced-rnd-images-idx3-ubyte.gz", g + 10, sizeof g - 10, 1);
        write_bytes("bad/emnist-balanced-rnd-labels-idx1-ubyte.gz", lb, nl, 1);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-rnd-images-idx3-ubyte.gz")};
        expect_fail("gzip of garbage (content)", &o, o.data, "bad magic");
    }
    /* wrong magic, labels file as images, wrong dimensions, 0 images */
    {
        uint8_t *b = malloc(16 + n * 784);
        struct {
            const char *name, *problem;
            uint32_t magic, rows, cols;
            long count;
        } cases[] = {
            {"magic", "bad magic 0x00000802, expected 0x00000803", 0x802, 28, 28, n},
            {"swapped", "this is an IDX labels file", 0x801, 28, 28, n},
            {"dims", "images are 32x28, expected 28x28", 0x803, 32, 28, n},
            {"zero", "header says 0 images", 0x803, 28, 28, 0},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            char in[128], ln[128];
            snprintf(in, sizeof in, "bad/emnist-balanced-%s-images-idx3-ubyte", cases[k].name);
            snprintf(ln, sizeof ln, "bad/emnist-balanced-%s-labels-idx1-ubyte", cases[k].name);
            size_t len = idx_images(b, cases[k].count, cases[k].magic, cases[k].rows,
                                    cases[k].cols);
            write_bytes(in, b, len, 0);
            write_bytes(ln, lb, nl, 0);
            o = (cg_data_opts){.data = tpath(in)};
            snprintf(msg, sizeof msg, "wrong %s", cases[k].name);
            expect_fail(msg, &o, o.data, cases[k].problem);
        }
        /* CSV content in a file not named .csv */
        write_bytes("bad/emnist-balanced-text-images-idx3-ubyte", "12,0,0,0,0,0,0,0,0\n", 19,
                    0);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-text-images-idx3-ubyte")};
        expect_fail("text as IDX", &o, o.data, "CSV files must be named *.csv");
        free(b);
    }
    /* count mismatch, labels: wrong magic, out of range, truncated; images truncated/longer */
    {
        uint8_t l2[128];
        write_bytes("bad/emnist-balanced-count-images-idx3-ubyte.gz", img, ni, 1);
        write_bytes("bad/emnist-balanced-count-labels-idx1-ubyte.gz", l2,
                    idx_labels(l2, n - 1, 0x801, lab), 1);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-count-images-idx3-ubyte.gz")};
        expect_fail("count mismatch", &o, "emnist-balanced-count-labels-idx1-ubyte.gz",
                    "7 labels, but emnist-balanced-count-images-idx3-ubyte.gz has 8 images");

        write_bytes("bad/emnist-balanced-lmagic-images-idx3-ubyte", img, ni, 0);
        write_bytes("bad/emnist-balanced-lmagic-labels-idx1-ubyte", l2,
                    idx_labels(l2, n, 0x803, lab), 0);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-lmagic-images-idx3-ubyte")};
        expect_fail("labels wrong magic", &o, "emnist-balanced-lmagic-labels-idx1-ubyte",
                    "bad magic 0x00000803, expected 0x00000801");

        uint8_t badlab[8];
        memcpy(badlab, lab, sizeof badlab);
        badlab[5] = 47;
        write_bytes("bad/emnist-balanced-range-images-idx3-ubyte", img, ni, 0);
        write_bytes("bad/emnist-balanced-range-labels-idx1-ubyte", l2,
                    idx_labels(l2, n, 0x801, badlab), 0);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-range-images-idx3-ubyte")};
        expect_fail("label out of range", &o, "emnist-balanced-range-labels-idx1-ubyte",
                    "label 47 of image 5 is not a class of the mapping");

        write_bytes("bad/emnist-balanced-lshort-images-idx3-ubyte", img, ni, 0);
        write_bytes("bad/emnist-balanced-lshort-labels-idx1-ubyte", lb, nl - 3, 0);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-lshort-images-idx3-ubyte")};
        expect_fail("labels truncated", &o, "emnist-balanced-lshort-labels-idx1-ubyte",
                    "file ends after 5 of 8 labels");

        write_bytes("bad/emnist-balanced-short-images-idx3-ubyte", img, ni - 784 - 5, 0);
        write_bytes("bad/emnist-balanced-short-labels-idx1-ubyte", lb, nl, 0);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-short-images-idx3-ubyte")};
        expect_fail("images truncated", &o, o.data, "file ends after 6 of 8 images");

        uint8_t *longer = malloc(ni + 10);
        memcpy(longer, img, ni);
        memset(longer + ni, 7, 10);
        write_bytes("bad/emnist-balanced-long-images-idx3-ubyte.gz", longer, ni + 10, 1);
        write_bytes("bad/emnist-balanced-long-labels-idx1-ubyte.gz", lb, nl, 1);
        free(longer);
        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-long-images-idx3-ubyte.gz")};
        expect_fail("images longer than header", &o, o.data, "data after the last of the 8");

        o = (cg_data_opts){.data = tpath("bad/emnist-balanced-nolab-images-idx3-ubyte")};
        write_bytes("bad/emnist-balanced-nolab-images-idx3-ubyte", img, ni, 0);
        expect_fail("labels file missing", &o, "emnist-balanced-nolab-labels-idx1-ubyte",
                    "No such file");
        write_bytes("bad/pictures.bin", img, ni, 0);
        o = (cg_data_opts){.data = tpath("bad/pictures.bin")};
        expect_fail("labels name underivable", &o, o.data, "pass --labels FILE");
        o = (cg_data_opts){.data = tpath("bad/pictures.bin"), .labels = tpath("bad")};
        expect_fail("labels is a directory", &o, tpath("bad"), "is a directory");
    }
    /* mapping files */
    {
        write_bytes("map/emnist-balanced-m-images-idx3-ubyte", img, ni, 0);
        write_bytes("map/emnist-balanced-m-labels-idx1-ubyte", lb, nl, 0);
        write_bytes("map/emnist-balanced-mapping.txt", "0 48\n1 x49\n", 11, 0);
        o = (cg_data_opts){.data = tpath("map/emnist-balanced-m-images-idx3-ubyte")};
        expect_fail("bad mapping line", &o, "emnist-balanced-mapping.txt", "line 2");
        write_bytes("map/emnist-balanced-mapping.txt", "0 48\n0 49\n", 10, 0);
        expect_fail("duplicate mapping", &o, "emnist-balanced-mapping.txt",
                    "class 0 appears twice");
        write_bytes("map/emnist-balanced-mapping.txt", "0 48\n1 49\n", 10, 0);
        expect_fail("label beyond mapping", &o, "emnist-balanced-m-labels-idx1-ubyte",
                    "label 2 of image 2 is not a class of the mapping (emnist-balanced-mapping.txt "
                    "has classes 0..1)");
        o.mapping = tpath("map/none.txt");
        expect_fail("--mapping missing", &o, "map/none.txt", "No such file");
    }
    /* CSV problems: three rows of the pattern with one edit each */
    {
        static const struct {
            const char *file, *what, *problem;
            int line, field;      /* field to edit (1 = label), 1-based */
            const char *value;    /* its new text; NULL = drop it */
            const char *after;    /* text appended to that line ("" = none) */
            const char *before;   /* text put before the whole file */
        } cases[] = {
            {"short.csv", "CSV short row", "line 2: 784 fields, expected 785", 2, 785, NULL, "",
             ""},
            {"long.csv", "CSV long row", "line 2: more than 785 fields", 2, 0, NULL, ",0", ""},
            {"nonnum.csv", "CSV non-numeric field", "line 3, field 5: 'x7' is not an integer", 3,
             5, "x7", "", ""},
            {"float.csv", "CSV non-integer field", "line 1, field 9: '1.5' is not an integer", 1,
             9, "1.5", "", ""},
            {"above.csv", "CSV value above 255", "line 1, field 3: value 256 is above 255", 1, 3,
             "256", "", ""},
            {"negative.csv", "CSV negative value", "line 1, field 2: '-1' is not an integer", 1,
             2, "-1", "", ""},
            {"label.csv", "CSV label out of range", "line 2: label 47 is not a class", 2, 1, "47",
             "", ""},
            {"comma.csv", "CSV empty last field", "line 1, field 786: empty field", 1, 0, NULL,
             ",", ""},
            {"header.csv", "CSV header line", "line 1 is a header", 0, 0, NULL, "",
             "label,pixel1,pixel2,pixel3\n"},
            {"blank.csv", "CSV blank line inside", "line 2 is empty", 1, 0, NULL, "\n", ""},
            {"binary.csv", "CSV that is binary", "line 1, field 1: '?\?\?' is not an integer", 0, 0,
             NULL, "", "\x01\x02\xff,\n"},
        };
        char *t = malloc(64 * 4000);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            size_t len = (size_t)sprintf(t, "%s", cases[k].before);
            for (int i = 0; i < 3; i++) {
                for (int f = 1; f <= 785; f++) {
                    int v = f == 1 ? lab[i] : pat(i, (f - 2) % 28, (f - 2) / 28);
                    const char *sep = f == 1 ? "" : ",";
                    if (i + 1 == cases[k].line && f == cases[k].field) {
                        if (cases[k].value)
                            len += (size_t)sprintf(t + len, "%s%s", sep, cases[k].value);
                    } else {
                        len += (size_t)sprintf(t + len, "%s%d", sep, v);
                    }
                }
                if (i + 1 == cases[k].line)
                    len += (size_t)sprintf(t + len, "%s", cases[k].after);
                len += (size_t)sprintf(t + len, "\n");
            }
            char name[64];
            snprintf(name, sizeof name, "csv/%s", cases[k].file);
            write_bytes(name, t, len, 0);
            o = (cg_data_opts){.data = tpath(name)};
            expect_fail(cases[k].what, &o, o.data, cases[k].problem);
        }
        free(t);
    }
    o = (cg_data_opts){.data = tmpdir, .limit = -3};
    expect_fail("negative limit", &o, "--limit", "must be >= 0");
    free(img);
}

/* Run before MPI starts: forks a child that drops root (root ignores file permissions) and
 * opens a file with mode 000, to see EACCES reported with the file name. */
static void test_permission(void)
{
    const char *p = tpath("secret-images-idx3-ubyte");
    uint8_t junk[32] = {0};
    write_bytes("secret-images-idx3-ubyte", junk, sizeof junk, 0);
    chmod(p, 0);
    int fd[2];
    if (pipe(fd) != 0) {
        CHECK(0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        cg_error e = {{0}};
        int rc = -2;
        if (geteuid() != 0 || (setgid(65534) == 0 && setuid(65534) == 0)) {
            cg_dataset ds;
            cg_data_opts o = {.data = p, .labels = p};
            rc = cg_data_load_local(&o, &ds, &e);
        } else {
            snprintf(e.msg, sizeof e.msg, "cannot drop root: %s", strerror(errno));
        }
        if (write(fd[1], &rc, sizeof rc) < 0 || write(fd[1], e.msg, sizeof e.msg) < 0)
            _exit(3);
        _exit(0);
    }
    close(fd[1]);
    int rc = 0;
    cg_error e = {{0}};
    CHECK(read(fd[0], &rc, sizeof rc) == sizeof rc);
    CHECK(read(fd[0], e.msg, sizeof e.msg) > 0);
    close(fd[0]);
    waitpid(pid, NULL, 0);
    CHECKF(rc == -1 && strstr(e.msg, p) && strstr(e.msg, "Permission denied"),
           "unreadable file: rc %d, '%s'", rc, e.msg);
    printf("  ok %-28s %s\n", "unreadable file", e.msg);
    chmod(p, 0644);
}

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/chargan-data-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    chmod(tmpdir, 0755); /* the permission test's unprivileged child must reach files here */
    static const char *const sub[] = {"mixed", "csv", "letters", "bad", "map"};
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        mkdir(tpath(sub[i]), 0755);
    unsetenv("EMNIST_DIR");
    test_permission();

    cg_ctx c;
    cg_ctx_init(&c, &argc, &argv);
    ctx = &c;
    test_good_idx();
    test_batch();
    test_csv();
    test_letters();
    test_bad_inputs();
    cg_ctx_finalize(&c);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_data");
}
