#!/bin/bash
# Writes small VALID seed inputs for the libFuzzer harnesses (tests/fuzz/fuzz_*.c) into
# OUTDIR/<name>/, one directory per harness. The inputs are made up (stripes, not
# handwriting): no EMNIST data is copied. Each harness's first byte selects how the rest
# is used (see the comment at the top of fuzz_<name>.c).
#     tests/fuzz/make_seeds.sh OUTDIR
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
exec python3 - "$1" <<'PY'
import gzip, json, os, struct, sys

out = sys.argv[1]

def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def gz(data):
    return gzip.compress(data, mtime=0)

def image(k):
    # a 28x28 image (stored column-major, as IDX and the CSV do): one stripe per image
    return bytes(255 if (i // 28 + k) % 4 == 0 else 0 for i in range(784))

# ---- idx: mode byte, then an images or labels file
images = struct.pack(">IIII", 0x803, 3, 28, 28) + b"".join(image(k) for k in range(3))
labels = struct.pack(">II", 0x801, 3) + bytes([0, 1, 2])
for mode, name in [(0x00, "images-raw"), (0x02, "images-zip-here"), (0x18, "images-dir-gz")]:
    put("idx", name, bytes([mode]) + images)
put("idx", "images-gz-stream", bytes([0x04]) + gz(images))
put("idx", "images-limit2", bytes([0x40]) + images)
put("idx", "labels-raw", bytes([0x01]) + labels)
put("idx", "labels-gz-stream", bytes([0x05]) + gz(labels))
put("idx", "labels-dir-limit1", bytes([0x31]) + labels)

# ---- csv: mode byte, then a Kaggle CSV (label, 784 pixels per row)
def row(label, k, eol="\n"):
    return (",".join([str(label)] + [str(v) for v in image(k)]) + eol).encode()

csv = row(0, 0) + row(12, 1) + row(46, 2)
put("csv", "raw", bytes([0]) + csv)
put("csv", "zip-here", bytes([1]) + csv)
put("csv", "gz-stream", bytes([2]) + gz(csv))
put("csv", "dir", bytes([3]) + csv)
put("csv", "crlf-no-final-newline", bytes([0]) + row(5, 0, "\r\n") + row(6, 3, ""))
put("csv", "limit2-letters", bytes([0x28]) + row(1, 0) + row(26, 1) + row(13, 2))

# ---- mapping: mode byte, then a mapping file ("index ascii_code" per line)
balanced = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
mapping = "".join("%d %d\n" % (i, ord(c)) for i, c in enumerate(balanced)).encode()
put("mapping", "explicit", bytes([0]) + mapping)
put("mapping", "by-name", bytes([1]) + mapping)
upper_lower = "".join("%d %d %d\r\n" % (i + 1, 65 + i, 97 + i) for i in range(26))
put("mapping", "letters-upper-lower", bytes([0]) + ("0 48\n" + upper_lower).encode())
byclass = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
put("mapping", "byclass-labels-36-to-57", bytes([0x0c]) +
    "".join("%d\t%d\n" % (i, ord(c)) for i, c in enumerate(byclass)).encode())

# ---- config: a configuration JSON as checkpoints save it (keys in the saved order)
def config(**over):
    c = {"model": "deep", "conditional": True, "n_classes": 47,
         "classes": balanced, "noise_dim": 150, "global_batch": 32, "lr_g": 0.0006,
         "lr_d": 0.0003, "beta1": 0.5, "beta2": 0.999, "eps": 1e-07, "seed": 1,
         "steps": 10000, "epochs": 0, "data": "data/emnist", "limit": 0, "images": 116323,
         "ckpt_every": 0, "sample_every": 0, "sum_groups": 8, "ema": 0.999,
         "exclude_heldout": False, "images_used": 116323, "loss": "bce",
         "lr_decay_start": 6000, "split": "bymerge-test", "labels": None,
         "float_sums": False, "eval_every": 0, "classifier": None, "eval_n": 2000,
         "source": "data/emnist/emnist-bymerge-test-images-idx3-ubyte.gz (IDX, gzip, "
                   "split bymerge-test, built-in bymerge mapping)"}
    c.update(over)
    return (json.dumps(c) + "\n").encode()

put("config", "deep-checkpoint", config())
put("config", "small-unconditional", config(model="small", conditional=False, n_classes=0,
    classes="", global_batch=64, lr_g=1e-05, lr_d=3e-05, steps=0, epochs=50, limit=60000,
    ema=0.0, lr_decay_start=-1, split="balanced-train", loss="hinge", float_sums=True,
    sum_groups=0, labels="l.gz", classifier="c.h5", eval_every=100))
old = json.loads(config())
for k in ("loss", "lr_decay_start", "split", "labels", "float_sums", "eval_every",
          "classifier", "eval_n", "source"):
    del old[k]
old["data"] = "emnist-balanced-train (IDX, gzip)"  # before "source": a description
put("config", "old-no-source", json.dumps(old, indent=1).encode())
put("config", "partial", b'{"model": "seed", "steps": 20, "seed": 7}')
put("config", "empty-object", b"{}")

# ---- train_args: the arguments after `train`, separated by NUL bytes
args = [
    [],
    ["--help"],
    ["--model", "small", "--steps", "10", "--data", "d/emnist-letters-train.csv"],
    ["--config", "c.json", "--seed", "7", "--limit=100"],
    ["--config=c.h5", "--model=dcgan", "--unconditional"],
    ["--conditional", "--loss", "hinge", "--ema", "0.999", "--split", "letters-train"],
    ["--lr-g=2e-4", "--lr-d", "1e-4", "--batch", "64", "--sum-groups", "4", "--noise-dim", "100"],
    ["--float-sums", "--eval-every", "100", "--classifier", "c.h5", "--eval-n", "500"],
    ["--resume", "auto", "--out", "o", "--keep", "0", "--time-limit", "60", "--threads", "2",
     "--log-every", "10", "--check-every", "5"],
    ["--beta1", "0.5", "--beta2", "0.99", "--eps", "1e-8", "--epochs", "2", "--steps", "0"],
    ["--exclude-heldout", "--ckpt-every", "50", "--sample-every", "100", "--lr-decay-start",
     "-1", "--labels", "l.gz", "--model", "deep"],
]
for i, a in enumerate(args):
    put("train_args", "args-%02d" % i, b"\0".join(x.encode() for x in a))
# ---- png: a picture of one character (`chargan write --style-from`), as PNG files of
# several colour types, bit depths and sizes: a diagonal stroke
import zlib
def png(w, h, colour, depth, pixel, palette=None, polarity=0):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b""
    for y in range(h):
        bits = []
        for x in range(w):
            ink = abs(x * h - y * w) < 2 * max(w, h)
            bits.append(pixel(ink ^ polarity))
        row = b""
        if depth < 8:  # pack samples of 1, 2 or 4 bits, most significant first
            acc, n = 0, 0
            for v in bits:
                acc, n = (acc << depth) | v[0], n + depth
                if n == 8:
                    row, acc, n = row + bytes([acc]), 0, 0
            if n:
                row += bytes([acc << (8 - n)])
        else:
            row = b"".join(bytes(v) for v in bits)
        raw += b"\0" + row
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
put("png", "grey8-28", png(28, 28, 0, 8, lambda ink: [0 if ink else 255]))
put("png", "grey8-black-paper-40x30", png(40, 30, 0, 8, lambda ink: [255 if ink else 0]))
put("png", "grey1-33", png(33, 33, 0, 1, lambda ink: [0 if ink else 1]))
put("png", "grey16-20x36", png(20, 36, 0, 16, lambda ink: [0, 0] if ink else [255, 255]))
put("png", "grey-alpha-30", png(30, 30, 4, 8, lambda ink: [0, 255] if ink else [0, 0]))
put("png", "rgb8-48x40", png(48, 40, 2, 8, lambda ink: [20, 30, 120] if ink else [250, 245, 230]))
put("png", "rgba16-24", png(24, 24, 6, 16, lambda ink: [0, 0, 0, 0, 0, 0, 255, 255] if ink else [255] * 6 + [0, 0]))
put("png", "palette2-36", png(36, 36, 3, 2, lambda ink: [1 if ink else 0], palette=bytes([255, 255, 255, 0, 0, 0])))
PY
