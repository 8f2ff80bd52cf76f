# Training the VAEs with the shared loop: bit-identical parameters on 1, 2 and 4 ranks (vae,
# vae with Adam, conditional cvae), exact resume (after --steps and after SIGTERM), refusal of
# a VAE checkpoint by a GAN run and the reverse, and the loss falling on real data.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
BASE=(--data "$DATA" --split bymerge-test --limit 4096 --log-every 10)

train() { # NP OUT ARGS...
    local np=$1 out=$2
    shift 2
    mpirun_np "$np" "$BIN" train "${BASE[@]}" --out "$TMP/$out" "$@" >>"$TMP/$out.log" 2>&1 ||
        { cat "$TMP/$out.log"; fail "training $out on $np ranks failed"; }
}
ck() { echo "$TMP/$1/checkpoints/step-$(printf %08d "$2").h5"; }
same() { # A B WHAT: byte-equal parameters
    "$BIN" compare "$1" "$2" --tol 0 >"$TMP/cmp.json" || { cat "$TMP/cmp.json"; fail "$3"; }
    grep -q '"bit_identical": true' "$TMP/cmp.json" || { cat "$TMP/cmp.json"; fail "$3"; }
    ok "$3"
}

# Rank identity: the same final parameters on 1, 2 and 4 ranks.
for np in 1 2 4; do
    train $np vae$np --model vae --steps 30
    train $np cvae$np --model cvae --conditional --steps 6 --log-every 2
done
train 1 adam1 --model vae --optimizer adam --steps 20
train 2 adam2 --model vae --optimizer adam --steps 20
for np in 2 4; do
    same "$(ck vae1 30)" "$(ck vae$np 30)" "vae: 1 rank == $np ranks (bit-identical)"
    same "$(ck cvae1 6)" "$(ck cvae$np 6)" "conditional cvae: 1 rank == $np ranks (bit-identical)"
done
same "$(ck adam1 20)" "$(ck adam2 20)" "vae with --optimizer adam: 1 rank == 2 ranks"
"$BIN" compare "$(ck vae1 30)" "$(ck adam1 20)" --tol 0 >/dev/null 2>&1 &&
    fail "RMSprop and Adam runs gave the same parameters"
grep -q "^step 30/30 epoch 1 loss [0-9.]* recon [0-9.]* kl [0-9.]* " "$TMP/vae2.log" ||
    { cat "$TMP/vae2.log"; fail "the VAE's log line lacks loss, recon, kl"; }
grep -q '"step": 30, .*"loss": .*"recon": .*"kl": ' "$TMP/vae2/metrics.jsonl" ||
    fail "metrics.jsonl lacks the VAE's loss, recon, kl"
grep -q '"summary": true, "model": "vae", "ranks": 2' "$TMP/vae2.log" || fail "no summary line"
"$BIN" info "$(ck cvae2 6)" | grep -q "^model: *cvae (vae, coding_dim 10)" || fail "info: model kind"
ok "log line, metrics.jsonl and info name the VAE's quantities"

# Resume after --steps: 15 + 15 == 30 straight, also resumed on another rank count.
train 2 split --model vae --steps 15
train 4 split --model vae --steps 30 --resume auto
grep -q "resume: .*step-00000015.h5 (step 15" "$TMP/split.log" || fail "no resume message"
same "$(ck vae1 30)" "$(ck split 30)" "vae: 15 steps on 2 ranks + resume on 4 == 30 straight"
train 2 csplit --model cvae --conditional --steps 3 --log-every 1
train 2 csplit --model cvae --conditional --steps 6 --resume auto --log-every 1
same "$(ck cvae1 6)" "$(ck csplit 6)" "conditional cvae: 3 + resume + 3 == 6 straight"

# Resume after SIGTERM to every rank: checkpoint, exit 0, resumed == uninterrupted.
setsid bash -c "exec timeout 300 $(launcher 2) '$BIN' train ${BASE[*]} --model vae --log-every 1 --steps 1000 --out '$TMP/term'" >"$TMP/term.log" 2>&1 &
job=$!
t0=$SECONDS
until grep -q '"step": 20,' "$TMP/term/metrics.jsonl" 2>/dev/null; do
    [ $((SECONDS - t0)) -lt 300 ] || fail "the SIGTERM run never reached step 20"
    sleep 0.05
