// The timeline under the player (issue 16): one bar from the start of the retention to the live
// edge, zoomable from the whole retention (hours) down to single frames, with the markers as
// coloured ticks, the gaps where the source was down, the position of the frame on screen and a
// readout of the time under the pointer (local, UTC, HLS). Ticks are painted on a canvas (100,000
// markers cost one pass over a sorted array, one path per colour); only what takes focus is DOM
// (the bar itself as a slider, the zoom buttons). What a click means (which playlist, which frame)
// is main.js's job: this module reports `onSeek({ hls, marker })` with the frame's exact ticks.
//
// The axis is the wall clock (clock.js `wallOf`: 90 kHz ticks since the first epoch's UTC start),
// so the time a source was down is a gap (HLS time runs on across a restart). What goes in and out
// (markers, clicks, the position) is HLS ticks (integers); the view's bounds and pixel positions
// are floats (the edge).

import { ticksToSecs } from './clock.js';

/** Height of the bar in CSS px: axis labels on top, the track below. */
const AXIS_H = 16;
const TRACK_H = 36;
/** A click this close to a tick (px) is a click on the tick. */
const HIT_PX = 5;
/** The widest a frame gets (px): the deepest zoom. */
const MAX_FRAME_PX = 48;
/** From this many px per frame the view counts as frame level (Left/Right step frames). */
export const FRAME_LEVEL_PX = 6;
/** Zoom factor of one button press or key. */
const ZOOM_STEP = 4;

const COLORS = {
  bg: '#0d1014',
  span: '#2a3440',
  gap: '#000000',
  gapStripe: '#5a2630',
  axis: '#9aa6b2',
  grid: 'rgba(154, 166, 178, 0.25)',
  frame: 'rgba(232, 236, 241, 0.18)',
  head: '#ffffff',
  selected: '#38e0d4',
};

