/* cg_adam_step against values computed by hand, with the Keras-style update of optim.h:
 *   t += 1
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   lr_t = lr sqrt(1 - b2^t) / (1 - b1^t);   w -= lr_t m / (sqrt(v) + eps)
 *
 * 1. Three steps on a 3-element vector with "round" hyperparameters, so that every number
 *    below can be checked with pencil and paper: lr = 0.1, b1 = 0.5, b2 = 0.75 and a large
 *    eps = 0.25 (so the placement of eps, outside the square root, matters); m and v are
 *    binary fractions and must match exactly; w to float precision.
 * 2. One step with the project's hyperparameters (lr 1e-5, b1 0.5, b2 0.999, eps 1e-7): the
 *    first Adam step moves every weight by ~lr against the sign of its gradient, whatever the
 *    gradient's size, unless the gradient is comparable to eps.
 * 3. A late step (t 9999 -> 10000), where the bias corrections have almost vanished, and a
 *    long vector (every element updated independently), against the formula in double.
 * 4. The learning-rate schedule (cg_lr_scale) by hand, and cg_gan_apply following it: the
 *    rates it gives each optimizer, and no change of the weights once the rate is 0.
 * 5. RMSprop (cg_rmsprop_step, Keras' without momentum):
 *      ms = rho ms + (1 - rho) g^2;   w -= lr g / (sqrt(ms) + eps)
 *    three steps by hand with round hyperparameters, the first step at Keras' defaults, and
 *    a long vector against the element-by-element float update. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/gan.h"
#include "chargan/optim.h"
#include "testutil.h"

static void test_three_steps(void)
{
    cg_adam a = {0.1f, 0.5f, 0.75f, 0.25f, 0};
    float w[3] = {1.0f, -0.5f, 2.0f};
    float m[3] = {0}, v[3] = {0};

    /* ---- step 1: g = (0.5, -1, 0) ------------------------------------------------------
     * m = 0.5*0 + 0.5*g           = (0.25, -0.5, 0)
     * v = 0.75*0 + 0.25*g^2       = (0.0625, 0.25, 0)
     * lr_1 = 0.1 * sqrt(1 - 0.75) / (1 - 0.5) = 0.1 * 0.5 / 0.5 = 0.1
     * sqrt(v) + eps               = (0.25 + 0.25, 0.5 + 0.25, 0 + 0.25) = (0.5, 0.75, 0.25)
     * update = 0.1 * m / that     = (0.1 * 0.5, 0.1 * -0.6666667, 0) = (0.05, -0.06666667, 0)
     * w = (1 - 0.05, -0.5 + 0.06666667, 2 - 0) = (0.95, -0.43333333, 2) */
    const float g1[3] = {0.5f, -1.0f, 0.0f};
    cg_adam_step(&a, w, g1, m, v, 3);
    CHECK(a.t == 1);
    CHECK(m[0] == 0.25f && m[1] == -0.5f && m[2] == 0.0f);
    CHECK(v[0] == 0.0625f && v[1] == 0.25f && v[2] == 0.0f);
    CHECK_NEAR(w[0], 0.95, 1e-6);
    CHECK_NEAR(w[1], -0.43333333, 1e-6);
    CHECK(w[2] == 2.0f); /* zero gradient, zero moments: untouched */

    /* ---- step 2: g = (1, 1, 2) ---------------------------------------------------------
     * m = 0.5*m + 0.5*g = (0.125 + 0.5, -0.25 + 0.5, 0 + 1)           = (0.625, 0.25, 1)
     * v = 0.75*v + 0.25*g^2 = (0.046875 + 0.25, 0.1875 + 0.25, 0 + 1) = (0.296875, 0.4375, 1)
     * lr_2 = 0.1 * sqrt(1 - 0.5625) / (1 - 0.25) = 0.1 * 0.66143783 / 0.75 = 0.08819171
     * sqrt(v) + eps = (0.54486237 + 0.25, 0.66143783 + 0.25, 1 + 0.25)
     *               = (0.79486237, 0.91143783, 1.25)
     * m / that      = (0.78629965, 0.27429189, 0.8)
     * update = lr_2 * that = (0.06934511, 0.02419027, 0.07055337)
     * w = (0.95 - 0.06934511, -0.43333333 - 0.02419027, 2 - 0.07055337)
     *   = (0.88065489, -0.45752360, 1.92944663) */
    const float g2[3] = {1.0f, 1.0f, 2.0f};
    cg_adam_step(&a, w, g2, m, v, 3);
    CHECK(a.t == 2);
    CHECK(m[0] == 0.625f && m[1] == 0.25f && m[2] == 1.0f);
    CHECK(v[0] == 0.296875f && v[1] == 0.4375f && v[2] == 1.0f);
    CHECK_NEAR(w[0], 0.88065489, 1e-6);
    CHECK_NEAR(w[1], -0.45752360, 1e-6);
    CHECK_NEAR(w[2], 1.92944663, 1e-6);

    /* ---- step 3: g = (-0.5, 0.25, -2) --------------------------------------------------
     * m = 0.5*m + 0.5*g = (0.3125 - 0.25, 0.125 + 0.125, 0.5 - 1)      = (0.0625, 0.25, -0.5)
     * v = 0.75*v + 0.25*g^2
     *   = (0.22265625 + 0.0625, 0.328125 + 0.015625, 0.75 + 1)     = (0.28515625, 0.34375, 1.75)
     * lr_3 = 0.1 * sqrt(1 - 0.421875) / (1 - 0.125) = 0.1 * 0.76034531 / 0.875 = 0.08689661
     * sqrt(v) + eps = (0.53400023 + 0.25, 0.58630197 + 0.25, 1.32287566 + 0.25)
     *               = (0.78400023, 0.83630197, 1.57287566)
     * m / that      = (0.07971936, 0.29893508, -0.31788908)
     * update = lr_3 * that = (0.00692734, 0.02597645, -0.02762348)
     * w = (0.88065489 - 0.00692734, -0.45752360 - 0.02597645, 1.92944663 + 0.02762348)
     *   = (0.87372755, -0.48350005, 1.95707011) */
    const float g3[3] = {-0.5f, 0.25f, -2.0f};
    cg_adam_step(&a, w, g3, m, v, 3);
    CHECK(a.t == 3);
    CHECK(m[0] == 0.0625f && m[1] == 0.25f && m[2] == -0.5f);
    CHECK(v[0] == 0.28515625f && v[1] == 0.34375f && v[2] == 1.75f);
    CHECK_NEAR(w[0], 0.87372755, 1e-6);
    CHECK_NEAR(w[1], -0.48350005, 1e-6);
    CHECK_NEAR(w[2], 1.95707011, 1e-6);
    printf("three steps: w = (%.8f, %.8f, %.8f)\n", w[0], w[1], w[2]);
}

