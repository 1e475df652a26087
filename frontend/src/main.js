// The hlsmark player page: live low-latency HLS (video.js 8 as the UI, hls.js as its engine) with
// one timeline from the start of the retention to live (timeline.js: markers as ticks, gaps, zoom
// to single frames) and the markers in a table, the measured latency, live marker push over SSE,
// for the stream chosen in the picker (`?stream=`; switching needs no page reload). A seek inside
// the live playlist's window moves the live player; one further back loads a time-range VOD
// playlist into the same player, unseen: the timeline, controls and table stay as they are.
// How a marker's HLS time becomes the player's currentTime is explained in design/frontend.md.

import 'video.js/dist/video-js.css';
import './style.css';

import { Hls, registerHlsJs, videojs } from './engine.js';

import { fetchMarkers, fetchTimeline, liveUrl, openMarkerFeed, vodUrl } from './api.js';
import { STREAMS_REFRESH_MS, StreamPicker } from './streams.js';
import { RowThumbs, SeekPreview } from './thumbs.js';
import { FilterBar, ROW_CAP, decorateRow, markerColor, severityOf } from './filters.js';
import { TimelineBar } from './timeline.js';
import {
  Timeline, formatBehind, formatUtc, secsToTicks, seekTargetSecs, ticksToSecs,
} from './clock.js';

const HLS_TYPE = 'application/x-mpegURL';
/**
 * Seconds of archive in the VOD playlist loaded for a seek before the live window: some before
 * (stepping back a few frames stays in it) and minutes after (it plays on; at its end the next
 * range, or the live playlist, follows).
 */
const VOD_BEFORE = 60;
const VOD_AFTER = 600;
/** How long a new row stays highlighted. */
const NEW_ROW_MS = 8000;

const $ = (id) => document.getElementById(id);

/** The stream a URL asks for (`?stream=`), or null. */
function streamInUrl() {
  return (new URLSearchParams(location.search).get('stream') ?? '').trim() || null;
}
/** The stream shown when the URL names none: `live`, or the first listed when there is no `live`. */
let defaultStream = 'live';
/** The stream on screen. Everything below reads it at call time; see switchStream. */
let stream = streamInUrl() ?? defaultStream;
/**
 * Bumped on every stream switch: an answer (timeline, history, feed event) that arrives for an
 * older session belongs to the previous stream and is dropped.
 */
let session = 0;

function showStreamName() {
  $('stream-name').textContent = stream;
  document.title = `hlsmark: ${stream}`;
}
showStreamName();

const state = {
  stream,
  /**
   * Which playlist the player has under the hood: 'live', or 'vod' (a time-range VOD playlist,
   * for a position before the live window). Nothing on the page shows it.
   */
  mode: 'live',
  /** HLS ticks a navigation is heading for (the timeline shows it there while it loads). */
  heading: null,
  vod: null,
  timeline: null,
  retainedStart: 0,
  /** HLS tick at which the player's currentTime is 0, per epoch index (from hls.js's initPTS). */
  zeros: new Map(),
  /** hls.js's time offset per discontinuity sequence: cc -> { base: HLS ticks at currentTime 0, sn }. */
  offsets: new Map(),
  /**
   * Playback stalls seen. `waiting`: media `waiting` events while playing; `engine`: hls.js
   * BUFFER_STALLED_ERRORs (hls.js reports one at once for any `waiting` after the playhead moved);
   * `log`: both, as they came. `waits`: each stall once, from its first `waiting` or engine report
   * until the picture moves again (`ms`; no `ms` while it lasts), with the reports it drew.
   */
  stalls: { waiting: 0, engine: 0, log: [], waits: [] },
  /** Latest latency (now - PDT of the frame at the playhead), seconds, and when it was taken. */
  latency: null,
  /** Zero taken from the playlist before any segment is buffered (hls.js puts the playlist's first segment at 0). */
  zeroGuess: null,
  /** Media sequence of the segment at currentTime 0, when that is a segment boundary. */
  joinSeq: null,
  /** First sequence of the live window and where the live edge was, for "behind live". */
  liveFirstSeq: null,
  liveEdgeHls: null,
  liveEdgeAt: 0,
  feed: 'connecting',
  lastSeek: null,
  lastSeekId: null,
  switching: false,
  ready: false,
  errors: [],
};

/** Every marker we know, by id. */
const markers = new Map();

// --- player -------------------------------------------------------------------------------------

registerHlsJs({
  onEngine: (hls) => {
    state.offsets.clear();
    hls.on(Hls.Events.INIT_PTS_FOUND, (_, data) => {
      // The SourceBuffer's timestampOffset for this discontinuity sequence is
      // -initPTS/timescale: a PTS of initPTS (in HLS ticks, hlsmark's media clock) plays at 0.
      state.offsets.set(data.frag.cc, {
        base: Math.round((data.initPTS * 90000) / data.timescale),
        sn: data.frag.sn,
      });
      measure();
    });
    hls.on(Hls.Events.LEVEL_UPDATED, () => measure());
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) {
        state.stalls.engine += 1;
        state.stalls.log.push({ at: Date.now(), what: data.details, t: player.currentTime() });
        stallStarted(data.details);
      }
    });
  },
  onFatal: (err) => player.error({ code: err.code, message: err.message }),
});

const player = videojs('player', {
  liveui: true,
  muted: true,
  autoplay: 'muted',
  controls: true,
  fluid: true,
  aspectRatio: '16:9',
  preload: 'auto',
  playbackRates: [],
  liveTracker: { trackingThreshold: 0, liveTolerance: 2 },
  html5: {
    // hls.js over MSE in every browser (its source handler comes before the native one).
    nativeAudioTracks: false,
    nativeVideoTracks: false,
  },
});
/** The hls.js instance playing the current source, or null. */
function engine() {
  try {
    return player.tech(true)?.hls ?? null;
  } catch {
    return null;
  }
}

