/* cg_style_image_load (chargan/style_image.h): one synthetic character, a "7" (a bar and a
 * diagonal: no symmetry hides a flip or a transpose), drawn into PNGs of many sizes, both
 * polarities, every colour type and bit depths 1 to 16, comes out as nearly the same 28 x 28
 * image: the ink's box 24 pixels on its longer side and centred, upright. A file that is not
 * a PNG, an empty or truncated one, a blank picture, one too large, and a missing file fail
 * with one line naming the file. */
#include "testutil.h"

#include <png.h>
#include <setjmp.h>
#include <unistd.h>

#include "chargan/style_image.h"

/* Coverage of the "7" at (u, v) in glyph units (1 wide, 1.4 tall): a bar and a diagonal,
 * 0.12 thick. */
static double seven(double u, double v)
{
    const double seg[2][4] = {{0.1, 0.1, 0.9, 0.1}, {0.9, 0.1, 0.3, 1.3}};
    for (int k = 0; k < 2; k++) {
        const double *s = seg[k], dx = s[2] - s[0], dy = s[3] - s[1];
        double t = ((u - s[0]) * dx + (v - s[1]) * dy) / (dx * dx + dy * dy);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        if (hypot(u - s[0] - t * dx, v - s[1] - t * dy) <= 0.06)
            return 1.0;
    }
    return 0.0;
}

/* Coverage of canvas pixel (x, y) (4 x 4 samples): the glyph fills 70% of the shorter
 * fitting side, its corner at a third of the free space (off centre on purpose). */
static double coverage(int x, int y, int w, int h)
{
    const double g = 0.7 * fmin(w, h / 1.4), x0 = (w - g) / 3, y0 = (h - 1.4 * g) / 3;
    double c = 0;
    for (int sy = 0; sy < 4; sy++)
        for (int sx = 0; sx < 4; sx++)
            c += seven((x + (sx + 0.5) / 4 - x0) / g, (y + (sy + 0.5) / 4 - y0) / g);
    return c / 16;
}

typedef struct {
    int w, h, type, depth; /* PNG colour type and bit depth */
    double paper[3], ink[3];
    int transparent;       /* paper is alpha 0 (types with alpha), ink's alpha its coverage */
} canvas;

/* Channel values in [0,1] of pixel (x, y); returns the count (palette: 1, the index / 15). */
static int pixel(const canvas *c, int x, int y, double ch[4])
{
    const double k = coverage(x, y, c->w, c->h);
    if (c->type == PNG_COLOR_TYPE_PALETTE) {
        ch[0] = round(k * 15) / 15; /* index into 16 entries from paper to ink */
        return 1;
    }
    double rgb[3];
    for (int i = 0; i < 3; i++)
        rgb[i] = c->transparent ? c->ink[i] : c->paper[i] + k * (c->ink[i] - c->paper[i]);
    const int color = c->type & PNG_COLOR_MASK_COLOR, alpha = c->type & PNG_COLOR_MASK_ALPHA;
    int n = 0;
    if (color)
        ch[n++] = rgb[0], ch[n++] = rgb[1], ch[n++] = rgb[2];
    else
        ch[n++] = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    if (alpha)
        ch[n++] = c->transparent ? k : 1.0;
    return n;
}

static size_t row_bytes(const canvas *c)
{
    const int channels[7] = {1, 0, 3, 1, 2, 0, 4}; /* by PNG colour type */
    return ((size_t)c->w * channels[c->type] * c->depth + 7) / 8;
}

/* One row packed at c->depth bits a channel (big-endian, most significant bits first). */
static void pack_row(const canvas *c, int y, png_bytep row)
{
    const int d = c->depth, max = (1 << d) - 1;
    size_t bit = 0;
    memset(row, 0, row_bytes(c));
    for (int x = 0; x < c->w; x++) {
        double ch[4];
        const int n = pixel(c, x, y, ch);
        for (int i = 0; i < n; i++, bit += (size_t)d) {
            const unsigned v = (unsigned)lround(c->type == PNG_COLOR_TYPE_PALETTE ? ch[i] * 15
                                                                                 : ch[i] * max);
            if (d == 16)
                row[bit / 8] = (png_byte)(v >> 8), row[bit / 8 + 1] = (png_byte)v;
            else
                row[bit / 8] |= (png_byte)(v << (8 - d - bit % 8));
        }
    }
}

static void on_error(png_structp png, png_const_charp msg)
{
    fprintf(stderr, "libpng: %s\n", msg);
    longjmp(*(jmp_buf *)png_get_error_ptr(png), 1);
}

