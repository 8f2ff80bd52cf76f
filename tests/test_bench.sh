#!/usr/bin/env bash
# chargan bench runs the training step on the ranks it is given (each rank its share of the
# batch, gradients summed over the ranks, Adam, the EMA): its parameters after the steps are
# the same on 1 and 2 ranks, profiled or not. --breakdown accounts for the step: every kind of
# work it lists took time, the kinds and "other" add up to the step, the layers fit inside it.
# Arguments (from ctest): CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1 SRC=$3
. "$SRC/tests/common.sh"
make_tmpdir
export CG_TIMEOUT=300

ARGS=(bench --model deep --conditional --batch 8 --sum-groups 2 --steps 3 --threads 1)
"$BIN" "${ARGS[@]}" --breakdown >"$TMP/p1.out" 2>"$TMP/p1.err" || { cat "$TMP/p1.err"; fail "bench --breakdown on 1 rank"; }
mpirun_np 2 "$BIN" "${ARGS[@]}" >"$TMP/p2.out" 2>"$TMP/p2.err" || { cat "$TMP/p2.err"; fail "bench on 2 ranks"; }
mpirun_np 2 "$BIN" "${ARGS[@]}" --breakdown >"$TMP/p2b.out" 2>"$TMP/p2b.err" || { cat "$TMP/p2b.err"; fail "bench --breakdown on 2 ranks"; }

# the value of "key": NUMBER in the JSON (last) line of a file
num() { tail -1 "$2" | grep -o "\"$1\": -\?[0-9.e+-]*" | head -1 | sed 's/.*: //'; }
sum() { awk '{ s += $1 } END { printf "%.6f\n", s }'; }
sums=$(for f in p1 p2 p2b; do tail -1 "$TMP/$f.out" | grep -o '"param_checksum": "[0-9a-f]*"'; done | sort -u | wc -l)
[ "$sums" = 1 ] || { grep -h -o '"param_checksum": "[0-9a-f]*"' "$TMP"/p*.out; fail "parameters differ between 1 and 2 ranks or with --breakdown"; }
ok "parameters after 5 steps identical on 1 and 2 ranks, with and without --breakdown"

for f in p1 p2b; do
    grep -q '^net layer .*GFLOP/s' "$TMP/$f.out" && grep -q '^kind of work' "$TMP/$f.out" ||
        { cat "$TMP/$f.out"; fail "$f: no breakdown table"; }
    step=$(num mean_ms_per_step "$TMP/$f.out")
    for k in gemm im2col batchnorm activation exact_fold adam ema noise; do
        v=$(num "$k" "$TMP/$f.out")
        awk -v v="$v" 'BEGIN { exit !(v > 0) }' || fail "$f: $k took ${v:-no} ms"
    done
    ar=$(num allreduce "$TMP/$f.out")
    if [ "$f" = p1 ]; then want='v == 0'; else want='v > 0'; fi
    awk -v v="$ar" "BEGIN { exit !($want) }" || fail "$f: allreduce $ar ms"
    kinds=$(tail -1 "$TMP/$f.out" | sed 's/.*"breakdown": {\([^}]*\)}.*/\1/' | tr ',' '\n' |
        sed 's/.*: //' | sum)
    layers=$(tail -1 "$TMP/$f.out" | grep -o '"[fb]wd_ms": [0-9.e+-]*' | sed 's/.*: //' | sum)
    # On one rank the layers are most of the step; on 2 ranks sharing 2 cores with whatever
    # else runs, waiting in the sums can take any share, so there they need only fit inside.
    if [ "$f" = p1 ]; then lmin=0.5; else lmin=0; fi
    awk -v k="$kinds" -v s="$step" -v l="$layers" -v m="$lmin" \
        'BEGIN { exit !(k > s - 0.02 && k < s + 0.02 && l > m * s && l > 0 && l <= s * 1.001 + 0.01) }' ||
        fail "$f: kinds add to $kinds ms, layers to $layers ms, step $step ms"
    ok "$f: kinds add up to the step ($kinds of $step ms), layers $layers ms, allreduce $ar ms"
done

# each layer's FLOPs (its GFLOP/s times its time) add up to the step's (1 rank: all of it)
flops=$(tail -1 "$TMP/p1.out" | grep -o '"fwd_ms": [0-9.e+-]*, "bwd_ms": [0-9.e+-]*, "gflops": [0-9.e+-]*' |
    awk -F'[:,]' '{ s += ($2 + $4) * $6 * 1e-3 } END { printf "%.4f\n", s }')
want=$(num gflop_per_step "$TMP/p1.out")
awk -v a="$flops" -v b="$want" 'BEGIN { exit !(a > 0.97 * b && a < 1.03 * b) }' ||
    fail "layers' FLOPs $flops GFLOP, step $want GFLOP"
ok "layers' FLOPs add up to the step's ($flops of $want GFLOP)"

mpirun_np 2 "$BIN" bench --batch 7 --steps 1 >"$TMP/bad.out" 2>"$TMP/bad.err"
echo $? >"$TMP/bad.rc"
expect_error "$TMP/bad.rc" "$TMP/bad.err" "--batch 7 on 2 ranks" "--batch 7" "2 ranks"
