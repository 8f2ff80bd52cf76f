/* cg_style_stats_of: the thickness of bars of known width and length, the slant of sheared
 * bars of known shear (its sign included), and an image without ink. */
#include <math.h>
#include <string.h>

#include "chargan/style_stats.h"
#include "testutil.h"

#define SIDE 28

/* A bar `width` pixels wide and `len` long, its left edge at column x0 + shear * (row's
 * height above the bar's middle), rounded; ink 1. */
static void bar(float *img, int width, int len, double shear)
{
    memset(img, 0, sizeof(float) * SIDE * SIDE);
    const int top = (SIDE - len) / 2;
    for (int r = top; r < top + len; r++) {
        const double up = (top + len / 2.0) - r;
        const int x0 = (int)lround(12 + shear * up);
        for (int c = x0; c < x0 + width; c++)
            img[r * SIDE + c] = 1.0f;
    }
}

static void thickness_of_bars(void)
{
    float img[SIDE * SIDE];
    double last = 0;
    for (int w = 1; w <= 5; w++) {
        bar(img, w, 20, 0.0);
        const cg_style_stats s = cg_style_stats_of(img);
        /* area 20 w, perimeter 2 (20 + w) */
        const double want = 2.0 * 20 * w / (2.0 * (20 + w));
        CHECKF(fabs(s.thickness - want) < 1e-12, "width %d: thickness %g, want %g", w,
                 s.thickness, want);
        CHECKF(s.thickness > last, "width %d: thickness %g not above %g", w, s.thickness, last);
        CHECKF(fabs(s.slant) < 1e-9, "upright bar of width %d: slant %g", w, s.slant);
        last = s.thickness;
    }
}

static void slant_of_sheared_bars(void)
{
    float img[SIDE * SIDE], mirror[SIDE * SIDE];
    const double shears[] = {-0.4, -0.2, 0.1, 0.25, 0.4};
    for (size_t k = 0; k < sizeof shears / sizeof shears[0]; k++) {
        bar(img, 3, 20, shears[k]);
        const cg_style_stats s = cg_style_stats_of(img);
        const double want = atan(shears[k]) * 57.295779513082321;
        CHECKF(fabs(s.slant - want) < 2.0, "shear %g: slant %g degrees, want %g", shears[k],
                 s.slant, want);
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++)
                mirror[r * SIDE + c] = img[r * SIDE + SIDE - 1 - c];
        const cg_style_stats m = cg_style_stats_of(mirror);
        CHECKF(fabs(m.slant + s.slant) < 1e-9, "shear %g: mirror's slant %g, not %g",
                 shears[k], m.slant, -s.slant);
        CHECKF(fabs(m.thickness - s.thickness) < 1e-12, "mirror changes thickness");
    }
}

static void no_ink(void)
{
    float img[SIDE * SIDE] = {0};
    cg_style_stats s = cg_style_stats_of(img);
    CHECKF(s.thickness == 0 && s.slant == 0, "blank: thickness %g slant %g", s.thickness,
             s.slant);
    img[5 * SIDE + 5] = 0.3f; /* below the threshold: no stroke, but a slant-free dot */
    s = cg_style_stats_of(img);
    CHECKF(s.thickness == 0 && s.slant == 0, "faint dot: thickness %g slant %g",
             s.thickness, s.slant);
}

int main(void)
{
    thickness_of_bars();
    slant_of_sheared_bars();
    no_ink();
    return tu_finish("test_style_stats");
}
