/* HDF5 plumbing of chargan's files; the conventions are described in h5io.h. */
#include "h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chargan/ckpt.h"
#include "chargan/classifier.h"
#include "chargan/samples.h"

/* ---- errors, handles, opening ------------------------------------------------------- */

void cg_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char desc[400];
    int got;
} reason_buf;

static herr_t reason_cb(unsigned n, const H5E_error2_t *err, void *data)
{
    (void)n;
    reason_buf *r = data;
    if (!r->got && err->desc && err->desc[0]) {
        snprintf(r->desc, sizeof r->desc, "%s", err->desc);
        r->got = 1;
    }
    return 0;
}

/* The innermost message on HDF5's error stack (see cg_h5_fail); clears the stack. */
static const char *h5_reason(char *buf, size_t n)
{
    reason_buf r;
    memset(&r, 0, sizeof r);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_cb, &r);
    H5Eclear2(H5E_DEFAULT);
    const char *key = "error message = '";
    const char *p = strstr(r.desc, key);
    if (p) {
        p += strlen(key);
        const char *q = strchr(p, '\'');
        snprintf(buf, n, "%.*s", (int)(q ? (size_t)(q - p) : strlen(p)), p);
    } else {
        snprintf(buf, n, "%.*s", (int)(n ? n - 1 : 0), r.got ? r.desc : "HDF5 error");
    }
    return buf;
}

