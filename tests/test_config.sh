# The run described by data: plain `chargan train` runs the default preset's recipe (on any
# rank count that divides its batch, with the same bits), `--config CHECKPOINT` repeats a run
# from its saved settings bit for bit, flags override a configuration, and a configuration
# that is not JSON is refused with a one-line error.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
ck() { echo "$TMP/$1/checkpoints/step-$(printf %08d "$2").h5"; }
identical() { # A B: bit-identical parameters
    "$BIN" compare "$1" "$2" --tol 0 >"$TMP/cmp.json" 2>&1 || { cat "$TMP/cmp.json"; fail "compare $1 $2"; }
    grep -q '"bit_identical": true' "$TMP/cmp.json" || fail "$1 vs $2: not bit-identical"
}

# The default: the recipe of the default preset (deep, conditional, batch 32), 1 and 4 ranks.
for np in 1 4; do
    mpirun_np $np "$BIN" train --data "$DATA" --limit 2000 --steps 2 --log-every 1 \
        --out "$TMP/d$np" >"$TMP/d$np.log" 2>&1 || { cat "$TMP/d$np.log"; fail "default train on $np ranks"; }
done
grep -q "model deep " "$TMP/d1.log" || fail "the default run is not deep"
grep -q "global batch 32 (8 per rank, exact sums over 8 groups)" "$TMP/d4.log" ||
    { cat "$TMP/d4.log"; fail "the default run on 4 ranks: not the recipe's batch"; }
"$BIN" info "$(ck d1 2)" | grep -q '"model": "deep", "conditional": true' ||
    fail "the default run's configuration does not record deep, conditional"
"$BIN" info "$(ck d1 2)" | grep -q '"lr_g": 0.0006, "lr_d": 0.0003' ||
    fail "the default run's configuration does not record the recipe's rates"
identical "$(ck d1 2)" "$(ck d4 2)"
ok "plain train runs the default recipe; 1 and 4 ranks bit-identical"

# --config CHECKPOINT: the same run again, bit for bit; flags override it.
mpirun_np 2 "$BIN" train --data "$DATA" --split bymerge-test --limit 2000 --model small --batch 16 \
    --steps 3 --lr-g 3e-4 --seed 9 --log-every 0 --out "$TMP/a" >"$TMP/a.log" 2>&1 ||
    { cat "$TMP/a.log"; fail "train a"; }
mpirun_np 1 "$BIN" train --config "$(ck a 3)" --log-every 0 --out "$TMP/b" >"$TMP/b.log" 2>&1 ||
    { cat "$TMP/b.log"; fail "train --config"; }
identical "$(ck a 3)" "$(ck b 3)"
"$BIN" info "$(ck a 3)" | sed -n 's/^config: *//p' >"$TMP/run.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$TMP/run.json" 2>/dev/null ||
    [ ! -x "$(command -v python3)" ] || fail "the saved configuration is not JSON"
mpirun_np 1 "$BIN" train --config "$TMP/run.json" --steps 4 --log-every 0 --out "$TMP/c" \
    >"$TMP/c.log" 2>&1 || { cat "$TMP/c.log"; fail "train --config FILE --steps 4"; }
[ -f "$(ck c 4)" ] || fail "--steps did not override the configuration's steps"
"$BIN" info "$(ck c 4)" | grep -q '"seed": 9,' || fail "--config FILE lost the seed"
ok "--config CHECKPOINT repeats the run bit for bit; --config FILE with --steps overrides"

# Bad configurations: one line naming the file and the problem.
echo '{"seed": 1,' >"$TMP/bad.json"
"$BIN" train --config "$TMP/bad.json" --out "$TMP/x" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
expect_error "$TMP/rc" "$TMP/err" "config not JSON" "$TMP/bad.json" "not JSON"
echo '{"global_batch": "many"}' >"$TMP/bad.json"
"$BIN" train --config "$TMP/bad.json" --out "$TMP/x" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
expect_error "$TMP/rc" "$TMP/err" "config of the wrong type" "\"global_batch\" must be"
"$BIN" train --config "$TMP/nothing.json" --out "$TMP/x" >/dev/null 2>"$TMP/err"
echo $? >"$TMP/rc"
expect_error "$TMP/rc" "$TMP/err" "missing config" "$TMP/nothing.json"
[ ! -e "$TMP/x" ] || fail "a bad configuration created the output directory"
"$BIN" train --help | grep -q "presets (--model)" || fail "train --help lists no presets"
ok "bad configurations are refused in one line"
