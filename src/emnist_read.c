/* Reading EMNIST files: see emnist_read.h. */
#include "emnist_read.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CSV_FIELDS (1 + CG_IMG_PIXELS)
/* A CSV row has at most 785 fields of 3 digits plus separators and CR (3141 bytes); a longer
 * line cannot be a row, and bounding it keeps the streaming buffer fixed-size. */
#define CSV_MAX_LINE 8192
#define CSV_CHUNK (1 << 20)
/* A row is 785 fields of at least one digit with 784 commas between them: a shorter line is
 * never a row, so only longer ones are counted as rows to allocate. Each slot (785 bytes) is
 * then backed by at least 1569 bytes of the file's content, whatever it holds: millions of
 * blank or short lines cost nothing. */
#define CSV_MIN_ROW (2 * CSV_FIELDS - 1)
/* What a gzip IDX file holds is counted before anything is allocated for it, by inflating
 * into this much memory at a time. 1 MB is at least twice gzread's own buffer (set in
 * open_gz), so zlib inflates straight into it instead of copying through its buffer. */
#define COUNT_CHUNK (1 << 20)
/* A mapping file has at most CG_MAX_CLASSES lines of a few bytes (EMNIST's are under 1 KB);
 * a larger file is not one, and is refused before its lines are read. */
#define MAPPING_MAX_BYTES (64 * 1024)
#define EMNIST_HELP                                                                             \
    "download the EMNIST gzip release from "                                                    \
    "https://www.nist.gov/itl/products-and-services/emnist-dataset (unzip it into "           \
    "./data/emnist or point EMNIST_DIR or --data at it) or the Kaggle CSVs (crawford/emnist)"

/* ---------------------------------------------------------------- small helpers */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

long cg_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static int join(char *out, const char *dir, const char *name)
{
    int k = snprintf(out, CG_PATH, "%s/%s", dir, name);
    return k > 0 && k < CG_PATH ? 0 : -1;
}

static int copy_str(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(out, s, n + 1);
    return 0;
}

/* Checks what fopen/gzopen would find before opening, so the message says exactly what is
 * wrong ("No such file", "Is a directory", "empty file") instead of a later read failure. */
