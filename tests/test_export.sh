# chargan export: the generator of every preset (and deep unconditional) as an ONNX model that
# ONNX's own checker accepts and onnxruntime-node runs to chargan sample's images (within
# 1e-4) from the noise web/chargan.js draws with the streams of the --meta JSON, which equals
# the model's chargan.json; --no-ema exports the raw weights; bad input gets one error line
# and leaves a good --out as it was.
# Needs /usr/bin/python3 with onnx, h5py and numpy (Debian: python3-onnx python3-h5py
# python3-numpy), node and web/node_modules (cd web && npm ci); skips (77) without them.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
PY=/usr/bin/python3
TOL=1e-4

# A build without ONNX support refuses with one line saying so; nothing more to test then.
"$BIN" export --checkpoint "$TMP/none.h5" --out "$TMP/none.onnx" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
if grep -q "has no ONNX export" "$TMP/err"; then
    expect_error "$TMP/rc" "$TMP/err" "export in a build without ONNX" "no ONNX export"
    echo "SKIP: this chargan was built without ONNX export (see cmake's output)"
    exit 77
fi

# The tiny checkpoints: NAME MODEL [train flags...]. Two steps at a large learning rate for G
# move every weight of it (batch norm's and conditional batch norm's tables too) well away
# from its initial value, so a wrongly exported tensor shows in the images.
PRESETS=(seed small dcgan cdcgan deep deep_uncond)
train() {
    local name=$1 model=$2
    shift 2
    "$BIN" train --model "$model" --steps 2 --batch 8 --data "$DATA" --split bymerge-test \
        --limit 512 --lr-g 0.005 --log-every 0 --out "$TMP/$name" "$@" >"$TMP/$name.train" 2>&1 ||
        { cat "$TMP/$name.train"; fail "train $name"; }
}
for p in seed small dcgan cdcgan deep; do
    train "$p" "$p"
done
train deep_uncond deep --unconditional
ckpt() { echo "$TMP/$1/checkpoints/step-00000002.h5"; }

# Export every one (EMA where the preset keeps one), and raw weights of those with an EMA.
EMA_PRESETS=()
for p in "${PRESETS[@]}"; do
    "$BIN" export --checkpoint "$(ckpt "$p")" --out "$TMP/$p.onnx" --meta "$TMP/$p.json" \
        >"$TMP/$p.export" 2>&1 || { cat "$TMP/$p.export"; fail "export $p"; }
    ok "$(cat "$TMP/$p.export")"
    grep -q '"generator": "ema"' "$TMP/$p.json" || continue
    EMA_PRESETS+=("$p")
    "$BIN" export --checkpoint "$(ckpt "$p")" --out "$TMP/$p.raw.onnx" --meta "$TMP/$p.raw.json" \
        --no-ema >"$TMP/$p.export" 2>&1 || { cat "$TMP/$p.export"; fail "export --no-ema $p"; }
    ! cmp -s "$TMP/$p.onnx" "$TMP/$p.raw.onnx" || fail "$p: --no-ema export equals the EMA one"
    grep -q '"generator": "raw"' "$TMP/$p.raw.json" || fail "$p: --no-ema JSON does not say raw"
