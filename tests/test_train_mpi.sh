# chargan train under MPI: rank-count invariance, bit-identical ranks, and a sanity run on
# real EMNIST.
#
# Invariance is judged against a 1-rank run with ONE BLAS thread, because the multi-rank runs
# use one thread per rank here: OpenBLAS with 1 and 2 threads already differs in rounding,
# and that difference (not the rank count) would dominate.
#
# Two measures. After ONE step the update must agree per tensor: max|a-b| / max(max|b|, 0.01)
# <= 1e-5 — this proves the sharding, noise, dropout masks, labels and batch-norm statistics
# give the same gradient on any rank count (a wrong shard or key shows up as 1e-2 or worse).
# Over 20 steps rounding differences (summation order) grow: Adam moves an element whose
# gradient is near zero by about +-lr whatever its size, so a single element whose tiny
# gradient changes sign under rounding differs by ~2 lr. Per-element maxima then measure
# those few elements (measured here: 1e-7 .. 2e-4 for small, up to 3e-2 for dcgan at lr
# 2e-4), so the 20-step trajectories are judged by the L2 distance of each network's
# parameters, ||a-b|| / ||b||, against the issue's 1e-4 for small (measured <= 2.4e-5) and
# 1e-2 for dcgan (measured <= 9e-4). The 0.01 floor keeps zero-initialized biases
# (|b| ~ steps * lr) from turning rounding noise into large "relative" errors.
set -u
. "$(dirname "$0")/common.sh"
BIN=$1 SRC=$3
make_tmpdir
DATA=$(emnist_dir "$SRC")
BASE=(--data "$DATA" --split bymerge-test --limit 20000 --log-every 0)

train() { # NP OUT ARGS...
    local np=$1 out=$2
    shift 2
    mpirun_np "$np" "$BIN" train "${BASE[@]}" --out "$TMP/$out" "$@" >"$TMP/$out.log" 2>&1 ||
        { cat "$TMP/$out.log"; fail "training $out on $np ranks failed"; }
}
compare() { # A B ARGS...
    local a=$1 b=$2
    shift 2
    "$BIN" compare "$a" "$b" "$@" >"$TMP/cmp.json" 2>&1 || { cat "$TMP/cmp.json"; fail "$a vs $b: $*"; }
    ok "$(basename "$(dirname "$(dirname "$b")")"): $(cut -c1-400 "$TMP/cmp.json" | sed 's/.*"step_b"/"step_b"/')"
}
ck() { echo "$TMP/$1/checkpoints/step-$(printf %08d "$2").h5"; }

# small: 20 steps on 1, 2, 4 and 8 (oversubscribed) ranks, ranks checked bit-identical
# every 5 steps.
train 1 s1 --model small --steps 20 --threads 1
train 1 s1a --model small --steps 1 --threads 1
for np in 2 4 8; do
    train "$np" "s${np}a" --model small --steps 1
    compare "$(ck s1a 1)" "$(ck "s${np}a" 1)" --floor 0.01 --tol 1e-5
    train "$np" "s$np" --model small --steps 20 --check-every 5
    grep -q "check: step 20: parameters bit-identical on all $np ranks" "$TMP/s$np.log" ||
        fail "small on $np ranks: no bit-identical check at step 20"
    compare "$(ck s1 20)" "$(ck "s$np" 20)" --l2 --tol 1e-4
done

# dcgan (synchronized batch norm): one step must give the same update on any rank count (the
# math is the same; only rounding differs). Over 20 steps Adam's near-sign updates at lr 2e-4
# amplify rounding noise in single elements, so the trajectory is judged by the L2 distance
# of each network's parameters.
train 1 d1 --model dcgan --steps 1 --threads 1
train 1 d1x --model dcgan --steps 20 --threads 1
for np in 2 4; do
    train "$np" "d$np" --model dcgan --steps 1 --check-every 1
    compare "$(ck d1 1)" "$(ck "d$np" 1)" --floor 0.01 --tol 1e-5
    train "$np" "d${np}x" --model dcgan --steps 20 --check-every 5
    compare "$(ck d1x 20)" "$(ck "d${np}x" 20)" --l2 --tol 1e-2
done
# The conditional model too (labels travel with the samples).
train 1 c1 --model dcgan --conditional --steps 1 --threads 1
train 2 c2 --model dcgan --conditional --steps 1 --check-every 1
compare "$(ck c1 1)" "$(ck c2 1)" --floor 0.01 --tol 1e-5

# Sanity on real EMNIST: 50 steps of small on 2 ranks. The discriminator loss moves away from
# its start (log 2 = 0.693) and the discriminator tells real from fake early on.
train 2 sane --model small --steps 50 --log-every 5
awk -F'[:,]' '
    /"step"/ { for (i = 1; i < NF; i++) { gsub(/[ "{}]/, "", $i); v[$i] = $(i + 1) + 0 }
               if (v["step"] == 5) d0 = v["loss_d"]
               if (v["step"] == 50) { d1 = v["loss_d"]; dx = v["d_real"]; dg = v["d_fake"] } }
    END { printf "loss_D step 5 %.4f, step 50 %.4f; D(x) %.3f D(G(z)) %.3f\n", d0, d1, dx, dg
          exit !(d0 - d1 > 0.02 && dx > dg) }' "$TMP/sane/metrics.jsonl" ||
    fail "50-step sanity run: loss_D did not fall or D(x) <= D(G(z))"
ok "50-step sanity run"
echo "all MPI training tests passed"
