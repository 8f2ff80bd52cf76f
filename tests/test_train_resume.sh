# Checkpoints in training: exact resume, resume on another rank count, a finished run, signals
# (SIGTERM to every rank as Slurm sends it, SIGUSR1 through the launcher, a second SIGINT), and
# kill -9 of the whole job while checkpoints are written.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
BASE=(--data "$DATA" --split bymerge-test --limit 20000 --model small --log-every 10)

train() { # NP OUT ARGS...
    local np=$1 out=$2
    shift 2
    mpirun_np "$np" "$BIN" train "${BASE[@]}" --out "$TMP/$out" "$@" >>"$TMP/$out.log" 2>&1 ||
        { cat "$TMP/$out.log"; fail "training $out on $np ranks failed"; }
}
ck() { echo "$TMP/$1/checkpoints/step-$(printf %08d "$2").h5"; }
same() { # A B: byte-equal parameters and Adam state
    "$BIN" compare "$1" "$2" --tol 0 >"$TMP/cmp.json" || { cat "$TMP/cmp.json"; fail "$3"; }
    grep -q '"bit_identical": true' "$TMP/cmp.json" || { cat "$TMP/cmp.json"; fail "$3"; }
    ok "$3"
}

# 200 steps straight and 100 + resume + 100 give byte-equal parameters (2 ranks), and a
# byte-equal EMA of the generator (--ema 0.999: small keeps none by default; compare checks
# the EMA when both files have one).
train 2 straight --steps 200 --ckpt-every 100 --keep 0 --ema 0.999 --check-every 50
train 2 split --steps 100 --ema 0.999
train 2 split --steps 200 --resume auto --ema 0.999
grep -q "resume: .*step-00000100.h5 (step 100" "$TMP/split.log" || fail "no resume message"
grep -q "check: step 200: parameters and EMA bit-identical on all 2 ranks" "$TMP/straight.log" ||
    { cat "$TMP/straight.log"; fail "--check-every does not cover the EMA"; }
same "$(ck straight 200)" "$(ck split 200)" "200 straight == 100 + resume + 100 (bit-identical)"
grep -q '"ema": "both", .*"ema_bit_identical": true' "$TMP/cmp.json" ||
    { cat "$TMP/cmp.json"; fail "EMA not compared or not identical after resume"; }
ok "the generator's EMA too: 200 straight == 100 + resume + 100"
# The resumed run also continues the Adam counters: moments are part of what is compared by
# 'compare --tol 0' only through the parameters, so check the step-100 checkpoints directly.
same "$(ck straight 100)" "$(ck split 100)" "step-100 checkpoints identical"

# A checkpoint without EMA (what chargan wrote before it had one; here --ema 0) resumes into
# a run with EMA: the EMA starts from its weights, and training is unchanged (the EMA never
# feeds back), so the parameters still equal the straight run's.
train 2 old --steps 100 --ema 0
"$BIN" info "$(ck old 100)" | grep -q "^ema: *absent" || fail "--ema 0 wrote an EMA"
train 2 old --steps 200 --resume auto --ema 0.999
grep -q "resume: the checkpoint has no EMA: it starts from its weights" "$TMP/old.log" ||
    { cat "$TMP/old.log"; fail "resume from a checkpoint without EMA: no message"; }
"$BIN" compare "$(ck straight 200)" "$(ck old 200)" --tol 0 >"$TMP/cmp.json"
grep -q '"max_rel_diff_g": 0.0, "max_rel_diff_d": 0.0, .*"ema": "both", .*"ema_bit_identical": false' \
    "$TMP/cmp.json" || { cat "$TMP/cmp.json"; fail "resume of a checkpoint without EMA"; }
ok "checkpoint without EMA resumed with one: same parameters, EMA restarted from the weights"

# Re-running a finished run does nothing but say so.
train 2 split --steps 200 --resume auto
grep -q "already complete (step 200 of 200)" "$TMP/split.log" || fail "finished run not recognized"
ok "finished run: nothing to do"

# Resume on another rank count: 10 steps on 2 ranks, the rest of 20 on 4, against 20 straight
# on 2: bit-identical, as training is on any rank count (tests/test_train_mpi.sh).
train 2 straight20 --steps 20
train 2 other --steps 10
train 4 other --steps 20 --resume auto
"$BIN" compare "$(ck straight20 20)" "$(ck other 20)" --tol 0 >"$TMP/cmp.json" ||
    { cat "$TMP/cmp.json"; fail "resume on 4 ranks drifted"; }
ok "resume on 4 ranks of a 2-rank run: $(cut -c1-300 "$TMP/cmp.json" | sed 's/.*"max_rel/"max_rel/')"

# A checkpoint of another model is refused, clearly.
mkdir -p "$TMP/wrong/checkpoints"
cp "$(ck straight 200)" "$TMP/wrong/checkpoints/"
mpirun_np 2 "$BIN" train --data "$DATA" --split bymerge-test --model dcgan --steps 300 \
    --out "$TMP/wrong" --resume auto >"$TMP/wrong.out" 2>"$TMP/wrong.err"
echo $? >"$TMP/wrong.rc"
expect_error "$TMP/wrong.rc" "$TMP/wrong.err" "checkpoint of another model" "small" "dcgan"

# wait_for_step OUT N: waits until OUT/metrics.jsonl reports step N (a bound of 600 s only
# against a hang: a loaded machine is slow, not wrong).
wait_for_step() {
    local t0=$SECONDS
    until grep -q "\"step\": $2," "$TMP/$1/metrics.jsonl" 2>/dev/null; do
        [ $((SECONDS - t0)) -lt 600 ] || fail "$1 never reached step $2"
        sleep 0.1
    done
}

