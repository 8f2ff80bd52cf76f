/* Counter-based random numbers: every value is a pure function of (seed, stream, index).
 *
 * No sequential state means any rank can draw the noise vector of global sample i at step t
 * without knowing what other ranks drew, which is what makes training independent of the
 * number of ranks. The generator is three rounds of the splitmix64 finalizer:
 *     u64(seed, stream, index) = mix(mix(mix(seed) ^ stream) ^ index)
 * It is simple enough to be reproduced bit-exactly in numpy (tests/reference/). */
#ifndef CHARGAN_RNG_H
#define CHARGAN_RNG_H
#include <stddef.h>
#include <stdint.h>

/* What a stream of random numbers is for; part of the stream key so purposes never collide. */
enum cg_purpose {
    CG_RNG_INIT = 1,     /* weight initialization; stream key: tensor index */
    CG_RNG_NOISE = 2,    /* generator noise z; stream key: training step */
    CG_RNG_DROPOUT = 3,  /* dropout masks; stream key: training step and layer */
    CG_RNG_SHUFFLE = 4,  /* data order; stream key: epoch */
    CG_RNG_SAMPLE = 5,   /* noise for sample pictures; stream key: 0 */
    CG_RNG_LABEL = 6,    /* class labels for conditional generation; stream key: step */
    CG_RNG_CODING = 7,   /* a VAE's reparameterization noise eps; stream key: training step */
};

static inline uint64_t cg_mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Stream key from a purpose and a 48-bit sub-key (step, epoch, tensor index, ...). */
static inline uint64_t cg_stream(enum cg_purpose purpose, uint64_t sub)
{
    return ((uint64_t)purpose << 56) ^ (sub & 0x00FFFFFFFFFFFFFFull);
}

static inline uint64_t cg_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    return cg_mix64(cg_mix64(cg_mix64(seed) ^ stream) ^ index);
}

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
static inline float cg_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (float)(cg_rng_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal by Box-Muller from the two 32-bit halves of one draw. */
float cg_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

/* Fills out[i] = normal(seed, stream, first + i) for i < n. */
void cg_rng_normal_fill(float *out, long n, uint64_t seed, uint64_t stream, uint64_t first);

/* A checksum of n floats' bit patterns, each mixed with its position: any single flipped bit
 * changes it (ranks compare their parameters with it). */
uint64_t cg_checksum_floats(const float *p, size_t n);

#endif
