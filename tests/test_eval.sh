# `chargan classifier` and `chargan eval` as a user runs them: a tiny classifier (first 6000
# images of bymerge-test, 2 epochs), tiny GAN runs (a few steps, unconditional and
# conditional), the JSON of eval (fields, ranges, determinism, the real-vs-real floor, the
# floor left out without data), the EMA generator against --no-ema in eval, sample and write,
# train --exclude-heldout with --eval-every and --sample-every, and the one-line errors.
# Called by ctest as: bash test_eval.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$3
. "$SRC/tests/common.sh"
make_tmpdir
EM=$(emnist_dir "$SRC") || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# --help and usage errors
"$BIN" classifier --help >"$TMP/help" 2>&1 || fail "classifier --help: exit status $?"
grep -q -- "--epochs" "$TMP/help" && grep -q "held out" "$TMP/help" || fail "classifier --help"
"$BIN" eval --help >"$TMP/help" 2>&1 || fail "eval --help: exit status $?"
grep -q -- "--checkpoint" "$TMP/help" && grep -q "real_floor" "$TMP/help" &&
    grep -q "fid_reference" "$TMP/help" && grep -q -- "--temperature" "$TMP/help" || fail "eval --help"
"$BIN" classifier fit >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "unknown sub-command 'fit'" "$TMP/err" || fail "unknown sub-command"
"$BIN" eval >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q -- "--checkpoint FILE is required" "$TMP/err" || fail "eval without --checkpoint"
"$BIN" classifier train --epochs x >/dev/null 2>"$TMP/err"
[ $? = 2 ] || fail "--epochs x: exit status not 2"
ok "help and usage errors"

# a tiny classifier
"$BIN" classifier train --data "$EM" --split bymerge-test --limit 6000 --epochs 2 \
    --out "$TMP/clf.h5" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "classifier train"; }
acc=$(sed -n 's/^held-out accuracy: \([0-9.]*\) .*/\1/p' "$TMP/out")
[ -n "$acc" ] || { cat "$TMP/out"; fail "no held-out accuracy line"; }
awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' || fail "tiny classifier held-out accuracy $acc"
[ -s "$TMP/clf.h5" ] && [ ! -e "$TMP/.clf.h5.tmp" ] || fail "classifier file / temp file"
ok "classifier train: held-out accuracy $acc"
"$BIN" classifier test --classifier "$TMP/clf.h5" --data "$EM" --split bymerge-test \
    --limit 6000 >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "classifier test"; }
grep -q "^held-out accuracy: $acc " "$TMP/out" || { cat "$TMP/out"; fail "classifier test: accuracy differs from $acc"; }
ok "classifier test reproduces $acc"

# tiny GANs: a few steps of the small preset
for kind in uncond cond; do
    extra=
    [ $kind = cond ] && extra="--conditional --ema 0.999" # small has no EMA by default
    "$BIN" train --data "$EM" --split bymerge-test --limit 2000 --model small --batch 32 \
        --steps 3 --log-every 0 --out "$TMP/run-$kind" $extra >"$TMP/out" 2>&1 ||
        { cat "$TMP/out"; fail "train $kind"; }
done
CK=$(ls "$TMP"/run-uncond/checkpoints/step-*.h5 | tail -1)
CKC=$(ls "$TMP"/run-cond/checkpoints/step-*.h5 | tail -1)
[ -f "$CK" ] && [ -f "$CKC" ] || fail "no checkpoints written"

