// A viewer for tests outside this package: the hlsmark page in headless Debian Chromium (through
// playwright-core, launched as harness.mjs does), driven over stdin/stdout. Used by
// crates/cli/tests/scale_compose.rs to play through the load balancer while nodes are killed.
//
//   node test/scale-player.mjs <page url, e.g. http://127.0.0.1:5000/?stream=live>
//
// stdout, one JSON object a line:
//   {"event":"loaded"}                          the page started (its test hook is there)
//   {"sample":{...}}                             every ~250 ms: the player's state (see sample())
//   {"http":404,"url":"..."}                     an answer >= 400 (the first 200 of them)
//   {"reply":"<command>",...}                    the answer to a command
//   {"fatal":"..."}                              the browser or the page failed; exits 1
// stdin, one command a line:
//   seek-marker <id>   clicks the marker as a viewer would (the page's seekToMarker): the corner
//                      of the landed frame (mint during a generator event) and of the frame one
//                      frame earlier; the player stays paused there
//   live               back to the live edge, playing
// It exits when stdin closes or on SIGTERM/SIGINT, and the browser goes with it (closed, or its
// process group killed by playwright's exit handler).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, sleep, waitUntil } from './harness.mjs';

const url = process.argv[2];
if (!url) {
  console.error('usage: node test/scale-player.mjs <page url>');
  process.exit(2);
}

const started = Date.now();
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const httpErrors = {};
let failedRequests = 0;
let shown = 0;

// A profile of our own (harness.mjs's temp dirs are removed at exit before the browser is
// killed); removed once the browser is gone.
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hlsmark-scale-chromium-'));
let browser;
let stopping = false;

async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await Promise.race([browser?.close(), sleep(10000)]);
  } catch {
    // the exit handler below kills it
  }
  process.exit(code);
}
function removeProfile() {
  try {
    fs.rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // a browser still dying may write into it: a temp dir left behind, nothing else
  }
}

const isMint = ([r, g, b]) => r < 60 && g > 200 && b > 200;

/** The top-left corner (the generator's event flag) of the frame on screen, as player.test.mjs reads it. */
function corner(page) {
  return page.evaluate(() => {
    const video = window.hlsmark.player.tech(true).el();
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const d = ctx.getImageData(2, 2, 4, 4).data;
    const rgb = [0, 1, 2].map((k) => {
      let s = 0;
      for (let i = k; i < d.length; i += 4) s += d[i];
      return Math.round(s / (d.length / 4));
    });
    return { rgb, time: video.currentTime, width: c.width, height: c.height };
  });
}

/** What the page shows now (its test hook, window.hlsmark). */
function sample(page) {
  return page.evaluate(() => {
    const { player, state } = window.hlsmark;
    const video = player.tech(true).el();
    const hls = window.hlsmark.engine();
    // The fragment at the playhead (hls.js has no public getter for it; its stream controller
    // does), else the page's own clock for the frame on screen.
    const frag = hls?.streamController?.currentFrag ?? null;
    const details = hls?.levels?.[hls.currentLevel >= 0 ? hls.currentLevel : 0]?.details;
    const now = window.hlsmark.hlsNow();
    let epoch = frag?.url ? /\/e(\d+)-\d+/.exec(frag.url)?.[1] : undefined;
    if (epoch === undefined && now !== null && state.timeline) epoch = state.timeline.epochAtHls(now)?.index;
    return {
      ct: player.currentTime(),
      paused: player.paused(),
      rs: video.readyState,
      seeking: player.seeking(),
      error: player.error()?.message ?? null,
      errors: state.errors.length,
      waiting: state.stalls.waiting,
      engine_stalls: state.stalls.engine,
      hls_90k: now,
      // The fragment on screen: media sequence, discontinuity sequence, epoch (from its name).
      sn: typeof frag?.sn === 'number' ? frag.sn : null,
      cc: frag?.cc ?? null,
      epoch: epoch === undefined ? null : Number(epoch),
      // The newest media sequence of the playlist the engine has.
      edge_sn: details?.endSN ?? null,
      mode: state.mode,
      ready: state.ready,
      feed: state.feed,
    };
  });
}

async function seekMarker(page, id) {
  // The page learns of a marker from its SSE feed (or the history it re-reads when the feed reopens).
  await waitUntil(`the page to know marker ${id}`, () => page.evaluate((x) => window.hlsmark.markers.has(x), id), 20000, 100);
  const landed = await page.evaluate((x) => window.hlsmark.seekToMarker(x), id);
  const at = await corner(page);
  const { hls_90k: hls, frame } = await page.evaluate((x) => ({
    hls_90k: window.hlsmark.markers.get(x).hls_90k,
    frame: window.hlsmark.frameTicks(),
  }), id);
  await page.evaluate((h) => window.hlsmark.seekToHls(h), hls - frame);
  const before = await corner(page);
  return {
    hls_90k: hls,
    frame_90k: frame,
    landed,
    at: { ...at, mint: isMint(at.rgb) },
    before: { ...before, mint: isMint(before.rgb) },
  };
}

async function command(page, line) {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (!cmd) return;
  try {
    if (cmd === 'seek-marker') {
      emit({ reply: cmd, id: args[0], ok: true, ...(await seekMarker(page, args[0])) });
    } else if (cmd === 'live') {
      await page.evaluate(async () => {
        await window.hlsmark.backToLive();
        await window.hlsmark.player.play();
      });
      emit({ reply: cmd, ok: true });
    } else {
      emit({ reply: cmd, ok: false, error: `unknown command ${cmd}` });
    }
  } catch (err) {
    emit({ reply: cmd, ok: false, error: err.message });
  }
}

async function main() {
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 760 },
  });
  // After playwright's own exit handler (which kills the browser's process group).
  process.on('exit', removeProfile);
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on('response', (res) => {
    if (res.status() < 400) return;
    httpErrors[res.status()] = (httpErrors[res.status()] ?? 0) + 1;
    if (shown++ < 200) emit({ http: res.status(), url: res.url(), at_ms: Date.now() - started });
  });
  page.on('requestfailed', () => { failedRequests += 1; });
  page.on('pageerror', (err) => emit({ pageerror: err.message, at_ms: Date.now() - started }));
  await page.goto(url);
  await page.waitForFunction(() => window.hlsmark, null, { timeout: 30000 });
  emit({ event: 'loaded', at_ms: Date.now() - started });

  // Commands one at a time, in order; sampling goes on meanwhile.
  let queue = Promise.resolve();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => { queue = queue.then(() => command(page, line)); });
  rl.on('close', () => { queue.then(() => stop(0)); });

  while (!stopping) {
    const t0 = Date.now();
    try {
      const s = await sample(page);
      emit({ sample: { at_ms: t0 - started, ...s, http_errors: httpErrors, failed_requests: failedRequests } });
    } catch (err) {
      if (stopping) break;
      emit({ fatal: `sampling the page: ${err.message}` });
      await stop(1);
    }
    await sleep(Math.max(0, 250 - (Date.now() - t0)));
  }
}

main().catch(async (err) => {
  emit({ fatal: err.message });
  await stop(1);
});
