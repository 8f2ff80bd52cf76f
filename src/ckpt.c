/* HDF5 checkpoints; the layout and the guarantees are in ckpt.h, the HDF5 conventions in
 * h5io.h. */
#include "chargan/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chargan/data.h"
#include "chargan/ema.h"
#include "chargan/json.h"
#include "chargan/kind.h"
#include "h5io.h"

#define WHAT "chargan checkpoint"
/* Bounds on the counters and sizes a checkpoint records: beyond them the file is damaged or
 * foreign, and using the value would overflow (a step counter's +1) or allocate without
 * limit (a model built for the noise_dim). MAX_COUNT is far beyond any run and exact in a
 * double; MAX_NOISE_DIM is --noise-dim's bound (cmd_train.c), MAX_CLASSES cg_gan_init's. */
#define MAX_COUNT ((int64_t)1 << 53)
#define MAX_NOISE_DIM 100000
#define MAX_CLASSES 256

/* ---- writing ------------------------------------------------------------------------ */

typedef struct {
    const cg_kind *k;
    long step, epoch;
    int world_size;
    const char *config;
} ckpt_ctx;

/* The tensors of one network from buf (tensor offsets) as datasets of a new group gpath. */
static int put_net(hid_t f, const char *gpath, const cg_net *net, const float *buf,
                   const char *fname, cg_error *e)
{
    hid_t g = cg_h5_group_new(f, gpath, 1, fname, e);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int t = 0; t < net->n_tensors && rc == 0; t++) {
        const cg_tensor *T = &net->tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = cg_h5_dset_put(g, T->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, T->ndim, dims, dims,
                            buf + T->offset, fname, gpath, e);
    }
    H5Gclose(g);
    return rc;
}

static int put_root_attrs(hid_t f, const ckpt_ctx *c, const char *fname, cg_error *e)
{
    const cg_kind *k = c->k;
    if (cg_h5_attr_put_str(f, "format", CG_CKPT_FORMAT, fname, e) ||
        cg_h5_attr_put_i32(f, "format_version", CG_CKPT_FORMAT_VERSION, fname, e) ||
        cg_h5_attr_put_str(f, "model", k->model, fname, e) ||
        cg_h5_attr_put_str(f, "kind", k->ops->name, fname, e) ||
        cg_h5_attr_put_i64(f, "step", c->step, fname, e) ||
        cg_h5_attr_put_i64(f, "epoch", c->epoch, fname, e) ||
        cg_h5_attr_put_u64(f, "seed", k->seed, fname, e) ||
        cg_h5_attr_put_i32(f, "world_size", c->world_size, fname, e) ||
        cg_h5_attr_put_i32(f, "global_batch", k->global_batch, fname, e) ||
        cg_h5_attr_put_i32(f, "noise_dim", k->latent_dim, fname, e) ||
        cg_h5_attr_put_i32(f, "n_classes", k->n_classes, fname, e) ||
        cg_h5_attr_put_str(f, "config", c->config ? c->config : "{}", fname, e) ||
        cg_h5_attr_put_created(f, fname, e))
        return -1;
    return cg_h5_attr_put_stack(f, fname, e);
}

/* /generator's attribute `layers`, for programs that rebuild the generator from a checkpoint
 * alone (tools/chargan_torch.py): the layer table as built (cg_net_layers_json) and a last
 * entry, op "image", saying how cg_gan_generate maps the last layer's output y to an image in
 * [0, 1]. chargan itself builds its networks from the presets and never reads it. */
static int put_layers(hid_t f, const cg_gan *gan, const char *fname, cg_error *e)
{
    json_t *a = cg_net_layers_json(&gan->g);
    if (a && json_array_append_new(a, json_pack("{s:s, s:s, s:[iii]}", "op", "image", "map",
                                                gan->preset.tanh_output ? "0.5 * (y + 1)" : "y",
                                                "shape", 1, CG_IMG_SIDE, CG_IMG_SIDE))) {
        json_decref(a);
        a = NULL;
    }
    char *text = a ? cg_json_text(a) : NULL;
    json_decref(a);
    if (!text)
        return cg_fail(e, "%s: out of memory describing the generator's layers", fname);
    hid_t g = H5Gopen2(f, "/generator", H5P_DEFAULT);
    int rc = g < 0 ? cg_h5_fail(e, "%s: cannot open /generator", fname)
                   : cg_h5_attr_put_str(g, "layers", text, fname, e);
    if (g >= 0)
        H5Gclose(g);
    free(text);
    return rc;
}