static int check_readable(const char *path, const char *what, cg_error *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cg_fail(e, "%s: cannot open %s: %s", path, what, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cg_fail(e, "%s: cannot read %s: is a directory", path, what);
    if (st.st_size == 0)
        return cg_fail(e, "%s: empty file (0 bytes), expected %s", path, what);
    return 0;
}

static int open_gz(const char *path, const char *what, gzFile *out, cg_error *e)
{
    if (check_readable(path, what, e))
        return -1;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return cg_fail(e, "%s: cannot open %s: %s", path, what,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 18); /* fewer read() calls; the default 8 KB is slow for 30 MB files */
    *out = f;
    return 0;
}

/* Reads up to len bytes (gzread takes an unsigned int, so in pieces). Returns bytes read;
 * *zerr gets the zlib error (Z_OK, or Z_BUF_ERROR for a gzip stream cut short, ...). */
static size_t gz_read_all(gzFile f, void *buf, size_t len, int *zerr, const char **zmsg)
{
    size_t got = 0;
    *zerr = Z_OK;
    *zmsg = "";
    while (got < len) {
        size_t want = len - got;
        if (want > (1u << 30))
            want = 1u << 30;
        int k = gzread(f, (char *)buf + got, (unsigned)want);
        if (k > 0)
            got += (size_t)k;
        if (k <= 0 || (size_t)k < want) {
            *zmsg = gzerror(f, zerr);
            if (k > 0 && *zerr == Z_OK)
                continue; /* short read at the end of one gzip member: try the next */
            break;
        }
    }
    if (got == len)
        *zerr = Z_OK;
    return got;
}

/* gzerror() messages start with "PATH: "; ours already name the file. */
static const char *zlib_reason(const char *path, const char *zmsg)
{
    size_t n = strlen(path);
    return !strncmp(zmsg, path, n) && !strncmp(zmsg + n, ": ", 2) ? zmsg + n + 2 : zmsg;
}

/* Describes why fewer bytes than expected came out of a file. */
static int short_read(cg_error *e, const char *path, int zerr, const char *zmsg,
                      const char *what_fmt_done)
{
    zmsg = zlib_reason(path, zmsg);
    if (zerr == Z_BUF_ERROR)
        return cg_fail(e, "%s: truncated gzip data (%s) after %s", path, zmsg, what_fmt_done);
    if (zerr != Z_OK)
        return cg_fail(e, "%s: damaged gzip data (%s) after %s", path,
                       zerr == Z_ERRNO ? strerror(errno) : zmsg, what_fmt_done);
    return cg_fail(e, "%s: file ends after %s (truncated)", path, what_fmt_done);
}

/* After the last expected byte: the file must end here. Reading one more byte also makes
 * zlib reach the gzip trailer, so a wrong CRC or a cut trailer is noticed. */
static int expect_end(gzFile f, const char *path, const char *what, cg_error *e)
{
    unsigned char extra;
    int k = gzread(f, &extra, 1);
    if (k == 1)
        return cg_fail(e, "%s: data after the last of %s (file longer than its header says)",
                       path, what);
    int zerr;
    const char *zmsg = zlib_reason(path, gzerror(f, &zerr));
    if (zerr == Z_BUF_ERROR)
        return cg_fail(e, "%s: truncated gzip data (%s) after all of %s", path, zmsg, what);
    if (zerr != Z_OK)
        return cg_fail(e, "%s: damaged gzip data (%s) after all of %s", path, zmsg, what);
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---------------------------------------------------------------- mapping */

static void set_builtin_mapping(reader *r, const char *family)
{
    static const char merged[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt";
    static const char all[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const char *use = merged, *name = "balanced";
    int first = 0;
    if (!strcmp(family, "byclass"))
        use = all, name = family;
    else if (!strcmp(family, "bymerge"))
        name = family;
    else if (!strcmp(family, "digits") || !strcmp(family, "mnist"))
        use = "0123456789", name = family;
    else if (!strcmp(family, "letters"))
        use = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", name = family, first = 1; /* classes 1..26 */
    memset(r->chars, 0, sizeof r->chars);
    r->present = 0;
    int k = first;
    for (const char *p = use; *p; p++, k++) {
        r->chars[k] = *p;
        r->present |= 1ull << k;
    }
    r->n_classes = k;
    r->mapping[0] = 0;
    snprintf(r->map_desc, sizeof r->map_desc, "built-in %s mapping", name);
}

/* The integers of one mapping line, at most 4, into v; returns how many, 0 for a blank line,
 * -1 for a field that is not an integer. */
static int mapping_fields(const char *line, long v[4])
{
    int nv = 0;
    const char *p = line;
    char *end;
    while (nv < 4) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\r' || *p == 0)
            break;
        errno = 0;
        v[nv] = strtol(p, &end, 10);
        if (end == p || errno || (*end && !strchr(" \t\r\n", *end)))
            return -1;
        nv++;
        p = end;
    }
    return nv;
}

/* One line "index ascii_code" (or "index upper lower") of a mapping file. */
static int add_mapping_line(reader *r, const char *path, int lineno, const long *v, int nv,
                            cg_error *e)
{
    if (nv < 2 || nv > 3)
        return cg_fail(e, "%s: line %d: expected 'index ascii_code' (or 'index upper lower'), "
                          "not a mapping file", path, lineno);
    if (v[0] < 0 || v[0] >= CG_MAX_CLASSES)
        return cg_fail(e, "%s: line %d: class index %ld outside 0..%d", path, lineno, v[0],
                       CG_MAX_CLASSES - 1);
    if (v[1] < 33 || v[1] > 126)
        return cg_fail(e, "%s: line %d: code %ld is not a printable ASCII character", path,
                       lineno, v[1]);
    if (r->present & (1ull << v[0]))
        return cg_fail(e, "%s: line %d: class %ld appears twice", path, lineno, v[0]);
    r->present |= 1ull << v[0];
    r->chars[v[0]] = (char)v[1];
    if (v[0] + 1 > r->n_classes)
        r->n_classes = (int)v[0] + 1;
    return 0;
}

static int read_mapping(reader *r, const char *path, cg_error *e)
{
    if (check_readable(path, "an EMNIST mapping file", e))
        return -1;
    const long size = cg_file_size(path);
    if (size > MAPPING_MAX_BYTES)
        return cg_fail(e, "%s: %ld bytes is too large for a mapping file (one line per class, "
                          "at most %d classes)", path, size, CG_MAX_CLASSES);
    FILE *f = fopen(path, "r");
    if (!f)
        return cg_fail(e, "%s: cannot open mapping file: %s", path, strerror(errno));
    memset(r->chars, 0, sizeof r->chars);
    r->present = 0;
    r->n_classes = 0;
    char line[256];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        long v[4];
        const int nv = mapping_fields(line, v);
        if (nv != 0) /* else a blank line */
            rc = add_mapping_line(r, path, lineno, v, nv, e);
    }
    if (!rc && ferror(f))
        rc = cg_fail(e, "%s: read error: %s", path, strerror(errno));
    if (!rc && r->n_classes == 0)
        rc = cg_fail(e, "%s: no classes in mapping file", path);
    fclose(f);
    if (!rc) {
        copy_str(r->mapping, sizeof r->mapping, path);
        snprintf(r->map_desc, sizeof r->map_desc, "%s", base_name(path));
    }
    return rc;
}

/* The mapping for data in `dir` of family r->family: explicit file, file by name, built in. */
static int find_mapping(reader *r, const char *explicit_path, const char *dir, cg_error *e)
{
    if (explicit_path)
        return read_mapping(r, explicit_path, e);
    if (r->family[0]) {
        char name[128], path[CG_PATH];
        snprintf(name, sizeof name, "emnist-%s-mapping.txt", r->family);
        if (join(path, dir, name) == 0 && is_file(path))
            return read_mapping(r, path, e);
    }
    set_builtin_mapping(r, r->family);
    return 0;
}

static void describe_classes(const reader *r, char *out, size_t cap)
{
    int lo = 0;
    while (lo < CG_MAX_CLASSES && !(r->present & (1ull << lo)))
        lo++;
    snprintf(out, cap, "%s has classes %d..%d", r->map_desc, lo, r->n_classes - 1);
}

/* ---------------------------------------------------------------- finding files */

/* Split names of EMNIST files in dir, comma separated, sorted. */
static int list_splits(const char *dir, char *out, size_t cap)
{
    char names[32][96];
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 32) {
        const char *s = de->d_name;
        if (strncmp(s, "emnist-", 7))
            continue;
        s += 7;
        const char *stop = strstr(s, "-images-idx3-ubyte");
        if (!stop && (ends_with(s, ".csv") || ends_with(s, ".csv.gz")))
            stop = strstr(s, ".csv");
        if (!stop || stop == s || (size_t)(stop - s) >= sizeof names[0])
            continue;
        char name[96];
        memcpy(name, s, (size_t)(stop - s));
        name[stop - s] = 0;
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= !strcmp(names[i], name);
        if (!dup)
            memcpy(names[n++], name, sizeof name);
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[96];
            memcpy(t, names[j], sizeof t);
            memcpy(names[j], names[j - 1], sizeof t);
            memcpy(names[j - 1], t, sizeof t);
        }
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? ", " : "", names[i]);
    return n;
}