done
[ ${#EMA_PRESETS[@]} -ge 3 ] || fail "expected dcgan, cdcgan and deep to keep an EMA"
ok "--no-ema exports differ from the EMA ones (${EMA_PRESETS[*]})"

# ---- bad input: one error line, non-zero exit, a good --out untouched, no temporary left ----
cp "$TMP/seed.onnx" "$TMP/good.onnx"
cp "$TMP/good.onnx" "$TMP/good.copy"
bad() {
    local what=$1 in=$2 out=$3
    shift 3
    "$BIN" export --checkpoint "$in" --out "$out" >"$TMP/bad.out" 2>"$TMP/bad.err"
    echo $? >"$TMP/bad.rc"
    expect_error "$TMP/bad.rc" "$TMP/bad.err" "$what" "$@"
    cmp -s "$TMP/good.onnx" "$TMP/good.copy" || fail "$what: the existing good --out changed"
    [ ! -e "$out.tmp" ] || fail "$what: left $out.tmp behind"
}
bad "missing checkpoint" "$TMP/nope.h5" "$TMP/good.onnx" "$TMP/nope.h5"
echo "not an HDF5 file" >"$TMP/junk.h5"
bad "not HDF5" "$TMP/junk.h5" "$TMP/good.onnx" "$TMP/junk.h5"
touch "$TMP/afile"
bad "unwritable --out (parent is a file)" "$(ckpt seed)" "$TMP/afile/x.onnx" "$TMP/afile/x.onnx"
mkdir "$TMP/adir"
bad "unwritable --out (a directory)" "$(ckpt seed)" "$TMP/adir" "$TMP/adir"
"$BIN" export --checkpoint "$(ckpt seed)" >/dev/null 2>"$TMP/bad.err"
echo $? >"$TMP/bad.rc"
expect_error "$TMP/bad.rc" "$TMP/bad.err" "no --out" "--out"

# ---- ONNX's checker, the metadata and the graph's interface ---------------------------------
if ! "$PY" -c 'import onnx, h5py, numpy' 2>/dev/null; then
    echo "SKIP: $PY lacks onnx, h5py or numpy (Debian: python3-onnx python3-h5py python3-numpy)"
    exit 77
fi
models=()
for p in "${PRESETS[@]}"; do models+=("$TMP/$p.onnx" "$TMP/$p.json"); done
for p in "${EMA_PRESETS[@]}"; do models+=("$TMP/$p.raw.onnx" "$TMP/$p.raw.json"); done
"$PY" - "${models[@]}" <<'EOF' || fail "ONNX checker / metadata"
import json, sys
import onnx

args = sys.argv[1:]
for path, meta_path in zip(args[::2], args[1::2]):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    props = {p.key: p.value for p in m.metadata_props}
    meta = json.load(open(meta_path))
    assert json.loads(props["chargan.json"]) == meta, f"{path}: chargan.json != {meta_path}"
    assert m.ir_version == 8 and [(o.domain, o.version) for o in m.opset_import] == [("", 13)]
    assert m.producer_name == "chargan" and m.producer_version == meta["chargan_version"]
    expect = {"chargan.classes": meta["classes"], "chargan.noise_dim": str(meta["noise_dim"]),
              "chargan.preset": meta["preset"], "chargan.step": str(meta["step"]),
              "chargan.version": meta["chargan_version"],
              "chargan.conditional": "true" if meta["conditional"] else "false",
              "chargan.generator": meta["generator"]}
    for k, v in expect.items():
        assert props[k] == v, f"{path}: {k} = {props[k]!r}, expected {v!r}"
    inputs = {i.name: i for i in m.graph.input}
    assert set(inputs) == ({"z", "label"} if meta["conditional"] else {"z"}), inputs.keys()
    z = [d.dim_param or d.dim_value for d in inputs["z"].type.tensor_type.shape.dim]
    out = [d.dim_param or d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert z == ["N", meta["noise_dim"]] and out == ["N", 1, 28, 28], (z, out)
    assert m.graph.output[0].name == "image"
    assert meta["format"] == "chargan-export" and meta["format_version"] == 1
    assert len(meta["classes"]) == meta["n_classes"]
    if meta["conditional"]:
        assert meta["char_class"]["A"] == meta["classes"].index("A")
        assert meta["char_class"]["c"] == meta["classes"].index("C")  # merged lowercase
    assert meta["layout"] == {"glyph": 28, "advance": 20, "gap": 14, "margin": 4, "scale": 2}
    print(f"ok: {path.rsplit('/', 1)[1]}: onnx.checker (full_check) passes, metadata = --meta")
EOF

# ---- onnxruntime-node against chargan sample --------------------------------------------------
if [ ! -d "$SRC/web/node_modules/onnxruntime-node" ] || ! command -v node >/dev/null; then
    echo "SKIP: onnxruntime-node not installed (cd web && npm ci)"
    exit 77
fi
compare() { # NAME MODEL META SAMPLE-FLAGS...
    local name=$1 model=$2 meta=$3
    shift 3
    "$BIN" sample --checkpoint "$(ckpt "${name%.raw}")" --seed 7 --n 16 \
        --out "$TMP/$name.samples.h5" "$@" >/dev/null 2>"$TMP/err" || { cat "$TMP/err"; fail "sample $name"; }
    node --no-warnings "$SRC/tests/export_run.mjs" "$model" "$meta" 7 16 "$TMP/$name.f32" \
        2>"$TMP/err" || { cat "$TMP/err"; fail "onnxruntime-node on $name"; }
    "$PY" - "$TMP/$name.samples.h5" "$TMP/$name.f32" "$name" "$TOL" <<'EOF' || fail "$name: onnxruntime-node differs from chargan sample"
import sys
import h5py, numpy as np
ref = h5py.File(sys.argv[1], "r")["samples"][:].reshape(16, 28, 28)
got = np.fromfile(sys.argv[2], dtype=np.float32).reshape(16, 28, 28)
d = float(np.abs(ref.astype(np.float64) - got).max())
print(f"{sys.argv[3]}: max |chargan sample - onnxruntime-node| = {d:.3g} "
      f"(images in [{got.min():.3f}, {got.max():.3f}])")
tol = float(sys.argv[4])  # tanh may round to -1 - ulp: [0, 1] within tol
sys.exit(0 if d <= tol and got.min() >= -tol and got.max() <= 1 + tol else 1)
EOF
}
for p in "${PRESETS[@]}"; do
    compare "$p" "$TMP/$p.onnx" "$TMP/$p.json"
done
for p in "${EMA_PRESETS[@]}"; do
    compare "$p.raw" "$TMP/$p.raw.onnx" "$TMP/$p.raw.json" --no-ema
done
ok "every export runs in onnxruntime-node to chargan sample's images within $TOL"
