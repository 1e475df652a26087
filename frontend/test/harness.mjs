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
async function waitForStream(url, procs) {
  try {
    await waitUntil('the live playlist to hold 4 segments', async () => {
      for (const p of procs) if (p.exited) throw new Error(`${p.name} exited (${JSON.stringify(p.exited)})`);
      const res = await fetch(`${url}/hls/live/index.m3u8`);
      if (!res.ok) return false;
      return ((await res.text()).match(/#EXTINF/g) ?? []).length >= 4;
    }, 30000, 250);
  } catch (err) {
    throw new Error(`${err.message}\n${procs.map((p) => `--- ${p.name}\n${tail(p)}`).join('\n')}`);
  }
}

export function stopStack() {
  killAll();
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--autoplay-policy=no-user-gesture-required'];

/** Headless Debian Chromium with a fresh profile; never downloads a browser. */
export async function launchBrowser() {
  const userDataDir = tempDir('hlsmark-chromium-');
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  return chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 760 },
  });
}
