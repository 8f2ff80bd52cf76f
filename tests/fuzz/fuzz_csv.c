/* libFuzzer harness: the Kaggle CSV reader (src/emnist_read.c), as `chargan train --data
 * FILE.csv` reads it.
 *
 * Input: byte 0 chooses how, the rest is the file.
 *   bits 0-1  0: FILE.csv as is, 1: FILE.csv.gz compressed here, 2: FILE.csv.gz as is
 *             (the input is then usually a gzip stream itself), 3: directory with split
 *             "balanced-train" holding the file as emnist-balanced-train.csv
 *   bits 2-4  --limit (0 = all rows)
 *   bit 5     the file is named after the letters split (its built-in mapping: classes 1..26)
 *             instead of the balanced one */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int mode = data[0], how = mode & 3, letters = mode >> 5 & 1;
    data++, size--;
    const char *split = letters ? "letters-train" : "balanced-train";
    char name[128], path[1024];
    snprintf(name, sizeof name, "emnist-%s.csv%s", split, how == 1 || how == 2 ? ".gz" : "");
    fz_path(path, sizeof path, name);
    if (how == 1)
        fz_write_gz(path, data, size);
    else
        fz_write(path, data, size);
    cg_data_opts o = {0};
    o.data = how == 3 ? fz_dir() : path;
    o.split = split;
    o.limit = mode >> 2 & 7;
    fz_read_data(&o);
    fz_clean();
    return 0;
}
