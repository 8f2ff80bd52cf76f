#!/usr/bin/env python3
"""Communication model for chargan's data-parallel training (python3, standard library only).

Measured inputs (this script can take them itself with --measure):
  * compute: `chargan bench --model M --batch b --threads T` for several per-rank batches b:
    the median time of one full training step on one rank (forward and backward of G and D,
    Adam), and the per-layer split (for the time of G's backward pass);
  * communication: `mpirun -np 2 chargan bench --allreduce`: fitted alpha/beta (on this machine
    that is shared memory, not a network) and the real gradient sizes.

Projected (nothing here is measured on a cluster): the time of one step on P ranks with per-rank
batch b,

  T(P, b) = Tc(b) + ring(n_G) + ring(n_D) + small                       (no overlap)
  T(P, b) = Tc(b) + ring(n_G) + ring(n_D) - min(Tgb(b), h ring(n_D)) + small
                                                                          (D overlapped)

  ring(n) = 2(P-1) alpha + 2(P-1)/P * 8n / bw     (ring allreduce of n int64: training sums
                                                   gradients exactly in 64-bit fixed point)
  small   = ceil(log2 P) * alpha                  (the 5-number statistics allreduce,
                                                   recursive doubling)

where h = HIDDEN_D is the part of D's reduction that G's backward pass hides in practice,
measured with `chargan train --trace` (jobs/trace_plot --stats: the time from the end of G's
backward pass to usable gradients): about half, on shared memory and on TCP between two
namespace hosts, because Open MPI progresses a non-blocking collective only inside MPI calls
(the progress calls between G's layers and groups), and G's own chunks, posted as its layers
finish, are not reached before the pass ends. Tc(b) is the measured compute time, Tgb(b) the measured time of G's backward pass (D's
gradient is final before it starts, so D's MPI_Iallreduce can run during it), n_G and n_D the
parameter counts. Parallel efficiency = Tc(b) / T(P, b) (the fraction of the step spent
computing; for weak scaling, the throughput per rank relative to one rank). The per-rank batch
for 90% efficiency is the smallest b with Tc(b) >= 0.9 T(P, b), with Tc(b) linear in b
(least squares over the measured batches).

Assumptions, stated in the output: every rank has the link to itself (one rank per node, or a
NIC per rank); no contention, the nominal link rate; per-rank compute as measured here (the
same CPU, T threads per rank); latency per link type: a typical value, not measured (the
measured alpha is shared memory on one machine).

usage:
  python3 jobs/model.py --measure --bin build/chargan --inputs DIR    # take the measurements
  python3 jobs/model.py --inputs DIR [--markdown]                     # print the tables
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys

# Links: name, Gb/s, latency (us): typical MPI small-message latencies, not measured here.
LINKS = [
    ("10 Gb/s Ethernet (TCP)", 10.0, 20.0),
    ("25 Gb/s Ethernet (RoCE)", 25.0, 5.0),
    ("100 Gb/s InfiniBand EDR", 100.0, 1.5),
]
RANKS = [8, 64, 256, 1024]
BATCHES = [4, 8, 16, 32, 64, 128]
MODELS = ["seed", "small"]


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in output")


def measure(args):
    os.makedirs(args.inputs, exist_ok=True)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for m in MODELS:
        for b in BATCHES:
            cmd = [args.bin, "bench", "--model", m, "--batch", str(b), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            print("+", " ".join(cmd), file=sys.stderr)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            with open(os.path.join(args.inputs, f"bench-{m}-b{b}.json"), "w") as f:
                f.write(json.dumps(last_json(out)) + "\n")
    # --map-by node: in a multi-node allocation the two ranks are on two nodes (a network)
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "--map-by", "node", "-np", "2",
           args.bin, "bench",
           "--allreduce", "--reps", "20", "--factor", "2"]
    print("+", " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    with open(os.path.join(args.inputs, "allreduce-p2.json"), "w") as f:
        f.write(json.dumps(last_json(out)) + "\n")
    with open(os.path.join(args.inputs, "allreduce-p2.txt"), "w") as f:
        f.write(out)


def linfit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def load(inputs):
    comp = {}
    for path in glob.glob(os.path.join(inputs, "bench-*-b*.json")):
        with open(path) as f:
            j = json.load(f)
        gb = sum(L["bwd_ms"] for L in j["layers"] if L["net"] == "G")
        comp.setdefault(j["model"], {})[j["batch"]] = {
            "ms": j["ms_per_step"], "g_bwd_ms": gb, "threads": j["threads"],
            "n_g": j["params_g"], "n_d": j["params_d"]}
    with open(os.path.join(inputs, "allreduce-p2.json")) as f:
        ar = json.load(f)
    return comp, ar


class Model:
    def __init__(self, name, data):
        self.name = name
        bs = sorted(data)
        self.points = {b: data[b] for b in bs}
        self.c0, self.c1 = linfit(bs, [data[b]["ms"] for b in bs])
        self.g0, self.g1 = linfit(bs, [data[b]["g_bwd_ms"] for b in bs])
        self.n_g, self.n_d = data[bs[0]]["n_g"], data[bs[0]]["n_d"]
        self.threads = data[bs[0]]["threads"]

    def tc(self, b):  # ms; measured where we have the point, the linear fit elsewhere
        return self.points[b]["ms"] if b in self.points else self.c0 + self.c1 * b

    def tgb(self, b):
        return self.points[b]["g_bwd_ms"] if b in self.points else self.g0 + self.g1 * b


# Bytes reduced per parameter: the gradient sum is int64 fixed point (exact, so training is
# bit-identical on any rank count).
BYTES_PER_PARAM = 8
# The part of D's reduction hidden behind G's backward pass, measured (see the docstring).
HIDDEN_D = 0.5


def ring_ms(n_params, P, alpha_us, gbit):
    if P < 2:
        return 0.0
    bw = gbit * 1e9 / 8.0  # bytes/s
    return 1e3 * (2 * (P - 1) * alpha_us * 1e-6 + 2 * (P - 1) / P * BYTES_PER_PARAM * n_params / bw)


def rabenseifner_ms(n_params, P, alpha_us, gbit):
    """Reduce-scatter by recursive halving + allgather by recursive doubling: the ring's
    bandwidth term, but 2 log2(P) messages instead of 2(P-1)."""
    if P < 2:
        return 0.0
    bw = gbit * 1e9 / 8.0
    return 1e3 * (2 * math.ceil(math.log2(P)) * alpha_us * 1e-6 +
                  2 * (P - 1) / P * BYTES_PER_PARAM * n_params / bw)


def comm(m, P, alpha_us, gbit, b, overlap, algo=ring_ms):
    rg = algo(m.n_g, P, alpha_us, gbit)
    rd = algo(m.n_d, P, alpha_us, gbit)
    small = math.ceil(math.log2(P)) * alpha_us * 1e-3 if P > 1 else 0.0
    if overlap:
        rd -= min(m.tgb(b), HIDDEN_D * rd)
    return rg + rd + small


def step(m, P, alpha_us, gbit, b, overlap, algo=ring_ms):
    return m.tc(b) + comm(m, P, alpha_us, gbit, b, overlap, algo)


def b90(m, P, alpha_us, gbit, overlap, target=0.9):
    """Smallest integer per-rank batch with efficiency >= target (Tc linear in b)."""
    for b in range(1, 1 << 16):
        tc = m.c0 + m.c1 * b
        rg = ring_ms(m.n_g, P, alpha_us, gbit)
        rd = ring_ms(m.n_d, P, alpha_us, gbit)
        if overlap:
            rd -= min(m.g0 + m.g1 * b, HIDDEN_D * rd)
        small = math.ceil(math.log2(P)) * alpha_us * 1e-3
        if tc >= target * (tc + rg + rd + small):
            return b
    return None


def report(comp, ar, out):
    models = [Model(n, comp[n]) for n in MODELS if n in comp]
    fit = ar.get("fit") or {}
    links = list(LINKS)
    if fit and ar.get("nodes", 1) > 1 and fit.get("bandwidth_gb_s", 0) > 0:
        # measured between two nodes: a real network, use it too
        links.append(("measured here (%d nodes)" % ar["nodes"], 8 * fit["bandwidth_gb_s"],
                      fit["alpha_us"]))
    w = out.write
    w("Measured on this machine (%d cores): compute per rank with %d BLAS thread(s) "
      "(chargan bench, median of steps):\n\n" % (ar.get("cores", 0), models[0].threads))
    w("| model | params G | params D | " + " | ".join(f"b={b} ms" for b in BATCHES) +
      " | G backward at b=32 | fit Tc(b) |\n")
    w("|---|---|---|" + "---|" * len(BATCHES) + "---|---|\n")
    for m in models:
        w(f"| {m.name} | {m.n_g:,} | {m.n_d:,} | " +
          " | ".join(f"{m.points[b]['ms']:.1f}" if b in m.points else "-" for b in BATCHES) +
          f" | {m.tgb(32):.1f} ms | {m.c0:.1f} + {m.c1:.2f} b ms |\n")
    if fit:
        where = ("%d nodes: a network" % ar["nodes"] if ar.get("nodes", 1) > 1 else
                 "one node: shared memory, NOT used for the network projections below, a "
                 "network's latency is 10-100x larger")
        w("\nMeasured allreduce (%d ranks on %s; Open MPI): alpha = %.2f us, beta = %.4f ns/B "
          "(%.2f GB/s), worst relative misfit of the ring model %.0f%%.\n"
          % (ar["ranks"], where, fit["alpha_us"], fit["beta_ns_per_byte"],
             fit["bandwidth_gb_s"], 100 * fit["max_rel_error"]))
    w("\nProjected (ring allreduce model; typical latencies, nominal link rates, one rank per "
      "NIC). Weak scaling with per-rank batch b = 32 (global batch 32 P): step time in ms and "
      "efficiency Tc/T, without overlap / with D's Iallreduce overlapping G's backward "
      "pass:\n\n")
    for m in models:
        w(f"**{m.name}** (Tc(32) = {m.tc(32):.1f} ms, G backward {m.tgb(32):.1f} ms, "
          f"allreduce of {BYTES_PER_PARAM * m.n_g / 1e6:.2f} MB (G) + "
          f"{BYTES_PER_PARAM * m.n_d / 1e6:.2f} MB (D))\n\n")
        w("| link | alpha | " + " | ".join(f"P={P}" for P in RANKS) + " |\n")
        w("|---|---|" + "---|" * len(RANKS) + "\n")
        for name, gbit, alpha in links:
            cells = []
            for P in RANKS:
                t0 = step(m, P, alpha, gbit, 32, False)
                t1 = step(m, P, alpha, gbit, 32, True)
                cells.append(f"{t0:.1f} ms {m.tc(32) / t0:.0%} / {t1:.1f} ms {m.tc(32) / t1:.0%}")
            w(f"| {name} | {alpha:g} us | " + " | ".join(cells) + " |\n")
        w("\n")
    w("For comparison, the same with a logarithmic-latency allreduce (Rabenseifner: "
      "2 log2(P) alpha + the same bandwidth term; what MPI libraries use for large P), "
      "b = 32, with overlap: efficiency at P = 8 / 64 / 256 / 1024:\n\n")
    w("| model | " + " | ".join(n for n, _, _ in links) + " |\n")
    w("|---|" + "---|" * len(links) + "\n")
    for m in models:
        cells = []
        for name, gbit, alpha in links:
            cells.append(" / ".join(
                f"{m.tc(32) / step(m, P, alpha, gbit, 32, True, rabenseifner_ms):.0%}"
                for P in RANKS))
        w(f"| {m.name} | " + " | ".join(cells) + " |\n")
    w("\n")
    w("Strong scaling, global batch 64 (per-rank batch 64/P; P = 256 and 1024 would have "
      "less than one sample per rank), with overlap: step time, speed-up over one rank "
      "(Tc(64)), efficiency:\n\n")
    for m in models:
        w(f"**{m.name}** (one rank: {m.tc(64):.1f} ms per step of 64)\n\n")
        w("| link | " + " | ".join(f"P={P}" for P in RANKS[:2]) + " |\n")
        w("|---|" + "---|" * 2 + "\n")
        for name, gbit, alpha in links:
            cells = []
            for P in RANKS[:2]:
                b = 64 // P
                t = step(m, P, alpha, gbit, b, True)
                s = m.tc(64) / t
                cells.append(f"{t:.1f} ms, x{s:.1f}, {s / P:.0%}")
            w(f"| {name} | " + " | ".join(cells) + " |\n")
        w("\n")
    w("Smallest per-rank batch for efficiency > 90% (without overlap / with D overlapped):\n\n")
    w("| model | link | " + " | ".join(f"P={P}" for P in RANKS) + " |\n")
    w("|---|---|" + "---|" * len(RANKS) + "\n")
    for m in models:
        for name, gbit, alpha in links:
            cells = []
            for P in RANKS:
                a, b = b90(m, P, alpha, gbit, False), b90(m, P, alpha, gbit, True)
                cells.append(f"{a} / {b}")
            w(f"| {m.name} | {name} | " + " | ".join(cells) + " |\n")
    w("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", default="jobs/results/model-inputs",
                    help="directory of the measured JSON files")
    ap.add_argument("--measure", action="store_true", help="run the measurements first")
    ap.add_argument("--bin", default="build/chargan", help="chargan binary (with --measure)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads per rank (--measure)")
    ap.add_argument("--steps", type=int, default=10, help="bench steps per point (--measure)")
    args = ap.parse_args()
    if args.measure:
        measure(args)
    comp, ar = load(args.inputs)
    report(comp, ar, sys.stdout)


if __name__ == "__main__":
    main()
