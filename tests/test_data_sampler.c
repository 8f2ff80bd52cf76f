/* Distributed sampler semantics:
 *   - the union over ranks of global batch `step`, in rank order, is the same for P = 1, 2, 4
 *     (and for P not dividing B, with parts differing by at most one index);
 *   - each epoch is a permutation, its batches are disjoint, n % B images are left out;
 *   - the permutation differs between epochs and seeds and is the same for the same seed;
 *   - golden values pin the exact algorithm (computed independently in Python: splitmix64
 *     rounds of cg_rng_u64, Fisher-Yates from the top with j = (u * (i + 1)) >> 64);
 *   - stepping back and forth between epochs recomputes correctly;
 *   - a sampler over the classifier-train part (train --exclude-heldout) never hands out a
 *     held-out index, on any rank count, and covers the part as the full sampler covers
 *     the whole set. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/data.h"
#include "testutil.h"

static int64_t *global_batch(cg_sampler *s, long step, int P, long *epoch)
{
    int64_t *out = calloc((size_t)s->global_batch, sizeof *out);
    int at = 0;
    for (int r = 0; r < P; r++) {
        int k = cg_sampler_count(s, r, P);
        *epoch = cg_sampler_batch(s, step, r, P, out + at);
        at += k;
    }
    CHECKF(at == s->global_batch, "P=%d: parts add up to %d, not %d", P, at, s->global_batch);
    return out;
}

static void test_union_independent_of_P(void)
{
    const long n = 1000;
    const int B = 64;
    cg_sampler s1, s2, s4, s3;
    cg_error e;
    CHECK(cg_sampler_init(&s1, n, B, 42, &e) == 0);
    CHECK(cg_sampler_init(&s2, n, B, 42, &e) == 0);
    CHECK(cg_sampler_init(&s4, n, B, 42, &e) == 0);
    CHECK(cg_sampler_init(&s3, n, B, 42, &e) == 0);
    CHECK(s1.batches_per_epoch == 15); /* 1000 / 64, the last 40 images dropped */
    long bad = 0, bad3 = 0;
    for (long step = 0; step < 50; step++) { /* 3+ epochs */
        long e1, e2, e4, e3;
        int64_t *a = global_batch(&s1, step, 1, &e1), *b = global_batch(&s2, step, 2, &e2),
                *c = global_batch(&s4, step, 4, &e4), *d = global_batch(&s3, step, 3, &e3);
        CHECK(e1 == step / 15 && e2 == e1 && e4 == e1 && e3 == e1);
        bad += memcmp(a, b, B * sizeof *a) != 0 || memcmp(a, c, B * sizeof *a) != 0;
        bad3 += memcmp(a, d, B * sizeof *a) != 0;
        free(a), free(b), free(c), free(d);
    }
    CHECKF(bad == 0, "%ld global batches differ between P = 1, 2, 4", bad);
    CHECKF(bad3 == 0, "%ld global batches differ with P = 3 (B %% P != 0)", bad3);
    CHECK(cg_sampler_count(&s3, 0, 3) == 21 && cg_sampler_count(&s3, 1, 3) == 21 &&
          cg_sampler_count(&s3, 2, 3) == 22);
    CHECK(cg_sampler_count(&s4, 3, 4) == 16);
    cg_sampler_free(&s1), cg_sampler_free(&s2), cg_sampler_free(&s4), cg_sampler_free(&s3);
}

