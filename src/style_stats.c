#include "chargan/style_stats.h"

#include <math.h>

#include "chargan/data.h"

#define SIDE CG_IMG_SIDE
#define DEG_PER_RAD 57.295779513082321

static int ink(const float *img, int r, int c)
{
    return r >= 0 && r < SIDE && c >= 0 && c < SIDE && img[r * SIDE + c] >= CG_STYLE_STATS_LEVEL;
}

/* 2 x area / perimeter of the thresholded ink: its pixels, and the pixel edges between ink
 * and background (the frame's border counts as background). */
static double thickness(const float *img)
{
    long area = 0, edges = 0;
    for (int r = 0; r < SIDE; r++)
        for (int c = 0; c < SIDE; c++) {
            if (!ink(img, r, c))
                continue;
            area++;
            edges += !ink(img, r - 1, c) + !ink(img, r + 1, c) + !ink(img, r, c - 1) +
                     !ink(img, r, c + 1);
        }
    return edges ? 2.0 * (double)area / (double)edges : 0.0;
}

/* The shear angle from the grey levels' second moments, y upwards. */
static double slant(const float *img)
{
    double m = 0, sx = 0, sy = 0;
    for (int r = 0; r < SIDE; r++)
        for (int c = 0; c < SIDE; c++) {
            const double w = img[r * SIDE + c], y = SIDE - 1 - r;
            m += w, sx += w * c, sy += w * y;
        }
    if (m <= 0)
        return 0.0;
    const double x0 = sx / m, y0 = sy / m;
    double mu11 = 0, mu02 = 0;
    for (int r = 0; r < SIDE; r++)
        for (int c = 0; c < SIDE; c++) {
            const double w = img[r * SIDE + c], dx = c - x0, dy = SIDE - 1 - r - y0;
            mu11 += w * dx * dy, mu02 += w * dy * dy;
        }
    return mu02 > 0 ? atan(mu11 / mu02) * DEG_PER_RAD : 0.0;
}

cg_style_stats cg_style_stats_of(const float *img)
{
    return (cg_style_stats){thickness(img), slant(img)};
}
