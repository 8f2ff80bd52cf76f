/* HDF5 checkpoints and sample files; the layout and the guarantees are in ckpt.h. */
#include "chargan/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chargan/version.h"

#define PATH_CAP 4096
#define SIDE 28

/* ---- HDF5 plumbing ------------------------------------------------------------------- */

/* Our errors are one-liners; HDF5 must not print its error stack. Called at every entry
 * point (the setting is per thread in thread-safe builds). */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

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

/* The innermost (most specific) message on HDF5's error stack, shortened to the system's
 * message when HDF5 quotes one ("... error message = 'No space left on device' ..."). Must be
 * called right after the failing HDF5 call: every API call clears the stack. */
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

static int fail_h5(cg_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_h5(cg_error *e, const char *fmt, ...)
{
    char why[256], head[512];
    h5_reason(why, sizeof why);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    return cg_fail(e, "%s: %s", head, why);
}

/* File access: format bounds earliest..1.8, strong close, no file locking (see ckpt.h).
 * The low bound stays at "earliest" (superblock version 0, as h5py writes by default): with a
 * 1.8 low bound (superblock version 2, checksummed) 1.10.8's H5Fget_file_image returns an
 * image whose superblock checksum is wrong, and we write files from their image. */
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

static void close_id(hid_t id)
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

/* ---- writing helpers ----------------------------------------------------------------- */

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
        rc = fail_h5(e, "%s: cannot write attribute '%s'", fname, name);
    close_id(a);
    close_id(sp);
    return rc;
}

int cg_h5_attr_put_str(hid_t obj, const char *name, const char *s, const char *fname,
                       cg_error *e)
{
    hid_t t = vlen_str_type();
    if (t < 0)
        return fail_h5(e, "%s: cannot write attribute '%s'", fname, name);
    int rc = cg_h5_attr_put(obj, name, t, t, &s, fname, e);
    H5Tclose(t);
    return rc;
}

static int attr_put_i64(hid_t obj, const char *name, int64_t v, const char *fname, cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, fname, e);
}

static int attr_put_u64(hid_t obj, const char *name, uint64_t v, const char *fname,
                        cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, fname, e);
}

static int attr_put_i32(hid_t obj, const char *name, int32_t v, const char *fname, cg_error *e)
{
    return cg_h5_attr_put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, fname, e);
}

/* A group whose links iterate in creation order (tensors in model order). */
static hid_t group_new(hid_t loc, const char *name, const char *fname, cg_error *e)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = -1;
    if (gcpl >= 0 &&
        H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0)
        fail_h5(e, "%s: cannot create group %s", fname, name);
    close_id(gcpl);
    return g;
}

/* A chunked dataset with the Fletcher-32 checksum filter. */
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
        rc = fail_h5(e, "%s: cannot write %s/%s", fname, gpath, name);
    close_id(d);
    close_id(dcpl);
    close_id(sp);
    return rc;
}

static void iso_now(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* fsync of a directory, so a rename or a new entry in it is durable. File systems that
 * cannot sync directories (EINVAL) are accepted. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    if (rc && (errno == EINVAL || errno == ENOTSUP || errno == EROFS))
        rc = 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir -p, syncing the parent of every directory it creates. */
static int make_dirs(const char *path, cg_error *e)
{
    char buf[PATH_CAP];
    if (!path[0])
        return cg_fail(e, "empty directory name");
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return cg_fail(e, "%s: path too long", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = 0;
    for (char *p = buf + 1;; p++) {
        const int end = *p == 0;
        if (!end && *p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0777) == 0) {
            char *slash = strrchr(buf, '/');
            if (slash == buf)
                fsync_dir("/");
            else if (slash) {
                *slash = 0;
                fsync_dir(buf);
                *slash = '/';
            } else {
                fsync_dir(".");
            }
        } else if (errno != EEXIST) {
            return cg_fail(e, "%s: cannot create directory: %s", buf, strerror(errno));
        }
        struct stat st;
        if (stat(buf, &st))
            return cg_fail(e, "%s: %s", buf, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return cg_fail(e, "%s: cannot create directory: %s", buf, strerror(ENOTDIR));
        if (end)
            break;
        *p = '/';
    }
    return 0;
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

/* Crash-safe writing (cg_h5_begin, cg_h5_commit).
 *
 * The HDF5 file is built in memory (core driver, no backing store) and its image is written
 * with plain write(2), then fsync, close, rename, fsync of DIR. Two reasons: every I/O error
 * (ENOSPC, EFBIG, EIO, quota) surfaces in our own code with errno, and HDF5 1.10 never sees a
 * failing write: after a write error inside H5Fclose, 1.10 keeps the half-closed file in its
 * tables and crashes in its atexit handler. One large sequential write is also the fastest
 * way to put the file on a parallel file system. The price is one in-memory copy of the file
 * (plus one transient copy of the image) on the writing rank. size_hint: expected file size
 * (the core driver's allocation increment). The in-memory file is named after the temporary
 * (an open file of the final name, e.g. one being read, must not clash with it). */
hid_t cg_h5_begin(const char *path, const char *what, size_t size_hint, cg_error *e)
{
    char tmp[PATH_CAP];
    if (tmp_path(path, tmp, sizeof tmp))
        return cg_fail(e, "cannot write %s %s: path too long", what, path);
    h5_quiet();
    hid_t fapl = cg_h5_fapl();
    hid_t f = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, size_hint + ((size_t)1 << 20), 0) >= 0)
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    close_id(fapl);
    if (f < 0) {
        cg_error sub = {{0}};
        fail_h5(&sub, "cannot create an HDF5 file in memory");
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    }
    return f;
}

void cg_h5_discard(hid_t file) { close_id(file); }

int cg_h5_commit(hid_t f, const char *path, const char *what, cg_error *e)
{
    char dir[PATH_CAP], tmp[PATH_CAP];
    cg_error sub = {{0}};
    int rc = 0;
    if (cg_path_dir(path, dir, sizeof dir) || tmp_path(path, tmp, sizeof tmp))
        rc = cg_fail(&sub, "path too long");

    /* 1. The file image in memory. */
    unsigned char *image = NULL;
    ssize_t size = 0;
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = fail_h5(&sub, "flush");
    if (rc == 0 && (size = H5Fget_file_image(f, NULL, 0)) <= 0)
        rc = fail_h5(&sub, "file image");
    if (rc == 0 && !(image = malloc((size_t)size)))
        rc = cg_fail(&sub, "out of memory for a %.1f MB file image", (double)size / 1e6);
    if (rc == 0 && H5Fget_file_image(f, image, (size_t)size) != size)
        rc = fail_h5(&sub, "file image");
    if (H5Fclose(f) < 0 && rc == 0)
        rc = fail_h5(&sub, "close");
    if (rc) {
        free(image);
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    }

    /* 2. Temporary file, fsync, rename, fsync of the directory. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = cg_fail(&sub, "cannot create %s: %s", tmp, strerror(errno));
    } else {
        if (write_all(fd, image, (size_t)size))
            rc = cg_fail(&sub, "writing %s: %s", tmp, strerror(errno));
        else if (fsync(fd))
            rc = cg_fail(&sub, "fsync %s: %s", tmp, strerror(errno));
        if (close(fd) && rc == 0)
            rc = cg_fail(&sub, "closing %s: %s", tmp, strerror(errno));
    }
    free(image);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = cg_fail(&sub, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (rc) {
        if (fd >= 0)
            unlink(tmp);
        return cg_fail(e, "cannot write %s %s: %s", what, path, sub.msg);
    }
    if (fsync_dir(dir))
        return cg_fail(e, "%s %s written, but syncing directory %s failed: %s", what, path, dir,
                       strerror(errno));
    return 0;
}

typedef int (*fill_fn)(hid_t f, const void *ctx, const char *fname, cg_error *e);

/* Writes DIR/BASE crash-safely (cg_h5_begin, fill, cg_h5_commit), creating DIR when missing. */
static int safe_write(const char *dir, const char *base, const char *what, fill_fn fill,
                      const void *ctx, size_t size_hint, char *path_out, size_t path_len,
                      cg_error *e)
{
    char final[PATH_CAP], tmp[PATH_CAP];
    if (snprintf(final, sizeof final, "%s/%s", dir, base) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, base) >= (int)sizeof tmp)
        return cg_fail(e, "%s/%s: path too long", dir, base);
    if (path_out && path_len && strlen(final) >= path_len)
        return cg_fail(e, "%s: path does not fit the caller's buffer", final);
    cg_error sub = {{0}};
    if (make_dirs(dir, &sub))
        return cg_fail(e, "cannot write %s %s: %s", what, final, sub.msg);
    hid_t f = cg_h5_begin(final, what, size_hint, e);
    if (f < 0)
        return -1;
    if (fill(f, ctx, final, &sub)) {
        cg_h5_discard(f);
        return cg_fail(e, "cannot write %s %s: %s", what, final, sub.msg);
    }
    if (cg_h5_commit(f, final, what, e))
        return -1;
    if (path_out && path_len)
        snprintf(path_out, path_len, "%s", final);
    return 0;
}

/* ---- checkpoint writing -------------------------------------------------------------- */

typedef struct {
    const cg_gan *gan;
    long step, epoch;
    int world_size;
    const char *config;
} ckpt_ctx;

static int put_net(hid_t f, const char *gpath, const cg_net *net, const float *buf,
                   const char *fname, cg_error *e)
{
    hid_t g = group_new(f, gpath, fname, e);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int t = 0; t < net->n_tensors && rc == 0; t++) {
        const cg_tensor *T = &net->tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = cg_h5_dset_put(g, T->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, T->ndim, dims, dims,
                            buf + T->offset, fname, gpath, e);
    }
    H5Gclose(g);
    return rc;
}

