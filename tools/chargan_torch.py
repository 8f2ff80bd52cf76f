#!/usr/bin/python3
"""A chargan generator as a PyTorch module, built from its checkpoint alone.

chargan stores the generator's layer table in the checkpoint, as the JSON attribute `layers`
on /generator (written by src/ckpt.c from cg_net_layers_json in src/model.c), so nothing here
repeats the presets. Each entry is one layer, applied as: its op (dense, convt, ...), then
batch norm, then the conditional batch norm's per-class affine, then the activation. The last
entry (op "image") maps the last layer's output to an image in [0, 1].

    from chargan_torch import load_generator
    g = load_generator("run/checkpoints/step-00010000.h5")    # EMA weights when present
    images = g(z, labels)   # z [N, noise_dim]; labels [N] for conditional models -> [N,1,28,28]

Command line, the same images as `chargan sample --checkpoint CKPT --seed S --n N`:

    python3 tools/chargan_torch.py CKPT --seed S --n N --out FILE.npy   # float32 [N, 28, 28]

Needs Debian's python3-torch, python3-h5py and python3-numpy.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class CheckpointError(Exception):
    """A checkpoint this loader cannot use; the message starts with the file name."""


ACTIVATIONS = {
    "none": lambda x, alpha: x,
    "relu": lambda x, alpha: F.relu(x),
    "leaky_relu": lambda x, alpha: F.leaky_relu(x, alpha),
    "sigmoid": lambda x, alpha: torch.sigmoid(x),
    "tanh": lambda x, alpha: torch.tanh(x),
    "selu": lambda x, alpha: F.selu(x),
}


def load(param, value):
    """Sets a parameter or buffer to value, which must have its shape."""
    if param.shape != value.shape:
        raise ValueError(f"a tensor of shape {list(value.shape)} where the layer needs "
                         f"{list(param.shape)}")
    param.data = value.contiguous()


class Layer(nn.Module):
    """One entry of the layer table: op, batch norm, conditional affine, activation."""

    def __init__(self, spec, tensor):
        super().__init__()
        self.spec = spec
        op, t = spec["op"], spec["tensors"]
        c_in, shape_out = spec["input"][0], spec["output"]
        bias = "bias" in t
        if op == "dense":  # chargan's kernel is [in][out] (y = x W + b): Linear's transposed
            self.op = nn.Linear(c_in, spec["out"], bias=bias)
            load(self.op.weight, tensor(t["kernel"]).T)
        elif op in ("conv", "convt"):  # kernels already in PyTorch's layouts
            args = (c_in, spec["out"], spec["k"], spec["stride"], spec["pad"])
            self.op = (nn.Conv2d(*args, bias=bias) if op == "conv" else
                       nn.ConvTranspose2d(*args, output_padding=spec["out_pad"], bias=bias))
            load(self.op.weight, tensor(t["kernel"]))
        elif op == "unflatten":  # the flat features are in C, H, W order
            self.op = nn.Unflatten(1, shape_out)
        elif op == "flatten":
            self.op = nn.Flatten()
        elif op in ("dropout", "labels"):  # dropout is the identity at inference
            self.op = nn.Identity()
        else:
            raise ValueError(f"layer {spec.get('name')}: op '{op}' is not a generator's")
        if bias:
            load(self.op.bias, tensor(t["bias"]))
        self.bn = None
        if spec["bn"]:
            bn = nn.BatchNorm2d if len(shape_out) == 3 else nn.BatchNorm1d
            self.bn = bn(shape_out[0], eps=spec["bn_eps"], momentum=spec["bn_momentum"])
            for name, role in (("weight", "bn_gamma"), ("bias", "bn_beta"),
                               ("running_mean", "bn_running_mean"),
                               ("running_var", "bn_running_var")):
                load(getattr(self.bn, name), tensor(t[role]))
        if spec["cbn"]:  # [classes][channels]
            self.cbn_gamma = nn.Parameter(torch.zeros(spec["cbn"], shape_out[0]))
            self.cbn_beta = nn.Parameter(torch.zeros(spec["cbn"], shape_out[0]))
            load(self.cbn_gamma, tensor(t["cbn_gamma"]))
            load(self.cbn_beta, tensor(t["cbn_beta"]))

    def forward(self, x, labels):
        s = self.spec
        if s["op"] == "labels":  # the one-hot class joins the features
            return torch.cat([x, F.one_hot(labels, s["out"]).to(x.dtype)], dim=1)
        x = self.op(x)
        if self.bn is not None:
            x = self.bn(x)
        if s["cbn"]:  # y = x * (1 + gamma[class]) + beta[class], per channel
            gamma, beta = self.cbn_gamma[labels], self.cbn_beta[labels]
            if x.dim() == 4:
                gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
            x = x * (1 + gamma) + beta
        return ACTIVATIONS[s["act"]](x, s["alpha"])


class Generator(nn.Module):
    def __init__(self, layers, tensor, n_classes):
        super().__init__()
        *table, image = layers
        if image.get("op") != "image" or image.get("map") not in ("y", "0.5 * (y + 1)"):
            raise ValueError("the last entry is not a known image mapping")
        self.layers = nn.ModuleList(Layer(spec, tensor) for spec in table)
        self.tanh_output = image["map"] != "y"
        self.image_shape = tuple(image["shape"])  # [1, 28, 28]
        self.noise_dim = table[0]["input"][0]
        self.n_classes = n_classes

    def forward(self, z, labels=None):
        """z: [N, noise_dim] float32; labels: [N] class indices (conditional models only).
        Returns images [N, 1, 28, 28] in [0, 1], row 0 at the top."""
        if self.n_classes and labels is None:
            raise ValueError("a conditional generator needs labels")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long)
        x = z
        for layer in self.layers:
            x = layer(x, labels)
        x = x.reshape(-1, *self.image_shape)
        return 0.5 * (x + 1) if self.tanh_output else x


def load_generator(path, ema=True):
    """The generator of a chargan checkpoint in eval mode, float32: its EMA weights when
    ema is set and the checkpoint has them, else the raw weights."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if f.attrs.get("format") != "chargan-checkpoint" or "generator" not in f:
            raise CheckpointError(f"{path}: not a chargan checkpoint")
        if "layers" not in f["generator"].attrs:
            raise CheckpointError(f"{path}: no layer table (attribute 'layers' on /generator): "
                                  "written by an older chargan; only newer ones store it")
        group = f["ema/generator"] if ema and "ema/generator" in f else f["generator"]

        def tensor(name):
            if name not in group:
                raise ValueError(f"{group.name}/{name} is missing")
            return torch.from_numpy(np.asarray(group[name], dtype=np.float32))

        try:
            g = Generator(json.loads(f["generator"].attrs["layers"]), tensor,
                          int(f.attrs.get("n_classes", 0)))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: cannot build the generator: {e}") from None
    return g.float().eval()


