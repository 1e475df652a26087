// Browser tests of the player page against the real stack (see harness.mjs), in headless Debian
// Chromium. The tests share one page and run in order: each step starts where the previous left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import { launchBrowser, sleep, startStack, stopStack, waitUntil } from './harness.mjs';

const SUITE_START = Date.now();
/** How long test 2 watches the LL stream (the issue asks for 30 s; the second stack runs it shorter). */
const LL_SECONDS = Number(process.env.HLSMARK_TEST_LL_SECONDS ?? 30);
/** Media requests the page made, by kind (LL-HLS parts, whole segments, blocking playlist reloads). */
const requests = { parts: 0, segments: 0, blocking: 0 };
let stack;
let browser;
let page;
const problems = [];
/** Older servers answer 404 to GET /streams; the page falls back to ?stream= and that is no error. */
let noStreamsRoute = false;
const isStreams404 = (url, status) => noStreamsRoute && status === 404 && new URL(url).pathname === '/streams';

/** Pixels of the block in the top-left corner (the generator's event flag) of the frame on screen. */
async function cornerPixel() {
  return page.evaluate(() => {
    const video = window.hlsmark.player.tech(true).el();
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const d = ctx.getImageData(2, 2, 4, 4).data;
    const avg = [0, 1, 2].map((k) => {
      let s = 0;
      for (let i = k; i < d.length; i += 4) s += d[i];
      return Math.round(s / (d.length / 4));
    });
    const all = ctx.getImageData(0, 0, c.width, c.height).data;
    let luma = 0;
    for (let i = 0; i < all.length; i += 4) luma += 0.299 * all[i] + 0.587 * all[i + 1] + 0.114 * all[i + 2];
    return { rgb: avg, meanLuma: luma / (all.length / 4), width: c.width, height: c.height, time: video.currentTime };
  });
}

/** Children of `pid` named `comm`, from /proc (no procps needed). */
function childPids(pid, comm) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && name === comm) out.push(Number(d));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

const isMint = ([r, g, b]) => r < 60 && g > 200 && b > 200;

function state() {
  return page.evaluate(() => {
    const { state, player } = window.hlsmark;
    const sk = player.seekable();
    return {
      mode: state.mode,
      ready: state.ready,
      joinSeq: state.joinSeq,
      liveFirstSeq: state.liveFirstSeq,
      feed: state.feed,
      lastSeek: state.lastSeek,
      seekTrace: state.seekTrace,
      errors: state.errors,
      currentTime: player.currentTime(),
      paused: player.paused(),
      seeking: player.seeking(),
      src: player.currentSrc(),
      seekable: sk.length ? [sk.start(0), sk.end(sk.length - 1)] : null,
      liveCurrentTime: player.liveTracker?.liveCurrentTime(),
      goLiveHidden: document.getElementById('go-live').hidden,
      goLiveText: document.getElementById('go-live').textContent,
    };
  });
}

/** Waits for `pred(state)`; a timeout reports the last state seen. */
async function waitState(what, pred, timeoutMs) {
  let last;
  try {
    await waitUntil(what, async () => {
      last = await state();
      return pred(last);
    }, timeoutMs);
    return last;
  } catch (err) {
    throw new Error(`${err.message}\nlast state: ${JSON.stringify(last, null, 1)}`);
  }
}

async function markersInPage() {
  return page.evaluate(() => [...window.hlsmark.markers.values()].map((m) => ({
    ...m,
    client: window.hlsmark.clientOf(m),
    archived: window.hlsmark.isArchived(m.id),
  })));
}

async function api(pathAndQuery, init) {
  const res = await fetch(`${stack.url}${pathAndQuery}`, init);
  const body = await res.text();
  return { status: res.status, body: body ? JSON.parse(body) : null };
}

