// Browser tests of the timeline under the player (issue 16) against the real stack (harness.mjs):
// coloured ticks painted on its canvas, the gap a source restart leaves, zoom to single frames and
// frame stepping on the exact frame, the pointer readout in local time and UTC, filters on the
// ticks. The browser runs in Asia/Kolkata (UTC+05:30), so local time and UTC differ visibly.
// The tests share one page and run in order.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, sleep, startStack, stopStack, waitUntil } from './harness.mjs';

const TZ = 'Asia/Kolkata';
const TZ_OFFSET_MS = (5 * 60 + 30) * 60000;
let stack;
let browser;
let page;
const problems = [];
const run = `tl${Date.now() % 100000}`;
const posted = {};

const isMint = ([r, g, b]) => r < 60 && g > 200 && b > 200;
const rgb = (hex) => `rgb(${[1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;

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

function post(list) {
  return api('/markers?stream=live', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
    body: JSON.stringify(list),
  });
}

/** Children of `pid` named `comm`, from /proc. */
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
      // gone meanwhile
    }
  }
  return out;
}

/** Zooms the timeline to [from, to) ticks and returns its view. */
function zoomTo(from, to) {
  return page.evaluate(([a, b]) => {
    const t = window.hlsmark.timeline;
    t.zoomTo(a, b);
    t.draw();
    return t.view();
  }, [from, to]);
}

/**
 * Zooms to [from, to) ticks once that view stays put: not the whole retention (a young stack's
 * retention shorter than the view), not against the live edge (a view there follows live and
 * slides under the pointer). Clamped at the retention's start is fixed too. Returns the view.
 */
async function zoomToFixed(from, to, what) {
  return waitUntil(`a fixed view of ${what}`, async () => {
    const v = await zoomTo(from, to);
    const end = await page.evaluate(() => window.hlsmark.timeline.wallRange()?.end);
    return !v.whole && !v.follow && end !== undefined && v.to < end ? v : null;
  }, 30000, 250);
}

/** The timeline track's box on the page. */
async function trackBox() {
  return page.locator('.hm-tl-track').boundingBox();
}

/** Waits for the last seek to land on `hls` (paused, not seeking). */
async function landedOn(hls, what) {
  return waitUntil(what, () => page.evaluate((h) => {
    const { state, player } = window.hlsmark;
    const s = state.lastSeek;
    return s && s.hls_90k === h && player.paused() && !player.seeking() && Math.abs(player.currentTime() - s.target) < 1e-3 ? s : null;
  }, hls), 20000, 100).catch(async (err) => {
    const st = await page.evaluate(() => ({ lastSeek: window.hlsmark.state.lastSeek, mode: window.hlsmark.state.mode, trace: window.hlsmark.state.seekTrace }));
    throw new Error(`${err.message}: ${JSON.stringify(st)}`);
  });
}

before(async () => {
  stack = await startStack({ liveWindow: 8, fps: process.env.HLSMARK_TEST_FPS ?? 30 });
  browser = await launchBrowser({ timezoneId: TZ });
  page = await browser.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    // Aborted by the page: media of a playlist it left, a hover tile, the marker feed it reopens
    // with a new filter.
    if (why === 'net::ERR_ABORTED' && /\/hls\/|\/thumbs\/|\/markers\/live\?/.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`); });
  await page.goto(`${stack.url}/?stream=live`);
  await waitUntil('the page to play and load markers', () => page.evaluate(() => {
    const h = window.hlsmark;
    return h && h.state.ready && h.player.currentTime() > 0 && h.hlsNow() !== null;
  }), 30000, 200);
});

after(async () => {
  try {
    await page?.close();
    await browser?.close();
  } finally {
    stopStack();
  }
});

