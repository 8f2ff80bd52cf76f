#!/usr/bin/env bash
# Two "hosts" on one machine: two sets of namespaces (network + UTS + mount), each with its own
# hostname (hosta, hostb), its own /etc/hosts and one end of a veth pair (10.X.Y.1 and .2).
# The MPI chargan was built with (Open MPI: --mca btl tcp,self; MPICH: UCX over tcp) runs it
# across them over TCP only, started from hosta with a hostfile naming both hosts and an rsh
# agent that enters hostb's namespaces with nsenter instead of ssh. It shows:
#   1. the ranks see 2 nodes, and each node's rank 0 is on a different host (hostname);
#   2. the data set is held once per host: `chargan data --stats` with 2+2 ranks on two hosts
#      uses about twice the memory of 2 ranks on one host, far less than one copy per rank;
#   3. 2+2 ranks on two hosts train in lockstep (--check-every: bit-identical parameters on all
#      ranks) and end with exactly the parameters and losses of 4 ranks on one host;
#   4. chargan bench --allreduce runs across the hosts (TCP over the veth pair).
#
# usage: tests/netns/run.sh CHARGAN_BINARY [SOURCE_DIR]     (root; prints SKIP otherwise)
#   EMNIST_DIR: the EMNIST directory (default SOURCE_DIR/../shared/data/emnist)
#   CHARGAN_NETNS_KEEP=1: keep the scratch directory
#   CHARGAN_NETNS_RUN=FILE: set the hosts up, then source FILE instead of the checks
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HARNESS_SKIP_RC=0
# shellcheck source=../harness.sh
. "$HERE/../harness.sh"
[ "$(id -u)" = 0 ] || skip "the two-host test needs root (network namespaces, veth)"
harness_args "run.sh CHARGAN_BINARY [SOURCE_DIR]" "$@"
# The launcher of the MPI chargan was built with (ctest passes it; else from chargan --version).
MPI_FLAVOR=${CHARGAN_MPI_FLAVOR:-openmpi}
"$BIN" --version | grep -q '^MPI: *MPICH' && MPI_FLAVOR=mpich
if [ "$MPI_FLAVOR" = mpich ]; then
    MPIEXEC=${CHARGAN_MPIEXEC:-$(command -v mpiexec.hydra || command -v mpiexec.mpich)}
else
    MPIEXEC=${CHARGAN_MPIEXEC:-$(command -v mpirun.openmpi || command -v mpirun)}
fi
for t in ip unshare nsenter "$MPIEXEC"; do
    command -v "$t" >/dev/null || skip "$t not installed"
done
# shellcheck source=hosts.sh
. "$HERE/hosts.sh"
netns_usable || skip "cannot create network/UTS/mount namespaces here (no CAP_SYS_ADMIN?)"

harness_scratch chargan-netns CHARGAN_NETNS_KEEP
HARNESS_STOP=netns_hosts_stop
TMP=$B # the scratch directory, also for a CHARGAN_NETNS_RUN file

netns_hosts_start "$TMP" || fail "cannot set up the two hosts"
ok "two hosts: $(on a hostname) ($NET.1) and $(on b hostname) ($NET.2), veth pair up, hostb answers hosta"

