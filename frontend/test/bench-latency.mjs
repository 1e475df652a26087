// Latency benchmark driver (scripts/bench-latency.sh runs it): opens the player page of a running
// hlsmark in headless Debian Chromium and samples, every 100 ms for `--seconds`, the latency the
// page shows (now - PDT of the frame at the playhead), plus hls.js's own view of where the playhead
// is behind the playlist's edge. Prints one JSON line: p50/p95/max, stalls, the request mix.
//
//   node test/bench-latency.mjs --url http://127.0.0.1:5000 --stream live --seconds 60 [--label ll]
import { parseArgs } from 'node:util';
import { launchBrowser, sleep, stopStack, waitUntil } from './harness.mjs';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    stream: { type: 'string', default: 'live' },
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '5' },
    label: { type: 'string', default: '' },
  },
});
if (!a.url) throw new Error('--url is required');
const seconds = Number(a.seconds);

const pct = (xs, q) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : null;
};
const round = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

const browser = await launchBrowser();
const out = { label: a.label, seconds };
try {
  const page = await browser.newPage();
  const requests = { parts: 0, segments: 0, blocking: 0, playlists: 0 };
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (/\.p\d+\.m4s$/.test(u.pathname)) requests.parts += 1;
    else if (/-\d+\.m4s$/.test(u.pathname)) requests.segments += 1;
    else if (u.pathname.endsWith('.m3u8')) requests[u.searchParams.has('_HLS_msn') ? 'blocking' : 'playlists'] += 1;
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${a.url}/?stream=${encodeURIComponent(a.stream)}`);
  await waitUntil('playback', () => page.evaluate(() => window.hlsmark?.state.ready
    && window.hlsmark.player.currentTime() > 0 && !window.hlsmark.player.paused() && window.hlsmark.latency() !== null), 30000, 200);
  await sleep(Number(a.warmup) * 1000);
  for (const k of Object.keys(requests)) requests[k] = 0;
  const lat = [];
  const behindEdge = [];
  const ahead = [];
  const started = Date.now();
  while (Date.now() - started < seconds * 1000) {
    const x = await page.evaluate(() => {
      const h = window.hlsmark.engine();
      const v = window.hlsmark.player.tech(true).el();
      let ahead = null;
      for (let i = 0; i < v.buffered.length; i++) {
        if (v.buffered.start(i) <= v.currentTime + 0.05 && v.currentTime <= v.buffered.end(i)) ahead = v.buffered.end(i) - v.currentTime;
      }
      return { latency: window.hlsmark.latency(), behindEdge: h ? h.latency : null, target: h ? h.targetLatency : null, ahead };
    });
    if (x.latency !== null) lat.push(x.latency);
    if (Number.isFinite(x.behindEdge)) behindEdge.push(x.behindEdge);
    ahead.push(x.ahead ?? 0);
    out.target_latency_s = x.target;
    await sleep(100);
  }
  const s1 = await page.evaluate(() => ({ ...window.hlsmark.state.stalls }));
  Object.assign(out, {
    samples: lat.length,
    p50_s: round(pct(lat, 0.5)),
    p95_s: round(pct(lat, 0.95)),
    max_s: round(pct(lat, 1)),
    behind_edge_p50_s: round(pct(behindEdge, 0.5)),
    buffer_ahead_p50_s: round(pct(ahead, 0.5)),
    buffer_ahead_min_s: round(pct(ahead, 0)),
    // Each stall once (a `waiting` and hls.js's report of it are one stall), with how long it lasted.
    stalls: s1.waits.filter((e) => e.at >= started).length,
    stall_ms: s1.waits.filter((e) => e.at >= started).map((e) => e.ms ?? null),
    stall_log: s1.log.slice(-6).map((e) => ({ ...e, t: round(e.t), at: round((e.at - started) / 1000) })),
    requests,
    page_errors: errors.length,
  });
} finally {
  await browser.close();
  stopStack();
}
console.log(JSON.stringify(out));