static void set_family(reader *r)
{
    size_t k = strcspn(r->split, "-");
    if (k >= sizeof r->family)
        k = sizeof r->family - 1;
    memcpy(r->family, r->split, k);
    r->family[k] = 0;
}

static int resolve_dir(reader *r, const char *dir, const cg_data_opts *o, cg_error *e)
{
    const char *split = o->split && *o->split ? o->split : "balanced-train";
    if (copy_str(r->split, sizeof r->split, split))
        return cg_fail(e, "split name too long: %.40s...", split);
    set_family(r);
    char name[400];
    static const char *const gz[] = {".gz", ""};
    for (int i = 0; i < 2 && !r->format; i++) {
        snprintf(name, sizeof name, "emnist-%s-images-idx3-ubyte%s", split, gz[i]);
        if (join(r->images, dir, name) == 0 && is_file(r->images))
            r->format = FMT_IDX;
    }
    if (r->format == FMT_IDX) {
        if (o->labels) {
            if (copy_str(r->labels, sizeof r->labels, o->labels))
                return cg_fail(e, "labels path too long");
        } else {
            for (int i = 0; i < 2 && !r->labels[0]; i++) {
                snprintf(name, sizeof name, "emnist-%s-labels-idx1-ubyte%s", split, gz[i]);
                if (join(r->labels, dir, name) || !is_file(r->labels))
                    r->labels[0] = 0;
            }
            if (!r->labels[0])
                return cg_fail(e, "%s: has the images of split '%s' but no labels file "
                                  "emnist-%s-labels-idx1-ubyte[.gz]", dir, split, split);
        }
    } else {
        static const char *const csv[] = {".csv", ".csv.gz"};
        for (int i = 0; i < 2 && !r->format; i++) {
            snprintf(name, sizeof name, "emnist-%s%s", split, csv[i]);
            if (join(r->images, dir, name) == 0 && is_file(r->images))
                r->format = FMT_CSV;
        }
    }
    if (!r->format) {
        char found[300];
        if (list_splits(dir, found, sizeof found) == 0)
            return cg_fail(e, "%s: no EMNIST files in this directory (expected "
                              "emnist-SPLIT-images-idx3-ubyte.gz or emnist-SPLIT.csv); "
                              EMNIST_HELP, dir);
        return cg_fail(e, "%s: no split '%s' here; splits found: %s; choose one with --split NAME",
                       dir, split, found);
    }
    return find_mapping(r, o->mapping, dir, e);
}

