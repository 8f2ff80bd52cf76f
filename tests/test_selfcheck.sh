# The start-up self-check of exact mode. A BLAS whose results change with the thread count it is
# called from (tests/shim/threaded_sgemm.c, LD_PRELOADed in front of the real library, as a
# library that threads on its own would) must stop `chargan train` before any training: a
# one-line error naming the library and the ways out, a non-zero exit, no hang on 2 ranks, no
# checkpoint. The ways out it names must work: --threads 1, --float-sums. Without the stand-in
# the real library passes the check at 2 threads.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 BUILD=$2 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
SHIM=$BUILD/libchargan_test_threaded_sgemm.so
[ -f "$SHIM" ] || fail "$SHIM not built"
ARGS=(--data "$DATA" --split bymerge-test --limit 2000 --model small --steps 2 --log-every 1)

# run NAME NP [env...] -- ARGS: chargan train, status and output kept.
run() {
    local name=$1 np=$2
    shift 2
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" CG_TIMEOUT=120 bash -c '. "$0"; mpirun_np "$@"' "$SRC/tests/common.sh" \
        "$np" "$BIN" train "${ARGS[@]}" --out "$TMP/$name" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

# The real library: the check runs at 2 threads, passes, and says what it cost.
run real 1 -- --threads 2
[ "$(cat "$TMP/real.rc")" = 0 ] || { cat "$TMP/real.err"; fail "real BLAS: training failed"; }
grep -q 'blas: self-check passed: probe GEMMs bit-identical at 1 and 2 threads' "$TMP/real.out" ||
    { cat "$TMP/real.out"; fail "real BLAS: no self-check line"; }
ok "real BLAS: $(grep 'blas: self-check' "$TMP/real.out")"
grep -q '"start": true.*"blas_selfcheck_ms": [0-9]' "$TMP/real/metrics.jsonl" ||
    fail "the self-check's cost is not in the first metrics line"

lib=$(LD_PRELOAD= "$BIN" --version | sed -n 's/^BLAS: \([^(]*\) (.*/\1/p' | sed 's/ *$//')
[ -n "$lib" ] || fail "chargan --version names no BLAS"
for np in 1 2; do
    run "bad$np" "$np" LD_PRELOAD="$SHIM" -- --threads 2
    expect_error "$TMP/bad$np.rc" "$TMP/bad$np.err" "stand-in BLAS, $np rank(s) x 2 threads" \
        "BLAS self-check" "$lib" "different bits at 1 and 2 threads" "--threads 1" "--float-sums"
    [ ! -e "$TMP/bad$np/checkpoints" ] || fail "$np rank(s): trained despite the failed check"
    grep -q '^step ' "$TMP/bad$np.out" && fail "$np rank(s): steps ran despite the failed check"
done

# The ways out: one thread per rank (nothing to compare), or float sums (no exactness promised).
run one 2 LD_PRELOAD="$SHIM" -- --threads 1
[ "$(cat "$TMP/one.rc")" = 0 ] || { cat "$TMP/one.err"; fail "stand-in BLAS, --threads 1 failed"; }
run flt 1 LD_PRELOAD="$SHIM" -- --threads 2 --float-sums
[ "$(cat "$TMP/flt.rc")" = 0 ] || { cat "$TMP/flt.err"; fail "stand-in BLAS, --float-sums failed"; }
[ -f "$TMP/one/checkpoints/step-00000002.h5" ] && [ -f "$TMP/flt/checkpoints/step-00000002.h5" ] ||
    fail "the ways out did not train"
ok "--threads 1 and --float-sums train with the stand-in BLAS"
echo "self-check tests passed"