# ---- chargan's random numbers (include/chargan/rng.h), bit-exact -----------------------------

def _mix64(z):
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_normal(seed, stream, index):
    """normal(seed, stream, index) for an array of indices: Box-Muller in double from the two
    32-bit halves of mix(mix(mix(seed) ^ stream) ^ index), rounded to float32."""
    key = _mix64(_mix64(np.uint64(seed)) ^ np.uint64(stream))
    r = _mix64(key ^ np.asarray(index, dtype=np.uint64))
    u1 = ((r >> np.uint64(32)).astype(np.float64) + 1.0) * (1.0 / 4294967296.0)
    u2 = (r & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)).astype(np.float32)


SAMPLE_STREAM = (5 << 56) ^ 1  # cg_stream(CG_RNG_SAMPLE, 1): `chargan sample`'s noise


def sample(g, seed, n, temperature=1.0, batch=256):
    """`chargan sample`'s images: image i from z[j] = normal(seed, SAMPLE_STREAM,
    i * noise_dim + j) * temperature and class i % n_classes. Returns float32 [n, 28, 28]."""
    z = rng_normal(seed, SAMPLE_STREAM, np.arange(n * g.noise_dim, dtype=np.uint64))
    z = (z * np.float32(temperature)).reshape(n, g.noise_dim)
    labels = np.arange(n) % g.n_classes if g.n_classes else None
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            lab = None if labels is None else torch.from_numpy(labels[i:i + batch])
            out.append(g(torch.from_numpy(z[i:i + batch]), lab)[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.float32)


def main():
    ap = argparse.ArgumentParser(description="Samples from a chargan checkpoint in PyTorch, "
                                 "the same images as `chargan sample`.")
    ap.add_argument("checkpoint")
    ap.add_argument("--seed", type=int, default=1, help="noise seed (1)")
    ap.add_argument("--n", type=int, default=16, help="number of images (16)")
    ap.add_argument("--temperature", type=float, default=1.0, help="noise scale (1)")
    ap.add_argument("--no-ema", action="store_true", help="the raw weights, not their EMA")
    ap.add_argument("--out", required=True, help="numpy file of float32 [N, 28, 28] images")
    a = ap.parse_args()
    try:
        g = load_generator(a.checkpoint, ema=not a.no_ema)
    except CheckpointError as e:
        sys.exit(f"chargan_torch: error: {e}")
    images = sample(g, a.seed, a.n, a.temperature)
    tmp = a.out + ".tmp.npy"  # np.save appends .npy to other names
    np.save(tmp, images)
    os.replace(tmp, a.out)
    print(f"wrote {len(images)} images to {a.out}")


if __name__ == "__main__":
    main()
