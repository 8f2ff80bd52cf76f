# `chargan interpolate` as a user runs it, on tiny checkpoints (a few steps of the small preset,
# conditional with an EMA and unconditional): the first and last images of every row are
# `chargan write`'s glyphs of the two seeds, also with --no-ema and --temperature (write's PNG
# holds 8-bit pixels: every one must be the rounding of a value within 1e-6 of the sample
# file's; an image's bits depend on its place in the batch, by about 1e-7, so exact equality
# is not asked); the middle differs from both ends; the walk reversed has the same ends
# (within 1e-6) and nearly the same middle; the sample file has the
# layout `chargan sample` writes (chargan info reads it) and the PNG the grid's size; bad
# input is one error line, and a failed run leaves earlier output as it was.
# Needs /usr/bin/python3 with h5py and numpy (Debian: python3-h5py python3-numpy); skips (77)
# without them. Called by ctest as: bash test_interpolate.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
PY=/usr/bin/python3
for m in h5py numpy; do
    if ! "$PY" -c "import $m" 2>/dev/null; then
        echo "SKIP: $PY cannot import $m (Debian: python3-h5py python3-numpy)"
        exit 77
    fi
done
make_tmpdir
EM=$(emnist_dir "$SRC") || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

"$BIN" interpolate --help >"$TMP/help" 2>&1 || fail "interpolate --help: exit status $?"
for w in --checkpoint --char --from --to --steps --out --no-ema --temperature slerp; do
    grep -q -- "$w" "$TMP/help" || fail "interpolate --help lacks $w"
done
"$BIN" --help | grep -q "^  interpolate " || fail "chargan --help does not list interpolate"
ok "--help"

for kind in uncond cond; do
    extra=
    [ $kind = cond ] && extra="--conditional --ema 0.999" # small has no EMA by default
    "$BIN" train --data "$EM" --split bymerge-test --limit 512 --model small --batch 8 \
        --steps 2 --log-every 0 --out "$TMP/run-$kind" $extra >"$TMP/out" 2>&1 ||
        { cat "$TMP/out"; fail "train $kind"; }
done
CK=$TMP/run-uncond/checkpoints/step-00000002.h5
CKC=$TMP/run-cond/checkpoints/step-00000002.h5
[ -f "$CK" ] && [ -f "$CKC" ] || fail "no checkpoints written"

# check.py ends H5 STEPS ROW ROWS PNG_A PNG_B: row ROW's first and last images are the
#   glyphs of write's PNGs (--scale 1: the glyph at (4, 4)) as write rounds them.
# check.py walk H5 STEPS ROWS SCALE CAPTIONS PNG [LABELS]: layout, attributes, PNG size, the
#   middle differs from both ends.
# check.py reversed H5 H5R STEPS: the same walk backwards: the same ends, close middles.
cat >"$TMP/check.py" <<'EOF'
import struct, sys, zlib
import h5py, numpy as np