/* The canvas as a PNG file (palette: 16 entries from paper to ink). */
static int write_png(const char *path, const canvas *c)
{
    FILE *f = fopen(path, "wb");
    jmp_buf jmp;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &jmp, on_error, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep row = malloc(row_bytes(c));
    if (!f || !row || setjmp(jmp)) {
        png_destroy_write_struct(&png, &info);
        free(row);
        if (f)
            fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, c->depth, c->type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color pal[16];
    for (int i = 0; i < 16; i++) {
        png_byte *rgb[3] = {&pal[i].red, &pal[i].green, &pal[i].blue};
        for (int k = 0; k < 3; k++)
            *rgb[k] = (png_byte)lround(255 * (c->paper[k] + i / 15.0 * (c->ink[k] - c->paper[k])));
    }
    if (c->type == PNG_COLOR_TYPE_PALETTE)
        png_set_PLTE(png, info, pal, 16);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) {
        pack_row(c, y, row);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return fclose(f);
}

/* Ink box [x0, x1) x [y0, y1) at the ink level, centre of mass (cx, cy), pixel centres at
 * i + 0.5. */
static void measure(const float *img, int box[4], double *cx, double *cy)
{
    double m = 0, sx = 0, sy = 0;
    box[0] = box[2] = 28, box[1] = box[3] = 0;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
            const float v = img[y * 28 + x];
            m += v, sx += v * (x + 0.5), sy += v * (y + 0.5);
            if (v >= CG_STYLE_INK_LEVEL) {
                box[0] = x < box[0] ? x : box[0], box[1] = x + 1 > box[1] ? x + 1 : box[1];
                box[2] = y < box[2] ? y : box[2], box[3] = y + 1 > box[3] ? y + 1 : box[3];
            }
        }
    *cx = sx / m, *cy = sy / m;
}

/* The reference is upright: the bar is a long run of ink along the box's top row, and the
 * diagonal ends at the bottom left, leaving the bottom right empty. */
static void check_upright(const float *img)
{
    int box[4], run = 0;
    double cx, cy;
    measure(img, box, &cx, &cy);
    for (int x = box[0]; x < box[1]; x++)
        run += img[(box[2] + 1) * 28 + x] >= 0.5f;
    CHECKF(run > (box[1] - box[0]) / 2, "top run %d of width %d", run, box[1] - box[0]);
    double left = 0, right = 0;
    for (int y = 20; y < 28; y++)
        for (int x = 0; x < 28; x++)
            *(x < 14 ? &left : &right) += img[y * 28 + x];
    CHECKF(left > 5 * right, "bottom left %g, bottom right %g", left, right);
}

typedef struct {
    const char *name;
    canvas c;
    double tol; /* mean |difference| to the reference allowed */
} variant;

#define WHITE {1, 1, 1}
#define BLACK {0, 0, 0}
static const variant variants[] = {
    {"28x28 grey 8 bit", {28, 28, PNG_COLOR_TYPE_GRAY, 8, WHITE, BLACK, 0}, 0.06},
    {"56x56 grey 8 bit, light ink on black", {56, 56, PNG_COLOR_TYPE_GRAY, 8, BLACK, WHITE, 0},
     0.04},
    {"100x60 RGB, blue ink on cream", {100, 60, PNG_COLOR_TYPE_RGB, 8, {1, 0.95, 0.85},
     {0.1, 0.1, 0.5}, 0}, 0.04},
    {"100x60 RGBA, transparent paper", {100, 60, PNG_COLOR_TYPE_RGBA, 8, WHITE, BLACK, 1},
     0.04},
    {"60x100 RGBA 16 bit, white ink on opaque black",
     {60, 100, PNG_COLOR_TYPE_RGBA, 16, BLACK, WHITE, 0}, 0.04},
    {"56x56 grey+alpha 16 bit", {56, 56, PNG_COLOR_TYPE_GRAY_ALPHA, 16, WHITE, BLACK, 1},
     0.04},
    {"56x56 grey 16 bit, light on dark grey",
     {56, 56, PNG_COLOR_TYPE_GRAY, 16, {0.2, 0.2, 0.2}, {0.9, 0.9, 0.9}, 0}, 0.04},
    {"80x80 palette 4 bit", {80, 80, PNG_COLOR_TYPE_PALETTE, 4, WHITE, BLACK, 0}, 0.04},
    {"120x90 palette 8 bit, light ink", {120, 90, PNG_COLOR_TYPE_PALETTE, 8, BLACK, WHITE, 0},
     0.04},
    {"100x100 grey 1 bit", {100, 100, PNG_COLOR_TYPE_GRAY, 1, WHITE, BLACK, 0}, 0.06},
    {"64x64 grey 2 bit, light ink", {64, 64, PNG_COLOR_TYPE_GRAY, 2, BLACK, WHITE, 0}, 0.06},
};

/* Every variant comes out close to the reference and framed like it: its box 24 on the
 * longer side and centred, its centre of mass where the reference's is (a 7's lies above
 * the centre: EMNIST's 7s have theirs at y = 11.4 on average). */
