/* Memory is bounded by what a data file holds, not by what its header claims. Crafted files
 * (written here, in a temporary directory) claim up to 2^32-1 images while holding three, or
 * are gzip bombs (a 64 KB file that inflates to 64 MB of zeros); CSV files hold millions of
 * blank or short lines; a mapping file is far larger than any mapping. Each must fail with
 * one line naming the file and the problem, or (with --limit) load what it really holds.
 *
 * Every case runs through cg_data_load (one MPI rank, the node-shared window) and
 * cg_data_load_local, with the address space limited to what the process uses plus 256 MB
 * (RLIMIT_AS), so that allocating what a header claims fails, and with the growth of the
 * peak RSS bounded (VmHWM, reset per case through /proc/self/clear_refs), so that touching
 * memory for data that is not there fails. ASan reserves terabytes of address space, so its
 * builds skip RLIMIT_AS (and say so); every other check still runs.
 *
 * With MPI, a sanitizer build runs without leak detection, as test_data does: Open MPI keeps
 * allocations past MPI_Finalize. With the argument --no-mpi only cg_data_load_local runs
 * (no MPI_Init), so that ASAN_OPTIONS=detect_leaks=1 checks these paths for leaks. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

#include "chargan/data.h"
#include "chargan/dist.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TB_ASAN 1
#endif
#endif
#ifndef TB_ASAN
#define TB_ASAN 0
#endif

#if TB_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif

#define CLAIM_2G1 0x7fffffffu
#define CLAIM_2G 0x80000000u
#define CLAIM_4G1 0xffffffffu
/* Inflated size of the gzip bombs: far more than the peak RSS bound below, little enough
 * to inflate a few times within a second or two. */
#define BOMB_BYTES (64u << 20)
/* Peak RSS growth allowed per load: a few MB of buffers (zlib, the 1 MB counting and CSV
 * buffers, MPI's window bookkeeping). Touching the data a bomb inflates to would exceed it
 * twice over. */
#define RSS_BOUND_MB 32.0
#define AS_MARGIN (256ull << 20)

static char tmpdir[256];
static cg_ctx *ctx; /* NULL with --no-mpi */

static const char *tpath(const char *name)
{
    static char buf[32][512]; /* enough for every path of one table of cases */
    static int k;
    k = (k + 1) % 32;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "cannot %s %s: %s\n", what, path, strerror(errno));
    exit(2);
}

/* ---------------------------------------------------------------- crafting files */

static uint8_t pat(long i, int j) { return (uint8_t)((i * 31 + j * 7) & 255); }

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* An IDX images (magic 0x803) or labels (0x801) file whose header claims `claim` items and
 * which holds `real` of them (pattern pixels, labels i % 10), plain or gzip. */
static void write_idx(const char *name, int images, uint32_t claim, long real, int gz)
{
    const size_t hdr = images ? 16 : 8, item = images ? CG_IMG_PIXELS : 1;
    const size_t len = hdr + (size_t)real * item;
    uint8_t *b = malloc(len);
    if (!b)
        die("allocate for", name);
    put_be32(b, images ? 0x803 : 0x801);
    put_be32(b + 4, claim);
    if (images) {
        put_be32(b + 8, 28);
        put_be32(b + 12, 28);
    }
    for (long i = 0; i < real; i++)
        for (size_t j = 0; j < item; j++)
            b[hdr + (size_t)i * item + j] = images ? pat(i, (int)j) : (uint8_t)(i % 10);
    const char *p = tpath(name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        if (!f || gzwrite(f, b, (unsigned)len) != (int)len || gzclose(f) != Z_OK)
            die("write", p);
    } else {
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(b, 1, len, f) != len || fclose(f))
            die("write", p);
    }
    free(b);
}

/* `total` bytes of `byte` as one gzip member at level 9, streamed 1 MB at a time. */
static void write_gz_fill(const char *path, int byte, size_t total)
{
    static uint8_t chunk[1 << 20];
    memset(chunk, byte, sizeof chunk);
    gzFile f = gzopen(path, "wb9");
    if (!f)
        die("create", path);
    for (size_t done = 0; done < total;) {
        const size_t n = total - done < sizeof chunk ? total - done : sizeof chunk;
        if (gzwrite(f, chunk, (unsigned)n) != (int)n)
            die("write", path);
        done += n;
    }
    if (gzclose(f) != Z_OK)
        die("close", path);
}

static void append_file(const char *dst, const char *src)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "ab");
    if (!in || !out)
        die("append to", dst);
    char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k)
            die("append to", dst);
    fclose(in);
    if (fclose(out))
        die("close", dst);
}

