# tools/chargan_torch.py rebuilds a generator from a checkpoint's `layers` attribute and must
# draw the images `chargan sample` draws: tiny checkpoints of seed, dcgan (plain and
# conditional) and deep, the same seed on both sides, max |difference| <= 1e-5. A copy of the
# deep checkpoint with every generator tensor perturbed (so that the conditional batch norm's
# class affines and the running averages are far from their starting values) must agree too.
# Also: ema=False differs from ema=True where there is an EMA (and matches --no-ema), and a
# checkpoint without `layers` (as older chargans wrote) or a missing file is one clear error.
# Skips (exit 77) without Debian's python3-torch, python3-h5py and python3-numpy.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
PY=/usr/bin/python3
TOOL=$SRC/tools/chargan_torch.py
for m in torch h5py numpy; do
    if ! "$PY" -c "import $m" 2>/dev/null; then
        echo "SKIP: $PY cannot import $m (Debian: python3-torch python3-h5py python3-numpy)"
        exit 77
    fi
done
make_tmpdir
DATA=$(emnist_dir "$SRC") || exit 1
TOL=1e-5

train() { # NAME ARGS...: a 2-step checkpoint in $TMP/NAME
    local name=$1
    shift
    "$BIN" train --data "$DATA" --split bymerge-test --limit 512 --steps 2 --batch 8 \
        --log-every 0 --out "$TMP/$name" "$@" >"$TMP/$name.log" 2>&1 ||
        { cat "$TMP/$name.log"; fail "training $name"; }
}
ck() { echo "$TMP/$1/checkpoints/step-00000002.h5"; }

# compare CKPT LABEL [--no-ema]: chargan sample and the loader, seed 7, 16 images.
compare() {
    local c=$1 label=$2
    shift 2
    "$BIN" sample --checkpoint "$c" --seed 7 --n 16 --out "$TMP/$label.h5" "$@" \
        >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "chargan sample ($label)"; }
    "$PY" "$TOOL" "$c" --seed 7 --n 16 --out "$TMP/$label.npy" "$@" >"$TMP/out" 2>&1 ||
        { cat "$TMP/out"; fail "chargan_torch.py ($label)"; }
    "$PY" - "$TMP/$label.h5" "$TMP/$label.npy" "$label" "$TOL" <<'EOF' || fail "$label differs"
import sys, h5py, numpy as np
want = h5py.File(sys.argv[1], "r")["samples"][()]
got = np.load(sys.argv[2])
assert got.shape == want.shape == (16, 28, 28) and got.dtype == np.float32, (got.shape, want.shape)
d = float(np.abs(got - want).max())
print(f"{sys.argv[3]}: max |difference| {d:.3g} (images span {want.min():.4f}..{want.max():.4f})")
assert d <= float(sys.argv[4]), d
EOF
}

train seed --model seed
train dcgan --model dcgan
train cdcgan --model dcgan --conditional
train deep --model deep
for p in seed dcgan cdcgan deep; do
    compare "$(ck $p)" "$p"
done
compare "$(ck deep)" deep-raw --no-ema
ok "the loader draws chargan sample's images (EMA and raw weights) within $TOL"

# Every generator tensor perturbed (running variances kept positive), written back with h5py
# (chargan verifies the Fletcher-32 checksums h5py recomputes).
cp "$(ck deep)" "$TMP/scrambled.h5"
"$PY" - "$TMP/scrambled.h5" <<'EOF' || fail "perturbing the deep checkpoint"
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1], "r+") as f:
    for g in ("generator", "ema/generator"):
        for name, d in f[g].items():
            x = d[()]
            if name.endswith("running_var"):
                d[...] = rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
            else:
                noise = rng.normal(0, 0.3 if "bn" in name else 0.02, x.shape)
                d[...] = (x + noise).astype(np.float32)
EOF
compare "$TMP/scrambled.h5" deep-perturbed
ok "perturbed weights, class affines and running averages: the same images"

# ema=False and ema=True: different weights, different images.
"$PY" - "$SRC/tools" "$(ck dcgan)" "$(ck seed)" <<'EOF' || fail "ema=False vs ema=True"
import sys, h5py, torch
sys.path.insert(0, sys.argv[1])
from chargan_torch import load_generator
for path in sys.argv[2:]:
    has_ema = "ema/generator" in h5py.File(path, "r")
    a, b = load_generator(path), load_generator(path, ema=False)
    assert not a.training and all(p.dtype == torch.float32 for p in a.parameters())
    z = torch.randn(4, a.noise_dim)
    with torch.no_grad():
        ya, yb = a(z), b(z)
    assert ya.shape == (4, 1, 28, 28) and 0 <= ya.min() and ya.max() <= 1
    d = float((ya - yb).abs().max())
    print(f"{path.split('/')[-3]}: EMA {'present' if has_ema else 'absent'}, "
          f"max |ema - raw| {d:.3g}")
    assert (d > 0) == has_ema, d
EOF
ok "ema=False differs from ema=True with an EMA, equals it without"

# A checkpoint without `layers` (as chargans before it wrote): chargan still reads it, the
# loader says why it cannot.
cp "$(ck deep)" "$TMP/old.h5"
"$PY" -c 'import sys, h5py; del h5py.File(sys.argv[1], "r+")["generator"].attrs["layers"]' \
    "$TMP/old.h5" || fail "removing the layers attribute"
"$BIN" info "$TMP/old.h5" >"$TMP/out" 2>&1 ||
    { cat "$TMP/out"; fail "chargan info of an old checkpoint"; }
"$BIN" sample --checkpoint "$TMP/old.h5" --n 4 --out "$TMP/old-samples.h5" >"$TMP/out" 2>&1 ||
    { cat "$TMP/out"; fail "chargan sample of an old checkpoint"; }
err_line() { # WHAT PATTERN CKPT: the loader fails with one error line containing PATTERN
    "$PY" "$TOOL" "$3" --out "$TMP/x.npy" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ "$rc" != 0 ] || fail "$1: exit status 0"
    [ "$(wc -l <"$TMP/err")" = 1 ] || { cat "$TMP/err"; fail "$1: not one line on stderr"; }
    grep -q "^chargan_torch: error: $3: .*$2" "$TMP/err" || { cat "$TMP/err"; fail "$1: message"; }
    [ ! -e "$TMP/x.npy" ] || fail "$1: an output file was written"
    ok "$1: $(cat "$TMP/err")"
}
err_line "checkpoint without layers" "attribute 'layers'" "$TMP/old.h5"
err_line "missing file" "no such file" "$TMP/nothing.h5"
