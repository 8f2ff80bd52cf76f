#!/usr/bin/env bash
# A real two-node Slurm cluster on one machine: the two "hosts" of tests/netns/hosts.sh
# (network + UTS + mount namespaces joined by a veth pair), slurmctld and a slurmd on hosta, a
# second slurmd on hostb, one munged for both (its socket is a file). The MPI chargan was
# built with talks TCP over veth0 only (Open MPI: btl tcp; MPICH: UCX tcp, hydra on veth0).
# jobs/train.sbatch with --nodes=2 --ntasks-per-node=2:
#   1. runs under both launchers (srun --mpi=pmix or pmi2, --cpu-bind=cores; Open MPI's mpirun
#      --map-by slot:PE=1 --bind-to core or MPICH's mpiexec.hydra -bind-to core, inside the
#      allocation): 4 ranks on 2 nodes, two on each host, each bound
#      to a core of its own (no overlap on a host, no warning), and its final checkpoint is
#      bit-identical to 4 ranks on one host; `chargan data --stats` shows one copy of the data
#      set per node;
#   2. survives a time limit: --time=1 --signal=B:USR1@50, mpirun forwards the warning to the
#      ranks on both hosts, chargan checkpoints, the job requeues itself and resumes there;
#   3. is preempted, under each launcher: two partitions (low, high; preempt/partition_prio,
#      PreemptMode=REQUEUE, GraceTime=30 on low), a job in high takes the nodes, chargan
#      checkpoints within the grace time on both nodes (SIGTERM), the requeued job resumes from
#      that checkpoint on both nodes and ends bit-identical to the uninterrupted run.
# Every wait is for an event, bounded by PATIENCE seconds; the daemons and hosts started here
# are stopped by pid at the end.
#
# usage: tests/slurm/two_nodes.sh CHARGAN_BINARY [SOURCE_DIR]
#   EMNIST_DIR: the EMNIST directory (default SOURCE_DIR/../shared/data/emnist)
#   CHARGAN_SLURM_KEEP=1: keep the scratch directory (logs) after the test
# Needs root, network namespaces and Slurm (installed with apt-get when missing); prints SKIP
# and exits 77 otherwise.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../harness.sh
. "$HERE/../harness.sh"
[ "$(id -u)" = 0 ] || skip "the two-node Slurm test needs root (namespaces, munged, slurmctld, slurmd)"
harness_args "two_nodes.sh CHARGAN_BINARY [SOURCE_DIR]" "$@"
SBATCH_SCRIPT=$SRC/jobs/train.sbatch
[ -f "$SBATCH_SCRIPT" ] || fail "$SBATCH_SCRIPT not found"
PATIENCE=${CHARGAN_SLURM_PATIENCE:-300}
STEPS=100 # of every run: the preempted one must still be training when the preemption comes
# The MPI chargan was built with: its PMI plugin for srun, its launcher, binding and transport.
if "$BIN" --version | grep -q '^MPI: *MPICH'; then
    MPI_FLAVOR=mpich PMI=pmi2 BIND_ARGS='-bind-to core'
else
    MPI_FLAVOR=openmpi PMI=pmix BIND_ARGS='--map-by slot:PE=1 --bind-to core'
fi

# shellcheck source=../netns/hosts.sh
. "$SRC/tests/netns/hosts.sh"
# shellcheck source=cluster.sh
. "$HERE/cluster.sh"
# shellcheck source=jobs.sh
. "$HERE/jobs.sh"
netns_usable || skip "cannot create network/UTS/mount namespaces here (no CAP_SYS_ADMIN?)"
slurm_install || skip "Slurm is not installed and cannot be installed"
if [ "$MPI_FLAVOR" = mpich ]; then
    MPIRUN=$(command -v mpiexec.hydra || command -v mpiexec.mpich) || skip "mpiexec.hydra not installed"
else
    MPIRUN=$(command -v mpirun.openmpi || command -v mpirun) || skip "mpirun not installed"
fi

harness_scratch chargan-slurm2 CHARGAN_SLURM_KEEP
HARNESS_STOP="slurm_stop netns_hosts_stop"
HARNESS_LOGS="jobs/*.out log/*.log"
harness_watchdog "${CHARGAN_SLURM_TIMEOUT:-1100}"

