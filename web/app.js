// The camera → a stylenet network in ONNX Runtime Web → a canvas, frame after frame (docs/web.md).
//
// Query options: backend=auto|webgpu|wasm, threads=N (WebAssembly threads; default: half the cores,
// up to 4, when the page is cross-origin isolated, else 1), model=NAME (the style to start with), width=,
// height= (the camera size asked for), camera=0 (photos only), static=1 (the frame size fixed in
// the session), spin=1 (idle threads spin), proxy=1 (onnxruntime in a worker), ep=a,b (execution providers), profile=N (log
// onnxruntime's per-operator profile after N frames). window.stylenet holds the page's state for
// the tests and the benchmark (scripts/benchmark.py mode=web).
import { isRealtime, readOnnx, stylesOf } from './onnxmeta.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = window.stylenet = {
  state: 'starting', error: null, frames: 0, fps: 0, networkMs: 0, backend: null, gpu: null, threads: 1, width: 0, height: 0,
  photo: { state: 'none', width: 0, height: 0, ms: 0 }, models: [], profile: null,
};
let ort = null;
let choices = [];       // [{label, entry, style}] behind the picker's options
let current = null;     // the picker's choice
const sessions = new Map();  // url → Promise<{session, metadata, styles}>

function showError(message) {
  state.error = message;
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}
function clearError() { state.error = null; $('error').hidden = true; }
function setStatus(text) { $('status').textContent = text; }

function hasWebAssembly() {
  try {
    // the smallest valid module: the magic number and version
    return typeof WebAssembly === 'object' && WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  } catch { return false; }
}

async function pickBackend() {
  const asked = params.get('backend') || 'auto';
  if (asked === 'wasm') return 'wasm';
  let adapter = null;
  try { adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null; } catch { adapter = null; }
  // a software adapter (Chromium's SwiftShader, where no GPU is usable) paints a frame ~100x
  // slower than WebAssembly (docs/web.md): auto passes it over, backend=webgpu still takes it
  const software = Boolean(adapter && (adapter.info?.isFallbackAdapter || adapter.isFallbackAdapter));
  state.gpu = adapter ? (software ? `software (${adapter.info?.architecture || 'fallback adapter'})` : 'hardware') : 'none';
  if (adapter && (asked === 'webgpu' || !software)) return 'webgpu';
  if (asked === 'webgpu') showError('WebGPU was asked for (backend=webgpu) but this browser has no WebGPU adapter: running on WebAssembly instead.');
  return 'wasm';
}

/** The status line's backend: 'wasm, 2 threads', 'webgpu', and why where it is not the best one. */
function backendLabel() {
  const software = Boolean(state.gpu && state.gpu.startsWith('software'));
  if (state.backend !== 'wasm') return `${state.backend}${software ? ' (software adapter)' : ''}`;
  const threads = `wasm, ${state.threads} thread${state.threads > 1 ? 's' : ''}`;
  return threads + (self.crossOriginIsolated ? '' : ' (not cross-origin isolated)') + (software ? '; WebGPU here is software only' : '');
}

async function loadRuntime() {
  state.backend = await pickBackend();
  ort = await import(state.backend === 'webgpu' ? './ort/ort.webgpu.min.mjs' : './ort/ort.wasm.min.mjs');
  const cores = navigator.hardwareConcurrency || 1;
  // onnxruntime-web's own default: half the cores, at most 4 (the other half captures, paints, runs the page)
  const wanted = Number(params.get('threads') || Math.min(4, Math.ceil(cores / 2)));
  // threads share memory (SharedArrayBuffer): only a cross-origin isolated page has it
  state.threads = self.crossOriginIsolated ? Math.max(1, wanted) : 1;
  ort.env.wasm.numThreads = state.threads;
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  ort.env.wasm.proxy = params.get('proxy') === '1';  // run in a worker: the page stays responsive, one copy more per frame
  ort.env.logLevel = 'error';
}

function sessionOptions(shape = null) {
  const providers = params.get('ep') ? params.get('ep').split(',') : [state.backend];
  const options = { executionProviders: providers, graphOptimizationLevel: 'all' };
  if (params.get('profile')) options.enableProfiling = true;
  // idle threads sleep between operators instead of spinning (spin=1 lets them spin): on a CPU
  // shared with other work the page painted ~20 % more frames (docs/web.md)
  if (params.get('spin') !== '1') options.extra = { session: { intra_op: { allow_spinning: '0' } } };
  // the camera's frame size fixed in the graph: shapes known when the session is built
  if (shape) options.freeDimensionOverrides = { batch: 1, height: shape[0], width: shape[1] };
  return options;
}

