# `chargan write --style-from`: a conditional VAE encodes the sample (data:INDEX of --data, or a
# PNG of any size and polarity) with its class (the data set's, --style-char, or the
# classifier's) and writes every glyph with that coding; the sample's and the glyphs' stroke
# and slant are printed. The same sample drawn dark on white, light on black, small or large
# gives the same coding (the same line); bad samples and models fail with one error line.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
BASE=(--data "$DATA" --split bymerge-test --limit 4096 --log-every 0 --steps 30)
mpirun_np 2 "$BIN" train "${BASE[@]}" --model vae --conditional --out "$TMP/c" >"$TMP/c.log" 2>&1 ||
    { cat "$TMP/c.log"; fail "training a conditional vae"; }
mpirun_np 2 "$BIN" train "${BASE[@]}" --model vae --out "$TMP/u" >"$TMP/u.log" 2>&1 ||
    { cat "$TMP/u.log"; fail "training a vae"; }
C=$TMP/c/checkpoints/step-00000030.h5
U=$TMP/u/checkpoints/step-00000030.h5
W=("$BIN" write --checkpoint "$C" --text "Hi 7")

# 1. data:INDEX: the data set's label; the sample as the model saw it
"${W[@]}" --style-from data:12 --data "$DATA" --split bymerge-test --style-png "$TMP/src.png" \
    --out "$TMP/d.png" >"$TMP/d.out" 2>&1 || { cat "$TMP/d.out"; fail "write --style-from data:12"; }
grep -q "^style: data:12, '.' (the data set's label): stroke [0-9.]* px, slant" "$TMP/d.out" ||
    fail "no style line: $(cat "$TMP/d.out")"
grep -q "^style: the 3 glyphs: stroke" "$TMP/d.out" || fail "no glyph statistics: $(cat "$TMP/d.out")"
[ -s "$TMP/src.png" ] && [ -s "$TMP/d.png" ] || fail "no pictures"
ch=$(sed -n "s/^style: data:12, '\(.\)'.*/\1/p" "$TMP/d.out")
"${W[@]}" --style-from data:13 --data "$DATA" --split bymerge-test --out "$TMP/d13.png" >/dev/null 2>&1 ||
    fail "write --style-from data:13"
cmp -s "$TMP/d.png" "$TMP/d13.png" && fail "two samples gave the same line"
ok "data:12 ('$ch'): $(grep 'glyphs' "$TMP/d.out")"

# 2. PNGs of the sample (the picture written above, 112 x 112 dark on white), redrawn light on
#    black and at half and double size: the reader frames each alike, the lines agree.
python3 - "$TMP/src.png" "$TMP" <<'PY' || fail "making the test PNGs"
import struct, sys, zlib
def read(path):  # 8-bit grey, no interlace: what chargan's PNG writer makes
    d = open(path, "rb").read()
    w, h = struct.unpack(">II", d[16:24])
    i, raw = 8, b""
    while i < len(d):
        n, kind = struct.unpack(">I4s", d[i:i + 8])
        if kind == b"IDAT":
            raw += d[i + 8:i + 8 + n]
        i += 12 + n
    raw, rows, prev = zlib.decompress(raw), [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            p = a + b - c
            pr = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            line[x] = (line[x] + [0, a, b, (a + b) // 2, pr][f]) & 255
        rows.append(bytes(line)); prev = line
    return w, h, rows
def write(path, w, h, rows):
    def chunk(k, b): return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b))
    raw = b"".join(b"\0" + r for r in rows)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
w, h, rows = read(sys.argv[1])
out = sys.argv[2]
write(out + "/white.png", w, h, rows)
write(out + "/black.png", w, h, [bytes(255 - v for v in r) for r in rows])
write(out + "/half.png", w // 2, h // 2, [bytes(r[2 * x] for x in range(w // 2)) for r in rows[::2]])
write(out + "/double.png", 2 * w, 2 * h, [bytes(v for v in r for _ in (0, 1)) for r in rows for _ in (0, 1)])
open(out + "/not.png", "w").write("not a picture\n")
PY
stats() { sed -n "s/^style: .*: stroke \([0-9.]*\) px, slant \([-0-9.]*\) degrees$/\1 \2/p" "$1"; }
for v in white black half double; do
    "${W[@]}" --style-from "$TMP/$v.png" --style-char "$ch" --out "$TMP/$v-line.png" >"$TMP/$v.out" 2>&1 ||
        { cat "$TMP/$v.out"; fail "write --style-from $v.png"; }
    grep -q "^style: $TMP/$v.png, '$ch' (--style-char)" "$TMP/$v.out" || fail "$v: $(cat "$TMP/$v.out")"
done
cmp -s "$TMP/white-line.png" "$TMP/black-line.png" ||
    fail "dark on white and light on black gave different lines"
read -r t1 s1 <<<"$(stats "$TMP/white.out")"
for v in half double; do
    read -r t s <<<"$(stats "$TMP/$v.out")"
    awk -v a="$t1" -v b="$t" -v c="$s1" -v d="$s" 'BEGIN { exit !(a - b < 0.4 && b - a < 0.4 && c - d < 3 && d - c < 3) }' ||
        fail "$v: stroke $t px, slant $s degrees; full size $t1 px, $s1 degrees"
done
ok "PNG samples: both polarities give the same line; half and double size the same style (stroke $t1 px, slant $s1 degrees)"

# 3. refusals, one error line each
bad() { # WHAT PATTERN ARGS...: write fails with one error line containing PATTERN
    local what=$1 pat=$2
    shift 2
    "$BIN" write "$@" --text "Hi" --out "$TMP/bad.png" >"$TMP/bad.out" 2>"$TMP/bad.err"
    echo $? >"$TMP/bad.rc"
    expect_error "$TMP/bad.rc" "$TMP/bad.err" "$what" "$pat"
}
bad "not a PNG" "$TMP/not.png" --checkpoint "$C" --style-from "$TMP/not.png" --style-char A
bad "missing file" "$TMP/none.png" --checkpoint "$C" --style-from "$TMP/none.png" --style-char A
bad "index past the end" "has 116323 images" --checkpoint "$C" --style-from data:116323 --data "$DATA" --split bymerge-test
bad "bad index" "data:x" --checkpoint "$C" --style-from data:x --data "$DATA" --split bymerge-test
bad "unknown --style-char" "--style-char '~'" --checkpoint "$C" --style-from "$TMP/white.png" --style-char '~'
bad "no classifier" "$TMP/none.h5" --checkpoint "$C" --style-from "$TMP/white.png" --classifier "$TMP/none.h5"
mpirun_np 2 "$BIN" train --data "$DATA" --split bymerge-test --limit 512 --log-every 0 --steps 2 \
    --model small --conditional --out "$TMP/g" >"$TMP/g.log" 2>&1 || { cat "$TMP/g.log"; fail "training a GAN"; }
bad "a GAN" "needs a conditional VAE" --checkpoint "$TMP/g/checkpoints/step-00000002.h5" --style-from data:1 --data "$DATA" --split bymerge-test
bad "an unconditional VAE" "not a conditional model" --checkpoint "$U" --style-from data:1 --data "$DATA" --split bymerge-test
[ ! -e "$TMP/bad.png" ] || fail "a refused write left $TMP/bad.png"
ok "bad samples refused"
