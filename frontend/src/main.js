// The hlsmark player page: live HLS (video.js 8 + VHS) with event markers on the seek bar and in a
// table, live marker push over SSE, and archived markers played from a time-range VOD playlist.
// How a marker's HLS time becomes the player's currentTime is explained in design/frontend.md.

import videojs from 'video.js';
import 'video.js/dist/video-js.css';
import './style.css';

import { fetchMarkers, fetchTimeline, liveUrl, openMarkerFeed, vodUrl } from './api.js';
import {
  Timeline, formatBehind, formatUtc, secsToTicks, seekTargetSecs, ticksToSecs,
} from './clock.js';

const HLS_TYPE = 'application/x-mpegURL';
/** Seconds of archive played around an archived marker. */
const VOD_BEFORE = 10;
const VOD_AFTER = 10;
/** How long a new row stays highlighted. */
const NEW_ROW_MS = 8000;

const $ = (id) => document.getElementById(id);

const stream = (new URLSearchParams(location.search).get('stream') || 'live').trim() || 'live';
$('stream-name').textContent = stream;
document.title = `hlsmark: ${stream}`;

const state = {
  stream,
  /** 'live' or 'archive' (a VOD playlist around an archived marker). */
  mode: 'live',
  vod: null,
  timeline: null,
  retainedStart: 0,
  /** HLS tick at which the player's currentTime is 0, per epoch index (measured from VHS). */
  zeros: new Map(),
  /** Zero taken from the playlist before any segment is buffered (VHS's own rule). */
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
    // Always VHS over MSE (Chromium now has native HLS too): the clock mapping below reads VHS's
    // segment timing, and every browser then behaves the same.
    vhs: { overrideNative: true, useDtsForTimestampOffset: false },
    nativeAudioTracks: false,
    nativeVideoTracks: false,
  },
});
player.src({ src: liveUrl(stream), type: HLS_TYPE });

function vhs() {
  try {
    return player.tech(true)?.vhs ?? null;
  } catch {
    return null;
  }
}

function currentPlaylist() {
  const v = vhs();
  try {
    return v?.playlists?.media?.() ?? null;
  } catch {
    return null;
  }
}

/**
 * Reads VHS's placement of every buffered segment (segment.start is where the segment's first frame
 * sits on the player's clock; VHS derives it from the same timestampOffset it gives the
 * SourceBuffer) and turns it into "HLS tick at currentTime 0" for that segment's epoch.
 */