static int resolve_file(reader *r, const char *path, const cg_data_opts *o, cg_error *e)
{
    if (copy_str(r->images, sizeof r->images, path))
        return cg_fail(e, "path too long: %.60s...", path);
    const char *base = base_name(path);
    char dir[CG_PATH];
    size_t dl = (size_t)(base - path);
    if (dl == 0)
        copy_str(dir, sizeof dir, ".");
    else {
        memcpy(dir, path, dl - 1 ? dl - 1 : 1); /* keep "/" for files in the root */
        dir[dl - 1 ? dl - 1 : 1] = 0;
    }
    const char *split_start = strncmp(base, "emnist-", 7) ? NULL : base + 7;
    const char *split_end = NULL;
    if (ends_with(base, ".csv") || ends_with(base, ".csv.gz")) {
        r->format = FMT_CSV;
        split_end = strstr(base, ".csv");
    } else {
        r->format = FMT_IDX;
        split_end = strstr(base, "-images-idx3");
        if (o->labels) {
            if (copy_str(r->labels, sizeof r->labels, o->labels))
                return cg_fail(e, "labels path too long");
        } else {
            const char *at = strstr(base, "images-idx3");
            if (!at)
                return cg_fail(e, "%s: cannot derive the labels file name (no 'images-idx3' "
                                  "in the name); pass --labels FILE", path);
            size_t pre = (size_t)(at - path);
            snprintf(r->labels, sizeof r->labels, "%.*slabels-idx1%s", (int)pre, path,
                     at + strlen("images-idx3"));
            if (!is_file(r->labels)) {
                /* images.gz next to uncompressed labels (or the reverse) */
                char alt[CG_PATH];
                int k;
                if (ends_with(r->labels, ".gz"))
                    k = snprintf(alt, sizeof alt, "%.*s", (int)strlen(r->labels) - 3, r->labels);
                else
                    k = snprintf(alt, sizeof alt, "%s.gz", r->labels);
                if (k > 0 && k < (int)sizeof alt && is_file(alt))
                    copy_str(r->labels, sizeof r->labels, alt);
            }
        }
    }
    if (split_start && split_end && split_end > split_start &&
        (size_t)(split_end - split_start) < sizeof r->split) {
        memcpy(r->split, split_start, (size_t)(split_end - split_start));
        r->split[split_end - split_start] = 0;
        set_family(r);
    }
    return find_mapping(r, o->mapping, dir, e);
}

