/* The JSON description of an exported generator (chargan/export.h). */
#include "chargan/export.h"

#include <inttypes.h>
#include <stdio.h>

#include "chargan/generate.h"
#include "chargan/rng.h"
#include "chargan_version.h" /* generated at build time: CHARGAN_VERSION_STRING */

/* A 64-bit value as a decimal string (JSON numbers lose them in JavaScript). */
static json_t *u64_str(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return json_string(s);
}

/* The class of every printable character but space that has one. */
static json_t *char_classes(const char *classes)
{
    json_t *o = json_object();
    for (int ch = '!'; ch <= '~' && classes; ch++) {
        const int k = cg_class_of_char(classes, (char)ch);
        const char key[2] = {(char)ch, 0};
        if (k >= 0)
            json_object_set_new(o, key, json_integer(k));
    }
    return o;
}

json_t *cg_export_json(const cg_gan *gan, const cg_ckpt_meta *m, const char *classes,
                       int ema)
{
    const cg_text_layout *lay = &cg_line_layout;
    const int K = gan->preset.n_classes;
    json_t *rng = json_pack("{soso}", "sample_stream", u64_str(cg_stream(CG_RNG_SAMPLE, 1)),
                            "write_stream", u64_str(cg_stream(CG_RNG_SAMPLE, 2)));
    json_t *layout = json_pack("{sisisisisi}", "glyph", lay->glyph, "advance", lay->advance,
                               "gap", lay->gap, "margin", lay->margin, "scale", lay->scale);
    json_t *o = json_pack("{sssisssbsisosisI}", "format", CG_EXPORT_FORMAT, "format_version",
                          CG_EXPORT_FORMAT_VERSION, "preset", gan->preset.name, "conditional",
                          K > 0, "n_classes", K, "classes",
                          cg_json_str(K > 0 && classes ? classes : ""), "noise_dim",
                          gan->preset.noise_dim, "step", (json_int_t)m->step);
    /* The exporting program's version, as the ONNX model's producer_version. */
    json_object_set_new(o, "chargan_version", cg_json_str(CHARGAN_VERSION_STRING));
    json_object_set_new(o, "generator", json_string(ema ? "ema" : "raw"));
    json_object_set_new(o, "char_class", char_classes(K > 0 ? classes : NULL));
    json_object_set_new(o, "rng", rng);
    json_object_set_new(o, "layout", layout);
    return o;
}
