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
#     run_job LOG SBATCH_ARGS...     sbatch + wait_job (PATIENCE); prints the job id; a job
#                            whose ranks died in the MPI's start-up is submitted once more
#                            (LOG: its output file, %j for the job id)
#     start_job LOG ERE SBATCH_ARGS...  sbatch, then wait until a line of LOG matches ERE
#                            (PATIENCE); prints the job id; the same second chance

sl() { slurm_client timeout 20 "$@"; }

job_field() {
    sl scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

release_held() {
    [ "$(job_field "$1" JobState)" = PENDING ] && [ "$(job_field "$1" Reason)" = BeginTime ] &&
        sl scontrol update JobId="$1" StartTime=now >/dev/null 2>&1
    return 0
}

ended() { # STATE: a final job state
    case $1 in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
    esac
    return 1
}

wait_job() {
    local id=$1 limit=$2 release=${3:-} t0=$SECONDS st ec
    while :; do
        st=$(job_field "$id" JobState)
        ended "$st" && break
        [ "$st" = PENDING ] && [ "$release" = release ] && release_held "$id"
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

# mpi_start_failed LOG: the ranks died inside the MPI library's start-up, before chargan printed
# a line of its own. Seen with Open MPI under srun --mpi=pmix in the two-node cluster, 3 times
# in about 40 runs of that test: a rank cannot open a peer's shared-memory segment (open(2)
# ENOENT) and one crashes at address 0; 125 launches in a row by hand did not show it. Such a
# failure says nothing about chargan, so the job is submitted once more; a second one fails.
MPI_START_FAILURE='shared memory initialization|Segmentation fault'
mpi_start_failed() {
    ! grep -qE '^(cpus|data): ' "$1" && grep -qE "$MPI_START_FAILURE" "$1"
}

# second_chance TRY LOG ID: 0 (with a note) when job ID, at its first try, failed to start
second_chance() {
    [ "$1" = 1 ] && mpi_start_failed "$2" || return 1
    echo "note: job $3: the MPI failed to start the ranks ($(grep -m1 -E "$MPI_START_FAILURE" "$2")); submitting it once more" >&2
}

run_job() {
    local log=$1 id try
    shift
    for try in 1 2; do
        id=$(sl sbatch --parsable "$@") || return 1
        wait_job "$id" "$PATIENCE" && { echo "$id"; return 0; }
        second_chance $try "${log//%j/$id}" "$id" || { echo "$id"; return 1; }
    done
}

start_job() {
    local log=$1 ere=$2 id try t0
    shift 2
    for try in 1 2; do
        id=$(sl sbatch --parsable "$@") || return 1
        t0=$SECONDS
        until grep -qE "$ere" "${log//%j/$id}" 2>/dev/null; do
            if ended "$(job_field "$id" JobState)" && ! grep -qE "$ere" "${log//%j/$id}"; then
                second_chance $try "${log//%j/$id}" "$id" && continue 2
                echo "job $id ended before /$ere/ in its log" >&2
                echo "$id"
                return 1
            fi
            if [ $((SECONDS - t0)) -gt "$PATIENCE" ]; then
                echo "no /$ere/ in the log of job $id after $PATIENCE s" >&2
                echo "$id"
                return 1
            fi
            sleep 0.2
        done
        echo "$id"
        return 0
    done
}

ckpt() { printf '%s/checkpoints/step-%08d.h5' "$1" "$2"; }
