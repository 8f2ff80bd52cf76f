#include "chargan/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 15 significant digits: doubles made by cg_json_float and cg_json_num print as written
 * (0.0006, not 0.00059999999999999995). */
#define CG_JSON_FLAGS (JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)

json_t *cg_json_str(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s); /* not UTF-8 (a path, say): keep what can be kept */
    if (!copy)
        return json_null();
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v ? v : json_null();
}

json_t *cg_json_float(float v)
{
    if (!isfinite(v))
        return json_null();
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return json_real(strtod(buf, NULL));
}

json_t *cg_json_num(double v, int decimals)
{
    if (!isfinite(v))
        return json_null();
    if (decimals >= 0) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*f", decimals, v);
        v = strtod(buf, NULL);
    }
    return json_real(v);
}

json_t *cg_json_sig(double v, int digits)
{
    if (!isfinite(v))
        return json_null();
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", digits > 1 ? digits - 1 : 0, v);
    return json_real(strtod(buf, NULL));
}

char *cg_json_text(const json_t *obj) { return json_dumps(obj, CG_JSON_FLAGS); }

int cg_json_print(FILE *f, json_t *obj)
{
    char *s = obj ? cg_json_text(obj) : NULL;
    json_decref(obj);
    if (!s)
        return -1;
    const int rc = fprintf(f, "%s\n", s) < 0 ? -1 : 0;
    free(s);
    return rc;
}

int cg_json_append(int fd, json_t *obj)
{
    char *s = obj && fd >= 0 ? cg_json_text(obj) : NULL;
    json_decref(obj);
    if (!s)
        return fd < 0 ? 0 : -1;
    const size_t n = strlen(s);
    char *line = malloc(n + 2);
    int rc = -1;
    if (line) {
        memcpy(line, s, n);
        line[n] = '\n';
        rc = write(fd, line, n + 1) == (ssize_t)(n + 1) ? 0 : -1;
        if (rc)
            fprintf(stderr, "chargan: warning: short write of a JSON line: %s\n",
                    strerror(errno));
    }
    free(line);
    free(s);
    return rc;
}