# ---- the cluster ------------------------------------------------------------------------------
netns_hosts_start "$B" || fail "cannot set up the two hosts"
slurm_on() { # NODE CMD...: hosta/hostb are the namespace hosts a/b
    local n=$1
    shift
    on "${n#host}" "$@"
}
SLURM_NODES="hosta=$NET.1 hostb=$NET.2"
SLURM_TEST_CPUS=$(nproc --all) # task/affinity binds to real CPUs: the nodes have this machine's
SLURM_TASK_PLUGIN=task/affinity
# Preemption: a job in partition high takes the nodes of a running job in partition low; the
# low job gets SIGTERM, GraceTime seconds to stop, then it is requeued.
# A requeued job waits cred_expire seconds (default 120) before it may start again; released
# earlier, a job that Slurm killed is refused by slurmd ("Job credential revoked") and fails.
SLURM_CONF_EXTRA="PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
AuthInfo=cred_expire=10"
SLURM_PARTITIONS="PartitionName=low Nodes=ALL Default=YES PriorityTier=1 PreemptMode=REQUEUE GraceTime=30 MaxTime=INFINITE State=UP
PartitionName=high Nodes=ALL PriorityTier=2 PreemptMode=OFF MaxTime=INFINITE State=UP"
slurm_start "$B" || fail "cannot start the two-node Slurm cluster"
for h in a b; do
    on "$h" sh -c 'munge -n | unmunge' >/dev/null 2>&1 || fail "munge does not work on host$h"
done
ok "two-node cluster: slurmctld + slurmd on hosta ($NET.1), slurmd on hostb ($NET.2), one munged (socket file reachable from both hosts)"

