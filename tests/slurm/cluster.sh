# shellcheck shell=bash
# A real Slurm cluster (munged, slurmctld, one slurmd per node) in a scratch directory, for
# tests: one node on localhost (tests/slurm/run.sh), or several "hosts" in network namespaces
# (tests/slurm/two_nodes.sh). Source it, then:
#     slurm_install        installs slurm-wlm and munge with apt-get when they are missing
#     slurm_start DIR      writes DIR/etc/slurm.conf, starts the daemons, waits until every node
#                          is idle; exports SLURM_CONF (every client command needs it)
#     slurm_client CMD...  runs a client command (sinfo, sbatch...) where slurmctld is reachable
#     slurm_stop           cancels this cluster's jobs and stops, by pid, the daemons (and job
#                          step daemons) that slurm_start started; safe to call twice
# Settings, read by slurm_start:
#     SLURM_NODES          "NAME[=ADDR] ..." (default: localhost); the first node also runs
#                          slurmctld, and client commands run there
#     SLURM_TEST_CPUS      CPUs of each node (default 8)
#     SLURM_TASK_PLUGIN    TaskPlugin (default task/none; task/affinity binds tasks to CPUs,
#                          which needs SLURM_TEST_CPUS to be the real count)
#     SLURM_PARTITIONS     the PartitionName lines (default: partition debug, all nodes)
#     SLURM_CONF_EXTRA     more slurm.conf lines (e.g. preemption settings)
#     slurm_on NODE CMD... a function that runs CMD on NODE (default: here); redefine it after
#                          sourcing to start each node's daemons in that node's namespaces
# One munged serves every node: its socket is a file, reachable from any network namespace.
# Follows ../shared/notes/slurm-single-node.md. Free TCP ports are chosen for slurmctld and
# slurmd, so the cluster does not collide with another one on the same machine.

slurm_on() { shift; "$@"; }
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
SLURM_SLURMD_PIDS=

_slurm_names() { local n; for n in ${SLURM_NODES:-localhost}; do echo "${n%%=*}"; done; }
_slurm_first() { _slurm_names | head -1; }
slurm_client() { slurm_on "$(_slurm_first)" "$@"; }

# _slurm_write_conf DIR PORT: DIR/etc/slurm.conf for the nodes of SLURM_NODES.
_slurm_write_conf() {
    local B=$1 port=$2 cpus=${SLURM_TEST_CPUS:-8} n ctld
    ctld=${SLURM_NODES:-localhost}
    ctld=${ctld%% *}
    [ "${ctld#*=}" != "$ctld" ] && ctld="${ctld%%=*}(${ctld#*=})"
    {
        cat <<EOF
ClusterName=ci
SlurmctldHost=$ctld
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=${SLURM_TASK_PLUGIN:-task/none}
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
SlurmdSpoolDir=$B/spool/%n
TmpFS=$B/tmp/%n
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd-%n.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd-%n.log
EOF
        [ -n "${SLURM_CONF_EXTRA:-}" ] && echo "$SLURM_CONF_EXTRA"
        for n in ${SLURM_NODES:-localhost}; do
            if [ "${n#*=}" != "$n" ]; then
                echo "NodeName=${n%%=*} NodeAddr=${n#*=} CPUs=$cpus State=UNKNOWN"
            else
                echo "NodeName=$n CPUs=$cpus State=UNKNOWN"
            fi
        done
        echo "${SLURM_PARTITIONS:-PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP}"
    } >"$B/etc/slurm.conf"
}

# munge: reuse a running munged (somebody else's: not ours to stop), or start one.
_slurm_munged() {
    if (munge -n | unmunge) >/dev/null 2>&1; then
        slurm_log "munged already running: using it"
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key &&
            chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key ||
            { slurm_log "cannot create /etc/munge/munge.key"; return 1; }
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || { slurm_log "munged did not start"; return 1; }
    SLURM_MUNGED_PID=$(_slurm_pidfile /run/munge/munged.pid)
    (munge -n | unmunge) >/dev/null 2>&1 || { slurm_log "munge does not work"; return 1; }
    slurm_log "started munged (pid $SLURM_MUNGED_PID)"
}

_slurm_pidfile() { # FILE: wait for a daemon's pid file, print the pid
    for _ in $(seq 100); do [ -s "$1" ] && break; sleep 0.1; done
    cat "$1" 2>/dev/null
}

_slurm_idle_nodes() { slurm_client sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | grep -c ' idle$'; }

slurm_start() {
    local B=$1 port n p names first
    SLURM_DIR=$B
    names=$(_slurm_names)
    first=$(_slurm_first)
    mkdir -p "$B/etc" "$B/state" "$B/log" "$B/run" || return 1
    # Per node: the spool directory and TmpFS (where srun's PMIx plugin makes its directories,
    # named after the job step only: nodes that share a file system would collide in /tmp).
    for n in $names; do mkdir -p "$B/spool/$n" "$B/tmp/$n" || return 1; done
    _slurm_munged || return 1
    port=$(_slurm_free_port) || { slurm_log "no free port"; return 1; }
    _slurm_write_conf "$B" "$port" || return 1
    export SLURM_CONF=$B/etc/slurm.conf
    slurm_on "$first" slurmctld -c ||
        { slurm_log "slurmctld did not start"; cat "$B/log/slurmctld.log"; return 1; }
    SLURM_CTLD_PID=$(_slurm_pidfile "$B/run/slurmctld.pid")
    for n in $names; do
        slurm_on "$n" slurmd -N "$n" ||
            { slurm_log "slurmd of $n did not start"; cat "$B/log/slurmd-$n.log"; return 1; }
        p=$(_slurm_pidfile "$B/run/slurmd-$n.pid")
        SLURM_SLURMD_PIDS="$SLURM_SLURMD_PIDS $p"
    done
    local t0=$SECONDS want
    want=$(echo "$names" | wc -w)
    until [ "$(_slurm_idle_nodes)" = "$want" ]; do
        if [ $((SECONDS - t0)) -gt 60 ]; then
            slurm_log "the nodes did not become idle in 60 s:"
            slurm_client sinfo -N -l
            tail -20 "$B"/log/*.log
            return 1
        fi
        sleep 0.5
    done
    slurm_log "cluster up in $((SECONDS - t0)) s:" $names "($want x ${SLURM_TEST_CPUS:-8} CPUs)," \
        "slurmctld pid $SLURM_CTLD_PID, slurmd pids$SLURM_SLURMD_PIDS, ports $port/$((port + 1)), conf $SLURM_CONF"
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
        slurm_client timeout 10 scancel --full --signal=KILL --user="$(id -un)" 2>/dev/null
        slurm_client timeout 10 scancel --user="$(id -un)" 2>/dev/null
        # give the job steps a moment to end with their jobs
        for _ in $(seq 50); do [ -z "$(_slurm_stepd_pids)" ] && break; sleep 0.2; done
    fi
    # shellcheck disable=SC2046
    _slurm_kill_wait $(_slurm_stepd_pids)
    # shellcheck disable=SC2086
    _slurm_kill_wait $SLURM_SLURMD_PIDS
    _slurm_kill_wait "$SLURM_CTLD_PID"
    _slurm_kill_wait "$SLURM_MUNGED_PID"
    slurm_log "stopped the daemons started here"
    SLURM_DIR='' SLURM_MUNGED_PID='' SLURM_CTLD_PID='' SLURM_SLURMD_PIDS=''
}
