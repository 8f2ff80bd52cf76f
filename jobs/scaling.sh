#!/usr/bin/env bash
# Strong and weak scaling of chargan train: P ranks for P in $PS, several repeats, one CSV row
# per run, then a summary (medians) and a PNG plot of speed-up and efficiency against ideal.
#
#   strong: fixed global batch ($BATCH), split over the P ranks (B/P per rank)
#   weak:   fixed per-rank batch ($LOCAL_BATCH), global batch = P x LOCAL_BATCH
#
# speed-up(P) = images/s(P) / images/s(1) and efficiency = speed-up / P, both against the median
# of the P = 1 runs of the same mode and model (for weak scaling this is the same as
# ms/step(1) / ms/step(P)). P = 1 runs first, so every row carries its efficiency.
#
# Runs anywhere: outside Slurm with mpirun on this machine, inside an allocation (see
# jobs/scaling.sbatch) with srun --mpi=pmix or mpirun. Settings (environment):
#   CHARGAN_BIN    chargan binary (default: chargan on PATH, else ./build/chargan)
#   CHARGAN_DATA, CHARGAN_SPLIT   data (default: chargan's defaults)
#   MODELS ("seed small"), PS ("1 2 4 8"), MODES ("strong weak"), REPEATS (3), STEPS (30)
#   BATCH (64: strong), LOCAL_BATCH (32: weak), THREADS (1: BLAS threads per rank;
#   0 = chargan's default, cores per node / ranks per node)
#   LAUNCHER       mpirun (default outside Slurm) | srun (default inside an allocation)
#   OUT            result directory (default scaling-<date>): runs.csv, summary.csv,
#                  scaling.png, logs/
#   BEFORE_RUN     a shell command evaluated before every run (e.g. waiting for an idle machine)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "${CHARGAN_BIN:-}" ]; then BIN=$CHARGAN_BIN
elif command -v chargan >/dev/null; then BIN=$(command -v chargan)
else BIN=$PWD/build/chargan; fi
[ -x "$BIN" ] || { echo "scaling.sh: chargan binary not found ($BIN); set CHARGAN_BIN" >&2; exit 2; }
MODELS=${MODELS:-seed small}
PS=${PS:-1 2 4 8}
MODES=${MODES:-strong weak}
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-30}
BATCH=${BATCH:-64}
LOCAL_BATCH=${LOCAL_BATCH:-32}
THREADS=${THREADS:-1}
OUT=${OUT:-scaling-$(date +%Y%m%d-%H%M%S)}
if [ -n "${SLURM_JOB_ID:-}" ]; then LAUNCHER=${LAUNCHER:-srun}; else LAUNCHER=${LAUNCHER:-mpirun}; fi
mkdir -p "$OUT/logs" || exit 2
OUT=$(cd "$OUT" && pwd)
CORES=$(nproc)
NODES_AVAIL=${SLURM_JOB_NUM_NODES:-1}
CSV=$OUT/runs.csv
ARGS=(--steps "$STEPS" --log-every 0 --threads "$THREADS")
[ -n "${CHARGAN_DATA:-}" ] && ARGS+=(--data "$CHARGAN_DATA")
[ -n "${CHARGAN_SPLIT:-}" ] && ARGS+=(--split "$CHARGAN_SPLIT")

launch() { # P CMD...
    local p=$1
    shift
    if [ "$LAUNCHER" = srun ]; then
        # --overcommit: more tasks than CPUs on a small allocation (oversubscribed points)
        timeout 3600 srun --mpi=pmix -n "$p" --overcommit --cpus-per-task=1 "$@"
    else
        timeout 3600 mpirun -np "$p" --oversubscribe --bind-to none "$@"
    fi
}

echo "mode,model,P,nodes,threads,global_batch,local_batch,rep,ms_per_step,images_per_s,mpi_wait_ms,speedup,efficiency,oversubscribed,load_before" >"$CSV"
echo "scaling: $MODES x $MODELS x P in {$PS} x $REPEATS repeats, $STEPS steps, launcher $LAUNCHER," \
    "$CORES cores per node, $NODES_AVAIL node(s); results in $OUT"