/** Axis steps in seconds (a frame step is added at frame zoom). */
const STEPS_S = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** "2026-12-02 13:05:04.123" in the viewer's time zone, and its offset "UTC+05:30". */
export function formatLocal(ms) {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const zone = `UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return { text, zone };
}

/** "2026-12-02 07:35:04.123" in UTC. */
export function formatUtcMs(ms) {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('aria-') || k.startsWith('data-') || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

/**
 * The timeline. `source` gives what it draws, read at every draw:
 *  - `clock()`: the stream's clock.Timeline (epochs, frame grid, UTC), or null;
 *  - `range()`: `{ start, end }` ticks (start of the retention, live edge now), or null;
 *  - `position()`: ticks of the frame on screen, or null;
 *  - `markers()`: every marker, newest first (read again after `markersChanged()`);
 *  - `markerHls(m)`, `matches(m)`, `color(m)`, `severity(m)`, `describe(m)`, `selected()`;
 * `onSeek({ hls, marker })` a click (hls: the frame's start), `onStep(k)` Left/Right at frame level.
 */
export class TimelineBar {
  constructor({ parent, source, onSeek, onStep }) {
    this.source = source;
    this.onSeek = onSeek;
    this.onStep = onStep;
    /** The view in wall ticks (floats) and whether it follows the live edge / shows everything. */
    this.v0 = 0;
    this.v1 = 0;
    this.follow = true;
    this.whole = true;
    this.lastPos = null;
    this.hoverX = null;
    /** Markers ascending by time: wall ticks, the marker, its colour index, severity flag, shown. */
    this.hls = new Float64Array(0);
    this.dur = new Float64Array(0);
    this.list = [];
    this.colorIdx = new Uint16Array(0);
    this.critical = new Uint8Array(0);
    this.shown = new Uint8Array(0);
    this.palette = [];
    this.markersDirty = true;
    this.filterDirty = true;
    /** Timings of the last draw (ms) and ticks painted, for the benchmark and the tests. */
    this.stats = { drawMs: 0, indexMs: 0, ticks: 0, inView: 0 };
    this.scheduled = false;

    this.canvas = el('canvas', { class: 'hm-tl-canvas', 'aria-hidden': 'true' });
    this.track = el('div', {
      class: 'hm-tl-track', tabIndex: 0, role: 'slider', 'aria-label': 'Timeline: the retained video from its start to live',
      'aria-valuemin': '0', 'aria-valuemax': '0', 'aria-valuenow': '0',
    }, this.canvas);
    this.track.setAttribute('aria-keyshortcuts', 'ArrowLeft ArrowRight + - 0 Home End , .');
    const btn = (label, text, fn) => {
      const b = el('button', { type: 'button', class: 'hm-button hm-tl-btn', title: label, 'aria-label': label }, text);
      b.addEventListener('click', fn);
      return b;
    };
    this.zoomOutBtn = btn('Zoom the timeline out', '\u2212', () => this.zoomBy(ZOOM_STEP, this.anchorX()));
    this.zoomInBtn = btn('Zoom the timeline in', '+', () => this.zoomBy(1 / ZOOM_STEP, this.anchorX()));
    this.allBtn = btn('Show the whole retention', 'All', () => this.showAll());
    this.framesBtn = btn('Zoom to single frames at the position', 'Frames', () => this.zoomToFrames());
    this.span = el('span', { class: 'hm-tl-span' });
    this.readout = el('p', { class: 'hm-tl-readout', 'aria-live': 'off' });
    this.root = el('div', { class: 'hm-timeline' },
      el('div', { class: 'hm-tl-tools' }, this.zoomOutBtn, this.zoomInBtn, this.allBtn, this.framesBtn, this.span),
      this.track, this.readout);
    parent.append(this.root);

    this.bindPointer();
    this.bindKeys();
    new ResizeObserver(() => this.invalidate()).observe(this.track);
  }

  // --- data ----------------------------------------------------------------------------------------

  markersChanged() { this.markersDirty = true; this.invalidate(); }

  filterChanged() { this.filterDirty = true; this.invalidate(); }

  /** Rebuilds the sorted arrays (markers changed) and the shown/colour flags (filter changed). */
  index() {
    const clock = this.source.clock();
    // A re-read timeline (a new epoch) may move markers on the wall axis.
    if (clock !== this.indexedClock) this.markersDirty = true;
    if (!this.markersDirty && !this.filterDirty) return;
    const t0 = performance.now();
    const s = this.source;
    if (this.markersDirty) {
      this.indexedClock = clock;
      const desc = s.markers();
      const n = desc.length;
      this.list = new Array(n);
      this.hls = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const m = desc[n - 1 - i];
        this.list[i] = m;
        this.hls[i] = clock ? clock.wallOf(s.markerHls(m)) : s.markerHls(m);
      }
      // The event's extent (a marker's `duration`), ticks: a faint band after the tick when zoomed in.
      this.dur = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const m = this.list[i];
        this.dur[i] = Number.isFinite(m.duration_90k) ? m.duration_90k : Math.round(Number(m.duration ?? 0) * 90000) || 0;
      }
      this.colorIdx = new Uint16Array(n);
      this.critical = new Uint8Array(n);
      this.shown = new Uint8Array(n);
      // Colour and severity depend only on (color, severity): resolved once per distinct pair.
      const colors = new Map();
      const byKey = new Map();
      this.palette = [];
      for (let i = 0; i < n; i++) {
        const m = this.list[i];
        const key = m.color ? `${m.color}|${m.severity}` : m.severity;
        let k = byKey.get(key);
        if (k === undefined) {
          const c = s.color(m);
          k = colors.get(c);
          if (k === undefined) {
            k = this.palette.length;
            colors.set(c, k);
            this.palette.push(c);
          }
          k = k * 2 + (s.severity(m) === 'critical' ? 1 : 0);
          byKey.set(key, k);
        }
        this.colorIdx[i] = k >> 1;
        this.critical[i] = k & 1;
      }
      this.filterDirty = true;
      this.markersDirty = false;
    }
    if (this.filterDirty) {
      for (let i = 0; i < this.list.length; i++) this.shown[i] = s.matches(this.list[i]) ? 1 : 0;
      this.filterDirty = false;
    }
    this.stats.indexMs = performance.now() - t0;
    this.stats.indexedAt = performance.now();
  }

  /** First index with a wall time >= t. */
  lowerBound(t) {
    let lo = 0;
    let hi = this.hls.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.hls[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // --- view ----------------------------------------------------------------------------------------

  width() { return this.track.clientWidth || 1; }

  scale() { return this.width() / Math.max(1, this.v1 - this.v0); }

  /** Wall ticks <-> CSS px from the bar's left. */
  xOf(w) { return (w - this.v0) * this.scale(); }

  wallAtX(x) { return this.v0 + x / this.scale(); }

  /** HLS tick -> px, or null without a clock. */
  xOfHls(hls) {
    const clock = this.source.clock();
    return clock ? this.xOf(clock.wallOf(hls)) : null;
  }

  /** px -> `{ hls, gap }` (in a gap: the nearer frame of the video beside it), or null. */
  atX(x) {
    const clock = this.source.clock();
    return clock ? clock.hlsAtWall(this.wallAtX(x)) : null;
  }

  /** px -> HLS tick (the hover tiles; in a gap the nearer frame), or null. */
  hlsAtX(x) {
    return this.atX(x)?.hls ?? null;
  }

  /** The retained range on the wall axis `{ start, end }`, or null. */
  wallRange() {
    const clock = this.source.clock();
    const r = this.source.range();
    if (!clock || !r) return null;
    return { start: clock.wallOf(r.start), end: clock.wallOf(r.end) };
  }

  /** One frame of the epoch in the middle of the view (an imported file may run at another rate). */
  frameTicks() {
    const clock = this.source.clock();
    if (!clock) return 3000;
    if (!(this.v1 > this.v0)) return clock.frameTicks();
    return clock.frameTicks(clock.epochAtHls(clock.hlsAtWall((this.v0 + this.v1) / 2).hls));
  }

  /** The narrowest view: MAX_FRAME_PX per frame. */
  minSpan() { return (this.width() / MAX_FRAME_PX) * this.frameTicks(); }

  atFrameLevel() { return this.frameTicks() * this.scale() >= FRAME_LEVEL_PX; }

  /** Keeps the view inside [start of retention, live edge] and at least minSpan wide. */
  clampView() {
    const r = this.wallRange();
    if (!r) return;
    const total = Math.max(this.minSpan(), r.end - r.start);
    // A little room after the edge so the newest tick and the playhead at live stay visible.
    const room = (v) => v * 0.01;
    let span = Math.min(Math.max(this.v1 - this.v0, this.minSpan()), total + room(total));
    if (this.whole || span >= total) {
      this.whole = true;
      this.v0 = r.start;
      this.v1 = r.start + total + room(total);
      return;
    }
    if (this.follow) {
      this.v1 = r.end + room(span);
      this.v0 = this.v1 - span;
    }
    span = this.v1 - this.v0;
    if (this.v0 < r.start) {
      this.v0 = r.start;
      this.v1 = r.start + span;
    }
    if (this.v1 > r.end + room(span)) {
      this.v1 = r.end + room(span);
      this.v0 = this.v1 - span;
    }
  }

  /** After a zoom or pan by the viewer: follow live again when the view reaches the edge. */
  settle() {
    const r = this.wallRange();
    this.whole = false;
    if (r) this.follow = this.v1 >= r.end;
    this.clampView();
    this.invalidate();
  }

  /** Where zoom buttons and keys zoom around: the position when it is in view, else the middle. */
  anchorX() {
    const p = this.lastPos;
    const x = p === null ? null : this.xOfHls(p);
    return x !== null && x >= 0 && x <= this.width() ? x : this.width() / 2;
  }

  /** Zooms by `factor` (< 1 in) keeping the time under `x` where it is. */
  zoomBy(factor, x = this.width() / 2) {
    const at = this.wallAtX(x);
    const span = Math.max(this.minSpan(), (this.v1 - this.v0) * factor);
    const frac = x / this.width();
    this.v0 = at - frac * span;
    this.v1 = this.v0 + span;
    const r = this.wallRange();
    this.settle();
    // Zooming out at the live end keeps following it.
    if (factor > 1 && r && this.v1 >= r.end - (this.v1 - this.v0) * 0.02) this.follow = true;
  }

  /** Shows [from, to) HLS ticks (the hook, tests and the benchmark). */
  zoomTo(from, to) {
    const clock = this.source.clock();
    this.v0 = clock ? clock.wallOf(from) : from;
    this.v1 = Math.max(clock ? clock.wallOf(to) : to, this.v0 + 1);
    this.settle();
  }

  showAll() {
    this.whole = true;
    this.follow = true;
    this.clampView();
    this.invalidate();
  }

  /** Frame level (the deepest zoom) centred on the position. */
  zoomToFrames() {
    const span = this.minSpan();
    const clock = this.source.clock();
    const at = this.lastPos !== null && clock ? clock.wallOf(this.lastPos) : this.wallAtX(this.width() / 2);
    this.v0 = at - span / 2;
    this.v1 = at + span / 2;
    this.settle();
  }

  panPx(dx) {
    const dt = dx / this.scale();
    this.v0 += dt;
    this.v1 += dt;
    this.settle();
  }

  // --- input ---------------------------------------------------------------------------------------

  bindPointer() {
    const t = this.track;
    let down = null;
    const localX = (e) => e.clientX - t.getBoundingClientRect().left;
    t.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      down = { x: localX(e), v0: this.v0, v1: this.v1, dragged: false, id: e.pointerId };
      t.setPointerCapture?.(e.pointerId);
    });
    t.addEventListener('pointermove', (e) => {
      this.hoverX = localX(e);
      if (down && (down.dragged || Math.abs(localX(e) - down.x) > 3)) {
        down.dragged = true;
        const dt = (down.x - localX(e)) / (this.width() / (down.v1 - down.v0));
        this.v0 = down.v0 + dt;
        this.v1 = down.v1 + dt;
        this.settle();
        this.track.classList.add('hm-dragging');
      }
      this.showReadout();
    });
    t.addEventListener('pointerup', (e) => {
      const d = down;
      down = null;
      this.track.classList.remove('hm-dragging');
      if (!d || d.dragged) return;
      this.click(localX(e));
    });
    t.addEventListener('pointercancel', () => { down = null; });
    t.addEventListener('pointerleave', () => {
      this.hoverX = null;
      this.showReadout();
    });
    t.addEventListener('wheel', (e) => {
      e.preventDefault();
      const px = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? this.width() : 1;
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY) || e.shiftKey) {
        this.panPx((e.shiftKey ? e.deltaY : e.deltaX) * px);
      } else {
        this.zoomBy(Math.exp(e.deltaY * px * 0.002), localX(e));
      }
      this.hoverX = localX(e);
      this.showReadout();
    }, { passive: false });
  }

  bindKeys() {
    this.track.addEventListener('keydown', (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      let done = true;
      switch (e.key) {
        case '+': case '=': this.zoomBy(1 / ZOOM_STEP, this.anchorX()); break;
        case '-': case '_': this.zoomBy(ZOOM_STEP, this.anchorX()); break;
        case '0': this.showAll(); break;
        case 'Home': {
          const r = this.wallRange();
          if (r) {
            const span = this.v1 - this.v0;
            this.v0 = r.start;
            this.v1 = r.start + span;
            this.settle();
          }
          break;
        }
        case 'End': this.follow = true; this.clampView(); this.invalidate(); break;
        case 'ArrowLeft':
        case 'ArrowRight': {
          const dir = e.key === 'ArrowLeft' ? -1 : 1;
          if (this.atFrameLevel()) this.onStep?.(dir);
          else this.panPx(dir * this.width() * 0.1);
          break;
        }
        case 'Enter': case ' ': if (this.lastPos !== null) this.onSeek?.({ hls: this.lastPos, marker: null }); break;
        default: done = false;
      }
      if (done) {
        e.preventDefault();
        e.stopPropagation();
      }
    });
  }

  /** The nearest shown marker within HIT_PX of x, or null. */
  markerNear(x) {
    this.index();
    const lo = this.lowerBound(this.wallAtX(x - HIT_PX));
    const hiT = this.wallAtX(x + HIT_PX);
    let best = null;
    let bestD = Infinity;
    for (let i = lo; i < this.hls.length && this.hls[i] <= hiT; i++) {
      if (!this.shown[i]) continue;
      const d = Math.abs(this.xOf(this.hls[i]) - x) - (this.critical[i] ? 1 : 0);
      if (d < bestD) {
        bestD = d;
        best = this.list[i];
      }
    }
    return best;
  }

  click(x) {
    const m = this.markerNear(x);
    if (m) {
      this.onSeek?.({ hls: this.source.markerHls(m), marker: m });
      return;
    }
    const clock = this.source.clock();
    const r = this.source.range();
    const at = this.atX(x);
    if (!clock || !r || !at) return;
    const hls = Math.min(Math.max(at.hls, r.start), r.end - 1);
    this.onSeek?.({ hls: clock.frameStartAt(hls), marker: null });
  }

  /** The readout line: the time under the pointer (or of the position). */
  showReadout() {
    const clock = this.source.clock();
    const x = this.hoverX;
    if (!clock || (x === null && this.lastPos === null)) {
      this.readout.textContent = '';
      return;
    }
    const w = x !== null ? this.wallAtX(x) : clock.wallOf(this.lastPos);
    const at = clock.hlsAtWall(w);
    const inGap = at.gap;
    const hls = at.hls;
    const utc = clock.utcMsOfWall(w);
    const parts = [x !== null ? 'Pointer' : 'Position'];
    if (utc !== null) {
      const loc = formatLocal(utc);
      parts.push(`${loc.text} local (${loc.zone})`, `${formatUtcMs(utc)} UTC`);
    }
    if (inGap) parts.push('no video (source down)');
    else parts.push(`HLS ${ticksToSecs(hls).toFixed(3)} s`);
    const m = x !== null ? this.markerNear(x) : null;
    if (m) parts.push(`marker: ${this.source.describe(m)}`);
    const text = parts.join(' \u00b7 ');
    if (this.readout.textContent !== text) this.readout.textContent = text;
    this.readout.dataset.hls = inGap ? '' : String(Math.round(hls));
    this.readout.dataset.utcMs = utc === null ? '' : String(utc);
  }

  // --- drawing -------------------------------------------------------------------------------------

  invalidate() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  /** Paints everything now; returns the milliseconds it took. */
  draw() {
    const t0 = performance.now();
    const pos = this.source.position();
    if (pos !== null) this.lastPos = pos;
    this.index();
    const w = this.width();
    const h = AXIS_H + TRACK_H;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.round(w * dpr);
    const ch = Math.round(h * dpr);
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw;
      this.canvas.height = ch;
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
    }
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = COLORS.bg;
    ctx.fillRect(0, 0, w, h);
    const clock = this.source.clock();
    const r = this.wallRange();
    if (!clock || !r) {
      this.stats.drawMs = performance.now() - t0;
      return this.stats.drawMs;
    }
    this.clampView();
    const scale = this.scale();
    const X = (t) => (t - this.v0) * scale;
    const y0 = AXIS_H;

    // Recorded spans and gaps.
    const { spans, gaps } = clock.wallCoverage(Math.max(r.start, this.v0), Math.min(r.end, this.v1));
    this.lastGaps = clock.wallCoverage(r.start, r.end).gaps;
    ctx.fillStyle = COLORS.span;
    for (const [a, b] of spans) ctx.fillRect(X(a), y0, Math.max(1, X(b) - X(a)), TRACK_H);
    for (const [a, b] of gaps) {
      const xa = X(a);
      const xb = X(b);
      ctx.fillStyle = COLORS.gap;
      ctx.fillRect(xa, y0, Math.max(1, xb - xa), TRACK_H);
      ctx.save();
      ctx.beginPath();
      ctx.rect(xa, y0, Math.max(1, xb - xa), TRACK_H);
      ctx.clip();
      ctx.strokeStyle = COLORS.gapStripe;
      ctx.lineWidth = 2;
      ctx.beginPath();
      for (let sx = xa - TRACK_H; sx < xb; sx += 8) {
        ctx.moveTo(sx, y0 + TRACK_H);
        ctx.lineTo(sx + TRACK_H, y0);
      }
      ctx.stroke();
      ctx.restore();
    }

    this.drawAxis(ctx, clock, w, scale);

    // Frame cells at frame zoom.
    const ft = this.frameTicks();
    if (ft * scale >= FRAME_LEVEL_PX) {
      ctx.fillStyle = COLORS.frame;
      let f = clock.frameStartAt(clock.hlsAtWall(Math.max(r.start, this.v0)).hls);
      for (let n = 0; n < 2000 && clock.wallOf(f) < this.v1; n++) {
        ctx.fillRect(Math.round(X(clock.wallOf(f))), y0, 1, TRACK_H);
        const next = clock.stepFrames(f, 1);
        if (next <= f) break;
        f = next;
      }
    }

    // Ticks: one path per colour, at most one tick per pixel column and colour; critical ones
    // wider and on top.
    const lo = this.lowerBound(this.v0 - HIT_PX / scale);
    const hiT = this.v1 + HIT_PX / scale;
    const cols = Math.ceil(w) + 8;
    const seen = new Uint8Array(this.palette.length * cols * 2);
    const paths = this.palette.map(() => [[], []]);
    let inView = 0;
    let painted = 0;
    for (let i = lo; i < this.hls.length && this.hls[i] <= hiT; i++) {
      if (!this.shown[i]) continue;
      inView += 1;
      const col = Math.round(X(this.hls[i])) + 4;
      if (col < 0 || col >= cols) continue;
      const c = this.colorIdx[i];
      const crit = this.critical[i];
      const key = (c * 2 + crit) * cols + col;
      if (seen[key]) continue;
      seen[key] = 1;
      paths[c][crit].push(col - 4);
      painted += 1;
    }
    // Extents: only when few ticks are in view (each is its own rectangle).
    if (inView <= 2000) {
      ctx.globalAlpha = 0.35;
      for (let i = lo; i < this.hls.length && this.hls[i] <= hiT; i++) {
        if (!this.shown[i] || !(this.dur[i] > 0)) continue;
        const xa = X(this.hls[i]);
        const wpx = this.dur[i] * scale;
        if (wpx < 3) continue;
        ctx.fillStyle = this.palette[this.colorIdx[i]];
        ctx.fillRect(xa, y0 + TRACK_H - 7, wpx, 4);
      }
      ctx.globalAlpha = 1;
    }
    for (const crit of [0, 1]) {
      const wpx = crit ? 4 : 2;
      for (let c = 0; c < paths.length; c++) {
        const xs = paths[c][crit];
        if (!xs.length) continue;
        ctx.fillStyle = this.palette[c];
        ctx.beginPath();
        for (const x of xs) ctx.rect(x - wpx / 2, y0 + (crit ? 0 : 3), wpx, TRACK_H - (crit ? 0 : 6));
        ctx.fill();
      }
    }
    // The selected marker: a ring in the accent colour.
    const sel = this.source.selected();
    if (sel !== null && sel !== undefined) {
      const x = X(clock.wallOf(sel));
      if (x >= -4 && x <= w + 4) {
        ctx.strokeStyle = COLORS.selected;
        ctx.lineWidth = 2;
        ctx.strokeRect(x - 4, y0 + 1, 8, TRACK_H - 2);
      }
    }
    this.stats.ticks = painted;
    this.stats.inView = inView;

    // The position: a white line with a notch on the axis.
    if (this.lastPos !== null) {
      const x = X(clock.wallOf(this.lastPos) + ft / 2);
      if (x >= -2 && x <= w + 2) {
        ctx.fillStyle = COLORS.head;
        ctx.fillRect(Math.round(x) - 1, y0 - 4, 2, TRACK_H + 4);
        ctx.beginPath();
        ctx.moveTo(x - 5, y0 - 6);
        ctx.lineTo(x + 5, y0 - 6);
        ctx.lineTo(x, y0);
        ctx.fill();
      }
    }

    this.updateAria(clock, this.source.range());
    this.showReadout();
    this.stats.drawMs = performance.now() - t0;
    return this.stats.drawMs;
  }

  drawAxis(ctx, clock, w, scale) {
    const ft = this.frameTicks();
    const minPx = 90;
    let stepTicks = null;
    let frames = false;
    for (const k of [1, 2, 5, 10]) {
      if (k * ft * scale >= minPx) {
        stepTicks = k * ft;
        frames = true;
        break;
      }
    }
    if (stepTicks === null) {
      for (const s of STEPS_S) {
        if (s * 90000 * scale >= minPx) {
          stepTicks = s * 90000;
          break;
        }
      }
    }
    if (stepTicks === null) stepTicks = 86400 * 90000;
    // Grid on the wall clock (whole seconds of local time); at frame zoom on the frame grid of
    // the epoch in the middle of the view.
    const off = clock.wallBase; // utc ms = w / 90 + off
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'top';
    let first;
    if (frames) first = clock.wallOf(clock.frameStartAt(clock.hlsAtWall(Math.max(this.v0, this.wallRange()?.start ?? this.v0)).hls));
    else {
      const stepMs = stepTicks / 90;
      const tz = -new Date(this.v0 / 90 + off).getTimezoneOffset() * 60000;
      const ms0 = Math.ceil((this.v0 / 90 + off + tz) / stepMs) * stepMs - tz;
      first = (ms0 - off) * 90;
    }
    for (let t = first, n = 0; t <= this.v1 && n < 200; t += stepTicks, n++) {
      const x = (t - this.v0) * scale;
      ctx.fillStyle = COLORS.grid;
      ctx.fillRect(Math.round(x), AXIS_H - 4, 1, TRACK_H + 4);
      const ms = t / 90 + off;
      const loc = formatLocal(ms).text;
      let label;
      if (frames) label = `${loc.slice(11, 23)}`;
      else if (stepTicks >= 86400 * 90000) label = loc.slice(0, 10);
      else if (stepTicks >= 60 * 90000) label = loc.slice(11, 16);
      else if (stepTicks >= 90000) label = loc.slice(11, 19);
      else label = loc.slice(11, 22);
      ctx.fillStyle = COLORS.axis;
      ctx.fillText(label, Math.round(x) + 3, 1);
    }
    const spanS = (this.v1 - this.v0) / 90000;
    const text = frames || spanS < 2 ? `${Math.round((this.v1 - this.v0) / ft)} frames shown` : `${formatSpan(spanS)} shown`;
    if (this.span.textContent !== text) this.span.textContent = text;
    this.root.dataset.frameLevel = String(ft * scale >= FRAME_LEVEL_PX);
  }

  updateAria(clock, r) {
    const t = this.track;
    const min = ticksToSecs(r.start).toFixed(3);
    const max = ticksToSecs(r.end).toFixed(3);
    if (t.getAttribute('aria-valuemin') !== min) t.setAttribute('aria-valuemin', min);
    if (t.getAttribute('aria-valuemax') !== max) t.setAttribute('aria-valuemax', max);
    if (this.lastPos === null) return;
    const now = ticksToSecs(this.lastPos).toFixed(3);
    if (t.getAttribute('aria-valuenow') !== now) {
      t.setAttribute('aria-valuenow', now);
      const utc = clock.utcMsAt(this.lastPos);
      t.setAttribute('aria-valuetext', utc === null ? `${now} s` : `${formatLocal(utc).text} local, ${formatUtcMs(utc)} UTC`);
    }
  }

  /** Where marker `id`'s tick is (CSS px from the bar's left), or null when it is not drawn. */
  tickX(id) {
    this.index();
    for (let i = 0; i < this.list.length; i++) {
      if (this.list[i].id !== id) continue;
      if (!this.shown[i]) return null;
      const x = this.xOf(this.hls[i]);
      return x >= 0 && x <= this.width() ? x : null;
    }
    return null;
  }

  /**
   * What the canvas shows of marker `id` after a draw now (tests): `{ x, color, critical, pixel,
   * width, crowded }` (pixel: 'rgb(r, g, b)' painted at the tick's centre; width: px of that colour
   * in a row there; crowded: another shown marker within 3 px), or null when it is not drawn.
   */
  probe(id) {
    this.draw();
    const x = this.tickX(id);
    if (x === null) return null;
    const i = this.list.findIndex((m) => m.id === id);
    const ctx = this.canvas.getContext('2d', { willReadFrequently: true });
    const dpr = window.devicePixelRatio || 1;
    const y = Math.round((AXIS_H + TRACK_H / 2) * dpr);
    const cx = Math.round(Math.round(x) * dpr);
    const row = ctx.getImageData(Math.max(0, cx - 12), y, 25, 1).data;
    const at = (k) => [row[k * 4], row[k * 4 + 1], row[k * 4 + 2]];
    const mid = Math.min(12, cx);
    const p = at(mid);
    let width = 0;
    for (let k = 0; k < 25; k++) {
      const q = at(k);
      if (q[0] === p[0] && q[1] === p[1] && q[2] === p[2]) width += 1;
    }
    let crowded = false;
    for (let j = 0; j < this.list.length; j++) {
      if (j !== i && this.shown[j] && Math.abs(this.xOf(this.hls[j]) - x) < 3) crowded = true;
    }
    return {
      x, color: this.palette[this.colorIdx[i]], critical: Boolean(this.critical[i]),
      pixel: `rgb(${p.join(', ')})`, width: width / dpr, crowded,
    };
  }

  /** The colour painted at CSS px (x, y) of the canvas after a draw now (tests). */
  pixelAt(x, y = AXIS_H + TRACK_H / 2) {
    this.draw();
    const dpr = window.devicePixelRatio || 1;
    const d = this.canvas.getContext('2d', { willReadFrequently: true }).getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data;
    return `rgb(${d[0]}, ${d[1]}, ${d[2]})`;
  }

  /** The view `{ from, to, frameLevel, follow, whole }` (ticks) and the gaps of the retention. */
  view() {
    const clock = this.source.clock();
    const utc = (w) => clock?.utcMsOfWall(w) ?? null;
    return {
      from: this.v0, to: this.v1, frameLevel: this.atFrameLevel(), follow: this.follow, whole: this.whole,
      gaps: this.lastGaps ?? [], gapsUtc: (this.lastGaps ?? []).map(([a, b]) => [utc(a), utc(b)]),
    };
  }

  /** Forgets the stream (a switch): the view shows everything again. */
  reset() {
    this.list = [];
    this.hls = new Float64Array(0);
    this.dur = new Float64Array(0);
    this.markersDirty = true;
    this.lastPos = null;
    this.whole = true;
    this.follow = true;
    this.readout.textContent = '';
    this.invalidate();
  }
}

function formatSpan(s) {
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(Math.round(s % 60))} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.round((s % 3600) / 60))} min`;
}
