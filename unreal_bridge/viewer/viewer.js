// worldstream web viewer: connects to the streaming websocket (protocol v1, docs/protocol.md), flies a
// camera along a path or under mouse/keyboard control, and shows chunks as they stream in, with an
// overlay of levels, queue and latency. window.viewerStatus exposes the same figures to scripts/tests.
import * as THREE from 'three';
import { GLTFLoader } from './vendor/three/examples/jsm/loaders/GLTFLoader.js';
import { MeshoptDecoder } from './vendor/three/examples/jsm/libs/meshopt_decoder.module.js';

const params = new URLSearchParams(location.search);
const num = (name, fallback) => (params.has(name) && isFinite(+params.get(name)) ? +params.get(name) : fallback);
const config = {
  mode: params.get('fly') || 'path',
  speed: num('speed', 30),          // m/s along the path
  agl: num('agl', 120),             // metres above the ground
  heading: num('heading', 35),      // degrees from east towards north
  pitch: num('pitch', -20),         // degrees, negative looks down
  start: [num('x', 1000), num('y', -3000)],
  fov: num('fov', 90),              // horizontal, degrees
  maxSse: num('sse', 16),
  token: params.get('token'),
};

const status = {
  connected: false, world: null, chunks: 0, bytes: 0, resident: 0, meshes: 0, unloads: 0,
  levels: {}, hidden: 0, drawn: [], errors: [], frames: 0, stats: null, position: null, agl: null,
};
window.viewerStatus = status;
const fail = (what) => { status.errors.push(String(what).slice(0, 500)); };
window.addEventListener('error', (e) => fail(e.message || e));
window.addEventListener('unhandledrejection', (e) => fail(e.reason));