# eval: JSON fields and ranges
check_json() { # FILE COND(0/1) FLOOR(0/1)
    python3 - "$@" <<'EOF'
import json, math, sys
path, cond, floor = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
j = json.load(open(path))
g = j["generated"]
assert j["n"] == 400 and g["n"] == 400, j
assert g["fid"] > 0 and math.isfinite(g["fid"]), g
assert 0 < g["confidence"] <= 1, g
assert 1 <= g["classes_covered"] <= 47 and 0 <= g["classes_covered_rel"] <= 47, g
assert j["conditional"] == cond, j
if cond:
    assert 0 <= g["class_match"] <= 1, g
    u = j["uniform_classes"]  # every class asked equally often: other samples, same fields
    assert u["n"] == 400 and 0 <= u["class_match"] <= 1 and 1 <= u["classes_covered"] <= 47, u
    assert u != g, (u, g)
else:
    assert g["class_match"] is None and "uniform_classes" not in j, g
if floor:
    f = j["real_floor"]
    assert f["n"] == 400 and 0 < f["fid"] < g["fid"], (f, g)
    assert f["classes_covered"] > 10 and f["classes_covered_rel"] > 10, f
    assert 0.5 < f["class_match"] <= 1, f
    assert abs(j["fid_over_floor"] - g["fid"] / f["fid"]) < 1e-2 * j["fid_over_floor"], j
    mf = j["matched_floor"]  # train-part images against the generated score's reference
    assert mf["n"] == 400 and 0 < mf["fid"] < g["fid"] and mf != f, (mf, f, g)
    assert 0.5 < mf["class_match"] <= 1 and mf["classes_covered"] > 10, mf
    assert abs(j["fid_over_matched_floor"] - g["fid"] / mf["fid"]) < 1e-2 * g["fid"] / mf["fid"], j
    if cond:  # real images, every class equally often: covers at least the natural mix's
        uf = j["uniform_real_floor"]
        assert uf["n"] == 400 and uf != f, (uf, f)
        assert uf["classes_covered"] >= f["classes_covered"], (uf, f)
        assert 0.2 < uf["class_match"] <= 1, uf  # rare classes are the hard ones
    else:
        assert "uniform_real_floor" not in j, j
else:
    assert j["real_floor"] is None and j["fid_over_floor"] is None and "floor_note" in j, j
    assert j["matched_floor"] is None and j["fid_over_matched_floor"] is None, j
print("fid %.3f floor %s" % (g["fid"], j["real_floor"] and j["real_floor"]["fid"]))
EOF
}
"$BIN" eval --checkpoint "$CK" --classifier "$TMP/clf.h5" --n 400 --data "$EM" \
    >"$TMP/e1.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval"; }
r=$(check_json "$TMP/e1.json" 0 1) || { cat "$TMP/e1.json"; fail "eval JSON"; }
ok "eval unconditional: $r"
CHARGAN_CLASSIFIER="$TMP/clf.h5" "$BIN" eval --checkpoint "$CK" --n 400 --data "$EM" \
    >"$TMP/e2.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval with CHARGAN_CLASSIFIER"; }
[ "$(grep -o '"generated": {[^}]*' "$TMP/e1.json" | sed 's/"seconds.*//')" = \
  "$(grep -o '"generated": {[^}]*' "$TMP/e2.json" | sed 's/"seconds.*//')" ] ||
    fail "eval is not deterministic: $(cat "$TMP/e1.json" "$TMP/e2.json")"
ok "eval deterministic, \$CHARGAN_CLASSIFIER honoured"
"$BIN" eval --checkpoint "$CKC" --classifier "$TMP/clf.h5" --n 400 --data "$EM" \
    >"$TMP/e3.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval conditional"; }
r=$(check_json "$TMP/e3.json" 1 1) || { cat "$TMP/e3.json"; fail "eval conditional JSON"; }
ok "eval conditional: $r"
(cd "$TMP" && env -u EMNIST_DIR "$BIN" eval --checkpoint "$CK" --classifier clf.h5 --n 400 \
    >"$TMP/e4.json" 2>"$TMP/err") || { cat "$TMP/err"; fail "eval without data"; }
r=$(check_json "$TMP/e4.json" 0 0) || { cat "$TMP/e4.json"; fail "eval without data JSON"; }
ok "eval without data: floor null ($r)"

# EMA (--ema 0.999 here; the default of dcgan): eval, sample and write use the EMA generator,
# --no-ema the raw one, and the two differ; info shows it; small has none by default.
"$BIN" info "$CKC" >"$TMP/info" 2>&1 || { cat "$TMP/info"; fail "info"; }
grep -q "^ema: *present, decay 0.999" "$TMP/info" && grep -q "^ema/generator:" "$TMP/info" &&
    grep -q "Adam moments and the EMA present" "$TMP/info" || { cat "$TMP/info"; fail "info: no EMA shown"; }
"$BIN" eval --checkpoint "$CKC" --classifier "$TMP/clf.h5" --n 400 --no-floor --no-ema \
    >"$TMP/e5.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval --no-ema"; }
python3 - "$TMP/e3.json" "$TMP/e5.json" <<'EOF2' || fail "eval with and without --no-ema"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["generator"] == "ema" and b["generator"] == "raw", (a, b)
assert a["ema_decay"] == 0.999 and b["ema_decay"] == 0.999, (a, b)
assert a["generated"]["fid"] != b["generated"]["fid"], (a, b)
print("ok: eval: EMA generator fid %.3f, --no-ema fid %.3f" % (a["generated"]["fid"], b["generated"]["fid"]))
EOF2
"$BIN" sample --checkpoint "$CKC" --n 81 --out "$TMP/s-ema.h5" --png "$TMP/s-ema.png" >"$TMP/out" 2>&1 &&
    grep -q "EMA generator" "$TMP/out" || { cat "$TMP/out"; fail "sample (EMA)"; }
