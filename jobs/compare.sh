#!/usr/bin/env bash
# Sets runs of jobs/quality.sh side by side, as the project this one started from compared its
# GAN with a VAE: for each run, its last checkpoint's sample grid, the same line of text written
# by it (conditional models), and its `chargan eval` numbers (OUT/RUN.eval.json, which
# quality.sh writes); then one --style-from example: an image of the data set, and the line
# written in its style by STYLE_RUN. Writes the pictures into DIR and a Markdown table to
# DIR/README.md.
#
# usage: jobs/compare.sh OUT DIR RUN...      e.g. jobs/compare.sh q docs/vae vae cvae-cond deep-cond
#   env: CHARGAN (build/chargan), EMNIST_DIR, TEXT ("Hello World 2026"), STYLE_RUN (cvae-cond),
#        STYLE_INDEX (data:INDEX of bymerge-test, 12), STYLE_N (sources of the closeness
#        table, 40), SEED (1)
set -euo pipefail
OUT=${1:?usage: jobs/compare.sh OUT DIR RUN...}
DIR=${2:?usage: jobs/compare.sh OUT DIR RUN...}
shift 2
[ $# -gt 0 ] || { echo "compare.sh: name at least one run of $OUT" >&2; exit 2; }
CHARGAN=${CHARGAN:-build/chargan}
EMNIST_DIR=${EMNIST_DIR:-../shared/data/emnist}
TEXT=${TEXT:-Hello World 2026}
STYLE_RUN=${STYLE_RUN:-cvae-cond}
STYLE_INDEX=${STYLE_INDEX:-12}
STYLE_N=${STYLE_N:-40}
SEED=${SEED:-1}
mkdir -p "$DIR"

last_ckpt() { ls "$OUT/$1"/checkpoints/step-*.h5 | sort | tail -1; }
# eval_field RUN KEY: KEY of the generated samples' scores in OUT/RUN.eval.json
eval_field() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
g = d.get("generated", d); v = g.get(sys.argv[2], "")
print("–" if v is None else round(v, 3) if isinstance(v, float) else v)' "$OUT/$1.eval.json" "$2" 2>/dev/null || echo "?"
}

{
    echo "| run | steps | samples (first 81) | \"$TEXT\" | FID | classes covered | class match |"
    echo "|---|---|---|---|---|---|---|"
} >"$DIR/table.md"
for r in "$@"; do
    ck=$(last_ckpt "$r")
    step=$(basename "$ck" .h5 | sed 's/step-0*//')
    "$CHARGAN" sample --checkpoint "$ck" --n 100 --seed "$SEED" --out "$DIR/$r.h5" \
        --png "$DIR/$r.png" >/dev/null
    rm -f "$DIR/$r.h5"
    line="(unconditional)"
    if "$CHARGAN" write --checkpoint "$ck" --text "$TEXT" --seed "$SEED" \
        --out "$DIR/$r-line.png" >/dev/null 2>"$DIR/$r-line.err"; then
        line="![]($r-line.png)"
    fi
    rm -f "$DIR/$r-line.err"
    echo "| $r | $step | ![]($r.png) | $line | $(eval_field "$r" fid) |" \
        "$(eval_field "$r" classes_covered) | $(eval_field "$r" class_match) |" >>"$DIR/table.md"
done

# The style example: the data set's image and the line in its style.
ck=$(last_ckpt "$STYLE_RUN")
"$CHARGAN" write --checkpoint "$ck" --text "$TEXT" --style-from "data:$STYLE_INDEX" \
    --data "$EMNIST_DIR" --split bymerge-test --style-png "$DIR/style-source.png" \
    --out "$DIR/style-line.png" | tee "$DIR/style.txt"
# How close the style comes, over STYLE_N images of the data set (every 97th from STYLE_INDEX):
# stroke thickness and slant of each source and the mean of its line's glyphs (as write prints
# them). The line follows the source if it is nearer to its own source than the sources are to
# each other, and if line and source correlate over the images.
: >"$DIR/style-n.txt"
for k in $(seq 0 $((STYLE_N - 1))); do
    "$CHARGAN" write --checkpoint "$ck" --text "$TEXT" --style-from "data:$((STYLE_INDEX + 97 * k))" \
        --data "$EMNIST_DIR" --split bymerge-test --out "$DIR/style-tmp.png" |
        sed -n 's/^style: the [0-9]* glyphs: stroke \([0-9.]*\) px, slant \([-0-9.]*\) degrees (mean; sample \([0-9.]*\) px, \([-0-9.]*\) degrees)$/\3 \4 \1 \2/p' \
            >>"$DIR/style-n.txt"
done
rm -f "$DIR/style-tmp.png"
closeness() { # COLUMN_OF_SOURCE COLUMN_OF_LINE NAME: one Markdown row
    awk -v a="$1" -v b="$2" -v name="$3" '
        { x[NR] = $a; y[NR] = $b; sx += $a; sy += $b }
        END { n = NR; mx = sx / n; my = sy / n
              for (i = 1; i <= n; i++) {
                  d = y[i] - x[i]; near += (d < 0 ? -d : d) / n
                  dx = x[i] - mx; spread += (dx < 0 ? -dx : dx) / n
                  cxy += (x[i] - mx) * (y[i] - my); cxx += (x[i] - mx)^2; cyy += (y[i] - my)^2 }
              printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name, mx, spread, my, near,
                     cxy / sqrt(cxx * cyy) }' "$DIR/style-n.txt"
}
{
    echo "| $(wc -l <"$DIR/style-n.txt") sources | mean of sources | sources' mean distance to their mean | mean of lines | mean distance line - own source | correlation line ~ source |"
    echo "|---|---|---|---|---|---|"
    closeness 1 3 "stroke (px)"
    closeness 2 4 "slant (degrees)"
} >"$DIR/style-closeness.md"
rm -f "$DIR/style-n.txt"

{
    echo "# VAE and GAN side by side"
    echo
    echo "Made by \`jobs/compare.sh $OUT $DIR $*\` from the runs of \`jobs/quality.sh\` (chargan"
    echo "$("$CHARGAN" --version | head -1 | cut -d' ' -f2-)); scores from each run's last checkpoint on"
    echo "10,000 samples (\`chargan eval --n 10000\`)."
    echo
    cat "$DIR/table.md"
    echo
    echo "## Handwriting in the style of a sample"
    echo
    echo "\`chargan write --style-from data:$STYLE_INDEX\` with $STYLE_RUN: the source (bymerge-test"
    echo "image $STYLE_INDEX, as the model saw it) and the line written in its style."
    echo
    echo "![](style-source.png) ![](style-line.png)"
    echo
    echo '```'
    cat "$DIR/style.txt"
    echo '```'
    echo
    echo "How close over $STYLE_N images (bymerge-test $STYLE_INDEX, $((STYLE_INDEX + 97)), ...):"
    echo "stroke thickness (2 x ink area / ink perimeter, threshold 0.5) and slant (from the second"
    echo "moments) of each source and the mean over its line's glyphs."
    echo
    cat "$DIR/style-closeness.md"
} >"$DIR/README.md"
rm -f "$DIR/table.md" "$DIR/style-closeness.md"
echo "wrote $DIR/README.md"