/* A gzip bomb: an IDX header claiming `claim` items, then the BOMB_BYTES of zeros deflated
 * once into zeros.gz. The header is a gzip member of its own and the zeros a second one:
 * gzip readers take concatenated members as one stream (RFC 1952), and the zeros need
 * deflating only once for all the bombs. */
static void write_bomb(const char *name, int images, uint32_t claim)
{
    write_idx(name, images, claim, 0, 1);
    append_file(tpath(name), tpath("zeros.gz"));
}

/* One Kaggle CSV row of the pattern, with label i % 10. */
static size_t csv_row_text(char *out, long i)
{
    size_t k = (size_t)sprintf(out, "%ld", i % 10);
    for (int j = 0; j < CG_IMG_PIXELS; j++)
        k += (size_t)sprintf(out + k, ",%d", pat(i, j));
    out[k++] = '\n';
    return k;
}

/* A plain file: `head` (may be empty), then `line` repeated `times` times. */
static void write_repeated(const char *name, const char *head, size_t head_len, const char *line,
                           long times)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(head, 1, head_len, f) != head_len)
        die("write", p);
    const size_t n = strlen(line);
    for (long i = 0; i < times; i++)
        if (fwrite(line, 1, n, f) != n)
            die("write", p);
    if (fclose(f))
        die("close", p);
}

/* ---------------------------------------------------------------- memory */

/* A field of /proc/self/status in MB ("VmHWM", "VmRSS", "VmSize"), -1 if unavailable. */
static double status_mb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    double mb = -1;
    const size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            mb = atof(line + n + 1) / 1024.0;
            break;
        }
    fclose(f);
    return mb;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Limits the address space to its current size plus AS_MARGIN (not in ASan builds). */
static void limit_as(struct rlimit *saved)
{
    getrlimit(RLIMIT_AS, saved);
    if (TB_ASAN)
        return;
    const double vm = status_mb("VmSize");
    if (vm < 0) {
        CHECKF(0, "no VmSize in /proc/self/status: cannot limit the address space");
        return;
    }
    struct rlimit lim = *saved;
    lim.rlim_cur = (rlim_t)(vm * 1048576.0) + AS_MARGIN;
    if (saved->rlim_max != RLIM_INFINITY && lim.rlim_cur > saved->rlim_max)
        lim.rlim_cur = saved->rlim_max;
    if (setrlimit(RLIMIT_AS, &lim) != 0) {
        CHECKF(0, "setrlimit(RLIMIT_AS): %s", strerror(errno));
    }
}

/* ---------------------------------------------------------------- cases */

typedef struct {
    const char *name;
    cg_data_opts o;
    const char *file;    /* the file the message must name; NULL: the load must succeed */
    const char *problem; /* what the message must say; with file NULL: unused */
    long n;              /* with file NULL: the images expected */
    int lab_mod;         /* with file NULL: image i has label i % lab_mod */
} bounds_case;

static double peak_mb_max; /* the largest growth seen, for the summary */

/* The loaded images must be the pattern (CSV and IDX store them transposed). */
static void check_loaded(const bounds_case *c, const cg_dataset *ds)
{
    CHECKF(ds->n == c->n, "%s: %ld images, expected %ld", c->name, ds->n, c->n);
    long bad = 0;
    for (long i = 0; i < ds->n && i < c->n; i++) {
        for (int r = 0; r < 28; r++)
            for (int col = 0; col < 28; col++)
                bad += ds->pixels[i * CG_IMG_PIXELS + r * 28 + col] != pat(i, col * 28 + r);
        bad += ds->labels[i] != i % c->lab_mod;
    }
    CHECKF(bad == 0, "%s: %ld pixels/labels differ from the pattern", c->name, bad);
}