/* The stack the file was written on (chargan/version.h), as string attributes of the root. */
static int put_stack(hid_t f, const char *fname, cg_error *e)
{
    cg_stack s;
    cg_stack_get(&s);
    const char *v[4] = {s.chargan, s.mpi, s.blas, s.hdf5};
    for (int i = 0; i < 4; i++)
        if (cg_h5_attr_put_str(f, cg_stack_attr[i], v[i], fname, e))
            return -1;
    return 0;
}

static int fill_ckpt(hid_t f, const void *vctx, const char *fname, cg_error *e)
{
    const ckpt_ctx *c = vctx;
    const cg_gan *gan = c->gan;
    char created[32];
    iso_now(created, sizeof created);
    if (cg_h5_attr_put_str(f, "format", CG_CKPT_FORMAT, fname, e) ||
        attr_put_i32(f, "format_version", CG_CKPT_FORMAT_VERSION, fname, e) ||
        cg_h5_attr_put_str(f, "model", gan->cfg.model, fname, e) ||
        attr_put_i64(f, "step", c->step, fname, e) ||
        attr_put_i64(f, "epoch", c->epoch, fname, e) ||
        attr_put_u64(f, "seed", gan->cfg.seed, fname, e) ||
        attr_put_i32(f, "world_size", c->world_size, fname, e) ||
        attr_put_i32(f, "global_batch", gan->cfg.global_batch, fname, e) ||
        attr_put_i32(f, "noise_dim", gan->preset.noise_dim, fname, e) ||
        attr_put_i32(f, "n_classes", gan->preset.n_classes, fname, e) ||
        cg_h5_attr_put_str(f, "config", c->config ? c->config : "{}", fname, e) ||
        cg_h5_attr_put_str(f, "created", created, fname, e) || put_stack(f, fname, e))
        return -1;
    if (put_net(f, "/generator", &gan->g, gan->g.param, fname, e) ||
        put_net(f, "/discriminator", &gan->d, gan->d.param, fname, e))
        return -1;
    if (gan->ema_g) {
        hid_t eg = group_new(f, "/ema", fname, e);
        if (eg < 0)
            return -1;
        H5Gclose(eg);
        if (put_net(f, "/ema/generator", &gan->g, gan->ema_g, fname, e))
            return -1;
        eg = H5Gopen2(f, "/ema/generator", H5P_DEFAULT);
        if (eg < 0)
            return fail_h5(e, "%s: cannot open /ema/generator", fname);
        int rc = cg_h5_attr_put(eg, "decay", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                &gan->ema_decay, fname, e);
        H5Gclose(eg);
        if (rc)
            return -1;
    }
    hid_t opt = group_new(f, "/optimizer", fname, e);
    if (opt < 0)
        return -1;
    H5Gclose(opt);
    const cg_net *nets[2] = {&gan->g, &gan->d};
    const long ts[2] = {gan->adam_g.t, gan->adam_d.t};
    for (int k = 0; k < 2; k++) {
        const char *who = k ? "discriminator" : "generator";
        char gp[64], mp[64], vp[64];
        snprintf(gp, sizeof gp, "/optimizer/%s", who);
        snprintf(mp, sizeof mp, "/optimizer/%s/m", who);
        snprintf(vp, sizeof vp, "/optimizer/%s/v", who);
        hid_t g = group_new(f, gp, fname, e);
        if (g < 0)
            return -1;
        int rc = attr_put_i64(g, "adam_t", ts[k], fname, e);
        H5Gclose(g);
        if (rc || put_net(f, mp, nets[k], nets[k]->adam_m, fname, e) ||
            put_net(f, vp, nets[k], nets[k]->adam_v, fname, e))
            return -1;
    }
    return 0;
}