# The rsh agent: Open MPI calls it as 'agent HOST COMMAND...' the way it would call ssh, and
# the words of COMMAND form a shell command line (as ssh's remote shell would see them).
cat >"$TMP/agent" <<EOF
#!/bin/sh
host=\$1
shift
case \$host in
hosta|$NET.1) pid=$PA ;;
hostb|$NET.2) pid=$PB ;;
*) echo "agent: unknown host \$host" >&2; exit 255 ;;
esac
exec nsenter -t \$pid --mount --uts --net -- sh -c "\$*"
EOF
chmod +x "$TMP/agent"
printf 'hosta slots=2\nhostb slots=2\n' >"$TMP/hostfile2"
printf 'hosta slots=4\n' >"$TMP/hostfile1"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OMPI_MCA_btl # tests/common.sh's shared-memory-only setting, if inherited
# mpirun_on HOSTFILE NP CMD...: the launcher of the MPI chargan was built with, on hosta, TCP
# over veth0 only, under a timeout. Open MPI: mpirun with the agent as its rsh agent. MPICH:
# mpiexec.hydra with the agent as its rsh launcher (hydra's host file says "host:slots"), its
# control traffic on veth0, and UCX (MPICH's transport in Debian) over TCP on veth0 between
# hosts, shared memory within one.
mpirun_on() {
    local hf=$1 np=$2
    shift 2
    if [ "$MPI_FLAVOR" = mpich ]; then
        sed 's/ slots=/:/' "$hf" >"$hf.hydra"
        on a timeout --kill-after=10 120 "$MPIEXEC" -f "$hf.hydra" -n "$np" \
            -launcher rsh -launcher-exec "$TMP/agent" -iface veth0 \
            -genv UCX_NET_DEVICES veth0 -genv UCX_TLS tcp,sm,self "$@"
        return
    fi
    on a timeout --kill-after=10 120 "$MPIEXEC" --hostfile "$hf" -np "$np" --map-by slot \
        --bind-to none --oversubscribe \
        --mca plm_rsh_agent "$TMP/agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include veth0 --mca oob_tcp_if_include veth0 \
        "$@"
}

# CHARGAN_NETNS_RUN=FILE: source FILE here instead of the checks (measurements on the two
# hosts: it has mpirun_on, $TMP and $BIN; the hosts end after 20 minutes).
if [ -n "${CHARGAN_NETNS_RUN:-}" ]; then
    # shellcheck disable=SC1090
    . "$CHARGAN_NETNS_RUN"
    exit $?
fi

# 1. where the ranks run
mpirun_on "$TMP/hostfile2" 4 sh -c 'echo "rank ${OMPI_COMM_WORLD_RANK:-$PMI_RANK} on $(hostname)"' \
    >"$TMP/where.out" 2>&1 || { cat "$TMP/where.out"; fail "mpirun across the two hosts failed"; }
[ "$(grep -c 'on hosta$' "$TMP/where.out")" = 2 ] && [ "$(grep -c 'on hostb$' "$TMP/where.out")" = 2 ] ||
    { cat "$TMP/where.out"; fail "expected 2 ranks on hosta and 2 on hostb"; }
ok "$(basename "$MPIEXEC") from hosta started 2 ranks on hosta and 2 on hostb (rsh agent = nsenter)"

# 2. one copy of the data set per host
mpirun_on "$TMP/hostfile2" 4 "$BIN" data "$DATA" --split bymerge-test --stats \
    >"$TMP/data2.out" 2>&1 || { cat "$TMP/data2.out"; fail "chargan data on two hosts failed"; }
grep -q '^images: 116323 .*ranks: 4 on 2 node(s)' "$TMP/data2.out" ||
    { cat "$TMP/data2.out"; fail "chargan data does not see 4 ranks on 2 nodes"; }
printf 'hosta slots=2\n' >"$TMP/hostfile1x2"
mpirun_on "$TMP/hostfile1x2" 2 "$BIN" data "$DATA" --split bymerge-test --stats \
    >"$TMP/data1.out" 2>&1 || { cat "$TMP/data1.out"; fail "chargan data on one host failed"; }
grep -q '^images: 116323 .*ranks: 2 on 1 node(s)' "$TMP/data1.out" || fail "1 host: $(cat "$TMP/data1.out")"
field() { sed -n "s/^stats: .* $1=\\([0-9.]*\\).*/\\1/p" "$2"; }
p2=$(field pss_sum_mb "$TMP/data2.out") p1=$(field pss_sum_mb "$TMP/data1.out")
dmb=$(field data_mb "$TMP/data2.out")
[ -n "$p2" ] && [ -n "$p1" ] && [ -n "$dmb" ] || fail "no stats line"
# Two hosts with two ranks each = twice one host with two ranks (one copy per host); one copy
# per rank would add 2 more copies of the data set.
awk -v p2="$p2" -v p1="$p1" -v d="$dmb" 'BEGIN { exit !(p2 < 2 * p1 + 0.5 * d && p2 > 1.5 * d) }' ||
    fail "memory: 2 hosts x 2 ranks use $p2 MB (PSS), 1 host x 2 ranks $p1 MB, data $dmb MB"
