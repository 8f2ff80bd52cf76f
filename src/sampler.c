/* The distributed sampler (chargan/data.h): every rank takes its contiguous share of each
 * global batch of one permutation per epoch. */
#include "chargan/data.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/rng.h"

int cg_sampler_init(cg_sampler *s, long n, int global_batch, uint64_t seed, cg_error *e)
{
    memset(s, 0, sizeof *s);
    if (global_batch < 1)
        return cg_fail(e, "global batch must be >= 1, not %d", global_batch);
    if (n < global_batch)
        return cg_fail(e, "the data set has %ld images, fewer than one global batch (%d)", n,
                       global_batch);
    s->n = n;
    s->global_batch = global_batch;
    s->seed = seed;
    s->batches_per_epoch = n / global_batch;
    s->cached_epoch = -1;
    s->perm = cg_alloc((size_t)n * sizeof *s->perm);
    return 0;
}

int cg_sampler_init_subset(cg_sampler *s, const int64_t *subset, long n, int global_batch,
                           uint64_t seed, cg_error *e)
{
    if (cg_sampler_init(s, n, global_batch, seed, e))
        return -1;
    s->subset = cg_alloc((size_t)n * sizeof *s->subset);
    memcpy(s->subset, subset, (size_t)n * sizeof *s->subset);
    return 0;
}

void cg_sampler_free(cg_sampler *s)
{
    cg_free(s->perm);
    cg_free(s->subset);
    memset(s, 0, sizeof *s);
}

int cg_sampler_count(const cg_sampler *s, int rank, int size)
{
    long B = s->global_batch;
    return (int)(B * (rank + 1) / size - B * rank / size);
}

static void shuffle(cg_sampler *s, long epoch)
{
    int64_t *p = s->perm;
    for (long i = 0; i < s->n; i++)
        p[i] = i;
    const uint64_t stream = cg_stream(CG_RNG_SHUFFLE, (uint64_t)epoch);
    for (long i = s->n - 1; i > 0; i--) {
        /* multiply-high maps the 64-bit draw onto 0..i without a division */
        uint64_t u = cg_rng_u64(s->seed, stream, (uint64_t)i);
        long j = (long)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    s->cached_epoch = epoch;
}

long cg_sampler_batch(cg_sampler *s, long step, int rank, int size, int64_t *idx_out)
{
    assert(step >= 0 && size >= 1 && rank >= 0 && rank < size && s->perm);
    long epoch = step / s->batches_per_epoch, k = step % s->batches_per_epoch;
    if (epoch != s->cached_epoch)
        shuffle(s, epoch);
    long B = s->global_batch;
    long from = k * B + B * rank / size, to = k * B + B * (rank + 1) / size;
    if (s->subset)
        for (long i = from; i < to; i++)
            idx_out[i - from] = s->subset[s->perm[i]];
    else
        memcpy(idx_out, s->perm + from, (size_t)(to - from) * sizeof *idx_out);
    return epoch;
}