int cg_ckpt_write(const char *dir, const cg_gan *gan, long step, long epoch, int world_size,
                  const char *config_json, char *path_out, size_t path_len, cg_error *e)
{
    if (!dir || !dir[0])
        return cg_fail(e, "checkpoint directory name is empty");
    if (step < 0 || epoch < 0 || world_size < 1)
        return cg_fail(e, "%s: invalid checkpoint step %ld / epoch %ld / world size %d", dir,
                       step, epoch, world_size);
    char base[64];
    snprintf(base, sizeof base, "step-%08ld.h5", step);
    ckpt_ctx c = {gan, step, epoch, world_size, config_json};
    const size_t bytes = sizeof(float) * (3 * (gan->g.n_params + gan->d.n_params) +
                                          (gan->ema_g ? gan->g.n_params : 0));
    return safe_write(dir, base, "checkpoint", fill_ckpt, &c, bytes, path_out, path_len, e);
}

/* ---- reading helpers ----------------------------------------------------------------- */

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

/* Opens an existing HDF5 file read-only, with a clear message for every way it can fail. */
static hid_t open_ro(const char *path, cg_error *e)
{
    h5_quiet();
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
    hid_t fapl = cg_h5_fapl();
    hid_t f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0)
        fail_h5(e, "%s: truncated or damaged HDF5 file", path);
    close_id(fapl);
    return f;
}

/* Opens attribute NAME of obj and its type, which must be of class cls with one element
 * (kind: "a string", ... for the message). 1: *a and *t are open (close both), 0: absent,
 * -1: error (nothing open). */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls, const char *kind, hid_t *a,
                     hid_t *t, const char *fname, cg_error *e)
{
    *a = *t = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0)
        return fail_h5(e, "%s: cannot read attribute '%s'", fname, name);
    if (ex == 0)
        return 0;
    hid_t at = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ty = at < 0 ? -1 : H5Aget_type(at);
    hid_t sp = at < 0 ? -1 : H5Aget_space(at);
    int rc = 1;
    if (ty < 0 || sp < 0)
        rc = fail_h5(e, "%s: cannot read attribute '%s'", fname, name);
    else if (H5Tget_class(ty) != cls || H5Sget_simple_extent_npoints(sp) != 1)
        rc = cg_fail(e, "%s: attribute '%s' is not %s", fname, name, kind);
    close_id(sp);
    if (rc == 1) {
        *a = at, *t = ty;
    } else {
        close_id(ty);
        close_id(at);
    }
    return rc;
}

/* Attribute readers: 1 read, 0 absent, -1 error (wrong type or unreadable). */
static int attr_get_str(hid_t obj, const char *name, char **out, const char *fname,
                        cg_error *e)
{
    *out = NULL;
    hid_t a, t, mt = -1;
    int rc = attr_open(obj, name, H5T_STRING, "a string", &a, &t, fname, e);
    if (rc <= 0)
        return rc;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        mt = vlen_str_type();
        if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 || H5Aread(a, mt, &s) < 0) {
            rc = fail_h5(e, "%s: cannot read attribute '%s'", fname, name);
        } else {
            *out = strdup(s ? s : "");
            H5free_memory(s);
        }
    } else {
        size_t n = H5Tget_size(t);
        char *buf = calloc(n + 1, 1);
        mt = H5Tcopy(t);
        if (!buf || mt < 0 || H5Aread(a, mt, buf) < 0) {
            free(buf);
            rc = fail_h5(e, "%s: cannot read attribute '%s'", fname, name);
        } else {
            *out = buf;
        }
    }
    if (rc == 1 && !*out)
        rc = cg_fail(e, "%s: out of memory", fname);
    close_id(mt);
    close_id(t);
    close_id(a);
    return rc;
}

static int attr_get_int(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                        cg_error *e)
{
    hid_t a, t;
    int rc = attr_open(obj, name, H5T_INTEGER, "an integer", &a, &t, fname, e);
    if (rc == 1 && H5Aread(a, mtype, out) < 0)
        rc = fail_h5(e, "%s: cannot read attribute '%s'", fname, name);
    close_id(t);
    close_id(a);
    return rc;
}

static int need(int r, const char *name, const char *fname, const char *what, cg_error *e)
{
    if (r == 0)
        return cg_fail(e, "%s: not a valid %s: attribute '%s' is missing", fname, what, name);
    return r < 0 ? -1 : 0;
}

/* Opens group gpath ("/a/b/c"), checking every level exists first (H5Gopen would fail with a
 * less clear message). */
static hid_t open_group(hid_t f, const char *fname, const char *gpath, cg_error *e)
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
            return fail_h5(e, "%s: cannot read %s", fname, buf);
        if (ex == 0)
            return cg_fail(e, "%s: not a valid checkpoint: %s is missing", fname, buf);
        if (end)
            break;
        *p = '/';
    }
    hid_t o = H5Oopen(f, gpath, H5P_DEFAULT);
    if (o < 0)
        return fail_h5(e, "%s: cannot open %s", fname, gpath);
    if (H5Iget_type(o) != H5I_GROUP) {
        H5Oclose(o);
        return cg_fail(e, "%s: %s is not a group", fname, gpath);
    }
    return o;
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

/* Opens dataset NAME in group g and checks it is float32 of the tensor's shape; reads it into
 * dst. */
