#!/usr/bin/env bash
# A real single-node Slurm cluster runs jobs/train.sbatch:
#   1. srun launcher and mpirun launcher (at the same time): sbatch --wait succeeds, the job log
#      is %x-%j.out, checkpoints and samples exist, the run used 2 ranks.
#   2. srun: SIGTERM to the job step (what Slurm sends tasks at a time limit or preemption)
#      leaves a checkpoint; a resubmitted job resumes from it (step N > 0); SIGUSR1 to the batch
#      shell (the --signal=B:USR1 warning) is forwarded through srun and stops it again; a
#      third job finishes the run.
#   3. mpirun: a real time limit (--time=1 --signal=B:USR1@50): the warning reaches the batch
#      shell, is forwarded through mpirun, chargan checkpoints, the script requeues the job, the
#      requeued job (same id, restart 1) resumes from the checkpoint.
#   4. chargan refuses to run as singletons under a 2-task step (srun --mpi=none).
# Everything runs under timeouts; the daemons started here are stopped by pid at the end.
#
# usage: tests/slurm/run.sh CHARGAN_BINARY [SOURCE_DIR]
#   EMNIST_DIR: the EMNIST directory (default SOURCE_DIR/../shared/data/emnist)
#   CHARGAN_SLURM_KEEP=1: keep the scratch directory (logs) after the test
# Needs root (it installs packages and starts daemons); prints SKIP and exits 0 otherwise.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HARNESS_SKIP_RC=0
# shellcheck source=../harness.sh
. "$HERE/../harness.sh"
[ "$(id -u)" = 0 ] || skip "the Slurm test needs root (installs slurm-wlm/munge, starts munged/slurmctld/slurmd)"
harness_args "run.sh CHARGAN_BINARY [SOURCE_DIR]" "$@"
SBATCH_SCRIPT=$SRC/jobs/train.sbatch
[ -f "$SBATCH_SCRIPT" ] || fail "$SBATCH_SCRIPT not found"
# The bound of every wait on an event (a log line, a job state).
PATIENCE=${CHARGAN_SLURM_PATIENCE:-300}

# shellcheck source=cluster.sh
. "$HERE/cluster.sh"
# shellcheck source=jobs.sh
. "$HERE/jobs.sh"
slurm_install || fail "cannot install Slurm"

harness_scratch chargan-slurm CHARGAN_SLURM_KEEP
HARNESS_STOP=slurm_stop
HARNESS_LOGS="jobs/*.out log/slurmctld.log"
# The whole test must not hang: a watchdog ends it (and the exit trap stops the daemons).
harness_watchdog "${CHARGAN_SLURM_TIMEOUT:-900}"

slurm_start "$B" || fail "cannot start the Slurm cluster"

mkdir -p "$B/jobs"
cd "$B/jobs" || fail "cd"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The job's settings (jobs/train.sbatch reads them; sbatch passes the environment on).
export CHARGAN_BIN=$BIN CHARGAN_DATA=$DATA CHARGAN_SPLIT=balanced-train-part
export CHARGAN_MODEL=small CHARGAN_BATCH=64 CHARGAN_LOG_EVERY=5
export CHARGAN_CKPT_EVERY=0 CHARGAN_SAMPLE_EVERY=0 CHARGAN_RESUBMIT=none
SB=(-N 1 -n 2 -c 1 --time=5)

# ---- 3 (submitted first: it waits for Slurm's time-limit warning while 1 and 2 run) ----------
OUT3=$B/run-timelimit
id3=$(CHARGAN_LAUNCHER=mpirun CHARGAN_OUT=$OUT3 CHARGAN_STEPS=100000 CHARGAN_LOG_EVERY=10 \
    CHARGAN_RESUBMIT=requeue CHARGAN_MAX_RESTARTS=1 \
    sl sbatch --parsable "${SB[@]}" --time=1 --signal=B:USR1@50 --job-name=timelimit \
    "$SBATCH_SCRIPT") || fail "sbatch (time limit job)"

# ---- 1: both launchers, sbatch --wait ----------------------------------------------------------
ok_pids=()
for L in srun mpirun; do
    (
        CHARGAN_LAUNCHER=$L CHARGAN_OUT=$B/run-$L CHARGAN_STEPS=30 CHARGAN_CKPT_EVERY=15 \
            CHARGAN_SAMPLE_EVERY=15 timeout "$PATIENCE" sbatch --wait --parsable "${SB[@]}" \
            --job-name="ok-$L" "$SBATCH_SCRIPT" >"$B/ok-$L.id"
        echo $? >"$B/ok-$L.rc"
    ) &
    ok_pids+=($!)
