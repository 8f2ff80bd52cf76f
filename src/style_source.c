#include "chargan/style_source.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/classifier.h"
#include "chargan/style_image.h"

/* data:INDEX: the image and label of the data set's image INDEX. */
static int load_data_image(const char *index, const cg_data_opts *data, cg_style_source *s,
                           cg_error *e)
{
    char *end;
    errno = 0;
    const long long i = strtoll(index, &end, 10);
    if (!*index || *end || errno || i < 0)
        return cg_fail(e, "--style-from data:%s: expected data:INDEX, INDEX >= 0", index);
    cg_dataset ds;
    if (cg_data_load_local(data, &ds, e))
        return -1;
    int rc = 0;
    if (i >= ds.n) {
        rc = cg_fail(e, "--style-from data:%lld: %s has %ld images (0..%ld)", i, ds.source,
                     ds.n, ds.n - 1);
    } else {
        const int64_t idx = i;
        int32_t label;
        cg_data_batch(&ds, &idx, 1, 0.0f, 1.0f, s->img, &label);
        s->label = label;
        s->ch = ds.chars[label];
    }
    cg_data_free(&ds);
    return rc;
}

int cg_style_source_load(const char *spec, const cg_data_opts *data, cg_style_source *s,
                         cg_error *e)
{
    memset(s, 0, sizeof *s);
    s->label = -1;
    if (!strncmp(spec, "data:", 5))
        return load_data_image(spec + 5, data, s, e);
    return cg_style_image_load(spec, s->img, e);
}

int cg_style_source_classify(cg_style_source *s, const char *clf_path, int n_classes,
                             const char *chars, double *prob, cg_error *e)
{
    cg_classifier clf;
    if (cg_classifier_load(clf_path, &clf, 1, e))
        return -1;
    int rc = 0;
    if (clf.n_classes != n_classes || memcmp(clf.chars, chars, (size_t)n_classes)) {
        rc = cg_fail(e, "%s: the classifier's %d classes are not the model's %d", clf_path,
                     clf.n_classes, n_classes);
    } else {
        float p[CG_MAX_CLASSES];
        cg_classifier_forward(&clf, s->img, 1, NULL, p);
        s->label = cg_argmax(p, n_classes);
        s->ch = chars[s->label];
        *prob = p[s->label];
    }
    cg_classifier_free(&clf);
    return rc;
}