static void test_epochs(void)
{
    const long n = 1000;
    const int B = 64;
    cg_sampler s;
    cg_error e;
    CHECK(cg_sampler_init(&s, n, B, 7, &e) == 0);
    int64_t idx[64];
    char *seen = calloc((size_t)n, 1);
    int64_t first[3][64];
    for (long ep = 0; ep < 3; ep++) {
        memset(seen, 0, (size_t)n);
        long dup = 0, out_of_range = 0;
        for (long k = 0; k < s.batches_per_epoch; k++) {
            long got = cg_sampler_batch(&s, ep * s.batches_per_epoch + k, 0, 1, idx);
            CHECK(got == ep);
            for (int i = 0; i < B; i++) {
                if (idx[i] < 0 || idx[i] >= n) {
                    out_of_range++;
                    continue;
                }
                dup += seen[idx[i]]++;
            }
            if (k == 0)
                memcpy(first[ep], idx, sizeof idx);
        }
        long used = 0;
        for (long i = 0; i < n; i++)
            used += seen[i];
        CHECKF(dup == 0 && out_of_range == 0, "epoch %ld: %ld repeats, %ld out of range", ep, dup,
               out_of_range);
        CHECKF(used == 15 * 64, "epoch %ld uses %ld images, expected %d", ep, used, 15 * 64);
        /* the full permutation is one */
        memset(seen, 0, (size_t)n);
        long perm_bad = 0;
        for (long i = 0; i < n; i++)
            perm_bad += seen[s.perm[i]]++;
        CHECK(perm_bad == 0);
    }
    CHECK(memcmp(first[0], first[1], sizeof first[0]) != 0);
    CHECK(memcmp(first[1], first[2], sizeof first[0]) != 0);
    /* back to epoch 0 after epoch 2: recomputed, identical */
    cg_sampler_batch(&s, 0, 0, 1, idx);
    CHECK(memcmp(first[0], idx, sizeof idx) == 0 && s.cached_epoch == 0);
    /* same seed: same; other seed: different */
    cg_sampler t, u;
    CHECK(cg_sampler_init(&t, n, B, 7, &e) == 0 && cg_sampler_init(&u, n, B, 8, &e) == 0);
    int64_t a[64], b[64];
    cg_sampler_batch(&t, 17, 0, 1, a);
    cg_sampler_batch(&s, 17, 0, 1, idx);
    cg_sampler_batch(&u, 17, 0, 1, b);
    CHECK(memcmp(a, idx, sizeof a) == 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
    cg_sampler_free(&s), cg_sampler_free(&t), cg_sampler_free(&u);
    free(seen);
}

static void test_golden(void)
{
    /* from the Python reference (see the header comment) */
    static const int64_t p42e0[10] = {9, 3, 5, 0, 6, 1, 8, 4, 2, 7};
    static const int64_t p42e1[10] = {6, 8, 4, 9, 7, 1, 3, 0, 5, 2};
    static const int64_t p7e3[20] = {8, 18, 6, 3, 2, 17, 5, 9, 4, 14,
                                     19, 0, 13, 1, 15, 10, 12, 11, 7, 16};
    cg_sampler s;
    cg_error e;
    int64_t idx[20];
    CHECK(cg_sampler_init(&s, 10, 10, 42, &e) == 0);
    CHECK(cg_sampler_batch(&s, 0, 0, 1, idx) == 0);
    CHECK(memcmp(idx, p42e0, sizeof p42e0) == 0);
    CHECK(cg_sampler_batch(&s, 1, 0, 1, idx) == 1);
    CHECK(memcmp(idx, p42e1, sizeof p42e1) == 0);
    /* rank 1 of 2 gets the second half */
    cg_sampler_batch(&s, 0, 1, 2, idx);
    CHECK(memcmp(idx, p42e0 + 5, 5 * sizeof *idx) == 0);
    cg_sampler_free(&s);
    CHECK(cg_sampler_init(&s, 20, 5, 7, &e) == 0);
    /* epoch 3 = steps 12..15 (4 batches per epoch); step 13 is slice [5, 10) */
    CHECK(cg_sampler_batch(&s, 13, 0, 1, idx) == 3);
    CHECK(memcmp(idx, p7e3 + 5, 5 * sizeof *idx) == 0);
    CHECK(memcmp(s.perm, p7e3, sizeof p7e3) == 0);
    cg_sampler_free(&s);
}

static void test_errors(void)
{
    cg_sampler s;
    cg_error e = {{0}};
    CHECK(cg_sampler_init(&s, 10, 11, 1, &e) != 0);
    CHECKF(strstr(e.msg, "10 images, fewer than one global batch (11)"), "%s", e.msg);
    CHECK(cg_sampler_init(&s, 10, 0, 1, &e) != 0);
    CHECKF(strstr(e.msg, "global batch must be >= 1"), "%s", e.msg);
    CHECK(cg_sampler_init(&s, 10, 10, 1, &e) == 0 && s.batches_per_epoch == 1);
    cg_sampler_free(&s);
    cg_sampler_free(&s); /* twice is harmless */
}

/* A generated data set whose pixel 0 says whether the image is held out (255) or not (0):
 * batches are drawn as the trainer draws them (sampler, then cg_data_batch). */
static void test_subset_never_heldout(void)
{
    const long n = 1000;
    const int B = 16;
    uint8_t *pix = calloc((size_t)n * CG_IMG_PIXELS, 1), *lab = calloc((size_t)n, 1);
    for (long i = 0; i < n; i++) {
        pix[(size_t)i * CG_IMG_PIXELS] = cg_heldout(i) ? 255 : 0;
        lab[i] = (uint8_t)(i % 47);
    }
    cg_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = n;
    ds.pixels = pix;
    ds.labels = lab;
    ds.n_classes = 47;

    int64_t *part = calloc((size_t)n, sizeof *part), *held = calloc((size_t)n, sizeof *held);
    const long np = cg_part_indices(n, 0, part), nh = cg_part_indices(n, 1, held);
    CHECKF(np + nh == n && nh > 150 && nh < 250, "parts %ld + %ld", np, nh);
    for (long k = 1; k < np; k++)
        CHECK(part[k] > part[k - 1] && !cg_heldout(part[k]));

    cg_error e;
    cg_sampler s[4];
    for (int P = 1; P <= 4; P++)
        CHECK(cg_sampler_init_subset(&s[P - 1], part, np, B, 5, &e) == 0);
    CHECK(s[0].n == np && s[0].batches_per_epoch == np / B);
    float img[16 * CG_IMG_PIXELS];
    int32_t labels[16];
    char *seen = calloc((size_t)n, 1);
    long heldout_drawn = 0, differ = 0, per_epoch_bad = 0;
    const long steps = 3 * s[0].batches_per_epoch + 5;
    for (long step = 0; step < steps; step++) {
        if (step % s[0].batches_per_epoch == 0) /* a new epoch */
            memset(seen, 0, (size_t)n);
        long ep;
        int64_t *ref = global_batch(&s[0], step, 1, &ep);
        for (int P = 2; P <= 4; P++) {
            int64_t *b = global_batch(&s[P - 1], step, P, &ep);
            differ += memcmp(ref, b, B * sizeof *b) != 0;
            free(b);
        }
        cg_data_batch(&ds, ref, B, 0.0f, 1.0f, img, labels);
        for (int i = 0; i < B; i++) {
            heldout_drawn += img[(size_t)i * CG_IMG_PIXELS] != 0.0f || cg_heldout(ref[i]);
            per_epoch_bad += seen[ref[i]]++ != 0; /* each image at most once per epoch */
            CHECK(labels[i] == (int32_t)(ref[i] % 47));
        }
        free(ref);
    }
    CHECKF(heldout_drawn == 0, "%ld held-out images drawn", heldout_drawn);
    CHECKF(differ == 0, "%ld global batches differ between P = 1..4", differ);
    CHECKF(per_epoch_bad == 0, "%ld repeats within an epoch", per_epoch_bad);
    /* A full epoch covers all of the part but its last np % B leftovers. */
    memset(seen, 0, (size_t)n);
    long covered = 0;
    for (long k = 0; k < s[0].batches_per_epoch; k++) {
        long ep;
        int64_t *b = global_batch(&s[0], k, 1, &ep);
        for (int i = 0; i < B; i++)
            covered += !seen[b[i]]++;
        free(b);
    }
    CHECK(covered == np - np % B);
    /* Resume safety: a fresh sampler at any step gives the same batch. */
    cg_sampler f;
    CHECK(cg_sampler_init_subset(&f, part, np, B, 5, &e) == 0);
    long ep;
    int64_t *a = global_batch(&f, steps - 1, 2, &ep), *b = global_batch(&s[1], steps - 1, 2, &ep);
    CHECK(memcmp(a, b, B * sizeof *a) == 0);
    free(a), free(b);
    cg_sampler_free(&f);
    /* Fewer images in the part than one batch: refused. */
    CHECK(cg_sampler_init_subset(&f, part, 10, B, 5, &e) != 0);
    for (int P = 0; P < 4; P++)
        cg_sampler_free(&s[P]);
    free(seen), free(part), free(held), free(pix), free(lab);
}

int main(void)
{
    test_union_independent_of_P();
    test_epochs();
    test_golden();
    test_errors();
    test_subset_never_heldout();
    return tu_finish("test_data_sampler");
}