// ------------------------------------------------------------------ scene (three.js is y up: x = east, y = up, z = -north)
const renderer = new THREE.WebGLRenderer({ antialias: true, logarithmicDepthBuffer: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setSize(window.innerWidth, window.innerHeight);
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
const sky = new THREE.Color(0x9cc3e6);
scene.background = sky;
scene.fog = new THREE.Fog(sky, 4000, 30000);
scene.add(new THREE.HemisphereLight(0xffffff, 0x556655, 1.6));
const sun = new THREE.DirectionalLight(0xffffff, 1.8);
sun.position.set(0.4, 1.0, 0.3);
scene.add(sun);
const world = new THREE.Group();
scene.add(world);

const fovY = (fovX, w, h) => 2 * Math.atan(Math.tan(THREE.MathUtils.degToRad(fovX) / 2) * h / w);
const camera = new THREE.PerspectiveCamera(THREE.MathUtils.radToDeg(fovY(config.fov, innerWidth, innerHeight)),
  innerWidth / innerHeight, 1, 80000);
camera.rotation.order = 'YXZ';
window.addEventListener('resize', () => {
  renderer.setSize(innerWidth, innerHeight);
  camera.aspect = innerWidth / innerHeight;
  camera.fov = THREE.MathUtils.radToDeg(fovY(config.fov, innerWidth, innerHeight));
  camera.updateProjectionMatrix();
});

// ------------------------------------------------------------------ chunk frames (84-byte header, parts table, payloads)
function parseFrame(buffer) {
  const dv = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  if (magic !== 'WSC1') throw new Error(`not a chunk frame (magic ${magic})`);
  const f = {
    level: dv.getUint8(4), parts: {}, x: Number(dv.getBigInt64(8, true)), y: Number(dv.getBigInt64(16, true)),
    error: dv.getFloat64(24, true),
    bounds: [0, 1, 2, 3].map((i) => dv.getFloat64(32 + 8 * i, true)),
    zRange: [dv.getFloat64(64, true), dv.getFloat64(72, true)], seq: dv.getUint32(80, true),
  };
  const count = dv.getUint16(6, true);
  let off = 84;
  const table = [];
  for (let i = 0; i < count; i++) {
    const nameLength = dv.getUint8(off);
    const size = dv.getUint32(off + 1, true);
    const name = new TextDecoder().decode(new Uint8Array(buffer, off + 5, nameLength));
    off += 5 + nameLength;
    table.push([name, size]);
  }
  for (const [name, size] of table) {
    f.parts[name] = buffer.slice(off, off + size);
    off += size;
  }
  if (off !== buffer.byteLength) throw new Error(`chunk frame has ${buffer.byteLength - off} trailing bytes`);
  return f;
}

const loader = new GLTFLoader().setMeshoptDecoder(MeshoptDecoder);  // serve --compress: meshopt geometry
const chunks = new Map();  // "level/x/y" -> {frame, object}

function dispose(object) {
  object.traverse((o) => {
    if (o.geometry) o.geometry.dispose();
    for (const m of [].concat(o.material || [])) {
      for (const v of Object.values(m)) if (v && v.isTexture) v.dispose();
      m.dispose();
    }
  });
}

// 3D Tiles REPLACE refinement on the client: a chunk is drawn while its children are not all ready,
// and children only once all four are (or their parent is gone), so levels never overlap or leave holes.
const childKeys = (l, x, y) => [[0, 0], [1, 0], [0, 1], [1, 1]].map(([i, j]) => `${l + 1}/${2 * x + i}/${2 * y + j}`);
function updateVisibility() {
  const covered = new Map(), shown = new Map();
  const isCovered = (key) => {
    if (covered.has(key)) return covered.get(key);
    const [l, x, y] = key.split('/').map(Number);
    const result = hasDescendants(key) && childKeys(l, x, y).every((k) => loaded(k) || isCovered(k));
    covered.set(key, result);
    return result;
  };
  const isShown = (key) => {
    if (shown.has(key)) return shown.get(key);
    const [l, x, y] = key.split('/').map(Number);
    let result = loaded(key) && !isCovered(key);
    if (result && l > 0) {
      for (let a = l - 1, ax = x, ay = y; a >= 0 && result; a--) {
        ax = Math.floor(ax / 2); ay = Math.floor(ay / 2);
        if (isShown(`${a}/${ax}/${ay}`)) result = false;
      }
    }
    shown.set(key, result);
    return result;
  };
  status.hidden = 0;
  status.drawn = [];
  for (const [key, c] of chunks) {
    if (!c.object) continue;
    c.object.visible = isShown(key);
    if (c.object.visible) status.drawn.push(key); else status.hidden++;
  }
}
const loaded = (key) => Boolean(chunks.get(key) && chunks.get(key).object);
function hasDescendants(key) {
  const [l, x, y] = key.split('/').map(Number);
  for (const other of chunks.keys()) {
    const [ol, ox, oy] = other.split('/').map(Number);
    if (ol > l && Math.floor(ox / 2 ** (ol - l)) === x && Math.floor(oy / 2 ** (ol - l)) === y) return true;
  }
  return false;
}

function countLevels() {
  updateVisibility();
  status.levels = {};
  for (const [key, c] of chunks) {
    const level = key.split('/')[0];
    status.levels[level] = (status.levels[level] || 0) + 1;
  }
  status.resident = chunks.size;
  status.meshes = [...chunks.values()].filter((c) => c.object).length;
}

function onChunk(frame) {
  const key = `${frame.level}/${frame.x}/${frame.y}`;
  const old = chunks.get(key);
  if (old && old.object) { world.remove(old.object); dispose(old.object); }
  const entry = { frame, object: null };
  chunks.set(key, entry);
  countLevels();
  loader.parse(frame.parts['mesh.glb'], '', (gltf) => {
    if (chunks.get(key) !== entry) { dispose(gltf.scene); return; }  // unloaded or replaced meanwhile
    gltf.scene.renderOrder = frame.level;
    entry.object = gltf.scene;
    world.add(gltf.scene);
    countLevels();
  }, (err) => fail(`chunk ${key}: ${err.message || err}`));
}

function onUnload(keys) {
  for (const key of keys) {
    const c = chunks.get(key);
    if (!c) continue;
    if (c.object) { world.remove(c.object); dispose(c.object); }
    chunks.delete(key);
    status.unloads++;
  }
  countLevels();
}

// ------------------------------------------------------------------ connection
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
const ws = new WebSocket(wsUrl);
ws.binaryType = 'arraybuffer';
const send = (obj) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); };
ws.onopen = () => {
  const hello = { type: 'hello', protocol: 1, client: 'worldstream.viewer' };
  if (config.token) hello.token = config.token;
  send(hello);
};
ws.onmessage = (event) => {
  if (event.data instanceof ArrayBuffer) {
    try {
      const frame = parseFrame(event.data);
      status.chunks++;
      status.bytes += event.data.byteLength;
      onChunk(frame);
    } catch (err) { fail(err.message || err); }
    send({ type: 'credit', chunks: 1 });
    return;
  }
  const msg = JSON.parse(event.data);
  if (msg.type === 'welcome') { status.connected = true; status.world = msg.world; }
  else if (msg.type === 'unload') onUnload(msg.keys);
  else if (msg.type === 'stats') status.stats = msg;
  else if (msg.type === 'error') fail(`server: ${msg.code}: ${msg.message}`);
};
ws.onerror = () => fail('websocket error');
ws.onclose = (e) => { status.connected = false; if (e.code !== 1000) fail(`websocket closed ${e.code} ${e.reason}`); };
setInterval(() => send({ type: 'stats' }), 1000);