"$BIN" sample --checkpoint "$CKC" --n 81 --out "$TMP/s-raw.h5" --png "$TMP/s-raw.png" --no-ema \
    >"$TMP/out" 2>&1 && grep -q "raw generator" "$TMP/out" || { cat "$TMP/out"; fail "sample --no-ema"; }
h5dump -d /samples "$TMP/s-ema.h5" | tail -n +3 >"$TMP/s-ema.txt"
h5dump -d /samples "$TMP/s-raw.h5" | tail -n +3 >"$TMP/s-raw.txt"
! cmp -s "$TMP/s-ema.txt" "$TMP/s-raw.txt" && ! cmp -s "$TMP/s-ema.png" "$TMP/s-raw.png" ||
    fail "sample: EMA and --no-ema samples are the same"
"$BIN" sample --checkpoint "$CKC" --n 81 --out "$TMP/s-ema2.h5" >/dev/null 2>&1 &&
    h5dump -d /samples "$TMP/s-ema2.h5" | tail -n +3 | cmp -s - "$TMP/s-ema.txt" ||
    fail "sample (EMA) is not deterministic"
"$BIN" write --checkpoint "$CKC" --text "Ab 1" --out "$TMP/w-ema.png" >/dev/null 2>&1 &&
    "$BIN" write --checkpoint "$CKC" --text "Ab 1" --out "$TMP/w-raw.png" --no-ema >/dev/null 2>&1 &&
    ! cmp -s "$TMP/w-ema.png" "$TMP/w-raw.png" || fail "write: EMA and --no-ema lines are the same"
ok "sample and write: the EMA generator by default, --no-ema differs"

# --temperature scales the noise: 1 is the default (same samples, same score), 1.3 differs in
# eval, sample and write; --reference train scores against the classifier-train fit, floors
# left out. (test_ema checks that the images are the generator's output for the scaled noise.)
"$BIN" eval --checkpoint "$CKC" --classifier "$TMP/clf.h5" --n 400 --no-floor --temperature 1 \
    >"$TMP/t1.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval --temperature 1"; }
"$BIN" eval --checkpoint "$CKC" --classifier "$TMP/clf.h5" --n 400 --no-floor --temperature 1.3 \
    >"$TMP/t13.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval --temperature 1.3"; }
"$BIN" eval --checkpoint "$CKC" --classifier "$TMP/clf.h5" --n 400 --data "$EM" --temperature 1.3 \
    --reference train >"$TMP/t13r.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval --reference train"; }
python3 - "$TMP/e3.json" "$TMP/t1.json" "$TMP/t13.json" "$TMP/t13r.json" <<'EOF2' || fail "eval --temperature / --reference"
import json, sys
d, t1, t13, r = (json.load(open(p)) for p in sys.argv[1:5])
assert d["temperature"] == 1 and t1["temperature"] == 1 and t13["temperature"] == 1.3, (d, t13)
assert d["fid_reference"] == "heldout" and r["fid_reference"] == "train", r
g = lambda j: {k: v for k, v in j["generated"].items() if k != "seconds"}
assert g(d) == g(t1), (d["generated"], t1["generated"])
assert g(t13) != g(t1), t13
assert r["generated"]["fid"] != t13["generated"]["fid"], r   # another reference fit
assert r["generated"]["class_match"] == t13["generated"]["class_match"], r  # same samples
assert r["real_floor"] is None and r["matched_floor"] is None and "held-out" in r["floor_note"], r
assert "classifier-train" in r["reference"], r
EOF2
"$BIN" sample --checkpoint "$CKC" --n 81 --out "$TMP/s-t1.h5" --temperature 1 >/dev/null 2>&1 &&
    h5dump -d /samples "$TMP/s-t1.h5" | tail -n +3 | cmp -s - "$TMP/s-ema.txt" ||
    fail "sample --temperature 1 is not the default"
"$BIN" sample --checkpoint "$CKC" --n 81 --out "$TMP/s-t13.h5" --temperature 1.3 >"$TMP/out" 2>&1 &&
    grep -q "temperature 1.3" "$TMP/out" &&
    ! h5dump -d /samples "$TMP/s-t13.h5" | tail -n +3 | cmp -s - "$TMP/s-ema.txt" ||
    fail "sample --temperature 1.3 draws the same samples"
"$BIN" write --checkpoint "$CKC" --text "Ab 1" --out "$TMP/w-t13.png" --temperature 1.3 >/dev/null 2>&1 &&
    ! cmp -s "$TMP/w-ema.png" "$TMP/w-t13.png" || fail "write --temperature 1.3 draws the same line"
