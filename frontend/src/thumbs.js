// Pictures on the page: a thumbnail of the exact frame on every marker row
// (`/markers/{id}/thumbnail.jpg`, loaded only when the row is on screen, two at a time) and a
// preview tile while the pointer hovers the seek bar, from the stream's WebVTT thumbnails track
// (`/thumbs/{stream}.vtt`: one cue per segment, the exact 90 kHz ticks in each cue's id, the tiles
// made by the server as segments finish). Times stay in ticks; the pointer's position becomes
// seconds of the player only through the page's own mapping (`hlsAtBar`).

/** Width of a row's thumbnail as requested from the server (CSS shows it at half). */
const ROW_THUMB_WIDTH = 160;
/** Row thumbnails loading at once (the server decodes two at a time). */
const ROW_THUMBS_AT_ONCE = 2;
/** A track older than this is read again when the pointer enters the bar. */
const TRACK_MAX_AGE_MS = 1000;

/**
 * The cues of a thumbnails track: `{ seq, start, end, url, x, y, w, h }`, times in ticks from the
 * cue id (`{seq} hls_90k={start}..{end}`), the tile's URL resolved against the track's URL.
 * Cues without the id (another server) are read from their millisecond times.
 */
export function parseThumbsVtt(text, trackUrl) {
  const cues = [];
  for (const block of text.replace(/\r\n?/g, '\n').split(/\n{2,}/)) {
    const lines = block.split('\n').filter((l) => l.length);
    const at = lines.findIndex((l) => l.includes('-->'));
    if (at < 0 || !lines[at + 1]) continue;
    const id = at > 0 ? lines[at - 1] : '';
    const exact = /^(\d+) hls_90k=(-?\d+)\.\.(-?\d+)/.exec(id);
    const [a, b] = lines[at].split('-->').map((s) => vttMs(s.trim().split(/\s+/)[0]));
    const [ref, frag = ''] = lines[at + 1].trim().split('#');
    const xywh = /xywh=(\d+),(\d+),(\d+),(\d+)/.exec(frag);
    cues.push({
      seq: exact ? Number(exact[1]) : null,
      start: exact ? Number(exact[2]) : a * 90,
      end: exact ? Number(exact[3]) : b * 90,
      url: new URL(ref, trackUrl).href,
      x: xywh ? Number(xywh[1]) : 0,
      y: xywh ? Number(xywh[2]) : 0,
      w: xywh ? Number(xywh[3]) : null,
      h: xywh ? Number(xywh[4]) : null,
    });
  }
  cues.sort((p, q) => p.start - q.start);
  return cues;
}

/** `hh:mm:ss.mmm` or `mm:ss.mmm` to milliseconds. */
function vttMs(s) {
  const parts = s.split(':').map(Number);
  let secs = 0;
  for (const p of parts) secs = secs * 60 + p;
  return Math.round(secs * 1000);
}

/** The cue whose span holds `hls` (ticks), or null. */
export function cueAt(cues, hls) {
  let lo = 0;
  let hi = cues.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cues[mid].end <= hls) lo = mid + 1;
    else if (cues[mid].start > hls) hi = mid - 1;
    else return cues[mid];
  }
  return null;
}

/**
 * Row thumbnails: `img(m)` gives the `<img>` for a marker row; its picture is asked for once the
 * row is on screen and `ready(m)` says the marker's segment is published, two at a time.
 */
export class RowThumbs {
  constructor({ stream, ready }) {
    this.stream = stream;
    this.ready = ready;
    this.waiting = [];
    this.loading = 0;
    this.visible = new Set();
    this.observer = typeof IntersectionObserver === 'function'
      ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          if (e.isIntersecting) this.visible.add(e.target);
          else this.visible.delete(e.target);
        }
        this.pump();
      })
      : null;
  }

  img(m) {
    const img = document.createElement('img');
    img.className = 'hm-row-thumb';
    img.alt = '';
    img.loading = 'lazy';
    img.decoding = 'async';
    img.width = ROW_THUMB_WIDTH / 2;
    img.height = Math.round((ROW_THUMB_WIDTH / 2) * 9 / 16);
    img.dataset.src = `/markers/${encodeURIComponent(m.id)}/thumbnail.jpg?stream=${encodeURIComponent(this.stream())}&width=${ROW_THUMB_WIDTH}`;
    img.hmMarker = m;
    this.waiting.push(img);
    if (this.observer) this.observer.observe(img);
    else this.visible.add(img);
    return img;
  }

  /** Starts the loads that may start (call when markers or the live edge change). */
  pump() {
    for (const img of [...this.waiting]) {
      if (this.loading >= ROW_THUMBS_AT_ONCE) return;
      if (!img.isConnected || !this.visible.has(img) || !this.ready(img.hmMarker)) continue;
      this.waiting.splice(this.waiting.indexOf(img), 1);
      this.loading += 1;
      const done = () => {
        this.loading -= 1;
        this.observer?.unobserve(img);
        this.pump();
      };
      img.addEventListener('load', done, { once: true });
      img.addEventListener('error', () => {
        // Outside the retention, or the server is busy: no picture, the row stays as it was.
        img.hidden = true;
        done();
      }, { once: true });
      img.src = img.dataset.src;
    }
  }

  /** Forgets every row (a stream switch). */
  clear() {
    for (const img of this.waiting) this.observer?.unobserve(img);
    this.waiting = [];
    this.visible.clear();
  }
}