static void test_first_step_project_defaults(void)
{
    /* lr 1e-5, b1 0.5, b2 0.999, eps 1e-7; w starts at 0 so w1 = -update keeps all digits.
     * The hyperparameters are floats: b2 = 0.999f = 0.99900001287, 1 - b2 = 9.9998713e-4.
     * lr_1 = 1e-5 * sqrt(9.9998713e-4) / (1 - 0.5) = 6.3245145e-7
     * m = 0.5 g;  sqrt(v) = sqrt(9.9998713e-4 g^2) = 0.031622573 |g|
     *   g = 0.3:  update = 6.3245145e-7 * 0.15 / (9.4867723e-3 + 1e-7) = 9.9998943e-6
     *   g = -2:   update = 6.3245145e-7 * -1 / (6.3245146e-2 + 1e-7)   = -9.9999839e-6
     *   g = 0:    update = 0 / (0 + 1e-7) = 0
     *   g = 1e-9: update = 6.3245145e-7 * 5e-10 / (3.1622572e-11 + 1e-7) = 3.1612574e-9
     * i.e. ~lr against the sign of g, except where g is comparable to eps. */
    cg_adam a = {1e-5f, 0.5f, 0.999f, 1e-7f, 0};
    float w[4] = {0}, m[4] = {0}, v[4] = {0};
    const float g[4] = {0.3f, -2.0f, 0.0f, 1e-9f};
    const double expect[4] = {-9.9998943e-6, 9.9999839e-6, 0.0, -3.1612574e-9};
    cg_adam_step(&a, w, g, m, v, 4);
    CHECK(a.t == 1);
    for (int i = 0; i < 4; i++)
        CHECKF(fabs(w[i] - expect[i]) <= 2e-6 * fabs(expect[i]) + 1e-15,
               "default hyperparameters, g = %g: w = %.8g, expected %.8g", g[i], w[i], expect[i]);
}

