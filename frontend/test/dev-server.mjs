// Development aid only (the browser tests run the real `hlsmark`): a stand-in for `hlsmark serve`
// speaking the same HTTP contract, fed by an ffmpeg test pattern whose top-left block is mint for
// the first second of every three. Lets the page be worked on without the Rust server.
//
//   node test/dev-server.mjs [port]     then open http://127.0.0.1:<port>/
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const port = Number(process.argv[2] ?? 5055);
const D = 1; // segment seconds
const WINDOW = Number(process.env.WINDOW ?? 8);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hm-dev-'));
const t0 = Date.now();

const ff = spawn('ffmpeg', [
  '-hide_banner', '-loglevel', 'error', '-re',
  '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30',
  '-vf', "drawbox=x=0:y=0:w=40:h=40:color=0x00FFFF:t=fill:enable='lt(mod(n,90),30)'",
  '-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '0', '-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
  '-pix_fmt', 'yuv420p',
  '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_segment_type', 'fmp4',
  '-hls_fmp4_init_filename', 'init.mp4', '-hls_segment_filename', path.join(dir, 'seg%d.m4s'),
  path.join(dir, 'ff.m3u8'),
], { stdio: ['ignore', 'inherit', 'inherit'] });

const markers = new Map();
const clients = new Set();
function segCount() {
  try {
    const txt = fs.readFileSync(path.join(dir, 'ff.m3u8'), 'utf8');
    return (txt.match(/#EXTINF/g) ?? []).length;
  } catch { return 0; }
}
function utcOf(hls) { return new Date(t0 + hls * 1000).toISOString(); }
function mk(hls, label, kind = 'event') {
  const hls90 = Math.round(hls * 90000);
  return { id: randomUUID(), stream: 'live', label, kind, gen: hls, hls: hls90 / 90000, hls_90k: hls90, utc: utcOf(hls), duration: 1, duration_90k: 90000, seq: Math.floor(hls / D) };
}
function publish(m) {
  markers.set(m.id, m);
  for (const res of clients) res.write(`event: marker\ndata: ${JSON.stringify(m)}\n\n`);
}
let nextEvent = 0;
setInterval(() => {
  const n = segCount();
  while (nextEvent * 3 < n * D) { publish(mk(nextEvent * 3, `event ${nextEvent}`)); nextEvent++; }
}, 200);

function playlist(first, last, end) {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${D}`, `#EXT-X-MEDIA-SEQUENCE:${first}`, '#EXT-X-DISCONTINUITY-SEQUENCE:0', '#EXT-X-MAP:URI="init.mp4"'];
  for (let s = first; s <= last; s++) {
    lines.push(`#EXT-X-PROGRAM-DATE-TIME:${utcOf(s * D)}`, `#EXTINF:${D.toFixed(6)},`, `seg${s}.m4s`);
  }
  if (end) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}
function json(res, code, body) { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); }

createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const n = segCount();
  const p = url.pathname;
  if (p === '/hls/live/index.m3u8') {
    res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl', 'cache-control': 'no-cache' });
    return res.end(playlist(Math.max(0, n - WINDOW), n - 1, false));
  }
  if (p === '/hls/live/vod.m3u8') {
    const from = Math.max(0, Math.floor(Number(url.searchParams.get('from')) / D));
    const to = Math.min(n - 1, Math.ceil(Number(url.searchParams.get('to')) / D) - 1);
    res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl' });
    return res.end(playlist(from, to, true));
  }
  if (p.startsWith('/hls/live/')) {
    const f = path.join(dir, path.basename(p));
    if (!fs.existsSync(f)) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': p.endsWith('.mp4') || p.endsWith('.m4s') ? 'video/mp4' : 'application/octet-stream' });
    return fs.createReadStream(f).pipe(res);
  }
  if (p === '/timeline') {
    const first = Math.max(0, n - WINDOW);
    return json(res, 200, { stream: 'live', segment_duration: D, fps: 30, epochs: [{ index: 0, first_seq: 0, hls_start: 0, utc_start: utcOf(0) }], window: { first_seq: first, last_seq: n - 1, start: first * D, end: n * D, start_utc: utcOf(first * D), end_utc: utcOf(n * D) }, live_edge: n * D, retained: { first_seq: 0, start: 0 } });
  }
  if (p === '/streams') {
    const now = new Date().toISOString();
    return json(res, 200, { streams: [{ name: 'live', kind: 'generator', source: 'generator', state: n > 0 ? 'live' : 'starting', since: utcOf(0), updated: now, stale: false, last_error: null, restarts: 0, epoch: 0, live_edge: n * D, live_edge_90k: n * D * 90000, segments: n, playlist: '/hls/live/index.m3u8' }] });
  }
  if (p === '/markers/live') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(': hello\n\n');
    clients.add(res);
    req.on('close', () => clients.delete(res));
    return;
  }
  if (p === '/markers' && req.method === 'GET') {
    const from = Number(url.searchParams.get('from') ?? 0), to = Number(url.searchParams.get('to') ?? 1e12);
    const seq = url.searchParams.get('seq');
    const list = [...markers.values()].filter((m) => m.hls >= from && m.hls < to).sort((a, b) => a.hls_90k - b.hls_90k)
      .map((m) => (seq === null ? m : { ...m, client: (m.hls_90k - Number(seq) * D * 90000) / 90000 }));
    return json(res, 200, { stream: 'live', markers: list, next_cursor: null });
  }
  if (p === '/markers' && req.method === 'POST') {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { const b = JSON.parse(body); const m = { ...mk(Number(b.hls), b.label, b.kind ?? 'manual') }; publish(m); json(res, 201, m); });
    return;
  }
  const file = p === '/' ? 'index.html' : p.replace(/^\/+/, '');
  const f = path.join(root, 'dist', file);
  if (!f.startsWith(path.join(root, 'dist')) || !fs.existsSync(f)) { res.writeHead(404); return res.end(); }
  const type = f.endsWith('.html') ? 'text/html' : f.endsWith('.js') ? 'text/javascript' : f.endsWith('.css') ? 'text/css' : 'application/octet-stream';
  res.writeHead(200, { 'content-type': type });
  fs.createReadStream(f).pipe(res);
}).listen(port, '127.0.0.1', () => console.log(`dev server on http://127.0.0.1:${port}/ (segments in ${dir})`));

const stop = () => { ff.kill('SIGTERM'); fs.rmSync(dir, { recursive: true, force: true }); process.exit(0); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