static int read_tensor(hid_t g, const char *fname, const char *gpath, const cg_tensor *T,
                       const char *model, float *dst, cg_error *e)
{
    htri_t ex = H5Lexists(g, T->name, H5P_DEFAULT);
    if (ex < 0)
        return fail_h5(e, "%s: cannot read %s/%s", fname, gpath, T->name);
    if (ex == 0)
        return cg_fail(e, "%s: %s/%s is missing (model '%s' has this tensor)", fname, gpath,
                       T->name, model);
    hid_t o = H5Oopen(g, T->name, H5P_DEFAULT);
    if (o < 0)
        return fail_h5(e, "%s: cannot open %s/%s", fname, gpath, T->name);
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        return cg_fail(e, "%s: %s/%s is not a dataset", fname, gpath, T->name);
    }
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    int rc = 0;
    hsize_t want[4], have[8];
    for (int i = 0; i < T->ndim; i++)
        want[i] = (hsize_t)T->dims[i];
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (t < 0 || nd < 0) {
        rc = fail_h5(e, "%s: cannot read %s/%s", fname, gpath, T->name);
    } else if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
        rc = cg_fail(e, "%s: %s/%s is not float32 (%zu-byte %s)", fname, gpath, T->name,
                     H5Tget_size(t), H5Tget_class(t) == H5T_FLOAT ? "float" : "non-float");
    } else {
        int same = nd == T->ndim && nd <= 8;
        if (nd <= 8)
            H5Sget_simple_extent_dims(sp, have, NULL);
        for (int i = 0; same && i < nd; i++)
            same = have[i] == want[i];
        if (!same) {
            char hs[96], ws[96];
            if (nd <= 8)
                cg_shape_str(hs, sizeof hs, nd, have);
            else
                snprintf(hs, sizeof hs, "%d dimensions", nd);
            cg_shape_str(ws, sizeof ws, T->ndim, want);
            rc = cg_fail(e, "%s: %s/%s has shape %s, but model '%s' needs %s", fname, gpath,
                         T->name, hs, model, ws);
        } else if (H5Dread(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
            rc = fail_h5(e, "%s: cannot read %s/%s (corrupt data?)", fname, gpath, T->name);
        }
    }
    close_id(sp);
    close_id(t);
    H5Oclose(o);
    return rc;
}

/* Every tensor of one network under gpath; dst (n_params floats, tensor offsets) or, when
 * NULL, scratch (the largest tensor) receives the data. Links the model does not have are an
 * error too. */
static int read_net(hid_t f, const char *fname, const char *gpath, const cg_net *net,
                    const char *model, float *dst, float *scratch, cg_error *e)
{
    hid_t g = open_group(f, fname, gpath, e);
    if (g < 0)
        return -1;
    int rc = 0;
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) {
        rc = fail_h5(e, "%s: cannot read %s", fname, gpath);
    } else if (info.nlinks != (hsize_t)net->n_tensors) {
        /* Name one member the model lacks; else the count alone says enough (a missing one
         * is then reported by name below). */
        for (hsize_t i = 0; i < info.nlinks && rc == 0; i++) {
            char name[256];
            if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                   H5P_DEFAULT) < 0)
                rc = fail_h5(e, "%s: cannot read %s", fname, gpath);
            else if (cg_net_find_tensor(net, name) < 0)
                rc = cg_fail(e, "%s: %s/%s is not a tensor of model '%s'", fname, gpath, name,
                             model);
        }
    }
    for (int t = 0; t < net->n_tensors && rc == 0; t++) {
        const cg_tensor *T = &net->tensors[t];
        rc = read_tensor(g, fname, gpath, T, model, dst ? dst + T->offset : scratch, e);
    }
    H5Oclose(g);
    return rc;
}

/* Both networks' parameters and moments, and with ema the EMA of G. dst_g/dst_d: 3 *
 * n_params floats (param, m, v) or NULL (validate only); dst_ema: G's n_params or NULL. */
static int read_state(hid_t f, const char *fname, const char *model, const cg_net *g,
                      const cg_net *d, float *dst_g, float *dst_d, int ema, float *dst_ema,
                      cg_error *e)
{
    const cg_net *nets[2] = {g, d};
    float *dst[2] = {dst_g, dst_d};
    float *scratch = NULL;
    if (!dst_g || !dst_d || (ema && !dst_ema)) {
        size_t big = 1;
        for (int k = 0; k < 2; k++)
            for (int t = 0; t < nets[k]->n_tensors; t++)
                if (nets[k]->tensors[t].count > big)
                    big = nets[k]->tensors[t].count;
        scratch = malloc(sizeof(float) * big);
        if (!scratch)
            return cg_fail(e, "%s: out of memory", fname);
    }
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        const char *who = k ? "discriminator" : "generator";
        const size_t n = nets[k]->n_params;
        for (int w = 0; w < 3 && rc == 0; w++) {
            char gp[64];
            if (w == 0)
                snprintf(gp, sizeof gp, "/%s", who);
            else
                snprintf(gp, sizeof gp, "/optimizer/%s/%c", who, w == 1 ? 'm' : 'v');
            rc = read_net(f, fname, gp, nets[k], model, dst[k] ? dst[k] + (size_t)w * n : NULL,
                          scratch, e);
        }
    }
    if (rc == 0 && ema)
        rc = read_net(f, fname, "/ema/generator", g, model, dst_ema, scratch, e);
    free(scratch);
    return rc;
}

static int read_adam_t(hid_t f, const char *fname, const char *who, long *t, cg_error *e)
{
    char gp[64];
    snprintf(gp, sizeof gp, "/optimizer/%s", who);
    hid_t g = open_group(f, fname, gp, e);
    if (g < 0)
        return -1;
    int64_t v = 0;
    int r = attr_get_int(g, "adam_t", H5T_NATIVE_INT64, &v, fname, e);
    H5Oclose(g);
    if (r == 0)
        return cg_fail(e, "%s: not a valid checkpoint: attribute adam_t on %s is missing", fname,
                       gp);
    if (r < 0)
        return -1;
    if (v < 0)
        return cg_fail(e, "%s: adam_t on %s is negative (%lld)", fname, gp, (long long)v);
    *t = (long)v;
    return 0;
}

