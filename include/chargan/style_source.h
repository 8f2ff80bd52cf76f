/* Where `chargan write --style-from` takes its style: a picture of one handwritten character
 * (a PNG of any size and colours, read by chargan/style_image.h) or an image of the data set
 * ("data:INDEX", 0-based, in the order the data set is stored), and the character it shows:
 * the data set's label, else the class a classifier gives it. */
#ifndef CHARGAN_STYLE_SOURCE_H
#define CHARGAN_STYLE_SOURCE_H
#include "chargan/data.h"
#include "chargan/util.h"

typedef struct {
    float img[CG_IMG_PIXELS]; /* upright, row-major, ink 1 on background 0 */
    int label;                /* class, or -1 when the source does not say */
    char ch;                  /* its character (0 when unknown) */
} cg_style_source;

/* Loads spec ("data:INDEX" from the data set `data` describes, or a PNG file). Returns 0, or
 * -1 with e set to one line naming the file or the index. Single process. */
int cg_style_source_load(const char *spec, const cg_data_opts *data, cg_style_source *s,
                         cg_error *e);

/* Sets s->label and s->ch to the most probable class of the classifier in clf_path, whose
 * classes must be those of `chars` (n_classes of them: the model's); *prob gets its
 * probability. Returns 0, or -1 with e set. */
int cg_style_source_classify(cg_style_source *s, const char *clf_path, int n_classes,
                             const char *chars, double *prob, cg_error *e);

#endif
