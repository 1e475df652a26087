// Browser tests of marker severity, colour, tags, the filter bar and clip downloads (issue 16)
// against the real stack (harness.mjs) in headless Debian Chromium: markers posted with different
// severities, colours and tags colour their ticks and rows; the filter bar hides and shows rows and
// ticks together and its filters reach GET /markers and /markers/live; a row's download link is an
// MP4 attachment; 100,000 markers keep the page quick. The tests share one page and run in order.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, sleep, startStack, stopStack, waitUntil } from './harness.mjs';

let stack;
let browser;
let page;
const problems = [];
/** Every /markers and /markers/live URL the page asked for, in order. */
const apiUrls = [];
/** Synthetic markers of test 5 (ids with this prefix) have no pictures: their 404s are expected. */
const FAKE = '00000000-0000-4000-8000-';
const run = `flt${Date.now() % 100000}`;
/** Posted markers by short name. */
const posted = {};

before(async () => {
  stack = await startStack({ liveWindow: 8, fps: process.env.HLSMARK_TEST_FPS ?? 30 });
  browser = await launchBrowser();
  page = await browser.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error' && !msg.text().includes('404')) problems.push(`console error: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.pathname === '/markers' || u.pathname === '/markers/live') apiUrls.push(u);
  });
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? '';
    // hls.js cancels loads, and a filter change closes the old feed.
    if (why === 'net::ERR_ABORTED' && /\/hls\/|\/markers\/live/.test(req.url())) return;
    problems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !res.url().includes(`/markers/${FAKE}`)) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  await page.goto(`${stack.url}/?stream=live`);
  await page.waitForFunction(() => window.hlsmark?.state.ready && window.hlsmark.hlsNow() !== null, null, { timeout: 30000 });
});

after(async () => {
  try {
    await page?.close();
    await browser?.close();
  } finally {
    stopStack();
  }
});

async function api(path, init = {}) {
  const res = await fetch(`${stack.url}${path}`, init);
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, headers: res.headers };
}

function post(markers) {
  return api('/markers?stream=live', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
    body: JSON.stringify(markers),
  });
}

/** What the page shows of the posted markers: row (colour, severity, tags, link) and tick. */
function view() {
  return page.evaluate((ids) => {
    const out = {};
    for (const [name, id] of Object.entries(ids)) {
      const tr = document.querySelector(`#markers tbody tr[data-id="${id}"]`);
      // The tick as the timeline's canvas paints it (timeline.js probe: the painted pixel, the
      // width of that colour; a tick with a neighbour within 3 px reports its own colour).
      const tl = window.hlsmark.timeline;
      const p = tl.tickX(id) !== null ? tl.probe(id) : null;
      const hex = (c) => `rgb(${[1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)).join(', ')})`;
      const a = tr?.querySelector('a.hm-download');
      out[name] = {
        row: tr ? {
          stripe: getComputedStyle(tr.cells[0]).borderLeftColor,
          severity: tr.querySelector('.hm-sev')?.textContent.trim(),
          aria: tr.getAttribute('aria-label'),
          tags: [...tr.querySelectorAll('.hm-tag')].map((b) => b.textContent),
          href: a?.getAttribute('href'),
          title: a?.title,
          download: a?.hasAttribute('download'),
        } : null,
        tick: p ? { bg: p.crowded ? hex(p.color) : p.pixel, width: p.width, critical: p.critical, crowded: p.crowded } : null,
      };
    }
    return out;
  }, Object.fromEntries(Object.entries(posted).map(([k, m]) => [k, m.id])));
}

/** Names of the posted markers with a row in the table and with a visible tick. */
async function shown() {
  const v = await view();
  const names = Object.keys(v).sort();
  return { rows: names.filter((n) => v[n].row), ticks: names.filter((n) => v[n].tick) };
}

/** Waits until a request to `path` whose query holds every `want` pair is made after `since`. */
function requested(path, want, since) {
  return waitUntil(`a request to ${path} with ${JSON.stringify(want)}`, () => apiUrls.slice(since).find((u) => u.pathname === path
    && Object.entries(want).every(([k, v]) => u.searchParams.get(k) === v)), 5000, 50);
}