declare -A base
for model in $MODELS; do
    for mode in $MODES; do
        # Repeats are the outer loop: a disturbance (another job on the machine) then hits one
        # repeat of several P rather than every repeat of one P.
        for rep in $(seq "$REPEATS"); do
            for p in $PS; do
                if [ "$mode" = strong ]; then gb=$BATCH; else gb=$((LOCAL_BATCH * p)); fi
                if [ $((gb % p)) != 0 ]; then
                    echo "skip: $mode $model P=$p: batch $gb not divisible" >&2
                    continue
                fi
                tag=$mode-$model-p$p-r$rep
                dir=$OUT/run-$tag
                rm -rf "$dir"
                # waiting ranks give their core away when there are more ranks than cores
                if [ $((p * (THREADS > 0 ? THREADS : 1))) -gt $((CORES * NODES_AVAIL)) ]; then
                    over=yes
                    export OMPI_MCA_mpi_yield_when_idle=1
                else
                    over=no
                    unset OMPI_MCA_mpi_yield_when_idle
                fi
                # BEFORE_RUN: a command run before every run (e.g. one that waits for a shared
                # machine to be idle)
                [ -n "${BEFORE_RUN:-}" ] && eval "$BEFORE_RUN"
                load1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
                launch "$p" "$BIN" train --model "$model" --batch "$gb" "${ARGS[@]}" --out "$dir" \
                    >"$OUT/logs/$tag.log" 2>&1
                rc=$?
                sum=$(grep '"summary": true' "$OUT/logs/$tag.log" | tail -1)
                if [ $rc != 0 ] || [ -z "$sum" ]; then
                    echo "run $tag failed (status $rc), see $OUT/logs/$tag.log" >&2
                    continue
                fi
                rm -rf "$dir" # only the numbers are kept
                num() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" <<<"$sum"; }
                ms=$(num median_ms_per_step) ips=$(num images_per_s) wait=$(num mpi_wait_ms_per_step)
                thr=$(num threads)
                nodes=$(sed -n 's/.* ranks\{0,1\} on \([0-9]*\) node.*/\1/p' "$OUT/logs/$tag.log" | head -1)
                # time-based throughput: global batch / median step time (the summary's
                # images_per_s also counts the start-up of the loop)
                ips=$(awk -v b="$gb" -v ms="$ms" 'BEGIN { printf "%.2f", b / (ms / 1000) }')
                key=$mode-$model
                if [ "$p" = 1 ]; then base[$key]="${base[$key]:-} $ips"; fi
                b1=$(tr ' ' '\n' <<<"${base[$key]:-}" | grep . | sort -g |
                    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
                read -r su eff < <(awk -v i="$ips" -v b="${b1:-0}" -v p="$p" \
                    'BEGIN { if (b > 0) printf "%.4f %.4f\n", i / b, i / b / p; else print "nan nan" }')
                echo "$mode,$model,$p,${nodes:-1},$thr,$gb,$((gb / p)),$rep,$ms,$ips,$wait,$su,$eff,$over,${load1:-}" >>"$CSV"
                printf '%-6s %-5s P=%-2s rep %s: %8.1f ms/step %8.1f img/s wait %7.1f ms  speed-up %s eff %s  load %s%s\n' \
                    "$mode" "$model" "$p" "$rep" "$ms" "$ips" "$wait" "$su" "$eff" "${load1:-?}" \
                    "$([ $over = yes ] && echo ' (oversubscribed)')"
            done
        done
    done
done

# Summary: medians over the repeats, efficiency against the median P = 1 of each mode/model.
awk -F, 'NR > 1 { k = $1 "," $2 "," $3; n[k]++; ms[k, n[k]] = $9; ips[k, n[k]] = $10
                  w[k, n[k]] = $11; meta[k] = $4 "," $5 "," $6 "," $7; over[k] = $14
                  if (!(k in seen)) { seen[k] = 1; order[++o] = k } }
  function med(a, k, m,    i, j, t, v) {
      for (i = 1; i <= m; i++) v[i] = a[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END {
      print "mode,model,P,nodes,threads,global_batch,local_batch,repeats,ms_per_step,images_per_s,mpi_wait_ms,speedup,efficiency,oversubscribed"
      for (i = 1; i <= o; i++) {
          k = order[i]; split(k, f, ","); b = f[1] "," f[2] ",1"
          mi = med(ips, k, n[k]); b1 = (b in n) ? med(ips, b, n[b]) : 0
          printf "%s,%s,%d,%.2f,%.2f,%.2f,%.4f,%.4f,%s\n", k, meta[k], n[k], med(ms, k, n[k]), mi,
                 med(w, k, n[k]), b1 ? mi / b1 : 0, b1 ? mi / b1 / f[3] : 0, over[k] } }' "$CSV" \
    >"$OUT/summary.csv"
echo "summary: $OUT/summary.csv"
column -s, -t "$OUT/summary.csv" 2>/dev/null || cat "$OUT/summary.csv"
if command -v gnuplot >/dev/null; then
    gnuplot -e "summary='$OUT/summary.csv'; out='$OUT/scaling.png'; cores=$((CORES * NODES_AVAIL)); title='chargan scaling: $STEPS steps, $THREADS thread(s) per rank, $CORES cores x $NODES_AVAIL node(s), strong B=$BATCH, weak b=$LOCAL_BATCH per rank'" \
        "$HERE/plot_scaling.gp" && echo "plot: $OUT/scaling.png"
else
    echo "gnuplot not installed (apt-get install gnuplot-nox): no plot" >&2
fi