mkdir -p "$B/jobs"
cd "$B/jobs" || fail "cd"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI between the hosts: TCP over the veth pair only (the job's environment: sbatch passes
# it on to every task and to the launcher's daemons on hostb).
export OMPI_MCA_btl=tcp,self,vader OMPI_MCA_btl_tcp_if_include=veth0 OMPI_MCA_oob_tcp_if_include=veth0
# MPICH (ch4 over UCX in Debian): UCX over TCP on veth0 between hosts, shared memory within one;
# hydra's control traffic on veth0.
export UCX_NET_DEVICES=veth0 UCX_TLS=tcp,sm,self HYDRA_IFACE=veth0
export CHARGAN_BIN=$BIN CHARGAN_DATA=$DATA CHARGAN_SPLIT=balanced-train-part
export CHARGAN_MODEL=small CHARGAN_BATCH=64 CHARGAN_LOG_EVERY=5 CHARGAN_STEPS=$STEPS
export CHARGAN_CKPT_EVERY=0 CHARGAN_SAMPLE_EVERY=0 CHARGAN_RESUBMIT=requeue
SB=(--nodes=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10)

# ---- helpers ---------------------------------------------------------------------------------
# same A B: chargan compare's verdict on two checkpoints is bit-identical (run on hosta: the
# job's MPI settings name veth0, which only the hosts have)
compare() { on a "$BIN" compare "$1" "$2" --tol 0 2>&1; }
same() { compare "$1" "$2" | grep -q '"bit_identical": true'; }
two_nodes_log() { # LOG WHAT: 4 ranks, 2 nodes, one line per host
    grep -q '4 ranks on 2 nodes' "$1" || fail "$2: not '4 ranks on 2 nodes'"
    for h in hosta hostb; do
        grep -q "cpus: node $h" "$1" || fail "$2: no 'cpus: node $h' line"
    done
}
# bound_log LOG WHAT: on each host the two ranks report CPU sets (sched_getaffinity) that do not
# overlap and run one thread each, and chargan warns of nothing.
bound_log() {
    local h line cpus
    for h in hosta hostb; do
        line=$(grep -m1 "^cpus: node $h " "$1")
        cpus=$(grep -oE 'rank [0-9]+ [0-9,-]+ \(' <<<"$line" | awk '{print $3}' |
            tr ',' '\n' | awk -F- '{e = NF > 1 ? $2 : $1; for (i = $1; i <= e; i++) print i}')
        [ "$(wc -l <<<"$cpus")" = 2 ] || fail "$2: on $h the ranks are not bound to a core each: $line"
        [ -z "$(sort <<<"$cpus" | uniq -d)" ] || fail "$2: ranks on $h share cpus: $line"
        [ "$(grep -o '(1 thread)' <<<"$line" | wc -l)" = 2 ] || fail "$2: not 1 thread per rank on $h: $line"
    done
    ! grep -q 'warning' "$1" || fail "$2: $(grep -m1 warning "$1")"
}

# ---- the reference: 4 ranks on one host, the job's settings ----------------------------------
REF=$B/ref
ref_launch=("$MPIRUN" -np 4 --oversubscribe --bind-to none)
[ "$MPI_FLAVOR" = mpich ] && ref_launch=("$MPIRUN" -n 4)
on a timeout "$PATIENCE" "${ref_launch[@]}" "$BIN" train --seed 1 \
    --out "$REF" --threads 1 --model small --batch 64 --data "$DATA" --split balanced-train-part \
    --steps "$STEPS" --log-every 50 --ckpt-every 0 --sample-every 0 >"$B/ref.log" 2>&1 ||
    { cat "$B/ref.log"; fail "the one-host reference run failed"; }
grep -q '4 ranks on 1 node' "$B/ref.log" || fail "reference: not 4 ranks on 1 node"
REF_CKPT=$(ckpt "$REF" "$STEPS")
[ -f "$REF_CKPT" ] || fail "reference: no checkpoint of step $STEPS"
ok "reference: 4 ranks on hosta, $STEPS steps"

# ---- one copy of the data set per node ------------------------------------------------------
# `chargan data --stats` in the jobs' layout sums the ranks' proportional memory (PSS): 2+2
# ranks on two nodes hold twice what 2 ranks on one node hold, not a copy per rank.
data_stats() { # NODES: the stats line of 2 ranks per node, started by srun
    local id
    id=$(run_job "$B/jobs/data-$1.out" --nodes="$1" --ntasks-per-node=2 --cpus-per-task=1 \
        --time=5 --job-name="data-$1" --output="$B/jobs/data-$1.out" \
        --wrap "srun --mpi=$PMI --cpu-bind=cores '$BIN' data '$DATA' --split bymerge-test --stats") ||
        fail "data job $id ($1 nodes) failed: $(tail -3 "$B/jobs/data-$1.out")"
    grep -q "ranks: $((2 * $1)) on $1 node(s)" "$B/jobs/data-$1.out" ||
        fail "data job $id: not $((2 * $1)) ranks on $1 nodes: $(head -3 "$B/jobs/data-$1.out")"
    grep '^stats: ' "$B/jobs/data-$1.out"
}
field() { sed -n "s/^stats: .* $1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
s2=$(data_stats 2) && s1=$(data_stats 1) || exit 1
p2=$(field pss_sum_mb "$s2") p1=$(field pss_sum_mb "$s1") dmb=$(field data_mb "$s2")
[ -n "$p2" ] && [ -n "$p1" ] && [ -n "$dmb" ] || fail "no stats line: '$s2' '$s1'"
awk -v p2="$p2" -v p1="$p1" -v d="$dmb" 'BEGIN { exit !(p2 < 2 * p1 + 0.5 * d && p2 > 1.5 * d) }' ||
    fail "memory: 2 nodes x 2 ranks use $p2 MB (PSS), 1 node x 2 ranks $p1 MB, data $dmb MB"
ok "data: 4 ranks on 2 nodes use $p2 MB PSS = about 2 x $p1 MB of 2 ranks on 1 node (data $dmb MB per copy): one copy per node"

# ---- 1: both launchers across the two nodes -------------------------------------------------
# Each launcher binds every rank to a core of its own: srun --cpu-bind=cores (task/affinity),
# mpirun --map-by slot:PE=1 --bind-to core.
for L in srun mpirun; do
    id=$(CHARGAN_LAUNCHER=$L CHARGAN_OUT=$B/run-$L CHARGAN_SRUN_ARGS=--cpu-bind=cores \
        CHARGAN_MPIRUN_ARGS=$BIND_ARGS run_job "$B/jobs/two-$L-%j.out" "${SB[@]}" \
        --job-name="two-$L" "$SBATCH_SCRIPT") || fail "$L: job $id failed"
    log=$B/jobs/two-$L-$id.out
    case $L in
    srun) want="launching: srun --mpi=$PMI " ;;
    mpirun) want="launching: $MPIRUN -n" ;;
    esac
    grep -q "$want" "$log" || fail "$L: expected /$want/ in $log"
    grep -qE 'on 2 node\(s\) \[hosta,hostb\]' "$log" || fail "$L: the job did not get hosta and hostb"
    two_nodes_log "$log" "$L"
    bound_log "$log" "$L"
    same "$(ckpt "$B/run-$L" "$STEPS")" "$REF_CKPT" ||
        fail "$L: final checkpoint differs from the one-host run: $(compare "$(ckpt "$B/run-$L" "$STEPS")" "$REF_CKPT" | tail -3)"
    ok "$L launcher: job $id, 4 ranks on 2 nodes (hosta, hostb), TCP over veth0, each bound to a core of its own ($(grep -h '^cpus: ' "$log" | tr '\n' ' ')); step $STEPS bit-identical to 4 ranks on one host"
