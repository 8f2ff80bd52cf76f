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

// ---- one line of handwriting, laid out as `chargan write` lays it out -----------------------
// `layout` is the meta JSON's {glyph, advance, gap, margin, scale}; `charClass` its char_class
// map (every character the model can write, the lowercase letters EMNIST merges with their
// capitals included). A space is a gap, not a glyph.

// The class of every glyph of the line and the characters the model has no class for (each
// once, in order of appearance).
export function lineLabels(text, charClass) {
  const labels = [], unknown = [];
  for (const ch of text) {
    if (ch === ' ')
      continue;
    const k = Object.hasOwn(charClass, ch) ? charClass[ch] : -1;
    if (k < 0 && !unknown.includes(ch))
      unknown.push(ch);
    labels.push(k);
  }
  return {labels, unknown};
}

// The characters of a char_class map as a short list of runs: "0-9 A-Z a-z".
export function writableSummary(charClass) {
  const codes = Object.keys(charClass).map((c) => c.codePointAt(0)).sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < codes.length;) {
    let j = i;
    while (j + 1 < codes.length && codes[j + 1] === codes[j] + 1)
      j++;
    const a = String.fromCodePoint(codes[i]), b = String.fromCodePoint(codes[j]);
    parts.push(j - i >= 2 ? `${a}-${b}` : j > i ? `${a} ${b}` : a);
    i = j + 1;
  }
  return parts.join(' ');
}

// The noise of a line: one style, so every glyph gets the same vector (the write stream's first
// noise_dim normals times the temperature), repeated for a batch of `glyphs`.
export function lineNoise(meta, seed, temperature, glyphs) {
  const nd = meta.noise_dim;
  const one = sampleNoise(seed, meta.rng.write_stream, 0, nd, temperature);
  const z = new Float32Array(glyphs * nd);
  for (let i = 0; i < glyphs; i++)
    z.set(one, i * nd);
  return z;
}

// Size of the line in glyph pixels: margins, `advance` per character, `gap` per space and
// glyph - advance pixels at the right for the last glyph's overhang (chargan write's line_png).
export function lineSize(text, layout) {
  let width = 2 * layout.margin + layout.glyph - layout.advance;
  for (const ch of text)
    width += ch === ' ' ? layout.gap : layout.advance;
  return {width, height: layout.glyph + 2 * layout.margin};
}

// Composites the glyphs (`glyphs`: Float32Array of N glyph*glyph images in [0,1], row 0 on top,
// one per non-space character) into grey pixels: where glyphs overlap the darker ink wins, then
// every glyph pixel becomes a scale*scale block of grey = round(255 - 255*v), dark on white,
// computed in float32 as chargan's C does so both give the same bytes for the same values.
// Returns {width, height, grey} in output pixels (grey: Uint8ClampedArray, row-major).
export function composeLine(text, glyphs, layout) {
  const {width, height} = lineSize(text, layout);
  const g = layout.glyph, m = layout.margin, s = layout.scale;
  const ink = new Float32Array(width * height);
  let x = m, k = 0;
  for (const ch of text) {
    if (ch === ' ') {
      x += layout.gap;
      continue;
    }
    const base = k++ * g * g;
    for (let yy = 0; yy < g; yy++)
      for (let xx = 0; xx < g; xx++) {
        const v = glyphs[base + yy * g + xx], p = (yy + m) * width + x + xx;
        if (v > ink[p])
          ink[p] = v;
      }
    x += layout.advance;
  }
  const W = width * s, H = height * s, grey = new Uint8ClampedArray(W * H);
  const f = Math.fround;
  for (let yy = 0; yy < H; yy++)
    for (let xx = 0; xx < W; xx++) {
      let v = ink[Math.floor(yy / s) * width + Math.floor(xx / s)];
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      grey[yy * W + xx] = Math.trunc(f(f(255 - f(255 * v)) + 0.5));
    }
  return {width: W, height: H, grey};
}