static void test_late_step_and_long_vector(void)
{
    enum { N = 1001 };
    static float w[N], m[N], v[N], g[N], w0[N], m0[N], v0[N];
    tu_fill_uniform(w, N, -1.0f, 1.0f, 11);
    tu_fill_uniform(m, N, -0.1f, 0.1f, 12);
    tu_fill_uniform(v, N, 0.0f, 0.01f, 13);
    tu_fill_uniform(g, N, -0.2f, 0.2f, 14);
    memcpy(w0, w, sizeof w), memcpy(m0, m, sizeof m), memcpy(v0, v, sizeof v);
    cg_adam a = {3e-5f, 0.5f, 0.999f, 1e-7f, 9999};
    cg_adam_step(&a, w, g, m, v, N);
    CHECK(a.t == 10000);
    /* the reference in double from the float hyperparameters:
     * lr_t = 3e-5 * sqrt(1 - 0.999f^10000) / (1 - 0.5^10000) = 3e-5 * 0.99997741 */
    const double b1 = a.beta1, b2 = a.beta2, eps = a.eps;
    const double lr_t = (double)a.lr * sqrt(1.0 - pow(b2, 10000.0)) / (1.0 - pow(b1, 10000.0));
    CHECK_NEAR(lr_t / (double)a.lr, 0.99997741, 1e-8);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        const double mi = b1 * m0[i] + (1.0 - b1) * g[i];
        const double vi = b2 * v0[i] + (1.0 - b2) * (double)g[i] * g[i];
        const double upd = lr_t * mi / (sqrt(vi) + eps);
        CHECKF(fabs(m[i] - mi) <= 1e-7 * (1e-3 + fabs(mi)) && fabs(v[i] - vi) <= 1e-6 * vi + 1e-12,
               "element %d: m %g (%g) v %g (%g)", i, m[i], mi, v[i], vi);
        /* w = w0 - upd rounded to float: within half an ulp of w, plus the float error of
         * the update itself (relative ~1e-6) */
        const double ulp = (double)nextafterf(fabsf(w[i]), INFINITY) - fabs((double)w[i]);
        const double err = fabs((double)w[i] - ((double)w0[i] - upd));
        worst = fmax(worst, err / ulp);
        CHECKF(err <= 0.5 * ulp + 1e-5 * fabs(upd), "element %d: w %.9g, expected %.9g", i,
               w[i], (double)w0[i] - upd);
    }
    printf("long vector: worst error of w %.3f ulp\n", worst);
    /* The vectorized loop computes the documented float expression exactly: the same bits as
     * the update written out element by element in float (no FMA contraction, no reordering).
     * This checks the clone the machine picks (AVX2 where it has it), not both. */
    const float lr_tf = (float)lr_t, c1 = 1.0f - a.beta1, c2 = 1.0f - a.beta2;
    int same = 1;
    for (int i = 0; i < N; i++) {
        volatile float mi = a.beta1 * m0[i] + c1 * g[i];
        volatile float vi = a.beta2 * v0[i] + c2 * g[i] * g[i];
        volatile float wi = w0[i] - lr_tf * mi / (sqrtf(vi) + a.eps);
        same &= m[i] == mi && v[i] == vi && w[i] == wi;
    }
    CHECKF(same, "the long vector differs from the element-by-element float update%s", "");
    /* n = 0 touches nothing */
    float one = 1.0f;
    cg_adam_step(&a, &one, g, m, v, 0);
    CHECK(one == 1.0f && a.t == 10001);
}

