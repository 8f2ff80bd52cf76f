# The handwriting page (web/) in a real browser: a tiny conditional checkpoint is trained and
# exported into a copy of the page, the copy is served over HTTP, and tests/web_check.mjs
# drives headless Chromium through it, comparing the canvas with `chargan write`'s PNGs of the
# same lines (same seed, temperature and text) pixel by pixel. Skips (77) without Chromium,
# node or web/node_modules (cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci).
# ctest calls it as: bash test_web.sh CHARGAN_BINARY BUILD_DIR SOURCE_DIR
# CHARGAN_WEB_CHECKPOINT=FILE runs the page on that checkpoint instead of a tiny one (its
# screenshot then shows real handwriting); CHROMIUM=PATH picks the browser.
set -u
BIN=$1 BUILD=$2 SRC=$3
. "$(dirname "$0")/common.sh"

skip() {
    echo "SKIP: $*"
    exit 77
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || skip "no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM)"
command -v node >/dev/null || skip "no node (apt-get install nodejs)"
command -v python3 >/dev/null || skip "no python3 to serve the page"
for pkg in onnxruntime-web puppeteer-core; do
    [ -d "$SRC/web/node_modules/$pkg" ] ||
        skip "no $SRC/web/node_modules/$pkg (cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci)"
done

make_tmpdir
OUT=$BUILD/test_web
rm -rf "$OUT" && mkdir -p "$OUT" || fail "mkdir $OUT"
SEED=7 HELLO="Hello World 2026"

if [ -n "${CHARGAN_WEB_CHECKPOINT:-}" ]; then
    CKPT=$CHARGAN_WEB_CHECKPOINT
else
    DATA=$(emnist_dir "$SRC") || exit 1
    "$BIN" train --model deep --steps 2 --batch 8 --data "$DATA" --split bymerge-test \
        --limit 512 --out "$TMP/run" --log-every 0 >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; fail "train"; }
    CKPT=$TMP/run/checkpoints/step-00000002.h5
fi

# The page as it is in the source tree, plus the model; node_modules by link (it is large).
SITE=$TMP/site
mkdir "$SITE" && cp "$SRC"/web/index.html "$SRC"/web/*.js "$SRC"/web/*.css "$SITE"/ &&
    ln -s "$SRC/web/node_modules" "$SITE/node_modules" || fail "copy of web/"
"$BIN" export --checkpoint "$CKPT" --out "$SITE/model.onnx" --meta "$SITE/model.json" \
    >"$TMP/export.log" 2>&1 || { cat "$TMP/export.log"; fail "export"; }
ok "exported $CKPT into $SITE"

mkdir "$TMP/ref"
write_ref() {
    local out=$1
    shift
    "$BIN" write --checkpoint "$CKPT" --seed $SEED --scale 2 --out "$TMP/ref/$out" "$@" \
        >>"$TMP/write.log" 2>&1 || { cat "$TMP/write.log"; fail "write $*"; }
}
write_ref hello.png --text "$HELLO"
write_ref hello-t0.5.png --text "$HELLO" --temperature 0.5
write_ref cop.png --text cop

# A free port from the kernel, then the server on it; the test waits until it answers.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$SITE" "$PORT" >"$TMP/http.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$TMP"' EXIT
up=0
for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        up=1
        break
    fi
    kill -0 $SERVER 2>/dev/null || { cat "$TMP/http.log"; fail "http.server exited"; }
    sleep 0.1
done
[ $up = 1 ] || fail "http.server on port $PORT did not answer within 60 s"

timeout --kill-after=10 "${CG_TIMEOUT:-600}" node "$SRC/tests/web_check.mjs" \
    --url "http://127.0.0.1:$PORT/index.html" --web "$SRC/web" --chromium "$CHROMIUM" \
    --ref "$TMP/ref" --out "$OUT" --seed $SEED || fail "web_check.mjs (exit $?)"
cp "$TMP/ref"/*.png "$OUT"/ 2>/dev/null
ok "page = chargan write; screenshot and reference PNGs in $OUT"