const char *cg_h5_printable(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    for (; s && s[k] && k + 1 < n; k++) {
        const unsigned char c = (unsigned char)s[k];
        buf[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (n)
        buf[k] = 0;
    return buf;
}

int cg_h5_fail(cg_error *e, const char *fmt, ...)
{
    char raw[256], why[256], head[512];
    /* HDF5's reasons can quote names from the file (link targets, file names). */
    cg_h5_printable(h5_reason(raw, sizeof raw), why, sizeof why);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    return cg_fail(e, "%s: %s", head, why);
}

void cg_h5_close(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

hid_t cg_h5_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return -1;
    H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

/* HDF5's signature at offset 0, 512, 1024, 2048, ... (a user block may precede it). */
static int has_hdf5_signature(const char *path, long long size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    int found = 0;
    for (long long off = 0; off + 8 <= size && !found; off = off ? off * 2 : 512) {
        unsigned char b[8];
        if (fseeko(fp, (off_t)off, SEEK_SET) || fread(b, 1, 8, fp) != 8)
            break;
        found = !memcmp(b, sig, 8);
    }
    fclose(fp);
    return found;
}

/* The checks before HDF5 sees PATH: a readable, non-empty regular file with a signature. */
static int check_plain_file(const char *path, cg_error *e)
{
    struct stat st;
    if (stat(path, &st))
        return cg_fail(e, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cg_fail(e, "%s: is a directory, not a file", path);
    /* Opening a FIFO blocks until a writer comes, and HDF5 reads at offsets anyway. */
    if (!S_ISREG(st.st_mode))
        return cg_fail(e, "%s: not a regular file (a FIFO, device or socket is no HDF5 file)",
                       path);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cg_fail(e, "%s: cannot read: %s", path, strerror(errno));
    fclose(fp);
    if (st.st_size == 0)
        return cg_fail(e, "%s: empty file, not an HDF5 file", path);
    if (!has_hdf5_signature(path, (long long)st.st_size))
        return cg_fail(e, "%s: not an HDF5 file", path);
    return 0;
}

hid_t cg_h5_open_ro(const char *path, cg_error *e)
{
    cg_h5_quiet();
    if (check_plain_file(path, e))
        return -1;
    hid_t fapl = cg_h5_fapl();
    hid_t f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0)
        cg_h5_fail(e, "%s: truncated or damaged HDF5 file", path);
    cg_h5_close(fapl);
    return f;
}

/* ---- crash-safe writing ------------------------------------------------------------- */

int cg_path_dir(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    int n;
    if (!slash)
        n = snprintf(dir, len, ".");
    else if (slash == path)
        n = snprintf(dir, len, "/");
    else
        n = snprintf(dir, len, "%.*s", (int)(slash - path), path);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* PATH's temporary: DIR/.NAME.tmp (".NAME.tmp" when PATH has no directory part). */
static int tmp_path(const char *path, char *tmp, size_t len)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    int n = snprintf(tmp, len, "%.*s.%s.tmp", (int)(base - path), path, base);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Why the file is built in memory and written with write(2): every I/O error (ENOSPC, EFBIG,
 * EIO, quota) surfaces here with its errno, and HDF5 1.10 never sees a failing write (after a
 * write error inside H5Fclose, 1.10 keeps the half-closed file in its tables and crashes in
 * its atexit handler). One large sequential write is also the fastest way to put the file on a
 * parallel file system. The price is one in-memory copy of the file, plus one transient copy
 * of the image, on the writing rank. The in-memory file is named after the temporary, so an
 * open file of the final name (one being read) does not clash with it. */
hid_t cg_h5_begin(const char *path, const char *what, size_t size_hint, cg_error *e)
{
    char tmp[CG_PATH_CAP];
    if (tmp_path(path, tmp, sizeof tmp))
        return cg_fail(e, "cannot write %s %s: path too long", what, path);
    cg_h5_quiet();
    hid_t fapl = cg_h5_fapl();
    hid_t f = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, size_hint + ((size_t)1 << 20), 0) >= 0)
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    cg_h5_close(fapl);
    if (f < 0) {
        cg_error sub = {{0}};
        cg_h5_fail(&sub, "cannot create an HDF5 file in memory");
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    }
    return f;
}

void cg_h5_discard(hid_t file) { cg_h5_close(file); }

/* Flushes f, copies its image into *image (malloc'd) and closes f, whatever happens. */
static int take_image(hid_t f, unsigned char **image, size_t *size, cg_error *e)
{
    *image = NULL;
    ssize_t n = 0;
    int rc = 0;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = cg_h5_fail(e, "flush");
    if (rc == 0 && (n = H5Fget_file_image(f, NULL, 0)) <= 0)
        rc = cg_h5_fail(e, "file image");
    if (rc == 0 && !(*image = malloc((size_t)n)))
        rc = cg_fail(e, "out of memory for a %.1f MB file image", (double)n / 1e6);
    if (rc == 0 && H5Fget_file_image(f, *image, (size_t)n) != n)
        rc = cg_h5_fail(e, "file image");
    if (H5Fclose(f) < 0 && rc == 0)
        rc = cg_h5_fail(e, "close");
    if (rc) {
        free(*image);
        *image = NULL;
    }
    *size = (size_t)n;
    return rc;
}

/* The image into TMP (created), fsync'ed and closed, then renamed onto PATH. TMP is removed
 * when any step fails. */
static int store_image(const unsigned char *image, size_t size, const char *tmp,
                       const char *path, cg_error *e)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return cg_fail(e, "cannot create %s: %s", tmp, strerror(errno));
    int rc = 0;
    if (cg_write_all(fd, image, size))
        rc = cg_fail(e, "writing %s: %s", tmp, strerror(errno));
    else if (fsync(fd))
        rc = cg_fail(e, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) && rc == 0)
        rc = cg_fail(e, "closing %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = cg_fail(e, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

int cg_h5_commit(hid_t f, const char *path, const char *what, cg_error *e)
{
    char dir[CG_PATH_CAP], tmp[CG_PATH_CAP];
    cg_error sub = {{0}};
    if (cg_path_dir(path, dir, sizeof dir) || tmp_path(path, tmp, sizeof tmp)) {
        H5Fclose(f);
        return cg_fail(e, "cannot write %s %s: path too long", what, path);
    }
    unsigned char *image = NULL;
    size_t size = 0;
    int rc = take_image(f, &image, &size, &sub);
    if (rc == 0)
        rc = store_image(image, size, tmp, path, &sub);
    free(image);
    if (rc)
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    if (cg_fsync_dir(dir))
        return cg_fail(e, "%s %s written, but syncing directory %s failed: %s", what, path, dir,
                       strerror(errno));
    return 0;
}

/* PATH's directory, created when missing (make_dir) or required to exist. */
static int prepare_dir(const char *path, int make_dir, cg_error *e)
{
    char dir[CG_PATH_CAP];
    if (cg_path_dir(path, dir, sizeof dir))
        return cg_fail(e, "path too long");
    if (make_dir)
        return cg_make_dirs(dir, e);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return cg_fail(e, "directory %s does not exist", dir);
    return 0;
}

int cg_h5_write(const char *path, const char *what, int make_dir, cg_h5_fill_fn fill,
                const void *ctx, size_t size_hint, cg_error *e)
{
    cg_error sub = {{0}};
    if (prepare_dir(path, make_dir, &sub))
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    hid_t f = cg_h5_begin(path, what, size_hint, e);
    if (f < 0)
        return -1;
    if (fill(f, ctx, path, &sub)) {
        cg_h5_discard(f);
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    }
    return cg_h5_commit(f, path, what, e);
}

/* ---- attributes: writing ------------------------------------------------------------ */

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int cg_h5_attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val,
                   const char *fname, cg_error *e)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, mtype, val) < 0)
        rc = cg_h5_fail(e, "%s: cannot write attribute '%s'", fname, name);
    cg_h5_close(a);
    cg_h5_close(sp);
    return rc;
}

int cg_h5_attr_put_str(hid_t obj, const char *name, const char *s, const char *fname,
                       cg_error *e)
{
    hid_t t = vlen_str_type();
    if (t < 0)
        return cg_h5_fail(e, "%s: cannot write attribute '%s'", fname, name);
    int rc = cg_h5_attr_put(obj, name, t, t, &s, fname, e);
    H5Tclose(t);
    return rc;
}

int cg_h5_attr_put_i32(hid_t obj, const char *name, int32_t v, const char *fname, cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, fname, e);
}

int cg_h5_attr_put_i64(hid_t obj, const char *name, int64_t v, const char *fname, cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, fname, e);
}

