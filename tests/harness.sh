# shellcheck shell=bash
# The frame shared by the scenario scripts that set up machinery of their own (tests/slurm/*.sh,
# tests/netns/run.sh): verdict lines, the binary/source/data arguments, a scratch directory
# cleaned up on any exit, and a watchdog. Source it after setting HARNESS_SKIP_RC if the
# caller's ctest entry expects another skip status than 77.
#     harness_args USAGE "$@"   sets BIN (absolute), SRC (default: two levels above the
#                               script), DATA (EMNIST_DIR or SRC/../shared/data/emnist; fails
#                               when missing) and T_START
#     fail MSG / ok MSG / skip MSG
#     harness_scratch PREFIX KEEP_VAR  sets B to a fresh directory under /tmp; on exit runs the
#                               functions named in HARNESS_STOP, prints the tails of the files
#                               matching HARNESS_LOGS (globs under B) if the script failed, and
#                               removes B unless the variable KEEP_VAR is 1
#     harness_watchdog SECONDS  ends the script (through its exit trap) after SECONDS

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
ok() { echo "ok: $*  [$((SECONDS - T_START)) s]"; }
skip() {
    echo "SKIP: $*"
    exit "${HARNESS_SKIP_RC:-77}"
}

harness_args() {
    local usage=$1 here
    shift
    here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
    T_START=$SECONDS
    BIN=$(readlink -f "${1:?usage: $usage}")
    SRC=$(cd "${2:-$here/../..}" && pwd)
    [ -x "$BIN" ] || fail "chargan binary '$BIN' not found"
    DATA=${EMNIST_DIR:-$SRC/../shared/data/emnist}
    [ -d "$DATA" ] || fail "EMNIST data not found at $DATA (set EMNIST_DIR)"
    DATA=$(cd "$DATA" && pwd)
}

HARNESS_STOP=
HARNESS_LOGS=
_HARNESS_KEEP=
_HARNESS_WATCHDOG=

_harness_cleanup() {
    local rc=$? f p
    trap - EXIT TERM INT
    if [ -n "$_HARNESS_WATCHDOG" ]; then # the watchdog subshell and its sleep
        for p in $(pgrep -P "$_HARNESS_WATCHDOG") "$_HARNESS_WATCHDOG"; do kill "$p" 2>/dev/null; done
    fi
    for f in $HARNESS_STOP; do "$f"; done
    if [ "$rc" != 0 ] && [ -n "$HARNESS_LOGS" ]; then
        echo "---- logs (test failed) ----" >&2
        for f in $HARNESS_LOGS; do
            # shellcheck disable=SC2086  # the globs expand here
            for p in "$B"/$f; do [ -f "$p" ] && { echo "== $p" >&2; tail -40 "$p" >&2; }; done
        done
    fi
    if [ "${!_HARNESS_KEEP:-0}" = 1 ]; then echo "kept $B"; else rm -rf "$B"; fi
    exit "$rc"
}

harness_scratch() {
    B=$(mktemp -d "/tmp/$1.XXXXXX") || fail mktemp
    chmod 755 "$B" # readable by the unprivileged users of the daemons and namespaces
    _HARNESS_KEEP=$2
    trap _harness_cleanup EXIT
    trap 'echo "FAIL: interrupted or timed out" >&2; exit 1' TERM INT
}

harness_watchdog() {
    (sleep "$1" && kill -TERM $$) >/dev/null 2>&1 &
    _HARNESS_WATCHDOG=$!
}
