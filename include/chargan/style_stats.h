/* Two numbers that describe a handwritten character's style independently of which character
 * it is, to measure how close `chargan write --style-from` comes to its source:
 *   - stroke thickness, in pixels: 2 x ink area / ink perimeter, both of the image thresholded
 *     at CG_STYLE_STATS_LEVEL (a stroke of width w and length L >> w has area wL and perimeter
 *     about 2L, so the ratio is w);
 *   - slant, in degrees from upright (positive: leaning right, as in italics): the angle of
 *     the shear x' = x - s (y - y0) that leaves the ink's mixed second moment at zero,
 *     s = mu11 / mu02 with y counted upwards (the classic measure used to deskew MNIST).
 * Images are 28 x 28, upright, row-major, ink 1 on background 0 (the training layout). */
#ifndef CHARGAN_STYLE_STATS_H
#define CHARGAN_STYLE_STATS_H

#define CG_STYLE_STATS_LEVEL 0.5f

typedef struct {
    double thickness; /* pixels; 0 for an image without ink */
    double slant;     /* degrees; 0 for an image without ink */
} cg_style_stats;

cg_style_stats cg_style_stats_of(const float *img);

#endif