// ------------------------------------------------------------------ ground under the camera
const raycaster = new THREE.Raycaster();
const down = new THREE.Vector3(0, -1, 0);
// The ground under (east, north): {y, meshed} from a ray on the drawn meshes, else (not meshed yet)
// the top of the finest chunk frame over the point, an upper bound; null before any chunk.
function groundAt(east, north) {
  raycaster.set(new THREE.Vector3(east, 20000, -north), down);
  const hit = raycaster.intersectObject(world, true)[0];
  if (hit) return { y: hit.point.y, meshed: true };
  let best = null;
  for (const c of chunks.values()) {
    const [w, s, e, n] = c.frame.bounds;
    if (east >= w && east < e && north >= s && north < n && (!best || c.frame.level > best.level)) best = c.frame;
  }
  return best ? { y: best.zRange[1], meshed: false } : null;
}

// ------------------------------------------------------------------ camera control
const keys = new Set();
let yaw = config.heading, pitch = config.pitch;
const position = new THREE.Vector3(config.start[0], 400, -config.start[1]);  // three.js coordinates
addEventListener('keydown', (e) => keys.add(e.key.toLowerCase()));
addEventListener('keyup', (e) => keys.delete(e.key.toLowerCase()));
renderer.domElement.addEventListener('pointermove', (e) => {
  if (config.mode !== 'free' || !(e.buttons & 1)) return;
  yaw -= e.movementX * 0.2;
  pitch = Math.max(-89, Math.min(89, pitch - e.movementY * 0.2));
});

let altitude = null, groundClock = 0, meshedGround = false;
function move(t, dt) {
  if (config.mode === 'free') {
    const fast = keys.has('shift') ? 10 : 1;
    const h = THREE.MathUtils.degToRad(yaw);
    const forward = new THREE.Vector3(Math.cos(h), 0, -Math.sin(h));
    const right = new THREE.Vector3(Math.sin(h), 0, Math.cos(h));
    const step = config.speed * fast * dt;
    if (keys.has('w')) position.addScaledVector(forward, step);
    if (keys.has('s')) position.addScaledVector(forward, -step);
    if (keys.has('d')) position.addScaledVector(right, step);
    if (keys.has('a')) position.addScaledVector(right, -step);
    if (keys.has('e')) position.y += step;
    if (keys.has('q')) position.y -= step;
  } else {
    const h = THREE.MathUtils.degToRad(config.heading);
    position.x = config.start[0] + config.speed * t * Math.cos(h);
    position.z = -(config.start[1] + config.speed * t * Math.sin(h));
    if (--groundClock <= 0) {  // raycasts are not free: every few frames
      groundClock = 5;
      const found = groundAt(position.x, -position.z);
      if (found !== null) {
        const ground = found.y;
        // the first meshed ground replaces a chunk frame's upper bound at once (it can be hundreds of
        // metres high); after that the path eases towards the ground
        const snap = altitude === null || (found.meshed && !meshedGround);
        meshedGround = meshedGround || found.meshed;
        altitude = snap ? ground + config.agl : Math.max(altitude + (ground + config.agl - altitude) * 0.2, ground + 20);
        status.agl = altitude - ground;  // this frame's (position.y still holds the last frame's)
      }
    }
    position.y = altitude === null ? 400 : altitude;
  }
  camera.position.copy(position);
  camera.rotation.set(THREE.MathUtils.degToRad(pitch), THREE.MathUtils.degToRad(yaw - 90), 0);
}