/** The media playlist hls.js plays (LevelDetails: fragments, parts, edge), or null. */
function currentDetails() {
  const hls = engine();
  const levels = hls?.levels;
  if (!levels?.length) return null;
  return levels[Math.max(0, hls.currentLevel)]?.details ?? levels.find((l) => l.details)?.details ?? null;
}

/**
 * Turns hls.js's time offsets (one per discontinuity sequence, from INIT_PTS_FOUND) into "HLS tick
 * at currentTime 0" for each epoch, and follows the live window's first segment and edge.
 */
function measure() {
  // While a new source loads, the engine may still hold the old playlist.
  if (state.switching) return;
  const d = currentDetails();
  const tl = state.timeline;
  if (!d || !tl || !d.fragments?.length) return;
  const lastFrag = d.fragments[d.fragments.length - 1];
  if (Number.isFinite(lastFrag.cc) && lastFrag.cc > tl.epochs[tl.epochs.length - 1].index) {
    refreshTimeline(); // an encoder restart we have not heard of yet
  }
  if (state.mode === 'live' && d.live) {
    const firstSeq = d.startSN;
    // The end of the newest complete segment plus the parts listed after it (LL-HLS).
    let open = 0;
    for (const p of d.partList ?? []) if (p.fragment.sn > d.endSN) open += p.duration;
    const edge = tl.segmentStart(d.endSN + 1) + secsToTicks(open);
    if (state.liveFirstSeq !== firstSeq || state.liveEdgeHls !== edge) {
      state.liveFirstSeq = firstSeq;
      state.liveEdgeHls = edge;
      state.liveEdgeAt = performance.now();
    }
  }
  if (state.zeroGuess === null) state.zeroGuess = tl.segmentStart(d.startSN);
  for (const { base, sn } of state.offsets.values()) {
    // A frame at HLS tick h of this sequence plays at h - base; as a pair (h, client) inside the
    // epoch, mapped back to the zero the gap rule of the clock model expects.
    const h = tl.segmentStart(sn);
    state.zeros.set(tl.epochAtSeq(sn).index, tl.clientToHls(-(h - base), h));
  }
  const any = zeroFor(null);
  state.joinSeq = any === null ? null : tl.joinSeqOf(any);
}

/** The zero of `epoch` (or of the latest measured epoch, or the playlist's guess). */
function zeroFor(epoch) {
  if (epoch && state.zeros.has(epoch.index)) return state.zeros.get(epoch.index);
  let best = null;
  for (const [index, zero] of state.zeros) {
    if (best === null || index > best[0]) best = [index, zero];
  }
  return best ? best[1] : state.zeroGuess;
}

/** Marker (or raw HLS ticks) -> CLIENT ticks on the current source, or null if not known yet. */
function clientOfHls(hls) {
  const tl = state.timeline;
  if (!tl) return null;
  const zero = zeroFor(tl.epochAtHls(hls));
  return zero === null ? null : tl.hlsToClient(hls, zero);
}

function markerHls(m) {
  return Number.isFinite(m.hls_90k) ? m.hls_90k : secsToTicks(m.hls);
}

/** HLS tick of the live edge now (extrapolated with the wall clock between playlist refreshes). */
function liveEdgeNow() {
  if (state.liveEdgeHls === null) return null;
  // A stream whose source is down or stopped (`/streams`) has no newer media: the edge stays at
  // the last one measured (the timeline ends there; the gap shows once the source is back).
  const here = streamStates?.find((x) => x.name === stream);
  if (here?.state && here.state !== 'live' && !here.stale) return state.liveEdgeHls;
  return state.liveEdgeHls + secsToTicks((performance.now() - state.liveEdgeAt) / 1000);
}
/** The last `/streams` answer (null: none yet, or an older server). */
let streamStates = null;

/**
 * A marker is archived once its segment has slid out of the live playlist (the page plays it
 * from a VOD range; the viewer sees no difference).
 */
function isArchived(m) {
  const win = liveWindowStart();
  return win !== null && markerHls(m) < win;
}

function frameTicks() {
  return state.timeline ? state.timeline.frameTicks() : 3000;
}

function waitFor(target, event, timeoutMs) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      target.off(event, done);
      resolve(true);
    };
    const timer = setTimeout(() => {
      target.off(event, done);
      resolve(false);
    }, timeoutMs);
    target.on(event, done);
  });
}

/** Resolves with the first of `events` that fires on `target`, or null after `timeoutMs`. */
function waitForAny(target, events, timeoutMs) {
  return new Promise((resolve) => {
    const handlers = events.map((event) => [event, () => finish(event)]);
    const finish = (event) => {
      clearTimeout(timer);
      for (const [e, h] of handlers) target.off(e, h);
      resolve(event);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    for (const [e, h] of handlers) target.on(e, h);
  });
}

/** Resolves once the frame at the new position has been handed to the compositor. */
function framePresented(timeoutMs = 1000) {
  const video = player.tech(true)?.el();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    if (video && typeof video.requestVideoFrameCallback === 'function') {
      video.requestVideoFrameCallback(() => {
        clearTimeout(timer);
        resolve(true);
      });
    } else {
      requestAnimationFrame(() => requestAnimationFrame(() => {
        clearTimeout(timer);
        resolve(true);
      }));
    }
  });
}

function isBuffered(t, margin = 0.05) {
  const b = player.buffered();
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= t - margin && t + margin <= b.end(i)) return true;
  }
  return false;
}

/**
 * Shows the frame at HLS tick `hls` and pauses there. Resolves with what was done, for the UI and
 * the test hook.
 */
