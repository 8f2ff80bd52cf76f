# Crafted checkpoints and sample files on the command line: `chargan info FILE` and
# `chargan sample --checkpoint FILE` must exit non-zero with exactly one stderr line, a
# "chargan: error:" naming the file and the object, within a timeout (an external link to a
# FIFO must not block), and sample must leave no output file or temporary behind; `chargan
# train --config FILE` must refuse a checkpoint whose configuration is not usable. The files
# are written by `test_h5_crafted --write-files DIR` (one "KIND NAME OBJECT" line each in
# DIR/list.txt); test_h5_crafted itself runs every loader of the library on every case.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 BUILD=$2
make_tmpdir
[ -x "$BUILD/test_h5_crafted" ] || fail "$BUILD/test_h5_crafted not built"
mkdir "$TMP/files" "$TMP/out"
"$BUILD/test_h5_crafted" --write-files "$TMP/files" >"$TMP/write.out" 2>&1 ||
    { cat "$TMP/write.out"; fail "test_h5_crafted --write-files"; }
[ -s "$TMP/files/list.txt" ] || fail "no crafted files listed"

# The command's exit status into $TMP/rc, its stderr into $TMP/err; one line only.
run() {
    local what=$1
    shift
    timeout --kill-after=5 60 "$@" >"$TMP/stdout" 2>"$TMP/err"
    echo $? >"$TMP/rc"
    [ "$(cat "$TMP/rc")" != 124 ] || fail "$what: timed out (hang?)"
    [ "$(wc -l <"$TMP/err")" = 1 ] || { cat "$TMP/err" >&2; fail "$what: stderr is not one line"; }
}

n=0
while read -r kind name object; do
    f=$TMP/files/$name.h5
    run "info $name" "$BIN" info "$f"
    expect_error "$TMP/rc" "$TMP/err" "info $name" "$f" "$object"
    if [ "$kind" = checkpoint ]; then
        run "sample $name" "$BIN" sample --checkpoint "$f" --out "$TMP/out/s.h5" --n 4
        expect_error "$TMP/rc" "$TMP/err" "sample $name" "$f" "$object"
        [ -z "$(ls -A "$TMP/out")" ] || { ls -la "$TMP/out"; fail "sample $name left a file"; }
    fi
    n=$((n + 1))
done <"$TMP/files/list.txt"
[ "$n" -ge 20 ] || fail "only $n crafted files checked"
ok "$n crafted files: one error line each from info (and sample), no output left behind"

# A configuration that is not JSON cannot be the base of a run (--config CHECKPOINT), and
# one whose values have the wrong types is refused by name.
run "train --config (not JSON)" "$BIN" train --config "$TMP/files/attr-config-not-json.h5" \
    --out "$TMP/run" --steps 1
expect_error "$TMP/rc" "$TMP/err" "train --config (not JSON)" "attr-config-not-json.h5" \
    "not JSON"
run "train --config (wrong types)" "$BIN" train --config "$TMP/files/attr-config-wrong-types.h5" \
    --out "$TMP/run" --steps 1
expect_error "$TMP/rc" "$TMP/err" "train --config (wrong types)" "attr-config-wrong-types.h5" \
    "must be"
[ ! -e "$TMP/run" ] || fail "train --config of a refused file created its output directory"
ok "train --config refuses both configurations"