before(async () => {
  stack = await startStack({ liveWindow: 8, fps: process.env.HLSMARK_TEST_FPS ?? 30 });
  noStreamsRoute = (await fetch(`${stack.url}/streams`)).status === 404;
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (/Failed to load resource/.test(msg.text()) && isStreams404(msg.location()?.url ?? 'http://x/', 404)) return;
    problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    // Switching sources (live <-> archive) cancels the engine's in-flight downloads (and hls.js aborts a blocking reload it no longer needs): that is not a failure.
    if (why === 'net::ERR_ABORTED' && /\/hls\//.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (/\.p\d+\.m4s$/.test(u.pathname)) requests.parts += 1;
    else if (/-\d+\.m4s$/.test(u.pathname)) requests.segments += 1;
    else if (u.pathname.endsWith('.m3u8') && u.searchParams.has('_HLS_msn')) requests.blocking += 1;
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !isStreams404(res.url(), res.status())) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  await page.goto(`${stack.url}/?stream=live`);
  await page.waitForFunction(() => window.hlsmark, null, { timeout: 10000 }).catch((err) => {
    throw new Error(`the page did not start: ${err.message}\n${problems.join('\n')}`);
  });
});

after(async () => {
  try {
    await page?.close();
    await browser?.close();
  } finally {
    stopStack();
    console.log(`# browser suite took ${((Date.now() - SUITE_START) / 1000).toFixed(1)} s`);
  }
});