/* /ema/generator with its decay attribute. */
static int put_ema(hid_t f, const cg_kind *k, const char *fname, cg_error *e)
{
    hid_t g = cg_h5_group_new(f, "/ema", 1, fname, e);
    if (g < 0)
        return -1;
    H5Gclose(g);
    char path[64];
    snprintf(path, sizeof path, "/ema/%s", k->nets[k->gen].name);
    if (put_net(f, path, k->nets[k->gen].net, k->ema, fname, e))
        return -1;
    g = H5Gopen2(f, path, H5P_DEFAULT);
    if (g < 0)
        return cg_h5_fail(e, "%s: cannot open %s", fname, path);
    const int rc = cg_h5_attr_put_f64(g, "decay", k->ema_decay, fname, e);
    H5Gclose(g);
    return rc;
}

/* /optimizer/NET for each network: adam_t (the update count) and the moments m and v (m
 * stays 0 under RMSprop, whose mean square is v). */
static int put_optimizer(hid_t f, const cg_kind *kd, const char *fname, cg_error *e)
{
    hid_t opt = cg_h5_group_new(f, "/optimizer", 1, fname, e);
    if (opt < 0)
        return -1;
    H5Gclose(opt);
    const cg_net *nets[CG_KIND_NETS];
    long ts[CG_KIND_NETS];
    for (int k = 0; k < kd->n_nets; k++)
        nets[k] = kd->nets[k].net, ts[k] = *kd->nets[k].opt_t;
    for (int k = 0; k < kd->n_nets; k++) {
        const char *who = kd->nets[k].name;
        char gp[64], mp[64], vp[64];
        snprintf(gp, sizeof gp, "/optimizer/%s", who);
        snprintf(mp, sizeof mp, "/optimizer/%s/m", who);
        snprintf(vp, sizeof vp, "/optimizer/%s/v", who);
        hid_t g = cg_h5_group_new(f, gp, 1, fname, e);
        if (g < 0)
            return -1;
        int rc = cg_h5_attr_put_i64(g, "adam_t", ts[k], fname, e);
        H5Gclose(g);
        if (rc || put_net(f, mp, nets[k], nets[k]->adam_m, fname, e) ||
            put_net(f, vp, nets[k], nets[k]->adam_v, fname, e))
            return -1;
    }
    return 0;
}

/* The networks in order (a GAN's generator with its layer table), the EMA, the optimizer. */
static int fill_ckpt(hid_t f, const void *vctx, const char *fname, cg_error *e)
{
    const ckpt_ctx *c = vctx;
    const cg_kind *k = c->k;
    if (put_root_attrs(f, c, fname, e))
        return -1;
    for (int i = 0; i < k->n_nets; i++) {
        char path[64];
        snprintf(path, sizeof path, "/%s", k->nets[i].name);
        if (put_net(f, path, k->nets[i].net, k->nets[i].net->param, fname, e) ||
            (i == 0 && k->ops == &cg_kind_gan && put_layers(f, k->impl, fname, e)))
            return -1;
    }
    if (k->ema && put_ema(f, k, fname, e))
        return -1;
    return put_optimizer(f, k, fname, e);
}

int cg_ckpt_write(const char *dir, const cg_gan *gan, long step, long epoch, int world_size,
                  const char *config_json, char *path_out, size_t path_len, cg_error *e)
{
    cg_kind k;
    cg_kind_wrap_gan(&k, (cg_gan *)gan);
    return cg_ckpt_write_model(dir, &k, step, epoch, world_size, config_json, path_out,
                               path_len, e);
}

int cg_ckpt_write_model(const char *dir, const cg_kind *k, long step, long epoch,
                        int world_size, const char *config_json, char *path_out,
                        size_t path_len, cg_error *e)
{
    if (!dir || !dir[0])
        return cg_fail(e, "checkpoint directory name is empty");
    if (step < 0 || epoch < 0 || world_size < 1)
        return cg_fail(e, "%s: invalid checkpoint step %ld / epoch %ld / world size %d", dir,
                       step, epoch, world_size);
    char path[CG_PATH_CAP];
    if (snprintf(path, sizeof path, "%s/step-%08ld.h5", dir, step) >= (int)sizeof path)
        return cg_fail(e, "%s/step-%08ld.h5: path too long", dir, step);
    if (path_out && path_len && strlen(path) >= path_len)
        return cg_fail(e, "%s: path does not fit the caller's buffer", path);
    ckpt_ctx c = {k, step, epoch, world_size, config_json};
    size_t floats = k->ema ? k->nets[k->gen].net->n_params : 0;
    for (int i = 0; i < k->n_nets; i++)
        floats += 3 * k->nets[i].net->n_params;
    const size_t bytes = sizeof(float) * floats;
    if (cg_h5_write(path, "checkpoint", 1, fill_ckpt, &c, bytes, e))
        return -1;
    if (path_out && path_len)
        snprintf(path_out, path_len, "%s", path);
    return 0;
}

