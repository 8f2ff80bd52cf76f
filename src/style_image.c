#include "chargan/style_image.h"

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/data.h"

/* Below this difference between paper and the darkest ink a picture holds no character. */
#define MIN_CONTRAST 0.1f

enum { FRAME = 28 };

/* The PNG as ink darkness [h][w]: 0 = white paper, 1 = black, alpha composited on white.
 * NULL with e set on failure. */
static float *read_darkness(const char *path, int *w, int *h, cg_error *e)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        cg_fail(e, "%s: not a readable PNG: %s", path, im.message);
        return NULL;
    }
    if (im.width > CG_STYLE_MAX_SIDE || im.height > CG_STYLE_MAX_SIDE) {
        cg_fail(e, "%s: %ux%u pixels; a style image has at most %d a side", path, im.width,
                im.height, CG_STYLE_MAX_SIDE);
        png_image_free(&im);
        return NULL;
    }
    im.format = PNG_FORMAT_GA; /* 8-bit sRGB grey and straight (not premultiplied) alpha */
    const size_t n = (size_t)im.width * im.height;
    png_bytep ga = malloc(PNG_IMAGE_SIZE(im));
    float *dark = malloc(sizeof(float) * n);
    if (!ga || !dark || !png_image_finish_read(&im, NULL, ga, 0, NULL)) {
        cg_fail(e, "%s: cannot read PNG: %s", path, ga && dark ? im.message : "out of memory");
        png_image_free(&im);
        free(ga), free(dark);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const float g = ga[2 * i] / 255.0f, a = ga[2 * i + 1] / 255.0f;
        dark[i] = 1.0f - (a * g + (1.0f - a));
    }
    free(ga);
    *w = (int)im.width, *h = (int)im.height;
    return dark;
}

/* The median of the border pixels (the paper, unless the character fills the picture). */
static float border_median(const float *x, int w, int h)
{
    const int n = h > 1 ? 2 * w + 2 * (h - 2) : w;
    double *v = malloc(sizeof(double) * (size_t)n);
    int k = 0;
    for (int i = 0; i < w; i++) {
        v[k++] = x[i];
        if (h > 1)
            v[k++] = x[(size_t)(h - 1) * w + i];
    }
    for (int j = 1; j < h - 1; j++) {
        v[k++] = x[(size_t)j * w];
        if (w > 1)
            v[k++] = x[(size_t)j * w + w - 1];
    }
    const float m = (float)cg_median(v, k);
    free(v);
    return m;
}

/* Turns darkness into ink in place: paper 0, the strongest ink 1, whichever the polarity.
 * -1 with e set when there is no ink. */
static int to_ink(const char *path, float *x, int w, int h, cg_error *e)
{
    const size_t n = (size_t)w * h;
    const float paper = border_median(x, w, h);
    const int light_ink = paper > 0.5f; /* dark paper: the ink is the light part */
    float bg = light_ink ? 1.0f - paper : paper, top = bg;
    for (size_t i = 0; i < n; i++) {
        x[i] = light_ink ? 1.0f - x[i] : x[i];
        top = x[i] > top ? x[i] : top;
    }
    if (top - bg < MIN_CONTRAST)
        return cg_fail(e, "%s: no ink: the picture is uniform (contrast %.3f, at least %.2f "
                          "needed)", path, (double)(top - bg), (double)MIN_CONTRAST);
    for (size_t i = 0; i < n; i++) {
        const float v = (x[i] - bg) / (top - bg);
        x[i] = v < 0.0f ? 0.0f : v;
    }
    return 0;
}

/* The ink's bounding box [x0, x1) x [y0, y1); there is ink (to_ink saw a pixel at 1). */
static void ink_box(const float *x, int w, int h, int box[4])
{
    box[0] = w, box[1] = 0, box[2] = h, box[3] = 0;
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++)
            if (x[(size_t)j * w + i] >= CG_STYLE_INK_LEVEL) {
                box[0] = i < box[0] ? i : box[0];
                box[1] = i + 1 > box[1] ? i + 1 : box[1];
                box[2] = j < box[2] ? j : box[2];
                box[3] = j + 1 > box[3] ? j + 1 : box[3];
            }
}