describe('timeline', () => {
  test('1. ticks are painted in the marker colour, else the severity colour; critical wider', async () => {
    const now = await waitUntil('the playhead 4 s into the stream', () => page.evaluate(() => {
      const h = window.hlsmark.hlsNow();
      return h !== null && h > 4 * 90000 ? h : null;
    }), 20000, 200);
    const at = (k) => (now - k * 18000) / 90000;
    const list = [
      { name: 'info', label: `${run} person`, kind: 'detector', hls: at(1), severity: 'info' },
      { name: 'warning', label: `${run} car`, kind: 'detector', hls: at(2), severity: 'warning' },
      { name: 'critical', label: `${run} fire`, kind: 'alarm', hls: at(3), severity: 'critical' },
      { name: 'own', label: `${run} note`, kind: 'manual', hls: at(4), severity: 'info', color: '#00ff88' },
    ];
    const res = await post(list.map(({ name, ...m }) => m));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const saved = res.body.markers ?? res.body;
    for (const [i, m] of list.entries()) posted[m.name] = { ...m, id: saved[i].id, hls_90k: saved[i].hls_90k };
    await waitUntil('the four markers in the page', () => page.evaluate((ids) => ids.every((id) => window.hlsmark.markers.has(id)),
      Object.values(posted).map((m) => m.id)), 5000, 100);
    const hs = Object.values(posted).map((m) => m.hls_90k);
    await zoomTo(Math.min(...hs) - 45000, Math.max(...hs) + 45000);
    const want = { info: '#4ea1ff', warning: '#ffb020', critical: '#ff3355', own: '#00ff88' };
    const probes = {};
    for (const [name, hex] of Object.entries(want)) {
      const p = await page.evaluate((id) => window.hlsmark.timeline.probe(id), posted[name].id);
      assert.ok(p, `the tick of ${name} is drawn`);
      probes[name] = p;
      assert.equal(p.color, hex, `tick ${name} takes ${hex}`);
      // A generator marker on the same frame would be painted over it: then the pixel is not checked.
      if (!p.crowded) assert.equal(p.pixel, rgb(hex), `the canvas shows ${hex} at the tick of ${name}`);
    }
    assert.ok(probes.critical.width > probes.info.width, `the critical tick is wider (${probes.critical.width} > ${probes.info.width} px)`);
  });

  test('2. filters hide and show ticks (the same filter as the rows)', async () => {
    await page.click('#filter-sev-info');
    await page.click('#filter-sev-warning');
    const probe = () => page.evaluate((ids) => Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, window.hlsmark.timeline.probe(id)])),
      Object.fromEntries(Object.entries(posted).map(([k, m]) => [k, m.id])));
    const hidden = await waitUntil('only the critical tick', async () => {
      const p = await probe();
      return p.critical && !p.info && !p.warning && !p.own ? p : null;
    }, 3000, 50);
    // Nothing of the hidden ticks' colours is painted where they were.
    const infoX = await page.evaluate((id) => window.hlsmark.timeline.xOfHls(window.hlsmark.markers.get(id).hls_90k), posted.info.id);
    const px = await page.evaluate((x) => window.hlsmark.timeline.pixelAt(x), infoX);
    assert.notEqual(px, rgb('#4ea1ff'), 'the info tick is gone from the canvas');
    assert.equal(hidden.critical.pixel, rgb('#ff3355'));
    const generatorTicks = await page.evaluate(() => {
      const t = window.hlsmark.timeline;
      return [...window.hlsmark.markers.values()].filter((m) => m.kind !== 'alarm' && t.tickX(m.id) !== null).length;
    });
    assert.equal(generatorTicks, 0, 'no info tick of the generator is drawn either');
    await page.click('#filter-sev-info');
    await page.click('#filter-sev-warning');
    await waitUntil('all four ticks again', async () => {
      const p = await probe();
      return Object.values(p).every(Boolean);
    }, 3000, 50);
  });

  test('3. zoom to frame level with the wheel around a tick, step one frame with the keys: the mint corner starts exactly at the marker\'s frame', async () => {
    // A generator marker (its first frame is the first mint one), not the newest (its segment must be published).
    const m = await waitUntil('a generator marker 2-6 s behind the frame on screen', () => page.evaluate(() => {
      const h = window.hlsmark;
      const now = h.hlsNow();
      return [...h.markers.values()].filter((x) => x.kind !== 'manual' && x.kind !== 'detector' && x.kind !== 'alarm'
        && x.hls_90k < now - 2 * 90000 && x.hls_90k > now - 6 * 90000).sort((a, b) => b.hls_90k - a.hls_90k)[0] ?? null;
    }), 30000, 250);
    const frame = await page.evaluate(() => window.hlsmark.frameTicks());
    // Start from a 20 s view with the pointer on the tick, then wheel in until single frames show.
    // (ending before the live edge: a view that reaches it follows live and slides under the pointer)
    await zoomToFixed(m.hls_90k - 10 * 90000, m.hls_90k + 90000, 'the 11 s around the marker');
    const box = await trackBox();
    const x0 = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    assert.ok(x0 !== null, 'the tick is in view');
    await page.mouse.move(box.x + x0, box.y + box.height / 2);
    // The wall time under the pointer (the timeline's own hover position) after every notch.
    const underPointer = () => page.evaluate(() => {
      const t = window.hlsmark.timeline;
      return t.hoverX === null ? null : t.wallAtX(t.hoverX);
    });
    const u0 = await waitUntil('the pointer over the timeline', underPointer, 3000, 50);
    let view;
    const trail = [];
    for (let i = 0; i < 40; i++) {
      await page.mouse.wheel(0, -300);
      view = await page.evaluate(() => { window.hlsmark.timeline.draw(); return window.hlsmark.timeline.view(); });
      trail.push([view.from, view.to, await underPointer()]);
      if (view.frameLevel && (view.to - view.from) / frame < 40) break;
    }
    assert.ok(view.frameLevel, `frame level reached: ${JSON.stringify(view)}`);
    // Zoom is around the pointer: the time under it stays (to a pixel of the final view).
    const px = (view.to - view.from) / box.width;
    // (a wheel event's clientX is whole pixels, a pointer move's is not: the first notch may move
    // the anchor by under a pixel of the first view)
    const px0 = (20 * 90000 + 90000) / box.width;
    assert.ok(Math.abs(trail[0][2] - u0) <= px0, `the first notch zooms around the pointer: ${u0} -> ${trail[0][2]}`);
    for (const [, , u] of trail) assert.ok(Math.abs(u - trail[0][2]) <= px / 10, `the time under the pointer stays: ${trail[0][2]} -> ${u} (a pixel is ${px} ticks): ${JSON.stringify(trail)}`);
    const x1 = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    assert.ok(x1 !== null, 'the tick is still in view');
    assert.equal(await page.getAttribute('.hm-timeline', 'data-frame-level'), 'true');
    assert.match(await page.textContent('.hm-tl-span'), /frames shown/);

    // Click the tick: its frame, mint.
    await page.mouse.click(box.x + x1, box.y + box.height / 2);
    await landedOn(m.hls_90k, 'the click on the tick');
    assert.ok(isMint(await cornerPixel()), 'the marker\'s frame is mint');

    // Left on the focused timeline: exactly one frame earlier, not mint.
    await page.focus('.hm-tl-track');
    await page.keyboard.press('ArrowLeft');
    await landedOn(m.hls_90k - frame, 'one frame back (ArrowLeft)');
    const before1 = await cornerPixel();
    assert.ok(!isMint(before1), `one frame before the marker is not mint: ${before1}`);
    // '.' one frame forward: the mint corner appears exactly here.
    await page.keyboard.press('.');
    await landedOn(m.hls_90k, 'one frame forward (.)');
    const atM = await cornerPixel();
    assert.ok(isMint(atM), `the marker's frame after a step is mint: ${atM}`);
    // ',' back again, '.' twice: the event lasts on (the generator's events last 1 s).
    await page.keyboard.press(',');
    await landedOn(m.hls_90k - frame, 'one frame back (,)');
    assert.ok(!isMint(await cornerPixel()));
    await page.keyboard.press('.');
    await landedOn(m.hls_90k, 'forward again');
    await page.keyboard.press('ArrowRight');
    await landedOn(m.hls_90k + frame, 'one frame after the marker (ArrowRight)');
    assert.ok(isMint(await cornerPixel()), 'the frame after the marker\'s is mint too');
    // Go live is one click away while paused back here.
    assert.equal(await page.isVisible('#go-live'), true);
  });

  test('4. the pointer readout shows the time under the pointer in local time (UTC+05:30) and UTC', async () => {
    const m = posted.warning;
    const marker = await page.evaluate((id) => window.hlsmark.markers.get(id), m.id);
    await zoomTo(marker.hls_90k - 90000, marker.hls_90k + 90000);
    const box = await trackBox();
    const x = await page.evaluate((id) => window.hlsmark.timeline.tickX(id), m.id);
    await page.mouse.move(box.x + x, box.y + box.height / 2);
    const r = await waitUntil('the readout', () => page.evaluate(() => {
      const el = document.querySelector('.hm-tl-readout');
      return /^Pointer/.test(el.textContent) ? { text: el.textContent, utcMs: Number(el.dataset.utcMs), hls: Number(el.dataset.hls) } : null;
    }), 3000, 50);
    // The pointer is on the tick: its time is the marker's to within a pixel of this 2 s view.
    const pxTicks = 2 * 90000 / box.width;
    assert.ok(Math.abs(r.hls - marker.hls_90k) <= pxTicks, `pointer at ${r.hls}, marker at ${marker.hls_90k}`);
    const markerUtc = Date.parse(marker.utc);
    assert.ok(Math.abs(r.utcMs - markerUtc) <= pxTicks / 90 + 1, `pointer UTC ${new Date(r.utcMs).toISOString()} vs marker ${marker.utc}`);
    const utcText = new Date(r.utcMs).toISOString().replace('T', ' ').slice(0, 23);
    const localText = new Date(r.utcMs + TZ_OFFSET_MS).toISOString().replace('T', ' ').slice(0, 23);
    assert.ok(r.text.includes(`${localText} local (UTC+05:30)`), `local time in the readout: ${r.text}`);
    assert.ok(r.text.includes(`${utcText} UTC`), `UTC in the readout: ${r.text}`);
    assert.match(r.text, /HLS \d+\.\d{3} s/);
    assert.ok(r.text.includes(`marker: ${marker.label}`), `the marker under the pointer is named: ${r.text}`);
    await page.mouse.move(box.x + box.width / 2, box.y - 200);
  });

  test('5. drag pans without seeking; the buttons and keys zoom; All shows the whole retention', async () => {
    const m = posted.critical;
    await zoomTo(m.hls_90k - 4 * 90000, m.hls_90k + 90000);
    const before1 = await page.evaluate(() => ({ view: window.hlsmark.timeline.view(), seek: window.hlsmark.state.lastSeek }));
    const box = await trackBox();
    const y = box.y + box.height / 2;
    // (to the left, towards live: the view starts near the retention's start, which stops a pan back)
    await page.mouse.move(box.x + 400, y);
    await page.mouse.down();
    await page.mouse.move(box.x + 300, y, { steps: 5 });
    await page.mouse.up();
    const after1 = await page.evaluate(() => ({ view: window.hlsmark.timeline.view(), seek: window.hlsmark.state.lastSeek }));
    const span = before1.view.to - before1.view.from;
    const moved = after1.view.from - before1.view.from;
    // 100 px to the left shows what was 100 px to the right: the view moves on by 100 px of time.
    assert.ok(Math.abs(moved - (100 * span) / box.width) < span / box.width * 2, `dragged by 100 px: the view moved ${moved} ticks (${(100 * span) / box.width} expected)`);
    assert.deepEqual(after1.seek, before1.seek, 'a drag does not seek');
    // A click where no tick is (none within 10 px): the frame under the pointer.
    const spot = await page.evaluate(() => {
      const t = window.hlsmark.timeline;
      t.draw();
      const xs = [...window.hlsmark.markers.values()].map((mk) => t.xOfHls(mk.hls_90k));
      for (let x = 40; x < t.width() - 40; x += 7) {
        if (xs.every((mx) => Math.abs(mx - x) > 10)) {
          const at = t.atX(x);
          if (!at.gap) return { x, frame: window.hlsmark.state.timeline.frameStartAt(at.hls) };
        }
      }
      return null;
    });
    assert.ok(spot, 'a place on the timeline without a tick');
    await page.mouse.click(box.x + spot.x, y);
    await landedOn(spot.frame, 'the click on an empty place of the timeline');
    // Buttons: + narrows by 4, - widens by 4 (around the position, or the middle).
    await page.click('button[aria-label="Zoom the timeline in"]');
    const zin = await page.evaluate(() => window.hlsmark.timeline.view());
    assert.ok(Math.abs((zin.to - zin.from) * 4 - span) < span * 0.01, `+ zooms in x4: ${span} -> ${zin.to - zin.from}`);
    await page.click('button[aria-label="Zoom the timeline out"]');
    const zout = await page.evaluate(() => window.hlsmark.timeline.view());
    assert.ok(Math.abs((zout.to - zout.from) - span) < span * 0.01, `- zooms out x4: ${zout.to - zout.from}`);
    // Keys on the focused timeline: '+' and '-' too; Frames; '0' (and All) the whole retention.
    await page.focus('.hm-tl-track');
    await page.keyboard.press('+');
    const kin = await page.evaluate(() => window.hlsmark.timeline.view());
    assert.ok(Math.abs((kin.to - kin.from) * 4 - span) < span * 0.01, `'+' zooms in: ${kin.to - kin.from}`);
    await page.click('button[aria-label="Zoom to single frames at the position"]');
    assert.equal((await page.evaluate(() => window.hlsmark.timeline.view())).frameLevel, true, 'Frames: frame level');
    await page.focus('.hm-tl-track');
    await page.keyboard.press('0');
    const all = await page.evaluate(() => window.hlsmark.timeline.view());
    assert.equal(all.whole, true, "'0' shows the whole retention");
    const retained = await page.evaluate(() => {
      const h = window.hlsmark;
      return h.state.timeline.wallOf(Math.round(h.state.retainedStart * 90000));
    });
    assert.ok(Math.abs(all.from - retained) < 1, `the view starts at the retention's start (${all.from} vs ${retained})`);
    await zoomTo(m.hls_90k - 4 * 90000, m.hls_90k + 90000);
    await page.click('button[aria-label="Show the whole retention"]');
    assert.equal((await page.evaluate(() => window.hlsmark.timeline.view())).whole, true, 'All shows the whole retention');
  });

  test('6. a source restart leaves a gap on the timeline, drawn as a gap', { skip: !!process.env.HLSMARK_TEST_URL }, async () => {
    const before = (await api('/timeline?stream=live')).body.epochs.length;
    const ffmpeg = childPids(stack.generator.pid, 'ffmpeg')[0];
    assert.ok(ffmpeg, 'the generator has an ffmpeg child');
    process.kill(Number(ffmpeg), 'SIGKILL');
    const tl = await waitUntil('a new epoch', async () => {
      const b = (await api('/timeline?stream=live')).body;
      return b.epochs.length > before && b;
    }, 20000, 250);
    // HLS time runs on across the restart; the wall clock does not: the source was down from the
    // old epoch's last frame (its UTC start + its media) to the new epoch's UTC start.
    const [prev, next] = tl.epochs.slice(-2);
    const downFrom = Date.parse(prev.utc_start) + (prev.hls_end_90k - prev.hls_start_90k) / 90;
    const downTo = Date.parse(next.utc_start);
    assert.ok(downTo > downFrom, `the source was down a while: ${JSON.stringify([prev, next])}`);
    await waitUntil('the page to know the new epoch', () => page.evaluate((n) => window.hlsmark.state.timeline.epochs.length >= n, tl.epochs.length), 20000, 250);
    // (until the page's live edge passes the new epoch's start, the gap ends at the edge)
    const gap = await waitUntil('the gap on the timeline', () => page.evaluate(([a, b]) => {
      const t = window.hlsmark.timeline;
      t.draw();
      return t.view().gaps.find((g, i) => Math.abs(t.view().gapsUtc[i][0] - a) < 2 && Math.abs(t.view().gapsUtc[i][1] - b) < 2) ?? null;
    }, [downFrom, downTo]), 10000, 100).catch(async (err) => {
      throw new Error(`${err.message}: ${new Date(downFrom).toISOString()} - ${new Date(downTo).toISOString()}: ${JSON.stringify(await page.evaluate(() => window.hlsmark.timeline.view()))}`);
    });
    // Zoom to three times the gap around it (by HLS ticks: the last frame before, the first after).
    const len = downTo - downFrom;
    await zoomToFixed(prev.hls_end_90k - len * 90, next.hls_start_90k + len * 90, 'three times the gap');
    const colours = await page.evaluate(([a, b]) => {
      const t = window.hlsmark.timeline;
      const inGap = [];
      for (let k = 1; k < 10; k++) inGap.push(t.pixelAt(t.xOf(a + ((b - a) * k) / 10), 34));
      return { inGap, before: t.pixelAt(t.xOf(a) - 4, 20), after: t.pixelAt(t.xOf(b) + 4, 20), width: t.xOf(b) - t.xOf(a) };
    }, gap);
    const span = rgb('#2a3440');
    assert.ok(colours.width > 20, `the gap is wide enough to see (${colours.width} px)`);
    assert.ok(colours.inGap.every((c) => c !== span), `no recorded colour inside the gap: ${JSON.stringify(colours)}`);
    assert.ok(colours.inGap.some((c) => c === rgb('#5a2630')), `the gap is hatched: ${JSON.stringify(colours)}`);
    // The pointer over the gap says so.
    const box = await trackBox();
    const gx = await page.evaluate(([a, b]) => window.hlsmark.timeline.xOf((a + b) / 2), gap);
    await page.mouse.move(box.x + gx, box.y + box.height / 2);
    await waitUntil('the readout over the gap', () => page.evaluate(() => /no video \(source down\)/.test(document.querySelector('.hm-tl-readout').textContent)), 3000, 50);
    await page.mouse.move(box.x + box.width / 2, box.y - 200);
  });

  test('7. no console errors, failed requests or HTTP errors', async () => {
    await sleep(200);
    assert.deepEqual(problems, []);
  });
});
