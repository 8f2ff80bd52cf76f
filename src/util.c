#include "chargan/util.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cg_fail(cg_error *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void cg_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int inited = 0, finalized = 0, size = 1, rank = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) {
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    }
    if (size > 1)
        fprintf(stderr, "chargan: error: rank %d: %s\n", rank, msg);
    else
        fprintf(stderr, "chargan: error: %s\n", msg);
    fflush(stderr);
    if (size > 1) {
        /* The line is in the pipe to the launcher, which may not have forwarded it yet when
         * the abort tears the job down (MPICH's hydra then drops it): give it a moment. */
        const struct timespec pause = {0, 300000000};
        nanosleep(&pause, NULL);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    exit(1);
}

double cg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *cg_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        cg_die("out of memory allocating %zu MB", bytes >> 20);
    memset(p, 0, rounded);
    return p;
}

void cg_free(void *p) { free(p); }

int cg_fsync_dir(const char *dir)
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

/* Syncs the directory that holds path's last component (path is restored). */
static void sync_parent(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash == path) {
        cg_fsync_dir("/");
    } else if (slash) {
        *slash = 0;
        cg_fsync_dir(path);
        *slash = '/';
    } else {
        cg_fsync_dir(".");
    }
}

/* One level of cg_make_dirs: DIR exists as a directory afterwards. */
static int make_one(char *dir, cg_error *e)
{
    if (mkdir(dir, 0777) == 0)
        sync_parent(dir);
    else if (errno != EEXIST)
        return cg_fail(e, "%s: cannot create directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st))
        return cg_fail(e, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cg_fail(e, "%s: cannot create directory: %s", dir, strerror(ENOTDIR));
    return 0;
}

int cg_make_dirs(const char *path, cg_error *e)
{
    char buf[4096];
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
        if (make_one(buf, e))
            return -1;
        if (end)
            break;
        *p = '/';
    }
    return 0;
}

double cg_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cg_median(double *v, int n)
{
    if (n < 1)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cg_write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        const ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n, len -= (size_t)n;
    }
    return 0;
}

int cg_write_file(const char *path, const void *data, size_t len, cg_error *e)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return cg_fail(e, "%s: path too long", path);
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return cg_fail(e, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = cg_write_all(fd, data, len) || fsync(fd);
    const int err = errno;
    if (close(fd) != 0 && !bad)
        bad = 1;
    if (bad) {
        remove(tmp);
        return cg_fail(e, "%s: write error: %s", tmp, strerror(err ? err : errno));
    }
    if (rename(tmp, path) != 0) {
        const int rerr = errno;
        remove(tmp);
        return cg_fail(e, "%s: cannot rename %s to it: %s", path, tmp, strerror(rerr));
    }
    return 0;
}
