// Marker severity, colour, tags and clips on the page, and the filter bar over the marker list
// (issue 16). No player logic here: main.js asks `filter.matches(m)` for rows and the timeline's
// ticks, passes `filter.params()` to GET /markers and /markers/live, and calls `decorateRow`; the
// timeline paints ticks in `markerColor(m)`.

export const SEVERITIES = ['info', 'warning', 'critical'];
/** Tick and row colour of a marker without its own `color` (critical stands out: red, wider tick). */
export const SEVERITY_COLORS = { info: '#4ea1ff', warning: '#ffb020', critical: '#ff3355' };
/** A glyph next to the severity word, so the severity never rests on colour alone. */
const SEVERITY_GLYPHS = { info: '\u2139', warning: '\u26A0', critical: '\u203C' };
/** Rows in the table at most: the newest matching markers (a long history stays fast). */
export const ROW_CAP = 500;
/** The server's default padding of a marker clip (`pad`), seconds before and after the span. */
export const CLIP_PAD_SECS = 2;
/** Text filters reach the server this long after the last keystroke (the rows follow at once). */
const SERVER_DEBOUNCE_MS = 350;

// The server's rules (a value no marker could have is 400): such a value filters only here.
const KIND_RE = /^[a-z0-9_.-]{1,64}$/;
const TAG_RE = /^[A-Za-z0-9_.:-]{1,32}$/;
const COLOR_RE = /^#[0-9a-fA-F]{6}$/;

export function severityOf(m) {
  return SEVERITIES.includes(m?.severity) ? m.severity : 'info';
}

/** The marker's own `color`, else its severity's. */
export function markerColor(m) {
  return COLOR_RE.test(m?.color ?? '') ? m.color.toLowerCase() : SEVERITY_COLORS[severityOf(m)];
}

export function tagsOf(m) {
  return Array.isArray(m?.tags) ? m.tags.filter((t) => typeof t === 'string') : [];
}

/** The download URL of a marker's clip (the server's default padding). */
export function clipUrl(m, stream) {
  const q = new URLSearchParams({ stream, download: '1' });
  return `/markers/${encodeURIComponent(m.id)}/clip.mp4?${q}`;
}

/** What the viewer filters on; an empty field (or every severity checked) filters nothing. */
export class MarkerFilter {
  constructor() {
    this.kind = '';
    this.label = '';
    this.tag = '';
    this.severities = new Set(SEVERITIES);
  }

  get active() {
    return Boolean(this.kind || this.label || this.tag || this.severities.size < SEVERITIES.length);
  }

  matches(m) {
    if (this.kind && m.kind !== this.kind) return false;
    if (this.label && !String(m.label ?? '').startsWith(this.label)) return false;
    if (this.tag && !tagsOf(m).includes(this.tag)) return false;
    if (this.severities.size < SEVERITIES.length && !this.severities.has(severityOf(m))) return false;
    return true;
  }

  /** The query parameters of GET /markers and /markers/live (values the server accepts only). */
  params() {
    const p = {};
    if (KIND_RE.test(this.kind)) p.kind = this.kind;
    if (this.label && [...this.label].length <= 256) p.label = this.label;
    if (TAG_RE.test(this.tag)) p.tag = this.tag;
    // None checked shows nothing here; asking the server for everything keeps the feed simple.
    if (this.severities.size > 0 && this.severities.size < SEVERITIES.length) {
      p.severity = SEVERITIES.filter((s) => this.severities.has(s)).join(',');
    }
    return p;
  }

  /** Same key, same server answer. */
  key() {
    return new URLSearchParams(this.params()).toString();
  }