/* ---- reading: tensors --------------------------------------------------------------- */

/* Names one member of group g (gpath) that the model lacks, when the counts differ; the
 * count alone says enough otherwise (a missing member is then reported by name). */
static int check_members(hid_t g, const char *fname, const char *gpath, const cg_net *net,
                         const char *model, cg_error *e)
{
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0)
        return cg_h5_fail(e, "%s: cannot read %s", fname, gpath);
    if (info.nlinks == (hsize_t)net->n_tensors)
        return 0;
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0)
            return cg_h5_fail(e, "%s: cannot read %s", fname, gpath);
        char shown[256];
        if (cg_net_find_tensor(net, name) < 0)
            return cg_fail(e, "%s: %s/%s is not a tensor of model '%s'", fname, gpath,
                           cg_h5_printable(name, shown, sizeof shown), model);
    }
    return 0;
}

/* Every tensor of one network under gpath; dst (n_params floats, tensor offsets) or, when
 * NULL, scratch (the largest tensor) receives the data. Links the model does not have are an
 * error too. */
static int read_net(hid_t f, const char *fname, const char *gpath, const cg_net *net,
                    const char *model, float *dst, float *scratch, cg_error *e)
{
    hid_t g = cg_h5_group_open(f, gpath, fname, "checkpoint", e);
    if (g < 0)
        return -1;
    char owner[64];
    snprintf(owner, sizeof owner, "model '%s'", model);
    int rc = check_members(g, fname, gpath, net, model, e);
    for (int t = 0; t < net->n_tensors && rc == 0; t++) {
        const cg_tensor *T = &net->tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = cg_h5_dset_read(g, T->name, H5T_NATIVE_FLOAT, T->ndim, dims,
                             dst ? dst + T->offset : scratch, fname, gpath, owner, e);
    }
    H5Oclose(g);
    return rc;
}

/* Room for the largest tensor of the model's networks. */
static float *scratch_for(const cg_kind *kd)
{
    size_t big = 1;
    for (int k = 0; k < kd->n_nets; k++)
        for (int t = 0; t < kd->nets[k].net->n_tensors; t++)
            if (kd->nets[k].net->tensors[t].count > big)
                big = kd->nets[k].net->tensors[t].count;
    return malloc(sizeof(float) * big);
}

/* Every network's parameters and moments, and with ema the EMA of the generating network.
 * dst[k]: 3 * n_params floats (param, m, v) or NULL (validate only); dst_ema: the generating
 * network's n_params or NULL. */
static int read_state(hid_t f, const char *fname, const cg_kind *kd, float *const *dst,
                      int ema, float *dst_ema, cg_error *e)
{
    const char *model = kd->model;
    float *scratch = NULL;
    int need = ema && !dst_ema;
    for (int k = 0; k < kd->n_nets; k++)
        need |= !dst[k];
    if (need && !(scratch = scratch_for(kd)))
        return cg_fail(e, "%s: out of memory", fname);
    int rc = 0;
    for (int k = 0; k < kd->n_nets && rc == 0; k++) {
        const char *who = kd->nets[k].name;
        const cg_net *net = kd->nets[k].net;
        const size_t n = net->n_params;
        for (int w = 0; w < 3 && rc == 0; w++) {
            char gp[64];
            if (w == 0)
                snprintf(gp, sizeof gp, "/%s", who);
            else
                snprintf(gp, sizeof gp, "/optimizer/%s/%c", who, w == 1 ? 'm' : 'v');
            rc = read_net(f, fname, gp, net, model, dst[k] ? dst[k] + (size_t)w * n : NULL,
                          scratch, e);
        }
    }
    char ep[64];
    snprintf(ep, sizeof ep, "/ema/%s", kd->nets[kd->gen].name);
    if (rc == 0 && ema)
        rc = read_net(f, fname, ep, kd->nets[kd->gen].net, model, dst_ema, scratch, e);
    free(scratch);
    return rc;
}

/* ---- reading: attributes ------------------------------------------------------------ */

static int read_adam_t(hid_t f, const char *fname, const char *who, long *t, cg_error *e)
{
    char gp[64];
    snprintf(gp, sizeof gp, "/optimizer/%s", who);
    hid_t g = cg_h5_group_open(f, gp, fname, "checkpoint", e);
    if (g < 0)
        return -1;
    int64_t v = 0;
    int r = cg_h5_attr_get(g, "adam_t", H5T_NATIVE_INT64, &v, fname, e);
    H5Oclose(g);
    if (r == 0)
        return cg_fail(e, "%s: not a valid checkpoint: attribute adam_t on %s is missing", fname,
                       gp);
    if (r < 0)
        return -1;
    if (v < 0 || v > MAX_COUNT)
        return cg_fail(e, "%s: adam_t on %s is %lld, not in 0..2^53", fname, gp, (long long)v);
    *t = (long)v;
    return 0;
}

