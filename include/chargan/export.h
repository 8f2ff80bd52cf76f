/* Exporting a trained generator for other runtimes (`chargan export`): the generator as a
 * standard ONNX model (src/onnx.c; built when protobuf-c and ONNX's schema onnx.proto are
 * present) and a JSON description of it, written from chargan's own tables so that a browser
 * page or any other program draws the same noise, classes and line layout as `chargan sample`
 * and `chargan write`:
 *
 *   {"format": "chargan-export", "format_version": 1, "preset": "deep", "conditional": true,
 *    "n_classes": 47, "classes": "0123...", "noise_dim": 150, "step": N,
 *    "chargan_version": "...", "generator": "ema" | "raw",
 *    "char_class": {"A": 10, "a": 36, ...},      every printable character but space that
 *                                                 has a class (cg_class_of_char)
 *    "rng": {"sample_stream": "<u64>",            cg_stream(CG_RNG_SAMPLE, 1): sample's noise
 *            "write_stream": "<u64>"},            cg_stream(CG_RNG_SAMPLE, 2): write's noise
 *    "layout": {"glyph": 28, "advance": 20, "gap": 14, "margin": 4, "scale": 2}}
 *                                                 cg_line_layout (chargan/generate.h)
 * The streams are decimal strings because JSON numbers lose 64-bit integers in JavaScript.
 *
 * The ONNX model (IR version 8, opset 13): input z float32 [N][noise_dim] and, for
 * conditional models, label int64 [N]; output image float32 [N][1][28][28] in [0, 1], row 0
 * at the top; N is dynamic. Inference mode: batch norm from its running averages, dropout
 * the identity. metadata_props hold chargan.classes, .noise_dim, .preset, .step, .version,
 * .conditional, .generator and chargan.json, the description above. */
#ifndef CHARGAN_EXPORT_H
#define CHARGAN_EXPORT_H
#include "chargan/ckpt.h"
#include "chargan/json.h"

#define CG_EXPORT_FORMAT "chargan-export"
#define CG_EXPORT_FORMAT_VERSION 1
#define CG_ONNX_IR_VERSION 8
#define CG_ONNX_OPSET 13

/* 1 when this build writes ONNX; otherwise 0, and *why (when not NULL) says what the build
 * lacked and which Debian packages bring it. */
int cg_onnx_available(const char **why);

/* The description of the generator of gan (opened from a checkpoint with meta data m and
 * class characters `classes`; ema: G holds the EMA weights). Never NULL. */
json_t *cg_export_json(const cg_gan *gan, const cg_ckpt_meta *m, const char *classes,
                       int ema);

/* Writes gan's generator as an ONNX model to path, with the description desc in its
 * metadata: built in memory, written to PATH.tmp, fsync'ed and renamed onto path, so path
 * is either untouched or complete. *bytes (may be NULL) gets the file size. Returns 0, or -1
 * with e set: a layer the ONNX graph cannot express, a file error, or no ONNX support in
 * this build. */
int cg_onnx_write_generator(const char *path, const cg_gan *gan, const json_t *desc,
                            long *bytes, cg_error *e);

#endif