# nan is refused by the option parser itself (no float option takes a non-finite value).
for t in 0 -1 nan 11; do
    why="not in (0, 10]"
    [ $t = nan ] && why="not a finite number"
    "$BIN" sample --checkpoint "$CKC" --out "$TMP/bad-t.h5" --temperature $t >/dev/null 2>"$TMP/err"
    echo $? >"$TMP/rc"
    expect_error "$TMP/rc" "$TMP/err" "sample --temperature $t" "--temperature" "$why"
    "$BIN" write --checkpoint "$CKC" --text x --out "$TMP/bad-t.png" --temperature $t >/dev/null 2>"$TMP/err"
    echo $? >"$TMP/rc"
    expect_error "$TMP/rc" "$TMP/err" "write --temperature $t" "--temperature" "$why"
    [ ! -e "$TMP/bad-t.h5" ] && [ ! -e "$TMP/bad-t.png" ] || fail "--temperature $t left a file"
done
[ ! -e "$TMP/bad-t.png" ] && [ ! -e "$TMP/bad-t.h5" ] || fail "a bad --temperature still wrote a file"
ok "--temperature in eval, sample and write; eval --reference train"
"$BIN" train --data "$EM" --split bymerge-test --limit 2000 --model small --batch 32 \
    --steps 3 --log-every 0 --out "$TMP/run-noema" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "train small"; }
CKN=$(ls "$TMP"/run-noema/checkpoints/step-*.h5 | tail -1)
"$BIN" info "$CKN" | grep -q "^ema: *absent" || fail "info: small (default: no EMA) shows an EMA"
"$BIN" eval --checkpoint "$CKN" --classifier "$TMP/clf.h5" --n 400 --no-floor >"$TMP/e6.json" 2>"$TMP/err" ||
    { cat "$TMP/err"; fail "eval of a run without EMA"; }
grep -q '"generator": "raw", "ema_decay": null' "$TMP/e6.json" || { cat "$TMP/e6.json"; fail "eval without EMA: JSON"; }
ok "small's default: no EMA in the checkpoint, eval says raw"
for bad in 1 -0.5 x 0.9q; do
    "$BIN" train --data "$EM" --split bymerge-test --limit 2000 --model small --steps 3 --ema "$bad" \
        --out "$TMP/run-bad" >/dev/null 2>"$TMP/err"
    echo $? >"$TMP/rc"
    expect_error "$TMP/rc" "$TMP/err" "--ema $bad" "--ema '$bad' must be a number in [0, 1)"
done

# train --exclude-heldout with --eval-every and --sample-every: the data line counts the
# classifier-train part, the config records it, scores and pictures come from the EMA, and a
# resume without the flag is refused.
"$BIN" train --data "$EM" --split bymerge-test --limit 1000 --model small --batch 16 --steps 6 \
    --log-every 3 --ema 0.999 --exclude-heldout --eval-every 3 --eval-n 200 --classifier "$TMP/clf.h5" \
    --sample-every 3 --out "$TMP/run-ex" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "train --exclude-heldout"; }
grep -q "training on the 8[0-9][0-9] classifier-train images; the 1[0-9][0-9] held-out ones" "$TMP/out" ||
    { cat "$TMP/out"; fail "--exclude-heldout: no data line"; }
used=$(sed -n 's/.*training on the \([0-9]*\) classifier-train.*/\1/p' "$TMP/out")
grep -q "$((used / 16)) batches per epoch" "$TMP/out" || { cat "$TMP/out"; fail "--exclude-heldout: batches per epoch"; }
CKX=$(ls "$TMP"/run-ex/checkpoints/step-*.h5 | tail -1)
"$BIN" info "$CKX" | grep -q "\"exclude_heldout\": true, \"images_used\": $used" ||
    fail "--exclude-heldout not in the checkpoint's config"
[ "$(grep -c '"eval": true, .*"generator": "ema"' "$TMP/run-ex/metrics.jsonl")" = 2 ] ||
    { cat "$TMP/run-ex/metrics.jsonl"; fail "--eval-every: two EMA scores expected"; }
grep -q "^eval: step 6 FID .*(EMA)" "$TMP/out" || { cat "$TMP/out"; fail "--eval-every: no EMA eval line"; }
ls "$TMP"/run-ex/samples/step-00000003.png "$TMP"/run-ex/samples/step-00000006.h5 >/dev/null ||
    fail "--sample-every: pictures missing"