  clear() {
    this.kind = '';
    this.label = '';
    this.tag = '';
    this.severities = new Set(SEVERITIES);
  }
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('aria-') || k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

/** Keeps a click or key inside a row from also seeking to the row's marker. */
function ownEvents(e) {
  for (const ev of ['click', 'keydown', 'mousedown']) e.addEventListener(ev, (x) => x.stopPropagation());
  return e;
}

/**
 * The filter bar above the marker list. `onChange()` runs at once on every change (rows and ticks
 * follow); `onServerChange()` when the server's part (`filter.params()`) changed, debounced for
 * typing.
 */
export class FilterBar {
  constructor({ before, onChange, onServerChange }) {
    this.filter = new MarkerFilter();
    this.onChange = onChange;
    this.onServerChange = onServerChange;
    this.kinds = new Set();
    this.tags = new Set();
    this.listsDirty = false;
    this.serverKey = this.filter.key();
    this.timer = null;

    this.kindSel = el('select', { id: 'filter-kind', name: 'kind' }, el('option', { value: '' }, 'all kinds'));
    this.labelIn = el('input', { id: 'filter-label', name: 'label', type: 'search', placeholder: 'starts with', autocomplete: 'off', maxLength: 256 });
    this.tagIn = el('input', { id: 'filter-tag', name: 'tag', type: 'search', placeholder: 'tag', autocomplete: 'off', maxLength: 32 });
    this.tagIn.setAttribute('list', 'filter-tags-seen');
    this.tagList = el('datalist', { id: 'filter-tags-seen' });
    this.sevBoxes = SEVERITIES.map((s) => el('input', { type: 'checkbox', name: 'severity', value: s, checked: true, id: `filter-sev-${s}` }));
    const sevs = el('fieldset', { class: 'hm-filter-sev' }, el('legend', {}, 'Severity'),
      ...SEVERITIES.map((s, i) => el('label', { class: 'hm-filter-check', 'data-severity': s },
        this.sevBoxes[i], el('span', { class: 'hm-sev-swatch', 'aria-hidden': 'true' }), ` ${s}`)));
    this.clearBtn = el('button', { type: 'button', class: 'hm-filter-clear', hidden: true }, 'Clear filters');
    this.form = el('form', { class: 'hm-filters', role: 'search', 'aria-label': 'Filter markers' },
      el('label', { class: 'hm-filter-field' }, el('span', {}, 'Kind'), this.kindSel),
      el('label', { class: 'hm-filter-field' }, el('span', {}, 'Label'), this.labelIn),
      el('label', { class: 'hm-filter-field' }, el('span', {}, 'Tag'), this.tagIn),
      this.tagList, sevs, this.clearBtn);
    this.note = el('p', { id: 'filter-note', class: 'hm-filter-note', 'aria-live': 'polite' });
    before.before(this.form, this.note);

    this.form.addEventListener('submit', (e) => e.preventDefault());
    this.kindSel.addEventListener('change', () => this.read({ now: true }));
    this.labelIn.addEventListener('input', () => this.read());
    this.tagIn.addEventListener('input', () => this.read());
    for (const b of this.sevBoxes) b.addEventListener('change', () => this.read({ now: true }));
    this.clearBtn.addEventListener('click', () => this.set({ kind: '', label: '', tag: '', severities: SEVERITIES }));
  }

  /** Reads the controls into the filter. */
  read({ now = false } = {}) {
    const f = this.filter;
    f.kind = this.kindSel.value;
    f.label = this.labelIn.value;
    f.tag = this.tagIn.value.trim();
    f.severities = new Set(this.sevBoxes.filter((b) => b.checked).map((b) => b.value));
    const badTag = Boolean(f.tag) && !TAG_RE.test(f.tag);
    this.tagIn.setAttribute('aria-invalid', String(badTag));
    this.tagIn.title = badTag ? 'A tag is 1 to 32 of A-Z, a-z, 0-9, _ . : -' : '';
    this.clearBtn.hidden = !f.active;
    this.onChange?.();
    clearTimeout(this.timer);
    if (now) this.toServer();
    else this.timer = setTimeout(() => this.toServer(), SERVER_DEBOUNCE_MS);
  }

  toServer() {
    const key = this.filter.key();
    if (key === this.serverKey) return;
    this.serverKey = key;
    this.onServerChange?.();
  }