// the view in the protocol's "enu" frame: body x forward, y left, z up
const toEnu = (v) => new THREE.Vector3(v.x, -v.z, v.y);
let seq = 0, lastView = 0;
function sendView(now) {
  if (!status.connected || now - lastView < 1000 / 30) return;
  lastView = now;
  const forward = toEnu(new THREE.Vector3(0, 0, -1).applyQuaternion(camera.quaternion));
  const up = toEnu(new THREE.Vector3(0, 1, 0).applyQuaternion(camera.quaternion));
  const left = new THREE.Vector3().crossVectors(up, forward);
  const q = new THREE.Quaternion().setFromRotationMatrix(new THREE.Matrix4().makeBasis(forward, left, up));
  const p = toEnu(camera.position);
  status.position = [p.x, p.y, p.z];
  send({ type: 'view', seq: ++seq, cameras: [{ id: 'viewer', frame: 'enu', position: [p.x, p.y, p.z],
    orientation: [q.w, q.x, q.y, q.z], fov_deg: config.fov, viewport: [innerWidth, innerHeight], max_sse: config.maxSse }] });
}

// ------------------------------------------------------------------ overlay and loop
const overlay = document.getElementById('overlay');
function drawOverlay(fps) {
  const c = (status.stats && status.stats.client) || {};
  const levels = Object.keys(status.levels).sort((a, b) => a - b).map((l) => `L${l}:${status.levels[l]}`).join(' ');
  const p = status.position ? status.position.map((v) => v.toFixed(0)).join(', ') : '-';
  overlay.textContent = [
    `worldstream  ${status.connected ? 'connected' : 'disconnected'}  seed ${status.world ? status.world.seed : '-'}  ${fps.toFixed(0)} fps`,
    `camera ENU ${p}  AGL ${status.agl === null ? '-' : status.agl.toFixed(0)} m  (${config.mode})`,
    `resident ${status.resident}  ${levels}`,
    `received ${status.chunks} chunks  ${(status.bytes / 1e6).toFixed(1)} MB  unloaded ${status.unloads}`,
    `queue ${c.pending ?? '-'} of ${c.required ?? '-'} required  latency p50 ${c.latency_ms_p50 ?? '-'} ms  p95 ${c.latency_ms_p95 ?? '-'} ms`,
    `errors ${status.errors.length}${status.errors.length ? ': ' + status.errors[status.errors.length - 1] : ''}`,
  ].join('\n');
}

let elapsed = 0, fpsFrames = 0, fpsTime = 0, fps = 0, previous = performance.now();
renderer.setAnimationLoop((now) => {
  const dt = Math.min((now - previous) / 1000, 0.1);
  previous = now;
  if (status.connected && status.meshes > 0) elapsed += dt;  // the path starts once there is ground to fly over
  move(elapsed, dt);
  sendView(now);
  renderer.render(scene, camera);
  status.frames++;
  fpsFrames++; fpsTime += dt;
  if (fpsTime > 0.5) { fps = fpsFrames / fpsTime; fpsFrames = 0; fpsTime = 0; drawOverlay(fps); }
});
