# The checkpoint and sample file layouts as other tools see them: Debian's h5dump -H lists every
# dataset with its type and shape and the root attributes; h5py (when installed) reads the
# same; `chargan info` describes both files and refuses non-chargan files with one error line.
# The files are written by the C API through `test_ckpt --write-files DIR`.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 BUILD=$2
make_tmpdir
command -v h5dump >/dev/null || fail "h5dump not found (Debian package hdf5-tools)"
[ -x "$BUILD/test_ckpt" ] || fail "$BUILD/test_ckpt not built"
"$BUILD/test_ckpt" --write-files "$TMP" >"$TMP/write.out" 2>&1 || { cat "$TMP/write.out"; fail "test_ckpt --write-files"; }
CK=$TMP/ckpt/step-00000003.h5
SM=$TMP/samples.h5
[ -f "$CK" ] && [ -f "$SM" ] || fail "files not written"
ls -a "$TMP/ckpt" | grep -q '\.tmp$' && fail "a temporary file was left behind"
ok "wrote $(basename "$CK") ($(stat -c %s "$CK") bytes) and $(basename "$SM")"

# ---- checkpoint: the whole header listing -------------------------------------------------
h5dump -H "$CK" >"$TMP/ck.txt" 2>&1 || { cat "$TMP/ck.txt"; fail "h5dump -H $CK"; }
for a in format format_version model step epoch seed world_size global_batch noise_dim n_classes \
         config created; do
    grep -q "ATTRIBUTE \"$a\"" "$TMP/ck.txt" || fail "root attribute $a missing from h5dump -H"
done
for g in generator discriminator optimizer ema; do
    grep -q "GROUP \"$g\"" "$TMP/ck.txt" || fail "group /$g missing"
done
ok "h5dump -H lists the root attributes and /generator, /discriminator, /optimizer, /ema"

# Attribute values.
attr() { h5dump -a "$1" "$2" 2>/dev/null | sed -n 's/^ *(0): //p'; }
[ "$(attr /format "$CK")" = '"chargan-checkpoint"' ] || fail "format = $(attr /format "$CK")"
[ "$(attr /format_version "$CK")" = 1 ] || fail "format_version = $(attr /format_version "$CK")"
[ "$(attr /model "$CK")" = '"small"' ] || fail "model = $(attr /model "$CK")"
[ "$(attr /step "$CK")" = 3 ] || fail "step = $(attr /step "$CK")"
[ "$(attr /seed "$CK")" = 42 ] || fail "seed = $(attr /seed "$CK")"
[ "$(attr /world_size "$CK")" = 2 ] || fail "world_size = $(attr /world_size "$CK")"
[ "$(attr /optimizer/generator/adam_t "$CK")" = 117 ] || fail "generator adam_t"
[ "$(attr /optimizer/discriminator/adam_t "$CK")" = 123 ] || fail "discriminator adam_t"
attr /created "$CK" | grep -Eq '^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"$' ||
    fail "created = $(attr /created "$CK")"
h5dump -a /config "$CK" | grep -q '"model": "small"' || fail "config JSON not readable"
h5dump -a /generator/layers "$CK" | grep -q '"op": "image", "map": "y"' ||
    fail "/generator has no layer table"
[ "$(attr /ema/generator/decay "$CK")" = 0.999 ] || fail "ema decay = $(attr /ema/generator/decay "$CK")"
h5dump -H -p -d /ema/generator/dense0.kernel "$CK" | grep -q "CHECKSUM FLETCHER32" ||
    fail "/ema/generator/dense0.kernel has no Fletcher-32 checksum"
ok "attribute values: format, version 1, model, step, seed, world_size, adam_t, created, config, ema decay"
ok "/generator has its layer table (attribute layers)"

# Every dataset of the model (parameters and both Adam moments): float32, natural shape.
grep -q '^/generator/dense0.kernel 150, ' "$TMP/expected.txt" || fail "expected.txt lacks dense0.kernel"
n=0
while read -r path dims; do
    h5dump -H -d "$path" "$CK" >"$TMP/d.txt" 2>&1 || { cat "$TMP/d.txt"; fail "h5dump -d $path"; }
    grep -q 'DATATYPE  H5T_IEEE_F32LE' "$TMP/d.txt" || { cat "$TMP/d.txt"; fail "$path is not float32"; }
    grep -qF "SIMPLE { ( $dims ) / ( $dims ) }" "$TMP/d.txt" ||
        { cat "$TMP/d.txt"; fail "$path: shape is not ( $dims )"; }
    n=$((n + 1))
done <"$TMP/expected.txt"
[ "$n" -ge 24 ] || fail "only $n datasets checked"
# ...and nothing else in the tensor groups (h5dump -H lists one DATASET line per dataset).
total=$(grep -c 'DATASET "' "$TMP/ck.txt")
[ "$total" = "$n" ] || fail "h5dump lists $total datasets, the model has $n"
ok "$n datasets (params, adam m, adam v, EMA of G) float32 with the model's shapes, e.g. $(head -1 "$TMP/expected.txt")"

# ---- sample file ----------------------------------------------------------------------------
h5dump -H "$SM" >"$TMP/sm.txt" 2>&1 || { cat "$TMP/sm.txt"; fail "h5dump -H $SM"; }
for a in step model seed; do
    grep -q "ATTRIBUTE \"$a\"" "$TMP/sm.txt" || fail "sample attribute $a missing"
