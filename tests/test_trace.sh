#!/usr/bin/env bash
# --trace: the Chrome trace file of a 2-rank run is valid JSON with one process row per rank,
# compute and MPI tracks, every phase of every chosen step once per rank (the chunks of both
# gradient sums on the MPI track), spans nested or disjoint on each track, no span outside
# the chosen steps, the ranks' clocks aligned (the same summed chunk ends at nearly the same
# time on both), and recording under 2% of a step by the file's own measurement. Then the
# default window on one rank, bad --trace options, and jobs/trace_plot.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1
SRC=$3
DATA=$(emnist_dir "$SRC") || exit 1
make_tmpdir
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
run=(train --model deep --batch 16 --steps 6 --log-every 0 --data "$DATA" --split bymerge-test
     --limit 2048)

mpirun_np 2 "$BIN" "${run[@]}" --out "$TMP/a" --sample-every 3 --ckpt-every 3 \
    --trace "$TMP/a/trace.json" --trace-steps 2:4 > "$TMP/a.log" 2>&1 ||
    { cat "$TMP/a.log"; fail "traced run failed"; }
$PY - "$TMP/a/trace.json" 2 2 4 <<'PYEOF' || fail "trace file checks"
import json, sys
path, ranks, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = json.load(open(path))
ev, other = t["traceEvents"], t["otherData"]
def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)
spans = [e for e in ev if e["ph"] == "X"]
meta = [e for e in ev if e["ph"] == "M"]
check({e["pid"] for e in spans} == set(range(ranks)), "process rows are not the ranks")
check(other["ranks"] == ranks, "otherData.ranks")
check({e["pid"] for e in meta if e["name"] == "process_name"} == set(range(ranks)),
      "a rank without its process name")
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
check(all(names.get((r, 0)) == "compute" and names.get((r, 1)) == "MPI" for r in range(ranks)),
      "track names")
for e in spans:
    check(e["dur"] >= 0 and first <= e["args"]["step"] <= last, "span outside the steps: %s" % e)
    check(e["tid"] == (1 if e["cat"] == "mpi" else 0), "track of %s" % e["name"])
once = ["step", "load batch", "G forward", "D forward", "D backward", "G backward",
        "wait for the sums", "step statistics", "gradients from sums", "Adam", "EMA"]
for r in range(ranks):
    for s in range(first, last + 1):
        mine = [e for e in spans if e["pid"] == r and e["args"]["step"] == s]
        for kind in once:
            n = sum(e["name"] == kind for e in mine)
            check(n == 1, "rank %d step %d: %d '%s' spans" % (r, s, n, kind))
        for kind in ["allreduce D", "allreduce G"]:
            check(any(e["name"] == kind for e in mine), "rank %d step %d: no %s" % (r, s, kind))
        step = next(e for e in mine if e["name"] == "step")
        for e in mine:
            if e["tid"] == 0:
                check(step["ts"] - 0.002 <= e["ts"] and
                      e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 0.004,
                      "rank %d: %s outside its step" % (r, e["name"]))
    check(sum(e["name"] == "samples" for e in spans if e["pid"] == r) == (1 if r == 0 else 0),
          "samples span (rank 0, step 3)")
    check(sum(e["name"] == "checkpoint" for e in spans if e["pid"] == r) == 1,
          "checkpoint span of rank %d" % r)
# Nesting: on each track, sorted by start (longer first), a span ends inside the one that
# contains its start (times are rounded to 1 ns each: 2 ns slack).
for key in {(e["pid"], e["tid"]) for e in spans}:
    stack = []
    for e in sorted((e for e in spans if (e["pid"], e["tid"]) == key),
                    key=lambda e: (e["ts"], -e["dur"])):
        while stack and stack[-1] <= e["ts"] + 0.002:
            stack.pop()
        check(not stack or e["ts"] + e["dur"] <= stack[-1] + 0.004,
              "%s of rank %d overlaps its parent" % (e["name"], key[0]))
        stack.append(e["ts"] + e["dur"])
# Clocks: the same blocking chunk of G's sum ends at nearly the same time on every rank.
ends = {}
for e in spans:
    if e["name"] == "allreduce G":
        ends.setdefault((e["args"]["step"], e["args"]["chunk"]), []).append(e["ts"] + e["dur"])
skew = max(max(v) - min(v) for v in ends.values() if len(v) == ranks)
step_us = 1e3 * other["median_step_ms"]
check(skew < 0.5 * step_us, "ranks' clocks disagree by %.0f us (step %.0f us)" % (skew, step_us))
check(other["recording_pct_of_step"] < 2.0, "recording costs %s%% of a step"
      % other["recording_pct_of_step"])
print("ok: %d spans, %s per step per rank, %s us each = %s%% of a %.1f ms step; chunk end "
      "skew %.0f us" % (len(spans), other["spans_per_step_per_rank"], other["span_cost_us"],
                        other["recording_pct_of_step"], other["median_step_ms"], skew))
PYEOF

# One rank, the default window (2:11) clipped at the run's 3 steps.
"$BIN" "${run[@]}" --steps 3 --out "$TMP/b" --trace "$TMP/b.json" > "$TMP/b.log" 2>&1 ||
    { cat "$TMP/b.log"; fail "one-rank traced run failed"; }
$PY -c "
import json, sys
t = json.load(open(sys.argv[1]))
s = sorted({e['args']['step'] for e in t['traceEvents'] if e['ph'] == 'X'})
assert s == [2, 3], s
assert not [e for e in t['traceEvents'] if e['ph'] == 'X' and e['tid'] == 1], 'MPI spans on 1 rank'
" "$TMP/b.json" || fail "default window on one rank"
ok "default window 2:11 clipped to steps 2..3 on one rank"

# Bad options: one error line, non-zero exit, nothing trained.
bad() { # WHAT PATTERN ARGS...
    local what=$1 pat=$2
    shift 2
    "$BIN" "${run[@]}" --out "$TMP/bad" "$@" > "$TMP/bad.out" 2> "$TMP/bad.err"
    echo $? > "$TMP/bad.rc"
    expect_error "$TMP/bad.rc" "$TMP/bad.err" "$what" "$pat"
    if [ -d "$TMP/bad/checkpoints" ] && [ -n "$(ls -A "$TMP/bad/checkpoints")" ]; then
        fail "$what: a checkpoint was written"
    fi
    rm -rf "$TMP/bad"
}
bad "reversed steps" "--trace-steps '5:2'" --trace "$TMP/x.json" --trace-steps 5:2
bad "steps without a file" "--trace-steps needs --trace" --trace-steps 2:3
bad "steps after the run" "the run ends at step 6" --trace "$TMP/x.json" --trace-steps 9:10
bad "unwritable file" "$TMP/none/x.json" --trace "$TMP/none/x.json"
ok "bad --trace options refused"

if command -v gnuplot > /dev/null; then
    $PY "$SRC/jobs/trace_plot" "$TMP/a/trace.json" -o "$TMP/trace.png" > "$TMP/plot.log" 2>&1 ||
        { cat "$TMP/plot.log"; fail "trace_plot failed"; }
    [ "$(head -c 8 "$TMP/trace.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
        fail "trace_plot did not write a PNG"
    ok "trace_plot: $(cat "$TMP/plot.log")"
else
    echo "SKIP (part): gnuplot not installed, jobs/trace_plot not run"
fi