function measure() {
  // While a new source loads, VHS may still hand out the old playlist, whose placement is not the
  // new source's.
  if (state.switching) return;
  const pl = currentPlaylist();
  const tl = state.timeline;
  if (!pl || !tl || !pl.segments) return;
  const lastTimeline = pl.segments.length ? pl.segments[pl.segments.length - 1].timeline : 0;
  if (Number.isFinite(lastTimeline) && lastTimeline > tl.epochs[tl.epochs.length - 1].index) {
    refreshTimeline(); // an encoder restart we have not heard of yet
  }
  if (state.mode === 'live' && !pl.endList) {
    const firstSeq = pl.mediaSequence ?? 0;
    const edgeSeq = firstSeq + pl.segments.length;
    const edge = tl.segmentStart(edgeSeq);
    if (state.liveFirstSeq !== firstSeq || state.liveEdgeHls !== edge) {
      state.liveFirstSeq = firstSeq;
      state.liveEdgeHls = edge;
      state.liveEdgeAt = performance.now();
    }
  }
  if (state.zeroGuess === null) state.zeroGuess = tl.segmentStart(pl.mediaSequence ?? 0);
  for (let i = 0; i < pl.segments.length; i++) {
    const seg = pl.segments[i];
    if (typeof seg.start !== 'number' || typeof seg.end !== 'number') continue;
    const seq = (pl.mediaSequence ?? 0) + i;
    const epoch = tl.epochAtSeq(seq);
    const zero = tl.clientToHls(-secsToTicks(seg.start), tl.segmentStart(seq));
    state.zeros.set(epoch.index, zero);
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
  return state.liveEdgeHls + secsToTicks((performance.now() - state.liveEdgeAt) / 1000);
}

/** A marker is archived once its segment has slid out of the live playlist. */
function isArchived(m) {
  const tl = state.timeline;
  if (!tl || state.liveFirstSeq === null) return false;
  let first = state.liveFirstSeq;
  if (state.mode !== 'live') {
    // Not loading the live playlist now: the window moved on with the wall clock.
    const elapsed = secsToTicks((performance.now() - state.liveEdgeAt) / 1000);
    first = tl.seqAt(tl.segmentStart(first) + elapsed);
  }
  return markerHls(m) < tl.segmentStart(first);
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
  // Let a seek still loading land first: overlapping seeks make VHS fetch and probe twice.
  if (player.seeking()) await waitFor(player, 'seeked', 3000);
  const client = clientOfHls(hls);
  if (client === null) throw new Error('the stream has not started playing yet');
  const target = seekTargetSecs(client, frameTicks());
  state.seekTrace = [`seek hls=${hls} target=${target.toFixed(4)} from=${player.currentTime().toFixed(4)}`];
  if (pause) player.pause();
  if (!isBuffered(target)) {
    // VHS treats a time within 1/30 s of buffered media as buffered and would not fetch the
    // segment holding a frame just before a buffered range (it would show the range's first frame
    // instead). Seeking to the middle of the frame's own segment first makes it load that segment.
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
  // If VHS had to load a segment of an epoch it had not seen, its placement is known only now.
  measure();
  const refined = seekTargetSecs(clientOfHls(hls), frameTicks());
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

async function loadSource(src) {
  state.switching = true;
  state.zeros.clear();
  state.zeroGuess = null;
  const loaded = waitFor(player, 'loadedmetadata', 15000);
  player.src({ src, type: HLS_TYPE });
  const ok = await loaded;
  state.switching = false;
  if (!ok) throw new Error('the stream did not load');
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

/** Clicked marker: seek within the live window, or play the archive around it. */
const seekToMarker = serialized(async (id) => {
  const m = markers.get(id);
  if (!m) throw new Error(`no marker ${id}`);
  const hls = markerHls(m);
  showError(null);
  try {
    if (isArchived(m)) {
      const from = Math.max(state.retainedStart, ticksToSecs(hls) - VOD_BEFORE);
      const to = ticksToSecs(hls) + VOD_AFTER;
      state.mode = 'archive';
      state.vod = { from, to, marker: id };
      await loadSource(vodUrl(stream, from, to));
    } else if (state.mode !== 'live') {
      await backToLiveNow({ play: false });
    }
    const r = await seekToHls(hls);
    setSelected(id);
    updatePosition();
    return { ...r, id };
  } catch (err) {
    showError(`Could not go to marker "${m.label}": ${err.message}`);
    throw err;
  }
});

const backToLive = serialized((opts) => backToLiveNow(opts));

async function backToLiveNow({ play = true } = {}) {
  if (state.mode !== 'live') {
    state.mode = 'live';
    state.vod = null;
    await loadSource(liveUrl(stream));
  }
  if (play) {
    // Not liveTracker.seekToLiveEdge(): it does nothing while video.js still counts the position as
    // "at the edge" (its own tolerance), and the button promises a jump.
    const lt = player.liveTracker;
    if (player.seeking()) await waitFor(player, 'seeked', 3000);
    const edge = lt?.liveCurrentTime();
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

const seekBar = player.getChild('ControlBar')?.getChild('ProgressControl')?.getChild('SeekBar');
const barLayer = document.createElement('div');
barLayer.className = 'hm-bar-markers';
seekBar?.el().appendChild(barLayer);
const barEls = new Map();
const rowEls = new Map();
const tbody = $('markers').tBodies[0];

function describe(m) {
  return `${m.label} at ${formatUtc(m.utc)} UTC`;
}

function stopForSeekBar(el) {
  // The seek bar scrubs on mousedown/touchstart and toggles play on Enter: keep those to ourselves.
  for (const ev of ['mousedown', 'touchstart', 'pointerdown', 'keydown', 'keyup', 'click']) {
    el.addEventListener(ev, (e) => e.stopPropagation());
  }
}

function barMarker(m) {
  let el = barEls.get(m.id);
  if (!el) {
    el = document.createElement('button');
    el.type = 'button';
    el.className = 'hm-bar-marker';
    el.dataset.id = m.id;
    el.setAttribute('aria-label', `Go to marker ${describe(m)}`);
    el.title = `${m.label} (${formatUtc(m.utc)})`;
    stopForSeekBar(el);
    el.addEventListener('click', () => { seekToMarker(m.id).catch(() => {}); });
    barLayer.appendChild(el);
    barEls.set(m.id, el);
  }
  return el;
}

/** Percent along the seek bar for client seconds `t`, with the seek bar's own formula. */
function barPercent(t) {
  const lt = player.liveTracker;
  if (state.mode === 'live' && lt && lt.isLive()) {
    const win = lt.liveWindow();
    if (!(win > 0)) return null;
    return ((t - lt.seekableStart()) / win) * 100;
  }
  const d = player.duration();
  return Number.isFinite(d) && d > 0 ? (t / d) * 100 : null;
}

function renderBar() {
  for (const m of markers.values()) {
    const client = clientOfHls(markerHls(m));
    const pct = client === null ? null : barPercent(ticksToSecs(client));
    // Live: markers newer than the player's live point wait at the right end until it reaches
    // them. Archive (a VOD range): only the markers inside the range belong on its bar.
    const inRange = pct !== null && pct >= -0.01 && (state.mode === 'live' || pct <= 100.01);
    const visible = inRange && (state.mode !== 'live' || !isArchived(m));
    if (!visible) {
      const el = barEls.get(m.id);
      if (el) el.hidden = true;
      continue;
    }
    const el = barMarker(m);
    el.hidden = false;
    const left = Math.min(100, Math.max(0, pct));
    el.style.left = `${left.toFixed(3)}%`;
    // The event's extent as a faint band after the tick (the tick is the marker's frame).
    const dur = Number.isFinite(m.duration_90k) ? m.duration_90k : secsToTicks(m.duration ?? 0);
    const end = dur > 0 ? barPercent(ticksToSecs(client + dur)) : null;
    const px = end === null ? 0 : ((Math.min(100, end) - left) / 100) * barLayer.clientWidth - 3;
    el.style.setProperty('--hm-extent', `${Math.max(0, px).toFixed(1)}px`);
    el.classList.toggle('hm-new', rowEls.get(m.id)?.classList.contains('hm-new') ?? false);
    el.classList.toggle('hm-selected', state.lastSeekId === m.id);
  }
}

function sortedMarkers() {
  return [...markers.values()].sort((a, b) => markerHls(b) - markerHls(a) || String(a.id).localeCompare(b.id));
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
  label.textContent = m.label;
  if (m.kind) {
    const kind = document.createElement('span');
    kind.className = 'hm-badge';
    kind.textContent = m.kind;
    label.append(' ', kind);
  }
  const archived = document.createElement('span');
  archived.className = 'hm-badge hm-badge-archived';
  archived.textContent = 'archived';
  archived.hidden = true;
  label.append(' ', archived);
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
  const order = sortedMarkers();
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
  $('marker-count').textContent = order.length ? `(${order.length})` : '';
  updateRows();
}

function updateRows() {
  const edge = liveEdgeNow();
  for (const [id, tr] of rowEls) {
    const m = markers.get(id);
    const archived = isArchived(m);
    tr.classList.toggle('hm-archived', archived);
    tr.querySelector('.hm-badge-archived').hidden = !archived;
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
  markers.set(m.id, m);
  if (known) {
    rowEls.get(m.id)?.remove();
    rowEls.delete(m.id);
    barEls.get(m.id)?.remove();
    barEls.delete(m.id);
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
  if (state.mode === 'archive') {
    const m = markers.get(state.vod?.marker);
    pos.textContent = `Archive around "${m?.label ?? ''}" (${formatUtc(m?.utc)} UTC)`;
    goLiveBtn.hidden = false;
    goLiveBtn.textContent = 'Back to live';
    goLiveBtn.setAttribute('aria-label', 'Leave the archive and go back to live');
    return;
  }
  const behindPoint = behindLivePointSecs();
  goLiveBtn.textContent = 'Go live \u25B6\u25B6';
  goLiveBtn.setAttribute('aria-label', 'Go to the live edge');
  const threshold = liveThreshold();
  const atEdge = behindPoint !== null && behindPoint <= threshold && !player.paused();
  goLiveBtn.hidden = atEdge || behindPoint === null;
  // Behind live as in the table: newest media in the playlist minus the frame on screen.
  const edge = liveEdgeNow();
  const now = hlsNow();
  const behind = edge !== null && now !== null ? formatBehind(ticksToSecs(edge - now)) : null;
  if (behindPoint === null) pos.textContent = 'Live: loading...';
  else if (atEdge) pos.textContent = behind ? `Live (${behind} behind the newest frame)` : 'Live';
  else pos.textContent = `${player.paused() ? 'Paused, ' : ''}${behind ?? formatBehind(behindPoint)} behind live`;
}

function setFeed(s) {
  state.feed = s;
  const text = { open: 'marker feed: live', reconnecting: 'marker feed: reconnecting...', closed: 'marker feed: closed' }[s] ?? s;
  $('feed-status').textContent = text;
  $('feed-status').dataset.state = s;
}

// --- start-up -------------------------------------------------------------------------------------

let timelineRefresh = null;
function refreshTimeline() {
  if (timelineRefresh) return timelineRefresh;
  timelineRefresh = fetchTimeline(stream)
    .then((json) => {
      state.timeline = new Timeline(json);
      state.retainedStart = Number(json.retained?.start ?? 0);
      state.timelineJson = json;
      if (state.liveEdgeHls === null && Number.isFinite(json.live_edge)) {
        state.liveEdgeHls = secsToTicks(json.live_edge);
        state.liveEdgeAt = performance.now();
      }
      if (state.liveFirstSeq === null && Number.isFinite(json.window?.first_seq)) {
        state.liveFirstSeq = json.window.first_seq;
      }
    })
    .catch((err) => showError(`Timeline unavailable: ${err.message}`))
    .finally(() => { timelineRefresh = null; });
  return timelineRefresh;
}

let feedSeenOpen = false;
async function start() {
  // Feed first, then the history: a marker created in between arrives through one or the other
  // (ids de-duplicate).
  openMarkerFeed(stream, {
    onMarker: (m) => addMarker(m, { fresh: true }),
    onLagged: () => loadHistory(),
    onState: (s) => {
      setFeed(s);
      if (s === 'open' && feedSeenOpen) loadHistory(); // catch up after a reconnect
      if (s === 'open') feedSeenOpen = true;
    },
  });
  // A stream that has not published a segment yet has no timeline: wait for it (start-up only).
  for (;;) {
    await refreshTimeline();
    if (state.timeline) break;
    await new Promise((r) => setTimeout(r, 3000));
  }
  showError(null);
  await loadHistory();
  state.ready = true;
}

async function loadHistory() {
  const tl = state.timelineJson;
  const to = Number(tl?.live_edge ?? 0) + 3600;
  try {
    const list = await fetchMarkers(stream, Math.max(0, state.retainedStart), to);
    for (const m of list) addMarker(m);
    renderTable();
    renderBar();
  } catch (err) {
    showError(`Markers unavailable: ${err.message}`);
  }
}

player.on(['timeupdate', 'progress', 'loadedmetadata', 'seeked'], measure);
player.on(['play', 'pause', 'seeked', 'timeupdate'], updatePosition);
let retryTimer = null;
player.on('error', () => {
  const e = player.error();
  state.errors.push(e?.message ?? String(e?.code));
  if (retryTimer) return;
  // A stream that has not started (or a server restart) should not leave a dead page: try again.
  showError(`Playback failed (${e?.message ?? e?.code}); retrying in 3 s...`);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    const src = state.mode === 'live' ? liveUrl(stream) : vodUrl(stream, state.vod.from, state.vod.to);
    player.error(null);
    loadSource(src).then(() => { showError(null); return player.play(); }).catch(() => {});
  }, 3000);
});
setInterval(() => {
  measure();
  // The live window slides while paused too; video.js moves its playhead only on timeupdate.
  if (player.paused()) seekBar?.update?.();
  renderBar();
  updateRows();
  updatePosition();
}, 250);

start();

// --- test and debugging hook ----------------------------------------------------------------------

window.hlsmark = {
  player,
  state,
  markers,
  seekToMarker,
  seekToHls,
  backToLive,
  clientOf: (m) => {
    const c = clientOfHls(typeof m === 'object' ? markerHls(m) : m);
    return c === null ? null : ticksToSecs(c);
  },
  isArchived: (id) => isArchived(markers.get(id)),
  /** HLS ticks of the frame on screen now (what a viewer would mark). */
  hlsNow,
  frameTicks,
};
