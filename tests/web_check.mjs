// Drives web/index.html in headless Chromium (puppeteer-core) and checks it against
// `chargan write`: tests/test_web.sh serves a copy of the page with an exported model, writes
// the reference PNGs and runs
//     node web_check.mjs --url URL --web WEB_DIR --chromium PATH --ref DIR --out DIR --seed S
// REF holds chargan write's lines (all with --seed S --scale 2): hello.png ("Hello World 2026"),
// hello-t0.5.png (the same at --temperature 0.5) and cop.png ("cop": letters EMNIST merges
// with their capitals). Screenshots go to OUT. Every wait is on the page's data-state and
// data-renders attributes, never on a fixed sleep; the bounds on them only catch hangs.
import {createRequire} from 'node:module';
import {mkdirSync, readFileSync, readdirSync} from 'node:fs';
import {join, resolve} from 'node:path';
import {pathToFileURL} from 'node:url';

const HELLO = 'Hello World 2026';
// Largest grey difference allowed between the page and chargan write (of 255). The page's
// wasm kernels and chargan's BLAS add in different orders, so a glyph value differs in the
// last bits (about 1e-6 of 1, a few 1e-6 after the deep net's batch norms); that moves 255*v
// by far less than 1, so a grey can only differ where 255*v sits on a .5 rounding boundary,
// and then by 1. 2 leaves one step of room; anything larger is a real difference (a wrong
// class, noise or layout changes greys by tens).
const MAX_GREY_DIFF = 2;
// Share of pixels allowed to differ at all: the rounding flips above are rare.
const MAX_DIFF_SHARE = 0.01;
const WAIT_MS = 300000;

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length)
      throw new Error(`usage: web_check.mjs --url U --web DIR --chromium P --ref DIR --out DIR --seed S`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['url', 'web', 'chromium', 'ref', 'out', 'seed'])
    if (!a[k])
      throw new Error(`web_check.mjs: --${k} is required`);
  return a;
}

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

const ok = (msg) => console.log(`ok: ${msg}`);

// puppeteer-core from web/node_modules (this script lives outside that package).
async function loadPuppeteer(webDir) {
  const require = createRequire(join(resolve(webDir), 'package.json'));
  const mod = await import(pathToFileURL(require.resolve('puppeteer-core')).href);
  return mod.default;
}

const dataset = (page) => page.evaluate(() => ({...document.body.dataset}));

async function waitSettled(page, rendersBefore) {
  await page.waitForFunction(
      (n) => Number(document.body.dataset.renders) > n &&
             ['done', 'error'].includes(document.body.dataset.state),
      {timeout: WAIT_MS, polling: 'mutation'}, rendersBefore);
  return dataset(page);
}

// Sets inputs as a person would (typing the text key by key; the seed and the slider by
// value plus an input event) and waits until the page has rendered the last of them.
async function render(page, {text, seed, temperature, append}) {
  const before = Number((await dataset(page)).renders);
  const setValue = (sel, v) => page.$eval(sel, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('input', {bubbles: true}));
  }, v);
  if (seed !== undefined)
    await setValue('#seed', String(seed));
  if (temperature !== undefined)
    await setValue('#temperature', String(temperature));
  if (text !== undefined) {
    await setValue('#text', '');
    await page.type('#text', text);
  }
  if (append !== undefined)
    await page.type('#text', append);
  return waitSettled(page, before);
}

// The canvas as grey values (its red channel), checking that it is grey and opaque.
async function canvasGrey(page) {
  const c = await page.$eval('#line', (cv) => {
    const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    const grey = [];
    let odd = 0;
    for (let i = 0; i < d.length; i += 4) {
      grey.push(d[i]);
      odd += d[i] !== d[i + 1] || d[i] !== d[i + 2] || d[i + 3] !== 255;
    }
    return {width: cv.width, height: cv.height, grey, odd};
  });
  if (c.odd)
    fail(`${c.odd} canvas pixels are not opaque grey`);
  return c;
}

// A PNG file decoded by the browser's own decoder, without colour conversion.
async function pngGrey(page, file) {
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], {type: 'image/png'}),
                                        {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
    const cv = new OffscreenCanvas(bmp.width, bmp.height), ctx = cv.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data, grey = [];
    for (let i = 0; i < d.length; i += 4)
      grey.push(d[i]);
    return {width: bmp.width, height: bmp.height, grey};
  }, readFileSync(file).toString('base64'));
}

