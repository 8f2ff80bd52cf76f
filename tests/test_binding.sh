#!/usr/bin/env bash
# CPU binding: every rank reports the CPUs it may run on (sched_getaffinity) in the "cpus:"
# line of `chargan train`; ranks bound to cores of their own do not overlap and get no
# warning; ranks bound to the same CPUs, threads beyond the node's cores and threads beyond a
# rank's CPUs each get a warning; and by default a rank runs no more threads than it has CPUs.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1
SRC=$3
DATA=$(emnist_dir "$SRC") || exit 1
make_tmpdir
ncpu=$(nproc --all)
[ "$ncpu" -ge 2 ] || { echo "SKIP: binding needs 2 cores, this machine has $ncpu"; exit 77; }
train() { # OUT LAUNCHER...: a 1-step run ($THREADS: --threads); its output in OUT.log
    local out=$1
    shift
    "$@" "$BIN" train --model dcgan --batch 8 --steps 1 --log-every 0 --data "$DATA" \
        --split bymerge-test --limit 512 --threads "${THREADS:-0}" --out "$TMP/$out" \
        > "$TMP/$out.log" 2>&1
}
# The CPU list of RANK in a log's "cpus:" line, one CPU per line.
cpus_of() {
    grep -o "rank $2 [0-9,-]* (" "$TMP/$1.log" | awk '{print $3}' | tr ',' '\n' |
        awk -F- '{e = NF > 1 ? $2 : $1; for (i = $1; i <= e; i++) print i}'
}
case ${CHARGAN_MPI_FLAVOR:-openmpi} in
mpich) bind="$MPIEXEC -n 2 -bind-to core" ;;
*) bind="$MPIEXEC --map-by slot:PE=1 --bind-to core -np 2 --mca btl self,vader" ;;
esac

# 1. Bound to a core each: disjoint CPU sets, one thread each, no warning.
# shellcheck disable=SC2086
train bound timeout 300 $bind || { cat "$TMP/bound.log"; fail "bound run failed"; }
grep -q "^cpus: node .*rank 0 .*rank 1 " "$TMP/bound.log" || fail "no cpus line: $(head -3 "$TMP/bound.log")"
both=$( (cpus_of bound 0; cpus_of bound 1) | sort | uniq -d)
[ -z "$both" ] || fail "bound ranks share cpus $both: $(grep ^cpus "$TMP/bound.log")"
[ -n "$(cpus_of bound 0)" ] && [ -n "$(cpus_of bound 1)" ] || fail "empty cpu list"
grep -q "warning" "$TMP/bound.log" && fail "warning for disjoint binding: $(grep warning "$TMP/bound.log")"
grep -q "1 BLAS thread each" "$TMP/bound.log" || fail "bound ranks should run 1 thread each"
ok "bound ranks: $(grep ^cpus "$TMP/bound.log")"

# 2. Both ranks confined to CPU 0: the shared binding is named.
# shellcheck disable=SC2046
train shared taskset -c 0 timeout 300 $(launcher 2) || { cat "$TMP/shared.log"; fail "shared run failed"; }
grep -q "warning: node .*ranks 0 and 1 are bound to the same cpus 0 " "$TMP/shared.log" ||
    fail "no shared-cpus warning: $(cat "$TMP/shared.log" | head -5)"
ok "shared cpus warned"

# 3. More threads than cores, and than each rank's CPUs.
THREADS=$ncpu train over mpirun_np 2 || { cat "$TMP/over.log"; fail "oversubscribed run failed"; }
grep -q "warning: node .*: 2 ranks use $((2 * ncpu)) threads in all on $ncpu cores" "$TMP/over.log" ||
    fail "no threads warning: $(head -5 "$TMP/over.log")"
ok "thread oversubscription warned"

# 4. One rank on one CPU of several: one thread by default (the fair share would be all cores).
# shellcheck disable=SC2046
train one taskset -c 0 timeout 300 $(launcher 1) || { cat "$TMP/one.log"; fail "single-cpu run failed"; }
grep -q "1 BLAS thread each" "$TMP/one.log" || fail "a rank confined to 1 cpu runs $(grep -o '[0-9]* BLAS thread' "$TMP/one.log")"
grep -q warning "$TMP/one.log" && fail "unexpected warning: $(grep warning "$TMP/one.log")"
ok "default threads follow the rank's cpus"
