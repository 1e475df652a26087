// Browser tests of the page's pictures (issue 14) against the real stack (harness.mjs), in headless
// Debian Chromium: marker rows carry the marker's frame, the seek bar shows the tile of the time
// under the pointer, and the server's WebVTT thumbnails track is valid, contiguous and covers the
// retained segments. The tests share one page and run in order.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, startStack, stopStack, waitUntil } from './harness.mjs';

let stack;
let browser;
let page;
const problems = [];

before(async () => {
  stack = await startStack({ liveWindow: 8, fps: process.env.HLSMARK_TEST_FPS ?? 30 });
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    if (why === 'net::ERR_ABORTED' && /\/hls\//.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  await page.goto(`${stack.url}/?stream=live`);
  await page.waitForFunction(() => window.hlsmark, null, { timeout: 10000 });
});

after(async () => {
  try {
    await page?.close();
    await browser?.close();
  } finally {
    stopStack();
  }
});

/** The generator's event flag: the top-left block is mint during an event. */
const isMint = ([r, g, b]) => r < 60 && g > 200 && b > 200;

/** Mean colour of a small square at (x, y) of an image URL, decoded in the page. */
function cornerOf(url, x, y) {
  return page.evaluate(async ([u, px, py]) => {
    const bmp = await createImageBitmap(await (await fetch(u)).blob());
    const c = document.createElement('canvas');
    c.width = bmp.width;
    c.height = bmp.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const d = ctx.getImageData(px, py, 2, 2).data;
    return [0, 1, 2].map((k) => Math.round((d[k] + d[k + 4] + d[k + 8] + d[k + 12]) / 4));
  }, [url, x, y]);
}

/** Cues of the track as the server writes them: id ticks and the text's times. */
function parseTrack(text) {
  const blocks = text.split('\n\n').filter((b) => b.includes('-->'));
  return blocks.map((b) => {
    const [id, times, payload] = b.split('\n');
    const m = /^(\d+) hls_90k=(-?\d+)\.\.(-?\d+)$/.exec(id);
    assert.ok(m, `cue id carries seq and ticks: ${id}`);
    const [a, z] = times.split(' --> ');
    const ms = (t) => {
      const [h, mi, s] = t.split(':');
      return (Number(h) * 3600 + Number(mi) * 60) * 1000 + Math.round(Number(s) * 1000);
    };
    return { seq: Number(m[1]), start: Number(m[2]), end: Number(m[3]), a: ms(a), z: ms(z), payload };
  });
}

describe('pictures on the page', () => {
  test('1. marker rows show the marker frame as a loaded thumbnail', async () => {
    const rows = await waitUntil('a marker row whose thumbnail loaded', () => page.evaluate(() => {
      const out = [];
      for (const tr of document.querySelectorAll('#markers tbody tr')) {
        const img = tr.querySelector('img.hm-row-thumb');
        if (img?.complete && img.naturalWidth > 0) out.push({ id: tr.dataset.id, src: img.getAttribute('src'), lazy: img.loading, w: img.naturalWidth });
      }
      return out.length ? out : null;
    }), 30000, 250);
    const r = rows[0];
    assert.equal(r.lazy, 'lazy');
    assert.match(r.src, new RegExp(`^/markers/${r.id}/thumbnail\\.jpg\\?stream=live&width=160$`));
    assert.equal(r.w, 160);
    // A generator marker sits on the event's first frame: its row shows the mint corner.
    const m = await page.evaluate((id) => window.hlsmark.markers.get(id), r.id);
    if (m.kind !== 'manual') {
      const rgb = await cornerOf(r.src, 2, 2);
      assert.ok(isMint(rgb), `row thumbnail of ${m.label} shows the mint corner: ${rgb}`);
    }
    console.log(`# ${rows.length} row thumbnails loaded`);
  });

  test('2. the thumbnails track is valid WebVTT, contiguous, covering the retained segments', async () => {
    const playlist = await (await fetch(`${stack.url}/hls/live/index.m3u8`)).text();
    const res = await fetch(`${stack.url}/thumbs/live.vtt`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/vtt/);
    const text = await res.text();
    assert.match(text, /^WEBVTT[ \n]/);
    const cues = parseTrack(text);
    const tl = await (await fetch(`${stack.url}/timeline?stream=live`)).json();
    assert.equal(cues[0].start, tl.retained.start_90k, 'the first cue starts at the first retained segment');
    const lastSeq = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(playlist)[1]) + (playlist.match(/#EXTINF/g) ?? []).length - 1;
    assert.ok(cues.at(-1).seq >= lastSeq, `the last cue (${cues.at(-1).seq}) reaches the playlist's newest segment (${lastSeq})`);
    for (const [i, c] of cues.entries()) {
      assert.ok(c.end > c.start, `cue ${c.seq} is not empty`);
      assert.equal(c.a, Math.round(c.start / 90), `cue ${c.seq}: the text's start is its ticks in ms`);
      assert.equal(c.z, Math.round(c.end / 90), `cue ${c.seq}: the text's end is its ticks in ms`);
      assert.equal(c.payload, `live/${c.seq}.jpg#xywh=0,0,160,90`);
      if (i > 0) {
        assert.equal(c.seq, cues[i - 1].seq + 1, 'one cue per segment, in order');
        assert.equal(c.start, cues[i - 1].end, `cue ${c.seq} starts where the previous ends (ticks)`);
        assert.equal(c.a, cues[i - 1].z, `cue ${c.seq} starts where the previous ends (text)`);
      }
    }
    // Every tile is the first frame of its segment: the mint flag agrees with the exact
    // thumbnail at the cue's start (the newest 12; tiles are 160x90 of 320x180 frames).
    let mint = 0;
    const recent = cues.slice(-12, -1);
    for (const c of recent) {
      const tile = await cornerOf(`${stack.url}/thumbs/live/${c.seq}.jpg`, 1, 1);
      const exact = await cornerOf(`${stack.url}/thumbnail/live.jpg?t=${(c.start / 90000).toFixed(6)}`, 2, 2);
      assert.equal(isMint(tile), isMint(exact), `tile ${c.seq} (${tile}) shows the frame at ${c.start} (${exact})`);
      if (isMint(tile)) mint += 1;
    }
    console.log(`# ${cues.length} cues, ${recent.length} tiles checked against exact thumbnails, ${mint} of them mint`);
  });

  test('3. hovering the timeline over a marker shows the tile of that time', async () => {
    // A marker 3-6 s behind the live edge; the timeline shows the 8 s around it (a still view:
    // it does not follow live, so the time under the pointer stays put).
    const target = await waitUntil('a marker 3-6 s behind live, its tick on the timeline', () => page.evaluate(() => {
      const h = window.hlsmark;
      const now = h.hlsNow();
      const m = [...h.markers.values()].find((x) => x.hls_90k < now - 3 * 90000 && x.hls_90k > now - 6 * 90000);
      if (!m) return null;
      h.timeline.zoomTo(m.hls_90k - 6 * 90000, m.hls_90k + 2 * 90000);
      h.timeline.draw();
      const x = h.timeline.tickX(m.id);
      if (x === null) return null;
      const bar = h.timeline.track.getBoundingClientRect();
      return { id: m.id, x: bar.left + x, y: bar.top + bar.height / 2, px: bar.width };
    }), 30000, 250);
    await page.mouse.move(target.x - 40, target.y);
    await page.mouse.move(target.x, target.y, { steps: 4 });
    // A move within the track follows the first (the tile may load on the first).
    await page.mouse.move(target.x + 1, target.y);
    await page.mouse.move(target.x, target.y);
    const shown = await waitUntil('the hover tile to load', () => page.evaluate(() => {
      const el = document.querySelector('.hm-seek-preview');
      const img = el?.querySelector('img');
      if (!el || el.hidden || !img.complete || !(img.naturalWidth > 0)) return null;
      const r = el.getBoundingClientRect();
      return { ...el.dataset, src: img.getAttribute('src'), w: img.naturalWidth, visible: r.width > 0 && r.height > 0 };
    }), 10000, 100).catch(async (err) => {
      const why = await page.evaluate(() => {
        const s = window.hlsmark.thumbs.seek;
        return { last: s.last, cues: s.cues.length, trackFor: s.trackFor, hidden: s.el.hidden, src: s.img.getAttribute('src'), complete: s.img.complete, nw: s.img.naturalWidth, range: s.range() };
      });
      throw new Error(`${err.message}\n${JSON.stringify(why)}`);
    });
    const m = await page.evaluate((id) => window.hlsmark.markers.get(id), target.id);
    const { state } = await page.evaluate(() => ({ state: { mode: window.hlsmark.state.mode } }));
    assert.equal(state.mode, 'live');
    const [start, end, hls] = [Number(shown.start), Number(shown.end), Number(shown.hls)];
    // The view is 8 s wide: one pixel is ~8 s / width; the tick is 2 px wide.
    const perPixel = (8 * 90000) / target.px;
    assert.ok(hls - m.hls_90k >= -(3 * perPixel + 3000) && hls - m.hls_90k <= 3 * perPixel + 3000,
      `the pointer's time ${hls} is the marker's ${m.hls_90k} (within ${Math.round(3 * perPixel)} ticks)`);
    assert.ok(start <= hls && hls < end, `the tile's cue [${start}, ${end}) holds the pointer's time ${hls}`);
    assert.ok(shown.visible);
    assert.equal(shown.w, 160);
    assert.match(shown.src, new RegExp(`/thumbs/live/${shown.seq}\\.jpg$`));
    await page.mouse.move(target.x, target.y - 300);
    assert.ok(await page.evaluate(() => document.querySelector('.hm-seek-preview').hidden), 'leaving the bar hides the tile');
  });

  test('4. no console errors, failed requests or HTTP errors', () => {
    assert.deepEqual(problems, []);
  });
});
