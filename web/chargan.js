// chargan's sampling noise and line layout for JavaScript (the browser page and the node
// tests). The noise is chargan's counter-based generator (include/chargan/rng.h) in BigInt
// arithmetic: every value is a pure function of (seed, stream, index), so a seed gives the
// same style here as in `chargan sample` and `chargan write`. The stream keys, the class of
// each character and the layout numbers are not written here: they come from the JSON that
// `chargan export --meta` writes from chargan's own tables.

const M64 = (1n << 64n) - 1n;

function mix64(z) {
  z = (z + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

// u64(seed, stream, index) = mix(mix(mix(seed) ^ stream) ^ index), as BigInt.
export function rngU64(seed, stream, index) {
  return mix64(mix64(mix64(BigInt(seed)) ^ BigInt(stream)) ^ BigInt(index));
}

// Standard normal by Box-Muller in double from the two 32-bit halves of one draw, rounded to
// float32 (cg_rng_normal).
export function rngNormal(seed, stream, index) {
  const r = rngU64(seed, stream, index);
  const u1 = (Number(r >> 32n) + 1.0) * (1.0 / 4294967296.0);
  const u2 = Number(r & 0xffffffffn) * (1.0 / 4294967296.0);
  return Math.fround(Math.sqrt(-2.0 * Math.log(u1)) * Math.cos(6.283185307179586 * u2));
}

// n normals from index `first` on, each times the temperature in float32 (cg_sample_noise).
export function sampleNoise(seed, stream, first, n, temperature = 1.0) {
  const z = new Float32Array(n);
  const key = BigInt(stream), s = BigInt(seed), t = Math.fround(temperature);
  for (let i = 0; i < n; i++) {
    const v = rngNormal(s, key, BigInt(first) + BigInt(i));
    z[i] = t === 1 ? v : Math.fround(v * t);
  }
  return z;
}