static void test_schedule(void)
{
    /* constant: no start, before the start, or an empty decay interval */
    CHECK(cg_lr_scale(5, -1, 10) == 1.0);
    CHECK(cg_lr_scale(3, 4, 10) == 1.0);
    CHECK(cg_lr_scale(7, 4, 4) == 1.0);
    /* linear from start 4 to end 10: (10 - t) / 6 */
    CHECK(cg_lr_scale(4, 4, 10) == 1.0);
    CHECK_NEAR(cg_lr_scale(5, 4, 10), 5.0 / 6.0, 1e-15);
    CHECK_NEAR(cg_lr_scale(7, 4, 10), 0.5, 1e-15);
    CHECK_NEAR(cg_lr_scale(9, 4, 10), 1.0 / 6.0, 1e-15); /* the last update of the run */
    CHECK(cg_lr_scale(10, 4, 10) == 0.0 && cg_lr_scale(12, 4, 10) == 0.0);
    CHECK(cg_lr_scale(0, 0, 2) == 1.0 && cg_lr_scale(1, 0, 2) == 0.5);

    /* cg_gan_apply: 4 updates of a schedule starting at 1 and ending at 3 with lr 2e-4 / 1e-4:
     * factors 1, 1, 0.5, 0; the 4th update leaves every weight as it was. */
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "small");
    cfg.global_batch = cfg.local_batch = 2;
    cfg.lr_g = 2e-4f, cfg.lr_d = 1e-4f;
    cfg.lr_decay_start = 1, cfg.lr_decay_end = 3;
    cg_gan gan;
    cg_error e;
    CHECKF(cg_gan_init(&gan, &cfg, &e) == 0, "cg_gan_init: %s", e.msg);
    cg_gan_init_weights(&gan);
    tu_fill_uniform(gan.g.grad, gan.g.n_params, -1.0f, 1.0f, 21);
    tu_fill_uniform(gan.d.grad, gan.d.n_params, -1.0f, 1.0f, 22);
    const double expect[4] = {1.0, 1.0, 0.5, 0.0};
    float *w = tu_fdup(gan.g.param, gan.g.n_params);
    for (int t = 0; t < 4; t++) {
        memcpy(w, gan.g.param, sizeof(float) * gan.g.n_params);
        cg_gan_apply(&gan);
        CHECKF(gan.adam_g.lr == (float)(2e-4f * expect[t]) &&
                   gan.adam_d.lr == (float)(1e-4f * expect[t]),
               "update %d: lr %g / %g, expected factor %g", t, gan.adam_g.lr, gan.adam_d.lr,
               expect[t]);
        const int same = memcmp(w, gan.g.param, sizeof(float) * gan.g.n_params) == 0;
        CHECKF(same == (expect[t] == 0.0), "update %d: weights %s", t,
               same ? "unchanged" : "changed");
    }
    CHECK(gan.adam_g.t == 4 && gan.adam_d.t == 4);
    printf("schedule: factors 1, 1, 0.5, 0 applied to both optimizers\n");
    free(w);
    cg_gan_free(&gan);
}

static void test_rmsprop_three_steps(void)
{
    /* lr 0.1, rho 0.75 and a large eps 0.25 (outside the square root, which matters here). */
    cg_rmsprop r = {0.1f, 0.75f, 0.25f, 0};
    float w[3] = {1.0f, -0.5f, 2.0f}, ms[3] = {0};
    /* ---- step 1: g = (0.5, -1, 0) ------------------------------------------------------
     * ms = 0.25 g^2 = (0.0625, 0.25, 0);  sqrt(ms) + eps = (0.5, 0.75, 0.25)
     * update = 0.1 g / that = (0.1, -0.13333333, 0);  w = (0.9, -0.36666667, 2) */
    const float g1[3] = {0.5f, -1.0f, 0.0f};
    cg_rmsprop_step(&r, w, g1, ms, 3);
    CHECK(r.t == 1);
    CHECK(ms[0] == 0.0625f && ms[1] == 0.25f && ms[2] == 0.0f);
    CHECK_NEAR(w[0], 0.9, 1e-6);
    CHECK_NEAR(w[1], -0.36666667, 1e-6);
    CHECK(w[2] == 2.0f);
    /* ---- step 2: g = (1, 1, 2) ---------------------------------------------------------
     * ms = 0.75 ms + 0.25 g^2 = (0.046875 + 0.25, 0.1875 + 0.25, 0 + 1) = (0.296875, 0.4375, 1)
     * sqrt(ms) + eps = (0.54486237 + 0.25, 0.66143783 + 0.25, 1.25)
     *                = (0.79486237, 0.91143783, 1.25)
     * update = 0.1 g / that = (0.12580794, 0.10971675, 0.16)
     * w = (0.9 - 0.12580794, -0.36666667 - 0.10971675, 2 - 0.16)
     *   = (0.77419206, -0.47638342, 1.84) */
    const float g2[3] = {1.0f, 1.0f, 2.0f};
    cg_rmsprop_step(&r, w, g2, ms, 3);
    CHECK(ms[0] == 0.296875f && ms[1] == 0.4375f && ms[2] == 1.0f);
    CHECK_NEAR(w[0], 0.77419206, 1e-6);
    CHECK_NEAR(w[1], -0.47638342, 1e-6);
    CHECK_NEAR(w[2], 1.84, 1e-6);
    /* ---- step 3: g = (-0.5, 0.25, -2) --------------------------------------------------
     * ms = (0.22265625 + 0.0625, 0.328125 + 0.015625, 0.75 + 1) = (0.28515625, 0.34375, 1.75)
     * sqrt(ms) + eps = (0.78400023, 0.83630197, 1.57287566)
     * update = 0.1 g / that = (-0.06377549, 0.02989351, -0.12715563)
     * w = (0.83796755, -0.50627693, 1.96715563) */
    const float g3[3] = {-0.5f, 0.25f, -2.0f};
    cg_rmsprop_step(&r, w, g3, ms, 3);
    CHECK(r.t == 3);
    CHECK(ms[0] == 0.28515625f && ms[1] == 0.34375f && ms[2] == 1.75f);
    CHECK_NEAR(w[0], 0.83796755, 1e-6);
    CHECK_NEAR(w[1], -0.50627693, 1e-6);
    CHECK_NEAR(w[2], 1.96715563, 1e-6);
    printf("RMSprop three steps: w = (%.8f, %.8f, %.8f)\n", w[0], w[1], w[2]);
}

