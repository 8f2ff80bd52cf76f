#!/usr/bin/env bash
# Time to quality: trains models for a fixed wall-time budget on EMNIST bymerge, scoring the
# samples every N steps (chargan train --eval-every, rank 0), then plots the Frechet distance
# against wall time and draws the best model's samples and a line of text. For the recipe
# (deep-cond) it also chooses a sampling temperature against the classifier-train images and
# scores the samples at it (OUT/deep-cond.temperature.txt, OUT/deep-cond.eval-temperature.json).
# The GANs train with --exclude-heldout: only on the images the classifier trained on, so the
# held-out images that are the FID reference stay unseen (a clean score), and with each
# model's default EMA of the generator's weights (dcgan: 0.999), which samples and scores use.
#
# usage: jobs/quality.sh OUT [RUN...]   RUN: deep-cond, deep-cond-b64, dcgan-cond,
#                                      dcgan-cond-samelr, dcgan-cond-ttur, dcgan, seed, small,
#                                      vae, vae-adam, vae-cond, cvae-cond
#                                      (default: deep-cond dcgan-cond seed small)
#   env: CHARGAN (binary, default build/chargan), EMNIST_DIR, CLASSIFIER (made with
#        `chargan classifier train`; built here when missing), NP (ranks, default 2),
#        MINUTES_DCGAN (15), MINUTES_OTHER (5), MINUTES_VAE (15)
# jobs/compare.sh then sets runs of OUT side by side (the VAE/GAN comparison).
set -euo pipefail
OUT=${1:?usage: jobs/quality.sh OUT [RUN...]}
shift
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(deep-cond dcgan-cond seed small)
CHARGAN=${CHARGAN:-build/chargan}
EMNIST_DIR=${EMNIST_DIR:-../shared/data/emnist}
NP=${NP:-2}
CLASSIFIER=${CLASSIFIER:-$OUT/classifier.h5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"

if [ ! -f "$CLASSIFIER" ]; then
    "$CHARGAN" classifier train --data "$EMNIST_DIR" --split bymerge-test --out "$CLASSIFIER"
fi

run() { # NAME MINUTES EVAL_EVERY ARGS...
    local name=$1 minutes=$2 every=$3
    shift 3
    echo "== $name: $minutes min on $NP ranks (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
    mpirun --oversubscribe --bind-to none -np "$NP" "$CHARGAN" train --data "$EMNIST_DIR" \
        --split bymerge-test --limit 0 --exclude-heldout --steps 1000000 --time-limit $((minutes * 60)) \
        --eval-every "$every" --eval-n 5000 --classifier "$CLASSIFIER" --sample-every "$every" \
        --log-every 500 --out "$OUT/$name" "$@" | tee "$OUT/$name.log"
    # wall seconds, steps, FID, confidence, classes covered, class match (conditional)
    grep '"eval": true' "$OUT/$name/metrics.jsonl" | sed -e 's/[{}",:]/ /g' |
        awk '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1);
               print v["elapsed_s"], v["step"], v["fid"], v["confidence"], v["classes_covered"],
                     v["class_match"] }' >"$OUT/$name.dat"
}

for r in "${RUNS[@]}"; do
    case $r in
    deep-cond) # the time-to-quality recipe (docs/quality.md): batch 32 (each rank its own
        # exact-sum group), G/D learning rates 6e-4/3e-4 falling linearly to 0 over the last 40%
        # of 10,000 steps (about what 15 minutes give on 2 cores; --time-limit still ends it)
        run deep-cond "${MINUTES_DCGAN:-15}" 1000 --model deep --conditional --batch 32 \
            --sum-groups 2 --lr-g 6e-4 --lr-d 3e-4 --steps 10000 --lr-decay-start 6000 ;;
    deep-cond-b64) # dcgan's rates and batch on deep: batch 64, lr 2e-4/1e-4, constant
        run deep-cond-b64 "${MINUTES_DCGAN:-15}" 500 --model deep --conditional --batch 64 \
            --lr-g 2e-4 --lr-d 1e-4 --lr-decay-start -1 ;;
    dcgan-cond) run dcgan-cond "${MINUTES_DCGAN:-15}" 500 --model dcgan --conditional ;;
    dcgan-cond-samelr) # D at G's 2e-4 (the preset's default before it became 1e-4)
        run dcgan-cond-samelr "${MINUTES_DCGAN:-15}" 500 --model dcgan --conditional \
            --lr-g 2e-4 --lr-d 2e-4 ;;
    dcgan-cond-ttur) # two time-scale update rule (Heusel et al. 2017): D learns 4x faster
        run dcgan-cond-ttur "${MINUTES_DCGAN:-15}" 500 --model dcgan --conditional \
            --lr-g 1e-4 --lr-d 4e-4 ;;
    dcgan) run dcgan "${MINUTES_DCGAN:-15}" 500 --model dcgan ;;
    vae) # the book's VAE as the book trains it: RMSprop, batch 128 (the preset's recipe)
        run vae "${MINUTES_VAE:-15}" 5000 --model vae ;;
    vae-adam) # the same with Adam (beta1 0.5 as every preset, the preset's learning rate)
        run vae-adam "${MINUTES_VAE:-15}" 5000 --model vae --optimizer adam ;;
    vae-cond) run vae-cond "${MINUTES_VAE:-15}" 5000 --model vae --conditional ;;
    cvae-cond) # the convolutional VAE, class-conditional (the one --style-from uses)
        run cvae-cond "${MINUTES_VAE:-15}" 1000 --model cvae --conditional ;;
    seed) run seed "${MINUTES_OTHER:-5}" 100 --model seed ;;
    small) run small "${MINUTES_OTHER:-5}" 250 --model small ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
    esac
