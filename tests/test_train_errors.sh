# chargan train: every bad flag is refused before any work, on every rank, with one error
# line and no hang; a failure on one rank ends a 4-rank job quickly; a NaN stops training.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
COMMON=(--data "$DATA" --split balanced-train-part --model small --log-every 0)

# run NAME NP ARGS...: runs chargan train under mpirun, keeps status and stderr.
run() {
    local name=$1 np=$2
    shift 2
    CG_TIMEOUT=120 mpirun_np "$np" "$BIN" train "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

run batch 2 "${COMMON[@]}" --batch 63 --steps 2 --out "$TMP/o"
expect_error "$TMP/batch.rc" "$TMP/batch.err" "batch not divisible" "--batch 63" "2 ranks"
run groups 2 "${COMMON[@]}" --sum-groups 3 --steps 2 --out "$TMP/o"
expect_error "$TMP/groups.rc" "$TMP/groups.err" "sum groups not dividing the batch" "--sum-groups 3" "--batch 64"
run groups2 4 "${COMMON[@]}" --sum-groups 2 --steps 2 --out "$TMP/o"
expect_error "$TMP/groups2.rc" "$TMP/groups2.err" "fewer sum groups than ranks" "--sum-groups 2" "4 ranks"
run negsteps 2 "${COMMON[@]}" --steps -5 --out "$TMP/o"
expect_error "$TMP/negsteps.rc" "$TMP/negsteps.err" "negative steps" "--steps -5"
run model 2 "${COMMON[@]}" --model huge --steps 2 --out "$TMP/o"
expect_error "$TMP/model.rc" "$TMP/model.err" "unknown model" "huge" "seed, small"
run number 1 "${COMMON[@]}" --steps 2x --out "$TMP/o"
expect_error "$TMP/number.rc" "$TMP/number.err" "not a number" "--steps" "2x"
run flag 1 "${COMMON[@]}" --stpes 2 --out "$TMP/o"
expect_error "$TMP/flag.rc" "$TMP/flag.err" "unknown option" "--stpes"
run lr 1 "${COMMON[@]}" --lr-g -1 --steps 2 --out "$TMP/o"
expect_error "$TMP/lr.rc" "$TMP/lr.err" "negative lr" "--lr-g"
run loss 2 "${COMMON[@]}" --loss wasserstein --steps 2 --out "$TMP/o"
expect_error "$TMP/loss.rc" "$TMP/loss.err" "unknown loss" "--loss 'wasserstein'" "bce or hinge"
run decay 2 "${COMMON[@]}" --lr-decay-start 20 --steps 20 --out "$TMP/o"
expect_error "$TMP/decay.rc" "$TMP/decay.err" "decay after the last step" "--lr-decay-start 20" "(20)"
touch "$TMP/afile"
run out 2 "${COMMON[@]}" --steps 2 --out "$TMP/afile/sub"
expect_error "$TMP/out.rc" "$TMP/out.err" "unwritable --out" "$TMP/afile"
run data 4 --data "$TMP/nothing-here" --steps 2 --out "$TMP/o"
expect_error "$TMP/data.rc" "$TMP/data.err" "missing data on 4 ranks" "$TMP/nothing-here"
# Nothing of the refused runs may have trained or written checkpoints.
[ ! -d "$TMP/o/checkpoints" ] || fail "a refused run wrote checkpoints"

# A rank that dies abruptly (as on out-of-memory) ends the whole job, promptly.
start=$(date +%s)
CHARGAN_TEST_FAIL_RANK=2 CHARGAN_TEST_FAIL_STEP=3 \
    run inject 4 "${COMMON[@]}" --steps 50 --out "$TMP/inj"
took=$(( $(date +%s) - start ))
rc=$(cat "$TMP/inject.rc")
[ "$rc" != 0 ] || fail "injected failure: exit status 0"
[ "$rc" != 124 ] || fail "injected failure: the job hung"
grep -q "rank 2: injected failure at step 3" "$TMP/inject.err" ||
    { cat "$TMP/inject.err"; fail "injected failure: message does not name rank and cause"; }
# No bound on the time it took (a loaded machine is slow): CG_TIMEOUT turns a hang into 124.
ok "injected failure on rank 2 ended the 4-rank job in ${took}s (exit $rc)"

# Started by the other MPI's launcher (Debian installs both side by side), every task is a
# lone rank: each refuses, naming the launcher's variable, instead of training alone.
if [ "${CHARGAN_MPI_FLAVOR:-openmpi}" = mpich ]; then
    other=$(command -v mpirun.openmpi) other_args=(--oversubscribe -np 2) var=OMPI_COMM_WORLD_SIZE
else
    other=$(command -v mpiexec.mpich) other_args=(-n 2) var=PMI_SIZE
fi
if [ -n "$other" ]; then
    timeout 120 "$other" "${other_args[@]}" "$BIN" train "${COMMON[@]}" --steps 2 \
        --out "$TMP/other" >"$TMP/other.out" 2>"$TMP/other.err"
    rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "started by $other: exit status $rc"
    n=$(grep -c "chargan: error: train: this is a single MPI rank but $var=2: " "$TMP/other.err")
    [ "$n" = 2 ] || { cat "$TMP/other.err"; fail "started by $other: $n refusals, expected 2"; }
    [ ! -d "$TMP/other/checkpoints" ] || fail "started by $other: trained anyway"
    ok "started by $(basename "$other"): both lone ranks refused ($var=2)"
else
    echo "SKIP: no other MPI's launcher installed: the mis-launch case is not checked"
fi

# A learning rate that blows up gives non-finite losses: training stops, exit 1, and no
# checkpoint of garbage is written.
run nan 2 "${COMMON[@]}" --lr-d 1e30 --lr-g 1e30 --steps 30 --out "$TMP/nan"
expect_error "$TMP/nan.rc" "$TMP/nan.err" "NaN stops training" "non-finite"
[ -z "$(ls "$TMP/nan/checkpoints" 2>/dev/null)" ] || fail "NaN run wrote a checkpoint"
echo "all train error cases passed"