static void test_rmsprop_keras_defaults(void)
{
    /* lr 1e-3, rho 0.9f (1 - rho = 0.10000002 in float), eps 1e-7, w from 0:
     *   update = lr g / (sqrt(0.10000002) |g| + 1e-7) = lr / 0.31622780 ~ 3.1622741e-3 sign(g)
     *   g = 0.3: 3.1622741e-3;  g = -2: -3.1622769e-3;  g = 0: 0
     *   g = 1e-9: 1e-3 * 1e-9 / (3.1622780e-10 + 1e-7) = 9.9684773e-6 (eps dominates) */
    cg_rmsprop r = {CG_RMSPROP_LR, CG_RMSPROP_RHO, CG_RMSPROP_EPS, 0};
    float w[4] = {0}, ms[4] = {0};
    const float g[4] = {0.3f, -2.0f, 0.0f, 1e-9f};
    const double expect[4] = {-3.1622741e-3, 3.1622769e-3, 0.0, -9.9684773e-6};
    cg_rmsprop_step(&r, w, g, ms, 4);
    for (int i = 0; i < 4; i++)
        CHECKF(fabs(w[i] - expect[i]) <= 2e-6 * fabs(expect[i]) + 1e-15,
               "RMSprop defaults, g = %g: w = %.8g, expected %.8g", g[i], w[i], expect[i]);
}

static void test_rmsprop_long_vector(void)
{
    enum { N = 1001 };
    static float w[N], ms[N], g[N], w0[N], ms0[N];
    tu_fill_uniform(w, N, -1.0f, 1.0f, 31);
    tu_fill_uniform(ms, N, 0.0f, 0.01f, 32);
    tu_fill_uniform(g, N, -0.2f, 0.2f, 33);
    memcpy(w0, w, sizeof w), memcpy(ms0, ms, sizeof ms);
    cg_rmsprop r = {CG_RMSPROP_LR, CG_RMSPROP_RHO, CG_RMSPROP_EPS, 41};
    cg_rmsprop_step(&r, w, g, ms, N);
    CHECK(r.t == 42);
    const float c = 1.0f - r.rho;
    int same = 1;
    for (int i = 0; i < N; i++) {
        volatile float si = r.rho * ms0[i] + c * g[i] * g[i];
        volatile float wi = w0[i] - r.lr * g[i] / (sqrtf(si) + r.eps);
        same &= ms[i] == si && w[i] == wi;
    }
    CHECKF(same, "RMSprop: the long vector differs from the element-by-element update%s", "");
}

int main(void)
{
    test_rmsprop_three_steps();
    test_rmsprop_keras_defaults();
    test_rmsprop_long_vector();
    test_schedule();
    test_three_steps();
    test_first_step_project_defaults();
    test_late_step_and_long_vector();
    return tu_finish("test_adam");
}
