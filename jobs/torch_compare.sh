#!/bin/bash
# chargan against PyTorch (jobs/torch_bench.py), the same training step, side by side.
#
#   bash jobs/torch_compare.sh CHARGAN_BINARY ROUNDS
#
# ROUNDS times, alternating, for each case (dcgan --conditional, deep --conditional, dcgan,
# deep) at global batch 32:
#   chargan: mpirun -np 2 CHARGAN bench --sum-groups 2 --threads 1 (2 ranks x 1 thread);
#   PyTorch: 1 process x 2 threads; 1 x 2 threads with channels_last; DDP 2 processes x 1 thread.
# Every measurement is the median ms/step of STEPS (default 20) timed steps after 2 warm-up
# steps, printed as one line; at the end, per case: the median over the rounds of chargan, the
# best PyTorch configuration's median, and chargan/PyTorch (< 1: chargan is faster).
# PYTHON: an interpreter with torch (default /usr/bin/python3, where Debian's python3-torch
# lives; a python3 earlier on PATH, e.g. pyenv's, may lack it). Uses bash, awk, sed, grep.
set -u
BIN=${1:?usage: bash jobs/torch_compare.sh CHARGAN_BINARY ROUNDS}
ROUNDS=${2:?usage: bash jobs/torch_compare.sh CHARGAN_BINARY ROUNDS}
STEPS=${STEPS:-20}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader

CASES=("dcgan --conditional" "deep --conditional" "dcgan" "deep")
CONFIGS=("--threads 2" "--threads 2 --channels-last" "--ddp 2 --threads 1")
NAMES=("torch-1x2" "torch-1x2-cl" "torch-ddp2x1")
RES=$(mktemp)
trap 'rm -f "$RES"' EXIT

# The step's median from a bench's JSON line (chargan's also has mean_ms_per_step: not that).
ms() { grep -o '"ms_per_step": *[0-9.]*' | head -1 | sed 's/.*: *//'; }
record() { # round case impl ms
    printf 'round %s  %-20s %-14s %s ms/step\n' "$1" "$2" "$3" "${4:-FAILED}"
    [ -n "$4" ] && printf '%s|%s|%s\n' "$2" "$3" "$4" >>"$RES"
}

for r in $(seq 1 "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        v=$(mpirun --oversubscribe --bind-to none -np 2 "$BIN" bench --model $c --batch 32 \
            --sum-groups 2 --threads 1 --steps "$STEPS" | tail -1 | ms)
        record "$r" "$c" chargan-2x1 "$v"
        for i in "${!CONFIGS[@]}"; do
            v=$("$PY" "$HERE/torch_bench.py" --model $c --batch 32 --steps "$STEPS" \
                ${CONFIGS[$i]} | tail -1 | ms)
            record "$r" "$c" "${NAMES[$i]}" "$v"
        done
    done
done

echo
echo "summary: median ms/step over $ROUNDS round(s), global batch 32, $STEPS steps per run"
awk -F'|' '
function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++)  # insertion sort
        for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ v[$1 "|" $2] = v[$1 "|" $2] " " $3; if (!($1 in seen)) { seen[$1] = 1; order[++nc] = $1 } }
END {
    printf "%-20s %12s  %-14s %12s  %s\n", "case", "chargan", "best torch", "torch", "chargan/torch"
    for (k = 1; k <= nc; k++) {
        c = order[k]; best = ""; bname = "-"
        for (key in v) {
            split(key, p, "|")
            if (p[1] != c || p[2] == "chargan-2x1") continue
            m = median(v[key])
            if (best == "" || m < best) { best = m; bname = p[2] }
        }
        ch = (c "|chargan-2x1") in v ? median(v[c "|chargan-2x1"]) : ""
        printf "%-20s %12s  %-14s %12s  %s\n", c, ch == "" ? "-" : sprintf("%.2f", ch), bname,
            best == "" ? "-" : sprintf("%.2f", best),
            ch == "" || best == "" ? "-" : sprintf("%.3f", ch / best)
    }
}' "$RES"
