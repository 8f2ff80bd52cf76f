/* libFuzzer harness: the mapping-file reader (src/emnist_read.c), as `chargan train --data
 * FILE --mapping MAP` reads it (and as a mapping found by name beside the data is read).
 * The mapping is the fuzz input; small valid IDX images and labels lie beside it, their
 * labels spread over 0..63 so that whether each is a class of the mapping matters.
 *
 * Input: byte 0 chooses how, the rest is the mapping file.
 *   bit 0     0: explicit --mapping path, 1: found by name (emnist-balanced-mapping.txt next
 *             to the data, data given as the directory)
 *   bits 1-3  s, choosing the labels of the 4 images: label i is 7 i + 6 s (s = 0: 0, 7, 14,
 *             21, classes of every full mapping but letters'; s = 7: 42 up to 63, which only
 *             a mapping of 64 classes holds) */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_util.h"

#define N_IMAGES 4

static void write_pair(int shift)
{
    static uint8_t img[16 + N_IMAGES * 784];
    uint8_t lab[8 + N_IMAGES];
    fz_put_be32(img, 0x803);
    fz_put_be32(img + 4, N_IMAGES);
    fz_put_be32(img + 8, 28);
    fz_put_be32(img + 12, 28);
    for (size_t i = 0; i < N_IMAGES * 784; i++)
        img[16 + i] = (uint8_t)(i % 29 ? 0 : 255);
    fz_put_be32(lab, 0x801);
    fz_put_be32(lab + 4, N_IMAGES);
    for (int i = 0; i < N_IMAGES; i++)
        lab[8 + i] = (uint8_t)(i * 7 + shift * 6);
    char path[1024];
    fz_path(path, sizeof path, "emnist-balanced-train-images-idx3-ubyte");
    fz_write(path, img, sizeof img);
    fz_path(path, sizeof path, "emnist-balanced-train-labels-idx1-ubyte");
    fz_write(path, lab, sizeof lab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int by_name = data[0] & 1, shift = data[0] >> 1 & 7;
    data++, size--;
    write_pair(shift);
    char map[1024], images[1024];
    fz_path(map, sizeof map, by_name ? "emnist-balanced-mapping.txt" : "mapping.txt");
    fz_write(map, data, size);
    fz_path(images, sizeof images, "emnist-balanced-train-images-idx3-ubyte");
    cg_data_opts o = {0};
    o.data = by_name ? fz_dir() : images;
    o.split = "balanced-train";
    o.mapping = by_name ? NULL : map;
    fz_read_data(&o);
    fz_clean();
    return 0;
}
