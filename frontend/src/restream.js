// Restream targets on the page: one small line per target of the stream on screen, under the
// stream picker's status line ("↗ rtmp://host/app/**** connected, 12.3 MB sent"). The server
// masks every stream key (`****`); this module never sees one.
//
// `describeTarget` is pure (no DOM) so the unit tests can run it under node.

function size(bytes) {
  const n = Number(bytes) || 0;
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/**
 * One entry of a stream's `restream` list (from `GET /streams`) as `{ state, text, tooltip }`:
 * `state` is the target's state (`connected`, `connecting`, `retrying`, `failed`, `stopped`),
 * `text` the line shown, `tooltip` the last error when there is one.
 */
export function describeTarget(t) {
  const state = typeof t?.state === 'string' ? t.state : 'unknown';
  const restarts = Number(t?.restarts) > 0 ? `, ${t.restarts} restart${t.restarts === 1 ? '' : 's'}` : '';
  const error = typeof t?.last_error === 'string' && t.last_error.trim() ? t.last_error.trim() : null;
  const sent = Number(t?.bytes_sent) > 0 ? `, ${size(t.bytes_sent)} sent` : '';
  let text = `↗ ${t?.target ?? '?'} ${state}${sent}${restarts}`;
  if ((state === 'retrying' || state === 'failed') && error) text += `: ${error}`;
  return { state, text, tooltip: error ?? '' };
}

/**
 * Shows `targets` (the `restream` list of the stream on screen; empty or missing: nothing) in a
 * list placed right after `anchorEl`, made on first use and reused; returns it.
 */
export function renderTargets(anchorEl, listEl, targets) {
  const list = Array.isArray(targets) ? targets : [];
  let el = listEl;
  if (!el) {
    if (list.length === 0) return null;
    el = document.createElement('ul');
    el.className = 'hm-stream-status hm-restream';
    el.setAttribute('aria-label', 'Restream targets');
    Object.assign(el.style, { listStyle: 'none', padding: '0', margin: '0' });
    anchorEl.after(el);
  }
  el.hidden = list.length === 0;
  while (el.children.length > list.length) el.lastChild.remove();
  list.forEach((t, i) => {
    const d = describeTarget(t);
    let li = el.children[i];
    if (!li) {
      li = document.createElement('li');
      el.appendChild(li);
    }
    if (li.textContent !== d.text) li.textContent = d.text;
    li.dataset.state = d.state;
    if (d.tooltip) li.title = d.tooltip;
    else li.removeAttribute('title');
  });
  return el;
}
