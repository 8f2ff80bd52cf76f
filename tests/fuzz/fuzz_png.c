/* libFuzzer harness: the style-image reader (src/style_image.c), as `chargan write
 * --style-from FILE.png` reads a picture of one character. The input is the file.
 * Besides memory errors and undefined behaviour it checks what the reader promises: a loaded
 * image is 28 x 28 values in [0, 1] whose brightest is 1; a refused one has a one-line error
 * that names the file. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/style_image.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char path[1024];
    fz_path(path, sizeof path, "style.png");
    fz_write(path, data, len);
    float img[784];
    cg_error e = {{0}};
    if (cg_style_image_load(path, img, &e)) {
        if (!strstr(e.msg, path) || strchr(e.msg, '\n'))
            abort(); /* the error must name the file, on one line */
        return 0;
    }
    float top = 0.0f;
    for (int i = 0; i < 784; i++) {
        if (!(img[i] >= 0.0f && img[i] <= 1.0f))
            abort();
        top = img[i] > top ? img[i] : top;
    }
    if (fabsf(top - 1.0f) > 1e-6f)
        abort();
    return 0;
}