/* The optional /ema group: when present it must hold /ema/generator with a decay in (0, 1). */
static int read_ema_meta(hid_t f, const char *fname, cg_ckpt_meta *m, cg_error *e)
{
    m->has_ema = 0;
    m->ema_decay = 0.0;
    htri_t ex = H5Lexists(f, "/ema", H5P_DEFAULT);
    if (ex < 0)
        return fail_h5(e, "%s: cannot read /ema", fname);
    if (ex == 0)
        return 0;
    hid_t g = open_group(f, fname, "/ema/generator", e);
    if (g < 0)
        return -1;
    hid_t a, t;
    double decay = 0.0;
    int r = attr_open(g, "decay", H5T_FLOAT, "a number", &a, &t, fname, e);
    if (r == 1 && H5Aread(a, H5T_NATIVE_DOUBLE, &decay) < 0)
        r = fail_h5(e, "%s: cannot read attribute 'decay' of /ema/generator", fname);
    if (r == 1) {
        close_id(t);
        close_id(a);
    }
    H5Oclose(g);
    if (r == 0)
        return cg_fail(e, "%s: not a valid checkpoint: attribute decay on /ema/generator is "
                          "missing", fname);
    if (r < 0)
        return -1;
    if (!(decay > 0.0 && decay < 1.0))
        return cg_fail(e, "%s: /ema/generator has decay %g, not in (0, 1)", fname, decay);
    m->has_ema = 1;
    m->ema_decay = decay;
    return 0;
}

/* The `format` attribute of the root: its value (malloc'd) or NULL when absent. */
static int read_format(hid_t f, const char *fname, char **fmt, cg_error *e)
{
    return attr_get_str(f, "format", fmt, fname, e) < 0 ? -1 : 0;
}

/* The root's format attribute must name a checkpoint (samples = 0) or a sample file
 * (samples = 1), and then format_version must be CG_CKPT_FORMAT_VERSION. Returns 1 (*ver
 * set), 0 when the file has no format attribute, or -1 with e set. */
static int check_format(hid_t f, const char *path, int samples, int32_t *ver, cg_error *e)
{
    const char *want = samples ? CG_SAMPLES_FORMAT : CG_CKPT_FORMAT;
    const char *other = samples ? CG_CKPT_FORMAT : CG_SAMPLES_FORMAT;
    const char *kind = samples ? "sample file" : "checkpoint";
    char *fmt = NULL;
    if (read_format(f, path, &fmt, e))
        return -1;
    if (!fmt)
        return 0;
    if (strcmp(fmt, want) != 0) {
        if (!strcmp(fmt, other))
            cg_fail(e, "%s: this is a chargan %s, not a %s", path,
                    samples ? "checkpoint" : "sample file", kind);
        else
            cg_fail(e, "%s: not a chargan %s (format '%.100s')", path, kind, fmt);
        free(fmt);
        return -1;
    }
    free(fmt);
    char what[32];
    snprintf(what, sizeof what, "chargan %s", kind);
    if (need(attr_get_int(f, "format_version", H5T_NATIVE_INT32, ver, path, e),
             "format_version", path, what, e))
        return -1;
    if (*ver != CG_CKPT_FORMAT_VERSION)
        return cg_fail(e, "%s: %s format_version %d is not supported (this chargan reads "
                          "version %d)", path, kind, (int)*ver, CG_CKPT_FORMAT_VERSION);
    return 1;
}

/* The optional stack attributes (files written before they existed have none: empty). */
static int read_stack(hid_t f, const char *path, cg_stack *s, cg_error *e)
{
    char *dst[4] = {s->chargan, s->mpi, s->blas, s->hdf5};
    const size_t cap[4] = {sizeof s->chargan, sizeof s->mpi, sizeof s->blas, sizeof s->hdf5};
    for (int i = 0; i < 4; i++) {
        char *v = NULL;
        if (attr_get_str(f, cg_stack_attr[i], &v, path, e) < 0)
            return -1;
        snprintf(dst[i], cap[i], "%s", v ? v : "");
        free(v);
    }
    return 0;
}

static int read_meta_f(hid_t f, const char *path, cg_ckpt_meta *m, cg_error *e)
{
    memset(m, 0, sizeof *m);
    const char *what = "chargan checkpoint";
    char *model = NULL, *created = NULL;
    int32_t ver = 0, ws = 0, gb = 0, nd = 0, nc = 0;
    int64_t step = 0, epoch = 0;
    uint64_t seed = 0;
    int r = check_format(f, path, 0, &ver, e);
    if (r < 0)
        return -1;
    if (r == 0)
        return cg_fail(e, "%s: not a chargan checkpoint (an HDF5 file without a 'format' "
                          "attribute)", path);
    r = need(attr_get_str(f, "model", &model, path, e), "model", path, what, e);
    if (r == 0 && strlen(model) >= sizeof m->model)
        r = cg_fail(e, "%s: model name '%.40s' is too long", path, model);
    if (r == 0)
        snprintf(m->model, sizeof m->model, "%s", model);
    free(model);
    if (r || need(attr_get_int(f, "step", H5T_NATIVE_INT64, &step, path, e), "step", path,
                  what, e) ||
        need(attr_get_int(f, "epoch", H5T_NATIVE_INT64, &epoch, path, e), "epoch", path, what,
             e) ||
        need(attr_get_int(f, "seed", H5T_NATIVE_UINT64, &seed, path, e), "seed", path, what,
             e) ||
        need(attr_get_int(f, "world_size", H5T_NATIVE_INT32, &ws, path, e), "world_size", path,
             what, e) ||
        need(attr_get_int(f, "global_batch", H5T_NATIVE_INT32, &gb, path, e), "global_batch",
             path, what, e) ||
        need(attr_get_int(f, "noise_dim", H5T_NATIVE_INT32, &nd, path, e), "noise_dim", path,
             what, e) ||
        attr_get_int(f, "n_classes", H5T_NATIVE_INT32, &nc, path, e) < 0) /* absent: 0 */
        return -1;
    if (step < 0 || epoch < 0 || ws < 1 || gb < 1 || nd < 1 || nc < 0)
        return cg_fail(e, "%s: invalid attribute values (step %lld, epoch %lld, world_size %d, "
                          "global_batch %d, noise_dim %d, n_classes %d)",
                       path, (long long)step, (long long)epoch, (int)ws, (int)gb, (int)nd,
                       (int)nc);
    m->format_version = ver;
    m->step = (long)step;
    m->epoch = (long)epoch;
    m->seed = seed;
    m->world_size = ws;
    m->global_batch = gb;
    m->noise_dim = nd;
    m->n_classes = nc;
    if (attr_get_str(f, "created", &created, path, e) < 0)
        return -1;
    snprintf(m->created, sizeof m->created, "%s", created ? created : "");
    free(created);
    if (read_stack(f, path, &m->stack, e))
        return -1;
    if (attr_get_str(f, "config", &m->config_json, path, e) < 0)
        return -1;
    if (!m->config_json && !(m->config_json = strdup("{}")))
        return cg_fail(e, "%s: out of memory", path);
    if (read_adam_t(f, path, "generator", &m->adam_t_g, e) ||
        read_adam_t(f, path, "discriminator", &m->adam_t_d, e) ||
        read_ema_meta(f, path, m, e)) {
        cg_ckpt_meta_free(m);
        return -1;
    }
    return 0;
}

