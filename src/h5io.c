/* HDF5 plumbing of chargan's files; the conventions are described in h5io.h. */
#include "h5io.h"

#include <errno.h>
#include <fcntl.h>
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

int cg_h5_fail(cg_error *e, const char *fmt, ...)
{
    char why[256], head[512];
    h5_reason(why, sizeof why);
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

/* write(2) all of it, retrying short writes and EINTR. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
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
    if (write_all(fd, image, size))
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

/* Opens attribute NAME of obj and its type, which must be of class cls with one element.
 * 1: *a and *t are open (close both), 0: absent, -1: error (nothing open). */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls, hid_t *a, hid_t *t,
                     const char *fname, cg_error *e)
{
    const char *kind = cls == H5T_STRING ? "a string" : cls == H5T_FLOAT ? "a number"
                                                                          : "an integer";
    *a = *t = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    if (ex == 0)
        return 0;
    hid_t at = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ty = at < 0 ? -1 : H5Aget_type(at);
    hid_t sp = at < 0 ? -1 : H5Aget_space(at);
    int rc = 1;
    if (ty < 0 || sp < 0)
        rc = cg_h5_fail(e, "%s: cannot read attribute '%s'", fname, name);
    else if (H5Tget_class(ty) != cls || H5Sget_simple_extent_npoints(sp) != 1)
        rc = cg_fail(e, "%s: attribute '%s' is not %s", fname, name, kind);
    cg_h5_close(sp);
    if (rc == 1) {
        *a = at, *t = ty;
    } else {
        cg_h5_close(ty);
        cg_h5_close(at);
    }
    return rc;
}

int cg_h5_attr_get(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                   cg_error *e)
{
    hid_t a, t;
    int rc = attr_open(obj, name, H5Tget_class(mtype), &a, &t, fname, e);
    if (rc == 1 && H5Aread(a, mtype, out) < 0)
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
    if (!(*out = read_str(a, t)))
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
    char *fmt = NULL;
    if (cg_h5_attr_get_str(f, "format", &fmt, fname, e) < 0)
        return -1;
    if (!fmt)
        return 0;
    if (strcmp(fmt, want) != 0) {
        const char *other = kind_of(fmt);
        if (other)
            cg_fail(e, "%s: this is a chargan %s, not a %s", fname, other, kind);
        else
            cg_fail(e, "%s: not a chargan %s (format '%.100s')", fname, kind, fmt);
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

hid_t cg_h5_group_open(hid_t f, const char *gpath, const char *fname, const char *what,
                       cg_error *e)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", gpath);
    for (char *p = buf + 1;; p++) {
        const int end = *p == 0;
        if (!end && *p != '/')
            continue;
        *p = 0;
        htri_t ex = H5Lexists(f, buf, H5P_DEFAULT);
        if (ex < 0)
            return cg_h5_fail(e, "%s: cannot read %s", fname, buf);
        if (ex == 0)
            return cg_fail(e, "%s: not a valid %s: %s is missing", fname, what, buf);
        if (end)
            break;
        *p = '/';
    }
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

/* Type and shape of an open dataset into d. */
static int describe(hid_t o, cg_h5_dinfo *d)
{
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    int rc = -1;
    d->ndim = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (t >= 0 && d->ndim >= 0) {
        hsize_t all[H5S_MAX_RANK];
        d->cls = H5Tget_class(t);
        d->size = H5Tget_size(t);
        if (H5Sget_simple_extent_dims(sp, all, NULL) >= 0) {
            for (int i = 0; i < d->ndim && i < CG_H5_MAX_DIMS; i++)
                d->dims[i] = all[i];
            rc = 0;
        }
    }
    cg_h5_close(sp);
    cg_h5_close(t);
    return rc;
}

int cg_h5_dset_info(hid_t loc, const char *name, cg_h5_dinfo *d, const char *fname,
                    const char *gpath, cg_error *e)
{
    memset(d, 0, sizeof *d);
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read %s/%s", fname, gpath, name);
    if (ex == 0)
        return cg_fail(e, "%s: %s/%s is missing", fname, gpath, name);
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0)
        return cg_h5_fail(e, "%s: cannot open %s/%s", fname, gpath, name);
    int rc = 0;
    if (H5Iget_type(o) != H5I_DATASET)
        rc = cg_fail(e, "%s: %s/%s is not a dataset", fname, gpath, name);
    else if (describe(o, d))
        rc = cg_h5_fail(e, "%s: cannot read %s/%s", fname, gpath, name);
    H5Oclose(o);
    return rc;
}

/* "float32", "int64", ... */
static void type_name(H5T_class_t cls, size_t size, char *buf, size_t n)
{
    snprintf(buf, n, "%s%zu", cls == H5T_FLOAT ? "float" : cls == H5T_INTEGER ? "int" : "?",
             8 * size);
}

int cg_h5_dset_check_type(const cg_h5_dinfo *d, hid_t mtype, const char *name,
                          const char *fname, const char *gpath, cg_error *e)
{
    const H5T_class_t cls = H5Tget_class(mtype);
    const size_t size = H5Tget_size(mtype);
    if (d->cls == cls && d->size == size)
        return 0;
    char want[32];
    type_name(cls, size, want, sizeof want);
    return cg_fail(e, "%s: %s/%s is not %s (%zu-byte %s)", fname, gpath, name, want, d->size,
                   d->cls == H5T_FLOAT     ? "float"
                   : d->cls == H5T_INTEGER ? "integer"
                                           : "non-numeric");
}

int cg_h5_dset_load(hid_t loc, const char *name, hid_t mtype, void *out, const char *fname,
                    const char *gpath, cg_error *e)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    int rc = 0;
    if (d < 0 || H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = cg_h5_fail(e, "%s: cannot read %s/%s (corrupt data?)", fname, gpath, name);
    cg_h5_close(d);
    return rc;
}

/* 0 when d has shape dims[0..ndim), else -1 with the message naming both shapes. */
static int check_shape(const cg_h5_dinfo *d, int ndim, const hsize_t *dims, const char *name,
                       const char *fname, const char *gpath, const char *owner, cg_error *e)
{
    int same = d->ndim == ndim && ndim <= CG_H5_MAX_DIMS;
    for (int i = 0; same && i < ndim; i++)
        same = d->dims[i] == dims[i];
    if (same)
        return 0;
    char have[96], want[96];
    if (d->ndim <= CG_H5_MAX_DIMS)
        cg_shape_str(have, sizeof have, d->ndim, d->dims);
    else
        snprintf(have, sizeof have, "%d dimensions", d->ndim);
    cg_shape_str(want, sizeof want, ndim, dims);
    return cg_fail(e, "%s: %s/%s has shape %s, but %s needs %s", fname, gpath, name, have,
                   owner, want);
}

int cg_h5_dset_read(hid_t loc, const char *name, hid_t mtype, int ndim, const hsize_t *dims,
                    void *out, const char *fname, const char *gpath, const char *owner,
                    cg_error *e)
{
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex == 0)
        return cg_fail(e, "%s: %s/%s is missing (%s needs it)", fname, gpath, name, owner);
    cg_h5_dinfo d;
    if (cg_h5_dset_info(loc, name, &d, fname, gpath, e) ||
        cg_h5_dset_check_type(&d, mtype, name, fname, gpath, e) ||
        check_shape(&d, ndim, dims, name, fname, gpath, owner, e))
        return -1;
    return cg_h5_dset_load(loc, name, mtype, out, fname, gpath, e);
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