ok "data window: 4 ranks on 2 nodes use $p2 MB PSS = 2 x $p1 MB of 2 ranks on 1 node (data $dmb MB per copy): one copy per host"

# 3. training in lockstep, the same result as on one host
train() { # HOSTFILE OUT
    mpirun_on "$1" 4 "$BIN" train --data "$DATA" --split balanced-train-part --model small \
        --steps 20 --batch 64 --threads 1 --check-every 5 --log-every 10 --out "$2"
}
train "$TMP/hostfile2" "$TMP/two" >"$TMP/two.out" 2>&1 ||
    { cat "$TMP/two.out"; fail "training on two hosts failed"; }
grep -q '4 ranks on 2 nodes' "$TMP/two.out" || { cat "$TMP/two.out"; fail "train does not report 2 nodes"; }
[ "$(grep -c '^check: step .*bit-identical on all 4 ranks' "$TMP/two.out")" = 4 ] ||
    { cat "$TMP/two.out"; fail "no lockstep checks (--check-every 5) on two hosts"; }
train "$TMP/hostfile1" "$TMP/one" >"$TMP/one.out" 2>&1 ||
    { cat "$TMP/one.out"; fail "training on one host failed"; }
grep -q '4 ranks on 1 node' "$TMP/one.out" || fail "1-host train does not report 1 node"
l2=$(grep '^step 20/20' "$TMP/two.out" | sed 's/ [0-9.]* img\/s.*//')
l1=$(grep '^step 20/20' "$TMP/one.out" | sed 's/ [0-9.]* img\/s.*//')
[ -n "$l2" ] && [ "$l2" = "$l1" ] || fail "final losses differ: two hosts '$l2', one host '$l1'"
c2=$(grep -o 'bit-identical on all 4 ranks ([0-9a-f]*)' "$TMP/two.out" | tail -1)
c1=$(grep -o 'bit-identical on all 4 ranks ([0-9a-f]*)' "$TMP/one.out" | tail -1)
[ "$c2" = "$c1" ] || fail "parameter checksums differ: two hosts '$c2', one host '$c1'"
f2=$TMP/two/checkpoints/step-00000020.h5 f1=$TMP/one/checkpoints/step-00000020.h5
if command -v h5diff >/dev/null; then
    for g in /generator /discriminator /optimizer; do
        h5diff -q "$f2" "$f1" "$g" "$g" || fail "checkpoints differ in $g"
    done
    how="h5diff: generator, discriminator, optimizer identical"
else
    how="h5diff not installed: compared checksums only"
fi
ok "2+2 ranks on two hosts trained in lockstep (4 bit-identity checks) and ended exactly as 4 ranks on one host: '$l2', checksum ${c2##* }; $how"
# 4. the allreduce bench across the two hosts: TCP through the veth pair (the same machine's
# memory underneath, so this shows the TCP stack's cost, not a real network's)
printf 'hosta slots=1\nhostb slots=1\n' >"$TMP/hostfile1+1"
mpirun_on "$TMP/hostfile1+1" 2 "$BIN" bench --allreduce --reps 5 --max-bytes 4194304 \
    --no-overlap --threads 1 >"$TMP/ar.out" 2>&1 || { cat "$TMP/ar.out"; fail "bench --allreduce over TCP failed"; }
tail -1 "$TMP/ar.out" | grep -q '^{"bench": "allreduce", "ranks": 2, "nodes": 2, ' ||
    { cat "$TMP/ar.out"; fail "bench --allreduce over TCP: no JSON for 2 ranks on 2 nodes"; }
ok "allreduce over TCP between the hosts: $(grep '^fit' "$TMP/ar.out")"
echo "PASS: two-host tests in $((SECONDS - T_START)) s"