int cg_h5_attr_put_u64(hid_t obj, const char *name, uint64_t v, const char *fname,
                       cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, fname, e);
}

int cg_h5_attr_put_f64(hid_t obj, const char *name, double v, const char *fname, cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, fname, e);
}

int cg_h5_attr_put_created(hid_t obj, const char *fname, cg_error *e)
{
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return cg_h5_attr_put_str(obj, "created", created, fname, e);
}

int cg_h5_attr_put_stack(hid_t obj, const char *fname, cg_error *e)
{
    cg_stack s;
    cg_stack_get(&s);
    const char *v[4] = {s.chargan, s.mpi, s.blas, s.hdf5};
    for (int i = 0; i < 4; i++)
        if (cg_h5_attr_put_str(obj, cg_stack_attr[i], v[i], fname, e))
            return -1;
    return 0;
}

/* ---- attributes: reading ------------------------------------------------------------ */

/* What an attribute or dataset of type class c holds, for messages. */
static const char *class_words(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "an integer";
    case H5T_FLOAT: return "a number";
    case H5T_STRING: return "a string";
    case H5T_COMPOUND: return "a compound";
    case H5T_ARRAY: return "an array type";
    case H5T_VLEN: return "a variable-length sequence";
    case H5T_ENUM: return "an enumeration";
    case H5T_OPAQUE: return "opaque data";
    case H5T_BITFIELD: return "a bit field";
    case H5T_REFERENCE: return "a reference";
    default: return "of an unknown type";
    }
}

/* Opens attribute NAME of obj and its type, which must be of class cls (an integer also
 * serves where a number is asked for) with one element. 1: *a and *t are open (close both),
 * 0: absent, -1: error (nothing open). */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls, hid_t *a, hid_t *t,
                     const char *fname, cg_error *e)
{
    *a = *t = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    if (ex == 0)
        return 0;
    hid_t at = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ty = at < 0 ? -1 : H5Aget_type(at);
    hid_t sp = at < 0 ? -1 : H5Aget_space(at);
    const H5T_class_t have = ty < 0 ? H5T_NO_CLASS : H5Tget_class(ty);
    const hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int rc = 1;
    if (ty < 0 || sp < 0 || n < 0)
        rc = cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    else if (have != cls && !(cls == H5T_FLOAT && have == H5T_INTEGER))
        rc = cg_fail(e, "%s: attribute '%s' is not %s (it is %s)", fname, name,
                     class_words(cls), class_words(have));
    else if (n != 1)
        rc = cg_fail(e, "%s: attribute '%s' holds %lld values, not one", fname, name,
                     (long long)n);
    cg_h5_close(sp);
    if (rc == 1) {
        *a = at, *t = ty;
    } else {
        cg_h5_close(ty);
        cg_h5_close(at);
    }
    return rc;
}

/* mtype's range as [lo, hi] (lo only for signed types). */
static void int_range(hid_t mtype, int64_t *lo, uint64_t *hi)
{
    const size_t bits = 8 * H5Tget_size(mtype);
    const uint64_t umax = bits >= 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    const int sgn = H5Tget_sign(mtype) != H5T_SGN_NONE;
    *hi = sgn ? umax >> 1 : umax;
    *lo = sgn ? -(int64_t)(umax >> 1) - 1 : 0;
}

/* Stores w (of the sign of mtype) into out as mtype (1, 2, 4 or 8 bytes). */
static void store_int(uint64_t w, hid_t mtype, void *out)
{
    const size_t n = H5Tget_size(mtype);
    if (n == 8) {
        memcpy(out, &w, 8);
    } else if (n == 4) {
        const uint32_t x = (uint32_t)w;
        memcpy(out, &x, 4);
    } else if (n == 2) {
        const uint16_t x = (uint16_t)w;
        memcpy(out, &x, 2);
    } else {
        *(uint8_t *)out = (uint8_t)w;
    }
}

/* An integer attribute is read as int64 or uint64 (its own sign) and range-checked against
 * mtype: HDF5's conversion would clamp a value out of mtype's range to its nearest bound
 * without an error, turning a noise_dim of 2^40 into 2^31 - 1. 1 read, -1 error. */
static int read_int(hid_t a, hid_t t, hid_t mtype, void *out, const char *name,
                    const char *fname, cg_error *e)
{
    if (H5Tget_size(t) > 8)
        return cg_fail(e, "%s: attribute '%s' is a %zu-byte integer (at most 8 bytes are read)",
                       fname, name, H5Tget_size(t));
    const int fsigned = H5Tget_sign(t) != H5T_SGN_NONE;
    int64_t v = 0;
    uint64_t u = 0;
    if (H5Aread(a, fsigned ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64,
                fsigned ? (void *)&v : (void *)&u) < 0)
        return cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    int64_t lo;
    uint64_t hi;
    int_range(mtype, &lo, &hi);
    const int fits = fsigned ? v >= lo && (v < 0 || (uint64_t)v <= hi) : u <= hi;
    if (!fits) {
        char val[32];
        if (fsigned)
            snprintf(val, sizeof val, "%lld", (long long)v);
        else
            snprintf(val, sizeof val, "%llu", (unsigned long long)u);
        return cg_fail(e, "%s: attribute '%s' is %s, outside the range of %s%zu", fname, name,
                       val, lo < 0 ? "int" : "uint", 8 * H5Tget_size(mtype));
    }
    store_int(fsigned ? (uint64_t)v : u, mtype, out);
    return 1;
}