static void test_variants(const char *dir, const float *ref)
{
    int rbox[4];
    double rx, ry;
    measure(ref, rbox, &rx, &ry);
    CHECKF(ry < 13 && rx > 14, "reference's centre of mass (%.2f, %.2f)", rx, ry);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const variant *t = &variants[v];
        char path[512];
        snprintf(path, sizeof path, "%s/variant-%zu.png", dir, v);
        float img[784];
        cg_error e;
        if (write_png(path, &t->c) || cg_style_image_load(path, img, &e)) {
            CHECKF(0, "%s: %s", t->name, e.msg);
            continue;
        }
        double diff = 0, cx, cy;
        for (int p = 0; p < 784; p++)
            diff += fabs((double)img[p] - ref[p]) / 784;
        int box[4];
        measure(img, box, &cx, &cy);
        const int side = box[1] - box[0] > box[3] - box[2] ? box[1] - box[0] : box[3] - box[2];
        CHECKF(diff < t->tol, "%s: mean |difference| to the reference %.4f", t->name, diff);
        CHECKF(abs(side - CG_STYLE_BOX) <= 1, "%s: longer side %d", t->name, side);
        CHECKF(fabs((box[0] + box[1]) / 2.0 - 14) <= 1 && fabs((box[2] + box[3]) / 2.0 - 14) <= 1,
               "%s: box [%d, %d) x [%d, %d)", t->name, box[0], box[1], box[2], box[3]);
        CHECKF(hypot(cx - rx, cy - ry) < 0.75, "%s: centre of mass (%.2f, %.2f), reference's "
               "(%.2f, %.2f)", t->name, cx, cy, rx, ry);
        printf("%-48s mean |diff| %.4f, box %dx%d, centre of mass (%.2f, %.2f)\n", t->name, diff,
               box[1] - box[0], box[3] - box[2], cx, cy);
        remove(path);
    }
}

/* path fails with one line naming it that contains what. */
static void expect_failure(const char *path, const char *what)
{
    float img[784];
    cg_error e = {{0}};
    const int rc = cg_style_image_load(path, img, &e);
    CHECKF(rc == -1 && strstr(e.msg, path) && strstr(e.msg, what) && !strchr(e.msg, '\n'),
           "%s: rc %d, message '%s' (expected '%s')", path, rc, e.msg, what);
    printf("refused: %s\n", e.msg);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
}

static void test_failures(const char *dir)
{
    char path[512], good[512];
    snprintf(path, sizeof path, "%s/text.png", dir);
    write_bytes(path, "not a picture\n", 14);
    expect_failure(path, "not a readable PNG");
    remove(path);
    snprintf(path, sizeof path, "%s/empty.png", dir);
    write_bytes(path, "", 0);
    expect_failure(path, "PNG");
    remove(path);
    snprintf(path, sizeof path, "%s/missing.png", dir);
    expect_failure(path, "PNG");
    const canvas blank = {50, 50, PNG_COLOR_TYPE_RGB, 8, {0.9, 0.9, 0.9}, {0.9, 0.9, 0.9}, 0};
    snprintf(path, sizeof path, "%s/blank.png", dir);
    CHECK(write_png(path, &blank) == 0);
    expect_failure(path, "no ink");
    remove(path);
    const canvas wide = {5000, 8, PNG_COLOR_TYPE_GRAY, 1, WHITE, BLACK, 0};
    snprintf(path, sizeof path, "%s/wide.png", dir);
    CHECK(write_png(path, &wide) == 0);
    expect_failure(path, "at most 4096");
    remove(path);
    /* a good file cut in half: the header reads, the pixels do not */
    snprintf(good, sizeof good, "%s/good.png", dir);
    CHECK(write_png(good, &variants[2].c) == 0);
    FILE *f = fopen(good, "rb");
    char buf[1 << 16];
    const size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 100 && n < sizeof buf);
    snprintf(path, sizeof path, "%s/truncated.png", dir);
    write_bytes(path, buf, n / 2);
    expect_failure(path, "cannot read PNG");
    remove(path), remove(good);
}

int main(void)
{
    char dir[] = "/tmp/chargan-style-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    /* The reference: a large, plain picture, the least resampling error. */
    const canvas big = {400, 400, PNG_COLOR_TYPE_GRAY, 8, WHITE, BLACK, 0};
    char path[512];
    snprintf(path, sizeof path, "%s/reference.png", dir);
    float ref[784];
    cg_error e;
    CHECK(write_png(path, &big) == 0);
    if (cg_style_image_load(path, ref, &e)) {
        fprintf(stderr, "reference: %s\n", e.msg);
        return 1;
    }
    remove(path);
    check_upright(ref);
    test_variants(dir, ref);
    test_failures(dir);
    rmdir(dir);
    return tu_finish("test_style_image");
}