/* One load of case c, under the address-space limit, with its peak RSS growth checked. */
static void run_once(const bounds_case *c, int local)
{
    cg_dataset ds;
    cg_error e;
    memset(&e, 0, sizeof e);
    const int hwm_reset = reset_peak() == 0;
    const double base = status_mb(hwm_reset ? "VmRSS" : "VmHWM");
    struct rlimit saved;
    limit_as(&saved);
    const double t0 = cg_now();
    const int rc = local ? cg_data_load_local(&c->o, &ds, &e) : cg_data_load(ctx, &c->o, &ds, &e);
    const double t = cg_now() - t0;
    setrlimit(RLIMIT_AS, &saved);
    const double grow = status_mb("VmHWM") - base;
    peak_mb_max = grow > peak_mb_max ? grow : peak_mb_max;
    const char *how = local ? "local" : "mpi";
    CHECKF(grow < RSS_BOUND_MB, "%s (%s): peak RSS grew by %.1f MB, bound %.0f MB", c->name, how,
           grow, RSS_BOUND_MB);
    if (c->file) {
        CHECKF(rc != 0, "%s (%s): load succeeded", c->name, how);
        CHECKF(rc == 0 || strstr(e.msg, c->file), "%s (%s): message does not name %s: %s",
               c->name, how, c->file, e.msg);
        CHECKF(rc == 0 || strstr(e.msg, c->problem), "%s (%s): message lacks '%s': %s",
               c->name, how, c->problem, e.msg);
        CHECKF(rc == 0 || (e.msg[0] && !strchr(e.msg, '\n')), "%s (%s): not one line: %s",
               c->name, how, e.msg);
    } else {
        CHECKF(rc == 0, "%s (%s): %s", c->name, how, e.msg);
    }
    if (rc == 0) {
        if (!c->file)
            check_loaded(c, &ds);
        cg_data_free(&ds);
    }
    printf("  %-5s %-34s peak RSS +%5.1f MB%s  %.2f s  %s\n", how, c->name, grow,
           hwm_reset ? "" : " (since start)", t, rc ? e.msg : "loaded");
}

static void run_case(const bounds_case *c)
{
    if (ctx)
        run_once(c, 0);
    run_once(c, 1);
}

/* ---------------------------------------------------------------- the files and cases */

static void write_idx_files(void)
{
    static const struct {
        const char *stem;
        uint32_t claim;
        int gz;
    } lies[] = {{"raw2g1", CLAIM_2G1, 0}, {"raw2g", CLAIM_2G, 0}, {"raw4g1", CLAIM_4G1, 0},
                {"gz2g1", CLAIM_2G1, 1}};
    char name[128];
    for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
        const char *gz = lies[k].gz ? ".gz" : "";
        snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", lies[k].stem, gz);
        write_idx(name, 1, lies[k].claim, 3, lies[k].gz);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", lies[k].stem, gz);
        write_idx(name, 0, lies[k].claim, 3, lies[k].gz); /* the labels repeat the lie */
    }
    write_idx("labels3-idx1-ubyte", 0, 3, 3, 0);
    write_idx("good3-images-idx3-ubyte.gz", 1, 3, 3, 1);
    write_idx("good3-labels-idx1-ubyte.gz", 0, 3, 3, 1);
    write_gz_fill(tpath("zeros.gz"), 0, BOMB_BYTES);
    write_bomb("bomb2g1-images-idx3-ubyte.gz", 1, CLAIM_2G1);
    write_bomb("bomb2g1-labels-idx1-ubyte.gz", 0, CLAIM_2G1);
    write_bomb("bomb5m-images-idx3-ubyte.gz", 1, 5000000);
    write_idx("bomb5m-labels-idx1-ubyte.gz", 0, 5000000, 5000000, 1); /* labels all there */
    write_bomb("lbomb3-idx1-ubyte.gz", 0, 3);
    write_bomb("lbomb2g1-idx1-ubyte.gz", 0, CLAIM_2G1);
}

static void write_text_files(void)
{
    char *rows = malloc(3 * 4096);
    size_t len = 0;
    for (long i = 0; i < 3; i++)
        len += csv_row_text(rows + len, i);
    write_repeated("blank.csv", "", 0, "\n", 5000000);
    write_repeated("short.csv", "", 0, "1\n", 2000000);
    write_repeated("tail.csv", rows, len, "1,2,3\n", 1);
    gzFile f = gzopen(tpath("blanktail.csv.gz"), "wb");
    if (!f || gzwrite(f, rows, (unsigned)len) != (int)len || gzclose(f) != Z_OK)
        die("write", tpath("blanktail.csv.gz"));
    write_gz_fill(tpath("newlines.gz"), '\n', 4u << 20);
    append_file(tpath("blanktail.csv.gz"), tpath("newlines.gz"));
    char *zeros = malloc((1 << 20) + 1);
    memset(zeros, '0', 1 << 20);
    zeros[1 << 20] = 0;
    write_repeated("hugeline.csv", "", 0, zeros, 16); /* one line of 16 MB */
    free(zeros);
    char digits[128]; /* a good mapping of the digits, then blank lines */
    size_t k = 0;
    for (int i = 0; i < 10; i++)
        k += (size_t)sprintf(digits + k, "%d %d\n", i, '0' + i);
    write_repeated("big-mapping.txt", digits, k, "\n", 100000);
    free(rows);
}

/* A case that must fail naming `file` with `problem`, and one that must load n images
 * labelled i % mod; the rest are the cg_data_opts fields. */