done
wait "${ok_pids[@]}"
for L in srun mpirun; do
    id=$(head -1 "$B/ok-$L.id")
    rc=$(cat "$B/ok-$L.rc")
    log=$B/jobs/ok-$L-$id.out
    [ "$rc" = 0 ] || fail "$L: sbatch --wait returned $rc (job $id)"
    [ -f "$log" ] || fail "$L: job log $log (%x-%j.out) missing"
    grep -q "launcher $L" "$log" || fail "$L: log does not name the launcher"
    # The launcher of the MPI chargan was built with: srun's PMI plugin, or the MPI's mpirun.
    case "$L:$("$BIN" --version | grep -c '^MPI: *MPICH')" in
    srun:0) want='launching: srun --mpi=pmix ' ;;
    srun:1) want='launching: srun --mpi=pmi2 ' ;;
    mpirun:0) want='launching: [^ ]*mpirun[^ ]* -np 2 ' ;;
    mpirun:1) want='launching: [^ ]*mpiexec[^ ]* -n 2 ' ;;
    esac
    grep -q "$want" "$log" || fail "$L: expected /$want/ in $log"
    grep -q '2 ranks on 1 node, 1 BLAS thread each' "$log" || fail "$L: not 2 ranks x 1 thread"
    grep -q '"summary": true.*"steps": 30' "$log" || fail "$L: no summary of 30 steps"
    for s in 15 30; do
        [ -f "$(ckpt "$B/run-$L" $s)" ] || fail "$L: checkpoint of step $s missing"
        for ext in h5 png; do
            f=$(printf '%s/samples/step-%08d.%s' "$B/run-$L" $s $ext)
            [ -s "$f" ] || fail "$L: sample $f missing"
        done
    done
    "$BIN" info "$(ckpt "$B/run-$L" 30)" | grep -qE '^step: +30$' ||
        fail "$L: chargan info does not read step 30 from the final checkpoint"
    ok "$L launcher: job $id completed (sbatch --wait 0), log $(basename "$log"), checkpoints and samples of steps 15 and 30"
done

# ---- 2: srun, SIGTERM to the step, resume, SIGUSR1 to the batch shell, finish ----------------
OUT2=$B/run-signal
export CHARGAN_LAUNCHER=srun CHARGAN_OUT=$OUT2 CHARGAN_STEPS=100
id=$(sl sbatch --parsable "${SB[@]}" --job-name=sig "$SBATCH_SCRIPT") || fail sbatch
wait_log "sig-$id.out" '^step 10/' "$PATIENCE" || fail "srun job $id: training did not start"
sl scancel --signal=TERM "$id" # to the job step: the tasks themselves
wait_job "$id" "$PATIENCE" || fail "srun job $id did not end cleanly after SIGTERM"
n1=$(stopped_step "sig-$id.out")
[ -n "$n1" ] && [ "$n1" -ge 10 ] && [ "$n1" -lt 100 ] || fail "srun job $id: no 'stopped by' line"
grep -q "stopped by SIGTERM after step $n1" "sig-$id.out" || fail "srun job $id: not stopped by SIGTERM"
[ -f "$(ckpt "$OUT2" "$n1")" ] || fail "no checkpoint of step $n1 after SIGTERM"
ok "srun: SIGTERM to the tasks of job $id: checkpoint at step $n1, exit 0"

# the second job chains a follow-up job itself (CHARGAN_RESUBMIT=chain) when it is stopped
id=$(CHARGAN_RESUBMIT=chain sl sbatch --parsable "${SB[@]}" --job-name=sig "$SBATCH_SCRIPT") || fail sbatch
wait_log "sig-$id.out" "^resume: .*\\(step $n1, " "$PATIENCE" || fail "job $id did not resume from step $n1"
wait_log "sig-$id.out" "^step $(((n1 / 5 + 1) * 5))/" "$PATIENCE" || fail "job $id: no progress after resume"
sl scancel --batch --signal=USR1 "$id" # as --signal=B:USR1@... does before the limit
wait_job "$id" "$PATIENCE" || fail "srun job $id did not end cleanly after SIGUSR1"
grep -q 'received SIGUSR1' "sig-$id.out" || fail "job $id: the batch shell saw no SIGUSR1"
n2=$(stopped_step "sig-$id.out")
[ -n "$n2" ] && [ "$n2" -gt "$n1" ] && [ "$n2" -lt 100 ] ||
    fail "job $id: SIGUSR1 through srun did not stop chargan (stopped at '${n2:-}')"
[ -f "$(ckpt "$OUT2" "$n2")" ] || fail "no checkpoint of step $n2 after SIGUSR1"
next=$(sed -n 's/.*follow-up job \([0-9]*\) continues.*/\1/p' "sig-$id.out")
[ -n "$next" ] || fail "job $id did not submit a follow-up job (CHARGAN_RESUBMIT=chain)"
ok "srun: job $id resumed from step $n1; SIGUSR1 to the batch shell reached the tasks: checkpoint at step $n2; follow-up job $next submitted"

wait_job "$next" "$PATIENCE" || fail "follow-up job $next (finishing the run) failed"
grep -q "^resume: .*(step $n2, " "sig-$next.out" || fail "job $next did not resume from step $n2"
grep -q '"summary": true' "sig-$next.out" || fail "job $next: no summary"
[ -f "$(ckpt "$OUT2" 100)" ] || fail "no final checkpoint of step 100"
ok "srun: follow-up job $next resumed from step $n2 and finished the run (step 100)"