/* ---- checkpoint reading -------------------------------------------------------------- */

void cg_ckpt_meta_free(cg_ckpt_meta *m)
{
    if (!m)
        return;
    free(m->config_json);
    m->config_json = NULL;
}

int cg_ckpt_read_meta(const char *path, cg_ckpt_meta *m, cg_error *e)
{
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta mm;
    int rc = read_meta_f(f, path, &mm, e);
    H5Fclose(f);
    if (rc == 0)
        *m = mm;
    return rc;
}

/* Validation without a gan. *mismatch is set when the file is a valid checkpoint meta-wise
 * but of another model than `model`. */
static int validate_impl(const char *path, const char *model, cg_ckpt_meta *out, int *mismatch,
                         cg_error *e)
{
    *mismatch = 0;
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta m;
    int rc = read_meta_f(f, path, &m, e);
    if (rc) {
        H5Fclose(f);
        return -1;
    }
    cg_gan gan;
    memset(&gan, 0, sizeof gan);
    cg_preset p;
    if (model && strcmp(model, m.model) != 0) {
        *mismatch = 1;
        rc = cg_fail(e, "%s: checkpoint of model '%s', but this run's model is '%s'", path,
                     m.model, model);
    } else if (cg_preset_get(m.model, m.noise_dim, m.n_classes, &p)) {
        rc = cg_fail(e, "%s: checkpoint of model '%s', which this chargan does not know "
                        "(known: %s)", path, m.model, cg_preset_names());
    } else {
        /* The tensor tables exactly as training builds them (batch 1 keeps it small). */
        cg_gan_config cfg;
        cg_gan_default_config(&cfg);
        snprintf(cfg.model, sizeof cfg.model, "%s", m.model);
        cfg.noise_dim = m.noise_dim;
        cfg.n_classes = m.n_classes;
        cfg.global_batch = cfg.local_batch = 1;
        cfg.seed = m.seed;
        cg_error sub = {{0}};
        if (cg_gan_init(&gan, &cfg, &sub))
            rc = cg_fail(e, "%s: model '%s': %s", path, m.model, sub.msg);
        else
            rc = read_state(f, path, m.model, &gan.g, &gan.d, NULL, NULL, m.has_ema, NULL, e);
    }
    cg_gan_free(&gan);
    H5Fclose(f);
    if (rc == 0 && out)
        *out = m;
    else
        cg_ckpt_meta_free(&m);
    return rc;
}

int cg_ckpt_validate(const char *path, const char *model, cg_ckpt_meta *m, cg_error *e)
{
    int mismatch;
    return validate_impl(path, model, m, &mismatch, e);
}

int cg_ckpt_load(const char *path, cg_gan *gan, cg_ckpt_meta *m, cg_error *e)
{
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta mm;
    if (read_meta_f(f, path, &mm, e)) {
        H5Fclose(f);
        return -1;
    }
    int rc = 0;
    float *sg = NULL, *sd = NULL, *se = NULL;
    if (strcmp(mm.model, gan->cfg.model) != 0) {
        rc = cg_fail(e, "%s: checkpoint of model '%s', but this run's model is '%s'", path,
                     mm.model, gan->cfg.model);
    } else if (mm.noise_dim != gan->preset.noise_dim) {
        rc = cg_fail(e, "%s: checkpoint has noise_dim %d, but this run uses %d", path,
                     mm.noise_dim, gan->preset.noise_dim);
    } else if (mm.n_classes != gan->preset.n_classes) {
        rc = cg_fail(e, "%s: checkpoint has n_classes %d (%s), but this run uses %d", path,
                     mm.n_classes, mm.n_classes ? "conditional" : "unconditional",
                     gan->preset.n_classes);
    } else {
        sg = malloc(sizeof(float) * 3 * gan->g.n_params);
        sd = malloc(sizeof(float) * 3 * gan->d.n_params);
        se = mm.has_ema ? malloc(sizeof(float) * gan->g.n_params) : NULL;
        if (!sg || !sd || (mm.has_ema && !se))
            rc = cg_fail(e, "%s: out of memory for the staging copy", path);
        else
            rc = read_state(f, path, mm.model, &gan->g, &gan->d, sg, sd, mm.has_ema, se, e);
    }
    H5Fclose(f);
    if (rc == 0) {
        cg_net *nets[2] = {&gan->g, &gan->d};
        float *st[2] = {sg, sd};
        for (int k = 0; k < 2; k++) {
            const size_t n = nets[k]->n_params;
            memcpy(nets[k]->param, st[k], sizeof(float) * n);
            memcpy(nets[k]->adam_m, st[k] + n, sizeof(float) * n);
            memcpy(nets[k]->adam_v, st[k] + 2 * n, sizeof(float) * n);
        }
        gan->adam_g.t = mm.adam_t_g;
        gan->adam_d.t = mm.adam_t_d;
        /* The file's EMA, or (a file without one) the raw weights to start it again from. */
        if (gan->ema_g)
            memcpy(gan->ema_g, se ? se : gan->g.param, sizeof(float) * gan->g.n_params);
    }
    free(sg);
    free(sd);
    free(se);
    if (rc == 0 && m)
        *m = mm;
    else
        cg_ckpt_meta_free(&mm);
    return rc;
}

/* ---- checkpoint directories ---------------------------------------------------------- */

/* "step-<digits>.h5" (or with prefix "." and suffix ".h5.tmp" when tmp) -> step. */
static int parse_step_name(const char *name, int tmp, long *step)
{
    const char *pre = tmp ? ".step-" : "step-";
    const char *suf = tmp ? ".h5.tmp" : ".h5";
    size_t lp = strlen(pre), ls = strlen(suf), n = strlen(name);
    if (n <= lp + ls || strncmp(name, pre, lp) || strcmp(name + n - ls, suf))
        return 0;
    long v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (LONG_MAX - 9) / 10)
            return 0;
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return 1;
}