int cg_h5_attr_get(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                   cg_error *e)
{
    hid_t a, t;
    const H5T_class_t cls = H5Tget_class(mtype);
    int rc = attr_open(obj, name, cls, &a, &t, fname, e);
    if (rc == 1 && cls == H5T_INTEGER)
        rc = read_int(a, t, mtype, out, name, fname, e);
    else if (rc == 1 && H5Aread(a, mtype, out) < 0)
        rc = cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    cg_h5_close(t);
    cg_h5_close(a);
    return rc;
}

/* The value of an open string attribute a of file type t, malloc'd; NULL on failure. */
static char *read_str(hid_t a, hid_t t)
{
    char *out = NULL;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = vlen_str_type();
        if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0 && H5Aread(a, mt, &s) >= 0) {
            out = strdup(s ? s : "");
            H5free_memory(s);
        }
        cg_h5_close(mt);
    } else {
        const size_t n = H5Tget_size(t);
        char *buf = calloc(n + 1, 1);
        hid_t mt = H5Tcopy(t);
        if (buf && mt >= 0 && H5Aread(a, mt, buf) >= 0)
            out = buf;
        else
            free(buf);
        cg_h5_close(mt);
    }
    return out;
}

int cg_h5_attr_get_str(hid_t obj, const char *name, char **out, const char *fname,
                       cg_error *e)
{
    *out = NULL;
    hid_t a, t;
    int rc = attr_open(obj, name, H5T_STRING, &a, &t, fname, e);
    if (rc <= 0)
        return rc;
    /* A fixed-length string is read into a buffer of its declared size: sized first. */
    if (H5Tis_variable_str(t) <= 0 && H5Tget_size(t) > CG_H5_STR_MAX)
        rc = cg_fail(e, "%s: attribute '%s' is a %zu-byte string (at most %zu bytes are read)",
                     fname, name, H5Tget_size(t), (size_t)CG_H5_STR_MAX);
    else if (!(*out = read_str(a, t)))
        rc = cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    cg_h5_close(t);
    cg_h5_close(a);
    return rc;
}

int cg_h5_attr_get_strbuf(hid_t obj, const char *name, char *buf, size_t len,
                          const char *fname, cg_error *e)
{
    char *s = NULL;
    const int rc = cg_h5_attr_get_str(obj, name, &s, fname, e);
    if (len)
        snprintf(buf, len, "%s", s ? s : "");
    free(s);
    return rc;
}

int cg_h5_attr_need(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                    const char *what, cg_error *e)
{
    const int r = cg_h5_attr_get(obj, name, mtype, out, fname, e);
    if (r == 0)
        return cg_fail(e, "%s: not a valid %s: attribute '%s' is missing", fname, what, name);
    return r < 0 ? -1 : 0;
}

int cg_h5_attr_get_stack(hid_t obj, cg_stack *s, const char *fname, cg_error *e)
{
    char *dst[4] = {s->chargan, s->mpi, s->blas, s->hdf5};
    const size_t cap[4] = {sizeof s->chargan, sizeof s->mpi, sizeof s->blas, sizeof s->hdf5};
    for (int i = 0; i < 4; i++)
        if (cg_h5_attr_get_strbuf(obj, cg_stack_attr[i], dst[i], cap[i], fname, e) < 0)
            return -1;
    return 0;
}

/* chargan's file formats and what messages call them. */
static const struct {
    const char *format, *kind;
} formats[] = {
    {CG_CKPT_FORMAT, "checkpoint"},
    {CG_SAMPLES_FORMAT, "sample file"},
    {CG_CLF_FORMAT, "classifier file"},
};

static const char *kind_of(const char *format)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(format, formats[i].format))
            return formats[i].kind;
    return NULL;
}

int cg_h5_check_format(hid_t f, const char *fname, const char *want, int32_t version,
                       int32_t *ver, cg_error *e)
{
    const char *kind = kind_of(want);
    char *fmt = NULL, shown[101];
    if (cg_h5_attr_get_str(f, "format", &fmt, fname, e) < 0)
        return -1;
    if (!fmt)
        return 0;
    if (strcmp(fmt, want) != 0) {
        const char *other = kind_of(fmt);
        if (other)
            cg_fail(e, "%s: this is a chargan %s, not a %s", fname, other, kind);
        else
            cg_fail(e, "%s: not a chargan %s (format '%s')", fname, kind,
                    cg_h5_printable(fmt, shown, sizeof shown));
        free(fmt);
        return -1;
    }
    free(fmt);
    char what[48];
    snprintf(what, sizeof what, "chargan %s", kind);
    if (cg_h5_attr_need(f, "format_version", H5T_NATIVE_INT32, ver, fname, what, e))
        return -1;
    if (*ver != version)
        return cg_fail(e, "%s: %s format_version %d is not supported (this chargan reads "
                          "version %d)", fname, kind, (int)*ver, (int)version);
    return 1;
}