/* Weights w[X][i] of source pixel i (of n) in frame pixel X, for the map frame = off + s *
 * source (pixel edges at integers): area averaging when s < 1, bilinear when s >= 1;
 * outside the source is background. lo[X]..hi[X] bound the non-zero weights. */
static void axis_weights(int n, double s, double off, float *w, int *lo, int *hi)
{
    memset(w, 0, sizeof(float) * FRAME * (size_t)n);
    for (int X = 0; X < FRAME; X++) {
        float *row = w + (size_t)X * n;
        if (s < 1.0) {
            const double a = (X - off) / s, b = (X + 1 - off) / s;
            lo[X] = a < 0 ? 0 : a > n ? n : (int)floor(a);
            hi[X] = b < 0 ? 0 : b > n ? n : (int)ceil(b);
            for (int i = lo[X]; i < hi[X]; i++)
                row[i] = (float)((fmin(b, i + 1.0) - fmax(a, (double)i)) * s);
        } else {
            const double u = (X + 0.5 - off) / s - 0.5, f = u - floor(u);
            const int i0 = (int)floor(u);
            lo[X] = i0 < 0 ? 0 : i0 > n ? n : i0;
            hi[X] = i0 + 2 < 0 ? 0 : i0 + 2 > n ? n : i0 + 2;
            if (i0 >= 0 && i0 < n)
                row[i0] = (float)(1.0 - f);
            if (i0 + 1 >= 0 && i0 + 1 < n)
                row[i0 + 1] = (float)f;
        }
    }
}

/* Scales the ink box to CG_STYLE_BOX on its longer side, centred in the frame, into out;
 * brightest pixel 1. */
static void frame_ink(const float *x, int w, int h, const int box[4], float *out)
{
    const double s = (double)CG_STYLE_BOX / fmax(box[1] - box[0], box[3] - box[2]);
    const double ox = FRAME / 2.0 - s * (box[0] + box[1]) / 2.0;
    const double oy = FRAME / 2.0 - s * (box[2] + box[3]) / 2.0;
    float *wx = malloc(sizeof(float) * FRAME * (size_t)w);
    float *wy = malloc(sizeof(float) * FRAME * (size_t)h);
    float *rows = calloc((size_t)h * FRAME, sizeof(float)); /* [h][FRAME]: x resampled */
    int lx[FRAME], hx[FRAME], ly[FRAME], hy[FRAME];
    axis_weights(w, s, ox, wx, lx, hx);
    axis_weights(h, s, oy, wy, ly, hy);
    for (int j = 0; j < h; j++)
        for (int X = 0; X < FRAME; X++)
            for (int i = lx[X]; i < hx[X]; i++)
                rows[(size_t)j * FRAME + X] += wx[(size_t)X * w + i] * x[(size_t)j * w + i];
    float top = 0.0f;
    for (int Y = 0; Y < FRAME; Y++)
        for (int X = 0; X < FRAME; X++) {
            float v = 0.0f;
            for (int j = ly[Y]; j < hy[Y]; j++)
                v += wy[(size_t)Y * h + j] * rows[(size_t)j * FRAME + X];
            out[Y * FRAME + X] = v;
            top = v > top ? v : top;
        }
    for (int p = 0; p < CG_IMG_PIXELS; p++)
        out[p] = top > 0.0f ? fminf(out[p] / top, 1.0f) : 0.0f;
    free(wx), free(wy), free(rows);
}

int cg_style_image_load(const char *path, float out[784], cg_error *e)
{
    int w = 0, h = 0;
    float *x = read_darkness(path, &w, &h, e);
    if (!x)
        return -1;
    if (to_ink(path, x, w, h, e)) {
        free(x);
        return -1;
    }
    int box[4];
    ink_box(x, w, h, box);
    frame_ink(x, w, h, box, out);
    free(x);
    return 0;
}
