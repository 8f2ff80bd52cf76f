#!/bin/bash
# Runs the libFuzzer harnesses of a CHARGAN_FUZZ build, each for SECONDS, starting from a
# copy of its committed corpus (tests/fuzz/corpus/NAME; the repository's copy is never
# written), and prints one line per harness:
#     fuzz NAME: N execs, X exec/s, cov: E edges, ft: F, result ok|CRASH
# A crash, leak, timeout (-timeout=10) or out-of-memory (-rss_limit_mb=2048, and libFuzzer's
# malloc limit, the same) is a CRASH: the line is followed by the reproducer's path and the
# sanitizer's summary, and the script exits 1. Reproducers and logs are kept under
# BUILD_DIR/fuzz-artifacts/NAME/. Replay one with: BUILD_DIR/fuzz_NAME FILE
#     tests/fuzz/run.sh BUILD_DIR SECONDS [NAMES...]     (default: every harness)
set -u
if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 BUILD_DIR SECONDS [NAMES...]" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
SECONDS_EACH=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(idx csv mapping config train_args png)
# Leak detection on whatever the caller's environment says (the MPI tests turn it off).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

# Largest input per harness: room for a few dozen IDX images or CSV rows, a full mapping,
# a saved configuration, a long command line.
max_len() {
    case $1 in
    idx | csv | png) echo 65536 ;;
    mapping | config) echo 8192 ;;
    *) echo 2048 ;;
    esac
}

# stat::NAME from libFuzzer's final stats in log $1.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -1; }

# Runs harness $1; prints its line; returns 1 on a finding.
run_one() {
    local name=$1 bin=$BUILD/fuzz_$1 art=$BUILD/fuzz-artifacts/$1
    if [ ! -x "$bin" ]; then
        echo "fuzz $name: no $bin (configure with -DCHARGAN_FUZZ=ON, build target fuzz)"
        return 1
    fi
    mkdir -p "$art"
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/chargan-fuzz-corpus.XXXXXX")
    [ -d "$HERE/corpus/$name" ] && cp -r "$HERE/corpus/$name/." "$work/"
    local dict=()
    [ -f "$HERE/$name.dict" ] && dict=(-dict="$HERE/$name.dict")
    local log=$art/fuzz.log
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -max_len="$(max_len "$name")" -artifact_prefix="$art/" "${dict[@]}" "$work" >"$log" 2>&1
    local rc=$?
    rm -rf "$work"
    local cov ft
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    local repro
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    local result=ok
    [ $rc -ne 0 ] || [ -n "$repro" ] && result=CRASH
    local execs rate
    execs=$(final_stat "$log" number_of_executed_units)
    rate=$(final_stat "$log" average_exec_per_sec)
    printf 'fuzz %s: %s execs, %s exec/s, cov: %s edges, ft: %s, result %s\n' "$name" \
        "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
    [ $result = ok ] && return 0
    echo "  reproducer: ${repro:-none written (exit status $rc)}"
    echo "  log: $log"
    grep -m1 -E '^SUMMARY:|ERROR: libFuzzer|==ERROR:' "$log" | sed 's/^/  /'
    return 1
}

status=0
for name in "${NAMES[@]}"; do
    run_one "$name" || status=1
done
exit $status
