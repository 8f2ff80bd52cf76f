// chargan's handwriting page: runs an exported generator (`chargan export`) with
// onnxruntime-web and draws a line of text the way `chargan write` does. Every number of the
// layout, the noise streams and the class of each character come from the model's meta JSON,
// so the page and the command line give the same pixels for the same seed and temperature.
import {composeLine, lineLabels, lineNoise, writableSummary} from './chargan.js';

const ORT_DIR = new URL('node_modules/onnxruntime-web/dist/', import.meta.url).href;
const $ = (id) => document.getElementById(id);
const body = document.body.dataset;

const page = {
  ort: null, session: null, meta: null,
  busy: false, pending: false, firstGlyph: false, lineMs: [],
};

function setState(state) {
  body.state = state;
}

function showMessage(text) {
  $('message').textContent = text;
  $('message').hidden = !text;
}

// ?model=NAME picks NAME.onnx and NAME.json beside the page (default: model).
function modelName() {
  const name = new URLSearchParams(location.search).get('model') || 'model';
  if (!/^[\w.-]+$/.test(name) || name.startsWith('.'))
    throw new Error(`bad model name "${name}" (letters, digits, . _ - only)`);
  return name;
}

async function fetchOk(url, name) {
  const r = await fetch(url);
  if (!r.ok)
    throw new Error(`${url}: ${r.status} ${r.statusText} — write the model with chargan ` +
                    `export --checkpoint CKPT --out web/${name}.onnx --meta web/${name}.json`);
  return r;
}

function checkMeta(meta, url) {
  if (meta.format !== 'chargan-export' || meta.format_version !== 1)
    throw new Error(`${url}: not a chargan-export version 1 meta file`);
  if (!meta.conditional)
    throw new Error(`${url}: the model is not conditional, so it cannot write text ` +
                    '(train one with --conditional)');
}

// onnxruntime-web: its wasm files are served from node_modules. Threads need a cross-origin
// isolated page (COOP/COEP headers, which `python3 -m http.server` does not send); one thread
// is plenty for a batch of a line's glyphs.
async function loadRuntime() {
  let ort;
  try {
    ort = await import(ORT_DIR + 'ort.wasm.min.mjs');
  } catch (err) {
    throw new Error(`onnxruntime-web did not load from ${ORT_DIR} (run npm ci in web/): ${err}`);
  }
  ort.env.wasm.wasmPaths = ORT_DIR;
  ort.env.wasm.numThreads =
      self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1;
  return ort;
}

async function loadModel() {
  const t0 = performance.now();
  const name = modelName();
  const [ort, meta, bytes] = await Promise.all([
    loadRuntime(),
    fetchOk(`${name}.json`, name).then((r) => r.json()),
    fetchOk(`${name}.onnx`, name).then((r) => r.arrayBuffer()),
  ]);
  checkMeta(meta, `${name}.json`);
  page.session = await ort.InferenceSession.create(bytes, {executionProviders: ['wasm']});
  page.ort = ort;
  page.meta = meta;
  body.modelMs = (performance.now() - t0).toFixed(1);
  $('model').textContent = `${name}: ${meta.preset}, ${meta.n_classes} classes, step ` +
      `${meta.step}, ${meta.generator} generator, chargan ${meta.chargan_version}`;
}

const MAX_SEED = (1n << 63n) - 1n;

// The inputs as `chargan write` would take them; a problem is thrown as a message.
function readInputs() {
  const text = $('text').value, seedText = $('seed').value.trim();
  if (!/^\d+$/.test(seedText) || BigInt(seedText) > MAX_SEED)
    throw new Error(`the style seed must be a whole number from 0 to ${MAX_SEED}`);
  const {labels, unknown} = lineLabels(text, page.meta.char_class);
  if (unknown.length)
    throw new Error(`no class for "${unknown.join('')}" — this model writes: ` +
                    `${writableSummary(page.meta.char_class)} (and space)`);
  return {text, seed: seedText, temperature: Number($('temperature').value), labels};
}

// One inference for the whole line: a batch of its glyphs, all with the same noise.
async function generate(inp) {
  const n = inp.labels.length, meta = page.meta, g = meta.layout.glyph;
  if (n === 0)
    return new Float32Array(0);
  const {Tensor} = page.ort;
  const feeds = {
    z: new Tensor('float32', lineNoise(meta, inp.seed, inp.temperature, n), [n, meta.noise_dim]),
    label: new Tensor('int64', BigInt64Array.from(inp.labels, BigInt), [n]),
  };
  const out = await page.session.run(feeds);
  const image = out.image;
  if (image.data.length !== n * g * g)
    throw new Error(`the model gave ${image.dims} for ${n} glyphs of ${g}x${g}`);
  return image.data;
}

function draw(line) {
  const canvas = $('line');
  canvas.width = line.width;
  canvas.height = line.height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(line.width, line.height);
  for (let i = 0; i < line.grey.length; i++) {
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = line.grey[i];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

function recordTiming(t0) {
  const now = performance.now(), ms = now - t0;
  if (!page.firstGlyph) {
    page.firstGlyph = true;
    body.firstGlyphMs = now.toFixed(1);
  }
  page.lineMs.push(ms);
  body.lineMs = ms.toFixed(2);
  $('timing').textContent = `first glyph ${body.firstGlyphMs} ms after the page started ` +
      `(model ${body.modelMs} ms) · this line ${ms.toFixed(1)} ms · median ` +
      `${median(page.lineMs).toFixed(1)} ms over ${page.lineMs.length} lines`;
}

// Renders the current inputs; on a problem the message shows and the canvas keeps its line.
async function renderOnce() {
  const t0 = performance.now();
  try {
    const inp = readInputs();
    draw(composeLine(inp.text, await generate(inp), page.meta.layout));
    recordTiming(t0);
    showMessage('');
    body.text = inp.text;
    body.seed = inp.seed;
    body.temperature = String(inp.temperature);
    $('download').disabled = false;
    return 'done';
  } catch (err) {
    showMessage(err.message);
    return 'error';
  } finally {
    body.renders = String(Number(body.renders) + 1);
  }
}

// Input events only ask for a render; one runs at a time, and the last one always sees the
// latest inputs, so fast typing costs one render per finished inference, not per key.
async function drain() {
  page.busy = true;
  let state = 'done';
  while (page.pending) {
    page.pending = false;
    state = await renderOnce();
  }
  page.busy = false;
  setState(state);
}

function schedule() {
  page.pending = true;
  if (!page.session)
    return;
  setState('rendering');
  if (!page.busy)
    drain();
}

function download() {
  const seed = $('seed').value.trim();
  $('line').toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `chargan-seed${seed}.png`;
    a.click();
    // The download reads the blob after click() returns; the URL can go once it has.
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }, 'image/png');
}

function newStyle() {
  const r = new Uint32Array(1);
  crypto.getRandomValues(r);
  $('seed').value = String(r[0]);
  schedule();
}

function wire() {
  $('text').addEventListener('input', schedule);
  $('seed').addEventListener('input', schedule);
  $('temperature').addEventListener('input', () => {
    $('temperature-value').textContent = Number($('temperature').value).toFixed(2);
    schedule();
  });
  $('new-style').addEventListener('click', newStyle);
  $('download').addEventListener('click', download);
}

async function main() {
  wire();
  try {
    await loadModel();
  } catch (err) {
    $('model').textContent = 'no model';
    showMessage(err.message);
    setState('error');
    return;
  }
  setState('ready');
  schedule();
}

main();