done
pkill -TERM -f "^$BIN train .*$TMP/term" || fail "no ranks to signal"
wait $job
rc=$?
[ $rc = 0 ] || { cat "$TMP/term.log"; fail "SIGTERM: exit $rc, expected 0"; }
grep -q "stopped by SIGTERM after step" "$TMP/term.log" || { cat "$TMP/term.log"; fail "SIGTERM: no stop message"; }
stopped=$(sed -n 's/.*stopped by SIGTERM after step \([0-9]*\).*/\1/p' "$TMP/term.log" | head -1)
[ "$stopped" -lt 1000 ] || fail "SIGTERM: the run was not stopped early"
train 2 term --model vae --steps 1000 --resume auto --log-every 0
train 2 term_straight --model vae --steps 1000 --log-every 0
same "$(ck term_straight 1000)" "$(ck term 1000)" "vae: SIGTERM at step $stopped + resume == uninterrupted"

# A VAE checkpoint refused by a GAN run, and the reverse: one error line naming the file.
train 2 gan --model small --steps 2
mkdir -p "$TMP/wrong/checkpoints"
cp "$(ck vae1 30)" "$TMP/wrong/checkpoints/"
mpirun_np 2 "$BIN" train "${BASE[@]}" --model small --steps 40 --out "$TMP/wrong" \
    --resume auto >"$TMP/w1.out" 2>"$TMP/w1.err"
echo $? >"$TMP/w1.rc"
expect_error "$TMP/w1.rc" "$TMP/w1.err" "a GAN run refuses a VAE checkpoint" "step-00000030.h5" "'vae'" "'small'"
mpirun_np 2 "$BIN" train "${BASE[@]}" --model vae --steps 40 --out "$TMP/w2" \
    --resume "$(ck gan 2)" >"$TMP/w2.out" 2>"$TMP/w2.err"
echo $? >"$TMP/w2.rc"
expect_error "$TMP/w2.rc" "$TMP/w2.err" "a VAE run refuses a GAN checkpoint" "step-00000002.h5" "'small'" "'vae'"
mpirun_np 2 "$BIN" train "${BASE[@]}" --model cvae --steps 40 --out "$TMP/w3" \
    --resume "$(ck vae1 30)" >"$TMP/w3.out" 2>"$TMP/w3.err"
echo $? >"$TMP/w3.rc"
expect_error "$TMP/w3.rc" "$TMP/w3.err" "cvae refuses a vae checkpoint" "step-00000030.h5" "'vae'" "'cvae'"
mpirun_np 1 "$BIN" train "${BASE[@]}" --model vae --optimizer sgd --out "$TMP/w4" \
    >"$TMP/w4.out" 2>"$TMP/w4.err"
echo $? >"$TMP/w4.rc"
expect_error "$TMP/w4.rc" "$TMP/w4.err" "unknown optimizer" "--optimizer 'sgd'"
mpirun_np 1 "$BIN" train "${BASE[@]}" --model small --lr 0.01 --out "$TMP/w5" \
    >"$TMP/w5.out" 2>"$TMP/w5.err"
echo $? >"$TMP/w5.rc"
expect_error "$TMP/w5.rc" "$TMP/w5.err" "--lr on a GAN" "--lr-g"

# Real behaviour: 200 steps of the book's VAE on real images bring the loss per sample well
# down from where it starts (784 ln 2 = 543 for an untrained decoder).
train 2 learn --model vae --steps 200 --log-every 1
first=$(grep '"step": 1,' "$TMP/learn/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"step": 200,' "$TMP/learn/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 400 && b < 0.6 * a) }' ||
    fail "vae: loss $first at step 1, $last at step 200 (expected below 60 %)"
ok "vae learns: loss per sample $first at step 1, $last at step 200"
echo "all VAE training tests passed"