static int resolve(reader *r, const cg_data_opts *o, cg_error *e)
{
    const char *data = o->data;
    if (!data || !*data) {
        const char *env = getenv("EMNIST_DIR");
        if (env && *env && is_dir(env))
            data = env;
        else if (is_dir("data/emnist"))
            data = "./data/emnist";
        else
            return cg_fail(e, "no EMNIST data found: looked in %s%s and ./data/emnist; "
                              EMNIST_HELP, env && *env ? "EMNIST_DIR=" : "$EMNIST_DIR",
                           env && *env ? env : " (not set)");
    }
    struct stat st;
    if (stat(data, &st) != 0)
        return cg_fail(e, "%s: cannot open data: %s", data, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return resolve_dir(r, data, o, e);
    return resolve_file(r, data, o, e);
}

/* ---------------------------------------------------------------- IDX */

/* The images file's 16-byte header: magic, count and 28x28 size; *n gets the count. */
static int idx_images_header(reader *r, uint32_t *n, cg_error *e)
{
    unsigned char h[16];
    int zerr;
    const char *zmsg;
    size_t got = gz_read_all(r->img, h, 16, &zerr, &zmsg);
    r->img_gz = !gzdirect(r->img);
    uint32_t magic = got >= 4 ? be32(h) : 0x803;
    if (got < 16 && magic == 0x803) {
        char what[64];
        snprintf(what, sizeof what, "%zu of the 16 header bytes", got);
        return short_read(e, r->images, zerr, zmsg, what);
    }
    uint32_t rows = be32(h + 8), cols = be32(h + 12);
    *n = be32(h + 4);
    if (magic != 0x803) {
        if (magic == 0x801)
            return cg_fail(e, "%s: this is an IDX labels file (magic 0x00000801); the images "
                              "file (magic 0x00000803) is needed", r->images);
        int text = 1;
        for (int i = 0; i < 4; i++)
            text &= (h[i] >= 32 && h[i] < 127) || h[i] == '\n' || h[i] == '\r';
        return cg_fail(e, "%s: bad magic 0x%08x, expected 0x00000803 (IDX images)%s", r->images,
                       magic, text ? "; it looks like text: CSV files must be named *.csv" : "");
    }
    if (rows != 28 || cols != 28)
        return cg_fail(e, "%s: images are %ux%u, expected 28x28", r->images, rows, cols);
    if (*n == 0)
        return cg_fail(e, "%s: header says 0 images", r->images);
    return 0;
}

/* The labels file's header (n labels expected) and its first r->cap labels into r->lab. */
static int idx_read_labels(reader *r, gzFile lf, uint32_t n, cg_error *e)
{
    unsigned char h[8];
    int zerr;
    const char *zmsg;
    size_t got = gz_read_all(lf, h, 8, &zerr, &zmsg);
    char what[64];
    if (got < 8) {
        snprintf(what, sizeof what, "%zu of the 8 header bytes", got);
        return short_read(e, r->labels, zerr, zmsg, what);
    }
    if (be32(h) != 0x801)
        return cg_fail(e, "%s: bad magic 0x%08x, expected 0x00000801 (IDX labels)", r->labels,
                       be32(h));
    if (be32(h + 4) != n)
        return cg_fail(e, "%s: %u labels, but %s has %u images", r->labels, be32(h + 4),
                       base_name(r->images), n);
    r->lab = malloc((size_t)r->cap);
    if (!r->lab)
        return cg_fail(e, "%s: out of memory for %ld labels", r->labels, r->cap);
    got = gz_read_all(lf, r->lab, (size_t)r->cap, &zerr, &zmsg);
    if (got < (size_t)r->cap) {
        snprintf(what, sizeof what, "%zu of %ld labels", got, r->n_file);
        return short_read(e, r->labels, zerr, zmsg, what);
    }
    if (r->cap == r->n_file) {
        snprintf(what, sizeof what, "the %ld labels", r->n_file);
        return expect_end(lf, r->labels, what, e);
    }
    return 0;
}

/* Every label read must be a class of the mapping. */
static int idx_check_labels(const reader *r, cg_error *e)
{
    for (long i = 0; i < r->cap; i++)
        if (!(r->present & (1ull << (r->lab[i] & 63))) || r->lab[i] >= CG_MAX_CLASSES) {
            char cls[200];
            describe_classes(r, cls, sizeof cls);
            return cg_fail(e, "%s: label %d of image %ld is not a class of the mapping (%s)",
                           r->labels, r->lab[i], i, cls);
        }
    return 0;
}

/* A plain (not gzip) images file: its size tells what it holds, so nothing more is read. It
 * must hold the r->cap images wanted, and no more than its header says when all are wanted
 * (the same messages as when reading finds it short or long). */
static int idx_check_plain(const reader *r, cg_error *e)
{
    const unsigned long long hdr = 16, px = CG_IMG_PIXELS;
    const unsigned long long size = (unsigned long long)cg_file_size(r->images);
    const unsigned long long whole = hdr + (unsigned long long)r->n_file * px;
    if (size < hdr + (unsigned long long)r->cap * px)
        return cg_fail(e, "%s: file ends after %llu of %ld images (truncated): it holds %llu "
                          "bytes, its header says %llu", r->images,
                       size > hdr ? (size - hdr) / px : 0, r->n_file, size, whole);
    if (r->cap == r->n_file && size > whole)
        return cg_fail(e, "%s: data after the last of the %ld images (file longer than its "
                          "header says): it holds %llu bytes, its header says %llu",
                       r->images, r->n_file, size, whole);
    return 0;
}

/* A gzip images file: what it holds is known only by inflating it, and the images go into
 * memory that must be sized before it exists (the node-shared window, decoded into in
 * place). So the images wanted are inflated once into a fixed COUNT_CHUNK buffer, plus one
 * byte past the last when all are wanted (which also reaches the gzip trailer and its CRC),
 * and the file is rewound to its first image. Memory stays constant whatever the header
 * claims, and no more is inflated than the file holds (or than --limit needs); a gzip bomb
 * costs the time to inflate what it really holds, up to the claim. The price is a second
 * inflate in reader_fill: a gzip split loads in about 1.4 times the time (bymerge-test).
 * Inflating into a private buffer that grows as data arrives, then copying it into the
 * window, would save that time but double the reading rank's peak memory, which the
 * one-copy-per-node window exists to avoid. */
static int idx_count_gz(reader *r, cg_error *e)
{
    unsigned char *buf = malloc(COUNT_CHUNK);
    if (!buf)
        return cg_fail(e, "%s: out of memory", r->images);
    const unsigned long long want = (unsigned long long)r->cap * CG_IMG_PIXELS;
    unsigned long long got = 0;
    int zerr = Z_OK;
    const char *zmsg = "";
    while (got < want) {
        const size_t step = want - got < COUNT_CHUNK ? (size_t)(want - got) : COUNT_CHUNK;
        const size_t k = gz_read_all(r->img, buf, step, &zerr, &zmsg);
        got += k;
        if (k < step)
            break;
    }
    free(buf);
    char what[64];
    if (got < want) {
        snprintf(what, sizeof what, "%llu of %ld images", got / CG_IMG_PIXELS, r->n_file);
        return short_read(e, r->images, zerr, zmsg, what);
    }
    if (r->cap == r->n_file) {
        snprintf(what, sizeof what, "the %ld images", r->n_file);
        if (expect_end(r->img, r->images, what, e))
            return -1;
    }
    unsigned char h[16];
    if (gzrewind(r->img) != 0 || gz_read_all(r->img, h, 16, &zerr, &zmsg) != 16)
        return cg_fail(e, "%s: cannot rewind", r->images);
    return 0;
}

/* The images header, then what the images file really holds, then the labels. The labels
 * come after the images were found present: their buffer is r->cap bytes, backed by the
 * r->cap * 784 bytes of images just found, so no labels header can make it larger than the
 * data; a labels file longer than its header is caught after one byte (expect_end). */
static int idx_open(reader *r, cg_error *e)
{
    if (open_gz(r->images, "IDX images", &r->img, e))
        return -1;
    uint32_t n = 0;
    int rc = idx_images_header(r, &n, e);
    if (rc)
        return rc;
    r->n_file = n;
    r->cap = r->limit > 0 && r->limit < r->n_file ? r->limit : r->n_file;
    rc = r->img_gz ? idx_count_gz(r, e) : idx_check_plain(r, e);
    if (rc)
        return rc;
    gzFile lf = NULL;
    if (open_gz(r->labels, "IDX labels", &lf, e))
        return -1;
    rc = idx_read_labels(r, lf, n, e);
    if (!rc)
        rc = idx_check_labels(r, e);
    gzclose(lf);
    return rc;
}

/* Transposes one 28x28 image in place: both formats store column-major images. */
static void transpose28(uint8_t *p)
{
    for (int r = 0; r < CG_IMG_SIDE; r++)
        for (int c = r + 1; c < CG_IMG_SIDE; c++) {
            uint8_t t = p[r * CG_IMG_SIDE + c];
            p[r * CG_IMG_SIDE + c] = p[c * CG_IMG_SIDE + r];
            p[c * CG_IMG_SIDE + r] = t;
        }
}

static int idx_fill(reader *r, uint8_t *pixels, uint8_t *labels, cg_error *e)
{
    /* Decode in blocks straight into the destination, then transpose each image in place:
     * no second copy of the data set, and the block stays in cache for the transpose. */
    const long block = 4096;
    for (long i = 0; i < r->cap; i += block) {
        long m = r->cap - i < block ? r->cap - i : block;
        uint8_t *dst = pixels + (size_t)i * CG_IMG_PIXELS;
        int zerr;
        const char *zmsg;
        size_t want = (size_t)m * CG_IMG_PIXELS;
        size_t got = gz_read_all(r->img, dst, want, &zerr, &zmsg);
        if (got < want) {
            char what[64];
            snprintf(what, sizeof what, "%ld of %ld images",
                     i + (long)(got / CG_IMG_PIXELS), r->n_file);
            return short_read(e, r->images, zerr, zmsg, what);
        }
        for (long k = 0; k < m; k++)
            transpose28(dst + (size_t)k * CG_IMG_PIXELS);
    }
    if (r->cap == r->n_file) {
        char what[64];
        snprintf(what, sizeof what, "the %ld images", r->n_file);
        if (expect_end(r->img, r->images, what, e))
            return -1;
    }
    memcpy(labels, r->lab, (size_t)r->cap);
    r->n = r->cap;
    return 0;
}

/* ---------------------------------------------------------------- CSV */

/* Counts the lines of the CSV long enough to be rows (CSV_MIN_ROW), reading on only while
 * --limit needs more; *any gets whether anything was read. memchr over the page cache
 * costs a few ms per 100 MB, much less than parsing; the memory is one CSV_CHUNK buffer. */
static int csv_count(reader *r, char *buf, long *rows_out, int *any, cg_error *e)
{
    long rows = 0;
    size_t cur = 0; /* bytes so far of the line being read */
    *any = 0;
    for (;;) {
        int k = gzread(r->img, buf, CSV_CHUNK);
        if (k <= 0) {
            int zerr;
            const char *zmsg = gzerror(r->img, &zerr);
            if (zerr != Z_OK)
                return short_read(e, r->images, zerr, zmsg, "reading it");
            break;
        }
        *any = 1;
        const char *p = buf, *end = buf + k, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            rows += cur + (size_t)(nl - p) >= CSV_MIN_ROW;
            cur = 0;
            p = nl + 1;
        }
        cur += (size_t)(end - p);
        if (r->limit > 0 && rows > r->limit)
            break; /* enough rows for --limit; the rest is never read */
    }
    *rows_out = rows + (cur >= CSV_MIN_ROW); /* a last line without '\n' */
    return 0;
}

