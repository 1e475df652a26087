// Benchmark (issue 16): the timeline with 100,000 markers in the retention, in headless Chromium on
// the real stack (harness.mjs): time to draw and to zoom (target <= 100 ms). Prints medians.
//
//   cd frontend && npm run build && node test/bench-timeline.mjs      (ROUNDS=30 by default)
//
// The markers are spread evenly over the retained range (a fresh stack holds a minute or two, so
// they are dense: every draw of the whole retention walks all 100,000), with the three severities
// and every 50th with its own colour. Measured in the page with performance.now():
//  - first draw: the timeline's index (ticks in time order, colours, filter flags) + the paint,
//    right after the markers are added (the table and the page's sorted list are built before);
//  - draw: one paint of the whole retention (100,000 ticks in view);
//  - zoom step: one wheel notch (x0.8 around a point) + the paint, from the whole retention down
//    to single frames and back out;
//  - wheel to pixels: a real wheel event (page.mouse.wheel) to the end of the paint it causes;
//  - filter: a severity filter change (the table's 500 rows included) + the paint.
import { launchBrowser, startStack, stopStack, waitUntil } from './harness.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const N = 100000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))];

const stack = await startStack({ liveWindow: 8 });
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${stack.url}/?stream=live`);
  await waitUntil('the page to play', () => page.evaluate(() => window.hlsmark?.state.ready && window.hlsmark.hlsNow() !== null), 30000, 200);
  // Wait for some retention (20 s) so the whole view and the frame level are far apart.
  await waitUntil('20 s of retention', () => page.evaluate(() => {
    const h = window.hlsmark;
    return h.timeline.view().to - h.timeline.view().from > 20 * 90000;
  }), 60000, 500);

  const first = await page.evaluate((n) => {
    const h = window.hlsmark;
    const v = h.timeline.view();
    const sev = ['info', 'warning', 'critical'];
    const list = [];
    for (let i = 0; i < n; i++) {
      const hls90k = Math.round(v.from + ((v.to - v.from) * 0.98 * i) / n);
      list.push({
        id: `bench${String(i).padStart(8, '0')}`, stream: 'live', label: `bench ${i}`, kind: 'bench',
        hls: hls90k / 90000, hls_90k: hls90k, utc: new Date().toISOString(), duration: 0, duration_90k: 0,
        severity: sev[i % 3], color: i % 50 === 0 ? '#00ff88' : null, tags: [],
      });
    }
    // As the history does: the table and the page's sorted list first (not the timeline's cost),
    // then the first paint.
    h.filters.add(list);
    h.timeline.showAll();
    const t0 = performance.now();
    const paint = h.timeline.draw();
    return { ms: performance.now() - t0, index: h.timeline.stats.indexMs, paint: paint - h.timeline.stats.indexMs, inView: h.timeline.stats.inView, painted: h.timeline.stats.ticks };
  }, N);

  const draws = [];
  const zoomIn = [];
  const zoomOut = [];
  const filters = [];
  for (let r = 0; r < ROUNDS; r++) {
    const x = await page.evaluate(() => {
      const t = window.hlsmark.timeline;
      t.showAll();
      const t0 = performance.now();
      t.draw();
      const draw = performance.now() - t0;
      const ins = [];
      const outs = [];
      const at = t.width() * 0.37;
      for (let i = 0; i < 60 && !t.view().frameLevel; i++) {
        const a = performance.now();
        t.zoomBy(0.8, at);
        t.draw();
        ins.push(performance.now() - a);
      }
      for (let i = 0; i < 60 && !t.view().whole; i++) {
        const a = performance.now();
        t.zoomBy(1.25, at);
        t.draw();
        outs.push(performance.now() - a);
      }
      const f0 = performance.now();
      window.hlsmark.filters.set({ severities: ['critical'] });
      t.draw();
      const f1 = performance.now();
      window.hlsmark.filters.set({ severities: ['info', 'warning', 'critical'] });
      t.draw();
      return { draw, ins, outs, filter: f1 - f0, back: performance.now() - f1 };
    });
    draws.push(x.draw);
    zoomIn.push(...x.ins);
    zoomOut.push(...x.outs);
    filters.push(x.filter, x.back);
  }

  // Real wheel events over the track: from the event to the end of the paint it causes.
  await page.evaluate(() => {
    const t = window.hlsmark.timeline;
    t.showAll();
    window.benchWheel = [];
    let at = null;
    t.track.addEventListener('wheel', () => { at = performance.now(); }, { capture: true });
    const draw = t.draw.bind(t);
    t.draw = () => {
      const ms = draw();
      if (at !== null) {
        window.benchWheel.push(performance.now() - at);
        at = null;
      }
      return ms;
    };
  });
  const box = await page.locator('.hm-tl-track').boundingBox();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
  for (let r = 0; r < ROUNDS; r++) {
    await page.mouse.wheel(0, r % 2 ? 100 : -100);
    await page.evaluate(() => new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res))));
  }
  const wheel = await page.evaluate(() => window.benchWheel);

  const f = (xs) => `median ${median(xs).toFixed(1)} ms, p95 ${p95(xs).toFixed(1)} ms (${xs.length})`;
  console.log(`timeline bench: ${N} markers over ${(await page.evaluate(() => { const v = window.hlsmark.timeline.view(); return ((v.to - v.from) / 90000).toFixed(0); }))} s of retention, ${ROUNDS} rounds, headless Chromium (software canvas)`);
  console.log(`  first draw (index + paint):        ${first.ms.toFixed(1)} ms (index ${first.index.toFixed(1)} ms, paint ${first.paint.toFixed(1)} ms; ${first.inView} ticks in view, ${first.painted} painted)`);
  console.log(`  draw, whole retention:            ${f(draws)}`);
  console.log(`  zoom step in (x0.8 + paint):      ${f(zoomIn)}`);
  console.log(`  zoom step out (x1.25 + paint):    ${f(zoomOut)}`);
  console.log(`  wheel event to painted:           ${f(wheel)}`);
  console.log(`  severity filter + paint:          ${f(filters)}`);
} finally {
  await browser.close();
  stopStack();
}
