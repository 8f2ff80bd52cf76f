/* JSON in and out, through jansson: every JSON line chargan prints or writes (metrics, bench
 * results, scores, the run's configuration in checkpoints) is built as a json_t and printed
 * here, so strings are always escaped and numbers always valid JSON. jansson rather than cJSON
 * because it keeps integers as 64-bit integers (seeds and step counts survive a round trip;
 * cJSON stores every number as a double), reports parse errors with line and column, and
 * keeps the keys in insertion order. */
#ifndef CHARGAN_JSON_H
#define CHARGAN_JSON_H
#include <jansson.h>
#include <stdio.h>

/* Value constructors that never return NULL: */
json_t *cg_json_str(const char *s);         /* NULL -> null; bytes that are not UTF-8 -> '?' */
json_t *cg_json_float(float v);             /* the shortest decimal that reads back as v */
json_t *cg_json_num(double v, int decimals); /* rounded to `decimals` places (< 0: as is);
                                                NaN and Inf -> null */
json_t *cg_json_sig(double v, int digits);  /* rounded to `digits` significant digits */

/* Text of obj on one line ({"a": 1, "b": "x"}), no newline; free() it. */
char *cg_json_text(const json_t *obj);
/* Prints obj and a newline to f, then drops the reference (so callers can pass a fresh
 * json_pack result). Returns 0, or -1 when printing failed. */
int cg_json_print(FILE *f, json_t *obj);
/* Appends obj and a newline to the O_APPEND descriptor fd in one write(2) (concurrent or
 * interrupted writers never leave half lines), then drops the reference. fd < 0: nothing. */
int cg_json_append(int fd, json_t *obj);

#endif