static int csv_open(reader *r, cg_error *e)
{
    if (open_gz(r->images, "a Kaggle EMNIST CSV", &r->img, e))
        return -1;
    /* Count the rows first so the window can be sized exactly, by what the file holds. */
    char *buf = malloc(CSV_CHUNK);
    if (!buf)
        return cg_fail(e, "%s: out of memory", r->images);
    long rows = 0;
    int any = 0;
    int rc = csv_count(r, buf, &rows, &any, e);
    free(buf);
    r->img_gz = !gzdirect(r->img);
    if (rc)
        return -1;
    if (!any)
        return cg_fail(e, "%s: no rows", r->images);
    r->n_file = rows; /* an upper bound: a long line may still not be a row */
    r->cap = r->limit > 0 && r->limit < rows ? r->limit : rows;
    if (r->cap == 0)
        r->cap = 1; /* no line can be a row: reader_fill says what the first one is */
    if (gzrewind(r->img) != 0)
        return cg_fail(e, "%s: cannot rewind", r->images);
    return 0;
}

/* Up to 24 bytes of s for a message, non-printable bytes shown as '?', so that a binary file
 * still gives a one-line message. */
static void printable(char out[32], const char *s, size_t len)
{
    size_t n = len < 24 ? len : 24;
    for (size_t i = 0; i < n; i++)
        out[i] = s[i] >= 32 && s[i] < 127 ? s[i] : '?';
    out[n] = 0;
}