#define FAILS(name, file, problem, ...) {name, {__VA_ARGS__}, file, problem, 0, 0}
#define LOADS(name, n, mod, ...) {name, {__VA_ARGS__}, NULL, "", n, mod}

static void run_idx_cases(void)
{
    const char *raw = tpath("raw2g1-images-idx3-ubyte"), *gz = tpath("gz2g1-images-idx3-ubyte.gz");
    const char *good = tpath("good3-images-idx3-ubyte.gz"), *lb3 = tpath("lbomb3-idx1-ubyte.gz");
    const char *lb2g1 = tpath("lbomb2g1-idx1-ubyte.gz");
    const char *b2g1 = tpath("bomb2g1-images-idx3-ubyte.gz");
    const char *b5m = tpath("bomb5m-images-idx3-ubyte.gz");
    const char *ends3 = "file ends after 3 of 2147483647 images (truncated)";
    const bounds_case cases[] = {
        FAILS("plain, claims 2^31-1, holds 3", raw, ends3, .data = raw),
        FAILS("plain, labels claim 3", raw, ends3, .data = raw,
              .labels = tpath("labels3-idx1-ubyte")),
        FAILS("plain, claims 2^31", "raw2g-images",
              "file ends after 3 of 2147483648 images (truncated)",
              .data = tpath("raw2g-images-idx3-ubyte")),
        FAILS("plain, claims 2^32-1", "raw4g1-images",
              "file ends after 3 of 4294967295 images (truncated)",
              .data = tpath("raw4g1-images-idx3-ubyte")),
        FAILS("gzip, claims 2^31-1, holds 3", gz, ends3, .data = gz),
        FAILS("gzip bomb, claims 2^31-1", b2g1,
              "file ends after 85598 of 2147483647 images (truncated)", .data = b2g1),
        FAILS("gzip bomb, claims 5,000,000", b5m,
              "file ends after 85598 of 5000000 images (truncated)", .data = b5m),
        FAILS("labels bomb, claims 3", lb3, "data after the last of the 3 labels", .data = good,
              .labels = lb3),
        FAILS("labels bomb, claims 2^31-1", lb2g1,
              "2147483647 labels, but good3-images-idx3-ubyte.gz has 3 images", .data = good,
              .labels = lb2g1),
        FAILS("labels bomb, images claim 2^31-1", raw, ends3, .data = raw, .labels = lb2g1),
        /* the bomb's labels are zeros */
        LOADS("both claim 2^31-1, --limit 3", 3, 1, .data = gz, .labels = lb2g1, .limit = 3),
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        run_case(&cases[k]);
}

static void run_text_cases(void)
{
    const char *blank = tpath("blank.csv"), *shrt = tpath("short.csv"), *tail = tpath("tail.csv");
    const char *huge = tpath("hugeline.csv"), *map = tpath("big-mapping.txt");
    const bounds_case cases[] = {
        FAILS("CSV of 5,000,000 blank lines", blank, "no rows", .data = blank),
        FAILS("CSV of 2,000,000 short lines", shrt, "line 1: 1 fields, expected 785",
              .data = shrt),
        LOADS("CSV rows, then 4M blank lines (gzip)", 3, 10, .data = tpath("blanktail.csv.gz")),
        FAILS("CSV of one 16 MB line", huge, "line 1 is longer than 8192 bytes", .data = huge),
        FAILS("CSV rows, then a short line", tail, "line 4: 3 fields, expected 785",
              .data = tail),
        LOADS("CSV rows, short line, --limit 3", 3, 10, .data = tail, .limit = 3),
        FAILS("mapping of 100,000 lines", map, "too large for a mapping file",
              .data = tpath("good3-images-idx3-ubyte.gz"), .mapping = map),
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        run_case(&cases[k]);
}

int main(int argc, char **argv)
{
    const int no_mpi = argc > 1 && !strcmp(argv[1], "--no-mpi");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/chargan-bounds-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("create", tmpdir);
    const double t0 = cg_now();
    write_idx_files();
    write_text_files();
    printf("crafted files written in %.2f s\n", cg_now() - t0);
    if (TB_ASAN)
        printf("ASan build: RLIMIT_AS not set (ASan reserves terabytes of address space); the "
               "messages and the peak RSS are still checked\n");
    cg_ctx c;
    if (!no_mpi) {
        cg_ctx_init(&c, &argc, &argv);
        ctx = &c;
    }
    run_idx_cases();
    run_text_cases();
    printf("largest peak RSS growth %.1f MB (bound %.0f MB); total %.2f s\n", peak_mb_max,
           RSS_BOUND_MB, cg_now() - t0);
    if (ctx)
        cg_ctx_finalize(&c);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_data_bounds");
}
