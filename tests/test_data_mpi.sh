# The shared-window load under MPI (1, 2 and 4 ranks on this node):
#   - every rank count gives the same data set (count, pixel mean);
#   - memory: the data is counted once per node: the sum over 4 ranks of their PSS (after every
#     rank has read every image) stays under 2x the 1-rank figure;
#   - bad data on the reading rank ends every rank, with exactly one "chargan: error:" line
#     naming the file and the problem, a non-zero exit status, and no hang (timeout).
# Called by ctest as: bash test_data_mpi.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1
SRC=$3
. "$SRC/tests/common.sh"
make_tmpdir
EM=$(emnist_dir "$SRC") || exit 1

declare -A pss
for np in 1 2 4; do
    mpirun_np "$np" "$BIN" data "$EM" --split bymerge-test --stats >"$TMP/out.$np" 2>"$TMP/err.$np" ||
        { cat "$TMP/err.$np"; fail "$np ranks: bymerge-test load failed"; }
    grep -q "^images: 116323 .*ranks: $np on 1 node" "$TMP/out.$np" || fail "$np ranks: $(cat "$TMP/out.$np")"
    grep -q "^pixel mean: 44.2[0-9] / 255" "$TMP/out.$np" || fail "$np ranks: pixel mean"
    if [ "$np" != 1 ]; then
        diff <(grep -v -e '^load' -e '^stats' -e '^images' "$TMP/out.1") \
             <(grep -v -e '^load' -e '^stats' -e '^images' "$TMP/out.$np") >/dev/null ||
            fail "$np ranks: output differs from 1 rank"
    fi
    pss[$np]=$(sed -n 's/^stats: .* pss_sum_mb=\([0-9.]*\) .*/\1/p' "$TMP/out.$np")
    [ -n "${pss[$np]}" ] || fail "$np ranks: no pss_sum_mb in $(cat "$TMP/out.$np")"
    ok "$np ranks: $(grep '^stats' "$TMP/out.$np")"
done
awk -v a="${pss[4]}" -v b="${pss[1]}" 'BEGIN { exit !(a < 2 * b) }' ||
    fail "4 ranks use ${pss[4]} MB PSS in total, not under 2x the 1-rank ${pss[1]} MB"
ok "PSS sum with 4 ranks ${pss[4]} MB < 2 x ${pss[1]} MB (one copy per node)"

# bad inputs (copies and edits of real files in a temporary directory)
head -c 300000 "$EM/emnist-mnist-test-images-idx3-ubyte.gz" >"$TMP/emnist-mnist-cut-images-idx3-ubyte.gz"
cp "$EM/emnist-mnist-test-labels-idx1-ubyte.gz" "$TMP/emnist-mnist-cut-labels-idx1-ubyte.gz"
printf '\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x1c' >"$TMP/emnist-mnist-magic-images-idx3-ubyte"
head -c 800 /dev/zero >>"$TMP/emnist-mnist-magic-images-idx3-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x00\x01\x00' >"$TMP/emnist-mnist-magic-labels-idx1-ubyte"
head -n 4 "$EM/emnist-balanced-train-part.csv" | sed '3s/^[0-9]*,/99,/' >"$TMP/emnist-balanced-label.csv"
head -n 2 "$EM/emnist-balanced-train-part.csv" >"$TMP/emnist-balanced-crlf.csv"
sed -i 's/$/\r/' "$TMP/emnist-balanced-crlf.csv"

export CG_TIMEOUT=60
for np in 2 4; do
    run() { mpirun_np "$np" "$BIN" data "$@" >"$TMP/out" 2>"$TMP/err"; echo $? >"$TMP/rc"; }
    run "$TMP/emnist-mnist-cut-images-idx3-ubyte.gz"
    expect_error "$TMP/rc" "$TMP/err" "$np ranks, truncated gzip" \
        "$TMP/emnist-mnist-cut-images-idx3-ubyte.gz" "truncated gzip data"
    run "$TMP/emnist-mnist-magic-images-idx3-ubyte"
    expect_error "$TMP/rc" "$TMP/err" "$np ranks, wrong magic" \
        "$TMP/emnist-mnist-magic-images-idx3-ubyte" "bad magic 0x00000802"
    run "$TMP/emnist-balanced-label.csv"
    expect_error "$TMP/rc" "$TMP/err" "$np ranks, CSV label out of range" \
        "$TMP/emnist-balanced-label.csv" "line 3: label 99 is not a class"
    run "$EM" --split balanced-test
    expect_error "$TMP/rc" "$TMP/err" "$np ranks, missing split" "$EM" "no split 'balanced-test'"
    run "$TMP/missing"
    expect_error "$TMP/rc" "$TMP/err" "$np ranks, missing file" "$TMP/missing" "No such file"
    # and a good CSV with CRLF line ends on every rank
    run "$TMP/emnist-balanced-crlf.csv"
    [ "$(cat "$TMP/rc")" = 0 ] && grep -q "^images: 2 " "$TMP/out" ||
        { cat "$TMP/err"; fail "$np ranks: CRLF CSV"; }
    ok "$np ranks, CRLF CSV loads"
done
echo "test_data_mpi: OK"