function compare(a, b) {
  if (a.width !== b.width || a.height !== b.height)
    return {sameSize: false, text: `size ${a.width}x${a.height} vs ${b.width}x${b.height}`};
  let max = 0, sum = 0, n = 0;
  for (let i = 0; i < a.grey.length; i++) {
    const d = Math.abs(a.grey[i] - b.grey[i]);
    max = Math.max(max, d);
    sum += d;
    n += d > 0;
  }
  const mean = sum / a.grey.length;
  return {sameSize: true, max, mean, n, share: n / a.grey.length,
          text: `${a.width}x${a.height}, max grey difference ${max}, mean ${mean.toFixed(5)}, ` +
                `${n} of ${a.grey.length} pixels differ`};
}

async function expectSame(page, what, refFile) {
  const c = compare(await canvasGrey(page), await pngGrey(page, refFile));
  if (!c.sameSize || c.max > MAX_GREY_DIFF || c.share > MAX_DIFF_SHARE)
    fail(`${what}: page and chargan write differ: ${c.text}`);
  ok(`${what}: page = chargan write (${c.text})`);
  return c;
}

function expectInk(c, what) {
  // Ink: grey <= 191 (glyph value >= 0.25); a blank or unpainted canvas has none.
  const ink = c.grey.filter((g) => g <= 191).length;
  if (c.width < 100 || ink < 0.01 * c.grey.length)
    fail(`${what}: canvas ${c.width}x${c.height} has ${ink} ink pixels (blank?)`);
  ok(`${what}: canvas ${c.width}x${c.height}, ${ink} ink pixels`);
}

// "Hi @": the line is drawn up to "Hi ", then "@" shows the message and leaves the canvas.
async function checkUnknown(page) {
  let d = await render(page, {text: 'Hi '});
  if (d.state !== 'done')
    fail(`"Hi ": state ${d.state}`);
  const last = await canvasGrey(page);
  d = await render(page, {append: '@'});
  const msg = await page.$eval('#message', (el) => (el.hidden ? '' : el.textContent));
  if (d.state !== 'error' || !msg.includes('no class for "@"') || !msg.includes('0-9'))
    fail(`"Hi @": state ${d.state}, message "${msg}"`);
  const c = compare(await canvasGrey(page), last);
  if (!c.sameSize || c.max !== 0)
    fail(`"Hi @": the canvas changed (${c.text})`);
  ok(`"Hi @": state error, message "${msg}", canvas unchanged`);
}

// "new style" picks another seed and draws the line with it.
async function checkNewStyle(page, seed) {
  const before = Number((await dataset(page)).renders);
  await page.click('#new-style');
  const d = await waitSettled(page, before);
  const input = await page.$eval('#seed', (el) => el.value);
  if (d.state !== 'done' || d.seed === String(seed) || d.seed !== input)
    fail(`new style: state ${d.state}, seed ${d.seed} (input ${input}, was ${seed})`);
  ok(`new style: drawn with seed ${d.seed}`);
}

// The download button's file (a CDP download into OUT) must hold the canvas's pixels.
async function checkDownload(browser, page, out) {
  const dir = join(out, 'download');
  mkdirSync(dir, {recursive: true});
  const cdp = await browser.target().createCDPSession();
  await cdp.send('Browser.setDownloadBehavior',
                 {behavior: 'allowAndName', downloadPath: dir, eventsEnabled: true});
  const done = new Promise((res, rej) => cdp.on('Browser.downloadProgress', (e) => {
    if (e.state === 'completed')
      res(e.guid);
    else if (e.state === 'canceled')
      rej(new Error('download canceled'));
  }));
  await page.click('#download');
  const guid = await done;
  if (!readdirSync(dir).includes(guid))
    fail(`download: ${guid} not in ${dir}`);
  const c = compare(await canvasGrey(page), await pngGrey(page, join(dir, guid)));
  if (!c.sameSize || c.max !== 0)
    fail(`download: the PNG is not the canvas (${c.text})`);
  ok(`download: a PNG with the canvas's pixels (${c.text})`);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b), h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

// Per-line times: the same line at ten more seeds.
async function lineTimes(page, seed0) {
  await render(page, {text: HELLO});
  const ms = [];
  for (let i = 1; i <= 10; i++) {
    const d = await render(page, {seed: Number(seed0) + i});
    if (d.state !== 'done')
      fail(`seed ${Number(seed0) + i}: state ${d.state}`);
    ms.push(Number(d.lineMs));
  }
  return ms;
}

