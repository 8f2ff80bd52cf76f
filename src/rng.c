#include "chargan/rng.h"

#include <math.h>
#include <string.h>

float cg_rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t r = cg_rng_u64(seed, stream, index);
    /* u1 in (0, 1] so the logarithm is finite; u2 in [0, 1). */
    double u1 = ((double)(r >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(r & 0xFFFFFFFFull) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void cg_rng_normal_fill(float *out, long n, uint64_t seed, uint64_t stream, uint64_t first)
{
    for (long i = 0; i < n; i++)
        out[i] = cg_rng_normal(seed, stream, first + (uint64_t)i);
}

uint64_t cg_checksum_floats(const float *p, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        h += cg_mix64(((uint64_t)i << 32) ^ bits);
    }
    return h;
}
