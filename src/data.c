/* EMNIST loading, one shared copy per node (the files are read by emnist_read.c), batches,
 * and the held-out split. Only one rank per node reads; every other rank waits and maps the
 * node's shared window. */
#include "chargan/data.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mpi.h>

#include "chargan/dist.h"
#include "chargan/rng.h"
#include "emnist_read.h"

enum { DS_NONE = 0, DS_WINDOW = 1, DS_LOCAL = 2 };

/* Metadata the reading rank sends to the others of its node (plain bytes). */
typedef struct {
    long n, cap, file_bytes;
    int n_classes;
    char chars[CG_MAX_CLASSES];
    char source[512];
} meta_t;

/* ---------------------------------------------------------------- loading */

int cg_data_load_local(const cg_data_opts *o, cg_dataset *ds, cg_error *e)
{
    memset(ds, 0, sizeof *ds);
    reader *r = malloc(sizeof *r);
    if (!r)
        return cg_fail(e, "out of memory");
    int rc = cg_reader_open(r, o, e);
    uint8_t *mem = NULL;
    if (!rc) {
        mem = malloc((size_t)r->cap * (CG_IMG_PIXELS + 1));
        if (!mem)
            rc = cg_fail(e, "%s: out of memory for %ld images", r->images, r->cap);
    }
    if (!rc)
        rc = cg_reader_fill(r, mem, mem + (size_t)r->cap * CG_IMG_PIXELS, e);
    if (!rc) {
        ds->n = r->n;
        ds->pixels = mem;
        ds->labels = mem + (size_t)r->cap * CG_IMG_PIXELS;
        ds->n_classes = r->n_classes;
        memcpy(ds->chars, r->chars, sizeof ds->chars);
        cg_reader_describe(r, ds->source, sizeof ds->source);
        ds->file_bytes = cg_file_size(r->images);
        ds->mem_ = mem;
        ds->kind_ = DS_LOCAL;
    } else {
        free(mem);
    }
    cg_reader_close(r);
    free(r);
    return rc;
}

/* Collective status after a phase in which only the node readers worked. The others arrive
 * at once and would spin inside MPI (Open MPI polls), taking the cores the reader needs to
 * inflate; a nonblocking barrier tested between short sleeps leaves the cores to it. Then
 * every rank gets the message of the lowest failing rank (nothing is printed here). */
static int settle(cg_ctx *c, int status, cg_error *e)
{
    MPI_Request req;
    MPI_Ibarrier(c->world, &req);
    int done = 0;
    const struct timespec nap = {0, 1000000};
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            break;
        nanosleep(&nap, NULL);
    }
    int mine = status ? c->rank : c->size, first = c->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->world);
    if (first == c->size)
        return 0;
    return cg_bcast_status(c, first, -1, e);
}

/* The node-shared window of cg_data_load and the communicator that owns it. */
struct cg_data_shm {
    MPI_Win win;
    MPI_Comm comm;
};

/* What the phases of one collective load hand each other. */
typedef struct {
    cg_ctx *c;
    int reads;               /* this rank reads for its node */
    reader *r;               /* the reading rank's, else NULL */
    struct cg_data_shm *shm; /* NULL: out of memory */
    meta_t m;                /* filled by the reader, then sent to its node */
    uint8_t *base;           /* the window, as mapped on this rank */
    cg_error err;            /* the message every rank returns */
} load_state;

/* The node readers resolve the files and read the headers (and IDX labels). */
static int load_open(load_state *ld, const cg_data_opts *o)
{
    int st = 0;
    if (ld->reads) {
        ld->r = malloc(sizeof *ld->r);
        st = ld->r ? cg_reader_open(ld->r, o, &ld->err) : cg_fail(&ld->err, "out of memory");
    }
    if (!ld->shm && !st)
        st = cg_fail(&ld->err, "out of memory");
    return settle(ld->c, st, &ld->err);
}

/* The node-shared window, sized by the reader's image count. */
static int load_window(load_state *ld)
{
    struct cg_data_shm *shm = ld->shm;
    if (ld->reads)
        ld->m.cap = ld->r->cap;
    MPI_Bcast(&ld->m.cap, 1, MPI_LONG, 0, ld->c->node);
    /* A private duplicate: its error handler can return instead of aborting, and the
     * window's lifetime is tied to it rather than to the caller's communicator. */
    MPI_Comm_dup(ld->c->node, &shm->comm);
    MPI_Comm_set_errhandler(shm->comm, MPI_ERRORS_RETURN);
    MPI_Aint bytes = ld->reads ? (MPI_Aint)ld->m.cap * (CG_IMG_PIXELS + 1) : 0;
    void *mine = NULL;
    int mrc = MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, shm->comm, &mine, &shm->win);
    int lst = 0;
    if (mrc == MPI_SUCCESS) {
        MPI_Aint qsize;
        int qdisp;
        mrc = MPI_Win_shared_query(shm->win, 0, &qsize, &qdisp, &ld->base);
    }
    if (mrc != MPI_SUCCESS) {
        char s[MPI_MAX_ERROR_STRING];
        int sl = 0;
        MPI_Error_string(mrc, s, &sl);
        lst = cg_fail(&ld->err, "cannot allocate %ld MB of node-shared memory for the data set "
                                "(%s); is /dev/shm large enough?",
                      (long)((ld->m.cap * (CG_IMG_PIXELS + 1)) >> 20), s);
    }
    int st = settle(ld->c, lst, &ld->err);
    if (st && shm->win != MPI_WIN_NULL)
        MPI_Win_free(&shm->win);
    return st;
}