def png_gray(path):
    """An 8-bit grey, non-interlaced PNG (what chargan writes) as an int array."""
    d = open(path, "rb").read()
    assert d[:8] == b"\x89PNG\r\n\x1a\n", path
    i, idat = 8, b""
    while i < len(d):
        n, = struct.unpack(">I", d[i:i + 4])
        t, c = d[i + 4:i + 8], d[i + 8:i + 8 + n]
        i += 12 + n
        if t == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", c)
            assert (depth, colour, interlace) == (8, 0, 0), (path, depth, colour, interlace)
        elif t == b"IDAT":
            idat += c
    raw, out, prev = zlib.decompress(idat), np.zeros((h, w), np.int64), [0] * w
    for y in range(h):
        f, row, cur = raw[y * (w + 1)], raw[y * (w + 1) + 1:(y + 1) * (w + 1)], [0] * w
        for x in range(w):
            a, b, c = (cur[x - 1] if x else 0), prev[x], (prev[x - 1] if x else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= min(abs(p - b), abs(p - c)) else b if abs(p - b) <= abs(p - c) else c
            cur[x] = (row[x] + [0, a, b, (a + b) // 2, paeth][f]) & 255
        out[y], prev = cur, cur
    return out

TOL = 1e-6

def write_mismatch(img, g):
    """Pixels of write's glyph g (8 bits: 255 - 255 v rounded) that no value within TOL of
    img's rounds to."""
    exact = 255.0 - 255.0 * np.clip(img.astype(np.float64), 0, 1)
    return int((np.abs(exact - g) > 0.5 + 255 * TOL + 1e-9).sum())

def samples(path):
    with h5py.File(path, "r") as f:
        return f["samples"][:], (f["labels"][:] if "labels" in f else None), dict(f.attrs)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "ends":
    s, _, _ = samples(args[0])
    steps, row, rows = int(args[1]), int(args[2]), int(args[3])
    assert s.shape == (rows * steps, 28, 28), s.shape
    for img, png in ((s[row * steps], args[4]), (s[row * steps + steps - 1], args[5])):
        g = png_gray(png)
        assert g.shape == (36, 36), (png, g.shape)
        bad = write_mismatch(img, g[4:32, 4:32])
        assert bad == 0, "%s: %d pixels differ from the walk's end" % (png, bad)
elif cmd == "walk":
    s, labels, attrs = samples(args[0])
    steps, rows, scale, captions = int(args[1]), int(args[2]), int(args[3]), args[4] == "1"
    assert s.shape == (rows * steps, 28, 28) and s.dtype == np.float32, (s.shape, s.dtype)
    assert s.min() >= 0 and s.max() <= 1, (s.min(), s.max())
    assert attrs["format"] in (b"chargan-samples", "chargan-samples"), attrs
    assert attrs["format_version"] == 1 and attrs["step"] == 2, attrs
    if len(args) > 6:
        want = [int(k) for k in args[6].split(",") for _ in range(steps)]
        assert labels is not None and list(labels) == want, (labels, want)
    else:
        assert labels is None, labels
    for r in range(rows):
        row = s[r * steps:(r + 1) * steps].astype(np.float64)
        for k in range(1, steps - 1):
            for end in (0, steps - 1):
                d = np.abs(row[k] - row[end]).max()
                assert d > 1e-4, "row %d: image %d equals image %d (%g)" % (r, k, end, d)
    fs = 1 if scale <= 1 else 2 if scale <= 3 else 3
    cap, tile, gap = (10 * fs if captions else 0), 28 * scale, scale + 1
    g = png_gray(args[5])
    want = (rows * (cap + tile + gap) + gap, steps * (tile + gap) + gap)
    assert g.shape == want, (g.shape, want)
elif cmd == "reversed":
    s, _, _ = samples(args[0])
    r, _, _ = samples(args[1])
    steps = int(args[2])
    d = [float(np.abs(s[k].astype(np.float64) - r[steps - 1 - k]).max()) for k in range(steps)]
    assert d[0] <= TOL and d[-1] <= TOL, "ends differ by %g, %g" % (d[0], d[-1])
    assert max(d) < 1e-5, "the walk backwards differs by %g" % max(d)
EOF
check() { "$PY" "$TMP/check.py" "$@" || fail "check.py $*"; }
wpng() { # NAME CHAR SEED [FLAGS...]: write's glyph of CHAR for SEED at --scale 1
    local name=$1 ch=$2 seed=$3
    shift 3
    "$BIN" write --checkpoint "$CKC" --text "$ch" --seed "$seed" --scale 1 \
        --out "$TMP/$name.png" "$@" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "write $name"; }
}

# conditional: two rows (A and b), seeds 3 to 8; ends are write's glyphs
"$BIN" interpolate --checkpoint "$CKC" --char Ab --from 3 --to 8 --steps 6 --out "$TMP/c" \
    >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "interpolate conditional"; }
grep -q "EMA generator" "$TMP/out" || { cat "$TMP/out"; fail "interpolate: not the EMA generator"; }
classes=$("$PY" -c "import h5py,sys; print(*h5py.File(sys.argv[1])['labels'][::6], sep=',')" "$TMP/c.h5")
check walk "$TMP/c.h5" 6 2 3 1 "$TMP/c.png" "$classes"
wpng A3 A 3 && wpng A8 A 8 && wpng b3 b 3 && wpng b8 b 8
check ends "$TMP/c.h5" 6 0 2 "$TMP/A3.png" "$TMP/A8.png"
check ends "$TMP/c.h5" 6 1 2 "$TMP/b3.png" "$TMP/b8.png"
ok "conditional: rows A and b (classes $classes), ends are write's glyphs of seeds 3 and 8"
for flags in "--no-ema" "--temperature 0.7" "--no-ema --temperature 1.3"; do
    # shellcheck disable=SC2086
    "$BIN" interpolate --checkpoint "$CKC" --char 7 --from 0 --to 5 --steps 3 --scale 1 \
        --out "$TMP/f" $flags >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "interpolate $flags"; }
    # shellcheck disable=SC2086
    wpng f0 7 0 $flags && wpng f5 7 5 $flags
    check ends "$TMP/f.h5" 3 0 1 "$TMP/f0.png" "$TMP/f5.png"
    check walk "$TMP/f.h5" 3 1 1 1 "$TMP/f.png" "$("$PY" -c "import h5py,sys; print(h5py.File(sys.argv[1])['labels'][0])" "$TMP/f.h5")"
