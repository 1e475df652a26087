// Browser test of the timeline over a long history (issue 16: "In real Chromium: seek 30 minutes
// back on the timeline by clicking a tick, the frame shown is the marker's frame"). A 35 min file
// made by ffmpeg (mint corner on chosen frames) is imported into stream `live`, unpaced and
// backdated so it ends just before now (`hlsmark run --pace false --start-utc`), then the same
// stream continues live with the generator (a new epoch after a gap). The page's timeline spans
// both; a click on the tick of a marker 30 min back lands on its mint frame, one frame earlier is
// not mint. Skipped (with the reason) on a binary without the import flags.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  launchBrowser, makeClip, runTakesImport, startImportThenLive, stopStack, tempDir, waitUntil,
} from './harness.mjs';

const CLIP_FPS = 10;
const CLIP_SECONDS = 35 * 60;
/** Mint spans (clip frames, inclusive): 30 min, 25 min and 15 min before the clip's end. */
const MINT = [[3000, 3009], [6000, 6009], [12000, 12009]];
const canImport = !process.env.HLSMARK_TEST_URL && runTakesImport();
const why = process.env.HLSMARK_TEST_URL ? 'needs its own server' : 'this hlsmark has no `run --pace false --start-utc` (import)';

let stack;
let browser;
let page;
const problems = [];
const posted = [];

const isMint = ([r, g, b]) => r < 60 && g > 200 && b > 200;

async function cornerPixel() {
  return page.evaluate(() => {
    const video = window.hlsmark.player.tech(true).el();
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const d = ctx.getImageData(2, 2, 4, 4).data;
    return [0, 1, 2].map((k) => {
      let s = 0;
      for (let i = k; i < d.length; i += 4) s += d[i];
      return Math.round(s / (d.length / 4));
    });
  });
}