/** A network's session, built once per URL (a dropped file: its bytes). */
function network(url, label, bytes = null, shape = null) {
  const key = shape ? `${url}@${shape.join('x')}` : url;
  if (!sessions.has(key)) {
    const made = (async () => {
      let buffer = bytes;
      if (!buffer) {
        let response;
        try { response = await fetch(url); } catch (err) { throw new Error(`cannot fetch ${url}: ${err.message}`); }
        if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
        buffer = await response.arrayBuffer();
      }
      const { metadata } = readOnnx(buffer);
      let session;
      try {
        session = await ort.InferenceSession.create(new Uint8Array(buffer), sessionOptions(shape));
      } catch (err) {
        throw new Error(`onnxruntime-web cannot run it (${String(err.message || err).slice(0, 200)})`);
      }
      return { session, metadata, styles: stylesOf(metadata, label), realtime: isRealtime(metadata) };
    })();
    made.catch(() => {});  // a network that failed stays failed (its message is shown), not refetched every frame
    sessions.set(key, made);
  }
  return sessions.get(key);
}

/** The picker: one option per style of every network (a multi-style file lists each of its styles). */
function fillPicker(keep) {
  const select = $('style');
  select.replaceChildren();
  choices.forEach((choice, i) => select.add(new Option(choice.label, String(i))));
  select.disabled = choices.length === 0;
  if (!choices.length) select.add(new Option('no networks: drop an ONNX export here'));
  const index = Math.max(0, choices.indexOf(keep));
  select.value = String(index);
  current = choices[index] || null;
}

async function expandStyles(choice) {
  // the network's own style names, from its ONNX metadata: one option per style
  const net = await network(choice.entry.realtime || choice.entry.full, choice.entry.name);
  const siblings = choices.filter((c) => c.entry === choice.entry);
  if (siblings.length === net.styles.length && siblings.every((c, i) => c.style === i)) return choice;
  const at = choices.indexOf(siblings[0]);
  const expanded = net.styles.map((name, i) => ({
    label: net.styles.length > 1 ? `${choice.entry.name}: ${name}` : name, entry: choice.entry, style: i }));
  choices.splice(at, siblings.length, ...expanded);
  const keep = expanded[Math.min(choice.style, expanded.length - 1)];
  fillPicker(keep);
  return keep;
}

async function loadModels() {
  let listed = [];
  try {
    const response = await fetch('models.json');
    if (response.ok) listed = (await response.json()).models || [];
  } catch { listed = []; }
  state.models = listed;
  choices = listed.map((entry) => ({ label: entry.name, entry, style: 0 }));
  const wanted = params.get('model');
  fillPicker(choices.find((c) => c.entry.name === wanted) || choices[0]);
  if (wanted && !choices.some((c) => c.entry.name === wanted)) {
    showError(`No network named "${wanted}" is served here (served: ${listed.map((e) => e.name).join(', ') || 'none'}).`);
  }
}

async function selectChoice(choice) {
  current = choice;
  if (!choice) return;
  try {
    const expanded = await expandStyles(choice);
    current = expanded;
    if (state.error && state.error.startsWith('Could not load the network')) clearError();  // not the camera's message
  } catch (err) {
    showError(`Could not load the network "${choice.entry.name}": ${err.message}.`);
  }
}

// ---- pixels ↔ tensors ----------------------------------------------------------------------
function toTensor(rgba, width, height) {
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let i = 0, j = 0; i < plane; i++, j += 4) {
    data[i] = rgba[j] / 255;
    data[i + plane] = rgba[j + 1] / 255;
    data[i + 2 * plane] = rgba[j + 2] / 255;
  }
  return new ort.Tensor('float32', data, [1, 3, height, width]);
}

function paint(output, rgba, width, height, strength) {
  // out = strength · network + (1 − strength) · photo, in [0, 255] (Uint8ClampedArray rounds and clamps)
  const plane = width * height;
  const image = new ImageData(width, height);
  const px = image.data;
  const s = strength * 255, k = 1 - strength;
  for (let i = 0, j = 0; i < plane; i++, j += 4) {
    px[j] = s * Math.min(1, Math.max(0, output[i])) + k * rgba[j];
    px[j + 1] = s * Math.min(1, Math.max(0, output[i + plane])) + k * rgba[j + 1];
    px[j + 2] = s * Math.min(1, Math.max(0, output[i + 2 * plane])) + k * rgba[j + 2];
    px[j + 3] = 255;
  }
  return image;
}

async function runNetwork(net, rgba, width, height, styleIndex) {
  const feeds = { [net.session.inputNames[0]]: toTensor(rgba, width, height) };
  if (net.session.inputNames.length > 1) {  // a multi-style network: one-hot weights over its styles
    const weights = new Float32Array(net.styles.length);
    weights[Math.min(styleIndex, weights.length - 1)] = 1;
    feeds[net.session.inputNames[1]] = new ort.Tensor('float32', weights, [1, weights.length]);
  }
  const results = await net.session.run(feeds);
  const out = results[net.session.outputNames[0]];
  const data = out.location === 'cpu' || !out.getData ? out.data : await out.getData();
  return data;
}