done
h5dump -H -d /samples "$SM" >"$TMP/s.txt"
grep -q 'DATATYPE  H5T_IEEE_F32LE' "$TMP/s.txt" || fail "/samples is not float32"
grep -qF 'SIMPLE { ( 9, 28, 28 ) / ( 9, 28, 28 ) }' "$TMP/s.txt" || { cat "$TMP/s.txt"; fail "/samples shape"; }
h5dump -H -d /labels "$SM" >"$TMP/l.txt"
grep -q 'DATATYPE  H5T_STD_I32LE' "$TMP/l.txt" && grep -qF '( 9 ) / ( 9 )' "$TMP/l.txt" ||
    { cat "$TMP/l.txt"; fail "/labels"; }
[ "$(attr /step "$SM")" = 3 ] && [ "$(attr /model "$SM")" = '"small"' ] && [ "$(attr /seed "$SM")" = 42 ] ||
    fail "sample attributes step/model/seed"
ok "sample file: /samples float32 [9, 28, 28], /labels int32 [9], step/model/seed"

# ---- h5py, when installed (not part of CI's package list) ----------------------------------
PY=
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import h5py' 2>/dev/null; then PY=$py; break; fi
done
if [ -n "$PY" ]; then
    "$PY" - "$CK" "$SM" "$TMP/expected.txt" <<'EOF' || fail "h5py check"
import json, sys, h5py, numpy as np
ck, sm, exp = sys.argv[1:4]
with h5py.File(ck, "r") as f:
    a = f.attrs
    assert a["format"] == "chargan-checkpoint", a["format"]
    assert int(a["format_version"]) == 1 and int(a["step"]) == 3 and a["model"] == "small"
    assert isinstance(a["config"], str) and '"batch": 4' in a["config"]
    for line in open(exp):
        path, dims = line.split(" ", 1)
        d = f[path]
        assert d.dtype == np.float32, (path, d.dtype)
        assert d.shape == tuple(int(x) for x in dims.split(",")), (path, d.shape, dims)
        assert np.all(np.isfinite(d[()]))
    assert int(f["optimizer/generator"].attrs["adam_t"]) == 117
    # the layer table names every generator tensor, and nothing else
    layers = json.loads(f["generator"].attrs["layers"])
    assert layers[-1] == {"op": "image", "map": "y", "shape": [1, 28, 28]}, layers[-1]
    named = [n for layer in layers[:-1] for n in layer["tensors"].values()]
    assert sorted(named) == sorted(f["generator"].keys()), named
    # creation order = model order
    assert list(f["generator"].keys())[0] in ("dense0.bias", "dense0.kernel")
with h5py.File(sm, "r") as f:
    x = f["samples"][()]
    assert x.shape == (9, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert f["labels"].dtype == np.int32 and f["labels"].shape == (9,)
    assert int(f.attrs["step"]) == 3 and f.attrs["model"] == "small" and int(f.attrs["seed"]) == 42
print("h5py: ok")
EOF
    ok "h5py reads both files (strings as str, float32 shapes, samples in [0,1])"
else
    echo "note: h5py not installed; h5py check skipped"
fi

# ---- chargan info ---------------------------------------------------------------------------
[ -x "$BIN" ] || fail "chargan binary $BIN not built"
"$BIN" info "$CK" >"$TMP/info.out" 2>"$TMP/info.err" || { cat "$TMP/info.out" "$TMP/info.err"; fail "info $CK"; }
for p in "chargan-checkpoint (version 1)" "model:         small" "step:          3" \
         "seed:          42" "world size:    2" "global batch:  4" "created:" "config:" \
         "dense0.kernel" "generator:" "discriminator:" "valid:         yes"; do
    grep -qF "$p" "$TMP/info.out" || { cat "$TMP/info.out"; fail "info output lacks '$p'"; }
done
grep -q '^  dense0.kernel  *\[150, ' "$TMP/info.out" || fail "info: dense0.kernel shape"
ok "chargan info on a checkpoint: $(grep -c '^  [a-z]' "$TMP/info.out") tensor lines, valid"

"$BIN" info "$SM" >"$TMP/info.out" 2>"$TMP/info.err" || { cat "$TMP/info.out" "$TMP/info.err"; fail "info $SM"; }
for p in "chargan-samples" "9 images [9, 28, 28]" "0 outside [0,1]" "labels:        present"; do
    grep -qF "$p" "$TMP/info.out" || { cat "$TMP/info.out"; fail "info output lacks '$p'"; }
done
ok "chargan info on a sample file"

# Refusals: exit 1, one error line naming the file and the problem.
info_refused() {
    local what=$1 file=$2
    shift 2
    "$BIN" info "$file" >"$TMP/r.out" 2>"$TMP/r.err"
    echo $? >"$TMP/r.rc"
    [ "$(cat "$TMP/r.rc")" = 1 ] || { cat "$TMP/r.err"; fail "$what: exit $(cat "$TMP/r.rc"), expected 1"; }
    expect_error "$TMP/r.rc" "$TMP/r.err" "info refuses $what" "$file" "$@"
}
info_refused "a foreign HDF5 file" "$TMP/foreign.h5" "not a chargan"
head -c 5000 /dev/urandom >"$TMP/garbage.h5"
info_refused "garbage" "$TMP/garbage.h5" "not an HDF5 file"
head -c $(( $(stat -c %s "$CK") / 2 )) "$CK" >"$TMP/half.h5"
info_refused "a truncated checkpoint" "$TMP/half.h5" "truncated or damaged"
: >"$TMP/empty.h5"
info_refused "an empty file" "$TMP/empty.h5" "empty file"
info_refused "a missing file" "$TMP/nope.h5" "No such file"
"$BIN" info >/dev/null 2>"$TMP/r.err"
[ $? = 2 ] || fail "info without a file: expected exit 2"
ok "info without a file: usage, exit 2"
echo "test_ckpt_h5dump: OK"