/* The optional /ema group: when present it must hold /ema/generator with a decay in (0, 1). */
static int read_ema_meta(hid_t f, const char *fname, cg_ckpt_meta *m, cg_error *e)
{
    if (strcmp(m->kind, "gan"))
        return 0; /* only a GAN keeps an EMA */
    m->has_ema = 0;
    m->ema_decay = 0.0;
    htri_t ex = H5Lexists(f, "/ema", H5P_DEFAULT);
    if (ex < 0)
        return cg_h5_fail(e, "%s: cannot read /ema", fname);
    if (ex == 0)
        return 0;
    hid_t g = cg_h5_group_open(f, "/ema/generator", fname, "checkpoint", e);
    if (g < 0)
        return -1;
    double decay = 0.0;
    const int r = cg_h5_attr_get(g, "decay", H5T_NATIVE_DOUBLE, &decay, fname, e);
    H5Oclose(g);
    if (r == 0)
        return cg_fail(e, "%s: not a valid checkpoint: attribute decay on /ema/generator is "
                          "missing", fname);
    if (r < 0)
        return -1;
    if (!(decay > 0.0 && decay < 1.0))
        return cg_fail(e, "%s: /ema/generator has decay %g, not in (0, 1)", fname, decay);
    m->has_ema = 1;
    m->ema_decay = decay;
    return 0;
}

/* A model name is printable ASCII without spaces (every preset's is), so the messages that
 * quote it stay one line. */
