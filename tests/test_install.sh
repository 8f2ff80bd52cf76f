# cmake --install into a temporary prefix: the binary, the job scripts and (with help2man) the
# man page land where they should, the installed binary loads the same libraries as the
# built one (the BLAS variant's directory must survive in its RPATH), and it trains 2 steps
# on 2 ranks.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 BUILD=$2 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
P=$TMP/prefix

cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log"; fail "cmake --install failed"; }
[ -x "$P/bin/chargan" ] || fail "bin/chargan not installed"
for f in train.sbatch scaling.sbatch scaling.sh README.md; do
    [ -f "$P/share/chargan/jobs/$f" ] || fail "share/chargan/jobs/$f not installed"
done
[ -x "$P/share/chargan/jobs/train.sbatch" ] || fail "train.sbatch installed without its x bit"
if command -v help2man >/dev/null; then
    man=$P/share/man/man1/chargan.1
    [ -s "$man" ] || fail "help2man is installed but the man page is not"
    grep -q '^\.TH CHARGAN "1"' "$man" && grep -q 'write a line of text' "$man" ||
        fail "the man page lacks its header or the command list"
    ok "man page installed ($(wc -c <"$man") bytes)"
else
    echo "SKIP: help2man not installed: no man page to check"
fi
"$BIN" --version >"$TMP/built.txt" && "$P/bin/chargan" --version >"$TMP/installed.txt" ||
    fail "--version failed"
diff "$TMP/built.txt" "$TMP/installed.txt" >&2 ||
    fail "the installed binary reports another stack than the built one (lost RPATH?)"
ok "installed binary: $(grep '^BLAS' "$TMP/installed.txt")"

mpirun_np 2 "$P/bin/chargan" train --data "$DATA" --split bymerge-test --limit 2000 \
    --model small --steps 2 --log-every 1 --out "$TMP/run" >"$TMP/run.log" 2>&1 ||
    { cat "$TMP/run.log"; fail "training with the installed binary failed"; }
"$P/bin/chargan" info "$TMP/run/checkpoints/step-00000002.h5" | grep -qE '^step: +2$' ||
    fail "no checkpoint of step 2 from the installed binary"
ok "the installed binary trained 2 steps on 2 ranks"
echo "install test passed"
