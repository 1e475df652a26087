// The browser side of the clock model (see crates/clock/src/timeline.rs and design/time.md).
//
// Media time is kept in integer 90 kHz ticks (`hls_90k` in the API) and only turned into float
// seconds at the very edge (`video.currentTime`). A player's timeline (CLIENT) starts at zero at
// some HLS time `zero` (for hls.js: the initPTS of its discontinuity sequence); from there it is the
// sum of the media it has seen, so `client = (hls - zero) - gaps`, where gaps are the parts of closed
// epochs that their short final segment did not cover. With one epoch and constant segment duration D
// this is the proof of concept's `client = hls - S * D`, S being the join sequence.

export const TICKS_PER_SECOND = 90000;

/** Seconds (JSON edge) to ticks. */
export function secsToTicks(s) {
  return Math.round(Number(s) * TICKS_PER_SECOND);
}

/** Ticks to seconds (the only place a float is made from a tick count). */
export function ticksToSecs(t) {
  return t / TICKS_PER_SECOND;
}

/** Parses a frame rate given as a number, "30", "30000/1001" or {num, den}. */
export function parseFps(fps) {
  if (fps && typeof fps === 'object') {
    const num = Number(fps.num ?? fps.numerator);
    const den = Number(fps.den ?? fps.denominator ?? 1);
    if (num > 0 && den > 0) return { num, den };
  }
  if (typeof fps === 'string' && fps.includes('/')) {
    const [num, den] = fps.split('/').map(Number);
    if (num > 0 && den > 0) return { num, den };
  }
  const n = Number(fps);
  if (n > 0) {
    // 29.97 and friends: recognise the NTSC rates so frame math stays exact.
    for (const base of [24, 30, 60, 120]) {
      if (Math.abs(n - (base * 1000) / 1001) < 0.005) return { num: base * 1000, den: 1001 };
    }
    return { num: Math.round(n * 1000), den: 1000 };
  }
  return { num: 30, den: 1 };
}

function ticksField(obj, name) {
  if (obj == null) return undefined;
  const t = obj[`${name}_90k`];
  if (Number.isFinite(t)) return t;
  const s = obj[name];
  if (s !== null && s !== undefined && Number.isFinite(Number(s))) return secsToTicks(s);
  return undefined;
}

/**
 * The epochs of one stream as the API's `GET /timeline` reports them, with the conversions the page
 * needs. Every argument and result is in ticks unless the name says otherwise.
 */
export class Timeline {
  constructor(json) {
    this.stream = json.stream;
    this.fps = parseFps(json.fps);
    const defaultSeg = ticksField(json, 'segment_duration') ?? TICKS_PER_SECOND;
    const epochs = (json.epochs ?? []).map((e, i) => {
      const fps = e.fps !== undefined ? parseFps(e.fps) : this.fps;
      // Whole frames are exact; the float seconds are the fallback.
      let seg = Number.isFinite(e.segment_frames) && e.segment_frames > 0
        ? Math.round((e.segment_frames * TICKS_PER_SECOND * fps.den) / fps.num)
        : undefined;
      if (seg === undefined) seg = ticksField(e, 'segment_duration');
      return {
        index: Number.isFinite(e.index) ? e.index : i,
        firstSeq: Number(e.first_seq ?? 0),
        hlsStart: ticksField(e, 'hls_start') ?? 0,
        hlsEnd: ticksField(e, 'hls_end'),
        seg: seg ?? defaultSeg,
        fps,
        // Wall time of hlsStart in ms (the edge where UTC meets the tick clock), or null.
        utcStartMs: Number.isFinite(Date.parse(e.utc_start ?? '')) ? Date.parse(e.utc_start) : null,
      };
    });
    epochs.sort((a, b) => a.index - b.index);
    if (!epochs.length) {
      epochs.push({ index: 0, firstSeq: 0, hlsStart: 0, hlsEnd: undefined, seg: defaultSeg, fps: this.fps, utcStartMs: null });
    }
    this.epochs = epochs;
    this.segmentTicks = defaultSeg;
    // The wall-clock axis of the timeline ("wall ticks": 90 kHz since the first epoch's UTC start):
    // HLS time runs on across a source restart (no gap, design/time.md) while the wall clock does
    // not; on this axis the time the source was down is a gap. Without UTC anchors (an older
    // server) the axis is the HLS clock.
    this.wallByUtc = epochs.every((e) => e.utcStartMs !== null);
    this.wallBase = this.wallByUtc ? epochs[0].utcStartMs : 0;
  }

  /** Where epoch `e` starts on the wall axis (ticks; a float: an edge value). */
  wallStart(e) {
    return this.wallByUtc ? (e.utcStartMs - this.wallBase) * 90 : e.hlsStart;
  }