static int is_name(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

/* The root's model name into m->model. */
static int read_model(hid_t f, const char *path, cg_ckpt_meta *m, cg_error *e)
{
    char *model = NULL, shown[41];
    int r = cg_h5_attr_get_str(f, "model", &model, path, e);
    if (r > 0)
        cg_h5_printable(model, shown, sizeof shown);
    if (r == 0)
        r = cg_fail(e, "%s: not a valid %s: attribute 'model' is missing", path, WHAT);
    else if (r > 0 && strlen(model) >= sizeof m->model)
        r = cg_fail(e, "%s: model name '%s' is too long", path, shown);
    else if (r > 0 && !is_name(model))
        r = cg_fail(e, "%s: attribute 'model' ('%s') is not a model name", path, shown);
    else if (r > 0)
        snprintf(m->model, sizeof m->model, "%s", model);
    free(model);
    return r < 0 ? -1 : 0;
}

/* The required numeric attributes of the root, checked for sane values. */
static int read_counts(hid_t f, const char *path, cg_ckpt_meta *m, cg_error *e)
{
    int32_t ws = 0, gb = 0, nd = 0, nc = 0;
    int64_t step = 0, epoch = 0;
    if (cg_h5_attr_need(f, "step", H5T_NATIVE_INT64, &step, path, WHAT, e) ||
        cg_h5_attr_need(f, "epoch", H5T_NATIVE_INT64, &epoch, path, WHAT, e) ||
        cg_h5_attr_need(f, "seed", H5T_NATIVE_UINT64, &m->seed, path, WHAT, e) ||
        cg_h5_attr_need(f, "world_size", H5T_NATIVE_INT32, &ws, path, WHAT, e) ||
        cg_h5_attr_need(f, "global_batch", H5T_NATIVE_INT32, &gb, path, WHAT, e) ||
        cg_h5_attr_need(f, "noise_dim", H5T_NATIVE_INT32, &nd, path, WHAT, e) ||
        cg_h5_attr_get(f, "n_classes", H5T_NATIVE_INT32, &nc, path, e) < 0) /* absent: 0 */
        return -1;
    if (step < 0 || step > MAX_COUNT || epoch < 0 || epoch > MAX_COUNT || ws < 1 || gb < 1 ||
        nd < 1 || nd > MAX_NOISE_DIM || nc < 0 || nc > MAX_CLASSES)
        return cg_fail(e, "%s: invalid attribute values (step %lld, epoch %lld, world_size %d, "
                          "global_batch %d, noise_dim %d, n_classes %d)",
                       path, (long long)step, (long long)epoch, (int)ws, (int)gb, (int)nd,
                       (int)nc);
    m->step = (long)step;
    m->epoch = (long)epoch;
    m->world_size = ws;
    m->global_batch = gb;
    m->noise_dim = nd;
    m->n_classes = nc;
    return 0;
}

/* The configuration must be a JSON object for a checkpoint to be valid or opened for
 * inference (cg_ckpt_write stores the run's; --config CHECKPOINT and resume read it as one,
 * and settings.c refuses anything else). cg_ckpt_read_meta returns it as stored, whatever it
 * holds. The types of its values are checked where they are used (settings.c,
 * classes_from_config). */
static int check_config(const char *config, const char *path, cg_error *e)
{
    json_error_t je;
    json_t *j = json_loads(config, 0, &je);
    char why[160];
    if (!j)
        return cg_fail(e, "%s: attribute 'config' is not JSON (line %d, column %d: %s)", path,
                       je.line, je.column, cg_h5_printable(je.text, why, sizeof why));
    const int obj = json_is_object(j);
    json_decref(j);
    return obj ? 0 : cg_fail(e, "%s: attribute 'config' is JSON, but not an object", path);
}

/* The root's kind attribute into m->kind ("gan" when absent: files written before VAEs),
 * which must be the kind of its model (when chargan knows the model). */
static int read_kind(hid_t f, const char *path, const cg_kind_ops *ops, cg_ckpt_meta *m,
                     cg_error *e)
{
    if (cg_h5_attr_get_strbuf(f, "kind", m->kind, sizeof m->kind, path, e) < 0)
        return -1;
    if (!m->kind[0])
        snprintf(m->kind, sizeof m->kind, "gan");
    if (ops && strcmp(ops->name, m->kind))
        return cg_fail(e, "%s: attribute 'kind' says %s, but model '%s' is a %s", path,
                       m->kind, m->model, ops->name);
    return 0;
}

/* All meta data of an open file into m (zeroed first; m->config_json is set only when
 * everything succeeds). */
static int read_meta_f(hid_t f, const char *path, cg_ckpt_meta *m, cg_error *e)
{
    memset(m, 0, sizeof *m);
    int32_t ver = 0;
    const int r = cg_h5_check_format(f, path, CG_CKPT_FORMAT, CG_CKPT_FORMAT_VERSION, &ver, e);
    if (r < 0)
        return -1;
    if (r == 0)
        return cg_fail(e, "%s: not a chargan checkpoint (an HDF5 file without a 'format' "
                          "attribute)", path);
    m->format_version = ver;
    char *config = NULL;
    if (read_model(f, path, m, e) || read_counts(f, path, m, e) ||
        cg_h5_attr_get_strbuf(f, "created", m->created, sizeof m->created, path, e) < 0 ||
        cg_h5_attr_get_stack(f, &m->stack, path, e) ||
        cg_h5_attr_get_str(f, "config", &config, path, e) < 0)
        return -1;
    if (!config && !(config = strdup("{}")))
        return cg_fail(e, "%s: out of memory", path);
    const cg_kind_ops *ops = cg_kind_find(m->model);
    if (read_kind(f, path, ops, m, e) ||
        read_adam_t(f, path, ops ? ops->net_names[0] : "generator", &m->adam_t_g, e) ||
        read_adam_t(f, path, ops ? ops->net_names[1] : "discriminator", &m->adam_t_d, e) ||
        read_ema_meta(f, path, m, e)) {
        free(config);
        return -1;
    }
    m->config_json = config;
    return 0;
}

/* ---- checkpoint reading ------------------------------------------------------------- */

void cg_ckpt_meta_free(cg_ckpt_meta *m)
{
    if (!m)
        return;
    free(m->config_json);
    m->config_json = NULL;
}

int cg_ckpt_read_meta(const char *path, cg_ckpt_meta *m, cg_error *e)
{
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta mm;
    int rc = read_meta_f(f, path, &mm, e);
    H5Fclose(f);
    if (rc == 0)
        *m = mm;
    return rc;
}

/* The model of meta data m as training builds it, for batches of `batch` images, with an
 * EMA when the file has one. */
static int build_model(const char *path, const cg_ckpt_meta *m, int batch, cg_kind *k,
                       cg_error *e)
{
    if (!cg_kind_find(m->model))
        return cg_fail(e, "%s: checkpoint of model '%s', which this chargan does not know "
                          "(known: %s)", path, m->model, cg_kind_model_names());
    const cg_kind_setup s = {m->model, m->noise_dim, m->n_classes, batch, batch, m->seed,
                             m->has_ema ? m->ema_decay : 0.0, NULL};
    cg_error sub = {{0}};
    if (cg_kind_init(k, &s, &sub))
        return cg_fail(e, "%s: model '%s': %s", path, m->model, sub.msg);
    return 0;
}

/* Validation without a gan. *mismatch is set when the file is a valid checkpoint meta-wise
 * but of another model than `model`. */
static int validate_impl(const char *path, const char *model, cg_ckpt_meta *out, int *mismatch,
                         cg_error *e)
{
    *mismatch = 0;
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta m;
    if (read_meta_f(f, path, &m, e)) {
        H5Fclose(f);
        return -1;
    }
    cg_kind k;
    memset(&k, 0, sizeof k);
    int rc;
    if (model && strcmp(model, m.model) != 0) {
        *mismatch = 1;
        rc = cg_fail(e, "%s: checkpoint of model '%s', but this run's model is '%s'", path,
                     m.model, model);
    } else {
        rc = check_config(m.config_json, path, e);
        rc = rc ? rc : build_model(path, &m, 1, &k, e);
        float *none[CG_KIND_NETS] = {NULL};
        if (rc == 0)
            rc = read_state(f, path, &k, none, m.has_ema, NULL, e);
    }
    cg_kind_free(&k);
    H5Fclose(f);
    if (rc == 0 && out)
        *out = m;
    else
        cg_ckpt_meta_free(&m);
    return rc;
}

int cg_ckpt_validate(const char *path, const char *model, cg_ckpt_meta *m, cg_error *e)
{
    int mismatch;
    return validate_impl(path, model, m, &mismatch, e);
}

/* A checkpoint with meta data m can be loaded into k: same model, noise_dim, classes. */
static int check_compatible(const char *path, const cg_ckpt_meta *m, const cg_kind *k,
                            cg_error *e)
{
    if (strcmp(m->model, k->model) != 0)
        return cg_fail(e, "%s: checkpoint of model '%s', but this run's model is '%s'", path,
                       m->model, k->model);
    if (m->noise_dim != k->latent_dim)
        return cg_fail(e, "%s: checkpoint has %s %d, but this run uses %d", path,
                       k->ops == &cg_kind_gan ? "noise_dim" : "coding_dim", m->noise_dim,
                       k->latent_dim);
    if (m->n_classes != k->n_classes)
        return cg_fail(e, "%s: checkpoint has n_classes %d (%s), but this run uses %d", path,
                       m->n_classes, m->n_classes ? "conditional" : "unconditional",
                       k->n_classes);
    return 0;
}

/* The staging copy of a load: each network's param, m, v (3 * n_params each) and the EMA. */
typedef struct {
    float *net[CG_KIND_NETS], *ema;
} staged;

/* Copies a staged state into k: parameters, moments, update counters, and the EMA (the
 * file's, or for a file without one the generator's parameters, to start it again from). */
static void apply_staged(const staged *s, const cg_ckpt_meta *m, cg_kind *kd)
{
    const long ts[2] = {m->adam_t_g, m->adam_t_d};
    for (int k = 0; k < kd->n_nets; k++) {
        cg_net *net = kd->nets[k].net;
        const size_t n = net->n_params;
        memcpy(net->param, s->net[k], sizeof(float) * n);
        memcpy(net->adam_m, s->net[k] + n, sizeof(float) * n);
        memcpy(net->adam_v, s->net[k] + 2 * n, sizeof(float) * n);
        *kd->nets[k].opt_t = ts[k];
    }
    const cg_net *gen = kd->nets[kd->gen].net;
    if (kd->ema)
        memcpy(kd->ema, s->ema ? s->ema : gen->param, sizeof(float) * gen->n_params);
}

/* Reads the state of an open checkpoint into s (allocated here). */
static int stage(hid_t f, const char *path, const cg_ckpt_meta *m, const cg_kind *kd,
                 staged *s, cg_error *e)
{
    int ok = 1;
    for (int k = 0; k < kd->n_nets; k++)
        ok &= (s->net[k] = malloc(sizeof(float) * 3 * kd->nets[k].net->n_params)) != NULL;
    s->ema = m->has_ema ? malloc(sizeof(float) * kd->nets[kd->gen].net->n_params) : NULL;
    if (!ok || (m->has_ema && !s->ema))
        return cg_fail(e, "%s: out of memory for the staging copy", path);
    return read_state(f, path, kd, s->net, m->has_ema, s->ema, e);
}

int cg_ckpt_load(const char *path, cg_gan *gan, cg_ckpt_meta *m, cg_error *e)
{
    cg_kind k;
    cg_kind_wrap_gan(&k, gan);
    return cg_ckpt_load_model(path, &k, m, e);
}

int cg_ckpt_load_model(const char *path, cg_kind *k, cg_ckpt_meta *m, cg_error *e)
{
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    cg_ckpt_meta mm;
    if (read_meta_f(f, path, &mm, e)) {
        H5Fclose(f);
        return -1;
    }
    staged s = {{NULL}, NULL};
    int rc = check_compatible(path, &mm, k, e);
    if (rc == 0)
        rc = stage(f, path, &mm, k, &s, e);
    H5Fclose(f);
    if (rc == 0)
        apply_staged(&s, &mm, k);
    for (int i = 0; i < CG_KIND_NETS; i++)
        free(s.net[i]);
    free(s.ema);
    if (rc == 0 && m)
        *m = mm;
    else
        cg_ckpt_meta_free(&mm);
    return rc;
}

/* ---- checkpoint directories --------------------------------------------------------- */

/* "step-<digits>.h5" (or with prefix "." and suffix ".h5.tmp" when tmp) -> step. */
static int parse_step_name(const char *name, int tmp, long *step)
{
    const char *pre = tmp ? ".step-" : "step-";
    const char *suf = tmp ? ".h5.tmp" : ".h5";
    size_t lp = strlen(pre), ls = strlen(suf), n = strlen(name);
    if (n <= lp + ls || strncmp(name, pre, lp) || strcmp(name + n - ls, suf))
        return 0;
    long v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (LONG_MAX - 9) / 10)
            return 0;
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return 1;
}