// ---- the camera ----------------------------------------------------------------------------
const CAMERA_ERRORS = {
  NotAllowedError: 'The camera was refused. Allow it for this page (the camera icon in the address bar, or the site settings) and reload; a photo can still be painted with the file button.',
  SecurityError: 'The camera was refused by the browser\'s security settings. Allow it for this page and reload; a photo can still be painted with the file button.',
  NotFoundError: 'No camera was found. Plug one in and reload, or paint a photo with the file button (or drop one on the page).',
  OverconstrainedError: 'No camera was found that can deliver video. Plug one in and reload, or paint a photo with the file button.',
  NotReadableError: 'The camera is in use by another program (or the system blocked it). Close that program and reload.',
};

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(self.isSecureContext
      ? 'No camera API in this browser: paint a photo with the file button instead.'
      : `The camera needs a secure page (https:// or http://localhost); this one is ${location.origin}. Open it as http://localhost:PORT/ or serve it over https.`);
  }
  const width = Number(params.get('width') || 640), height = Number(params.get('height') || 480);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: width }, height: { ideal: height } }, audio: false });
  } catch (err) {
    throw new Error(CAMERA_ERRORS[err.name] || `The camera could not start (${err.name}: ${err.message}).`);
  }
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  if (!video.videoWidth) await new Promise((resolve) => video.addEventListener('loadedmetadata', resolve, { once: true }));
  return video;
}

// the next frame starts as soon as the page has had its turn (events, painting): a message to
// ourselves, not requestAnimationFrame, which may wait for the display's next tick (or longer)
const turn = new MessageChannel();
function nextTurn() {
  return new Promise((resolve) => { turn.port1.onmessage = () => resolve(); turn.port2.postMessage(0); });
}

async function liveLoop(video) {
  const camera = $('camera'), output = $('output');
  const cameraCtx = camera.getContext('2d', { willReadFrequently: true });
  const outputCtx = output.getContext('2d');
  const times = [];
  const profileAfter = Number(params.get('profile') || 0);
  state.state = 'running';
  $('snapshot').disabled = false;
  for (;;) {
    const width = video.videoWidth, height = video.videoHeight;
    if (camera.width !== width || camera.height !== height) {
      camera.width = output.width = width;
      camera.height = output.height = height;
    }
    state.width = width; state.height = height;
    const choice = current;
    let net = null;
    if (choice) {
      try {
        const shape = params.get('static') === '1' ? [height, width] : null;
        net = await network(choice.entry.realtime || choice.entry.full, choice.entry.name, null, shape);
      } catch (err) {
        if (choice === current) showError(`Could not load the network "${choice.entry.name}": ${err.message}.`);
        net = null;
      }
    }
    const t0 = performance.now();
    cameraCtx.drawImage(video, 0, 0, width, height);
    const rgba = cameraCtx.getImageData(0, 0, width, height).data;
    if (net && choice === current) {
      const start = performance.now();
      try {
        const y = await runNetwork(net, rgba, width, height, choice.style);
        state.networkMs = performance.now() - start;
        const t2 = performance.now();
        outputCtx.putImageData(paint(y, rgba, width, height, Number($('strength').value)), 0, 0);
        state.timing = { capture: start - t0, network: state.networkMs, paint: performance.now() - t2, wait: state.timing ? state.timing.wait : 0 };
      } catch (err) {
        showError(`The network "${choice.entry.name}" failed on a ${width}×${height} frame: ${err.message || err}.`);
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
    } else {
      outputCtx.drawImage(camera, 0, 0);  // no network (yet): the camera itself, never a blank canvas
    }
    state.frames += 1;
    const now = performance.now();
    times.push(now);
    while (times.length > 2 && now - times[0] > 2000) times.shift();
    state.fps = times.length > 1 ? (1000 * (times.length - 1)) / (now - times[0]) : 0;
    setStatus(`${state.fps.toFixed(1)} FPS · ${width}×${height} · ${backendLabel()} · network ${state.networkMs.toFixed(0)} ms${choice ? ` · ${choice.label}` : ''}`);
    if (profileAfter && state.frames === profileAfter && net) {
      net.session.endProfiling();
      state.profile = 'done';
    }
    const w0 = performance.now();
    await nextTurn();
    if (state.timing) state.timing.wait = performance.now() - w0;
  }
}

// ---- photos and dropped networks -------------------------------------------------------------
async function paintPhoto(file) {
  const view = $('photo-view'), canvas = $('photo');
  const choice = current;
  if (!choice) throw new Error('no network to paint it with: drop an ONNX export first');
  state.photo = { state: 'painting', width: 0, height: 0, ms: 0 };
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`${file.name} could not be decoded as an image`);
  }
  const { width, height } = bitmap;
  view.hidden = false;
  $('photo-status').textContent = `painting ${file.name} (${width}×${height}) with ${choice.label}…`;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  // a photo is painted at full size with the full network when there is one
  const url = choice.entry.full || choice.entry.realtime;
  const net = await network(url, choice.entry.name).catch((err) => {
    throw new Error(`could not load the network "${choice.entry.name}" (${err.message})`);
  });
  const start = performance.now();
  const y = await runNetwork(net, rgba, width, height, choice.style);
  ctx.putImageData(paint(y, rgba, width, height, Number($('strength').value)), 0, 0);
  const ms = performance.now() - start;
  state.photo = { state: 'done', width, height, ms, name: file.name };
  $('photo-status').textContent = `${file.name}: ${width}×${height}, ${choice.label} (${net.realtime ? 'real-time' : 'full'} network), ${ms.toFixed(0)} ms`;
}

