/* PNG output for looking at data and samples (libpng, 8-bit grayscale). Files are written to
 * PATH.tmp and renamed, so a reader never sees half a picture. */
#ifndef CHARGAN_PNG_H
#define CHARGAN_PNG_H
#include <stdint.h>

#include "chargan/util.h"

/* w x h grayscale pixels, row-major, row 0 at the top, 0 = black. */
int cg_png_write_gray(const char *path, int w, int h, const uint8_t *pix, cg_error *e);

/* A grid of n 28x28 images (upright, values in [0,1], 1 = ink; NaN drawn mid-gray), `cols`
 * per row, each pixel drawn as scale x scale. Ink is dark on a white background. When
 * captions is not NULL, captions[i] (one character; 0 = none) is drawn above image i with a
 * built-in 5x8 font. */
int cg_png_grid(const char *path, const float *imgs, int n, int cols, int scale,
                const char *captions, cg_error *e);

#endif