  /** End of epoch `i`'s media on the HLS clock (its next epoch's start while not closed; open: null). */
  epochEnd(i) {
    const e = this.epochs[i];
    if (Number.isFinite(e.hlsEnd)) return e.hlsEnd;
    return this.epochs[i + 1]?.hlsStart ?? null;
  }

  /** HLS tick -> the wall axis. */
  wallOf(hls) {
    const e = this.epochAtHls(hls);
    return this.wallStart(e) + (hls - e.hlsStart);
  }

  /** Wall axis -> UTC milliseconds (a float), or null without UTC anchors. */
  utcMsOfWall(w) {
    return this.wallByUtc ? this.wallBase + w / 90 : null;
  }

  /**
   * Wall axis -> `{ hls, gap }`: the HLS tick at that wall time, or, in a gap (the source was down)
   * or before the first epoch, the nearer frame of the video on either side with `gap: true`.
   */
  hlsAtWall(w) {
    let i = 0;
    for (let k = 0; k < this.epochs.length; k++) if (this.wallStart(this.epochs[k]) <= w) i = k;
    const e = this.epochs[i];
    const start = this.wallStart(e);
    if (w < start) return { hls: e.hlsStart, gap: true };
    const hls = Math.round(e.hlsStart + (w - start));
    const end = this.epochEnd(i);
    if (end === null || hls < end) return { hls, gap: false };
    const next = this.epochs[i + 1];
    const pastEnd = w - (start + (end - e.hlsStart));
    if (next && this.wallStart(next) - w < pastEnd) return { hls: next.hlsStart, gap: true };
    return { hls: this.lastFrameStart({ ...e, hlsEnd: end }), gap: true };
  }

  /**
   * The recorded spans and the gaps (source down) of the wall axis between `from` and `to` (wall
   * ticks): `{ spans: [[a, b]], gaps: [[a, b]] }`; the open (newest) epoch runs to `to`.
   */
  wallCoverage(from, to) {
    const spans = [];
    const gaps = [];
    for (let i = 0; i < this.epochs.length; i++) {
      const e = this.epochs[i];
      const start = this.wallStart(e);
      const endHls = this.epochEnd(i);
      const end = endHls === null ? to : start + (endHls - e.hlsStart);
      const a = Math.max(from, start);
      const b = Math.min(to, end);
      if (b > a) spans.push([a, b]);
      const next = this.epochs[i + 1];
      if (next && this.wallStart(next) > end) {
        const ga = Math.max(from, end);
        const gb = Math.min(to, this.wallStart(next));
        if (gb > ga) gaps.push([ga, gb]);
      }
    }
    return { spans, gaps };
  }

  /** Ticks of one frame at the stream's frame rate (not an integer for 30000/1001: 3003 exactly). */
  frameTicks(epoch = this.epochs[this.epochs.length - 1]) {
    return (TICKS_PER_SECOND * epoch.fps.den) / epoch.fps.num;
  }

  epochAtSeq(seq) {
    let found = this.epochs[0];
    for (const e of this.epochs) if (e.firstSeq <= seq) found = e;
    return found;
  }

  epochAtHls(hls) {
    let found = this.epochs[0];
    for (const e of this.epochs) if (e.hlsStart <= hls) found = e;
    return found;
  }

  /** Start of segment `seq` (sequence alignment within its epoch). */
  segmentStart(seq) {
    const e = this.epochAtSeq(seq);
    return e.hlsStart + (seq - e.firstSeq) * e.seg;
  }

  /** Sequence number of the segment holding `hls`. */
  seqAt(hls) {
    const e = this.epochAtHls(hls);
    return e.firstSeq + Math.max(0, Math.floor((hls - e.hlsStart) / e.seg));
  }

  /** Media a player never sees between `from` and `to`: the end of each closed epoch up to the next. */
  gapsBetween(from, to) {
    let gap = 0;
    for (let i = 0; i + 1 < this.epochs.length; i++) {
      const end = this.epochs[i].hlsEnd ?? this.epochs[i + 1].hlsStart;
      const lo = Math.max(end, from);
      const hi = Math.min(this.epochs[i + 1].hlsStart, to);
      if (hi > lo) gap += hi - lo;
    }
    return gap;
  }

  /** HLS -> CLIENT for a player whose time zero is at media time `zero`. */
  hlsToClient(hls, zero) {
    if (hls >= zero) return hls - zero - this.gapsBetween(zero, hls);
    return -(zero - hls - this.gapsBetween(hls, zero));
  }

  /** CLIENT -> HLS (inverse of hlsToClient outside gaps). */
  clientToHls(client, zero) {
    let hls = zero + client;
    for (let i = 0; i < 64; i++) {
      const cand = client >= 0
        ? zero + client + this.gapsBetween(zero, hls)
        : zero + client - this.gapsBetween(hls, zero);
      if (cand === hls) break;
      hls = cand;
    }
    return hls;
  }

