#!/usr/bin/python3
"""chargan's training step in PyTorch, timed, for a side-by-side comparison with `chargan bench`.

usage: /usr/bin/python3 jobs/torch_bench.py --model dcgan|deep [--conditional] [--batch 32]
           [--steps N] [--threads T] [--channels-last] [--ddp P]

Measures the median wall time of one full training step (2 warm-up steps, then N timed) on
random input, the same step as chargan's (include/chargan/gan.h, src/preset.c):
  z ~ N(0,1) (noise 150; conditional: the one-hot class, 47 classes, appended), fake = G(z);
  D on the real half and on the fake half (two passes, as chargan: no layer of D mixes
  samples); L_D = BCE-with-logits mean over the 2B samples; L_G = BCE(D(fake), 1) through the
  same D(fake) forward (one input-gradient pass through D over B samples); both gradients from
  the weights before the update; Adam (beta1 0.5, beta2 0.999, eps 1e-7) on both nets; the EMA
  of G's parameters and BN running averages (decay min((1+t)/(10+t), 0.999), one lerp).
Layer shapes are chargan's exactly (batch norm: eps 1e-5, momentum 0.1, with its own affine;
conditional BN in G of `deep --conditional`: then y = x*(1+gamma[class]) + beta[class];
conditional D: projection output w.h + b + embed[label].h). params_g / params_d count what
chargan counts: parameters plus the BN running mean and variance.

What differs from chargan:
  * gradients and their sums over ranks are float sums (chargan: exact int64 fixed point);
  * under --ddp, batch-norm statistics are per process (plain DDP; SyncBatchNorm is GPU-only in
    torch 1.13), chargan sums them over the ranks, i.e. normalizes over the global batch;
  * random numbers and initialization are PyTorch's, not chargan's (irrelevant to the time);
  * torch 1.13 runs transposed convolutions on CPU as slow_conv_transpose2d (im2col + GEMM),
    not oneDNN, in either memory format (seen in torch.profiler); convolutions use oneDNN.
Tuning as a user would: torch.set_num_threads(T), oneDNN (the default on CPU), optional
channels_last, DDP (gloo) with buffer broadcasts off and gradients as bucket views, and the
allocator tuned as PyTorch's CPU performance guide advises (it suggests jemalloc/tcmalloc; here
glibc's own knobs, nothing to install): the script re-executes itself with glibc malloc's mmap
threshold at 32 MiB and trim threshold at 256 MiB, so freed activations are reused instead of
returned to the kernel and page-faulted in again at every step (about 3x faster here on deep;
--default-malloc keeps glibc's defaults). chargan allocates everything before the first step.
Also OMP_WAIT_POLICY=PASSIVE unless set: idle OpenMP threads sleep instead of spinning, which
on a shared 2-core machine made 1 process x 2 threads about 2x faster (trials: deep, 89-145 ms
passive against 170-293 ms spinning); it does not matter at 1 thread.
Prints one JSON line (rank 0 under --ddp).
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
ENV = {} if "--default-malloc" in sys.argv else dict(MALLOC)
ENV["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
if any(os.environ.get(k) != v for k, v in ENV.items()):  # both are read at process start
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **ENV})

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

NOISE, CLASSES = 150, 47


class BN(nn.Module):
    """Batch norm (its own affine), then, with classes > 0, the per-class affine of
    conditional batch norm: y = x * (1 + gamma[class]) + beta[class], gamma = beta = 0 at start."""

    def __init__(self, c, spatial, classes=0):
        super().__init__()
        self.bn = (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(c, eps=1e-5, momentum=0.1)
        self.gamma = nn.Parameter(torch.zeros(classes, c)) if classes else None
        self.beta = nn.Parameter(torch.zeros(classes, c)) if classes else None

    def forward(self, x, labels):
        x = self.bn(x)
        if self.gamma is None:
            return x
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        g = F.embedding(labels, self.gamma).view(shape)
        b = F.embedding(labels, self.beta).view(shape)
        return torch.addcmul(b, x, 1 + g)


class Generator(nn.Module):
    # (out channels, kernel, stride, pad) of the batch-normed ReLU layers after 128x7x7
    STAGES = {"dcgan": [(64, 4, 2, 1)],
              "deep": [(128, 3, 1, 1), (64, 4, 2, 1), (64, 3, 1, 1), (32, 4, 2, 1)]}
    LAST = {"dcgan": (4, 2, 1), "deep": (3, 1, 1)}  # the tanh layer to 1 channel

    def __init__(self, model, conditional, channels_last):
        super().__init__()
        self.classes = CLASSES if conditional else 0
        cbn = CLASSES if conditional and model == "deep" else 0  # dcgan has no cond_bn
        self.channels_last = channels_last
        self.dense = nn.Linear(NOISE + self.classes, 128 * 7 * 7, bias=False)
        self.bn0 = BN(128 * 7 * 7, False, cbn)
        convs, bns, c = [], [], 128
        for out, k, s, p in self.STAGES[model]:
            convs.append(nn.ConvTranspose2d(c, out, k, s, p, bias=False))
            bns.append(BN(out, True, cbn))
            c = out
        self.convs, self.bns = nn.ModuleList(convs), nn.ModuleList(bns)
        k, s, p = self.LAST[model]
        self.out = nn.ConvTranspose2d(c, 1, k, s, p)

    def forward(self, z, labels):
        if self.classes:
            z = torch.cat([z, F.one_hot(labels, self.classes).to(z.dtype)], 1)
        x = F.relu(self.bn0(self.dense(z), labels)).view(-1, 128, 7, 7)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x), labels))
        return torch.tanh(self.out(x))


class Discriminator(nn.Module):
    def __init__(self, conditional):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 4, 2, 1)
        self.conv2 = nn.Conv2d(64, 128, 4, 2, 1)
        self.dense = nn.Linear(128 * 7 * 7, 256)
        self.out = nn.Linear(256, 1)
        self.embed = nn.Embedding(CLASSES, 256) if conditional else None

    def forward(self, x, labels):
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        h = F.leaky_relu(self.dense(x.flatten(1)), 0.2)
        y = self.out(h).squeeze(1)
        if self.embed is not None:  # projection discriminator
            y = y + (self.embed(labels) * h).sum(1)
        return y


def count(net):
    """Parameters plus BN running mean/var, as chargan counts them."""
    return sum(t.numel() for n, t in net.state_dict().items() if "num_batches" not in n)


def run(rank, a):
    torch.set_num_threads(a.threads)
    ranks = a.ddp or 1
    if a.ddp:
        dist.init_process_group("gloo", rank=rank, world_size=ranks)
    torch.manual_seed(1 + rank)
    b = a.batch // ranks
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    g = Generator(a.model, a.conditional, a.channels_last).to(memory_format=fmt)
    d = Discriminator(a.conditional).to(memory_format=fmt)
    params_g, params_d = count(g), count(d)
    lr_g, lr_d = (6e-4, 3e-4) if a.model == "deep" else (2e-4, 1e-4)
    ema = [t.detach().clone() for t in g.state_dict().values() if t.is_floating_point()]
    live = [t for t in g.state_dict().values() if t.is_floating_point()]  # share storage
    if a.ddp:
        # Plain DDP: gradients averaged over processes (float), overlapped with the backward
        # pass; BN statistics stay per process (no buffer broadcast: they are never synced).
        g = nn.parallel.DistributedDataParallel(g, broadcast_buffers=False,
                                                gradient_as_bucket_view=True)
        d = nn.parallel.DistributedDataParallel(d, broadcast_buffers=False,
                                                gradient_as_bucket_view=True)
    opt_g = torch.optim.Adam(g.parameters(), lr_g, betas=(0.5, 0.999), eps=1e-7)
    opt_d = torch.optim.Adam(d.parameters(), lr_d, betas=(0.5, 0.999), eps=1e-7)
    pg, pd = list(g.parameters()), list(d.parameters())
    real = (torch.rand(b, 1, 28, 28) * 2 - 1).contiguous(memory_format=fmt)
    labels = (torch.arange(b) + rank * b) % CLASSES  # chargan's bench: classes in turn
    ones, zeros = torch.ones(b), torch.zeros(b)
    bce = F.binary_cross_entropy_with_logits

    def step(t):
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        fake = g(torch.randn(b, NOISE), labels)
        lr, lf = d(real, labels), d(fake, labels)
        loss_d = (bce(lr, ones, reduction="sum") + bce(lf, zeros, reduction="sum")) / (2 * b)
        loss_g = bce(lf, ones)
        loss_d.backward(inputs=pd, retain_graph=True)  # D's weights only
        loss_g.backward(inputs=pg)  # input gradient through D(fake), then G's weights
        opt_d.step()
        opt_g.step()
        with torch.no_grad():
            w = 1 - min((1 + t) / (10 + t), 0.999)
            for e, p in zip(ema, live):
                e.lerp_(p, w)

    ms = []
    for t in range(2 + a.steps):
        t0 = time.perf_counter()
        step(t)
        if t >= 2:
            ms.append(1e3 * (time.perf_counter() - t0))
    if rank == 0:
        print(json.dumps({
            "impl": "pytorch", "torch": torch.__version__, "model": a.model,
            "conditional": a.conditional, "batch": a.batch, "threads": a.threads,
            "ranks": ranks, "channels_last": a.channels_last,
            "malloc_tuned": all(os.environ.get(k) == v for k, v in MALLOC.items()),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "ms_per_step": round(statistics.median(ms), 3),
            "params_g": params_g, "params_d": params_d}), flush=True)
    if a.ddp:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["dcgan", "deep"], default="deep")
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--batch", type=int, default=32, help="global batch")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="per process")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--ddp", type=int, default=0, help="processes (gloo); 0: one, no DDP")
    p.add_argument("--default-malloc", action="store_true", help="glibc malloc's defaults")
    a = p.parse_args()
    if a.ddp and a.batch % a.ddp:
        p.error("--batch must be divisible by --ddp")
    if not a.ddp:
        return run(0, a)
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    mp.spawn(run, args=(a,), nprocs=a.ddp)


if __name__ == "__main__":
    main()
