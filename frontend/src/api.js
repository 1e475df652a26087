// The few HTTP calls the page makes (paths from the public contract; all same-origin).

/** An answer that was not 2xx; `status` is the HTTP status. */
export class HttpError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body?.error?.message) message = `${body.error.message} (${res.status})`;
    } catch {
      // not JSON: keep the status line
    }
    throw new HttpError(`${url}: ${message}`, res.status);
  }
  return res.json();
}

/**
 * The streams the server runs and their state (`GET /streams`, sorted by name), or `null` when the
 * server is older than the route (404): the page then knows only the stream in its URL.
 */
export async function fetchStreams() {
  try {
    const body = await getJson('/streams');
    return Array.isArray(body?.streams) ? body.streams : [];
  } catch (err) {
    if (err instanceof HttpError && err.status === 404) return null;
    throw err;
  }
}

export function fetchTimeline(stream) {
  return getJson(`/timeline?stream=${encodeURIComponent(stream)}`);
}

/**
 * Every marker in [from, to) (HLS seconds), following cursors up to `maxPages` pages; `filters`
 * (`kind`, `label`, `tag`, `severity`) go to the server as they are. `onPage(list)` gets each page
 * as it arrives (a long history shows while it loads); returning false stops the read.
 */
export async function fetchMarkers(stream, from, to, maxPages = 5, filters = {}, onPage = null) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page++) {
    const q = new URLSearchParams({ stream, from: from.toFixed(3), to: to.toFixed(3), limit: '1000', ...filters });
    if (cursor) q.set('cursor', cursor);
    const body = await getJson(`/markers?${q}`);
    const list = body.markers ?? [];
    out.push(...list);
    if (onPage && onPage(list) === false) break;
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return out;
}

export function liveUrl(stream) {
  return `/hls/${encodeURIComponent(stream)}/index.m3u8`;
}

export function vodUrl(stream, fromSecs, toSecs) {
  const q = new URLSearchParams({ from: fromSecs.toFixed(3), to: toSecs.toFixed(3) });
  return `/hls/${encodeURIComponent(stream)}/vod.m3u8?${q}`;
}

/**
 * Opens the live marker feed (Server-Sent Events); `onMarker` gets each parsed marker that passes
 * `filters` (the same as fetchMarkers').
 */
export function openMarkerFeed(stream, { onMarker, onState, onLagged, filters = {} }) {
  const es = new EventSource(`/markers/live?${new URLSearchParams({ stream, ...filters })}`);
  es.addEventListener('open', () => onState('open'));
  es.addEventListener('error', () => onState(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'));
  es.addEventListener('marker', (ev) => {
    try {
      onMarker(JSON.parse(ev.data));
    } catch (err) {
      console.warn('hlsmark: bad marker event', err);
    }
  });
  // The server dropped events for a slow reader: the caller re-reads the history once.
  es.addEventListener('lagged', () => onLagged?.());
  return es;
}
