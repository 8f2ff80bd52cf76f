# Drawing from VAE checkpoints: `chargan sample` (with --char for a conditional VAE), `write`
# and `interpolate` decode codings z ~ N(0, 1) chosen by --seed; unknown characters and
# GAN-only commands fail with one error line.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
BASE=(--data "$DATA" --split bymerge-test --limit 4096 --log-every 0 --steps 20)

mpirun_np 2 "$BIN" train "${BASE[@]}" --model vae --out "$TMP/u" >"$TMP/u.log" 2>&1 ||
    { cat "$TMP/u.log"; fail "training vae"; }
mpirun_np 2 "$BIN" train "${BASE[@]}" --model vae --conditional --out "$TMP/c" >"$TMP/c.log" 2>&1 ||
    { cat "$TMP/c.log"; fail "training a conditional vae"; }
U=$TMP/u/checkpoints/step-00000020.h5
C=$TMP/c/checkpoints/step-00000020.h5
ls "$TMP/u/samples/step-00000020.png" >/dev/null || fail "the run drew no sample picture"
ok "the runs wrote their sample pictures"

run() { # NAME CMD...: must succeed
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>&1 || { cat "$TMP/$name.out"; fail "$name"; }
}
run s1 "$BIN" sample --checkpoint "$U" --n 100 --seed 3 --out "$TMP/s1.h5" --png "$TMP/s1.png"
run s2 "$BIN" sample --checkpoint "$U" --n 100 --seed 3 --out "$TMP/s2.h5" --png "$TMP/s2.png"
run s3 "$BIN" sample --checkpoint "$U" --n 100 --seed 4 --out "$TMP/s3.h5" --png "$TMP/s3.png"
"$BIN" info "$TMP/s1.h5" | grep -q "samples: *100" || { "$BIN" info "$TMP/s1.h5"; fail "sample file"; }
cmp -s "$TMP/s1.png" "$TMP/s2.png" || fail "the same --seed drew different samples"
cmp -s "$TMP/s1.png" "$TMP/s3.png" && fail "another --seed drew the same samples"
ok "sample: 100 images of a vae; --seed chooses the codings"

run cs "$BIN" sample --checkpoint "$C" --n 81 --char A --out "$TMP/cs.h5" --png "$TMP/cs.png"
run ca "$BIN" sample --checkpoint "$C" --n 81 --out "$TMP/ca.h5" --png "$TMP/ca.png"
cmp -s "$TMP/cs.png" "$TMP/ca.png" && fail "--char A drew what every class draws"
ok "sample --char A of a conditional vae"
"$BIN" sample --checkpoint "$C" --n 10 --char '~' --out "$TMP/x.h5" >"$TMP/x.out" 2>"$TMP/x.err"
echo $? >"$TMP/x.rc"
expect_error "$TMP/x.rc" "$TMP/x.err" "sample: a character without a class" "no class for '~'"
"$BIN" sample --checkpoint "$U" --n 10 --char A --out "$TMP/y.h5" >"$TMP/y.out" 2>"$TMP/y.err"
echo $? >"$TMP/y.rc"
expect_error "$TMP/y.rc" "$TMP/y.err" "sample --char on an unconditional vae" "conditional"

run w1 "$BIN" write --checkpoint "$C" --text "Hello VAE" --seed 5 --out "$TMP/w1.png"
run w2 "$BIN" write --checkpoint "$C" --text "Hello VAE" --seed 6 --out "$TMP/w2.png"
[ -s "$TMP/w1.png" ] && ! cmp -s "$TMP/w1.png" "$TMP/w2.png" ||
    fail "write: the style does not follow --seed"
ok "write: a line in one style per --seed"
"$BIN" write --checkpoint "$C" --text "a~b" --out "$TMP/w3.png" >"$TMP/w3.out" 2>"$TMP/w3.err"
echo $? >"$TMP/w3.rc"
expect_error "$TMP/w3.rc" "$TMP/w3.err" "write: a character without a class" '"~"'

run i1 "$BIN" interpolate --checkpoint "$C" --char AB --from 5 --to 6 --steps 7 --out "$TMP/walk"
"$BIN" info "$TMP/walk.h5" | grep -q "samples: *14" || fail "interpolate: 2 rows of 7 images expected"
[ -s "$TMP/walk.png" ] || fail "interpolate: no picture"
ok "interpolate: a straight walk between two codings, 2 rows of 7"
run i2 "$BIN" interpolate --checkpoint "$U" --steps 5 --out "$TMP/walku"
ok "interpolate on an unconditional vae"

if "$BIN" export --help >/dev/null 2>&1; then
    "$BIN" export --checkpoint "$U" --out "$TMP/u.onnx" >"$TMP/e.out" 2>"$TMP/e.err"
    echo $? >"$TMP/e.rc"
    grep -q "no ONNX export" "$TMP/e.err" ||
        expect_error "$TMP/e.rc" "$TMP/e.err" "export refuses a VAE checkpoint" "not of a GAN"
fi
echo "all VAE sampling tests passed"
