// Browser tests of the player page against the real stack (see harness.mjs), in headless Debian
// Chromium. The tests share one page and run in order: each step starts where the previous left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fs from 'node:fs';
import { launchBrowser, sleep, startStack, stopStack, waitUntil } from './harness.mjs';

const SUITE_START = Date.now();
let stack;
let browser;
let page;
const problems = [];

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
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    // Switching sources (live <-> archive) cancels VHS's in-flight downloads: that is not a failure.
    if (why === 'net::ERR_ABORTED' && /\/hls\//.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
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

  test('2. a marker created through POST /markers shows on the bar and in the table within 2 s', async () => {
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
    await page.waitForSelector(`#markers tr[data-id="${id}"]`, { timeout: 2000 });
    await page.waitForSelector(`.hm-bar-marker[data-id="${id}"]:not([hidden])`, { timeout: Math.max(100, 2000 - (Date.now() - t0)) });
    const took = Date.now() - t0;
    assert.ok(took <= 2000, `took ${took} ms`);
    const row = page.locator(`#markers tr[data-id="${id}"]`);
    assert.match(await row.textContent(), new RegExp(label));
    assert.match(await row.getAttribute('class'), /hm-new/, 'the new row is highlighted');
    console.log(`# POST -> bar + table in ${took} ms`);
  });

  test('3. clicking a generator marker shows the mint frame; one frame earlier is not mint', async () => {
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

    const bg = await page.$eval(`.hm-bar-marker[data-id="${m.id}"]`, (el) => getComputedStyle(el).backgroundColor);
    assert.notEqual(bg, 'rgba(0, 0, 0, 0)', 'the bar marker is painted (video.js resets button backgrounds)');
    await page.click(`.hm-bar-marker[data-id="${m.id}"]`);
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
    await waitUntil('the keyboard seek', async () => {
      const s = await state();
      return Math.abs(s.currentTime - (m.client + frame / 90000 / 2)) < 1e-3;
    }, 8000);
    await sleep(100);
    const again = await cornerPixel();
    assert.ok(isMint(again.rgb), `Enter on the row shows the mint frame again: rgb ${again.rgb}`);
  });

  test('4. seek back, then "go live" returns to the live edge', async () => {
    await page.evaluate(() => {
      const p = window.hlsmark.player;
      p.currentTime(p.seekable().start(0) + 0.5);
      return p.play();
    });
    await page.waitForSelector('#go-live:not([hidden])', { timeout: 5000 });
    const behind = await state();
    assert.ok(behind.liveCurrentTime - behind.currentTime > 2, `behind live by ${behind.liveCurrentTime - behind.currentTime}`);
    await page.click('#go-live');
    const edge = await waitState('the live edge', (s) => !s.paused && !s.seeking && s.liveCurrentTime - s.currentTime < 3.5 && s.goLiveHidden, 10000);
    // And it keeps playing there (a seek that never lands would also report the target time).
    await waitState('playback at the live edge', (s) => !s.seeking && s.currentTime > edge.currentTime + 0.5
      && s.liveCurrentTime - s.currentTime < 3.5, 5000);
  });

  test('5. an archived marker plays from the VOD playlist, and "back to live" returns', async () => {
    const m = await waitUntil('a generator marker that left the live window', async () => {
      const list = (await markersInPage()).filter((x) => x.kind !== 'manual' && x.archived);
      return list.sort((x, y) => y.hls_90k - x.hls_90k)[0];
    }, 30000, 500);
    const row = page.locator(`#markers tr[data-id="${m.id}"]`);
    assert.match(await row.textContent(), /archived/);
    await row.click();
    const s = await waitState('the archive seek', (st) => st.mode === 'archive' && st.paused && st.lastSeek
      && st.lastSeek.hls_90k === m.hls_90k && st.lastSeek.mode === 'archive', 15000);
    assert.match(s.src, /\/hls\/live\/vod\.m3u8\?from=/);
    const at = await cornerPixel();
    assert.ok(isMint(at.rgb), `archived marker frame is mint: rgb ${at.rgb} at ${at.time}\n${JSON.stringify({ m, s })}`);
    const frame = await page.evaluate(() => window.hlsmark.frameTicks());
    await page.evaluate(([h]) => window.hlsmark.seekToHls(h), [m.hls_90k - frame]);
    assert.ok(!isMint((await cornerPixel()).rgb), 'one frame earlier is not mint in the archive either');
    // It plays.
    await page.evaluate(() => window.hlsmark.player.play());
    const t1 = (await state()).currentTime;
    await waitUntil('archive playback', async () => (await state()).currentTime > t1 + 0.5, 5000);
    assert.match((await state()).goLiveText, /back to live/i);
    await page.click('#go-live');
    await waitUntil('live again', async () => {
      const st = await state();
      return st.mode === 'live' && /index\.m3u8$/.test(st.src) && !st.paused && st.currentTime > 0;
    }, 15000);

  });

  test('6. after an encoder restart (new epoch, discontinuity) a marker is still frame-exact', { skip: !!process.env.HLSMARK_TEST_URL }, async () => {
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
    await page.evaluate(([h]) => window.hlsmark.seekToHls(h), [m.hls_90k - frame]);
    const prev = await cornerPixel();
    assert.ok(!isMint(prev.rgb), `one frame earlier is not mint: rgb ${prev.rgb}`);
    const zeros = await page.evaluate(() => JSON.stringify([...window.hlsmark.state.zeros]));
    console.log(`# epochs ${JSON.stringify(tl.epochs.map((e) => [e.index, e.first_seq, e.hls_start, e.hls_end]))}, page zeros per epoch (ticks) ${zeros}`);
  });

  test('7. accessible names and keyboard reach; no console errors or failed requests', async () => {
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