typedef struct {
    long *steps;
    int n, cap;
} step_list;

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* Step numbers of DIR's files of one kind, newest first. Returns 0, 1 when DIR is missing,
 * -1 on error. */
static int list_steps(const char *dir, int tmp, step_list *l, cg_error *e)
{
    memset(l, 0, sizeof *l);
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT)
            return 1;
        return cg_fail(e, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(dp))) {
        long s;
        if (!parse_step_name(de->d_name, tmp, &s))
            continue;
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 64;
            long *p = realloc(l->steps, sizeof(long) * (size_t)cap);
            if (!p) {
                closedir(dp);
                free(l->steps);
                return cg_fail(e, "%s: out of memory", dir);
            }
            l->steps = p, l->cap = cap;
        }
        l->steps[l->n++] = s;
    }
    closedir(dp);
    if (l->n)
        qsort(l->steps, (size_t)l->n, sizeof(long), cmp_desc);
    return 0;
}

int cg_ckpt_find_latest(const char *dir, const char *model, char *path, size_t len,
                        cg_error *e)
{
    step_list l;
    int r = list_steps(dir, 0, &l, e);
    if (r)
        return r > 0 ? 0 : -1;
    int found = 0;
    for (int i = 0; i < l.n && !found; i++) {
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/step-%08ld.h5", dir, l.steps[i]);
        cg_error sub = {{0}};
        int mismatch = 0;
        if (validate_impl(p, model, NULL, &mismatch, &sub) == 0) {
            if (strlen(p) >= len) {
                found = cg_fail(e, "%s: path does not fit the caller's buffer", p);
                break;
            }
            snprintf(path, len, "%s", p);
            found = 1;
        } else if (mismatch) {
            cg_fail(e, "%s (use another output directory or --model)", sub.msg);
            found = -1;
        } else {
            /* The message starts with the path; the warning names it once. */
            const char *why = sub.msg;
            size_t lp = strlen(p);
            if (!strncmp(why, p, lp) && !strncmp(why + lp, ": ", 2))
                why += lp + 2;
            fprintf(stderr, "chargan: warning: skipping %s: %s\n", p, why);
            fflush(stderr);
        }
    }
    free(l.steps);
    return found;
}

int cg_ckpt_prune(const char *dir, int keep, cg_error *e)
{
    step_list l, t;
    int r = list_steps(dir, 0, &l, e);
    if (r)
        return r > 0 ? 0 : -1;
    int deleted = 0, rc = 0;
    for (int i = keep > 0 ? keep : l.n; i < l.n && rc == 0; i++) {
        char p[PATH_CAP];
        snprintf(p, sizeof p, "%s/step-%08ld.h5", dir, l.steps[i]);
        if (unlink(p) && errno != ENOENT)
            rc = cg_fail(e, "%s: cannot delete old checkpoint: %s", p, strerror(errno));
        else
            deleted++;
    }
    /* Temporaries of killed writers, older than the newest complete checkpoint. */
    if (rc == 0 && l.n && list_steps(dir, 1, &t, e) == 0) {
        for (int i = 0; i < t.n; i++) {
            if (t.steps[i] >= l.steps[0])
                continue;
            char p[PATH_CAP];
            snprintf(p, sizeof p, "%s/.step-%08ld.h5.tmp", dir, t.steps[i]);
            unlink(p);
        }
        free(t.steps);
    }
    free(l.steps);
    if (rc == 0 && deleted && fsync_dir(dir))
        rc = cg_fail(e, "%s: fsync: %s", dir, strerror(errno));
    return rc ? -1 : deleted;
}

/* ---- sample files -------------------------------------------------------------------- */

typedef struct {
    const float *imgs;
    int n;
    long step;
    const char *model;
    uint64_t seed;
    const int32_t *labels;
} samples_ctx;

static int fill_samples(hid_t f, const void *vctx, const char *fname, cg_error *e)
{
    const samples_ctx *c = vctx;
    char created[32];
    iso_now(created, sizeof created);
    if (cg_h5_attr_put_str(f, "format", CG_SAMPLES_FORMAT, fname, e) ||
        attr_put_i32(f, "format_version", CG_CKPT_FORMAT_VERSION, fname, e) ||
        attr_put_i64(f, "step", c->step, fname, e) ||
        cg_h5_attr_put_str(f, "model", c->model, fname, e) ||
        attr_put_u64(f, "seed", c->seed, fname, e) ||
        cg_h5_attr_put_str(f, "created", created, fname, e) || put_stack(f, fname, e))
        return -1;
    const hsize_t n = (hsize_t)c->n;
    hsize_t dims[3] = {n, SIDE, SIDE}, chunk[3] = {n < 256 ? n : 256, SIDE, SIDE};
    if (cg_h5_dset_put(f, "samples", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dims, chunk,
                       c->imgs, fname, "", e))
        return -1;
    if (c->labels) {
        hsize_t lchunk[1] = {n < 65536 ? n : 65536};
        if (cg_h5_dset_put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, lchunk,
                           c->labels, fname, "", e))
            return -1;
    }
    return 0;
}

int cg_samples_write(const char *path, const float *imgs, int n, long step, const char *model,
                     uint64_t seed, const int32_t *labels, cg_error *e)
{
    if (!path || !path[0])
        return cg_fail(e, "sample file name is empty");
    if (n < 1 || !imgs)
        return cg_fail(e, "%s: no samples to write (n = %d)", path, n);
    if (step < 0)
        return cg_fail(e, "%s: step %ld is negative", path, step);
    for (size_t i = 0; i < (size_t)n * SIDE * SIDE; i++)
        if (!(imgs[i] >= 0.0f && imgs[i] <= 1.0f))
            return cg_fail(e, "%s: sample %zu pixel %zu is %g, not in [0,1]", path,
                           i / (SIDE * SIDE), i % (SIDE * SIDE), (double)imgs[i]);
    char dir[PATH_CAP];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!base[0])
        return cg_fail(e, "%s: names a directory, not a file", path);
    cg_path_dir(path, dir, sizeof dir); /* too long: safe_write says so */
    samples_ctx c = {imgs, n, step, model ? model : "", seed, labels};
    const size_t bytes = (size_t)n * (sizeof(float) * SIDE * SIDE + sizeof(int32_t));
    return safe_write(dir, base, "sample file", fill_samples, &c, bytes, NULL, 0, e);
}