done

# ---- 2: a time limit across the two nodes (mpirun launcher) ---------------------------------
# The warning (--signal=B:USR1@50) reaches the batch shell on hosta, mpirun forwards it to its
# ranks on both hosts (hostb's through the daemon Open MPI started there with srun), chargan
# checkpoints, the script requeues the job, the restart resumes on both nodes. Slurm may send
# the warning up to a minute early (the resolution of its timer), so right after the start:
# the job counts as started at chargan's first line, not at a step.
OUTT=$B/run-timelimit
id=$(CHARGAN_LAUNCHER=mpirun CHARGAN_OUT=$OUTT CHARGAN_STEPS=100000 CHARGAN_LOG_EVERY=10 \
    CHARGAN_MAX_RESTARTS=1 start_job "$B/jobs/timelimit-%j.out" '^chargan train: ' "${SB[@]}" --time=1 \
    --signal=B:USR1@50 --job-name=timelimit "$SBATCH_SCRIPT") || fail "time-limit job $id did not start"
log=$B/jobs/timelimit-$id.out
t0=$SECONDS
until grep -q 'restart 1)' "$log" 2>/dev/null; do
    [ $((SECONDS - t0)) -gt "$PATIENCE" ] && fail "time-limit job $id was not requeued and restarted"
    sleep 0.5
