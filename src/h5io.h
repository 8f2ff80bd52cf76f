/* HDF5 plumbing shared by chargan's files (checkpoints and sample files, src/ckpt.c and
 * src/samples.c; the classifier file, src/classifier.c) and by `chargan info`. Private to the
 * sources (not installed, not part of include/chargan/).
 *
 * Conventions of every chargan HDF5 file (the layouts are in ckpt.h, samples.h and
 * classifier.h):
 *   - opened with cg_h5_fapl(): format bounds earliest..1.8 (superblock version 0 like h5py's
 *     default, readable by any HDF5 >= 1.8, no SWMR flags that could outlive a crash), strong
 *     close, and HDF5 file locking off. A file is written by exactly one process under a
 *     private temporary name and never modified after the rename, so locks protect nothing,
 *     while on file systems without flock() (some Lustre/NFS/GPFS mounts) HDF5 1.10's locking
 *     makes opens fail with "unable to lock file". HDF5_USE_FILE_LOCKING=TRUE in the
 *     environment turns locking back on.
 *   - written crash-safely (cg_h5_write): built in memory (HDF5 core driver), its image
 *     written to DIR/.NAME.tmp with write(2), fsync'ed, renamed onto DIR/NAME, DIR fsync'ed.
 *   - strings are variable-length UTF-8 scalar attributes (h5py reads them as str); datasets
 *     are chunked with the Fletcher-32 checksum filter, so a flipped bit in stored data is an
 *     error on read.
 *   - the root carries `format`, `format_version` and `created` (ISO 8601 UTC); checkpoints
 *     and sample files also the stack they were written on (chargan/version.h).
 *
 * Errors: every function that can fail returns -1 (or a negative id) with e->msg a one-line
 * message that starts with the file name; HDF5's own error printing is off (cg_h5_quiet),
 * and the innermost reason on HDF5's error stack ends the message where there is one.
 *
 * Reading files from elsewhere: a file may hold anything, so the readers validate before
 * reading and never hand HDF5 a read they have not sized. Objects are reached through hard
 * links only (a soft, external or user-defined link anywhere on the way is refused, not
 * followed: see cg_h5_group_open), and must be of the kind asked for (group or dataset). A
 * dataset's type class, size and sign and its dataspace are checked before a buffer is
 * sized for it; its values must be stored in the file itself (no virtual dataset, no external
 * storage), all of them (no unwritten chunks), through filters this HDF5 can decode; values
 * read as float must be finite (cg_h5_dset_read). An attribute must be one element of the
 * class asked for; integers must fit the type they are read into; fixed-length strings are
 * at most CG_H5_STR_MAX bytes. Names and strings from the file that messages quote go
 * through cg_h5_printable, so a message stays one line. */
#ifndef CHARGAN_H5IO_H
#define CHARGAN_H5IO_H
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "chargan/util.h"
#include "chargan/version.h"

#define CG_H5_MAX_DIMS 8
#define CG_PATH_CAP 4096
/* The longest fixed-length string attribute read (a configuration is a few KB). */
#define CG_H5_STR_MAX ((size_t)1 << 20)

/* ---- errors, handles, opening ------------------------------------------------------- */

/* Turns off HDF5's error-stack printing (per thread in thread-safe builds: called at every
 * entry point that opens or creates a file). */
void cg_h5_quiet(void);

/* Formats "MESSAGE: REASON" into e, REASON being the innermost message on HDF5's error stack
 * (shortened to the system's message when HDF5 quotes one, e.g. "No space left on device").
 * Call it right after the failing HDF5 call: every API call clears the stack. Returns -1. */