typedef struct {
    long *steps;
    int n, cap;
} step_list;

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

static int step_list_add(step_list *l, long s)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        long *p = realloc(l->steps, sizeof(long) * (size_t)cap);
        if (!p)
            return -1;
        l->steps = p, l->cap = cap;
    }
    l->steps[l->n++] = s;
    return 0;
}

/* Step numbers of DIR's files of one kind, newest first. Returns 0, 1 when DIR is missing,
 * -1 on error. */
static int list_steps(const char *dir, int tmp, step_list *l, cg_error *e)
{
    memset(l, 0, sizeof *l);
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT)
            return 1;
        return cg_fail(e, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(dp))) {
        long s;
        if (!parse_step_name(de->d_name, tmp, &s))
            continue;
        if (step_list_add(l, s)) {
            closedir(dp);
            free(l->steps);
            return cg_fail(e, "%s: out of memory", dir);
        }
    }
    closedir(dp);
    if (l->n)
        qsort(l->steps, (size_t)l->n, sizeof(long), cmp_desc);
    return 0;
}

/* "chargan: warning: skipping PATH: reason" (the message starts with the path; named once). */
static void warn_skip(const char *p, const char *msg)
{
    const size_t lp = strlen(p);
    if (!strncmp(msg, p, lp) && !strncmp(msg + lp, ": ", 2))
        msg += lp + 2;
    fprintf(stderr, "chargan: warning: skipping %s: %s\n", p, msg);
    fflush(stderr);
}