/* ---- groups ------------------------------------------------------------------------- */

hid_t cg_h5_group_new(hid_t loc, const char *name, int ordered, const char *fname,
                      cg_error *e)
{
    const unsigned order = H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = -1;
    if (gcpl >= 0 && (!ordered || H5Pset_link_creation_order(gcpl, order) >= 0))
        g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0)
        cg_h5_fail(e, "%s: cannot create group %s", fname, name);
    cg_h5_close(gcpl);
    return g;
}

/* ---- objects: links and kinds ------------------------------------------------------- */

/* PATH (relative to a location whose path is gpath, or absolute) as messages name it. */
static void show(char *buf, size_t n, const char *gpath, const char *path)
{
    const int k = path[0] == '/' ? snprintf(buf, n, "%s", path)
                                 : snprintf(buf, n, "%s/%s", gpath, path);
    if (k >= 0 && (size_t)k >= n && n > 4)
        memcpy(buf + n - 4, "...", 4);
}

/* The refusal of a link that is not a hard link, naming where it points. Only hard links are
 * followed: a soft link names another object of the file under a name that is not its own
 * (a /generator that is the EMA, or a loop), and an external link opens another file, one
 * the file's author chose: a FIFO that blocks the open forever, a device, data chargan never
 * wrote. chargan writes hard links only, so the other kinds are refused, not resolved. */
static int refuse_link(hid_t loc, const char *path, const H5L_info_t *li, const char *where,
                       const char *fname, cg_error *e)
{
    char val[1024] = "", shown[512] = "?", target[512];
    const char *file = NULL, *obj = NULL;
    if (li->u.val_size < sizeof val && H5Lget_val(loc, path, val, sizeof val, H5P_DEFAULT) >= 0) {
        val[sizeof val - 1] = 0;
        if (li->type == H5L_TYPE_EXTERNAL &&
            H5Lunpack_elink_val(val, li->u.val_size, NULL, &file, &obj) >= 0 && file && obj)
            snprintf(shown, sizeof shown, "%.250s:%.250s", file, obj);
        else if (li->type == H5L_TYPE_SOFT)
            snprintf(shown, sizeof shown, "%.500s", val);
    }
    H5Eclear2(H5E_DEFAULT);
    cg_h5_printable(shown, target, sizeof target);
    if (li->type == H5L_TYPE_SOFT)
        return cg_fail(e, "%s: %s is a soft link (to %s); chargan follows only hard links",
                       fname, where, target);
    if (li->type == H5L_TYPE_EXTERNAL)
        return cg_fail(e, "%s: %s is an external link (to %s); chargan does not open other "
                          "files", fname, where, target);
    return cg_fail(e, "%s: %s is a user-defined link (type %d); chargan follows only hard links",
                   fname, where, (int)li->type);
}

/* One step of walk: link PATH of loc (its parents checked) must be a hard link and, unless
 * last, lead to a group. 1 so, 0 missing, -1 error. */
static int walk_step(hid_t loc, const char *path, int last, const char *where,
                     const char *fname, cg_error *e)
{
    htri_t ex = H5Lexists(loc, path, H5P_DEFAULT);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, where);
    if (ex == 0)
        return 0;
    H5L_info_t li;
    if (H5Lget_info(loc, path, &li, H5P_DEFAULT) < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, where);
    if (li.type != H5L_TYPE_HARD)
        return refuse_link(loc, path, &li, where, fname, e);
    if (last)
        return 1;
    hid_t o = H5Oopen(loc, path, H5P_DEFAULT);
    if (o < 0)
        return cg_h5_fail(e, "%s: cannot open %s", fname, where);
    const int group = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    return group ? 1 : cg_fail(e, "%s: %s is not a group", fname, where);
}

/* Checks the way to PATH (relative to loc, whose path is gpath, or absolute) before anything
 * opens it: every link a hard link (see refuse_link), every object before the last a group.
 * H5Lexists, H5Oopen and friends follow soft and external links on the way, so each link is
 * looked at before its target is used. Returns 1 when PATH exists so (where: its name for
 * messages), 0 when a part is missing (where: that part), -1 with e set. */
static int walk(hid_t loc, const char *path, char *where, size_t wlen, const char *fname,
                const char *gpath, cg_error *e)
{
    char buf[CG_PATH_CAP];
    show(where, wlen, gpath, path);
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return cg_fail(e, "%s: %.200s...: name too long", fname, where);
    for (char *p = buf + (buf[0] == '/');; p++) {
        const int end = *p == 0;
        if (!end && *p != '/')
            continue;
        *p = 0;
        show(where, wlen, gpath, buf);
        const int r = walk_step(loc, buf, end, where, fname, e);
        if (r <= 0 || end)
            return r;
        *p = '/';
    }
}