done
grep -q 'received SIGUSR1' "$log" || fail "job $id: the time-limit warning did not reach the shell"
n=$(grep -oE 'stopped by SIGUSR1 after step [0-9]+' "$log" | head -1 | grep -oE '[0-9]+$')
[ -n "$n" ] && [ "$n" -gt 0 ] || fail "job $id: chargan did not stop on the warning"
[ -f "$(ckpt "$OUTT" "$n")" ] || fail "job $id: no checkpoint of step $n"
grep -q 'requeueing job' "$log" || fail "job $id: the script did not requeue"
wait_log "$log" "^resume: .*\\(step $n, " "$PATIENCE" || fail "requeued job $id did not resume from step $n"
# End the restart now rather than at its own warning (the script holds the signal back until
# chargan is ready, and chargan stops after at least one more step).
sl scancel --batch --signal=USR1 "$id"
wait_job "$id" "$PATIENCE" || fail "requeued job $id did not end cleanly"
n2=$(grep -oE 'stopped by SIGUSR1 after step [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
[ "$n2" -gt "$n" ] || fail "job $id: the restart did not get past step $n"
grep -q 'not requeueing: 1 restarts' "$log" || fail "job $id: CHARGAN_MAX_RESTARTS not honoured"
[ "$(grep -c '4 ranks on 2 nodes' "$log")" = 2 ] || fail "job $id: not 4 ranks on 2 nodes in both starts"
# unbound ranks: mpirun's daemon on hostb must not confine its ranks to the CPU of a one-CPU step
! grep -q 'warning: node' "$log" || fail "job $id: $(grep -m1 'warning: node' "$log")"
ok "mpirun: time limit of job $id: warning SIGUSR1 to the shell -> through mpirun to the ranks on both nodes -> checkpoint at step $n -> requeued -> resumed on 2 nodes from step $n, stopped at $n2"

# ---- 3: preemption --------------------------------------------------------------------------
# preempt LAUNCHER: a job in low, preempted by one in high once it trains; chargan checkpoints
# within the grace time, the job is requeued and its last checkpoint equals the uninterrupted
# run's.
preempt() {
    local L=$1 out=$B/run-preempt-$1 id log hid t_pre t_seen n sig t_sig t_sig_s t_ck sig_to_ck
    id=$(CHARGAN_LAUNCHER=$L CHARGAN_OUT=$out start_job "$B/jobs/low-$L-%j.out" '^step 10/' \
        "${SB[@]}" --partition=low --job-name="low-$L" "$SBATCH_SCRIPT") ||
        fail "low job $id ($L): training did not start"
    log=$B/jobs/low-$L-$id.out
    t_pre=$(date +%s.%N)
    hid=$(sl sbatch --parsable --partition=high --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 \
        --time=5 --job-name=high --output="$B/jobs/high-%j.out" --wrap 'srun hostname') ||
        fail "sbatch (high)"
    # GraceTime=30: chargan must have checkpointed by then, or Slurm kills it; the bound is
    # wider so that a late line shows up as "killed", not as a timeout of this wait.
    wait_log "$log" 'stopped by .* after step' "$PATIENCE" ||
        fail "low job $id ($L): chargan did not stop after the preemption"
    t_seen=$(date +%s.%N)
    n=$(grep -oE 'stopped by .* after step [0-9]+' "$log" | tail -1)
    sig=${n#stopped by }
    sig=${sig% after step *}
    n=${n##* }
    [ "$n" -gt 0 ] && [ "$n" -lt "$STEPS" ] || fail "low job $id ($L): stopped at step '$n'"
    # srun's tasks get Slurm's SIGTERM themselves, on both nodes; under mpirun it reaches the
    # ranks through the launcher's daemons, rank 0's possibly by way of another rank
    case $L in
    srun) [ "$sig" = SIGTERM ] || fail "low job $id: stopped by $sig, expected Slurm's SIGTERM" ;;
    *) [ "$sig" = SIGTERM ] || [ "$sig" = "a signal on another rank" ] ||
        fail "low job $id ($L): stopped by $sig" ;;
    esac
    [ -f "$(ckpt "$out" "$n")" ] || fail "low job $id ($L): no checkpoint of step $n"
    wait_job "$hid" "$PATIENCE" || fail "high job $hid failed"
    [ "$(sort -u "$B/jobs/high-$hid.out" | tr '\n' ' ')" = "hosta hostb " ] ||
        fail "high job $hid did not run on both nodes: $(cat "$B/jobs/high-$hid.out")"
    # The requeued low job (same id) resumes on both nodes and finishes the run.
    wait_job "$id" "$PATIENCE" || fail "requeued low job $id ($L) did not finish"
    grep -qE 'chargan exited with status 0|launcher exited with status [0-9]+ after chargan stopped with a checkpoint' "$log" ||
        fail "low job $id ($L): the preempted run was not taken as stopped with a checkpoint"
    grep -q 'requeueing job' "$log" || fail "low job $id ($L): the script did not requeue"
    grep -q "^resume: .*(step $n, " "$log" || fail "low job $id ($L): did not resume from step $n"
    grep -q 'job [0-9]* (restart 1) on 2 node(s)' "$log" || fail "low job $id ($L): no restart on 2 nodes"
    [ "$(grep -c '4 ranks on 2 nodes' "$log")" = 2 ] || fail "low job $id ($L): not 4 ranks on 2 nodes twice"
    same "$(ckpt "$out" "$STEPS")" "$REF_CKPT" ||
        fail "preempted run ($L): final checkpoint differs from the uninterrupted run: $(compare "$(ckpt "$out" "$STEPS")" "$REF_CKPT" | tail -3)"
    # Timings: Slurm's first SIGTERM to the job on either node (slurmstepd logs it as the step's or
    # the job's cancellation) -> the checkpoint file written; the high job's submission -> the stop
    # line seen here.
    t_sig=$(cat "$B"/log/slurmd-host[ab].log | sed -n "s/^\[\([0-9T:.-]*\)\] \[$id\.[0-9a-z]*\] error: \*\*\* \(STEP\|JOB\) ${id}[.0-9]* ON host[ab] CANCELLED.*/\1/p" |
        sort | head -1)
    t_sig_s=$(date -d "$t_sig" +%s.%N 2>/dev/null) || t_sig_s=
    t_ck=$(stat -c %.3Y "$(ckpt "$out" "$n")")
    sig_to_ck=$(awk -v a="$t_sig_s" -v b="$t_ck" 'BEGIN { if (a == "") print "?"; else printf "%.2f", b - a }')
    awk -v a="$t_sig_s" -v b="$t_ck" 'BEGIN { exit !(a == "" || b - a < 30) }' ||
        fail "low job $id ($L): the checkpoint came $sig_to_ck s after the signal, beyond GraceTime"
    ok "preemption ($L): high job $hid took the nodes of low job $id; chargan stopped by $sig after step $n" \
        "(checkpoint written ${sig_to_ck} s after Slurm's SIGTERM at ${t_sig:-?}; stop line" \
        "$(awk -v a="$t_pre" -v b="$t_seen" 'BEGIN { printf "%.1f", b - a }') s after the high job's submission; GraceTime 30 s);" \
        "requeued, resumed from step $n on 2 nodes, step $STEPS bit-identical to the uninterrupted run"
}
preempt srun
preempt mpirun
echo "PASS: two-node Slurm tests in $((SECONDS - T_START)) s"
