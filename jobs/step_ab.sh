#!/usr/bin/env bash
# Alternated timing of the recipe's step for several chargan binaries in one run, with the
# machine's sgemm ceiling measured between them (a shared machine drifts by 2-3x over an hour,
# so only ratios within one run mean anything):
#     jobs/step_ab.sh ROUNDS BINARY... [-- BENCH_ARGS...]
# Each round runs `chargan bench --sgemm 2048 --threads 2`, then each binary's
# `mpirun -np 2 BINARY bench BENCH_ARGS` (default: the recipe, deep --conditional at batch 32
# on 2 ranks x 1 thread with 2 exact-sum groups). Prints one line per measurement and, per
# binary, the median ms/step, its GFLOP/s and its share of the median sgemm ceiling.
# NP=1 (default 2) sets the rank count, e.g. NP=1 ... -- --threads 2 ... for thread scaling.
set -euo pipefail
rounds=$1
shift
bins=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do bins+=("$1"); shift; done
[ $# -gt 0 ] && shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model deep --conditional --batch 32 --sum-groups 2 --threads 1 --steps 30)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
out=$(mktemp)
trap 'rm -f "$out"' EXIT
field() { grep -o "\"$1\": [0-9.]*" | head -1 | sed 's/.*: //'; }
for r in $(seq "$rounds"); do
    g=$("${bins[0]}" bench --sgemm 2048 --threads 2 --steps 5 | field gflops)
    echo "round $r sgemm $g"
    for b in "${bins[@]}"; do
        mpirun --oversubscribe --bind-to none -np "${NP:-2}" "$b" bench "${args[@]}" >"$out"
        echo "round $r $b $(tail -1 "$out" | field ms_per_step) $(tail -1 "$out" | field gflops) $(tail -1 "$out" | field peak_rss_mb)"
    done
done | tee /dev/stderr | awk '
    $3 == "sgemm" { s[++ns] = $4; next }
    { ms[$3] = ms[$3] " " $4; gf[$3] = gf[$3] " " $5; rss[$3] = $6 }
    function med(str,   a, n, i, j, t) {
        n = split(str, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        for (i = 1; i <= ns; i++) all = all " " s[i]
        ceil = med(all)
        printf "sgemm ceiling (2 threads, median of %d): %.1f GFLOP/s\n", ns, ceil
        for (b in ms) printf "%s: %.2f ms/step, %.1f GFLOP/s, %.1f%% of the ceiling, peak RSS %s MB (rank 0)\n", b, med(ms[b]), med(gf[b]), 100 * med(gf[b]) / ceil, rss[b]
    }'
