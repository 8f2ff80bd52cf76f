/* A picture of one handwritten character, made to look like chargan's training images: the
 * style input of `chargan write --style-from` (to come).
 *
 * Any PNG (grey, grey + alpha, RGB, RGBA, palette; 1 to 16 bits; any size up to
 * CG_STYLE_MAX_SIDE a side) is read through libpng, turned grey (alpha composited on white
 * paper), and brought to EMNIST's convention the way EMNIST itself was made from scans:
 *   - polarity: the border's median decides which side is paper: dark ink on light paper
 *     and light ink on dark paper both become ink 1 on background 0, the paper's level
 *     mapped to 0 and the darkest ink to 1;
 *   - size: the bounding box of the ink (pixels >= CG_STYLE_INK_LEVEL) is scaled, aspect
 *     kept, until its longer side is CG_STYLE_BOX pixels (area averaging when shrinking,
 *     bilinear when enlarging);
 *   - place: the box is centred in the 28 x 28 frame, to a fraction of a pixel.
 * EMNIST's characters measure so (bymerge-test: the longer side of the box at the 0.2 ink
 * level is 24 px for most, 22..24 for 80% of them; box centres within 0.2 px of (14, 14),
 * while centres of mass spread by 1.4 px, a 7's lying 2.6 px above the centre): MNIST's
 * 20 px box centred by mass would give smaller, shifted characters than the models saw.
 * The result is scaled so that its brightest pixel is 1. */
#ifndef CHARGAN_STYLE_IMAGE_H
#define CHARGAN_STYLE_IMAGE_H
#include "chargan/util.h"

#define CG_STYLE_MAX_SIDE 4096
#define CG_STYLE_BOX 24
#define CG_STYLE_INK_LEVEL 0.2f

/* Reads PATH into out (28 x 28, upright, row-major, values in [0,1], 1 = ink: the layout of
 * training images). Returns 0, or -1 with e = "PATH: ..." on one line: not a PNG, truncated
 * or unreadable, too large, or no ink (a uniform picture). */
int cg_style_image_load(const char *path, float out[784], cg_error *e);

#endif