# ---- 2b: a warning signal that comes before chargan is ready is held back, not fatal ----------
OUT2b=$B/run-early
id=$(CHARGAN_LAUNCHER=mpirun CHARGAN_OUT=$OUT2b sl sbatch --parsable "${SB[@]}" --job-name=early \
    "$SBATCH_SCRIPT") || fail sbatch
wait_log "early-$id.out" '\] launching: ' "$PATIENCE" || fail "job $id did not start"
sl scancel --batch --signal=USR1 "$id" # while chargan loads the data
wait_job "$id" "$PATIENCE" || fail "mpirun job $id did not survive an early SIGUSR1"
n=$(stopped_step "early-$id.out")
[ -n "$n" ] && [ -f "$(ckpt "$OUT2b" "$n")" ] || fail "job $id: no checkpoint after the early SIGUSR1"
ok "mpirun: SIGUSR1 during start-up held back until chargan was ready: checkpoint at step $n, exit 0"
unset CHARGAN_LAUNCHER CHARGAN_OUT CHARGAN_STEPS

# ---- 3: the time-limit job: warning -> checkpoint -> requeue -> resume ------------------------
log3=$B/jobs/timelimit-$id3.out
# Slurm holds a requeued job for about 2 minutes (Reason=BeginTime); release it at once.
t0=$SECONDS
until grep -q 'restart 1)' "$log3" 2>/dev/null; do
    release_held "$id3"
    [ $((SECONDS - t0)) -gt "$PATIENCE" ] && fail "time-limit job $id3 was not requeued and restarted" \
        "(state $(job_field "$id3" JobState), reason $(job_field "$id3" Reason))"
    sleep 0.5
done
grep -q 'received SIGUSR1' "$log3" || fail "job $id3: the time-limit warning did not reach the shell"
n3=$(stopped_step "$log3")
[ -n "$n3" ] && [ "$n3" -gt 0 ] || fail "job $id3: chargan did not stop after the warning"
[ -f "$(ckpt "$OUT3" "$n3")" ] || fail "job $id3: no checkpoint of step $n3"
grep -q 'requeueing job' "$log3" || fail "job $id3: the script did not requeue"
wait_log "$log3" "^resume: .*\\(step $n3, " "$PATIENCE" ||
    fail "requeued job $id3 did not resume from step $n3"
# End it now rather than at its own time-limit warning (10 s into the run, maybe before a step
# is logged on a loaded machine): the script holds the signal back until chargan is ready, and
# chargan stops after at least one step, so the restart must get past step n3 either way.
sl scancel --batch --signal=USR1 "$id3"
wait_job "$id3" "$PATIENCE" release || fail "requeued job $id3 did not end cleanly"
n4=$(stopped_step "$log3")
[ "$n4" -gt "$n3" ] || fail "job $id3: restart did not get past step $n3"
grep -q 'not requeueing: 1 restarts' "$log3" || fail "job $id3: CHARGAN_MAX_RESTARTS not honoured"
ok "mpirun: time limit of job $id3: warning SIGUSR1 -> checkpoint at step $n3 -> requeued (restart 1) -> resumed from step $n3, stopped at $n4"

# ---- 4: singletons under a 2-task step are refused ---------------------------------------------
args=(train --data "$DATA" --split balanced-train-part --model small --steps 3 --log-every 0)
timeout "$PATIENCE" srun -N 1 -n 2 --mpi=none "$BIN" "${args[@]}" --out "$B/single1" >"$B/single1.log" 2>&1
rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "srun -n 2 --mpi=none: exit status $rc, expected a failure"
[ ! -d "$B/single1/checkpoints" ] || fail "srun -n 2 --mpi=none trained anyway"
grep -qE 'chargan: error|OMPI was not built with SLURM' "$B/single1.log" ||
    fail "srun -n 2 --mpi=none: no clear message"
ok "srun -n 2 --mpi=none refused: $(grep -m1 -oE 'chargan: error.*|OMPI was not built with SLURM.*' "$B/single1.log")"
# Without the step id Open MPI does not see it was launched by srun, and each task comes up as
# a singleton ("rank 0 of 1"): the silent mis-launch that chargan itself must catch.
timeout "$PATIENCE" srun -N 1 -n 2 --mpi=none env -u SLURM_STEP_ID "$BIN" "${args[@]}" \
    --out "$B/single2" >"$B/single2.log" 2>&1
rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "singleton tasks: exit status $rc, expected a failure"
[ ! -d "$B/single2/checkpoints" ] || fail "singleton tasks trained anyway"
n=$(grep -c 'chargan: error: train: this is a single MPI rank but SLURM_NTASKS=2' "$B/single2.log")
[ "$n" = 2 ] || { cat "$B/single2.log" >&2; fail "singleton tasks: $n refusals, expected 2"; }
ok "singleton tasks under a 2-task step refused by chargan (both tasks)"

echo "PASS: Slurm tests in $((SECONDS - T_START)) s"