  /**
   * The start (ticks) of the frame holding `hls` on its epoch's frame grid (frame n of an epoch
   * starts at hlsStart + n * 90000 * den / num, rounded: exact for every integer tick rate).
   * A time in a gap (after a closed epoch's end) snaps to the nearer of that epoch's last frame
   * and the next epoch's first.
   */
  frameStartAt(hls) {
    const i = this.epochs.indexOf(this.epochAtHls(hls));
    const e = this.epochs[i];
    const ft = this.frameTicks(e);
    const next = this.epochs[i + 1];
    if (hls < e.hlsStart) return e.hlsStart;
    if (Number.isFinite(e.hlsEnd) && hls >= e.hlsEnd) {
      const last = this.lastFrameStart(e);
      if (next && next.hlsStart - hls < hls - last) return next.hlsStart;
      return last;
    }
    return e.hlsStart + Math.round(Math.floor((hls - e.hlsStart) / ft) * ft);
  }

  /** Start of a closed epoch's last frame. */
  lastFrameStart(e) {
    const ft = this.frameTicks(e);
    const n = Math.max(0, Math.ceil((e.hlsEnd - e.hlsStart) / ft) - 1);
    return e.hlsStart + Math.round(n * ft);
  }

  /**
   * The frame `k` frames after the one starting at (or holding) `hls`; across an epoch boundary
   * the next epoch's first frame follows the previous epoch's last (the gap has no frames).
   */
  stepFrames(hls, k) {
    let at = this.frameStartAt(hls);
    const dir = Math.sign(k);
    for (let left = Math.abs(k); left > 0; left--) {
      const i = this.epochs.indexOf(this.epochAtHls(at));
      const e = this.epochs[i];
      const ft = this.frameTicks(e);
      const n = Math.round((at - e.hlsStart) / ft) + dir;
      const cand = e.hlsStart + Math.round(n * ft);
      if (dir > 0 && Number.isFinite(e.hlsEnd) && cand >= e.hlsEnd && this.epochs[i + 1]) at = this.epochs[i + 1].hlsStart;
      else if (dir < 0 && n < 0 && i > 0 && Number.isFinite(this.epochs[i - 1].hlsEnd)) at = this.lastFrameStart(this.epochs[i - 1]);
      else if (n < 0) break;
      else at = cand;
    }
    return at;
  }

  /** Wall time (ms since 1970, a float: an edge value) of HLS tick `hls`, or null. */
  utcMsAt(hls) {
    const e = this.epochAtHls(hls);
    return e.utcStartMs === null ? null : e.utcStartMs + (hls - e.hlsStart) / 90;
  }

  /**
   * The recorded spans and the gaps (source down) of [from, to): `{ spans: [[a, b]], gaps: [[a, b]] }`
   * in ticks; the open (newest) epoch runs to `to`.
   */
  coverage(from, to) {
    const spans = [];
    const gaps = [];
    for (let i = 0; i < this.epochs.length; i++) {
      const e = this.epochs[i];
      const next = this.epochs[i + 1];
      const end = Number.isFinite(e.hlsEnd) ? e.hlsEnd : next ? next.hlsStart : to;
      const a = Math.max(from, e.hlsStart);
      const b = Math.min(to, end);
      if (b > a) spans.push([a, b]);
      if (next && next.hlsStart > end) {
        const ga = Math.max(from, end);
        const gb = Math.min(to, next.hlsStart);
        if (gb > ga) gaps.push([ga, gb]);
      }
    }
    return { spans, gaps };
  }

  /** The join sequence whose start is `zero`, or null when `zero` is not on a segment boundary. */
  joinSeqOf(zero, toleranceTicks = 90) {
    const seq = this.seqAt(zero + toleranceTicks);
    return Math.abs(this.segmentStart(seq) - zero) <= toleranceTicks ? seq : null;
  }
}

/**
 * Where to put `currentTime` to show the frame that starts at client tick `client`: the middle of
 * the frame, so float rounding (ms PDT, microsecond media clocks) can never land on a neighbour.
 */
export function seekTargetSecs(client, frameTicks) {
  return ticksToSecs(client + frameTicks / 2);
}

/** "12.3 s", "4 min 05 s", "2 h 03 min" behind live. */
export function formatBehind(secs) {
  if (!Number.isFinite(secs)) return '';
  const s = Math.max(0, secs);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  }
  const h = Math.floor(s / 3600);
  return `${h} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** "2026-11-24 07:05:54.123" in UTC, from an RFC 3339 string. */
export function formatUtc(rfc3339) {
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return String(rfc3339 ?? '');
  const iso = d.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}
