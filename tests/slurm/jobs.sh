# shellcheck shell=bash
# Waiting on Slurm jobs in the cluster tests, through slurm_client (tests/slurm/cluster.sh).
# Every wait is for an event (a job state, a log line) and gives up only after its bound: a
# loaded machine makes the jobs slow, not wrong; the bound only turns a hang into a failure.
#     sl CMD...              a client command (sinfo, sbatch, ...) under a timeout
#     job_field ID FIELD     a field of scontrol show job
#     release_held ID        a requeued job held by Slurm's requeue delay (Reason=BeginTime,
#                            about 2 min) is released at once, to keep the tests short
#     wait_job ID SECONDS [release]  until the job and its step daemons end; 0 for COMPLETED
#                            with exit code 0;
#                            "release": release_held while it waits
#     wait_log FILE ERE SECONDS      until a line of FILE matches
#     stopped_step LOG       N of the last "stopped by ... after step N" line
#     ckpt DIR N             the path of the checkpoint of step N in a run directory

sl() { slurm_client timeout 20 "$@"; }

job_field() {
    sl scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

release_held() {
    [ "$(job_field "$1" JobState)" = PENDING ] && [ "$(job_field "$1" Reason)" = BeginTime ] &&
        sl scontrol update JobId="$1" StartTime=now >/dev/null 2>&1
    return 0
}

wait_job() {
    local id=$1 limit=$2 release=${3:-} t0=$SECONDS st ec
    while :; do
        st=$(job_field "$id" JobState)
        case $st in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
            break ;;
        PENDING) [ "$release" = release ] && release_held "$id" ;;
        esac
        if [ $((SECONDS - t0)) -gt "$limit" ]; then
            echo "job $id still $st after $limit s" >&2
            sl scancel "$id"
            return 1
        fi
        sleep 0.5
    done
    ec=$(job_field "$id" ExitCode)
    # A job is over when its step daemons are: they finish the MPI's clean-up (PMIx server,
    # shared-memory files) after the job's state has changed, and the next job's ranks must
    # not start while it runs.
    local t1=$SECONDS
    while pgrep -f "^slurmstepd: \[$id\." >/dev/null; do
        [ $((SECONDS - t1)) -gt 60 ] && { echo "job $id: step daemons still running" >&2; break; }
        sleep 0.2
    done
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] && return 0
    echo "job $id: state $st, exit code $ec" >&2
    return 1
}

wait_log() {
    local t0=$SECONDS
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ $((SECONDS - t0)) -gt "$3" ] && { echo "no /$2/ in $1 after $3 s" >&2; return 1; }
        sleep 0.2
    done
}

stopped_step() {
    grep -oE 'stopped by .* after step [0-9]+' "$1" | tail -1 | grep -oE '[0-9]+$'
}

ckpt() { printf '%s/checkpoints/step-%08d.h5' "$1" "$2"; }
