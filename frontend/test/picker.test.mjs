// Unit tests of what the stream picker shows for each /streams entry (no browser needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeStream } from '../src/streams.js';

const base = { name: 'cam', kind: 'rtsp', since: '2026-11-24T07:00:05Z', updated: '2026-11-24T07:00:09Z', stale: false, restarts: 0 };

test('live: a badge and no status line', () => {
  const d = describeStream({ ...base, state: 'live' });
  assert.equal(d.badge, 'live');
  assert.equal(d.status, null);
  assert.equal(d.tooltip, 'live since 07:00:05 UTC');
});

test('retrying: the last error is the tooltip and in the status line, with the restarts', () => {
  const d = describeStream({ ...base, state: 'retrying', restarts: 3, last_error: 'rtsp://127.0.0.1:1/x: Connection refused' });
  assert.equal(d.badge, 'retrying');
  assert.equal(d.tooltip, 'rtsp://127.0.0.1:1/x: Connection refused');
  assert.equal(d.status, 'cam: retrying, 3 restarts: rtsp://127.0.0.1:1/x: Connection refused');
});

test('failed and starting', () => {
  assert.equal(describeStream({ ...base, state: 'failed', last_error: 'no such file' }).status, 'cam: failed: no such file');
  const s = describeStream({ ...base, state: 'starting' });
  assert.equal(s.badge, 'starting');
  assert.match(s.status, /^cam: starting since 07:00:05 UTC/);
});

test('stale wins over the last state it reported', () => {
  const d = describeStream({ ...base, state: 'live', stale: true });
  assert.equal(d.badge, 'stale');
  assert.match(d.status, /since 07:00:09 UTC \(last known: live\)/);
});

test('no state (a stream the server knows only from its index): no badge', () => {
  const d = describeStream({ name: 'old', kind: null, state: null });
  assert.equal(d.badge, null);
  assert.equal(d.status, null);
});
