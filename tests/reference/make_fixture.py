#!/usr/bin/python3
"""Independent PyTorch reference for one chargan training step.

Writes tests/reference/fixture.h5, which tests/test_reference.c compares chargan against.
Nothing here uses chargan's code: the random generator, the test initialization, the two
networks, dropout and both losses are re-implemented from their written definitions
(include/chargan/rng.h, gan.h, model.h), and the gradients come from torch.autograd in float64.

Run from anywhere:  /usr/bin/python3 tests/reference/make_fixture.py [--out PATH]
Needs Debian's python3-torch, python3-h5py, python3-numpy.

The inputs (weights, noise, real images, dropout masks) are regenerated from the seed on both
sides, so the fixture stores outputs only; see README.md in this directory for its layout.
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

FORMAT_VERSION = 1
SEED = 1234
BATCH = 4
NOISE_DIM = 150
REAL_STREAM = 77          # raw stream number of the real images
N_SEED_SAMPLES = 21       # sampled gradient entries per tensor for the seed preset

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
PURPOSE_INIT, PURPOSE_NOISE, PURPOSE_DROPOUT = 1, 2, 3


# ----------------------------------------------------------------------------------------------
# Random generator (include/chargan/rng.h), bit-exact, vectorized over the index.

def mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream(purpose, sub):
    return np.uint64(((purpose << 56) ^ (sub & 0x00FFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF)


def rng_u64(seed, strm, index):
    index = np.asarray(index, dtype=np.uint64)
    key = mix64(mix64(np.uint64(seed)) ^ np.uint64(strm))
    return mix64(key ^ index)


def rng_uniform(seed, strm, index):
    """float32 in [0,1) with 24 random bits."""
    r = rng_u64(seed, strm, index)
    return (r >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def rng_normal(seed, strm, index):
    """Box-Muller in double from the two 32-bit halves of one draw, rounded to float32."""
    r = rng_u64(seed, strm, index)
    u1 = ((r >> np.uint64(32)).astype(np.float64) + 1.0) * (1.0 / 4294967296.0)
    u2 = (r & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)).astype(np.float32)


def self_test_rng():
    """Spot checks against an independent pure-Python (arbitrary precision) implementation."""
    def mix_py(z):
        z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)
    for seed, strm, idx in [(0, 0, 0), (1234, int(stream(PURPOSE_DROPOUT, 4)), 511),
                            (2**64 - 1, 77, 2**40 + 3), (1234, int(stream(PURPOSE_INIT, 100)), 7)]:
        want = mix_py(mix_py(mix_py(seed) ^ strm) ^ idx)
        got = int(rng_u64(seed, strm, np.array([idx], dtype=np.uint64))[0])
        assert got == want, (seed, strm, idx, got, want)


# ----------------------------------------------------------------------------------------------
# Presets (the layer tables of src/preset.c), as the list of parameter tensors in table order.

def preset(name):
    if name == "seed":
        c0, c1 = 256, 128
    elif name == "small":
        c0, c1 = 64, 32
    else:
        raise ValueError(name)
    # (name, natural shape, fan_in, fan_out); biases have fans 0.
    g = [
        ("dense0.kernel", (NOISE_DIM, c0 * 49), NOISE_DIM, c0 * 49),
        ("dense0.bias", (c0 * 49,), 0, 0),
        ("convt0.kernel", (c0, c0, 3, 3), c0 * 9, c0 * 9),   # [in][out][k][k]: fan_in = out*9
        ("convt0.bias", (c0,), 0, 0),
        ("convt1.kernel", (c0, c1, 3, 3), c1 * 9, c0 * 9),
        ("convt1.bias", (c1,), 0, 0),
        ("convt2.kernel", (c1, 1, 3, 3), 1 * 9, c1 * 9),
        ("convt2.bias", (1,), 0, 0),
    ]
    d = [
        ("conv0.kernel", (c0, 1, 3, 3), 1 * 9, c0 * 9),      # [out][in][k][k]: fan_in = in*9
        ("conv0.bias", (c0,), 0, 0),
        ("conv1.kernel", (c1, c0, 3, 3), c0 * 9, c1 * 9),
        ("conv1.bias", (c1,), 0, 0),
        ("dense0.kernel", (c1 * 49, 64), c1 * 49, 64),
        ("dense0.bias", (64,), 0, 0),
        ("dense1.kernel", (64, 1), 64, 1),
        ("dense1.bias", (1,), 0, 0),
    ]
    return c0, c1, g, d


def test_init(tensors, stream_base):
    """The fixture's TEST initialization (non-zero biases), computed in float32 like the C
    side: element i = (2*uniform(S, stream(INIT, base + t), i) - 1) * L."""
    out = {}
    for t, (name, shape, fan_in, fan_out) in enumerate(tensors):
        n = int(np.prod(shape))
        u = rng_uniform(SEED, stream(PURPOSE_INIT, stream_base + t), np.arange(n, dtype=np.uint64))
        if fan_in == 0:
            lim = np.float32(0.05)
        else:
            lim = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
        w = (np.float32(2.0) * u - np.float32(1.0)) * lim
        assert w.dtype == np.float32
        out[name] = w.reshape(shape)
    return out


# ----------------------------------------------------------------------------------------------
# The two networks in float64 PyTorch (NCHW).

def generator(p, z, c0):
    h = z @ p["dense0.kernel"] + p["dense0.bias"]                       # no activation
    h = h.reshape(z.shape[0], c0, 7, 7)                                  # f = c*49 + h*7 + w
    h = F.conv_transpose2d(h, p["convt0.kernel"], p["convt0.bias"], stride=2, padding=1,
                           output_padding=1)
    h = F.leaky_relu(h, 0.3)
    h = F.conv_transpose2d(h, p["convt1.kernel"], p["convt1.bias"], stride=2, padding=1,
                           output_padding=1)
    h = F.leaky_relu(h, 0.3)
    h = F.conv_transpose2d(h, p["convt2.kernel"], p["convt2.bias"], stride=1, padding=1,
                           output_padding=0)
    return torch.sigmoid(h)                                              # [B,1,28,28]


def dropout_mask(first, n, feat, step=0, layer=4, rate=0.2):
    """keep(i, f) iff uniform(S, stream(DROPOUT, step*16 + layer), (first+i)*feat + f) >= rate;
    kept values scaled by float32(1 / (1 - rate))."""
    rate32 = np.float32(rate)
    idx = (np.arange(n, dtype=np.uint64)[:, None] + np.uint64(first)) * np.uint64(feat) \
        + np.arange(feat, dtype=np.uint64)[None, :]
    u = rng_uniform(SEED, stream(PURPOSE_DROPOUT, step * 16 + layer), idx)
    keep = u >= rate32
    scale = np.float32(np.float32(1.0) / (np.float32(1.0) - rate32))
    return torch.from_numpy(keep.astype(np.float64) * np.float64(scale))


def discriminator(p, x, mask):
    h = F.relu(F.conv2d(x, p["conv0.kernel"], p["conv0.bias"], stride=2, padding=1))
    h = F.relu(F.conv2d(h, p["conv1.kernel"], p["conv1.bias"], stride=2, padding=1))
    h = h.reshape(x.shape[0], -1)                                        # f = c*49 + h*7 + w
    h = F.relu(h @ p["dense0.kernel"] + p["dense0.bias"])
    h = h * mask                                                         # dropout, training
    return (h @ p["dense1.kernel"] + p["dense1.bias"]).reshape(-1)       # logits [B]


def reference_step(name):
    c0, c1, gt, dt = preset(name)
    gw = test_init(gt, 0)
    dw = test_init(dt, 100)
    n_g = sum(int(np.prod(s)) for _, s, _, _ in gt)
    n_d = sum(int(np.prod(s)) for _, s, _, _ in dt)

    gp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in gw.items()}
    dp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in dw.items()}

    z = rng_normal(SEED, stream(PURPOSE_NOISE, 0),
                   np.arange(BATCH * NOISE_DIM, dtype=np.uint64)).reshape(BATCH, NOISE_DIM)
    real = rng_uniform(SEED, REAL_STREAM, np.arange(BATCH * 784, dtype=np.uint64))
    real = real.reshape(BATCH, 1, 28, 28)
    z = torch.tensor(z, dtype=torch.float64)
    real = torch.tensor(real, dtype=torch.float64)

    fake = generator(gp, z, c0)
    logits_real = discriminator(dp, real, dropout_mask(0, BATCH, 64))
    logits_fake = discriminator(dp, fake, dropout_mask(BATCH, BATCH, 64))

    # L_D on the concatenation (targets 1 for real, 0 for fake); asking autograd only for D's
    # parameters is the same as detaching fake.
    logits = torch.cat([logits_real, logits_fake])
    targets = torch.cat([torch.ones(BATCH, dtype=torch.float64),
                         torch.zeros(BATCH, dtype=torch.float64)])
    loss_d = F.binary_cross_entropy_with_logits(logits, targets, reduction="mean")
    loss_g = F.binary_cross_entropy_with_logits(logits_fake, torch.ones(BATCH, dtype=torch.float64),
                                                reduction="mean")
    dnames = [n for n, _, _, _ in dt]
    gnames = [n for n, _, _, _ in gt]
    grad_d = torch.autograd.grad(loss_d, [dp[n] for n in dnames], retain_graph=True)
    grad_g = torch.autograd.grad(loss_g, [gp[n] for n in gnames])

    return dict(
        c0=c0, c1=c1, n_params_g=n_g, n_params_d=n_d,
        fake=fake.detach().numpy().reshape(BATCH, 28, 28),
        logits_real=logits_real.detach().numpy(),
        logits_fake=logits_fake.detach().numpy(),
        loss_d=float(loss_d), loss_g=float(loss_g),
        d_real=float(torch.sigmoid(logits_real).mean()),
        d_fake=float(torch.sigmoid(logits_fake).mean()),
        grad_g={n: g.numpy() for n, g in zip(gnames, grad_g)},
        grad_d={n: g.numpy() for n, g in zip(dnames, grad_d)},
        gnames=gnames, dnames=dnames,
    )


# ----------------------------------------------------------------------------------------------

def write_outputs(grp, r):
    grp.attrs["c0"] = r["c0"]
    grp.attrs["c1"] = r["c1"]
    grp.attrs["n_params_g"] = r["n_params_g"]
    grp.attrs["n_params_d"] = r["n_params_d"]
    grp.create_dataset("fake", data=r["fake"].astype(np.float32))
    grp.create_dataset("logits_real", data=r["logits_real"].astype(np.float32))
    grp.create_dataset("logits_fake", data=r["logits_fake"].astype(np.float32))
    for k in ("loss_d", "loss_g", "d_real", "d_fake"):
        grp.create_dataset(k, data=np.float64(r[k]))


def write_full(grp, r):
    for net, key, names in (("generator", "grad_g", r["gnames"]),
                            ("discriminator", "grad_d", r["dnames"])):
        for n in names:
            grp.create_dataset(f"grad/{net}/{n}", data=r[key][n].astype(np.float32))


def write_sampled(grp, r, picker):
    total = 0
    for net, key, names in (("generator", "grad_g", r["gnames"]),
                            ("discriminator", "grad_d", r["dnames"])):
        for n in names:
            g = r[key][n].reshape(-1)
            if g.size <= N_SEED_SAMPLES:
                pos = np.arange(g.size, dtype=np.int64)
            else:
                # the largest entry plus distinct pseudo-random ones, sorted
                amax = int(np.argmax(np.abs(g)))
                rest = picker.choice(g.size, size=N_SEED_SAMPLES + 1, replace=False)
                rest = [int(p) for p in rest if p != amax][:N_SEED_SAMPLES - 1]
                pos = np.array(sorted([amax] + rest), dtype=np.int64)
            sub = grp.create_group(f"grad/{net}/{n}")
            sub.create_dataset("index", data=pos)
            sub.create_dataset("value", data=g[pos].astype(np.float32))
            sub.create_dataset("norm", data=np.float64(np.linalg.norm(g)))
            sub.create_dataset("max_abs", data=np.float64(np.max(np.abs(g))))
            sub.attrs["count"] = g.size
            total += pos.size
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixture.h5"))
    args = ap.parse_args()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    self_test_rng()
    with h5py.File(args.out, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["seed"] = SEED
        f.attrs["batch"] = BATCH
        f.attrs["noise_dim"] = NOISE_DIM
        f.attrs["real_stream"] = REAL_STREAM
        f.attrs["step"] = 0
        f.attrs["generator"] = "tests/reference/make_fixture.py (PyTorch %s, float64)" % torch.__version__
        for name in ("small", "seed"):
            r = reference_step(name)
            grp = f.create_group(name)
            write_outputs(grp, r)
            if name == "small":
                write_full(grp, r)
                grp.attrs["grad_storage"] = "full"
                extra = "all gradients"
            else:
                n = write_sampled(grp, r, np.random.default_rng(20240602))
                grp.attrs["grad_storage"] = "sampled"
                extra = f"{n} sampled gradient entries"
            print(f"{name}: G {r['n_params_g']} D {r['n_params_d']} params, "
                  f"loss_d {r['loss_d']:.9f} loss_g {r['loss_g']:.9f} "
                  f"D(real) {r['d_real']:.6f} D(fake) {r['d_fake']:.6f}, {extra}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