/**
 * The tile under the pointer while it hovers the seek bar. `hlsAtBar(fraction)` maps a position
 * along the bar (0..1) to HLS ticks, `range()` gives `[from, to)` ticks of the bar (or null).
 */
export class SeekPreview {
  constructor({ seekBar, stream, hlsAtBar, range }) {
    this.seekBar = seekBar;
    this.stream = stream;
    this.hlsAtBar = hlsAtBar;
    this.range = range;
    this.cues = [];
    this.trackFor = null;
    this.readAt = 0;
    this.reading = null;
    /** What the last hover showed: `{ hls, cue }` (the test hook reads it). */
    this.last = null;
    const el = document.createElement('div');
    el.className = 'hm-seek-preview';
    el.hidden = true;
    el.setAttribute('aria-hidden', 'true');
    const frame = document.createElement('div');
    frame.className = 'hm-seek-preview-frame';
    const img = document.createElement('img');
    img.alt = '';
    frame.appendChild(img);
    el.appendChild(frame);
    this.el = el;
    this.frame = frame;
    this.img = img;
    const bar = seekBar?.el();
    if (!bar) return;
    bar.appendChild(el);
    // The pointer may stop right where it enters (the control bar appears under a resting
    // pointer): show the tile there as well.
    bar.addEventListener('pointerenter', (e) => {
      this.refresh();
      this.hover(e);
    });
    bar.addEventListener('pointermove', (e) => this.hover(e));
    bar.addEventListener('pointerleave', () => {
      this.hovering = false;
      this.hide();
    });
  }

  /** Reads the track of the bar's range again if it is older than a second (or of another stream). */
  refresh(force = false) {
    const name = this.stream();
    const fresh = this.trackFor === name && performance.now() - this.readAt < TRACK_MAX_AGE_MS;
    if ((fresh && !force) || this.reading) return this.reading ?? Promise.resolve();
    const r = this.range();
    const q = new URLSearchParams();
    if (r) {
      q.set('from', (r[0] / 90000).toFixed(6));
      q.set('to', (r[1] / 90000).toFixed(6));
    }
    const url = new URL(`/thumbs/${encodeURIComponent(name)}.vtt?${q}`, location.href).href;
    this.reading = fetch(url)
      .then((res) => (res.ok ? res.text() : ''))
      .then((text) => {
        if (this.stream() !== name) return;
        this.cues = parseThumbsVtt(text, url);
        this.trackFor = name;
        this.readAt = performance.now();
      })
      .catch(() => {})
      .finally(() => { this.reading = null; });
    return this.reading;
  }

  hover(e) {
    this.pointerX = e.clientX;
    this.hovering = true;
    this.hoverAt(e.clientX);
  }

  hoverAt(clientX) {
    const rect = this.seekBar.el().getBoundingClientRect();
    if (!(rect.width > 0)) return;
    const fraction = Math.min(1, Math.max(0, (clientX - rect.left) / rect.width));
    const hls = this.hlsAtBar(fraction);
    if (hls === null) return this.hide();
    const cue = this.trackFor === this.stream() ? cueAt(this.cues, hls) : null;
    this.last = { hls, cue };
    if (!cue && !this.reading && performance.now() - this.readAt > 300) {
      // Newer than the track (a segment finished since it was read): read it again and show
      // the tile if the pointer is still on the bar.
      this.refresh(true).then(() => { if (this.hovering) this.hoverAt(this.pointerX); });
    }
    this.show(hls, cue, fraction);
  }

  show(hls, cue, fraction) {
    if (!cue) {
      this.el.hidden = true;
      return;
    }
    const w = cue.w ?? 160;
    const h = cue.h ?? 90;
    this.frame.style.width = `${w}px`;
    this.frame.style.height = `${h}px`;
    this.img.style.transform = `translate(${-cue.x}px, ${-cue.y}px)`;
    if (this.img.getAttribute('src') !== cue.url) this.img.src = cue.url;
    Object.assign(this.el.dataset, { seq: String(cue.seq), start: String(cue.start), end: String(cue.end), hls: String(hls) });
    // Centred on the pointer, kept inside the bar.
    const barWidth = this.seekBar.el().clientWidth;
    const left = Math.min(Math.max(fraction * barWidth, w / 2), Math.max(w / 2, barWidth - w / 2));
    this.el.style.left = `${left}px`;
    this.el.hidden = false;
  }

  hide() {
    this.el.hidden = true;
  }

  /** Forgets the track (a stream switch). */
  clear() {
    this.cues = [];
    this.trackFor = null;
    this.last = null;
    this.hide();
  }
}