async function seekToHls(hls, { pause = true } = {}) {
  // Let a seek still loading land first: overlapping seeks make the engine fetch twice.
  if (player.seeking()) await waitFor(player, 'seeked', 3000);
  // Until this seek lands, the last landing no longer describes the position.
  state.lastSeek = null;
  const client = clientOfHls(hls);
  if (client === null) throw new Error('the stream has not started playing yet');
  // The middle of the frame on the grid of its own epoch (an imported file may run at another rate).
  const frame = state.timeline.frameTicks(state.timeline.epochAtHls(hls));
  const target = seekTargetSecs(client, frame);
  state.seekTrace = [`seek hls=${hls} target=${target.toFixed(4)} from=${player.currentTime().toFixed(4)}`];
  if (pause) player.pause();
  if (!isBuffered(target)) {
    // An engine may treat a time just before a buffered range as buffered (VHS did, within 1/30 s)
    // and show the range's first frame instead. Seeking to the middle of the frame's own segment
    // first makes it load that segment.
    const tl = state.timeline;
    const seq = tl.seqAt(hls);
    const mid = clientOfHls(tl.segmentStart(seq) + tl.epochAtSeq(seq).seg / 2);
    const pre = waitFor(player, 'seeked', 5000);
    player.currentTime(ticksToSecs(mid));
    state.seekTrace.push(`pre-seek ${ticksToSecs(mid).toFixed(4)}: ${await pre}`);
  }
  const seeked = waitFor(player, 'seeked', 5000);
  player.currentTime(target);
  state.seekTrace.push(`seek: ${await seeked} at ${player.currentTime().toFixed(4)}`);
  // If the engine had to load a segment of an epoch it had not seen, its placement is known only now.
  measure();
  const refined = seekTargetSecs(clientOfHls(hls), frame);
  if (Math.abs(refined - player.currentTime()) > 1e-3) {
    const again = waitFor(player, 'seeked', 5000);
    player.currentTime(refined);
    state.seekTrace.push(`refined ${refined.toFixed(4)}: ${await again}`);
  }
  const presented = player.paused() ? framePresented() : Promise.resolve(true);
  await presented;
  state.lastSeek = { hls_90k: hls, client: ticksToSecs(clientOfHls(hls)), target: player.currentTime(), mode: state.mode };
  return state.lastSeek;
}

/**
 * Loads `src` and waits for its metadata. `failFast` gives up at the first player error (a stream
 * with no playlist yet answers 404 at once) instead of waiting out the timeout: the error handler
 * below retries every 3 s anyway, and a stream switch should not hold the navigation queue.
 */
async function loadSource(src, { failFast = false } = {}) {
  state.switching = true;
  state.zeros.clear();
  state.offsets.clear();
  state.zeroGuess = null;
  if (failFast && player.error()) player.error(null);
  const loaded = waitForAny(player, failFast ? ['loadedmetadata', 'error'] : ['loadedmetadata'], 15000);
  player.src({ src, type: HLS_TYPE });
  const ev = await loaded;
  state.switching = false;
  if (ev !== 'loadedmetadata') throw new Error(ev === 'error' ? 'the stream could not be played' : 'the stream did not load');
  measure();
}

/** One navigation at a time (a second click waits for the first to land, then wins). */
let navigation = Promise.resolve();
function serialized(fn) {
  return (...args) => {
    const run = navigation.then(() => fn(...args));
    navigation = run.catch(() => {});
    return run;
  };
}

/** The live window's first segment start now (it slides with the wall clock while not loading it). */
function liveWindowStart() {
  const tl = state.timeline;
  if (!tl || state.liveFirstSeq === null) return null;
  let first = state.liveFirstSeq;
  if (state.mode !== 'live') {
    const elapsed = secsToTicks((performance.now() - state.liveEdgeAt) / 1000);
    first = tl.seqAt(tl.segmentStart(first) + elapsed);
  }
  return tl.segmentStart(first);
}

/**
 * Shows the frame at `hls` wherever it is in the retention: inside the live window (one segment
 * of margin: the window slides during the seek) on the live playlist, before it on a VOD range
 * loaded into the same player. `pause: false` plays on from there.
 */
async function goToNow(hls, { id = null, pause = true } = {}) {
  const tl = state.timeline;
  if (!tl) throw new Error('the stream has not started playing yet');
  const edge = liveEdgeNow();
  // Not past the newest frame (the very edge has no media yet).
  if (edge !== null && hls > edge - 3 * frameTicks()) hls = tl.frameStartAt(edge - 3 * frameTicks());
  hls = Math.max(hls, secsToTicks(state.retainedStart));
  state.lastSeek = null;
  state.heading = hls;
  try {
    const win = liveWindowStart();
    const margin = state.timeline.segmentTicks;
    if (win === null || hls >= win + margin) {
      if (state.mode !== 'live') {
        state.mode = 'live';
        state.vod = null;
        await loadSource(liveUrl(stream));
      }
    } else {
      const v = state.vod;
      const inVod = state.mode === 'vod' && v && hls >= secsToTicks(v.from) + margin && hls < secsToTicks(v.to) - margin;
      if (!inVod) {
        const from = Math.max(state.retainedStart, ticksToSecs(hls) - VOD_BEFORE);
        // To the live window at most (beyond it the live playlist takes over).
        const to = Math.max(ticksToSecs(hls) + 2 * ticksToSecs(margin), Math.min(ticksToSecs(hls) + VOD_AFTER, ticksToSecs(win)));
        state.mode = 'vod';
        state.vod = { from, to };
        await loadSource(vodUrl(stream, from, to));
      }
    }
    const r = await seekToHls(hls, { pause });
    if (!pause) player.play()?.catch(() => {});
    setSelected(id);
    updatePosition();
    return { ...r, id };
  } finally {
    state.heading = null;
    timeline.invalidate();
  }
}
const goToHls = serialized((hls, opts) => goToNow(hls, opts));

