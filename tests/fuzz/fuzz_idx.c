/* libFuzzer harness: the IDX reader (src/emnist_read.c) on an images and a labels file, as
 * `chargan train --data` reads them. One of the two files is the fuzz input; the other is
 * made valid and matching (the count the fuzzed header claims), so the fuzzer reaches the
 * checks past the headers.
 *
 * Input: byte 0 chooses how, the rest is the file.
 *   bit 0     0: the images file is fuzzed, 1: the labels file
 *   bits 1-2  the fuzzed file: 0 as is, 1 gzip-compressed here, 2 as is under a .gz name
 *             (the input is then usually a gzip stream itself), 3 compressed, plain name
 *   bit 3     the generated file is gzip-compressed
 *   bit 4     --data names the directory (found by split) instead of the images file
 *   bits 5-7  --limit (0 = all images) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#define SPLIT "balanced-train"
#define IMAGES "emnist-" SPLIT "-images-idx3-ubyte"
#define LABELS "emnist-" SPLIT "-labels-idx1-ubyte"
/* the generated partner holds at most this many records; a larger claimed count leaves it
 * short, which the reader must report */
#define MAX_PARTNER 4096
#define BALANCED_CLASSES 47

/* The count in the fuzzed file's header (after gunzip, as the reader sees it); 3 when the
 * file is too short to have one. */
static uint32_t claimed_count(const uint8_t *data, size_t len)
{
    uint8_t h[8];
    return fz_peek(data, len, h, sizeof h) == sizeof h ? fz_get_be32(h + 4) : 3;
}

static void write_file(const char *name, int gz, const uint8_t *data, size_t len)
{
    char path[1024];
    fz_path(path, sizeof path, name);
    if (gz)
        fz_write_gz(path, data, len);
    else
        fz_write(path, data, len);
}

/* A labels file claiming n labels, holding min(n, MAX_PARTNER), all classes of the
 * balanced mapping. */
static void write_labels(uint32_t n, int gz)
{
    size_t k = n < MAX_PARTNER ? n : MAX_PARTNER;
    uint8_t *buf = malloc(8 + k);
    if (!buf)
        abort();
    fz_put_be32(buf, 0x801);
    fz_put_be32(buf + 4, n);
    for (size_t i = 0; i < k; i++)
        buf[8 + i] = (uint8_t)(i % BALANCED_CLASSES);
    write_file(gz ? LABELS ".gz" : LABELS, gz, buf, 8 + k);
    free(buf);
}

/* An images file claiming n 28x28 images, holding min(n, 64) of them (a few stripes). */
static void write_images(uint32_t n, int gz)
{
    size_t k = n < 64 ? n : 64;
    uint8_t *buf = malloc(16 + k * 784);
    if (!buf)
        abort();
    fz_put_be32(buf, 0x803);
    fz_put_be32(buf + 4, n);
    fz_put_be32(buf + 8, 28);
    fz_put_be32(buf + 12, 28);
    for (size_t i = 0; i < k * 784; i++)
        buf[16 + i] = (uint8_t)((i / 28 + i / 784) % 3 ? 0 : 255);
    write_file(gz ? IMAGES ".gz" : IMAGES, gz, buf, 16 + k * 784);
    free(buf);
}

/* The fuzzed file under its name, encoded as bits 1-2 of the mode say. */
static void write_fuzzed(int labels, int how, const uint8_t *data, size_t len)
{
    const char *base = labels ? LABELS : IMAGES;
    char name[128];
    const int gz_name = how == 1 || how == 2, compress = how == 1 || how == 3;
    strcpy(name, base);
    if (gz_name)
        strcat(name, ".gz");
    write_file(name, compress, data, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int mode = data[0], fuzz_labels = mode & 1, how = mode >> 1 & 3;
    const int partner_gz = mode >> 3 & 1, by_dir = mode >> 4 & 1;
    data++, size--;
    write_fuzzed(fuzz_labels, how, data, size);
    const uint32_t n = claimed_count(data, size);
    if (fuzz_labels)
        write_images(n, partner_gz);
    else
        write_labels(n, partner_gz);

    char images[1024];
    const int images_gz = fuzz_labels ? partner_gz : how == 1 || how == 2;
    fz_path(images, sizeof images, images_gz ? IMAGES ".gz" : IMAGES);
    cg_data_opts o = {0};
    o.data = by_dir ? fz_dir() : images;
    o.split = SPLIT;
    o.limit = mode >> 5;
    fz_read_data(&o);
    fz_clean();
    return 0;
}