done

# The curves (gnuplot from Debian's gnuplot-nox).
# Every run of OUT so far (runs can be made by separate invocations into one OUT).
plots=()
for dat in "$OUT"/*.dat; do
    r=$(basename "$dat" .dat)
    [ -s "$dat" ] && plots+=("'$dat' using (\$1/60):3 with linespoints title '$r'")
done
# Final scores of each run's last checkpoint on 10,000 samples, with the real-vs-real floor.
floor=
for r in "${RUNS[@]}"; do
    last=$(ls "$OUT/$r"/checkpoints/step-*.h5 | sort | tail -1)
    "$CHARGAN" eval --checkpoint "$last" --classifier "$CLASSIFIER" --data "$EMNIST_DIR" \
        --split bymerge-test --n 10000 | tee "$OUT/$r.eval.json"
    [ -n "$floor" ] || floor=$(sed -n 's/.*"real_floor": {[^}]*"fid": \([0-9.e+-]*\).*/\1/p' "$OUT/$r.eval.json")
    [ "$r" = deep-cond ] || continue
    # The sampling temperature, chosen against the classifier-train images (--reference
    # train; the held-out reference is not looked at), then scored like the rest.
    best=1 best_fid=
    : >"$OUT/$r.temperature.txt"
    for t in 0.9 1 1.05 1.1 1.15 1.2 1.3; do
        f=$("$CHARGAN" eval --checkpoint "$last" --classifier "$CLASSIFIER" --no-floor \
            --n 10000 --temperature $t --reference train |
            sed -n 's/.*"generated": {[^}]*"fid": \([0-9.e+-]*\).*/\1/p')
        [ -n "$f" ] || { echo "quality.sh: no FID at temperature $t" >&2; exit 1; }
        echo "temperature $t: FID $f against the classifier-train images" | tee -a "$OUT/$r.temperature.txt"
        if [ -z "$best_fid" ] || awk -v a="$f" -v b="$best_fid" 'BEGIN { exit !(a < b) }'; then
            best=$t best_fid=$f
        fi
    done
    echo "chosen: temperature $best" | tee -a "$OUT/$r.temperature.txt"
    "$CHARGAN" eval --checkpoint "$last" --classifier "$CLASSIFIER" --data "$EMNIST_DIR" \
        --split bymerge-test --n 10000 --temperature "$best" | tee "$OUT/$r.eval-temperature.json"
done
gnuplot <<GP
set terminal pngcairo size 900,560
set output '$OUT/quality.png'
set title 'chargan: Frechet distance (classifier features) vs wall time, EMNIST bymerge, $NP ranks on $(nproc) cores'
set xlabel 'wall time (minutes, evaluation included)'
set ylabel 'FID (log scale; lower is better)'
set logscale y
set yrange [0.3:1000]
set key top right
set grid
${floor:+set arrow from graph 0, first $floor to graph 1, first $floor nohead dt 2 lc rgb 'gray'
set label 'real vs real floor ($floor)' at graph 0.02, first $floor offset 0,0.7 tc rgb 'gray'}
plot $(IFS=,; echo "${plots[*]}")
GP
echo "wrote $OUT/quality.png"