/** Clicked marker (bar tick, row, Enter): its exact frame, wherever it is in the retention. */
const seekToMarker = serialized(async (id) => {
  const m = markers.get(id);
  if (!m) throw new Error(`no marker ${id}`);
  showError(null);
  try {
    return await goToNow(markerHls(m), { id });
  } catch (err) {
    showError(`Could not go to marker "${m.label}": ${err.message}`);
    throw err;
  }
});

/**
 * The frame `k` frames after the one on screen (paused): from the last landing when the player is
 * still on it (exact ticks), else from the frame at the playhead.
 */
const stepFrames = serialized(async (k) => {
  const tl = state.timeline;
  if (!tl) return null;
  const last = state.lastSeek;
  const onLanding = last && player.paused() && Math.abs(player.currentTime() - last.target) < 1e-3;
  const base = onLanding ? last.hls_90k : hlsNow();
  if (base === null) return null;
  return goToNow(tl.stepFrames(base, k));
});

const backToLive = serialized((opts) => backToLiveNow(opts));

async function backToLiveNow({ play = true } = {}) {
  state.lastSeek = null;
  if (state.mode !== 'live') {
    state.mode = 'live';
    state.vod = null;
    await loadSource(liveUrl(stream));
  }
  if (play) {
    // Not liveTracker.seekToLiveEdge(): it does nothing while video.js still counts the position as
    // "at the edge" (its own tolerance), and the button promises a jump. hls.js's live sync
    // position is the edge minus its target latency (PART-HOLD-BACK): the very edge has no media.
    const lt = player.liveTracker;
    if (player.seeking()) await waitFor(player, 'seeked', 3000);
    const edge = engine()?.liveSyncPosition ?? lt?.liveCurrentTime();
    if (Number.isFinite(edge)) {
      player.currentTime(edge);
    }
    // play() can stay pending while the player waits for data: never hold the navigation queue on it.
    await Promise.race([player.play()?.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  }
  setSelected(null);
  updatePosition();
}

// --- markers: bar and table -----------------------------------------------------------------------

// The timeline (timeline.js) under the video replaces video.js's seek bar (hidden by the CSS: it
// would show only the playlist under the hood, the live window or a VOD range).
const timeline = new TimelineBar({
  parent: $('timeline'),
  source: {
    clock: () => state.timeline,
    range: () => {
      const edge = liveEdgeNow();
      if (!state.timeline || edge === null) return null;
      return { start: secsToTicks(state.retainedStart), end: edge };
    },
    position: () => state.heading ?? (state.switching ? null : hlsNow()),
    markers: () => sortedMarkers(),
    markerHls,
    matches: (m) => filter.matches(m),
    color: markerColor,
    severity: severityOf,
    describe,
    selected: () => {
      const m = state.lastSeekId ? markers.get(state.lastSeekId) : null;
      return m ? markerHls(m) : null;
    },
  },
  onSeek: ({ hls, marker }) => {
    const go = marker ? seekToMarker(marker.id) : goToHls(hls);
    go.catch((e) => showError(e.message));
  },
  onStep: (k) => { stepFrames(k).catch((e) => showError(e.message)); },
});
const rowEls = new Map();
const tbody = $('markers').tBodies[0];
// Pictures (thumbs.js): a row's thumbnail once its segment is published (two segments behind the
// measured edge; of a stream that stopped or failed, whose edge no longer moves, at once), and
// the seek bar's hover tile.
const rowThumbs = new RowThumbs({
  stream: () => stream,
  ready: (m) => {
    if (state.liveEdgeHls === null) return false;
    let here = null;
    try { here = picker.streams?.find((s) => s.name === stream); } catch { /* picker not made yet */ }
    const ended = here?.state === 'stopped' || here?.state === 'failed';
    const behind = ended ? 0 : 2 * (state.timeline?.segmentTicks ?? 90000);
    return markerHls(m) + behind <= state.liveEdgeHls;
  },
});
/** HLS ticks at a fraction (0..1) along the timeline (its view), or null before it has a clock. */
function hlsAtBar(fraction) {
  if (!state.timeline || liveEdgeNow() === null) return null;
  return Math.round(timeline.hlsAtX(fraction * timeline.width()));
}
const seekPreview = new SeekPreview({
  seekBar: { el: () => timeline.track },
  stream: () => stream,
  hlsAtBar,
  range: () => {
    const [a, b] = [hlsAtBar(0), hlsAtBar(1)];
    return a === null || b === null ? null : [a, b];
  },
});

// Filters (filters.js): rows and ticks follow at once; the history and the feed are re-read
// with the server's part of the filter.
const filterBar = new FilterBar({
  before: document.querySelector('.hm-table-wrap'),
  onChange: () => {
    renderTable();
    timeline.filterChanged();
  },
  onServerChange: () => {
    if (!state.timeline) return; // startStream opens the feed with the filter
    // A feed that was open re-reads the history when the new one opens (openFeed's onState).
    const reads = feedSeenOpen;
    openFeed(session);
    if (!reads) loadHistory();
  },
});
const filter = filterBar.filter;
/** Rows in the table now (the newest ROW_CAP matching markers, newest first). */
let shownRows = [];

function describe(m) {
  return `${m.label} at ${formatUtc(m.utc)} UTC`;
}

/** The timeline follows the markers and the filter (it repaints on the next frame). */
function renderBar() {
  timeline.invalidate();
}

/** Every marker, newest first (kept until a marker is added or removed). */
let sortedCache = null;
function sortedMarkers() {
  if (!sortedCache) {
    sortedCache = [...markers.values()].sort((a, b) => markerHls(b) - markerHls(a) || String(a.id).localeCompare(b.id));
    timeline.markersChanged();
  }
  return sortedCache;
}

function makeRow(m) {
  const tr = document.createElement('tr');
  tr.tabIndex = 0;
  tr.dataset.id = m.id;
  tr.className = 'hm-row';
  tr.setAttribute('aria-label', `Go to marker ${describe(m)}`);
  const utc = document.createElement('td');
  utc.className = 'hm-utc';
  const time = document.createElement('time');
  time.dateTime = m.utc;
  time.textContent = formatUtc(m.utc).slice(11);
  time.title = `${formatUtc(m.utc)} UTC`;
  utc.appendChild(time);
  const behind = document.createElement('td');
  behind.className = 'hm-behind';
  const label = document.createElement('td');
  label.className = 'hm-label';
  label.append(rowThumbs.img(m), m.label);
  if (m.kind) {
    const kind = document.createElement('span');
    kind.className = 'hm-badge';
    kind.textContent = m.kind;
    label.append(' ', kind);
  }
  decorateRow(tr, m, {
    stream, labelCell: label, describe: describe(m), onTag: (tag) => filterBar.set({ tag }),
  });
  tr.append(utc, behind, label);
  const go = () => { seekToMarker(m.id).catch(() => {}); };
  tr.addEventListener('click', go);
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      go();
    }
  });
  return tr;
}

