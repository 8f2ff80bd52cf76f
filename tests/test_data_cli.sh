# `chargan data` as a user runs it (one process): real data summary and PNG, options, and the
# one-line errors of the binary (exit status 1, usage errors 2), including a file the user may
# not read (run as the unprivileged user `nobody`, since root reads any file).
# Called by ctest as: bash test_data_cli.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BIN=$1
SRC=$3
. "$SRC/tests/common.sh"
make_tmpdir
EM=$(emnist_dir "$SRC") || exit 1

# --help, usage errors
"$BIN" data --help >"$TMP/help" 2>&1 || fail "--help exit status $?"
grep -q -- "--split NAME" "$TMP/help" || fail "--help lacks --split"
ok "--help"
"$BIN" data --bogus >/dev/null 2>"$TMP/err"
[ $? = 2 ] || fail "unknown option: exit status not 2"
"$BIN" data "$EM" --limit abc >/dev/null 2>"$TMP/err"
[ $? = 2 ] || fail "--limit abc: exit status not 2"
grep -q "needs a non-negative integer" "$TMP/err" || fail "--limit abc message: $(cat "$TMP/err")"
ok "usage errors exit 2"

# real data: summary and picture
"$BIN" data "$EM" --split bymerge-test --png "$TMP/grid.png" >"$TMP/out" 2>"$TMP/err" ||
    { cat "$TMP/err"; fail "bymerge-test load failed"; }
grep -q "^images: 116323 " "$TMP/out" || fail "image count: $(cat "$TMP/out")"
grep -q "^pixel mean: 44.2[0-9] / 255" "$TMP/out" || fail "pixel mean: $(grep mean "$TMP/out")"
grep -q "24 'O'   4690" "$TMP/out" || fail "histogram: $(cat "$TMP/out")"
[ "$(head -c 8 "$TMP/grid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    fail "grid.png is not a PNG"
[ ! -e "$TMP/grid.png.tmp" ] || fail "temporary PNG left behind"
ok "bymerge-test summary and PNG ($(grep '^load' "$TMP/out"))"

# the CSV and the directory-less default (EMNIST_DIR)
EMNIST_DIR=$EM "$BIN" data --split balanced-train-part --limit 100 >"$TMP/out" 2>&1 ||
    fail "EMNIST_DIR: $(cat "$TMP/out")"
grep -q "^images: 100 " "$TMP/out" || fail "--limit 100: $(cat "$TMP/out")"
"$BIN" data "$EM/emnist-balanced-train-part.csv" --stats >"$TMP/out" 2>&1 ||
    fail "CSV: $(cat "$TMP/out")"
grep -q "^images: 9120 " "$TMP/out" && grep -q "^stats: ranks=1 " "$TMP/out" ||
    fail "CSV: $(cat "$TMP/out")"
ok "CSV: $(grep '^load' "$TMP/out")"

# errors of the binary: one line naming the file and the problem, exit status 1
run() { "$BIN" data "$@" >/dev/null 2>"$TMP/err"; echo $? >"$TMP/rc"; }
run "$EM"
expect_error "$TMP/rc" "$TMP/err" "default split missing" "$EM" "no split 'balanced-train'" \
    "bymerge-test" "--split NAME"
run "$TMP/nothing-here"
expect_error "$TMP/rc" "$TMP/err" "missing path" "$TMP/nothing-here" "No such file"
(cd "$TMP" && env -u EMNIST_DIR "$BIN" data >/dev/null 2>"$TMP/err"; echo $? >"$TMP/rc")
expect_error "$TMP/rc" "$TMP/err" "nothing found" "./data/emnist" "EMNIST_DIR" \
    "https://www.nist.gov/itl/products-and-services/emnist-dataset" "crawford/emnist"
head -c 100000 "$EM/emnist-mnist-test-images-idx3-ubyte.gz" >"$TMP/emnist-mnist-test-images-idx3-ubyte.gz"
cp "$EM/emnist-mnist-test-labels-idx1-ubyte.gz" "$TMP/"
run "$TMP/emnist-mnist-test-images-idx3-ubyte.gz"
expect_error "$TMP/rc" "$TMP/err" "truncated gzip" "$TMP/emnist-mnist-test-images-idx3-ubyte.gz" \
    "truncated gzip data"
head -n 3 "$EM/emnist-balanced-train-part.csv" | sed '2s/,[0-9]*$//' >"$TMP/short.csv"
run "$TMP/short.csv"
expect_error "$TMP/rc" "$TMP/err" "CSV short row" "$TMP/short.csv" "line 2: 784 fields"
run "$EM" --split bymerge-test --png "$TMP/no/such/dir/x.png"
expect_error "$TMP/rc" "$TMP/err" "PNG not writable" "$TMP/no/such/dir/x.png" "cannot create"

# permission denied: as root every file is readable, so read as `nobody`
head -n 5 "$EM/emnist-balanced-train-part.csv" >"$TMP/secret.csv"
chmod 000 "$TMP/secret.csv"
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        as_nobody=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups)
    else
        as_nobody=()
    fi
    (cd "$TMP" && "${as_nobody[@]}" "$BIN" data "$TMP/secret.csv" >/dev/null 2>"$TMP/err"
     echo $? >"$TMP/rc")
    expect_error "$TMP/rc" "$TMP/err" "unreadable file" "$TMP/secret.csv" "Permission denied"
else
    fail "cannot test an unreadable file: no user 'nobody' or no setpriv"
fi
echo "test_data_cli: OK"