  /** Sets some of the filters (a tag chip clicked, the test hook) as if typed. */
  set({ kind, label, tag, severities } = {}) {
    if (kind !== undefined) {
      if (kind && !this.kinds.has(kind)) this.noteMarker({ kind });
      this.syncLists();
      this.kindSel.value = kind;
    }
    if (label !== undefined) this.labelIn.value = label;
    if (tag !== undefined) this.tagIn.value = tag;
    if (severities !== undefined) for (const b of this.sevBoxes) b.checked = severities.includes(b.value);
    this.read({ now: true });
  }

  /** Remembers the marker's kind and tags for the kind list and the tag suggestions. */
  noteMarker(m) {
    if (m.kind && !this.kinds.has(m.kind)) {
      this.kinds.add(m.kind);
      this.listsDirty = true;
    }
    for (const t of tagsOf(m)) {
      if (!this.tags.has(t) && this.tags.size < 1000) {
        this.tags.add(t);
        this.listsDirty = true;
      }
    }
  }

  /** Rebuilds the kind options and tag suggestions when new ones were seen. */
  syncLists() {
    if (!this.listsDirty) return;
    this.listsDirty = false;
    const keep = this.kindSel.value;
    const kinds = [...this.kinds].sort();
    this.kindSel.replaceChildren(el('option', { value: '' }, 'all kinds'), ...kinds.map((k) => el('option', { value: k }, k)));
    this.kindSel.value = kinds.includes(keep) ? keep : '';
    this.tagList.replaceChildren(...[...this.tags].sort().map((t) => el('option', { value: t })));
  }

  /** Forgets the kinds and tags seen (a stream switch); the filter itself stays. */
  reset() {
    this.kinds.clear();
    this.tags.clear();
    if (this.filter.kind) this.kinds.add(this.filter.kind);
    this.listsDirty = true;
    this.syncLists();
  }

  /** The line under the bar: how many rows show, and whether some were left out. */
  showCounts({ shown, matching, total }) {
    let text = '';
    if (matching > shown) text = `Showing the newest ${shown} of ${matching} matching markers.`;
    if (this.filter.active) text = `${text ? `${text} ` : ''}${matching} of ${total} loaded markers match the filters.`;
    if (this.note.textContent !== text) this.note.textContent = text;
    this.note.hidden = !text;
  }
}

/** Severity badge, tag chips and clip download of a marker row; its colour as `--hm-color`. */
export function decorateRow(tr, m, { stream, labelCell, onTag, describe }) {
  const sev = severityOf(m);
  const color = markerColor(m);
  tr.style.setProperty('--hm-color', color);
  tr.dataset.severity = sev;
  const tags = tagsOf(m);
  tr.setAttribute('aria-label', `Go to marker ${describe}, severity ${sev}${tags.length ? `, tags ${tags.join(', ')}` : ''}`);
  const badge = el('span', { class: 'hm-sev', 'data-severity': sev, title: `Severity: ${sev}` },
    el('span', { class: 'hm-sev-glyph', 'aria-hidden': 'true' }, SEVERITY_GLYPHS[sev]), ` ${sev}`);
  const extra = [' ', badge];
  if (tags.length) {
    const chips = el('span', { class: 'hm-tags' });
    for (const t of tags) {
      chips.append(ownEvents(el('button', { type: 'button', class: 'hm-tag', title: `Show only markers tagged ${t}`, onclick: () => onTag(t) }, t)));
    }
    extra.push(' ', chips);
  }
  const secs = Number.isFinite(m.duration) ? m.duration : 0;
  const what = `an MP4 clip of "${m.label}": ${CLIP_PAD_SECS} s before the marker to ${CLIP_PAD_SECS} s after its end (${(secs + 2 * CLIP_PAD_SECS).toFixed(1)} s)`;
  const link = ownEvents(el('a', {
    class: 'hm-download', href: clipUrl(m, stream), download: '', title: `Download ${what}`, 'aria-label': `Download ${what}`,
  }, el('span', { 'aria-hidden': 'true' }, '\u2193'), ' clip'));
  labelCell.append(...extra, ' ', link);
}
