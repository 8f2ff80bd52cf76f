# shellcheck shell=bash
# A real single-node Slurm cluster (munged, slurmctld, slurmd on localhost) in a scratch
# directory, for tests. Source it, then:
#     slurm_install        installs slurm-wlm and munge with apt-get when they are missing
#     slurm_start DIR      writes DIR/etc/slurm.conf, starts the daemons, waits for an idle node;
#                          exports SLURM_CONF (every client command needs it)
#     slurm_stop           cancels this cluster's jobs and stops, by pid, the daemons (and job
#                          step daemons) that slurm_start started; safe to call twice
# Follows ../shared/notes/slurm-single-node.md. Free TCP ports are chosen for slurmctld and
# slurmd, so the cluster does not collide with another one on the same machine.

slurm_log() { echo "[slurm] $*"; }

slurm_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return 0
    fi
    slurm_log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null &&
        timeout 600 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
        { slurm_log "apt-get install slurm-wlm munge failed"; return 1; }
}

# A TCP port nobody listens on, and the next one free too.
_slurm_free_port() {
    local p used
    used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 30000))
        if ! grep -qx "$p" <<<"$used" && ! grep -qx "$((p + 1))" <<<"$used"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

SLURM_DIR=
SLURM_MUNGED_PID=
SLURM_CTLD_PID=
SLURM_SLURMD_PID=

slurm_start() {
    local B=$1 port cpus=${SLURM_TEST_CPUS:-8}
    SLURM_DIR=$B
    mkdir -p "$B/etc" "$B/state" "$B/spool" "$B/log" "$B/run" || return 1

    # munge: reuse a running munged (somebody else's: not ours to stop), or start one.
    if ! (munge -n | unmunge) >/dev/null 2>&1; then
        if [ ! -s /etc/munge/munge.key ]; then
            mungekey --create --keyfile=/etc/munge/munge.key &&
                chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key ||
                { slurm_log "cannot create /etc/munge/munge.key"; return 1; }
        fi
        install -d -o munge -g munge -m 0755 /run/munge
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged || { slurm_log "munged did not start"; return 1; }
        for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
        SLURM_MUNGED_PID=$(cat /run/munge/munged.pid 2>/dev/null)
        (munge -n | unmunge) >/dev/null 2>&1 || { slurm_log "munge does not work"; return 1; }
        slurm_log "started munged (pid $SLURM_MUNGED_PID)"
    else
        slurm_log "munged already running: using it"
    fi

    port=$(_slurm_free_port) || { slurm_log "no free port"; return 1; }
    cat >"$B/etc/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
MailProg=/bin/true
KillWait=10
MinJobAge=600
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
NodeName=localhost CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$B/etc/slurm.conf
    slurmctld -c || { slurm_log "slurmctld did not start"; cat "$B/log/slurmctld.log"; return 1; }
    for _ in $(seq 100); do [ -s "$B/run/slurmctld.pid" ] && break; sleep 0.1; done
    SLURM_CTLD_PID=$(cat "$B/run/slurmctld.pid" 2>/dev/null)
    slurmd -N localhost || { slurm_log "slurmd did not start"; cat "$B/log/slurmd.log"; return 1; }
    for _ in $(seq 100); do [ -s "$B/run/slurmd.pid" ] && break; sleep 0.1; done
    SLURM_SLURMD_PID=$(cat "$B/run/slurmd.pid" 2>/dev/null)
    local t0=$SECONDS
    until sinfo -h -o %T 2>/dev/null | grep -qx idle; do
        if [ $((SECONDS - t0)) -gt 60 ]; then
            slurm_log "the node did not become idle in 60 s:"
            sinfo -N -l
            tail -20 "$B/log/slurmctld.log" "$B/log/slurmd.log"
            return 1
        fi
        sleep 0.5
    done
    slurm_log "cluster up in $((SECONDS - t0)) s: slurmctld pid $SLURM_CTLD_PID, slurmd pid" \
        "$SLURM_SLURMD_PID, ports $port/$((port + 1)), $cpus CPUs, conf $SLURM_CONF"
}

# Pids of job step daemons (slurmstepd) of this cluster: they inherit slurmd's environment,
# which names this cluster's SLURM_CONF.
_slurm_stepd_pids() {
    local p
    for p in $(pgrep -x slurmstepd 2>/dev/null); do
        { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF" &&
            echo "$p"
    done
}

_slurm_kill_wait() { # PID...: SIGTERM, wait up to 10 s, then SIGKILL
    local p pids=()
    for p in "$@"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && pids+=("$p"); done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null
    for _ in $(seq 100); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null
}

slurm_stop() {
    [ -n "$SLURM_DIR" ] || return 0
    if [ -n "$SLURM_CTLD_PID" ] && kill -0 "$SLURM_CTLD_PID" 2>/dev/null; then
        timeout 10 scancel --full --signal=KILL --user="$(id -un)" 2>/dev/null
        timeout 10 scancel --user="$(id -un)" 2>/dev/null
        # give the job steps a moment to end with their jobs
        for _ in $(seq 50); do [ -z "$(_slurm_stepd_pids)" ] && break; sleep 0.2; done
    fi
    # shellcheck disable=SC2046
    _slurm_kill_wait $(_slurm_stepd_pids)
    _slurm_kill_wait "$SLURM_SLURMD_PID"
    _slurm_kill_wait "$SLURM_CTLD_PID"
    _slurm_kill_wait "$SLURM_MUNGED_PID"
    slurm_log "stopped the daemons started here"
    SLURM_DIR='' SLURM_MUNGED_PID='' SLURM_CTLD_PID='' SLURM_SLURMD_PID=''
}
