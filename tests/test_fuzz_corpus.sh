# Replays the committed fuzz inputs through the libFuzzer harnesses of a CHARGAN_FUZZ build:
# every file of tests/fuzz/corpus/NAME (inputs that reached new code) and of
# tests/fuzz/regress/NAME (inputs that once crashed, leaked or ran out of memory) must run
# clean, with leak detection on. Builds without the harnesses skip (exit 77).
# ctest calls it as: bash test_fuzz_corpus.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
set -u
BUILD=$2 SRC=$3
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
[ -x "$BUILD/fuzz_idx" ] || { echo "skip: no fuzz harnesses in $BUILD (-DCHARGAN_FUZZ=ON)"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
status=0
for name in idx csv mapping config train_args png; do
    bin=$BUILD/fuzz_$name
    [ -x "$bin" ] || { echo "FAIL: $bin missing"; status=1; continue; }
    mapfile -t files < <(find "$SRC/tests/fuzz/corpus/$name" "$SRC/tests/fuzz/regress/$name" \
                              -type f 2>/dev/null | sort)
    [ ${#files[@]} -gt 0 ] || { echo "FAIL: no corpus for $name"; status=1; continue; }
    # Each file once; -rss_limit_mb as tests/fuzz/run.sh uses it (the malloc limit follows).
    if "$bin" -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$TMP/" "${files[@]}" \
        >"$TMP/$name.log" 2>&1; then
        echo "ok: $name: ${#files[@]} inputs"
    else
        echo "FAIL: $name:"
        grep -E '^Running: |^SUMMARY:|ERROR:' "$TMP/$name.log" | tail -4
        status=1
    fi
done
exit $status