function renderTable() {
  // The newest ROW_CAP markers that pass the filters; other rows leave the table (and are kept
  // for when they match again).
  const all = sortedMarkers();
  const order = [];
  let matching = 0;
  for (const m of all) {
    if (!filter.matches(m)) continue;
    matching += 1;
    if (order.length < ROW_CAP) order.push(m);
  }
  const keep = new Set(order.map((m) => m.id));
  for (const m of shownRows) if (!keep.has(m.id)) rowEls.get(m.id)?.remove();
  shownRows = order;
  filterBar.syncLists();
  filterBar.showCounts({ shown: order.length, matching, total: all.length });
  let prev = null;
  for (const m of order) {
    let tr = rowEls.get(m.id);
    if (!tr) {
      tr = makeRow(m);
      rowEls.set(m.id, tr);
    }
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  $('no-markers').hidden = order.length > 0;
  $('no-markers').textContent = all.length ? 'No marker matches the filters.' : 'No markers yet.';
  $('marker-count').textContent = all.length ? `(${matching === all.length ? all.length : `${matching} of ${all.length}`})` : '';
  updateRows();
}

function updateRows() {
  const edge = liveEdgeNow();
  for (const m of shownRows) {
    const tr = rowEls.get(m.id);
    if (!tr) continue;
    const behind = edge === null ? '' : formatBehind(ticksToSecs(edge - markerHls(m)));
    const cell = tr.cells[1];
    if (cell.textContent !== behind) cell.textContent = behind;
  }
}

function setSelected(id) {
  state.lastSeekId = id;
  for (const [rid, tr] of rowEls) tr.classList.toggle('hm-selected', rid === id);
  renderBar();
}

function addMarker(m, { fresh = false } = {}) {
  if (!m || !m.id || (m.stream && m.stream !== stream)) return;
  const known = markers.has(m.id);
  // A history re-read (a filter change, a reconnect) brings back markers we have: nothing to do.
  if (known && JSON.stringify(markers.get(m.id)) === JSON.stringify(m)) return;
  markers.set(m.id, m);
  sortedCache = null;
  timeline.markersChanged();
  filterBar.noteMarker(m);
  if (known) {
    rowEls.get(m.id)?.remove();
    rowEls.delete(m.id);
  }
  if (known) {
    renderTable();
    renderBar();
  } else if (fresh) {
    renderTable();
    const tr = rowEls.get(m.id);
    tr?.classList.add('hm-new');
    setTimeout(() => tr?.classList.remove('hm-new'), NEW_ROW_MS);
    $('announce').textContent = `New marker: ${m.label}`;
    renderBar();
  }
}

// --- status line ----------------------------------------------------------------------------------

function showError(text) {
  const el = $('error');
  el.hidden = !text;
  el.textContent = text ?? '';
}

const goLiveBtn = $('go-live');
goLiveBtn.addEventListener('click', () => { backToLive().catch((e) => showError(e.message)); });

/** Behind the live point by more than this shows "Go live" (the edge moves in segment steps). */
function liveThreshold() {
  return Math.max(2, 2 * ticksToSecs(state.timeline?.segmentTicks ?? 90000));
}

/** How far behind the live player's point the position is (video.js's live tracker). */
function behindLivePointSecs() {
  const lt = player.liveTracker;
  if (state.mode !== 'live' || !lt || !lt.isLive()) return null;
  const lct = lt.liveCurrentTime();
  if (!Number.isFinite(lct)) return null;
  return Math.max(0, lct - player.currentTime());
}

/** HLS ticks of the frame on screen. */
function hlsNow() {
  const tl = state.timeline;
  const zero = zeroFor(null);
  if (!tl || zero === null) return null;
  return tl.clientToHls(secsToTicks(player.currentTime()), zero);
}

function updatePosition() {
  const pos = $('position');
  // The same words whichever playlist plays under the hood (live window or a VOD range).
  const behindPoint = state.mode === 'live' ? behindLivePointSecs() : null;
  const threshold = liveThreshold();
  const atEdge = behindPoint !== null && behindPoint <= threshold && !player.paused();
  // Behind live as in the table: newest media in the playlist minus the frame on screen.
  const edge = liveEdgeNow();
  const now = state.heading ?? (state.switching ? null : hlsNow());
  const behind = edge !== null && now !== null ? formatBehind(ticksToSecs(edge - now)) : null;
  const known = state.mode === 'live' ? behindPoint !== null : now !== null || state.switching;
  goLiveBtn.hidden = atEdge || !known;
  const utc = now !== null ? state.timeline?.utcMsAt(now) : null;
  const at = Number.isFinite(utc) ? ` (${formatUtc(new Date(utc).toISOString()).slice(11)} UTC)` : '';
  let text;
  if (!known) text = 'Live: loading...';
  else if (atEdge) text = behind ? `Live (${behind} behind the newest frame)` : 'Live';
  else if (behind === null && state.mode !== 'live') text = 'Loading...';
  else text = `${player.paused() ? 'Paused, ' : ''}${behind ?? formatBehind(behindPoint)} behind live${at}`;
  if (pos.textContent !== text) pos.textContent = text;
}

/**
 * Latency: now minus the PDT (UTC) of the frame at the playhead, in seconds, or null. The PDT is
 * the playing segment's EXT-X-PROGRAM-DATE-TIME plus the exact HLS time into the segment; before
 * the page knows its clock mapping, hls.js's own estimate (`playingDate`). It assumes the viewer's
 * clock is the server's (NTP); a skewed clock shifts it by the skew.
 */
function latencySecs() {
  const hls = engine();
  if (!hls || state.mode !== 'live') return null;
  let pdt = null;
  const d = currentDetails();
  const tl = state.timeline;
  const now = hlsNow();
  if (d && tl && now !== null) {
    const sn = tl.seqAt(now);
    const frag = d.fragments.find((f) => f.sn === sn) ?? (d.fragmentHint?.sn === sn ? d.fragmentHint : null);
    if (Number.isFinite(frag?.programDateTime)) pdt = frag.programDateTime + ticksToSecs(now - tl.segmentStart(sn)) * 1000;
  }
  if (pdt === null) pdt = hls.playingDate?.getTime() ?? null;
  return pdt === null ? null : (Date.now() - pdt) / 1000;
}

function updateLatency() {
  const el = $('latency');
  // Paused, the figure would only count the pause: the position line says how far behind it is.
  const secs = player.readyState() >= 2 && !player.paused() ? latencySecs() : null;
  state.latency = secs === null ? null : { secs, at: Date.now(), paused: player.paused() };
  el.hidden = secs === null;
  if (secs === null) return;
  const text = `Latency ${secs.toFixed(2)} s`;
  if (el.firstChild?.textContent !== text) {
    el.replaceChildren(text);
    el.dataset.level = secs <= 1.5 ? 'low' : secs <= 4 ? 'mid' : 'high';
  }
}

function setFeed(s) {
  state.feed = s;
  const text = {
    connecting: 'connecting to marker feed...',
    waiting: 'marker feed: waiting for the stream',
    open: 'marker feed: live',
    reconnecting: 'marker feed: reconnecting...',
    closed: 'marker feed: closed, retrying...',
  }[s] ?? s;
  $('feed-status').textContent = text;
  $('feed-status').dataset.state = s;
}

// --- start-up and stream switching ------------------------------------------------------------------

let timelineRefresh = null;
function refreshTimeline() {
  if (timelineRefresh) return timelineRefresh;
  const mine = session;
  const run = fetchTimeline(stream)
    .then((json) => {
      if (mine !== session) return; // the viewer switched streams meanwhile
      state.timeline = new Timeline(json);
      state.retainedStart = Number(json.retained?.start ?? 0);
      state.timelineJson = json;
      // Before the live playlist is measured, and while a VOD range plays (nothing else tells
      // the page where live is then), the edge and the window come from here.
      const fromHere = state.mode !== 'live';
      if ((state.liveEdgeHls === null || fromHere) && Number.isFinite(json.live_edge)) {
        state.liveEdgeHls = secsToTicks(json.live_edge);
        state.liveEdgeAt = performance.now();
      }
      if ((state.liveFirstSeq === null || fromHere) && Number.isFinite(json.window?.first_seq)) {
        state.liveFirstSeq = json.window.first_seq;
      }
    })
    .catch((err) => {
      if (mine !== session) return;
      if (err.status === 404) showError(waitingText());
      else showError(`Timeline unavailable: ${err.message}`);
    })
    .finally(() => { if (timelineRefresh === run) timelineRefresh = null; });
  timelineRefresh = run;
  return run;
}

let feed = null;
let feedSeenOpen = false;

/** What the page says while the stream on screen has no video yet (starting, retrying, failed). */
function waitingText() {
  const entry = picker.streams?.find((s) => s.name === stream);
  const why = entry?.state && entry.state !== 'live' ? ` (${entry.state}${entry.last_error ? `: ${entry.last_error}` : ''})` : '';
  // A failed source is not retried: nothing will arrive until its ingest is started again.
  if (entry?.state === 'failed') {
    return `No video from "${stream}"${why}: the source cannot be played and is not retried; fix it and restart the ingest.`;
  }
  return `No video from "${stream}" yet${why}; playback starts by itself when it arrives.`;
}

/** Opens the marker feed of the current stream; a feed the server closed is reopened after 3 s. */
function openFeed(mine) {
  feed?.close();
  feed = openMarkerFeed(stream, {
    filters: filter.params(),
    onMarker: (m) => { if (mine === session) addMarker(m, { fresh: true }); },
    onLagged: () => { if (mine === session) loadHistory(); },
    onState: (s) => {
      if (mine !== session) return;
      setFeed(s);
      if (s === 'open' && feedSeenOpen) loadHistory(); // catch up after a reconnect
      if (s === 'open') feedSeenOpen = true;
      // EventSource gives up for good on an error answer (a server restart, a stream the server
      // forgot): try again, and the reopened feed re-reads the history once.
      if (s === 'closed') {
        feedSeenOpen = true;
        setTimeout(() => { if (mine === session) openFeed(mine); }, 3000);
      }
    },
  });
}

/** Timeline, feed and history of the current stream (the player source is loaded by the caller). */
async function startStream() {
  const mine = session;
  feed?.close();
  feed = null;
  feedSeenOpen = false;
  setFeed('waiting');
  // A stream that has not published a segment yet has no timeline (and no feed: the server
  // answers 404 until it has one): wait for it.
  for (;;) {
    await refreshTimeline();
    if (mine !== session) return;
    if (state.timeline) break;
    await new Promise((r) => setTimeout(r, 3000));
    if (mine !== session) return;
  }
  // Feed first, then the history: a marker created in between arrives through one or the other
  // (ids de-duplicate).
  setFeed('connecting');
  openFeed(mine);
  showError(null);
  await loadHistory();
  if (mine === session) state.ready = true;
}

/**
 * Pages of 1,000 markers the history read follows at most: the whole retention's markers for the
 * timeline (the drawing is measured with 100,000), shown page by page as they arrive.
 */
const HISTORY_PAGES = 100;

async function loadHistory() {
  const mine = session;
  const key = filter.key();
  const tl = state.timelineJson;
  const to = Number(tl?.live_edge ?? 0) + 3600;
  let pages = 0;
  try {
    await fetchMarkers(stream, Math.max(0, state.retainedStart), to, HISTORY_PAGES, filter.params(), (list) => {
      if (mine !== session) return false;
      // (markers of a wider server filter are still markers: the page filters them itself)
      for (const m of list) addMarker(m);
      pages += 1;
      if (pages === 1 || pages % 10 === 0) {
        renderTable();
        renderBar();
      }
      // Another server filter since: the read for it follows the rest.
      return filter.key() === key;
    });
    if (mine !== session) return;
    renderTable();
    renderBar();
  } catch (err) {
    if (mine === session) showError(`Markers unavailable: ${err.message}`);
  }
}

/** Forgets everything the page knew about the previous stream. */
function resetStreamState() {
  state.stream = stream;
  state.mode = 'live';
  state.vod = null;
  state.timeline = null;
  state.timelineJson = null;
  state.retainedStart = 0;
  state.zeros.clear();
  state.zeroGuess = null;
  state.joinSeq = null;
  state.liveFirstSeq = null;
  state.liveEdgeHls = null;
  state.liveEdgeAt = 0;
  state.lastSeek = null;
  state.lastSeekId = null;
  state.ready = false;
  timelineRefresh = null;
  markers.clear();
  sortedCache = null;
  shownRows = [];
  filterBar.reset();
  for (const el of rowEls.values()) el.remove();
  rowEls.clear();
  rowThumbs.clear();
  seekPreview.clear();
  timeline.reset();
  renderTable();
  $('announce').textContent = '';
  showError(null);
  if (retryTimer) {
    clearTimeout(retryTimer);
    retryTimer = null;
  }
}

function urlFor(name) {
  const u = new URL(location.href);
  u.searchParams.set('stream', name);
  return `${u.pathname}${u.search}${u.hash}`;
}

/**
 * Puts stream `name` on screen: player, markers (table and bar) and the SSE feed, without a page
 * reload. `history`: 'push' (a pick: back returns to the previous stream), 'replace', or 'none'
 * (back/forward, whose URL is already right).
 */
const switchStream = serialized(async (name, { history: how = 'push' } = {}) => {
  if (how === 'push' && name !== stream) window.history.pushState({ stream: name }, '', urlFor(name));
  if (how === 'replace') window.history.replaceState({ stream: name }, '', urlFor(name));
  if (name === stream) return { stream, switched: false };
  session += 1;
  stream = name;
  resetStreamState();
  showStreamName();
  picker.setCurrent(stream);
  updatePosition();
  startStream();
  try {
    await loadSource(liveUrl(stream), { failFast: true });
    await Promise.race([player.play()?.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  } catch {
    // No playable playlist yet (starting, retrying): the error handler retries every 3 s.
  }
  return { stream, switched: true };
});

const picker = new StreamPicker({
  listEl: $('stream-list'),
  statusEl: $('stream-status'),
  onPick: (name) => { switchStream(name).catch((e) => showError(e.message)); },
  onUpdate: (list) => {
    streamStates = list;
    if (!list) return;
    // No ?stream= and no stream called "live": show the first stream the server runs.
    if (!streamInUrl() && list.length && !list.some((s) => s.name === stream)) {
      defaultStream = list[0].name;
      switchStream(defaultStream, { history: 'none' }).catch(() => {});
      return;
    }
    // The stream on screen came back (or started): play it now instead of at the next retry.
    const here = list.find((s) => s.name === stream);
    if (here?.state === 'live' && !here.stale && player.error() && retryTimer) {
      clearTimeout(retryTimer);
      retryTimer = null;
      retryPlayback();
    }
  },
});

window.addEventListener('popstate', () => {
  switchStream(streamInUrl() ?? defaultStream, { history: 'none' }).catch(() => {});
});

player.on(['timeupdate', 'progress', 'loadedmetadata', 'seeked'], measure);
player.on(['play', 'pause', 'seeked', 'timeupdate'], updatePosition);
let retryTimer = null;
function retryPlayback() {
  const src = state.mode === 'live' ? liveUrl(stream) : vodUrl(stream, state.vod.from, state.vod.to);
  player.error(null);
  loadSource(src).then(() => { showError(null); return player.play(); }).catch(() => {});
}
player.on('error', () => {
  const e = player.error();
  state.errors.push(e?.message ?? String(e?.code));
  if (retryTimer) return;
  // A stream that has not started (or a server restart) should not leave a dead page: try again.
  const noVideo = picker.streams?.find((s) => s.name === stream)?.segments === 0;
  showError(noVideo ? waitingText() : `Playback failed (${e?.message ?? e?.code}); retrying in 3 s...`);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    retryPlayback();
  }, 3000);
});
// The timeline's start moves as the retention deletes old segments: re-read every 30 s. While a
// VOD range plays the live playlist is not read: then every 5 s (new epochs, the live edge).
let timelineReadAt = 0;
setInterval(() => {
  if (!state.timeline) return;
  const every = state.mode === 'vod' ? 5000 : 30000;
  if (performance.now() - timelineReadAt < every) return;
  timelineReadAt = performance.now();
  refreshTimeline();
}, 1000);
setInterval(() => {
  measure();
  // The live window slides while paused too; video.js moves its playhead only on timeupdate.
  renderBar();
  updateRows();
  rowThumbs.pump();
  updatePosition();
  updateLatency();
}, 250);
// The position moves on the timeline with the 250 ms timer below (renderBar); a seek, pause or play
// repaints at once.
player.on(['seeked', 'pause', 'play'], () => timeline.invalidate());
// A VOD range played to its end: play on from there (the next range, or the live playlist once
// the position reaches the live window), so playback continues across the whole retention.
player.on('ended', () => {
  if (state.mode !== 'vod' || !state.vod) return;
  let hls = secsToTicks(state.vod.to);
  const win = liveWindowStart();
  const margin = state.timeline?.segmentTicks ?? 90000;
  if (win !== null && hls >= win - 2 * margin) hls = Math.max(hls, win + margin);
  goToHls(hls, { pause: false }).catch((e) => showError(e.message));
});
// Frame stepping from anywhere on the page (not while typing in a field): ',' one frame back, '.'
// one forward, paused. Left/Right do the same on the focused timeline at frame level.
document.addEventListener('keydown', (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key !== ',' && e.key !== '.') return;
  const t = e.target;
  if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName))) return;
  e.preventDefault();
  stepFrames(e.key === ',' ? -1 : 1).catch((err) => showError(err.message));
});
/** A stall begins, or one that has not ended yet draws another report. */
function stallStarted(what) {
  const open = state.stalls.waits.at(-1);
  if (open && open.ms === undefined) {
    open.reports.push(what);
    return;
  }
  state.stalls.waits.push({ at: Date.now(), t: player.currentTime(), reports: [what] });
  if (state.stalls.waits.length > 200) state.stalls.waits.shift();
}
player.on('waiting', () => {
  if (player.seeking()) return; // a seek waits for its media: not a stall
  state.stalls.waiting += 1;
  state.stalls.log.push({ at: Date.now(), what: 'waiting', t: player.currentTime() });
  if (state.stalls.log.length > 200) state.stalls.log.shift();
  stallStarted('waiting');
});
// How long the stall lasted (`ms`), once the picture moves again.
player.on(['playing', 'timeupdate'], () => {
  const open = state.stalls.waits.at(-1);
  if (open && open.ms === undefined && player.currentTime() > open.t) open.ms = Date.now() - open.at;
});
// A seek during a stall (hls.js nudging past a hole, say) moves the point the picture must pass.
player.on('seeked', () => {
  const open = state.stalls.waits.at(-1);
  if (open && open.ms === undefined) open.t = player.currentTime();
});