async function api(pathAndQuery, init) {
  const res = await fetch(`${stack.url}${pathAndQuery}`, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  if (!canImport) return;
  const dir = tempDir('hlsmark-clip-');
  const t0 = Date.now();
  const clip = makeClip(path.join(dir, 'history.mp4'), { fps: CLIP_FPS, frames: CLIP_SECONDS * CLIP_FPS, mint: MINT });
  const made = Date.now() - t0;
  // Ends 20 s before now (an import may not end in the future).
  const startUtc = new Date(Date.now() - (CLIP_SECONDS + 20) * 1000).toISOString();
  stack = await startImportThenLive({ clip, startUtc, liveWindow: 8 });
  console.log(`# clip of ${CLIP_SECONDS / 60} min made in ${(made / 1000).toFixed(1)} s, imported in ${(stack.importedMs / 1000).toFixed(1)} s`);
  // The live epoch has a few segments of its own.
  const tl = await waitUntil('the live epoch after the import', async () => {
    const b = (await api('/timeline?stream=live')).body;
    const live = b?.epochs?.[1];
    return live && b.live_edge_90k > live.hls_start_90k + 4 * 90000 ? b : null;
  }, 60000, 500);
  // One marker per mint span, at its first frame (HLS time of clip frame n: epoch 0 start + n / fps).
  const e0 = tl.epochs[0];
  const sev = ['critical', 'warning', 'info'];
  for (const [i, [first]] of MINT.entries()) {
    const hls = e0.hls_start_90k / 90000 + first / CLIP_FPS;
    const res = await api('/markers?stream=live', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ label: `history ${first}`, kind: 'history', hls, severity: sev[i] }),
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    posted.push(res.body);
  }
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const e = req.failure()?.errorText ?? '';
    if (e === 'net::ERR_ABORTED' && /\/hls\/|\/thumbs\//.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${e}`);
  });
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`); });
  await page.goto(`${stack.url}/?stream=live`);
  await waitUntil('the page to play live and load the markers', () => page.evaluate((ids) => {
    const h = window.hlsmark;
    return h?.state.ready && h.player.currentTime() > 0 && !h.player.paused() && ids.every((id) => h.markers.has(id));
  }, posted.map((m) => m.id)), 30000, 200);
});

after(async () => {
  try {
    await page?.close();
    await browser?.close();
  } finally {
    stopStack();
  }
});

describe('timeline over 35 minutes of history', { skip: canImport ? false : why }, () => {
  test('1. the timeline spans the import and live, with the gap between them', async () => {
    const v = await page.evaluate(() => {
      const t = window.hlsmark.timeline;
      t.showAll();
      t.draw();
      return t.view();
    });
    const spanMin = (v.to - v.from) / 90000 / 60;
    assert.ok(spanMin >= 35, `the whole retention is in view (${spanMin.toFixed(1)} min)`);
    assert.ok(v.gaps.length >= 1, `the time between the import's end and live is a gap: ${JSON.stringify(v.gapsUtc)}`);
  });

  test('2. a click on the tick of a marker 30 min back shows its frame (mint); one frame earlier is not', async () => {
    const m = posted[0];
    const back = (Date.now() - Date.parse(m.utc)) / 60000;
    assert.ok(back >= 30, `the marker is ${back.toFixed(1)} min back`);
    // The element on screen before the seek: the same one must show the archive.
    await page.evaluate(() => { window.hlsmark.player.tech(true).el().dataset.same = 'yes'; });
    const box = await page.locator('.hm-tl-track').boundingBox();
    const x = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    assert.ok(x !== null, 'the marker has a tick on the whole-retention timeline');
    await page.mouse.click(box.x + x, box.y + box.height / 2);
    const landed = await waitUntil('the seek 30 min back', () => page.evaluate((h) => {
      const { state, player } = window.hlsmark;
      const s = state.lastSeek;
      return s && s.hls_90k === h && player.paused() && !player.seeking() && Math.abs(player.currentTime() - s.target) < 1e-3
        ? { ...s, src: player.currentSrc(), same: player.tech(true).el().dataset.same, position: document.getElementById('position').textContent }
        : null;
    }, m.hls_90k), 30000, 100).catch(async (err) => {
      const st = await page.evaluate(() => ({ lastSeek: window.hlsmark.state.lastSeek, trace: window.hlsmark.state.seekTrace, mode: window.hlsmark.state.mode }));
      throw new Error(`${err.message}: ${JSON.stringify(st)}`);
    });
    assert.match(landed.src, /\/hls\/live\/vod\.m3u8\?from=/, 'a VOD range under the hood');
    assert.equal(landed.same, 'yes', 'in the same video element');
    assert.match(landed.position, /behind live/);
    const at = await cornerPixel();
    assert.ok(isMint(at), `the marker's frame, 30 min back, is mint: ${at}`);
    // One frame earlier (the ',' key): not mint.
    const frame = await page.evaluate(() => window.hlsmark.state.timeline.frameTicks(window.hlsmark.state.timeline.epochs[0]));
    assert.equal(frame, 90000 / CLIP_FPS, 'the frame of the imported epoch');
    await page.keyboard.press(',');
    await waitUntil('one frame back', () => page.evaluate((h) => {
      const s = window.hlsmark.state.lastSeek;
      return s && s.hls_90k === h && !window.hlsmark.player.seeking();
    }, m.hls_90k - frame), 15000, 100);
    const prev = await cornerPixel();
    assert.ok(!isMint(prev), `one frame earlier is not mint: ${prev}`);
    // Go live is one click away and returns to the live playlist.
    await page.click('#go-live');
    await waitUntil('live again', () => page.evaluate(() => /index\.m3u8$/.test(window.hlsmark.player.currentSrc())
      && !window.hlsmark.player.paused() && document.getElementById('go-live').hidden), 20000, 200);
  });

  test('3. no console errors, failed requests or HTTP errors', () => {
    assert.deepEqual(problems, []);
  });
});