/* The message for field `field` (from 0), at start in line s, that is not an integer; a
 * first line that starts with a letter is taken for a header. */
static int csv_bad_field(const reader *r, const char *s, size_t len, const char *start,
                         long lineno, int field, cg_error *e)
{
    const char *fe = start, *end = s + len;
    while (fe < end && *fe != ',')
        fe++;
    char shown[32];
    if (lineno == 1 && field == 0 && isalpha((unsigned char)*start)) {
        printable(shown, s, len);
        return cg_fail(e, "%s: line 1 is a header ('%s...'); the Kaggle EMNIST CSVs "
                          "have none: remove that line", r->images, shown);
    }
    printable(shown, start, (size_t)(fe - start));
    return cg_fail(e, "%s: line %ld, field %d: '%s' is not an integer 0..255", r->images,
                   lineno, field + 1, shown);
}

/* Parses one line (without '\n'), writes the upright image and the label. */
static int csv_row(reader *r, const char *s, size_t len, long lineno, uint8_t *img,
                   uint8_t *label, cg_error *e)
{
    if (len && s[len - 1] == '\r')
        len--; /* CRLF line ends */
    const char *p = s, *end = s + len;
    int field = 0;
    for (;;) {
        const char *start = p;
        unsigned v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (v < 100000)
                v = v * 10 + (unsigned)(*p - '0');
            p++;
        }
        if (p == start || (p < end && *p != ','))
            return csv_bad_field(r, s, len, start, lineno, field, e);
        if (v > 255)
            return cg_fail(e, "%s: line %ld, field %d: value %.*s is above 255", r->images,
                           lineno, field + 1, (int)(p - start > 20 ? 20 : p - start), start);
        if (field == 0) {
            if (v >= CG_MAX_CLASSES || !(r->present & (1ull << v))) {
                char cls[200];
                describe_classes(r, cls, sizeof cls);
                return cg_fail(e, "%s: line %ld: label %u is not a class of the mapping (%s)",
                               r->images, lineno, v, cls);
            }
            *label = (uint8_t)v;
        } else {
            /* stored pixel j = c*28 + r holds upright[r][c] */
            int j = field - 1;
            img[(j % CG_IMG_SIDE) * CG_IMG_SIDE + j / CG_IMG_SIDE] = (uint8_t)v;
        }
        field++;
        if (p == end)
            break;
        p++; /* the comma */
        if (p == end)
            return cg_fail(e, "%s: line %ld, field %d: empty field at the end of the line",
                           r->images, lineno, field + 1);
        if (field == CSV_FIELDS)
            return cg_fail(e, "%s: line %ld: more than %d fields (label + 784 pixels expected)",
                           r->images, lineno, CSV_FIELDS);
    }
    if (field != CSV_FIELDS)
        return cg_fail(e, "%s: line %ld: %d fields, expected %d (label + 784 pixels)", r->images,
                       lineno, field, CSV_FIELDS);
    return 0;
}

/* Where a CSV pass stands: lines seen, rows decoded, the first blank line (0: none yet), and
 * where a line past the r->cap rows counted is parsed (for its message: it cannot be a row
 * unless the file changed since it was counted). */
typedef struct {
    long lineno, rows, blank;
    uint8_t spare[CG_IMG_PIXELS + 1];
} csv_pos;