const rgb = (hex) => `rgb(${[1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;

describe('marker severity, colours, tags, filters and clips on the page', () => {
  test('1. ticks and rows take the marker colour, else the severity colour; severity and tags are shown', async () => {
    // Just behind the frame on screen (on the bar, their segments published), once it is 3 s in.
    const now = await waitUntil('the playhead 3 s into the stream', () => page.evaluate(() => {
      const h = window.hlsmark.hlsNow();
      return h !== null && h > 3 * 90000 ? h : null;
    }), 20000, 200);
    const at = (k) => (now - k * 9000) / 90000;
    const list = [
      { name: 'a', label: `${run} person`, kind: 'detector', hls: at(1), severity: 'info', tags: ['zone:a'] },
      { name: 'b', label: `${run} car`, kind: 'detector', hls: at(2), severity: 'warning', tags: ['zone:b', 'car'] },
      { name: 'c', label: `${run} fire`, kind: 'alarm', hls: at(3), severity: 'critical', tags: ['zone:a'] },
      { name: 'd', label: `${run} note`, kind: 'manual', hls: at(4), severity: 'info', color: '#00ff88' },
    ];
    const res = await post(list.map(({ name, ...m }) => m));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const saved = res.body.markers ?? res.body;
    for (const [i, m] of list.entries()) posted[m.name] = { ...m, id: saved[i].id ?? saved[i].marker?.id };
    assert.ok(Object.values(posted).every((m) => m.id), `ids in the answer: ${JSON.stringify(res.body).slice(0, 300)}`);
    // The timeline shows the second around the four (ticks 0.1 s apart are then ~60 px apart).
    const hs = list.map((m) => Math.round(m.hls * 90000));
    await page.evaluate(([a, b]) => window.hlsmark.timeline.zoomTo(a, b), [Math.min(...hs) - 45000, Math.max(...hs) + 45000]);

    const v = await waitUntil('all four rows and ticks', async () => {
      const x = await view();
      return Object.values(x).every((e) => e.row && e.tick) ? x : null;
    }, 10000, 100).catch(async (e) => {
      const why = await page.evaluate(() => {
        const h = window.hlsmark;
        const lt = h.player.liveTracker;
        return {
          mode: h.state.mode, live: lt.isLive(), win: lt.liveWindow(), start: lt.seekableStart(), ct: h.player.currentTime(),
          markers: [...h.markers.values()].sort((a, b) => b.hls_90k - a.hls_90k).slice(0, 8)
            .map((m) => ({ kind: m.kind, hls: m.hls_90k, client: h.clientOf(m), archived: h.isArchived(m.id), match: h.filters.filter.matches(m) })),
        };
      });
      throw new Error(`${e.message}: ${JSON.stringify(await view())} ${JSON.stringify(why)}`);
    });
    const want = { a: '#4ea1ff', b: '#ffb020', c: '#ff3355', d: '#00ff88' };
    for (const [name, hex] of Object.entries(want)) {
      assert.equal(v[name].tick.bg, rgb(hex), `tick ${name} is ${hex}`);
      assert.equal(v[name].row.stripe, rgb(hex), `row ${name} is ${hex}`);
      assert.equal(v[name].row.severity.replace(/^\W+\s*/, ''), posted[name].severity, `row ${name} says its severity in words`);
      assert.match(v[name].row.aria, new RegExp(`severity ${posted[name].severity}`));
      assert.equal(v[name].tick.critical, posted[name].severity === 'critical', `tick ${name} is drawn as ${posted[name].severity}`);
      assert.deepEqual(v[name].row.tags, posted[name].tags ?? []);
    }
    if (!v.c.tick.crowded && !v.a.tick.crowded) assert.ok(v.c.tick.width > v.a.tick.width, `the critical tick is wider (${v.c.tick.width} > ${v.a.tick.width})`);
    assert.match(v.b.row.aria, /tags zone:b, car/);
  });

  test('2. severity checkboxes hide and show rows and ticks together, and reach GET /markers and the feed', async () => {
    const since = apiUrls.length;
    await page.click('#filter-sev-info');
    await page.click('#filter-sev-warning');
    const only = await waitUntil('only the critical marker', async () => {
      const s = await shown();
      return s.rows.join() === 'c' && s.ticks.join() === 'c' ? s : null;
    }, 3000, 50).catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await shown())}`); });
    assert.ok(only);
    // No generator marker (info) is left either, in the table or on the bar.
    const others = await page.evaluate(() => ({
      rows: [...document.querySelectorAll('#markers tbody tr')].map((tr) => tr.dataset.severity),
      ticks: [...window.hlsmark.markers.values()].filter((m) => window.hlsmark.timeline.tickX(m.id) !== null).map((m) => m.severity ?? 'info'),
    }));
    assert.ok(others.rows.every((s) => s === 'critical') && others.ticks.every((s) => s === 'critical'), JSON.stringify(others));
    const hist = await requested('/markers', { severity: 'critical', stream: 'live' }, since);
    const live = await requested('/markers/live', { severity: 'critical', stream: 'live' }, since);
    console.log(`# ${hist.pathname}${hist.search} and ${live.pathname}${live.search}`);
    // The history answer honours it (server-side) ...
    const page1 = await api(`/markers${hist.search}`);
    assert.equal(page1.status, 200);
    assert.ok(page1.body.markers.length >= 1 && page1.body.markers.every((m) => m.severity === 'critical'));
    // ... and so does the feed: a new info marker never arrives, a critical one does.
    await sleep(500); // the new feed is open
    const now = await page.evaluate(() => window.hlsmark.hlsNow());
    const r = await post([
      { label: `${run} quiet`, kind: 'detector', hls: now / 90000, severity: 'info' },
      { label: `${run} loud`, kind: 'detector', hls: now / 90000 + 0.05, severity: 'critical', tags: ['zone:c'] },
    ]);
    assert.equal(r.status, 201);
    const ids = (r.body.markers ?? r.body).map((m) => m.id ?? m.marker?.id);
    await page.waitForSelector(`#markers tr[data-id="${ids[1]}"]`, { timeout: 3000 });
    assert.equal(await page.evaluate((id) => window.hlsmark.markers.has(id), ids[0]), false, 'the filtered feed did not send the info marker');

    const widened = apiUrls.length;
    await page.click('#filter-sev-info');
    await page.click('#filter-sev-warning');
    const all = await waitUntil('all four again', async () => {
      const s = await shown();
      return s.rows.length === 4 && s.ticks.length === 4 ? s : null;
    }, 3000, 50);
    assert.ok(all);
    // Every severity again: the next requests carry no severity filter, and the info marker comes back with the history.
    for (const path of ['/markers', '/markers/live']) {
      await waitUntil(`a request to ${path} without severity`, () => apiUrls.slice(widened)
        .some((u) => u.pathname === path && !u.searchParams.has('severity')), 5000, 50);
    }
    await waitUntil('the info marker from the re-read history', () => page.evaluate((id) => window.hlsmark.markers.has(id), ids[0]), 5000, 100);
  });

  test('3. kind, label prefix and tag (typed or a chip) filter rows and ticks and reach the API', async () => {
    const kinds = await page.$$eval('#filter-kind option', (os) => os.map((o) => o.value));
    for (const k of ['', 'alarm', 'detector', 'manual']) assert.ok(kinds.includes(k), `kind ${k} listed: ${kinds}`);
    let since = apiUrls.length;
    await page.selectOption('#filter-kind', 'alarm');
    await waitUntil('kind alarm: only c', async () => (await shown()).rows.join() === 'c' && (await shown()).ticks.join() === 'c', 3000, 50);
    await requested('/markers', { kind: 'alarm' }, since);
    await requested('/markers/live', { kind: 'alarm' }, since);
    await page.selectOption('#filter-kind', '');

    since = apiUrls.length;
    await page.fill('#filter-label', `${run} c`);
    await waitUntil('label prefix: only b', async () => { const s = await shown(); return s.rows.join() === 'b' && s.ticks.join() === 'b'; }, 3000, 50);
    await requested('/markers', { label: `${run} c` }, since);
    await page.fill('#filter-label', '');

    since = apiUrls.length;
    await page.fill('#filter-tag', 'zone:a');
    await waitUntil('tag zone:a: a and c', async () => { const s = await shown(); return s.rows.join() === 'a,c' && s.ticks.join() === 'a,c'; }, 3000, 50);
    await requested('/markers', { tag: 'zone:a' }, since);
    await requested('/markers/live', { tag: 'zone:a' }, since);
    await page.fill('#filter-tag', '');
    await waitUntil('all rows back', async () => (await shown()).rows.length === 4, 3000, 50);

    // A chip: clicking "car" on b's row filters by it, without seeking to b.
    const seekBefore = await page.evaluate(() => window.hlsmark.state.lastSeekId);
    await page.click(`#markers tr[data-id="${posted.b.id}"] .hm-tag:text-is("car")`);
    assert.equal(await page.inputValue('#filter-tag'), 'car');
    await waitUntil('tag car: only b', async () => { const s = await shown(); return s.rows.join() === 'b' && s.ticks.join() === 'b'; }, 3000, 50);
    assert.equal(await page.evaluate(() => window.hlsmark.state.lastSeekId), seekBefore, 'a chip click does not seek');
    const note = await page.textContent('#filter-note');
    assert.match(note, /of \d+ loaded markers match/);
    await page.click('.hm-filter-clear');
    await waitUntil('all rows back', async () => (await shown()).rows.length === 4, 3000, 50);
    assert.equal(await page.isHidden('.hm-filter-clear'), true);
  });

  test('4. the download link of a row is the marker clip as an MP4 attachment', async () => {
    const v = await view();
    const { id } = posted.c;
    assert.equal(v.c.row.href, `/markers/${id}/clip.mp4?stream=live&download=1`);
    assert.ok(v.c.row.download, 'the link has the download attribute');
    assert.match(v.c.row.title, /^Download an MP4 clip of ".* fire": 2 s before the marker to 2 s after its end/);
    // Its segments (2 s after the marker) are published a moment after it: retry a 404 for a while.
    const res = await waitUntil('the clip to answer 200', async () => {
      const r = await page.evaluate(async (href) => {
        const x = await fetch(href);
        const buf = new Uint8Array(await x.arrayBuffer());
        return { status: x.status, type: x.headers.get('content-type'), disposition: x.headers.get('content-disposition'), len: buf.length, box: String.fromCharCode(...buf.slice(4, 8)) };
      }, `${v.c.row.href}`);
      return r.status === 200 ? r : null;
    }, 20000, 1000);
    assert.equal(res.type, 'video/mp4');
    assert.match(res.disposition, /^attachment; filename=".*\.mp4"$/);
    assert.equal(res.box, 'ftyp');
    assert.ok(res.len > 1000, `a real file (${res.len} bytes)`);
    console.log(`# clip: ${res.len} bytes, ${res.disposition}`);
    // A click on the link does not seek to the marker either (the browser downloads it).
    const seekBefore = await page.evaluate(() => window.hlsmark.state.lastSeekId);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10000 }), page.click(`#markers tr[data-id="${id}"] a.hm-download`)]);
    assert.match(download.suggestedFilename(), /\.mp4$/);
    assert.equal(await page.evaluate(() => window.hlsmark.state.lastSeekId), seekBefore);
  });

  test('5. 100,000 markers: the table keeps the newest 500, filters stay quick', async () => {
    const t = await page.evaluate((fake) => {
      const sev = ['info', 'warning', 'critical'];
      const list = [];
      for (let i = 0; i < 100000; i++) {
        // Older than anything real (negative HLS times: archived, never on the live bar).
        const hls90k = -1e9 + i * 900;
        list.push({
          id: `${fake}${String(i).padStart(12, '0')}`, stream: 'live', label: `bulk ${i}`, kind: 'bulk',
          hls: hls90k / 90000, hls_90k: hls90k, utc: new Date(Date.now() - 1e7 + i * 10).toISOString(),
          duration: 0, duration_90k: 0, severity: sev[i % 3], color: null, tags: i % 10 ? [] : ['tenth'],
        });
      }
      const h = window.hlsmark.filters;
      h.set({ kind: '', label: '', tag: '', severities: sev });
      const t0 = performance.now();
      h.add(list);
      const t1 = performance.now();
      h.set({ severities: ['critical'] });
      const t2 = performance.now();
      const critRows = document.querySelectorAll('#markers tbody tr').length;
      h.set({ severities: ['info', 'warning', 'critical'], tag: 'tenth' });
      const t3 = performance.now();
      const tenthRows = [...document.querySelectorAll('#markers tbody tr')].every((tr) => tr.querySelector('.hm-tag')?.textContent === 'tenth');
      const note = document.getElementById('filter-note').textContent;
      h.set({ tag: '' });
      const t4 = performance.now();
      return { add: t1 - t0, critical: t2 - t1, tag: t3 - t2, clear: t4 - t3, critRows, tenthRows, note, rows: document.querySelectorAll('#markers tbody tr').length };
    }, FAKE);
    console.log(`# 100,000 markers: add ${t.add.toFixed(0)} ms, severity filter ${t.critical.toFixed(0)} ms, tag ${t.tag.toFixed(0)} ms, clear ${t.clear.toFixed(0)} ms`);
    assert.equal(t.rows, 500);
    assert.equal(t.critRows, 500);
    assert.ok(t.tenthRows);
    assert.match(t.note, /^Showing the newest 500 of 10000 matching markers\./);
    assert.ok(t.add < 3000 && t.critical < 1000 && t.tag < 1000 && t.clear < 1000, JSON.stringify(t));
    // The page stays responsive: its 250 ms timer keeps running (a frame within 1 s).
    const frame = await page.evaluate(() => new Promise((resolve) => {
      const t0 = performance.now();
      setTimeout(() => requestAnimationFrame(() => resolve(performance.now() - t0)), 250);
    }));
    assert.ok(frame < 1000, `a frame ${frame.toFixed(0)} ms later`);
  });

  test('6. no console errors, failed requests or HTTP errors', () => {
    assert.deepEqual(problems, []);
  });
});