async function boot() {
  picker.setCurrent(stream);
  if (!streamInUrl()) {
    // No stream in the URL: ask the server which streams it runs before loading `live`, which may
    // not exist (a config with other names).
    await Promise.race([picker.refresh(), new Promise((r) => setTimeout(r, 2000))]);
    const list = picker.streams;
    if (list?.length && !list.some((s) => s.name === stream)) {
      defaultStream = list[0].name;
      stream = defaultStream;
      state.stream = stream;
      showStreamName();
      picker.setCurrent(stream);
    }
    picker.start(STREAMS_REFRESH_MS);
  } else {
    picker.start();
  }
  player.src({ src: liveUrl(stream), type: HLS_TYPE });
  startStream();
}
boot();

// --- test and debugging hook ----------------------------------------------------------------------

window.hlsmark = {
  player,
  state,
  markers,
  seekToMarker,
  seekToHls,
  /** Any frame of the retention (the live playlist or a VOD range under the hood, as a click does). */
  goToHls,
  /** `k` frames from the frame on screen, paused (the ',' and '.' keys). */
  stepFrames,
  /** The timeline under the video (timeline.js): view, ticks (`tickX(id)`), `draw()` timings. */
  timeline,
  backToLive,
  switchStream,
  picker,
  /** The stream on screen. */
  get stream() { return stream; },
  clientOf: (m) => {
    const c = clientOfHls(typeof m === 'object' ? markerHls(m) : m);
    return c === null ? null : ticksToSecs(c);
  },
  isArchived: (id) => isArchived(markers.get(id)),
  /** HLS ticks of the frame on screen now (what a viewer would mark). */
  hlsNow,
  /** Seconds from the frame at the playhead to now (its PDT), or null. */
  latency: latencySecs,
  /** The hls.js instance of the current source. */
  engine,
  frameTicks,
  /** Row thumbnails and the seek bar's hover tile (`thumbs.seek.last`: `{ hls, cue }`). */
  thumbs: { rows: rowThumbs, seek: seekPreview, hlsAtBar },
  /**
   * The filter bar: `set({ kind, label, tag, severities })` as if typed, `filter` (its state and
   * `params()`), `add(list)` adds markers as the history does (a load test of the table).
   */
  filters: {
    bar: filterBar,
    filter,
    set: (f) => filterBar.set(f),
    add: (list) => {
      for (const m of list) addMarker(m);
      renderTable();
      renderBar();
    },
  },
};