# The step-6 sample file equals `chargan sample` of the step-6 checkpoint (the EMA generator;
# the same batch as training, 16, so the same GEMM blocking and bit-equal images).
"$BIN" sample --checkpoint "$CKX" --n 81 --batch 16 --out "$TMP/s6.h5" >/dev/null 2>&1 || fail "sample of run-ex"
cmp -s <(h5dump -d /samples "$TMP/s6.h5" | tail -n +3) \
    <(h5dump -d /samples "$TMP/run-ex/samples/step-00000006.h5" | tail -n +3) ||
    fail "--sample-every pictures are not the EMA generator's"
"$BIN" sample --checkpoint "$CKX" --n 81 --batch 16 --no-ema --out "$TMP/s6raw.h5" >/dev/null 2>&1 &&
    ! cmp -s <(h5dump -d /samples "$TMP/s6raw.h5" | tail -n +3) \
        <(h5dump -d /samples "$TMP/run-ex/samples/step-00000006.h5" | tail -n +3) ||
    fail "--sample-every pictures equal the raw generator's"
"$BIN" train --data "$EM" --split bymerge-test --limit 1000 --model small --batch 16 --steps 9 \
    --log-every 0 --resume auto --out "$TMP/run-ex" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
expect_error "$TMP/rc" "$TMP/err" "resume without --exclude-heldout" "trained with --exclude-heldout"
ok "train --exclude-heldout, --eval-every and --sample-every with the EMA"

# A conditional VAE scores through its decoder like a GAN through its generator: eval of its
# checkpoint (same JSON), and --eval-every during its training (raw weights: no EMA).
"$BIN" train --data "$EM" --split bymerge-test --limit 2000 --model vae --conditional \
    --steps 4 --log-every 2 --eval-every 2 --eval-n 200 --classifier "$TMP/clf.h5" \
    --out "$TMP/run-vae" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "train vae with --eval-every"; }
[ "$(grep -c '"eval": true, .*"generator": "raw"' "$TMP/run-vae/metrics.jsonl")" = 2 ] ||
    { cat "$TMP/run-vae/metrics.jsonl"; fail "vae --eval-every: two scores expected"; }
"$BIN" eval --checkpoint "$TMP/run-vae/checkpoints/step-00000004.h5" --classifier "$TMP/clf.h5" \
    --n 400 --data "$EM" >"$TMP/e5.json" 2>"$TMP/err" || { cat "$TMP/err"; fail "eval vae"; }
r=$(check_json "$TMP/e5.json" 1 1) || { cat "$TMP/e5.json"; fail "eval vae JSON"; }
ok "conditional vae: --eval-every during training, eval of its checkpoint: $r"

# errors: one line naming the file
run() { "$BIN" eval "$@" >/dev/null 2>"$TMP/err"; echo $? >"$TMP/rc"; }
run --checkpoint "$CK" --classifier "$TMP/nothing.h5" --no-floor
expect_error "$TMP/rc" "$TMP/err" "missing classifier" "$TMP/nothing.h5" "No such file"
run --checkpoint "$CK" --classifier "$CK" --no-floor
expect_error "$TMP/rc" "$TMP/err" "checkpoint as classifier" "$CK" "not a chargan classifier file"
run --checkpoint "$TMP/clf.h5" --classifier "$TMP/clf.h5" --no-floor
expect_error "$TMP/rc" "$TMP/err" "classifier as checkpoint" "$TMP/clf.h5"
head -c 20000 "$TMP/clf.h5" >"$TMP/trunc.h5"
run --checkpoint "$CK" --classifier "$TMP/trunc.h5" --no-floor
expect_error "$TMP/rc" "$TMP/err" "truncated classifier" "$TMP/trunc.h5"
run --checkpoint "$CK" --classifier "$TMP/clf.h5" --data "$TMP/none" --n 400
expect_error "$TMP/rc" "$TMP/err" "explicit --data missing" "$TMP/none"
run --checkpoint "$CK" --classifier "$TMP/clf.h5" --no-floor --temperature 0
expect_error "$TMP/rc" "$TMP/err" "eval --temperature 0" "--temperature 0 is not in (0, 10]"
run --checkpoint "$CK" --classifier "$TMP/clf.h5" --no-floor --reference test
expect_error "$TMP/rc" "$TMP/err" "eval --reference test" "--reference 'test'"
"$BIN" classifier train --data "$EM" --split bymerge-test --limit 600 --epochs 1 \
    --out "$TMP/no/such/dir/c.h5" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
expect_error "$TMP/rc" "$TMP/err" "classifier output directory missing" "$TMP/no/such/dir"
echo "all eval tests passed"
