// Test harness for the browser suite: starts the real stack (redis-server, `hlsmark generate`,
// `hlsmark serve`) on free ports in a temp dir, and Debian's Chromium through playwright-core.
// Everything started here is killed (whole process groups) when the suite ends, also on failure.
//
// Environment:
//   HLSMARK_BIN        the hlsmark binary (default: <repo>/target/debug/hlsmark, built if missing)
//   HLSMARK_TEST_STACK `run` tests the single binary (`hlsmark run`, embedded store) instead
//   HLSMARK_TEST_URL   use an already running server instead (with HLSMARK_TEST_TOKEN)
//   CHROMIUM           browser binary (default /usr/bin/chromium)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const frontendDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const repoDir = path.dirname(frontendDir);

const children = [];
const tempDirs = [];

function killAll() {
  for (const c of children.splice(0).reverse()) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

export function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(what, fn, timeoutMs, stepMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(stepMs);
  }
}

/** Starts a child in its own process group, logging to `dir/<name>.log`. */
function start(name, cmd, args, dir, extraEnv = {}) {
  const log = fs.openSync(path.join(dir, `${name}.log`), 'a');
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...extraEnv };
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log], env });
  child.name = name;
  child.logFile = path.join(dir, `${name}.log`);
  children.push(child);
  child.on('exit', (code, sig) => { child.exited = { code, sig }; });
  return child;
}

/** Starts another child (a test's source, ...) the same way: own process group, killed at the end. */
export function startChild(name, cmd, args) {
  return start(name, cmd, args, tempDir(`hlsmark-${name}-`));
}

