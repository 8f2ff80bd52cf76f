/* The paths of chargan/interp.h: cg_slerp and cg_lerp end exactly at their end points, slerp
 * keeps the norm of equal-norm vectors and moves at constant angular speed, nearly parallel
 * and opposite vectors (and zero) fall back to lerp without NaN; cg_interp_images lays out
 * rows and steps and hands every row the same codes. */
#include "testutil.h"

#include "chargan/data.h"
#include "chargan/interp.h"

enum { N = 150 };

static double norm(const float *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

static double cosine(const float *x, const float *y, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * y[i];
    return s / (norm(x, n) * norm(y, n));
}

/* t = 0 and t = 1 give a and b bit for bit, for both paths and a few kinds of pairs. */
static void test_end_points(const float *a, const float *b)
{
    const cg_path_fn paths[2] = {cg_slerp, cg_lerp};
    float out[N];
    for (int p = 0; p < 2; p++) {
        paths[p](a, b, N, 0.0f, out);
        CHECK(!memcmp(out, a, sizeof out));
        paths[p](a, b, N, 1.0f, out);
        CHECK(!memcmp(out, b, sizeof out));
    }
}

/* Equal norms: every point on the arc has that norm, and the angle to a grows linearly. */
static void test_equal_norms(const float *a, const float *b0)
{
    float b[N], out[N];
    const double ra = norm(a, N), rb = norm(b0, N);
    for (int i = 0; i < N; i++)
        b[i] = (float)(b0[i] * ra / rb);
    const double w = acos(cosine(a, b, N));
    for (int k = 1; k < 10; k++) {
        const float t = (float)k / 10.0f;
        cg_slerp(a, b, N, t, out);
        CHECK_NEAR(norm(out, N) / ra, 1.0, 1e-6);
        CHECK_NEAR(acos(cosine(a, out, N)), t * w, 1e-5);
        cg_lerp(a, b, N, t, out); /* the chord dips inside the sphere */
        CHECKF(norm(out, N) < ra * (1.0 - 1e-3), "lerp norm %g vs %g", norm(out, N), ra);
    }
}

/* Nearly parallel (and opposite, and zero) vectors: lerp, finite. */
static void test_degenerate(const float *a)
{
    float b[N], out[N], ref[N], zero[N] = {0};
    for (int i = 0; i < N; i++)
        b[i] = a[i] * (1.0f + 1e-7f * (float)(i % 3)); /* parallel up to rounding */
    for (int k = 0; k <= 4; k++) {
        const float t = (float)k / 4.0f;
        cg_slerp(a, b, N, t, out);
        cg_lerp(a, b, N, t, ref);
        CHECK(tu_all_finite(out, N) && !memcmp(out, ref, sizeof out));
        for (int i = 0; i < N; i++)
            b[i] = 2.0f * a[i];
        cg_slerp(a, b, N, t, out); /* exactly parallel: sin w = 0 */
        cg_lerp(a, b, N, t, ref);
        CHECK(tu_all_finite(out, N) && !memcmp(out, ref, sizeof out));
        for (int i = 0; i < N; i++)
            b[i] = -a[i];
        cg_slerp(a, b, N, t, out); /* opposite: no single great circle */
        CHECK(tu_all_finite(out, N));
        cg_slerp(zero, a, N, t, out);
        cg_lerp(zero, a, N, t, ref);
        CHECK(tu_all_finite(out, N) && !memcmp(out, ref, sizeof out));
    }
}

/* A decoder whose image i is filled with codes[i][0] + 1000 * label (or codes[i][0]). */
static void fake_decode(void *model, const float *codes, const int32_t *labels, int n,
                        float *out)
{
    const int dim = *(const int *)model;
    for (int i = 0; i < n; i++)
        for (int p = 0; p < CG_IMG_PIXELS; p++)
            out[(size_t)i * CG_IMG_PIXELS + p] =
                codes[(size_t)i * dim] + (labels ? 1000.0f * (float)labels[i] : 0.0f);
}

static void test_images(const float *a, const float *b)
{
    int dim = N;
    const cg_decoder d = {&dim, N, cg_slerp, fake_decode};
    enum { STEPS = 5, ROWS = 3 };
    const int32_t labels[ROWS] = {4, 0, 2};
    float *img = tu_falloc((size_t)ROWS * STEPS * CG_IMG_PIXELS), code[N];
    cg_interp_images(&d, a, b, STEPS, labels, ROWS, img);
    for (int r = 0; r < ROWS; r++)
        for (int k = 0; k < STEPS; k++) {
            cg_slerp(a, b, N, (float)k / (STEPS - 1), code);
            const float *im = img + ((size_t)r * STEPS + k) * CG_IMG_PIXELS;
            CHECK(im[0] == code[0] + 1000.0f * (float)labels[r] && im[783] == im[0]);
        }
    cg_interp_images(&d, a, b, STEPS, NULL, 7, img); /* no labels: one row */
    CHECK(img[0] == a[0] && img[(size_t)(STEPS - 1) * CG_IMG_PIXELS] == b[0]);
    free(img);
}

int main(void)
{
    float a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = cg_rng_normal(TU_SEED, 1, (uint64_t)i);
        b[i] = cg_rng_normal(TU_SEED, 2, (uint64_t)i);
    }
    test_end_points(a, b);
    test_equal_norms(a, b);
    test_degenerate(a);
    test_images(a, b);
    return tu_finish("test_interp");
}