int cg_h5_fail(cg_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s for a one-line message: control characters as '?', cut to n - 1 bytes. Returns buf. */
const char *cg_h5_printable(const char *s, char *buf, size_t n);

/* Closes an HDF5 id of any kind; ids < 0 are ignored. */
void cg_h5_close(hid_t id);

/* The file access property list described above; close with H5Pclose. The low bound must
 * stay "earliest" for files written through cg_h5_begin/cg_h5_commit: with a 1.8 low bound
 * (superblock version 2) 1.10.8's H5Fget_file_image returns an image whose superblock
 * checksum is wrong. */
hid_t cg_h5_fapl(void);

/* Opens an existing HDF5 file read-only with cg_h5_fapl(), with a message for every way it
 * can fail: missing ("PATH: No such file or directory"), a directory, not a regular file (a
 * FIFO would block the open), unreadable, empty, "not an HDF5 file" (no signature),
 * "truncated or damaged HDF5 file". */
hid_t cg_h5_open_ro(const char *path, cg_error *e);

/* ---- crash-safe writing ------------------------------------------------------------- */

/* PATH's directory: "." when PATH has no '/', "/" for "/NAME", else everything before the last
 * '/'. Returns -1 when it does not fit (dir then holds a truncated copy), else 0. */
int cg_path_dir(const char *path, char *dir, size_t len);

/* Fills a file being built; returns 0, or -1 with e set (fname: the final path). */
typedef int (*cg_h5_fill_fn)(hid_t f, const void *ctx, const char *fname, cg_error *e);

/* Writes PATH crash-safely: creates the file in memory (size_hint: its expected size), calls
 * fill, then cg_h5_commit. PATH's directory is created (cg_make_dirs) with make_dir, else it
 * must exist. On failure e reads "cannot write WHAT PATH: reason", an existing PATH is
 * untouched and no temporary is left. */
int cg_h5_write(const char *path, const char *what, int make_dir, cg_h5_fill_fn fill,
                const void *ctx, size_t size_hint, cg_error *e);

/* The steps of cg_h5_write, for callers that build the file themselves:
 *     hid_t f = cg_h5_begin(path, "classifier", expected_size, e);
 *     ...create groups, datasets and attributes in f...
 *     on failure: cg_h5_discard(f); else: cg_h5_commit(f, path, "classifier", e);
 * cg_h5_begin creates the file in memory (core driver, no backing store) and touches no
 * disk. cg_h5_commit flushes the file, takes its image, closes it (always), writes the image
 * to DIR/.NAME.tmp (DIR: cg_path_dir(PATH), which must exist) with write(2), fsyncs and
 * closes it, renames it onto PATH and fsyncs DIR. On failure the temporary is removed, an
 * existing PATH is untouched, and e reads "cannot write WHAT PATH: reason" ("WHAT PATH
 * written, but syncing directory DIR failed: ..." when only the last fsync failed). */
hid_t cg_h5_begin(const char *path, const char *what, size_t size_hint, cg_error *e);
int cg_h5_commit(hid_t file, const char *path, const char *what, cg_error *e);
void cg_h5_discard(hid_t file);

/* ---- attributes --------------------------------------------------------------------- */

/* Writers: scalar attribute NAME of obj, file type ftype, from a value of memory type mtype.
 * On failure e = "FNAME: cannot write attribute 'NAME': reason". */
int cg_h5_attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val,
                   const char *fname, cg_error *e);
int cg_h5_attr_put_str(hid_t obj, const char *name, const char *s, const char *fname,
                       cg_error *e); /* variable-length UTF-8 */
int cg_h5_attr_put_i32(hid_t obj, const char *name, int32_t v, const char *fname, cg_error *e);
int cg_h5_attr_put_i64(hid_t obj, const char *name, int64_t v, const char *fname, cg_error *e);
int cg_h5_attr_put_u64(hid_t obj, const char *name, uint64_t v, const char *fname,
                       cg_error *e);
int cg_h5_attr_put_f64(hid_t obj, const char *name, double v, const char *fname, cg_error *e);
/* `created`: the current time, ISO 8601 UTC ("2024-05-01T12:00:00Z"). */
int cg_h5_attr_put_created(hid_t obj, const char *fname, cg_error *e);
/* The stack this process runs on (cg_stack_get), as the string attributes cg_stack_attr. */
int cg_h5_attr_put_stack(hid_t obj, const char *fname, cg_error *e);

/* Readers: 1 read, 0 absent, -1 error (unreadable, or not one element of the class of mtype:
 * "FNAME: attribute 'NAME' is not an integer (it is a string)", "... holds 2 values, not
 * one"). HDF5 converts the value to mtype; an integer must fit mtype ("attribute 'seed' is
 * -5, outside the range of uint64"); an integer serves where a number is asked for. */
int cg_h5_attr_get(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                   cg_error *e);
/* The same for a string attribute (variable or fixed length, at most CG_H5_STR_MAX bytes):
 * *out malloc'd (free()), NULL when absent. */
int cg_h5_attr_get_str(hid_t obj, const char *name, char **out, const char *fname,
                       cg_error *e);
/* ...into buf (truncated to len; "" when absent). */
int cg_h5_attr_get_strbuf(hid_t obj, const char *name, char *buf, size_t len,
                          const char *fname, cg_error *e);
/* An attribute that must be there: 0, or -1 with e set; absent reads "FNAME: not a valid
 * WHAT: attribute 'NAME' is missing". */
int cg_h5_attr_need(hid_t obj, const char *name, hid_t mtype, void *out, const char *fname,
                    const char *what, cg_error *e);
/* The stack attributes (empty strings where absent: files written before they existed). */
int cg_h5_attr_get_stack(hid_t obj, cg_stack *s, const char *fname, cg_error *e);

/* The root's `format` attribute must be `want` (one of chargan's formats: CG_CKPT_FORMAT,
 * CG_SAMPLES_FORMAT, CG_CLF_FORMAT) and then `format_version` must be `version`. Returns 1
 * (*ver set), 0 when the file has no format attribute, or -1 with e set ("FNAME: this is a
 * chargan checkpoint, not a sample file", "FNAME: not a chargan checkpoint (format 'x')",
 * "FNAME: checkpoint format_version 2 is not supported (this chargan reads version 1)"). */
