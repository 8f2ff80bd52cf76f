# chargan train under MPI: rank-count invariance, bit-identical ranks, and a sanity run on
# real EMNIST.
#
# Invariance is exact: gradients are summed in int64 fixed point over 8 fixed groups of the
# global batch (cg_net_set_groups), every group's GEMMs have the same shapes on any rank count,
# and cg_sgemm's result does not depend on the thread count. So 20 steps on 1 rank (1 or 2
# threads) and on 2, 4 and 8 ranks must give BIT-IDENTICAL parameters (the comparison runs
# with tolerance 0). A control run summing over one group instead of 8 shows that the
# comparison can fail: its parameters differ in the last bits (a different summation order)
# yet stay within 1e-4 relative by the L2 measure.
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
identical() { # A B: bit-identical parameters
    compare "$1" "$2" --tol 0
    grep -q '"bit_identical": true' "$TMP/cmp.json" || fail "$1 vs $2: not bit-identical"
}
ck() { echo "$TMP/$1/checkpoints/step-$(printf %08d "$2").h5"; }

# small: 20 steps on 1 rank with 1 and 2 threads, on 2, 4 and 8 (oversubscribed) ranks, ranks
# checked bit-identical every 5 steps.
train 1 s1 --model small --steps 20 --threads 1
train 1 s1t2 --model small --steps 20 --threads 2
identical "$(ck s1 20)" "$(ck s1t2 20)"
for np in 2 4 8; do
    train "$np" "s$np" --model small --steps 20 --check-every 5
    grep -q "check: step 20: parameters bit-identical on all $np ranks" "$TMP/s$np.log" ||
        fail "small on $np ranks: no bit-identical check at step 20"
    identical "$(ck s1 20)" "$(ck "s$np" 20)"
done
# The control: one group instead of 8 changes the summation order.
train 1 s1g1 --model small --steps 20 --threads 1 --sum-groups 1
"$BIN" compare "$(ck s1 20)" "$(ck s1g1 20)" --tol 0 >"$TMP/cmp.json" 2>&1 &&
    fail "one group vs 8 groups gave identical parameters: the comparison cannot see summation order"
compare "$(ck s1 20)" "$(ck s1g1 20)" --l2 --tol 1e-4
# --float-sums (half the allreduce bytes): float summation, so ranks still agree bit for bit
# with each other, but rank counts agree only up to rounding (L2 within 1e-4 relative).
train 2 f2 --model small --steps 20 --float-sums --check-every 5
grep -q "check: step 20: parameters bit-identical on all 2 ranks" "$TMP/f2.log" ||
    fail "--float-sums on 2 ranks: no bit-identical check at step 20"
compare "$(ck s1 20)" "$(ck f2 20)" --l2 --tol 1e-4

# dcgan (synchronized batch norm), plain and conditional (labels travel with the samples).
train 1 d1 --model dcgan --steps 20 --threads 2
train 1 c1 --model dcgan --conditional --steps 20 --threads 1
for np in 2 4; do
    train "$np" "d$np" --model dcgan --steps 20 --check-every 5
    identical "$(ck d1 20)" "$(ck "d$np" 20)"
    train "$np" "c$np" --model dcgan --conditional --steps 20 --check-every 5
    identical "$(ck c1 20)" "$(ck "c$np" 20)"
done
# cdcgan: conditional batch norm in G, whose class rows are folded group by group.
train 1 k1 --model cdcgan --conditional --steps 20 --threads 1
train 2 k2 --model cdcgan --conditional --steps 20 --check-every 5
identical "$(ck k1 20)" "$(ck k2 20)"
# deep: five batch norms in G, all conditional.
train 1 p1 --model deep --conditional --steps 10 --threads 1
train 4 p4 --model deep --conditional --steps 10 --check-every 5
identical "$(ck p1 10)" "$(ck p4 10)"

# The hinge loss and the learning-rate schedule are per-rank arithmetic on reduced values:
# still bit-identical across rank counts; and they change the result (the options are used).
train 1 h1 --model small --steps 20 --threads 1 --loss hinge --lr-decay-start 10
train 4 h4 --model small --steps 20 --loss hinge --lr-decay-start 10 --check-every 5
identical "$(ck h1 20)" "$(ck h4 20)"
"$BIN" info "$(ck h1 20)" | grep -q '"loss": "hinge", "lr_decay_start": 10' ||
    fail "hinge run: loss and schedule not recorded in the run's config"
"$BIN" compare "$(ck s1 20)" "$(ck h1 20)" --tol 0 >"$TMP/cmp.json" 2>&1 &&
    fail "--loss hinge --lr-decay-start 10 gave the same parameters as the defaults"
train 1 h1b --model small --steps 20 --threads 1 --lr-decay-start 10
"$BIN" compare "$(ck s1 20)" "$(ck h1b 20)" --tol 0 >"$TMP/cmp.json" 2>&1 &&
    fail "--lr-decay-start 10 gave the same parameters as a constant rate"
ok "hinge loss and decaying learning rate: bit-identical on 1 and 4 ranks, recorded, in effect"

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