int cg_ckpt_find_latest(const char *dir, const char *model, char *path, size_t len,
                        cg_error *e)
{
    step_list l;
    int r = list_steps(dir, 0, &l, e);
    if (r)
        return r > 0 ? 0 : -1;
    int found = 0;
    for (int i = 0; i < l.n && !found; i++) {
        char p[CG_PATH_CAP];
        snprintf(p, sizeof p, "%s/step-%08ld.h5", dir, l.steps[i]);
        cg_error sub = {{0}};
        int mismatch = 0;
        if (validate_impl(p, model, NULL, &mismatch, &sub) == 0) {
            if (strlen(p) >= len) {
                found = cg_fail(e, "%s: path does not fit the caller's buffer", p);
            } else {
                snprintf(path, len, "%s", p);
                found = 1;
            }
        } else if (mismatch) {
            found = cg_fail(e, "%s (use another output directory or --model)", sub.msg);
        } else {
            warn_skip(p, sub.msg);
        }
    }
    free(l.steps);
    return found;
}

/* Removes the temporaries of killed writers older than step `newest`. */
static void remove_stale_tmps(const char *dir, long newest, cg_error *e)
{
    step_list t;
    if (list_steps(dir, 1, &t, e) != 0)
        return;
    for (int i = 0; i < t.n; i++) {
        if (t.steps[i] >= newest)
            continue;
        char p[CG_PATH_CAP];
        snprintf(p, sizeof p, "%s/.step-%08ld.h5.tmp", dir, t.steps[i]);
        unlink(p);
    }
    free(t.steps);
}

int cg_ckpt_prune(const char *dir, int keep, cg_error *e)
{
    step_list l;
    int r = list_steps(dir, 0, &l, e);
    if (r)
        return r > 0 ? 0 : -1;
    int deleted = 0, rc = 0;
    for (int i = keep > 0 ? keep : l.n; i < l.n && rc == 0; i++) {
        char p[CG_PATH_CAP];
        snprintf(p, sizeof p, "%s/step-%08ld.h5", dir, l.steps[i]);
        if (unlink(p) && errno != ENOENT)
            rc = cg_fail(e, "%s: cannot delete old checkpoint: %s", p, strerror(errno));
        else
            deleted++;
    }
    if (rc == 0 && l.n)
        remove_stale_tmps(dir, l.steps[0], e);
    free(l.steps);
    if (rc == 0 && deleted && cg_fsync_dir(dir))
        rc = cg_fail(e, "%s: fsync: %s", dir, strerror(errno));
    return rc ? -1 : deleted;
}