/* Every rank gets the reader's metadata; all nodes must have read the same image count. */
static int load_agree(load_state *ld)
{
    MPI_Bcast(&ld->m, (int)sizeof ld->m, MPI_BYTE, 0, ld->c->node);
    /* Readers on different nodes read their own copy of the files; make sure they all saw
     * the same number of images, or the sampler would differ per node. */
    long lo = ld->m.n, hi = ld->m.n;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_LONG, MPI_MIN, ld->c->world);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_LONG, MPI_MAX, ld->c->world);
    if (lo != hi)
        return cg_fail(&ld->err, "%s: nodes read different data (%ld vs %ld images)",
                       ld->m.source, lo, hi);
    return 0;
}

/* The node readers decode straight into the window; the others wait, then see it. */
static int load_fill(load_state *ld)
{
    struct cg_data_shm *shm = ld->shm;
    /* A passive-target epoch so that MPI_Win_sync orders the reader's stores before the
     * other ranks' loads (the barrier in settle() is the synchronization). */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, shm->win);
    int lst = 0;
    if (ld->reads) {
        reader *r = ld->r;
        lst = cg_reader_fill(r, ld->base, ld->base + (size_t)ld->m.cap * CG_IMG_PIXELS, &ld->err);
        ld->m.n = r->n;
        ld->m.n_classes = r->n_classes;
        memcpy(ld->m.chars, r->chars, sizeof ld->m.chars);
        cg_reader_describe(r, ld->m.source, sizeof ld->m.source);
        ld->m.file_bytes = cg_file_size(r->images);
    }
    MPI_Win_sync(shm->win);
    int st = settle(ld->c, lst, &ld->err);
    MPI_Win_sync(shm->win);
    MPI_Win_unlock_all(shm->win);
    if (!st)
        st = load_agree(ld);
    if (st)
        MPI_Win_free(&shm->win);
    return st;
}

int cg_data_load(cg_ctx *c, const cg_data_opts *o, cg_dataset *ds, cg_error *e)
{
    memset(ds, 0, sizeof *ds);
    load_state ld;
    memset(&ld, 0, sizeof ld);
    ld.c = c;
    ld.reads = c->node_rank == 0;
    ld.shm = malloc(sizeof *ld.shm);
    if (ld.shm) {
        ld.shm->win = MPI_WIN_NULL;
        ld.shm->comm = MPI_COMM_NULL;
    }
    int st = load_open(&ld, o);
    if (!st)
        st = load_window(&ld);
    if (!st)
        st = load_fill(&ld);
    if (ld.r) {
        cg_reader_close(ld.r);
        free(ld.r);
    }
    if (st) {
        if (ld.shm && ld.shm->comm != MPI_COMM_NULL)
            MPI_Comm_free(&ld.shm->comm);
        free(ld.shm);
        if (e)
            *e = ld.err;
        memset(ds, 0, sizeof *ds);
        return -1;
    }
    ds->n = ld.m.n;
    ds->pixels = ld.base;
    ds->labels = ld.base + (size_t)ld.m.cap * CG_IMG_PIXELS;
    ds->n_classes = ld.m.n_classes;
    ds->file_bytes = ld.m.file_bytes;
    memcpy(ds->chars, ld.m.chars, sizeof ds->chars);
    memcpy(ds->source, ld.m.source, sizeof ds->source);
    ds->source[sizeof ds->source - 1] = 0;
    ds->shm_ = ld.shm;
    ds->kind_ = DS_WINDOW;
    return 0;
}

void cg_data_free(cg_dataset *ds)
{
    if (ds->kind_ == DS_WINDOW) {
        MPI_Win_free(&ds->shm_->win);
        MPI_Comm_free(&ds->shm_->comm);
        free(ds->shm_);
    } else if (ds->kind_ == DS_LOCAL) {
        free(ds->mem_);
    }
    memset(ds, 0, sizeof *ds);
}

void cg_data_batch(const cg_dataset *ds, const int64_t *idx, int n, float lo, float hi,
                   float *out, int32_t *labels_out)
{
    /* A table keeps the two ends exact (0 -> lo, 255 -> hi) and costs 256 divisions. */
    float lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = lo + (hi - lo) * ((float)v / 255.0f);
    lut[0] = lo;
    lut[255] = hi;
    for (int i = 0; i < n; i++) {
        assert(idx[i] >= 0 && idx[i] < ds->n);
        const uint8_t *src = ds->pixels + (size_t)idx[i] * CG_IMG_PIXELS;
        float *dst = out + (size_t)i * CG_IMG_PIXELS;
        for (int j = 0; j < CG_IMG_PIXELS; j++)
            dst[j] = lut[src[j]];
        if (labels_out)
            labels_out[i] = ds->labels[idx[i]];
    }
}

/* ---- the held-out split ------------------------------------------------------------- */

int cg_heldout(long index) { return cg_mix64((uint64_t)index ^ CG_HELDOUT_SALT) % 5 == 0; }

long cg_part_indices(long total, int held_out, int64_t *out)
{
    long n = 0;
    for (long i = 0; i < total; i++)
        if (cg_heldout(i) == !!held_out)
            out[n++] = i;
    return n;
}

long cg_split_indices(long total, int held_out, long n, int64_t *out)
{
    int64_t *all = cg_alloc(sizeof(int64_t) * (size_t)(total ? total : 1));
    const long m = cg_part_indices(total, held_out, all);
    /* Fisher-Yates with seed 0, so "the first n" is a fixed random subset of the part. */
    const uint64_t stream = cg_stream(CG_RNG_SAMPLE, 3);
    for (long i = m - 1; i > 0; i--) {
        const uint64_t u = cg_rng_u64(0, stream, (uint64_t)i);
        const long j = (long)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
        const int64_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    const long k = m < n ? m : n;
    memcpy(out, all, sizeof(int64_t) * (size_t)k);
    cg_free(all);
    return k;
}