export function tail(child, n = 30) {
  try {
    return fs.readFileSync(child.logFile, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

function hlsmarkBin() {
  if (process.env.HLSMARK_BIN) return process.env.HLSMARK_BIN;
  const bin = path.join(repoDir, 'target', 'debug', 'hlsmark');
  if (!fs.existsSync(bin)) {
    console.log('# building hlsmark (cargo build -p hlsmark)');
    execFileSync('cargo', ['build', '-p', 'hlsmark'], { cwd: repoDir, stdio: 'inherit' });
  }
  return bin;
}

/**
 * The real stack: redis-server + `hlsmark generate` (small frames, frequent events, paced to wall
 * time) + `hlsmark serve` with a short live window, serving this package's dist/. With
 * HLSMARK_TEST_STACK=run: `hlsmark run` alone (embedded store).
 */
export async function startStack({ liveWindow = 6, fps = 30 } = {}) {
  if (process.env.HLSMARK_TEST_URL) {
    return { url: process.env.HLSMARK_TEST_URL.replace(/\/$/, ''), token: process.env.HLSMARK_TEST_TOKEN ?? 'test-token', fps, external: true, procs: [] };
  }
  const bin = hlsmarkBin();
  const dir = tempDir('hlsmark-browser-');
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const redisPort = await freePort();
  const httpPort = await freePort();
  const token = 'browser-test-token';
  const store = `redis://127.0.0.1:${redisPort}/`;

  const genFlags = ['--width', '320', '--height', '180', '--fps', String(fps), '--segment-duration', '1s',
    '--event-mean', '3s', '--event-duration', '1s', '--seed', '1', '--live-window', String(liveWindow), '--block-size', '30'];
  const webFlags = ['--listen', `127.0.0.1:${httpPort}`, '--token', token, '--frontend-dir', path.join(frontendDir, 'dist')];
  if (process.env.HLSMARK_TEST_STACK === 'run') {
    // The single-binary product: generator + API + embedded store in one process.
    const run = start('run', bin, ['run', '--data-dir', dataDir, '--stream', 'live', ...genFlags, ...webFlags], dir);
    const url = `http://127.0.0.1:${httpPort}`;
    await waitForStream(url, [run]);
    return { url, token, fps, dir, procs: [run], generator: run, external: false };
  }

  const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], dir);
  await waitUntil('redis-server', () => new Promise((resolve) => {
    const s = net.connect(redisPort, '127.0.0.1', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  }), 10000);

  const gen = start('generate', bin, ['generate', '--store', store, '--data-dir', dataDir, '--stream', 'live', ...genFlags], dir);
  const serve = start('serve', bin, ['serve', '--store', store, '--data-dir', dataDir, '--live-window', String(liveWindow), ...webFlags], dir);
  const url = `http://127.0.0.1:${httpPort}`;

  const procs = [redis, gen, serve];
  await waitForStream(url, procs);
  return { url, token, fps, dir, procs, generator: gen, external: false };
}

/** Waits until the live playlist holds 4 segments; a child that exits fails it with its log. */
async function waitForStream(url, procs, stream = 'live') {
  try {
    await waitUntil(`the live playlist of ${stream} to hold 4 segments`, async () => {
      for (const p of procs) if (p.exited) throw new Error(`${p.name} exited (${JSON.stringify(p.exited)})`);
      const res = await fetch(`${url}/hls/${stream}/index.m3u8`);
      if (!res.ok) return false;
      return ((await res.text()).match(/#EXTINF/g) ?? []).length >= 4;
    }, 30000, 250);
  } catch (err) {
    throw new Error(`${err.message}\n${procs.map((p) => `--- ${p.name}\n${tail(p)}`).join('\n')}`);
  }
}

/** Whether this `hlsmark run` can import a file (`--pace false --start-utc`). */
export function runTakesImport(bin = hlsmarkBin()) {
  try {
    const help = execFileSync(bin, ['run', '--help'], { encoding: 'utf8' });
    return /--start-utc\b/.test(help) && /--pace\b/.test(help);
  } catch {
    return false;
  }
}

/**
 * A file made by ffmpeg, like the testkit's clip maker (crates/testkit/src/clip.rs): grey
 * `testsrc2` with a mint block (32x32, #00ffff) in the top-left corner on the frames of `mint`
 * (`[[first, last], ...]`, inclusive), H.264 with a keyframe every second, no B-frames, 90 kHz.
 */
export function makeClip(file, { width = 320, height = 180, fps = 10, frames, mint = [] }) {
  const enable = mint.map(([a, b]) => `between(n,${a},${b})`).join('+') || '0';
  const vf = `testsrc2=size=${width}x${height}:rate=${fps},hue=s=0,`
    + `drawbox=x=0:y=0:w=32:h=32:color=0x00FFFF@1:t=fill:enable='${enable}',settb=1/90000`;
  execFileSync('ffmpeg', ['-v', 'error', '-nostdin', '-y', '-f', 'lavfi', '-i', vf, '-frames:v', String(frames),
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '32', '-pix_fmt', 'yuv420p', '-g', String(fps), '-keyint_min', String(fps),
    '-sc_threshold', '0', '-bf', '0', '-fps_mode', 'passthrough', '-enc_time_base:v', '1/90000',
    '-video_track_timescale', '90000', '-f', 'mp4', file], { stdio: ['ignore', 'inherit', 'inherit'] });
  return file;
}

/**
 * History, then live, on one stream (`live`) of one data dir: `hlsmark run` imports `clip` unpaced
 * and backdated to `startUtc` (`--pace false --start-utc`, copied), is stopped once `/streams` says
 * the import ended, and `hlsmark run` with the generator continues the same stream live (a new
 * epoch after a gap), on the same port.
 */
export async function startImportThenLive({ clip, startUtc, liveWindow = 8, fps = 30 }) {
  const bin = hlsmarkBin();
  const dir = tempDir('hlsmark-history-');
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const httpPort = await freePort();
  const token = 'browser-test-token';
  const url = `http://127.0.0.1:${httpPort}`;
  const webFlags = ['--listen', `127.0.0.1:${httpPort}`, '--token', token, '--frontend-dir', path.join(frontendDir, 'dist')];
  const t0 = Date.now();
  const imp = start('import', bin, ['run', '--data-dir', dataDir, '--stream', 'live', '--source', clip, '--loop', 'false',
    '--pace', 'false', '--start-utc', startUtc, '--video', 'copy', '--live-window', String(liveWindow), ...webFlags], dir);
  try {
    await waitUntil('the import to end (the stream stopped)', async () => {
      if (imp.exited) throw new Error(`the import exited (${JSON.stringify(imp.exited)})`);
      const res = await fetch(`${url}/streams`);
      if (!res.ok) return false;
      const body = await res.json();
      return body.streams?.find((x) => x.name === 'live')?.state === 'stopped';
    }, 300000, 500);
  } catch (err) {
    throw new Error(`${err.message}\n--- import\n${tail(imp)}`);
  }
  const imported = Date.now() - t0;
  const exited = new Promise((r) => (imp.exited ? r() : imp.once('exit', r)));
  process.kill(-imp.pid, 'SIGTERM');
  await Promise.race([exited, sleep(20000)]);
  const genFlags = ['--width', '320', '--height', '180', '--fps', String(fps), '--segment-duration', '1s',
    '--event-mean', '3s', '--event-duration', '1s', '--seed', '1', '--live-window', String(liveWindow), '--block-size', '30'];
  const run = start('run', bin, ['run', '--data-dir', dataDir, '--stream', 'live', ...genFlags, ...webFlags], dir);
  await waitForStream(url, [run]);
  return { url, token, fps, dir, procs: [run], generator: run, external: false, importedMs: imported };
}

/** Whether this `hlsmark run` takes `--config` (several `[[stream]]`s in one process). */
export function runTakesConfig(bin = hlsmarkBin()) {
  try {
    return /--config\b/.test(execFileSync(bin, ['run', '--help'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

/**
 * Several generator streams behind one API, for the stream picker. With a binary whose `hlsmark
 * run` takes `--config`: one `hlsmark run --config` with a `[[stream]]` per name (plus `broken`
 * streams whose source cannot be opened, e.g. `{ name: 'cam', source: 'rtsp://127.0.0.1:1/x' }`).
 * Otherwise (older binaries): redis-server, one `hlsmark generate --stream NAME` per name on it
 * and one `hlsmark serve`; `broken` streams are then not possible (`result.broken` is empty).
 * Each stream gets its own event seed, so their markers differ.
 */
export async function startStreams({ names = ['a', 'b'], broken = [], liveWindow = 8, fps = 30 } = {}) {
  const bin = hlsmarkBin();
  const dir = tempDir('hlsmark-streams-');
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  const httpPort = await freePort();
  const token = 'browser-test-token';
  const url = `http://127.0.0.1:${httpPort}`;
  const webFlags = ['--listen', `127.0.0.1:${httpPort}`, '--token', token, '--frontend-dir', path.join(frontendDir, 'dist')];
  const gen = { width: 320, height: 180, fps: String(fps), segment_duration: '1s' };
  const eventFlags = ['--event-mean', '3s', '--event-duration', '1s', '--block-size', '30', '--live-window', String(liveWindow)];

  if (process.env.HLSMARK_TEST_STREAMS_VIA !== 'generate' && runTakesConfig(bin)) {
    const toml = [];
    for (const [i, name] of names.entries()) {
      toml.push('[[stream]]', `name = "${name}"`, 'source = "generator"', `width = ${gen.width}`, `height = ${gen.height}`,
        `fps = "${gen.fps}"`, `segment_duration = "${gen.segment_duration}"`, `seed = ${i + 1}`, '');
    }
    for (const b of broken) toml.push('[[stream]]', `name = "${b.name}"`, `source = "${b.source}"`, '');
    const config = path.join(dir, 'hlsmark.toml');
    fs.writeFileSync(config, toml.join('\n'));
    const run = start('run', bin, ['run', '--config', config, '--data-dir', dataDir, ...eventFlags, ...webFlags], dir);
    for (const name of names) await waitForStream(url, [run], name);
    return { url, token, fps, dir, procs: [run], via: 'config', names, broken, config };
  }

  const redisPort = await freePort();
  const store = `redis://127.0.0.1:${redisPort}/`;
  const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], dir);
  await waitUntil('redis-server', () => new Promise((resolve) => {
    const s = net.connect(redisPort, '127.0.0.1', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  }), 10000);
  const procs = [redis];
  for (const [i, name] of names.entries()) {
    procs.push(start(`generate-${name}`, bin, ['generate', '--store', store, '--data-dir', dataDir, '--stream', name,
      '--width', String(gen.width), '--height', String(gen.height), '--fps', gen.fps, '--segment-duration', gen.segment_duration,
      '--seed', String(i + 1), ...eventFlags], dir));
  }
  procs.push(start('serve', bin, ['serve', '--store', store, '--data-dir', dataDir, '--live-window', String(liveWindow), ...webFlags], dir));
  for (const name of names) await waitForStream(url, procs, name);
  return { url, token, fps, dir, procs, via: 'generate', names, broken: [] };
}

export function stopStack() {
  killAll();
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--autoplay-policy=no-user-gesture-required'];

/**
 * Headless Debian Chromium with a fresh profile; never downloads a browser. `options` go to the
 * context (e.g. `timezoneId`).
 */
export async function launchBrowser(options = {}) {
  const userDataDir = tempDir('hlsmark-chromium-');
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  return chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 760 },
    ...options,
  });
}
