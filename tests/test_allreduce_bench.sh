#!/usr/bin/env bash
# chargan bench --allreduce: on 1 and 2 ranks it times the real gradient sizes and a sweep,
# checks the reduction's result, fits alpha/beta (2 ranks) and prints one JSON object last.
# Arguments (from ctest): CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1 SRC=$3
. "$SRC/tests/common.sh"
make_tmpdir
export CG_TIMEOUT=120

# the parameter counts the bench must use: those of the real models
for m in seed small; do
    "$BIN" bench --model "$m" --batch 2 --steps 1 --threads 1 >"$TMP/bench-$m.json" ||
        fail "chargan bench --model $m"
done
params() { sed -n "s/.*\"params_$2\": \([0-9]*\).*/\1/p" "$TMP/bench-$1.json"; }

for np in 1 2; do
    mpirun_np "$np" "$BIN" bench --allreduce --reps 5 --max-bytes 1048576 --threads 1 \
        >"$TMP/ar$np.out" 2>"$TMP/ar$np.err" || { cat "$TMP/ar$np.err"; fail "$np ranks: bench --allreduce failed"; }
    last=$(tail -1 "$TMP/ar$np.out")
    case $last in
    '{"bench": "allreduce", "ranks": '$np,*'}') ;;
    *) cat "$TMP/ar$np.out"; fail "$np ranks: last line is not the JSON object" ;;
    esac
    # 4 KB .. 1 MB in powers of 4: 5 sizes
    n=$(grep -o '{"bytes": [0-9]*, "reps"' <<<"$last" | wc -l)
    [ "$n" = 5 ] || fail "$np ranks: $n sweep sizes, expected 5"
    grep -q '"bytes": 4096, ' <<<"$last" && grep -q '"bytes": 1048576, ' <<<"$last" ||
        fail "$np ranks: sweep does not span 4096 .. 1048576 bytes"
    for m in seed small; do
        for net in G D; do
            lc=$(tr 'GD' 'gd' <<<"$net")
            want=$(params $m "$lc")
            # int64 fixed-point sums: 8 bytes per parameter and one counter
            grep -q "\"$m.$net\": {\"params\": $want, \"bytes\": $(((want + 1) * 8))," <<<"$last" ||
                fail "$np ranks: $m.$net is not the real gradient size ($want params, int64)"
        done
    done
    ok "$np ranks: $(grep -c '' "$TMP/ar$np.out") lines, JSON last; real sizes match chargan bench"
done
grep -q '"fit": null' "$TMP/ar1.out" || fail "1 rank: a fit without communication"
fit=$(tail -1 "$TMP/ar2.out" | grep -o '"fit": {[^}]*}')
alpha=$(sed -n 's/.*"alpha_us": \([0-9.e+-]*\).*/\1/p' <<<"$fit")
bw=$(sed -n 's/.*"bandwidth_gb_s": \([0-9.e+-]*\).*/\1/p' <<<"$fit")
[ -n "$alpha" ] && [ -n "$bw" ] || fail "2 ranks: no alpha/bandwidth in '$fit'"
awk -v a="$alpha" -v b="$bw" 'BEGIN { exit !(a >= 0 && a < 10000 && b > 0.01 && b < 1000) }' ||
    fail "2 ranks: implausible fit alpha ${alpha} us, bandwidth ${bw} GB/s"
grep -q '"overlap": \[{"buffer": "small.D"' "$TMP/ar2.out" || fail "2 ranks: no overlap measurement"
ok "2 ranks: alpha ${alpha} us, bandwidth ${bw} GB/s (shared memory on this machine)"

# bad options are refused with one error line
mpirun_np 2 "$BIN" bench --allreduce --reps 0 >"$TMP/bad.out" 2>"$TMP/bad.err"
echo $? >"$TMP/bad.rc"
expect_error "$TMP/bad.rc" "$TMP/bad.err" "--reps 0" "--reps"