int cg_h5_check_format(hid_t f, const char *fname, const char *want, int32_t version,
                       int32_t *ver, cg_error *e);

/* ---- groups ------------------------------------------------------------------------- */

/* New group NAME in loc; with ordered its links iterate in creation order (tensors in model
 * order). e = "FNAME: cannot create group NAME: reason". */
hid_t cg_h5_group_new(hid_t loc, const char *name, int ordered, const char *fname,
                      cg_error *e);
/* Opens group gpath ("/a/b/c") of f, checking every level first: a missing one reads
 * "FNAME: not a valid WHAT: /a/b is missing"; each must be a hard link ("/a is a soft link
 * (to /x); chargan follows only hard links", "/a is an external link (to other.h5:/x);
 * chargan does not open other files") and a group ("/a is not a group"). Close with H5Oclose
 * (or cg_h5_close). */
hid_t cg_h5_group_open(hid_t f, const char *gpath, const char *fname, const char *what,
                       cg_error *e);

/* ---- datasets ----------------------------------------------------------------------- */

/* Dataset NAME in loc (gpath: loc's path, "" for the root, for messages) chunked by `chunk`,
 * with the Fletcher-32 checksum filter and no fill values, holding all of data (memory type
 * mtype), stored as ftype. e = "FNAME: cannot write GPATH/NAME: reason". */
int cg_h5_dset_put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                   const hsize_t *dims, const hsize_t *chunk, const void *data,
                   const char *fname, const char *gpath, cg_error *e);

/* What a dataset holds: type class, bytes per element, sign (integers), dataspace class
 * (H5S_SIMPLE, H5S_SCALAR: ndim 0, one element; H5S_NULL: ndim 0, none), rank, (the first
 * CG_H5_MAX_DIMS) dimensions, and the element count (saturating at HSIZE_UNDEF - 1). */
typedef struct {
    H5T_class_t cls;
    size_t size;
    H5T_sign_t sign;
    H5S_class_t space;
    int ndim;
    hsize_t dims[CG_H5_MAX_DIMS];
    hsize_t npoints;
} cg_h5_dinfo;

/* Describes dataset NAME of loc (a name or a path below loc): 0, or -1 with e set ("FNAME:
 * GPATH/NAME is missing", "... is not a dataset", "... is a soft link (to ...)", "... is an
 * external link (to ...)", "... is a virtual dataset ...", "... keeps its values in external
 * file ...", "... is stored with HDF5 filter 32001 ('blosc'), which this HDF5 library cannot
 * decode ...", "cannot read ..."). */
int cg_h5_dset_info(hid_t loc, const char *name, cg_h5_dinfo *d, const char *fname,
                    const char *gpath, cg_error *e);
/* 0 when d holds elements of mtype's class, size and (integers) sign, else -1 with e =
 * "FNAME: GPATH/NAME is not float32 (8-byte float)", "... is not int32 (4-byte unsigned
 * integer)". */
int cg_h5_dset_check_type(const cg_h5_dinfo *d, hid_t mtype, const char *name,
                          const char *fname, const char *gpath, cg_error *e);
/* Reads all of dataset NAME as mtype (HDF5 converts; checksums verified) into out, which the
 * caller sized from cg_h5_dset_info: 0, or -1 with e = "FNAME: cannot read GPATH/NAME (corrupt
 * data?): reason", one of cg_h5_dset_info's refusals, or, when not every value was written
 * (they would read as fill values), "... holds no data (its values were never written)",
 * "... is incomplete: 3 of its 10 chunks were never written". */
int cg_h5_dset_load(hid_t loc, const char *name, hid_t mtype, void *out, const char *fname,
                    const char *gpath, cg_error *e);
/* Validated read: NAME must be a dataset of mtype's class, size and sign with shape
 * dims[0..ndim), and float values must all be finite (nothing chargan writes holds a NaN or
 * an Inf). owner names what needs it, for the messages: "FNAME: GPATH/NAME is missing (OWNER
 * needs it)", "FNAME: GPATH/NAME has shape [10, 10], but OWNER needs [150, 12544]", "... is a
 * scalar, but ...", "FNAME: GPATH/NAME[0, 7] is nan, but OWNER needs finite values". */
int cg_h5_dset_read(hid_t loc, const char *name, hid_t mtype, int ndim, const hsize_t *dims,
                    void *out, const char *fname, const char *gpath, const char *owner,
                    cg_error *e);

/* "[d0, d1, ...]" into buf (truncated to n). */
void cg_shape_str(char *buf, size_t n, int ndim, const hsize_t *dims);

#endif