describe('player page', () => {
  test('1. plays live: currentTime advances and the frame is not black', async () => {
    await waitUntil('the page to load markers and the player to start', async () => {
      const s = await state();
      return s.ready && s.currentTime > 0 && !s.paused;
    }, 20000);
    const a = await state();
    await sleep(1500);
    const b = await state();
    assert.ok(b.currentTime - a.currentTime > 0.8, `currentTime advanced ${a.currentTime} -> ${b.currentTime}`);
    const px = await cornerPixel();
    assert.equal(px.width, 320);
    assert.equal(px.height, 180);
    assert.ok(px.meanLuma > 30, `frame is not black (mean luma ${px.meanLuma.toFixed(1)})`);
    assert.match(b.src, /\/hls\/live\/index\.m3u8$/);
    assert.equal(b.feed, 'open', 'the SSE marker feed is open');
  });

  test(`2. plays the LL-HLS stream for ${LL_SECONDS} s without a stall, latency shown and below 2 s`, async () => {
    const playlist = await (await fetch(`${stack.url}/hls/live/index.m3u8`)).text();
    assert.match(playlist, /#EXT-X-PART:/, 'the server serves LL-HLS parts');
    assert.match(playlist, /CAN-BLOCK-RELOAD=YES/);
    const s0 = await page.evaluate(() => ({ t: window.hlsmark.player.currentTime() }));
    const started = Date.now();
    const r0 = { ...requests };
    const samples = [];
    const labels = new Set();
    let polls = 0;
    while (Date.now() - started < LL_SECONDS * 1000) {
      await sleep(500);
      polls += 1;
      const x = await page.evaluate(() => ({
        latency: window.hlsmark.latency(),
        label: document.getElementById('latency').hidden ? null : document.getElementById('latency').textContent,
        paused: window.hlsmark.player.paused(),
      }));
      assert.ok(!x.paused, 'still playing');
      if (x.latency !== null) samples.push(x.latency);
      labels.add(x.label);
    }
    const s1 = await page.evaluate(() => ({ ...window.hlsmark.state.stalls, t: window.hlsmark.player.currentTime(),
      parts: window.hlsmark.engine()?.levels?.[0]?.details?.partList?.length ?? 0,
      canBlockReload: window.hlsmark.engine()?.levels?.[0]?.details?.canBlockReload }));
    const played = s1.t - s0.t;
    const sorted = [...samples].sort((a, b) => a - b);
    const p = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    console.log(`# LL ${LL_SECONDS} s: played ${played.toFixed(1)} s, latency p50 ${p(0.5)?.toFixed(3)} s p95 ${p(0.95)?.toFixed(3)} s max ${sorted.at(-1)?.toFixed(3)} s over ${samples.length} samples; `
      + `requests: ${requests.parts - r0.parts} parts, ${requests.segments - r0.segments} segments, ${requests.blocking - r0.blocking} blocking reloads`);
    // A stall names the machine's load: on a starved machine the source (ffmpeg) itself runs late.
    const log = `${JSON.stringify(s1.log.slice(-6).map((e) => ({ ...e, at: (e.at - started) / 1000 })))}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`;
    // A stall is a wait a viewer can see: the picture stops for 100 ms (3 frames) or more, or does
    // not move again. The page times each stall once, from its first `waiting` or hls.js report
    // (hls.js reports BUFFER_STALLED_ERROR at once for any wait) until the picture moves; shorter
    // stalls are printed, not failed.
    const waits = s1.waits.filter((e) => e.at >= started);
    const visible = waits.filter((e) => e.ms === undefined || e.ms >= 100);
    if (waits.length) console.log(`# stalls: ${waits.map((e) => `${e.ms === undefined ? 'ongoing' : `${e.ms} ms`} (${e.reports.join(', ')})`).join('; ')}`);
    assert.equal(visible.length, 0, `no stall (waiting >= 100 ms) while playing: ${JSON.stringify(visible)}; ${log}`);
    assert.ok(played > LL_SECONDS - 1.5, `played ${played.toFixed(2)} s of media in ${LL_SECONDS} s`);
    assert.ok(s1.canBlockReload && s1.parts > 0, `hls.js sees the LL playlist (${s1.parts} parts, blocking reload ${s1.canBlockReload})`);
    assert.ok(requests.parts - r0.parts >= LL_SECONDS * 2, `the page loads parts (${requests.parts - r0.parts})`);
    assert.ok(requests.blocking - r0.blocking >= LL_SECONDS * 2, `the page uses blocking playlist reloads (${requests.blocking - r0.blocking})`);
    // (every poll but the first two: a loaded machine makes fewer than two polls a second)
    assert.ok(polls >= LL_SECONDS && samples.length >= polls - 2, `latency measured (${samples.length} samples of ${polls} polls)`);
    assert.ok(p(0.5) < 2 && sorted.at(-1) < 2, `latency below 2 s: p50 ${p(0.5)} max ${sorted.at(-1)}`);
    assert.ok(sorted[0] > 0, `latency is positive (${sorted[0]}): the PDT of the frame on screen is in the past`);
    for (const l of labels) assert.match(l ?? 'hidden', /^Latency \d+\.\d\d s$/, 'the latency label is shown');
  });

  test('3. a marker created through POST /markers shows on the timeline and in the table live, without a reload', async () => {
    const hls90k = await page.evaluate(() => window.hlsmark.hlsNow());
    assert.ok(Number.isFinite(hls90k), 'the page knows the HLS time on screen');
    const label = `browser test ${Date.now()}`;
    const t0 = Date.now();
    const res = await api('/markers', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ label, kind: 'manual', hls: hls90k / 90000 }),
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.id;
    // The feed brings it without a reload. How fast is printed (typically 150-450 ms here) and
    // benchmarked (scripts/bench-scale.sh, marker -> SSE); the test fails only past 5 s, as a
    // shared 2-core CI machine once took 1.9 s.
    await page.waitForSelector(`#markers tr[data-id="${id}"]`, { timeout: 5000 });
    const rowMs = Date.now() - t0;
    await page.waitForFunction((x) => window.hlsmark.timeline.tickX(x) !== null, id, { timeout: Math.max(100, 5000 - rowMs), polling: 50 });
    const took = Date.now() - t0;
    assert.ok(took <= 5000, `took ${took} ms`);
    const row = page.locator(`#markers tr[data-id="${id}"]`);
    assert.match(await row.textContent(), new RegExp(label));
    assert.match(await row.getAttribute('class'), /hm-new/, 'the new row is highlighted');
    console.log(`# POST -> table in ${rowMs} ms, bar + table in ${took} ms`);
  });

  test('4. clicking a generator marker shows the mint frame; one frame earlier is not mint', async () => {
    // A generator marker well inside the seekable window (clickable on the bar).
    const pick = async () => {
      const s = await state();
      const all = await markersInPage();
      // Not one whose tick sits under another marker's (test 2 posts at the frame on screen,
      // which can be a generator marker's frame): the other button would take the click.
      const clear = (m) => all.every((o) => o.id === m.id || o.client === null || Math.abs(o.client - m.client) > 0.5);
      const list = all.filter((m) => m.kind !== 'manual' && !m.archived && m.client !== null
        && m.client > s.seekable[0] + 0.5 && m.client < s.currentTime - 0.5 && clear(m));
      return list.sort((x, y) => y.hls_90k - x.hls_90k)[0];
    };
    const m = await waitUntil('a generator marker inside the seekable window', pick, 20000, 250);
    const frame = await page.evaluate(() => window.hlsmark.frameTicks());

    // The server's CLIENT conversion for the page's join sequence agrees with the page's.
    const s0 = await state();
    assert.ok(Number.isInteger(s0.joinSeq), `the player's time zero is a segment start (join sequence ${s0.joinSeq})`);
    const q = new URLSearchParams({ stream: 'live', from: String(m.hls - 0.001), to: String(m.hls + 0.001), seq: String(s0.joinSeq) });
    const server = await api(`/markers?${q}`);
    const sm = server.body.markers.find((x) => x.id === m.id);
    assert.ok(sm, 'the server returns the marker');
    assert.ok(Math.abs(sm.client - m.client) < 1 / 90000 + 1e-9, `server client ${sm.client} = page client ${m.client}`);

    // Its tick on the timeline (the whole retention, following live): painted, then clicked.
    const probe = await page.evaluate((id) => window.hlsmark.timeline.probe(id), m.id);
    assert.ok(probe, 'the marker has a tick on the timeline');
    if (!probe.crowded) assert.notEqual(probe.pixel, 'rgb(42, 52, 64)', `the tick is painted (${probe.pixel})`);
    const box = await page.locator('.hm-tl-track').boundingBox();
    const x = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    await page.mouse.click(box.x + x, box.y + box.height / 2);
    await waitUntil('the seek to the marker', async () => {
      const s = await state();
      return s.lastSeek && s.lastSeek.hls_90k === m.hls_90k && s.paused;
    }, 15000).catch(async (err) => {
      throw new Error(`${err.message}\n${JSON.stringify({ marker: m, state: await state() }, null, 1)}`);
    });
    const at = await cornerPixel();
    assert.ok(isMint(at.rgb), `frame at marker ${m.label} (hls ${m.hls}) is mint: rgb ${at.rgb} at ${at.time}`);

    await page.evaluate(([h]) => window.hlsmark.seekToHls(h), [m.hls_90k - frame]);
    const before1 = await cornerPixel();
    assert.ok(!isMint(before1.rgb), `one frame earlier is not mint: rgb ${before1.rgb} at ${before1.time}`);

    // Keyboard: focus the row and press Enter: back on the mint frame.
    await page.focus(`#markers tr[data-id="${m.id}"]`);
    await page.keyboard.press('Enter');
    // The seek lands on the marker's frame; on a slow machine the marker may have slid out of the
    // short live window meanwhile, and the page then plays it from the archive (another clock):
    // so the landing is checked on the seek's own target, and the picture below.
    await waitUntil('the keyboard seek', async () => {
      const s = await state();
      return s.lastSeek && s.lastSeek.hls_90k === m.hls_90k && !s.seeking
        && Math.abs(s.currentTime - s.lastSeek.target) < 1e-3;
    }, 8000).catch(async (err) => {
      const now = await page.evaluate((id) => ({ client: window.hlsmark.clientOf(window.hlsmark.markers.get(id)), archived: window.hlsmark.isArchived(id) }), m.id);
      throw new Error(`${err.message}\n${JSON.stringify({ marker: m, now, state: await state() }, null, 1)}`);
    });
    await sleep(100);
    const again = await cornerPixel();
    assert.ok(isMint(again.rgb), `Enter on the row shows the mint frame again: rgb ${again.rgb}`);
  });

  test('5. seek back, then "go live" returns to the live edge', async () => {
    // To the middle of the live window: its start can slide away before a loaded machine has
    // fetched it, and hls.js then rightly jumps back to the live point.
    await page.evaluate(() => {
      const p = window.hlsmark.player;
      const s = p.seekable();
      p.currentTime(Math.max(s.start(0) + 0.5, s.end(0) - 5));
      return p.play();
    });
    await page.waitForSelector('#go-live:not([hidden])', { timeout: 10000 });
    const behind = await state();
    assert.ok(behind.liveCurrentTime - behind.currentTime > 2, `behind live by ${behind.liveCurrentTime - behind.currentTime}`);
    await page.click('#go-live');
    const edge = await waitState('the live edge', (s) => !s.paused && !s.seeking && s.liveCurrentTime - s.currentTime < 3.5 && s.goLiveHidden, 10000);
    // And it keeps playing there (a seek that never lands would also report the target time).
    await waitState('playback at the live edge', (s) => !s.seeking && s.currentTime > edge.currentTime + 0.5
      && s.liveCurrentTime - s.currentTime < 3.5, 5000);
  });

  test('6. a marker older than the live window: its tick lands on its frame in the same player, no visible switch; it plays on; Go live returns', async () => {
    const m = await waitUntil('a generator marker that left the live window', async () => {
      const list = (await markersInPage()).filter((x) => x.kind !== 'manual' && x.archived);
      return list.sort((x, y) => y.hls_90k - x.hls_90k)[0];
    }, 30000, 500);
    // What must not change: the player element, the timeline, the rows.
    const before1 = await page.evaluate(() => {
      const video = window.hlsmark.player.tech(true).el();
      video.dataset.same = 'yes';
      return { rows: document.querySelectorAll('#markers tbody tr').length, view: window.hlsmark.timeline.view() };
    });
    const box = await page.locator('.hm-tl-track').boundingBox();
    // The tick of the marker, alone within 0.5 s on the bar (another tick would take the click).
    await page.evaluate((id) => {
      const t = window.hlsmark.timeline;
      const h = window.hlsmark.markers.get(id).hls_90k;
      t.zoomTo(h - 10 * 90000, h + 10 * 90000);
      t.draw();
    }, m.id);
    const x = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    assert.ok(x !== null, 'the archived marker has a tick on the timeline');
    await page.mouse.click(box.x + x, box.y + box.height / 2);
    const s = await waitState('the seek before the live window', (st) => st.paused && !st.seeking && st.lastSeek
      && st.lastSeek.hls_90k === m.hls_90k && Math.abs(st.currentTime - st.lastSeek.target) < 1e-3, 15000);
    // Under the hood a VOD range plays; nothing on the page says so.
    assert.match(s.src, /\/hls\/live\/vod\.m3u8\?from=/);
    const ui = await page.evaluate(() => ({
      same: window.hlsmark.player.tech(true).el().dataset.same,
      videos: document.querySelectorAll('video').length,
      position: document.getElementById('position').textContent,
      rows: document.querySelectorAll('#markers tbody tr').length,
      timeline: !!document.querySelector('.hm-tl-track'),
    }));
    assert.equal(ui.same, 'yes', 'the same video element plays');
    assert.equal(ui.videos, 1, 'one player');
    assert.doesNotMatch(ui.position, /archive/i, `no mode label: ${ui.position}`);
    assert.match(ui.position, /behind live/);
    assert.ok(ui.rows >= before1.rows, 'the marker list stays');
    assert.equal(s.goLiveHidden, false, 'Go live is one click away');
    assert.match(s.goLiveText, /^Go live/);
    const at = await cornerPixel();
    assert.ok(isMint(at.rgb), `the marker's frame is mint: rgb ${at.rgb} at ${at.time}\n${JSON.stringify({ m, s })}`);
    // One frame earlier (the ',' key): not mint.
    const frame = await page.evaluate(() => window.hlsmark.frameTicks());
    await page.keyboard.press(',');
    await waitState('one frame back', (st) => st.lastSeek && st.lastSeek.hls_90k === m.hls_90k - frame && !st.seeking, 10000);
    assert.ok(!isMint((await cornerPixel()).rgb), 'one frame earlier is not mint');
    // It plays on, and the position moves on the one timeline.
    const pos0 = await page.evaluate(() => window.hlsmark.timeline.lastPos);
    await page.evaluate(() => window.hlsmark.player.play());
    const t1 = (await state()).currentTime;
    await waitUntil('playback from there', async () => (await state()).currentTime > t1 + 0.5, 5000);
    await waitUntil('the position indicator to move on', () => page.evaluate((p) => window.hlsmark.timeline.lastPos > p + 45000, pos0), 5000, 100);
    await page.click('#go-live');
    await waitUntil('live again', async () => {
      const st = await state();
      return /index\.m3u8$/.test(st.src) && !st.paused && st.currentTime > 0 && st.goLiveHidden;
    }, 15000);
    await page.evaluate(() => window.hlsmark.timeline.showAll());
  });

  test('7. after an encoder restart (new epoch, discontinuity) a marker is still frame-exact', { skip: !!process.env.HLSMARK_TEST_URL }, async () => {
    const before = (await api('/timeline?stream=live')).body.epochs.length;
    const ffmpeg = childPids(stack.generator.pid, 'ffmpeg')[0];
    assert.ok(ffmpeg, 'the generator has an ffmpeg child');
    process.kill(Number(ffmpeg), 'SIGKILL');
    const tl = await waitUntil('a new epoch', async () => {
      const b = (await api('/timeline?stream=live')).body;
      return b.epochs.length > before && b;
    }, 15000, 250);
    const epoch = tl.epochs[tl.epochs.length - 1];
    // The page learns of the epoch from the playlist (a new discontinuity) and re-reads /timeline.
    await waitUntil('the page to know the new epoch', () => page.evaluate((n) => window.hlsmark.state.timeline.epochs.length >= n, tl.epochs.length), 15000, 250);
    const m = await waitUntil('a generator marker of the new epoch inside the seekable window', async () => {
      const s = await state();
      const list = (await markersInPage()).filter((x) => x.kind !== 'manual' && x.hls_90k >= epoch.hls_start_90k
        && x.client !== null && x.client > s.seekable[0] + 0.5 && x.client < s.currentTime - 0.5);
      return list[0];
    }, 30000, 250);
    const r = await page.evaluate((id) => window.hlsmark.seekToMarker(id), m.id);
    const at = await cornerPixel();
    assert.ok(isMint(at.rgb), `frame at ${m.label} after the restart is mint: rgb ${at.rgb} (${JSON.stringify(r)})`);
    const frame = await page.evaluate(() => window.hlsmark.frameTicks());
    // The frame before the marker's: one frame earlier, unless the marker is the new epoch's first
    // frame (an event still active at the restart is re-anchored there); then it is the previous
    // epoch's last frame: the ticks between the epochs are a gap with no video.
    const prevEpoch = tl.epochs[tl.epochs.length - 2];
    const frameBefore = m.hls_90k === epoch.hls_start_90k && prevEpoch.hls_end_90k !== null
      ? prevEpoch.hls_end_90k - frame
      : m.hls_90k - frame;
    await page.evaluate(([h]) => window.hlsmark.seekToHls(h), [frameBefore]);
    const prev = await cornerPixel();
    const why = async () => JSON.stringify({ marker: m, epochs: tl.epochs, ...(await page.evaluate(() => ({
      zeros: [...window.hlsmark.state.zeros], offsets: [...window.hlsmark.state.offsets], trace: window.hlsmark.state.seekTrace,
      clientOf: window.hlsmark.clientOf(window.hlsmark.state.lastSeek?.hls_90k ?? 0), lastSeek: window.hlsmark.state.lastSeek,
    }))) });
    assert.ok(!isMint(prev.rgb), `one frame earlier is not mint: rgb ${prev.rgb} at ${prev.time}\n${await why()}`);
    const zeros = await page.evaluate(() => JSON.stringify([...window.hlsmark.state.zeros]));
    console.log(`# epochs ${JSON.stringify(tl.epochs.map((e) => [e.index, e.first_seq, e.hls_start, e.hls_end]))}, page zeros per epoch (ticks) ${zeros}`);
  });

  test('8. accessible names and keyboard reach; no console errors or failed requests', async () => {
    const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, [tabindex="0"]')]
      .filter((el) => el.offsetParent !== null || el.classList.contains('hm-bar-marker'))
      .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim() || el.title))
      .map((el) => el.outerHTML.slice(0, 120)));
    assert.deepEqual(unnamed, [], 'every control and row has an accessible name');
    const rows = await page.$$eval('#markers tbody tr', (trs) => trs.map((tr) => tr.tabIndex));
    assert.ok(rows.length > 0 && rows.every((t) => t === 0), 'every row is keyboard-focusable');
    assert.deepEqual(problems, []);
  });
});