/* One line (len bytes at p, without '\n'): a row, or a blank line, allowed only at the end. */
static int csv_line(reader *r, const char *p, size_t len, csv_pos *at, uint8_t *pixels,
                    uint8_t *labels, cg_error *e)
{
    at->lineno++;
    if (len == 0 || (len == 1 && p[0] == '\r')) {
        if (!at->blank)
            at->blank = at->lineno; /* allowed only if nothing follows */
        return 0;
    }
    if (at->blank)
        return cg_fail(e, "%s: line %ld is empty", r->images, at->blank);
    if (len > CSV_MAX_LINE)
        return cg_fail(e, "%s: line %ld is longer than %d bytes, not an EMNIST CSV row",
                       r->images, at->lineno, CSV_MAX_LINE);
    const int counted = at->rows < r->cap;
    uint8_t *img = counted ? pixels + (size_t)at->rows * CG_IMG_PIXELS : at->spare;
    uint8_t *label = counted ? labels + at->rows : at->spare + CG_IMG_PIXELS;
    int rc = csv_row(r, p, len, at->lineno, img, label, e);
    if (!rc && !counted)
        rc = cg_fail(e, "%s: line %ld: more rows than counted (the file changed while being "
                        "read)", r->images, at->lineno);
    at->rows++;
    return rc;
}

static int csv_fill(reader *r, uint8_t *pixels, uint8_t *labels, cg_error *e)
{
    char *buf = malloc(CSV_CHUNK + CSV_MAX_LINE);
    if (!buf)
        return cg_fail(e, "%s: out of memory", r->images);
    size_t have = 0;
    csv_pos at = {0, 0, 0, {0}};
    /* All lines are read (a bad line after the last row must still be reported), unless
     * --limit asks for fewer rows than the file holds. */
    const long stop = r->limit > 0 && r->limit <= r->cap ? r->limit : LONG_MAX;
    int eof = 0, rc = 0;
    while (!rc && at.rows < stop) {
        if (!eof) {
            int k = gzread(r->img, buf + have, CSV_CHUNK);
            if (k <= 0) {
                /* Z_BUF_ERROR here is a gzip stream cut short, not a clean end */
                int zerr;
                const char *zmsg = gzerror(r->img, &zerr);
                if (zerr != Z_OK) {
                    rc = short_read(e, r->images, zerr, zmsg, "reading it");
                    break;
                }
                eof = 1;
                k = 0;
            }
            have += (size_t)k;
        }
        char *p = buf, *end = buf + have;
        while (!rc && at.rows < stop) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl && !eof)
                break;
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (!nl && len == 0)
                break; /* file ended with a newline */
            rc = csv_line(r, p, len, &at, pixels, labels, e);
            p = nl ? nl + 1 : end;
        }
        if (rc || at.rows >= stop || (eof && p == end))
            break;
        size_t rest = (size_t)(end - p);
        if (rest > CSV_MAX_LINE) {
            rc = cg_fail(e, "%s: line %ld is longer than %d bytes, not an EMNIST CSV row",
                         r->images, at.lineno + 1, CSV_MAX_LINE);
            break;
        }
        memmove(buf, p, rest);
        have = rest;
    }
    free(buf);
    if (!rc && at.rows == 0)
        rc = cg_fail(e, "%s: no rows", r->images);
    r->n = at.rows;
    return rc;
}

/* ---------------------------------------------------------------- reader */

void cg_reader_close(reader *r)
{
    if (r->img)
        gzclose(r->img);
    r->img = NULL;
    free(r->lab);
    r->lab = NULL;
}

int cg_reader_open(reader *r, const cg_data_opts *o, cg_error *e)
{
    static const cg_data_opts defaults; /* const: all NULL / 0 */
    if (!o)
        o = &defaults;
    memset(r, 0, sizeof *r);
    if (o->limit < 0)
        return cg_fail(e, "--limit must be >= 0 (0 = all images), not %ld", o->limit);
    r->limit = o->limit;
    if (resolve(r, o, e))
        return -1;
    return r->format == FMT_IDX ? idx_open(r, e) : csv_open(r, e);
}

int cg_reader_fill(reader *r, uint8_t *pixels, uint8_t *labels, cg_error *e)
{
    return r->format == FMT_IDX ? idx_fill(r, pixels, labels, e)
                                : csv_fill(r, pixels, labels, e);
}

void cg_reader_describe(const reader *r, char *out, size_t cap)
{
    int k = snprintf(out, cap, "%s (%s%s%s%s, %s)", r->images,
                     r->format == FMT_CSV ? "Kaggle CSV" : "IDX", r->img_gz ? ", gzip" : "",
                     r->split[0] ? ", split " : "", r->split, r->map_desc);
    if (k >= (int)cap && cap > 4)
        memcpy(out + cap - 4, "...", 4); /* a very long path: show that it was cut */
}