hid_t cg_h5_group_open(hid_t f, const char *gpath, const char *fname, const char *what,
                       cg_error *e)
{
    char where[CG_PATH_CAP];
    const int r = walk(f, gpath, where, sizeof where, fname, "", e);
    if (r <= 0)
        return r < 0 ? -1 : cg_fail(e, "%s: not a valid %s: %s is missing", fname, what, where);
    hid_t o = H5Oopen(f, gpath, H5P_DEFAULT);
    if (o < 0)
        return cg_h5_fail(e, "%s: cannot open %s", fname, gpath);
    if (H5Iget_type(o) != H5I_GROUP) {
        H5Oclose(o);
        return cg_fail(e, "%s: %s is not a group", fname, gpath);
    }
    return o;
}

/* ---- datasets ----------------------------------------------------------------------- */

int cg_h5_dset_put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                   const hsize_t *dims, const hsize_t *chunk, const void *data,
                   const char *fname, const char *gpath, cg_error *e)
{
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    int rc = 0;
    if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, ndim, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        (d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = cg_h5_fail(e, "%s: cannot write %s/%s", fname, gpath, name);
    cg_h5_close(d);
    cg_h5_close(dcpl);
    cg_h5_close(sp);
    return rc;
}

/* Type and shape of an open dataset into d; the element count saturates at HSIZE_UNDEF - 1 (a
 * shape whose product overflows is refused by every reader as too large). */
static int describe(hid_t o, cg_h5_dinfo *d)
{
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    int rc = -1;
    d->ndim = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (t >= 0 && d->ndim >= 0) {
        hsize_t all[H5S_MAX_RANK];
        d->cls = H5Tget_class(t);
        d->size = H5Tget_size(t);
        d->sign = d->cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
        d->space = H5Sget_simple_extent_type(sp);
        if (H5Sget_simple_extent_dims(sp, all, NULL) >= 0) {
            d->npoints = d->space == H5S_NULL ? 0 : 1;
            for (int i = 0; i < d->ndim; i++) {
                if (i < CG_H5_MAX_DIMS)
                    d->dims[i] = all[i];
                d->npoints = all[i] && d->npoints > (HSIZE_UNDEF - 1) / all[i]
                                 ? HSIZE_UNDEF - 1
                                 : d->npoints * all[i];
            }
            rc = 0;
        }
    }
    cg_h5_close(sp);
    cg_h5_close(t);
    return rc;
}

/* Chunks a chunked dataset of shape sp and chunk shape p must have (saturating). */
static hsize_t chunks_needed(hid_t sp, hid_t p)
{
    hsize_t dims[H5S_MAX_RANK], chunk[H5S_MAX_RANK];
    const int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
        H5Pget_chunk(p, H5S_MAX_RANK, chunk) != nd)
        return 1;
    hsize_t n = 1;
    for (int i = 0; i < nd; i++) {
        const hsize_t c = chunk[i] ? dims[i] / chunk[i] + (dims[i] % chunk[i] != 0) : 1;
        n = c && n > (HSIZE_UNDEF - 1) / c ? HSIZE_UNDEF - 1 : n * c;
    }
    return n;
}

/* Every value of a dataset must be stored in the file (checked right before it is read): a
 * chunk or a contiguous block that was never written reads as fill values, numbers nobody
 * wrote; and a dataset of 2^62 elements that occupies no space would have its reader
 * allocate (or overflow) for all of them. */
static int check_written(hid_t o, const char *where, const char *fname, cg_error *e)
{
    hid_t sp = H5Dget_space(o), p = H5Dget_create_plist(o);
    const hssize_t npoints = sp < 0 || p < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    hsize_t need = npoints > 0, have = H5Dget_storage_size(o) > 0;
#if H5_VERSION_GE(1, 10, 5)
    if (npoints > 0 && H5Pget_layout(p) == H5D_CHUNKED) {
        need = chunks_needed(sp, p);
        if (H5Dget_num_chunks(o, sp, &have) < 0)
            have = 0;
    }
#endif
    cg_h5_close(p);
    cg_h5_close(sp);
    H5Eclear2(H5E_DEFAULT);
    if (npoints < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, where);
    if (have >= need)
        return 0;
    if (have == 0)
        return cg_fail(e, "%s: %s holds no data (its values were never written)", fname, where);
    return cg_fail(e, "%s: %s is incomplete: %llu of its %llu chunks were never written", fname,
                   where, (unsigned long long)(need - have), (unsigned long long)need);
}

/* The data of a dataset must live in this file: a virtual dataset maps other files, and
 * external storage reads raw bytes from any file the author named (possibly a FIFO or a
 * device). */