/* ---- file kinds --------------------------------------------------------------------- */

/* The kind of an open file from its format attribute, or the sample layout without one. */
static int kind_of_file(hid_t f, const char *path, cg_error *e)
{
    char *fmt = NULL, shown[101];
    if (cg_h5_attr_get_str(f, "format", &fmt, path, e) < 0)
        return -1;
    int rc;
    if (fmt && !strcmp(fmt, CG_CKPT_FORMAT))
        rc = CG_FILE_CHECKPOINT;
    else if (fmt && !strcmp(fmt, CG_SAMPLES_FORMAT))
        rc = CG_FILE_SAMPLES;
    else if (fmt)
        rc = cg_fail(e, "%s: not a chargan file (format '%s')", path,
                     cg_h5_printable(fmt, shown, sizeof shown));
    else if (H5Lexists(f, "samples", H5P_DEFAULT) > 0)
        rc = CG_FILE_SAMPLES;
    else
        rc = cg_fail(e, "%s: not a chargan checkpoint or sample file (an HDF5 file without a "
                        "'format' attribute)", path);
    free(fmt);
    return rc;
}

int cg_h5_file_kind(const char *path, cg_error *e)
{
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    const int rc = kind_of_file(f, path, e);
    H5Fclose(f);
    return rc;
}

/* ---- opening a trained GAN ---------------------------------------------------------- */

/* The class characters are kept in the run's configuration ("classes": "01..."); absent in
 * configurations without them (characters then unknown), an error when not a string. */
static int classes_from_config(const char *path, const char *text, int n_classes,
                               char *classes, cg_error *e)
{
    memset(classes, 0, CG_GEN_MAX_CLASSES + 1);
    json_t *cfg = text ? json_loads(text, 0, NULL) : NULL;
    const json_t *v = json_object_get(cfg, "classes");
    const char *s = json_string_value(v);
    for (int k = 0; s && k < n_classes && k < CG_GEN_MAX_CLASSES && s[k]; k++)
        classes[k] = s[k];
    json_decref(cfg);
    if (v && !s)
        return cg_fail(e, "%s: the configuration's \"classes\" is not a string", path);
    return 0;
}

int cg_model_open(const char *path, int batch, int use_ema, cg_kind *k, cg_ckpt_meta *m,
                  char *classes, cg_error *e)
{
    if (cg_ckpt_read_meta(path, m, e))
        return -1;
    int rc = check_config(m->config_json, path, e);
    if (!rc)
        rc = build_model(path, m, batch, k, e);
    if (!rc && (rc = cg_ckpt_load_model(path, k, NULL, e)))
        cg_kind_free(k);
    if (!rc && classes && (rc = classes_from_config(path, m->config_json, m->n_classes,
                                                    classes, e)))
        cg_kind_free(k);
    if (rc) {
        cg_ckpt_meta_free(m);
        return -1;
    }
    const cg_net *gen = k->nets[k->gen].net;
    if (use_ema && k->ema)
        memcpy(gen->param, k->ema, sizeof(float) * gen->n_params);
    return 0;
}

int cg_gan_open(const char *path, int batch, int use_ema, cg_gan *gan, cg_ckpt_meta *m,
                char *classes, cg_error *e)
{
    if (cg_ckpt_read_meta(path, m, e))
        return -1;
    if (strcmp(m->kind, "gan")) {
        cg_fail(e, "%s: a checkpoint of %s '%s', not of a GAN", path, m->kind, m->model);
        cg_ckpt_meta_free(m);
        return -1;
    }
    if (check_config(m->config_json, path, e)) {
        cg_ckpt_meta_free(m);
        return -1;
    }
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", m->model);
    cfg.noise_dim = m->noise_dim;
    cfg.n_classes = m->n_classes;
    cfg.seed = m->seed;
    cfg.global_batch = cfg.local_batch = batch;
    cg_error sub = {{0}};
    if (cg_gan_init(gan, &cfg, &sub)) {
        cg_ckpt_meta_free(m);
        return cg_fail(e, "%s: %s", path, sub.msg);
    }
    if (m->has_ema)
        cg_gan_ema_enable(gan, m->ema_decay);
    if (cg_ckpt_load(path, gan, NULL, e)) {
        cg_gan_free(gan);
        cg_ckpt_meta_free(m);
        return -1;
    }
    if (classes && classes_from_config(path, m->config_json, m->n_classes, classes, e)) {
        cg_gan_free(gan);
        cg_ckpt_meta_free(m);
        return -1;
    }
    if (use_ema && gan->ema_g)
        memcpy(gan->g.param, gan->ema_g, sizeof(float) * gan->g.n_params);
    return 0;
}
