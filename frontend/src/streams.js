// The stream picker: the streams of `GET /streams` as buttons (name, source kind, a state badge),
// re-read every few seconds so a stream that comes back shows as live, a status line for the
// stream on screen and a line per restream target of it (restream.js). Choosing a stream is
// main.js's job (`onPick`); this module only lists.
//
// `describeStream` is pure (no DOM) so the unit tests can run it under node.

import { fetchStreams } from './api.js';
import { renderTargets } from './restream.js';

/** How often the list is re-read (one small JSON answer). */
export const STREAMS_REFRESH_MS = 3000;

function hhmmss(rfc3339) {
  const d = new Date(rfc3339 ?? NaN);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().slice(11, 19);
}

/**
 * What the page shows for one entry of `/streams`:
 * `{ badge, badgeText, tooltip, status }`. `badge` is the CSS state (`live`, `starting`, `retrying`,
 * `failed`, `stopped`, `stale`, or null when the server reports no state); `status` is the line
 * shown under the picker while this stream is on screen (null: nothing to say).
 */
export function describeStream(s) {
  const name = s?.name ?? '?';
  const since = hhmmss(s?.since);
  const restarts = Number(s?.restarts) > 0 ? `, ${s.restarts} restart${s.restarts === 1 ? '' : 's'}` : '';
  const error = typeof s?.last_error === 'string' && s.last_error.trim() ? s.last_error.trim() : null;
  if (s?.stale) {
    const updated = hhmmss(s.updated);
    const was = s.state ? ` (last known: ${s.state})` : '';
    const text = `no status from the ingest since ${updated ?? 'a while'} UTC${was}`;
    return { badge: 'stale', badgeText: 'stale', tooltip: text, status: `${name}: ${text}` };
  }
  switch (s?.state) {
    case 'live':
      return {
        badge: 'live',
        badgeText: 'live',
        tooltip: since ? `live since ${since} UTC${restarts}` : 'live',
        status: null,
      };
    case 'starting':
      return {
        badge: 'starting',
        badgeText: 'starting',
        tooltip: since ? `starting since ${since} UTC` : 'starting',
        status: `${name}: starting${since ? ` since ${since} UTC` : ''}...`,
      };
    case 'retrying':
      return {
        badge: 'retrying',
        badgeText: 'retrying',
        tooltip: error ?? 'retrying',
        status: `${name}: retrying${restarts}${error ? `: ${error}` : ''}`,
      };
    case 'failed':
      return {
        badge: 'failed',
        badgeText: 'failed',
        tooltip: error ?? 'failed',
        status: `${name}: failed${error ? `: ${error}` : ''}`,
      };
    case 'stopped':
      return {
        badge: 'stopped',
        badgeText: 'stopped',
        tooltip: since ? `stopped since ${since} UTC` : 'stopped',
        status: `${name}: stopped${since ? ` at ${since} UTC` : ''}; the archive stays playable`,
      };
    default:
      return { badge: null, badgeText: '', tooltip: '', status: null };
  }
}

/**
 * The picker in `listEl` (a `<ul>`) and the status line `statusEl`. `onPick(name)` runs when the
 * viewer presses a stream's button; `onUpdate(streams)` after every successful read (`streams` is
 * null when the server has no `/streams`).
 */
export class StreamPicker {
  constructor({ listEl, statusEl, onPick, onUpdate, refreshMs = STREAMS_REFRESH_MS }) {
    this.listEl = listEl;
    this.statusEl = statusEl;
    this.onPick = onPick;
    this.onUpdate = onUpdate;
    this.refreshMs = refreshMs;
    this.current = null;
    /** The last list read, or null (not read yet, or no `/streams` on this server). */
    this.streams = null;
    /** false once the server answered 404: it predates `/streams`. */
    this.supported = true;
    this.buttons = new Map();
    this.timer = null;
    /** The restream lines of the stream on screen (made on first use). */
    this.restreamEl = null;
  }

  setCurrent(name) {
    this.current = name;
    this.render();
  }