async function addNetwork(file) {
  const bytes = await file.arrayBuffer();
  const name = file.name.replace(/\.onnx$/i, '');
  const url = `dropped:${file.name}:${file.size}:${file.lastModified}`;
  sessions.delete(url);
  const net = await network(url, name, bytes);
  const entry = { name, realtime: url, full: url };
  choices = choices.filter((c) => c.entry.name !== name);
  const added = net.styles.map((style, i) => ({ label: net.styles.length > 1 ? `${name}: ${style}` : style, entry, style: i }));
  choices.push(...added);
  fillPicker(added[0]);
}

async function openFile(file) {
  clearError();
  const looksOnnx = /\.onnx$/i.test(file.name);
  try {
    if (file.type.startsWith('image/') && !looksOnnx) {
      await paintPhoto(file);
      return;
    }
    const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
    const isImage = (head[0] === 0x89 && head[1] === 0x50) || (head[0] === 0xff && head[1] === 0xd8);
    if (isImage && !looksOnnx) { await paintPhoto(file); return; }
    await addNetwork(file);
  } catch (err) {
    state.photo = { ...state.photo, state: state.photo.state === 'painting' ? 'failed' : state.photo.state };
    const what = looksOnnx ? 'an ONNX network this page can run' : 'an image or an ONNX network';
    showError(`${file.name} is not ${what}: ${err.message}.`);
  }
}

function download(canvas, name) {
  canvas.toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }, 'image/png');
}

function wireControls() {
  $('style').addEventListener('change', (e) => selectChoice(choices[Number(e.target.value)]));
  $('strength').addEventListener('input', (e) => { $('strength-value').textContent = Number(e.target.value).toFixed(2); });
  $('side').addEventListener('change', (e) => { $('camera').hidden = !e.target.checked; });
  const stamp = () => new Date().toISOString().replace(/[:.]/g, '-');
  const label = () => (current ? current.label.replace(/[^\w-]+/g, '_') : 'camera');
  $('snapshot').addEventListener('click', () => download($('output'), `stylenet-${label()}-${stamp()}.png`));
  $('photo-save').addEventListener('click', () => download($('photo'), `stylenet-photo-${label()}-${stamp()}.png`));
  $('file').addEventListener('change', (e) => { if (e.target.files[0]) openFile(e.target.files[0]); e.target.value = ''; });
  const drop = document.body;
  drop.addEventListener('dragover', (e) => { e.preventDefault(); $('drop').classList.add('over'); });
  drop.addEventListener('dragleave', () => $('drop').classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    $('drop').classList.remove('over');
    if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]);
  });
}

async function main() {
  wireControls();
  if (!hasWebAssembly()) {
    state.state = 'error';
    showError('This browser has no WebAssembly, which the networks run on: use a current Chrome, Edge, Firefox or Safari, with WebAssembly not turned off (some locked-down settings disable it).');
    setStatus('stopped: no WebAssembly');
    return;
  }
  try {
    await loadRuntime();
  } catch (err) {
    state.state = 'error';
    showError(`ONNX Runtime Web could not load (${err.message}): the runtime's files are missing from this site (run npm ci in web/, see docs/web.md).`);
    return;
  }
  await loadModels();
  if (current) selectChoice(current);
  if (params.get('camera') === '0') { state.state = 'photos'; setStatus('photos only (camera=0)'); return; }
  setStatus('asking for the camera…');
  let video;
  try {
    video = await startCamera();
  } catch (err) {
    state.state = 'no-camera';
    showError(err.message);
    setStatus('no camera: photos only');
    return;
  }
  liveLoop(video).catch((err) => { state.state = 'error'; showError(`The live loop stopped: ${err.message || err}`); });
}

main();