done
ok "--no-ema and --temperature: ends are write's glyphs with the same flags"

# unconditional: one row, no labels, no captions; the walk backwards has the same ends
"$BIN" interpolate --checkpoint "$CK" --from 4 --to 9 --steps 5 --out "$TMP/u" >"$TMP/out" 2>&1 &&
    "$BIN" interpolate --checkpoint "$CK" --from 9 --to 4 --steps 5 --scale 2 --out "$TMP/r" \
        >>"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "interpolate unconditional"; }
check walk "$TMP/u.h5" 5 1 3 0 "$TMP/u.png"
check walk "$TMP/r.h5" 5 1 2 0 "$TMP/r.png"
check reversed "$TMP/u.h5" "$TMP/r.h5" 5
"$BIN" info "$TMP/u.h5" >"$TMP/info" 2>&1 && grep -qi "sample" "$TMP/info" ||
    { cat "$TMP/info"; fail "chargan info of the walk's sample file"; }
ok "unconditional: one row, reversed walk has the same ends, chargan info reads the file"

# bad input: one error line each, non-zero exit, earlier output untouched
sum_before=$(cat "$TMP/c.h5" "$TMP/c.png" | cksum)
bad() { # WHAT PATTERN ARGS...: interpolate ARGS fails with one line containing PATTERN
    local what=$1 pat=$2
    shift 2
    "$BIN" interpolate "$@" >/dev/null 2>"$TMP/err"
    echo $? >"$TMP/rc"
    expect_error "$TMP/rc" "$TMP/err" "$what" "$pat"
}
bad "missing checkpoint" "$TMP/none.h5" --checkpoint "$TMP/none.h5" --char A --out "$TMP/c"
bad "--steps 1" "--steps 1 is not in 2..100" --checkpoint "$CKC" --char A --steps 1 --out "$TMP/c"
bad "--steps 101" "--steps 101 is not in 2..100" --checkpoint "$CKC" --char A --steps 101 --out "$TMP/c"
bad "--steps x" "--steps" --checkpoint "$CKC" --char A --steps x --out "$TMP/c"
bad "--from -1" "--from -1 is below 0" --checkpoint "$CKC" --char A --from -1 --out "$TMP/c"
bad "no --out" "needs --checkpoint FILE and --out PREFIX" --checkpoint "$CKC" --char A
bad "--char on an unconditional model" "--char needs a conditional model" \
    --checkpoint "$CK" --char A --out "$TMP/c"
bad "unknown character" "no class for '~'" --checkpoint "$CKC" --char "A~" --out "$TMP/c"
bad "conditional model without --char" "--char" --checkpoint "$CKC" --out "$TMP/c"
bad "--char with a space" "no spaces" --checkpoint "$CKC" --char "A b" --out "$TMP/c"
bad "--temperature 0" "--temperature" --checkpoint "$CKC" --char A --temperature 0 --out "$TMP/c"
bad "a sample file as checkpoint" "$TMP/u.h5" --checkpoint "$TMP/u.h5" --out "$TMP/c"
[ "$(cat "$TMP/c.h5" "$TMP/c.png" | cksum)" = "$sum_before" ] || fail "a failed run changed c.h5 or c.png"
mkdir "$TMP/d.png"
bad "PNG path is a directory" "d.png" --checkpoint "$CKC" --char A --out "$TMP/d"
ls "$TMP"/*.tmp "$TMP"/.*.tmp 2>/dev/null && fail "temporary files left behind"
ok "bad input: one error line each; earlier output untouched, no temporary files"