  /** Re-reads the list every `refreshMs`, the first time after `delayMs`; stops on a 404. */
  start(delayMs = 0) {
    const tick = async () => {
      await this.refresh();
      if (this.supported) this.timer = setTimeout(tick, this.refreshMs);
    };
    if (!this.supported) return;
    this.timer = setTimeout(tick, delayMs);
  }

  async refresh() {
    try {
      const list = await fetchStreams();
      if (list === null) {
        this.supported = false;
        this.streams = null;
      } else {
        this.streams = list;
      }
      this.render();
      this.onUpdate?.(this.streams);
    } catch (err) {
      // Network or 5xx: keep the last list; the next read may work.
      console.warn('hlsmark: /streams', err.message);
    }
  }

  entries() {
    const list = this.streams ? [...this.streams] : [];
    // The stream in the URL is always shown, even when the server does not list it (an old server,
    // a stream whose ingest has not reported yet, a typo): the viewer sees what is playing.
    if (this.current && !list.some((s) => s.name === this.current)) {
      list.push({ name: this.current, kind: null, state: null, unlisted: this.streams !== null });
    }
    return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  button(name) {
    let b = this.buttons.get(name);
    if (!b) {
      const li = document.createElement('li');
      b = document.createElement('button');
      b.type = 'button';
      b.className = 'hm-stream-btn';
      b.dataset.stream = name;
      const n = document.createElement('span');
      n.className = 'hm-stream-name';
      n.textContent = name;
      const kind = document.createElement('span');
      kind.className = 'hm-stream-kind';
      const badge = document.createElement('span');
      badge.className = 'hm-state';
      b.append(n, kind, badge);
      b.addEventListener('click', () => {
        if (name !== this.current) this.onPick(name);
      });
      li.appendChild(b);
      this.buttons.set(name, b);
    }
    return b;
  }

  render() {
    const entries = this.entries();
    const keep = new Set(entries.map((s) => s.name));
    for (const [name, b] of this.buttons) {
      if (!keep.has(name)) {
        b.parentElement.remove();
        this.buttons.delete(name);
      }
    }
    let prev = null;
    let status = null;
    let statusState = '';
    let targets = [];
    for (const s of entries) {
      const b = this.button(s.name);
      const d = describeStream(s);
      const kind = s.kind ?? '';
      const kindEl = b.querySelector('.hm-stream-kind');
      if (kindEl.textContent !== kind) kindEl.textContent = kind;
      kindEl.hidden = !kind;
      const badge = b.querySelector('.hm-state');
      badge.textContent = d.badgeText;
      badge.hidden = !d.badge;
      badge.dataset.state = d.badge ?? '';
      b.dataset.state = d.badge ?? '';
      const tooltip = s.unlisted ? 'not listed by the server' : d.tooltip;
      if (tooltip) b.title = tooltip;
      else b.removeAttribute('title');
      const label = [`Stream ${s.name}`, kind, d.badgeText, d.badge === 'retrying' || d.badge === 'failed' ? d.tooltip : '']
        .filter(Boolean).join(', ');
      b.setAttribute('aria-label', label);
      const isCurrent = s.name === this.current;
      if (isCurrent) {
        b.setAttribute('aria-current', 'true');
        status = s.unlisted ? `${s.name}: not listed by the server (no ingest reports this stream)` : d.status;
        statusState = s.unlisted ? 'unlisted' : d.badge ?? '';
        targets = s.restream ?? [];
      } else {
        b.removeAttribute('aria-current');
      }
      const li = b.parentElement;
      const want = prev ? prev.nextSibling : this.listEl.firstChild;
      if (want !== li) this.listEl.insertBefore(li, want);
      prev = li;
    }
    if (this.statusEl.textContent !== (status ?? '')) this.statusEl.textContent = status ?? '';
    this.statusEl.hidden = !status;
    this.statusEl.dataset.state = statusState;
    this.restreamEl = renderTargets(this.statusEl, this.restreamEl, targets);
  }
}
