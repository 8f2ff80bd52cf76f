// Runs a generator exported by `chargan export` in onnxruntime-node on the noise of
// `chargan sample --seed SEED --n N` (image i: z = sampleNoise(SEED, sample_stream,
// i * noise_dim, noise_dim), class i mod n_classes), taking the noise stream, sizes and
// classes from the export's --meta JSON as the browser page does, and writes the images as
// raw float32 [N][28][28] for tests/test_export.sh to compare with chargan's own.
// usage: node export_run.mjs MODEL.onnx META.json SEED N OUT.f32
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { sampleNoise } from '../web/chargan.js';

// onnxruntime-node lives in web/node_modules (web/package.json pins it).
const require = createRequire(new URL('../web/package.json', import.meta.url));
const ort = require('onnxruntime-node');

const [model, metaFile, seedArg, nArg, out] = process.argv.slice(2);
const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
const seed = Number(seedArg), n = Number(nArg), nz = meta.noise_dim;
const z = new Float32Array(n * nz);
for (let i = 0; i < n; i++) z.set(sampleNoise(seed, meta.rng.sample_stream, i * nz, nz), i * nz);
const feeds = { z: new ort.Tensor('float32', z, [n, nz]) };
if (meta.conditional) {
  const labels = BigInt64Array.from({ length: n }, (_, i) => BigInt(i % meta.n_classes));
  feeds.label = new ort.Tensor('int64', labels, [n]);
}
const session = await ort.InferenceSession.create(model);
const { image } = await session.run(feeds);
if (image.dims.join(',') !== `${n},1,28,28`) {
  console.error(`export_run: ${model}: output dims ${image.dims}, expected ${n},1,28,28`);
  process.exit(1);
}
const px = image.data;
writeFileSync(out, Buffer.from(px.buffer, px.byteOffset, px.byteLength));
