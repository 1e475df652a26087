// Test harness for the browser suite: starts the real stack (redis-server, `hlsmark generate`,
// `hlsmark serve`) on free ports in a temp dir, and Debian's Chromium through playwright-core.
// Everything started here is killed (whole process groups) when the suite ends, also on failure.
//
// Environment:
//   HLSMARK_BIN        the hlsmark binary (default: <repo>/target/debug/hlsmark, built if missing)
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

function helpOf(bin, sub) {
  try {
    return execFileSync(bin, [sub, '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    return String(err.stdout ?? '');
  }
}

/**
 * The real stack: redis-server + `hlsmark generate` (small frames, frequent events, paced to wall
 * time) + `hlsmark serve` with a short live window, serving this package's dist/.
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

  const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], dir);
  await waitUntil('redis-server', () => new Promise((resolve) => {
    const s = net.connect(redisPort, '127.0.0.1', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  }), 10000);

  const genHelp = helpOf(bin, 'generate');
  const genArgs = ['generate', '--store', store, '--data-dir', dataDir, '--stream', 'live',
    '--width', '320', '--height', '180', '--fps', String(fps), '--segment-duration', '1s',
    '--event-mean', '3s', '--event-duration', '1s', '--seed', '1'];
  if (genHelp.includes('--live-window')) genArgs.push('--live-window', String(liveWindow));
  if (genHelp.includes('--block-size')) genArgs.push('--block-size', '30');
  const gen = start('generate', bin, genArgs, dir, { HLSMARK_LIVE_WINDOW: String(liveWindow) });

  const serveHelp = helpOf(bin, 'serve');
  const serveArgs = ['serve', '--store', store, '--data-dir', dataDir, '--listen', `127.0.0.1:${httpPort}`,
    '--token', token, '--frontend-dir', path.join(frontendDir, 'dist')];
  // A short live window (in segments) so markers become archived during the run.
  if (serveHelp.includes('--live-window')) serveArgs.push('--live-window', String(liveWindow));
  const serve = start('serve', bin, serveArgs, dir, { HLSMARK_LIVE_WINDOW: String(liveWindow) });
  const url = `http://127.0.0.1:${httpPort}`;

  const procs = [redis, gen, serve];
  try {
    await waitUntil('the live playlist to hold 4 segments', async () => {
      for (const p of procs) if (p.exited) throw new Error(`${p.name} exited (${JSON.stringify(p.exited)}):\n${tail(p)}`);
      const res = await fetch(`${url}/hls/live/index.m3u8`);
      if (!res.ok) return false;
      return ((await res.text()).match(/#EXTINF/g) ?? []).length >= 4;
    }, 30000, 250);
  } catch (err) {
    throw new Error(`${err.message}\n--- generate\n${tail(gen)}\n--- serve\n${tail(serve)}\n(generate --help mentions block size: ${genHelp.includes('--block-size')})`);
  }
  return { url, token, fps, dir, procs, external: false };
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
