// The few HTTP calls the page makes (paths from the public contract; all same-origin).

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
    throw new Error(`${url}: ${message}`);
  }
  return res.json();
}

export function fetchTimeline(stream) {
  return getJson(`/timeline?stream=${encodeURIComponent(stream)}`);
}

/** Every marker in [from, to) (HLS seconds), following cursors up to `maxPages` pages. */
export async function fetchMarkers(stream, from, to, maxPages = 5) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page++) {
    const q = new URLSearchParams({ stream, from: from.toFixed(3), to: to.toFixed(3), limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const body = await getJson(`/markers?${q}`);
    out.push(...(body.markers ?? []));
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

/** Opens the live marker feed (Server-Sent Events); `onMarker` gets each parsed marker. */
export function openMarkerFeed(stream, { onMarker, onState, onLagged }) {
  const es = new EventSource(`/markers/live?stream=${encodeURIComponent(stream)}`);
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