/* Opens dataset /NAME of f, checks it holds 4-byte values of class cls (tname: "float32", ...
 * for the message) and reads its dims. 0: dims filled; 1: not of rank ndim (no message);
 * -1: error with e set. */
static int dset_shape(hid_t f, const char *path, const char *name, H5T_class_t cls,
                      const char *tname, int ndim, hsize_t *dims, cg_error *e)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return fail_h5(e, "%s: /%s is not a readable dataset", path, name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rc = 0;
    if (t < 0 || sp < 0)
        rc = fail_h5(e, "%s: cannot read /%s", path, name);
    else if (H5Tget_class(t) != cls || H5Tget_size(t) != 4)
        rc = cg_fail(e, "%s: /%s is not %s", path, name, tname);
    else if (H5Sget_simple_extent_ndims(sp) != ndim ||
             H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
        rc = 1;
    close_id(sp);
    close_id(t);
    H5Dclose(d);
    return rc;
}

/* Checks the sample layout of an open file; fills m (n, has_labels and the attributes). */
static int samples_meta_f(hid_t f, const char *path, cg_samples_meta *m, cg_error *e)
{
    memset(m, 0, sizeof *m);
    int32_t ver = 0;
    int r = check_format(f, path, 1, &ver, e);
    if (r < 0)
        return -1;
    const int strict = r == 1; /* our files carry all attributes; others may not */
    m->format_version = ver;
    const char *what = "chargan sample file";
    htri_t ex = H5Lexists(f, "samples", H5P_DEFAULT);
    if (ex <= 0)
        return ex < 0 ? fail_h5(e, "%s: cannot read /samples", path)
                      : cg_fail(e, "%s: not a chargan sample file: no /samples dataset", path);
    int64_t step = 0;
    uint64_t seed = 0;
    char *model = NULL, *created = NULL;
    int r1 = attr_get_int(f, "step", H5T_NATIVE_INT64, &step, path, e);
    if (r1 < 0 || (strict && need(r1, "step", path, what, e)))
        return -1;
    int r2 = attr_get_int(f, "seed", H5T_NATIVE_UINT64, &seed, path, e);
    if (r2 < 0 || (strict && need(r2, "seed", path, what, e)))
        return -1;
    int r3 = attr_get_str(f, "model", &model, path, e);
    if (r3 < 0 || (strict && need(r3, "model", path, what, e)))
        return -1;
    snprintf(m->model, sizeof m->model, "%s", model ? model : "");
    free(model);
    if (attr_get_str(f, "created", &created, path, e) < 0)
        return -1;
    snprintf(m->created, sizeof m->created, "%s", created ? created : "");
    free(created);
    if (read_stack(f, path, &m->stack, e))
        return -1;
    m->step = (long)step;
    m->seed = seed;

    hsize_t dims[3] = {0, 0, 0};
    r = dset_shape(f, path, "samples", H5T_FLOAT, "float32", 3, dims, e);
    if (r < 0)
        return -1;
    if (r || dims[1] != SIDE || dims[2] != SIDE || dims[0] < 1 || dims[0] > INT_MAX)
        return cg_fail(e, "%s: /samples must have shape [N, 28, 28] with N >= 1", path);
    m->n = (int)dims[0];

    ex = H5Lexists(f, "labels", H5P_DEFAULT);
    if (ex < 0)
        return fail_h5(e, "%s: cannot read /labels", path);
    if (ex > 0) {
        hsize_t ln = 0;
        r = dset_shape(f, path, "labels", H5T_INTEGER, "int32", 1, &ln, e);
        if (r < 0)
            return -1;
        if (r || ln != dims[0])
            return cg_fail(e, "%s: /labels must have shape [%d] like /samples", path, m->n);
        m->has_labels = 1;
    }
    return 0;
}

int cg_samples_read_meta(const char *path, cg_samples_meta *m, cg_error *e)
{
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    int rc = samples_meta_f(f, path, m, e);
    H5Fclose(f);
    return rc;
}

int cg_samples_read(const char *path, float **imgs, int *n, int32_t **labels, cg_error *e)
{
    *imgs = NULL;
    *n = 0;
    if (labels)
        *labels = NULL;
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    cg_samples_meta m;
    int rc = samples_meta_f(f, path, &m, e);
    float *x = NULL;
    int32_t *lab = NULL;
    if (rc == 0) {
        x = malloc(sizeof(float) * (size_t)m.n * SIDE * SIDE);
        if (labels && m.has_labels)
            lab = malloc(sizeof(int32_t) * (size_t)m.n);
        if (!x || (labels && m.has_labels && !lab))
            rc = cg_fail(e, "%s: out of memory for %d samples", path, m.n);
    }
    if (rc == 0) {
        hid_t d = H5Dopen2(f, "samples", H5P_DEFAULT);
        if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
            rc = fail_h5(e, "%s: cannot read /samples (corrupt data?)", path);
        close_id(d);
    }
    if (rc == 0 && lab) {
        hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
        if (d < 0 || H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) < 0)
            rc = fail_h5(e, "%s: cannot read /labels (corrupt data?)", path);
        close_id(d);
    }
    H5Fclose(f);
    if (rc) {
        free(x);
        free(lab);
        return -1;
    }
    *imgs = x;
    *n = m.n;
    if (labels)
        *labels = lab;
    return 0;
}

int cg_h5_file_kind(const char *path, cg_error *e)
{
    hid_t f = open_ro(path, e);
    if (f < 0)
        return -1;
    char *fmt = NULL;
    int rc = read_format(f, path, &fmt, e);
    if (rc == 0) {
        if (fmt && !strcmp(fmt, CG_CKPT_FORMAT)) {
            rc = CG_FILE_CHECKPOINT;
        } else if (fmt && !strcmp(fmt, CG_SAMPLES_FORMAT)) {
            rc = CG_FILE_SAMPLES;
        } else if (fmt) {
            rc = cg_fail(e, "%s: not a chargan file (format '%.100s')", path, fmt);
        } else {
            htri_t ex = H5Lexists(f, "samples", H5P_DEFAULT);
            rc = ex > 0 ? CG_FILE_SAMPLES
                        : cg_fail(e, "%s: not a chargan checkpoint or sample file (an HDF5 "
                                     "file without a 'format' attribute)", path);
        }
    }
    free(fmt);
    H5Fclose(f);
    return rc;
}