static int check_layout(hid_t p, const char *where, const char *fname, cg_error *e)
{
    const H5D_layout_t layout = H5Pget_layout(p);
    if (layout < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, where);
#if H5_VERSION_GE(1, 10, 0)
    if (layout == H5D_VIRTUAL)
        return cg_fail(e, "%s: %s is a virtual dataset (its values are in other files, which "
                          "chargan does not open)", fname, where);
#endif
    const int n_ext = H5Pget_external_count(p);
    if (n_ext != 0) {
        char name[256] = "?", shown[256];
        off_t off;
        hsize_t size;
        if (n_ext > 0)
            H5Pget_external(p, 0, sizeof name, name, &off, &size);
        name[sizeof name - 1] = 0;
        H5Eclear2(H5E_DEFAULT);
        return cg_fail(e, "%s: %s keeps its values in external file '%s'; chargan reads only "
                          "data stored in the file itself", fname, where,
                       cg_h5_printable(name, shown, sizeof shown));
    }
    return 0;
}

/* Every filter in a dataset's pipeline must be one this HDF5 can decode; a missing one (a
 * compressor from a plugin this installation lacks) is named here rather than surfacing as
 * HDF5's reason from deep inside the read. */
static int check_filters(hid_t p, const char *where, const char *fname, cg_error *e)
{
    const int n = H5Pget_nfilters(p);
    if (n < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, where);
    for (int i = 0; i < n; i++) {
        unsigned flags = 0, config = 0;
        size_t n_cd = 0;
        char name[80] = "", shown[80];
        const H5Z_filter_t id =
            H5Pget_filter2(p, (unsigned)i, &flags, &n_cd, NULL, sizeof name, name, NULL);
        if (id < 0)
            return cg_h5_fail(e, "%s: cannot read %s", fname, where);
        name[sizeof name - 1] = 0;
        if (H5Zfilter_avail(id) > 0 && H5Zget_filter_info(id, &config) >= 0 &&
            (config & H5Z_FILTER_CONFIG_DECODE_ENABLED))
            continue;
        H5Eclear2(H5E_DEFAULT);
        return cg_fail(e, "%s: %s is stored with HDF5 filter %d ('%s'), which this HDF5 "
                          "library cannot decode (a filter plugin would add it)", fname, where,
                       (int)id, cg_h5_printable(name, shown, sizeof shown));
    }
    return 0;
}

/* Opens dataset NAME of loc (gpath: loc's path) once walk, check_layout and check_filters
 * pass: 1 with *o open, 0 missing (where: the missing part), -1 with e set. where: the name
 * for messages. */
static int open_dset(hid_t loc, const char *name, hid_t *o, char *where, size_t wlen,
                     const char *fname, const char *gpath, cg_error *e)
{
    *o = -1;
    const int r = walk(loc, name, where, wlen, fname, gpath, e);
    if (r <= 0)
        return r;
    hid_t d = H5Oopen(loc, name, H5P_DEFAULT);
    if (d < 0)
        return cg_h5_fail(e, "%s: cannot open %s", fname, where);
    if (H5Iget_type(d) != H5I_DATASET) {
        H5Oclose(d);
        return cg_fail(e, "%s: %s is not a dataset", fname, where);
    }
    hid_t p = H5Dget_create_plist(d);
    int rc = p < 0 ? cg_h5_fail(e, "%s: cannot read %s", fname, where)
                   : check_layout(p, where, fname, e) || check_filters(p, where, fname, e);
    cg_h5_close(p);
    if (rc) {
        H5Oclose(d);
        return -1;
    }
    *o = d;
    return 1;
}

int cg_h5_dset_info(hid_t loc, const char *name, cg_h5_dinfo *d, const char *fname,
                    const char *gpath, cg_error *e)
{
    memset(d, 0, sizeof *d);
    char where[CG_PATH_CAP];
    hid_t o;
    const int r = open_dset(loc, name, &o, where, sizeof where, fname, gpath, e);
    if (r <= 0)
        return r < 0 ? -1 : cg_fail(e, "%s: %s is missing", fname, where);
    int rc = 0;
    if (describe(o, d))
        rc = cg_h5_fail(e, "%s: cannot read %s", fname, where);
    H5Oclose(o);
    return rc;
}

/* "float32", "int64", "uint64", ... */
static void type_name(H5T_class_t cls, size_t size, H5T_sign_t sign, char *buf, size_t n)
{
    const char *kind = "?";
    if (cls == H5T_FLOAT)
        kind = "float";
    else if (cls == H5T_INTEGER)
        kind = sign == H5T_SGN_NONE ? "uint" : "int";
    snprintf(buf, n, "%s%zu", kind, 8 * size);
}

int cg_h5_dset_check_type(const cg_h5_dinfo *d, hid_t mtype, const char *name,
                          const char *fname, const char *gpath, cg_error *e)
{
    const H5T_class_t cls = H5Tget_class(mtype);
    const size_t size = H5Tget_size(mtype);
    const H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(mtype) : H5T_SGN_ERROR;
    if (d->cls == cls && d->size == size && (cls != H5T_INTEGER || d->sign == sign))
        return 0;
    char want[32], where[CG_PATH_CAP];
    type_name(cls, size, sign, want, sizeof want);
    show(where, sizeof where, gpath, name);
    const char *have = "non-numeric";
    if (d->cls == H5T_FLOAT)
        have = "float";
    else if (d->cls == H5T_INTEGER)
        have = d->sign == H5T_SGN_NONE ? "unsigned integer" : "integer";
    return cg_fail(e, "%s: %s is not %s (%zu-byte %s)", fname, where, want, d->size, have);
}