async function openPage(browser, url, errors) {
  const page = await browser.newPage();
  await page.setViewport({width: 900, height: 600});
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(url);
  const d = await waitSettled(page, 0);
  if (d.state !== 'done')
    fail(`first render: state ${d.state}: ` + await page.$eval('#message', (el) => el.textContent));
  return {page, firstGlyphMs: Number(d.firstGlyphMs), modelMs: Number(d.modelMs)};
}

// ?model=NAME loads NAME.json and NAME.onnx: a name with no files is a clear error, not a hang.
async function checkMissingModel(browser, url) {
  const page = await browser.newPage();
  const u = new URL(url);
  u.searchParams.set('model', 'no-such-model');
  await page.goto(u.href);
  await page.waitForFunction(() => ['ready', 'done', 'error'].includes(document.body.dataset.state),
                             {timeout: WAIT_MS, polling: 'mutation'});
  const state = await page.evaluate(() => document.body.dataset.state);
  const msg = await page.$eval('#message', (el) => (el.hidden ? '' : el.textContent));
  if (state !== 'error' || !msg.includes('no-such-model.') || !msg.includes('404'))
    fail(`?model=no-such-model: state ${state}, message "${msg}"`);
  ok(`?model=no-such-model: state error, message "${msg}"`);
  await page.close();
}

async function checks(browser, a) {
  const errors = [], ref = (f) => join(a.ref, f);
  const {page, firstGlyphMs, modelMs} = await openPage(browser, a.url, errors);
  let d = await render(page, {seed: a.seed, text: HELLO});
  if (d.state !== 'done' || d.text !== HELLO)
    fail(`"${HELLO}": state ${d.state}, text "${d.text}"`);
  const shot = join(a.out, 'web-hello.png');
  await (await page.$('main')).screenshot({path: shot});
  console.log(`screenshot: ${shot}`);
  const hello = await canvasGrey(page);
  expectInk(hello, HELLO);
  const cmp = await expectSame(page, `"${HELLO}" seed ${a.seed}`, ref('hello.png'));
  await checkUnknown(page);
  d = await render(page, {text: HELLO, temperature: 0.5});
  const cold = compare(await canvasGrey(page), hello);
  if (d.state !== 'done' || !cold.sameSize || cold.n < 0.01 * hello.grey.length)
    fail(`temperature 0.5: state ${d.state}, vs temperature 1: ${cold.text}`);
  ok(`temperature 0.5 changes the line (${cold.n} pixels differ from temperature 1)`);
  await expectSame(page, `"${HELLO}" temperature 0.5`, ref('hello-t0.5.png'));
  d = await render(page, {text: 'cop', temperature: 1});
  await expectSame(page, '"cop" (c o p drawn with the classes of C O P)', ref('cop.png'));
  await checkNewStyle(page, a.seed);
  await checkDownload(browser, page, a.out);
  const ms = await lineTimes(page, a.seed);
  await checkMissingModel(browser, a.url);
  if (errors.length)
    fail(`page errors: ${errors.join(' | ')}`);
  return {firstGlyphMs, modelMs, ms, cmp};
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  mkdirSync(a.out, {recursive: true});
  const puppeteer = await loadPuppeteer(a.web);
  // headless: true already means Chromium's new headless mode; the flag says so explicitly
  // (the last --headless wins). No sandbox: CI runs as root, where Chromium's sandbox refuses.
  const browser = await puppeteer.launch({
    executablePath: a.chromium, headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const r = await checks(browser, a);
    console.log(`numbers: first glyph ${r.firstGlyphMs.toFixed(0)} ms after navigation ` +
                `(runtime + model load ${r.modelMs.toFixed(0)} ms); per line ` +
                `("${HELLO}", 14 glyphs, one batch) median ${median(r.ms).toFixed(1)} ms, ` +
                `min ${Math.min(...r.ms).toFixed(1)}, max ${Math.max(...r.ms).toFixed(1)} ` +
                `over ${r.ms.length} lines; page vs chargan write: max grey difference ` +
                `${r.cmp.max}, mean ${r.cmp.mean.toFixed(5)}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => fail(err.stack || String(err)));
