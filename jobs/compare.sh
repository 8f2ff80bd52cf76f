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
#        STYLE_INDEX (data:INDEX of bymerge-test, 12), SEED (1)
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
SEED=${SEED:-1}
mkdir -p "$DIR"

last_ckpt() { ls "$OUT/$1"/checkpoints/step-*.h5 | sort | tail -1; }
# eval_field RUN KEY: KEY of the generated samples' scores in OUT/RUN.eval.json
eval_field() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
g = d.get("generated", d); v = g.get(sys.argv[2], "")
print(round(v, 3) if isinstance(v, float) else v)' "$OUT/$1.eval.json" "$2" 2>/dev/null || echo "?"
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
} >"$DIR/README.md"
rm -f "$DIR/table.md"
echo "wrote $DIR/README.md"