int cg_h5_dset_load(hid_t loc, const char *name, hid_t mtype, void *out, const char *fname,
                    const char *gpath, cg_error *e)
{
    char where[CG_PATH_CAP];
    hid_t d;
    const int r = open_dset(loc, name, &d, where, sizeof where, fname, gpath, e);
    if (r <= 0)
        return r < 0 ? -1 : cg_fail(e, "%s: %s is missing", fname, where);
    int rc = check_written(d, where, fname, e);
    if (rc == 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = cg_h5_fail(e, "%s: cannot read %s (corrupt data?)", fname, where);
    H5Oclose(d);
    return rc;
}

/* d's shape as a phrase: "has shape [2, 3]", "is a scalar", ... */
static void shape_phrase(const cg_h5_dinfo *d, char *buf, size_t n)
{
    char dims[96];
    if (d->space == H5S_NULL) {
        snprintf(buf, n, "has no elements (a null dataspace)");
    } else if (d->space == H5S_SCALAR) {
        snprintf(buf, n, "is a scalar");
    } else if (d->ndim > CG_H5_MAX_DIMS) {
        snprintf(buf, n, "has %d dimensions", d->ndim);
    } else {
        cg_shape_str(dims, sizeof dims, d->ndim, d->dims);
        snprintf(buf, n, "has shape %s", dims);
    }
}

/* 0 when d has shape dims[0..ndim), else -1 with the message naming both shapes. */
static int check_shape(const cg_h5_dinfo *d, int ndim, const hsize_t *dims, const char *name,
                       const char *fname, const char *gpath, const char *owner, cg_error *e)
{
    int same = d->space == H5S_SIMPLE && d->ndim == ndim && ndim <= CG_H5_MAX_DIMS;
    for (int i = 0; same && i < ndim; i++)
        same = d->dims[i] == dims[i];
    if (same)
        return 0;
    char have[128], want[96], where[CG_PATH_CAP];
    shape_phrase(d, have, sizeof have);
    cg_shape_str(want, sizeof want, ndim, dims);
    show(where, sizeof where, gpath, name);
    return cg_fail(e, "%s: %s %s, but %s needs %s", fname, where, have, owner, want);
}

/* Flat index i of shape dims as "[a, b, c]". */
static void index_str(char *buf, size_t n, size_t i, int ndim, const hsize_t *dims)
{
    hsize_t at[CG_H5_MAX_DIMS];
    for (int k = ndim - 1; k >= 0; k--) {
        at[k] = dims[k] ? i % dims[k] : 0;
        i = dims[k] ? i / dims[k] : 0;
    }
    cg_shape_str(buf, n, ndim, at);
}

/* Values read as float or double must be finite. Nothing chargan writes holds a NaN or an
 * Inf: training stops before an update that would make one (train.c), and the classifier's
 * statistics are finite fits. So a non-finite parameter, EMA, Adam moment, batch-norm running
 * statistic or classifier value is damage or a foreign file, and loading it would spread it
 * through every later step, sample and score: the load is refused, naming the first bad
 * element. */
static int check_finite(const void *x, hid_t mtype, int ndim, const hsize_t *dims,
                        const char *where, const char *fname, const char *owner, cg_error *e)
{
    if (H5Tget_class(mtype) != H5T_FLOAT)
        return 0;
    const int dbl = H5Tget_size(mtype) == sizeof(double);
    size_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= (size_t)dims[k];
    for (size_t i = 0; i < n; i++) {
        const double v = dbl ? ((const double *)x)[i] : ((const float *)x)[i];
        if (isfinite(v))
            continue;
        char at[128];
        index_str(at, sizeof at, i, ndim, dims);
        return cg_fail(e, "%s: %s%s is %s, but %s needs finite values", fname, where, at,
                       isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", owner);
    }
    return 0;
}

int cg_h5_dset_read(hid_t loc, const char *name, hid_t mtype, int ndim, const hsize_t *dims,
                    void *out, const char *fname, const char *gpath, const char *owner,
                    cg_error *e)
{
    char where[CG_PATH_CAP];
    const int r = walk(loc, name, where, sizeof where, fname, gpath, e);
    if (r <= 0)
        return r < 0 ? -1 : cg_fail(e, "%s: %s is missing (%s needs it)", fname, where, owner);
    cg_h5_dinfo d;
    if (cg_h5_dset_info(loc, name, &d, fname, gpath, e) ||
        cg_h5_dset_check_type(&d, mtype, name, fname, gpath, e) ||
        check_shape(&d, ndim, dims, name, fname, gpath, owner, e) ||
        cg_h5_dset_load(loc, name, mtype, out, fname, gpath, e))
        return -1;
    return check_finite(out, mtype, ndim, dims, where, fname, owner, e);
}

void cg_shape_str(char *buf, size_t n, int ndim, const hsize_t *dims)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "",
                              (unsigned long long)dims[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}