# SIGTERM to every rank (what Slurm does at a time limit): finish the step, checkpoint,
# exit 0; the resumed run matches the uninterrupted one bit for bit.
setsid bash -c "exec timeout 300 $(launcher 4) '$BIN' train ${BASE[*]} --log-every 1 --steps 200 --out '$TMP/term'" >"$TMP/term.log" 2>&1 &
job=$!
wait_for_step term 20
t0=$(date +%s.%N)
# Only the ranks (their command line starts with the binary), not mpirun: Slurm signals tasks.
pkill -TERM -f "^$BIN train .*$TMP/term" || fail "no ranks to signal"
wait $job
rc=$?
t1=$(date +%s.%N)
[ $rc = 0 ] || { cat "$TMP/term.log"; fail "SIGTERM: exit $rc, expected 0"; }
grep -q "stopped by SIGTERM after step" "$TMP/term.log" || { cat "$TMP/term.log"; fail "SIGTERM: no stop message"; }
grep -q "resume auto" "$TMP/term.log" || fail "SIGTERM: no resume hint"
stopped=$(sed -n 's/.*stopped by SIGTERM after step \([0-9]*\).*/\1/p' "$TMP/term.log" | head -1)
ok "SIGTERM to 4 ranks: checkpoint at step $stopped, exit 0, $(echo "$t1 - $t0" | bc) s after the signal"
train 4 term --steps 200 --resume auto --log-every 0
train 4 term4 --steps 200 --log-every 0
same "$(ck term4 200)" "$(ck term 200)" "SIGTERM + resume == uninterrupted (4 ranks)"

# SIGUSR1 to the launcher only (Open MPI's mpirun and MPICH's mpiexec.hydra forward it; what
# jobs/train.sbatch sends before a limit).
setsid bash -c "exec timeout 300 $(launcher 2) '$BIN' train ${BASE[*]} --log-every 1 --steps 500 --out '$TMP/usr1'" >"$TMP/usr1.log" 2>&1 &
job=$!
wait_for_step usr1 10
pkill -USR1 -f "^$MPIEXEC .*$TMP/usr1" || fail "no $MPIEXEC to signal"
wait $job
rc=$?
[ $rc = 0 ] || { cat "$TMP/usr1.log"; fail "SIGUSR1: exit $rc"; }
grep -q "stopped by SIGUSR1" "$TMP/usr1.log" || { cat "$TMP/usr1.log"; fail "SIGUSR1: no stop message"; }
ok "SIGUSR1 via $(basename "$MPIEXEC"): checkpoint and exit 0"

# A second SIGINT exits at once, leaving no partial checkpoint under a final name.
"$BIN" train "${BASE[@]}" --log-every 1 --steps 100000 --out "$TMP/int" >"$TMP/int.log" 2>&1 &
pid=$!
wait_for_step int 5
kill -INT $pid
sleep 0.05  # two signals sent at once would merge into one
kill -INT $pid
wait $pid
rc=$?
[ $rc = 130 ] || { cat "$TMP/int.log"; fail "second SIGINT: exit $rc, expected 130 (at once)"; }
ls "$TMP"/int/checkpoints/.*.tmp >/dev/null 2>&1 && ok "double SIGINT left only a temporary file"
for f in "$TMP"/int/checkpoints/step-*.h5; do
    [ -e "$f" ] || continue
    "$BIN" info "$f" >/dev/null 2>&1 || fail "second SIGINT left a bad checkpoint $f"
done
ok "double SIGINT: exit $rc, no bad checkpoint"

# kill -9 of the whole job at random moments while it checkpoints every step: the newest
# surviving checkpoint always opens and --resume auto continues from it.
for try in $(seq 1 10); do
    rm -f "$TMP/kill.log" # the wait below must see this try's lines only
    setsid bash -c "exec timeout 300 $(launcher 2) '$BIN' train ${BASE[*]} --log-every 1 --steps 100000 --ckpt-every 1 --keep 2 \
        --out '$TMP/kill' $( [ $try -gt 1 ] && echo --resume auto)" >"$TMP/kill.log" 2>&1 &
    job=$!
    # A random moment once this try trains (start-up time varies with the machine's load).
    t0=$SECONDS
    until [ "$(grep -sc '^step ' "$TMP/kill.log")" -ge 2 ] 2>/dev/null; do
        [ $((SECONDS - t0)) -lt 600 ] || { cat "$TMP/kill.log"; fail "try $try never trained"; }
        sleep 0.05
    done
    sleep "$(awk -v s=$RANDOM 'BEGIN { printf "%.2f", (s % 150) / 100 }')"
    # The whole job: launcher and ranks (Open MPI may put ranks in their own process group).
    kill -9 -- -$job 2>/dev/null
    pkill -9 -f "^$BIN train .*$TMP/kill" 2>/dev/null
    wait $job 2>/dev/null
    while pgrep -f "^$BIN train .*$TMP/kill" >/dev/null; do sleep 0.1; done
    sleep 0.2
    newest=$(ls "$TMP"/kill/checkpoints/step-*.h5 2>/dev/null | sort | tail -1)
    [ -n "$newest" ] || { [ $try = 1 ] && continue; fail "try $try: no checkpoint survived"; }
    "$BIN" info "$newest" >/dev/null 2>&1 || fail "try $try: newest checkpoint $newest does not open"
    [ $try = 1 ] || grep -q "resume: " "$TMP/kill.log" || { cat "$TMP/kill.log"; fail "try $try: did not resume"; }
done
ok "10 x kill -9 during checkpointing: newest checkpoint always valid, resume continued ($(basename "$newest"))"
echo "all resume tests passed"
