// Unit tests of the restream target lines (no browser needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeTarget } from '../src/restream.js';

test('connected: the masked target, bytes sent and restarts', () => {
  const d = describeTarget({ target: 'rtmp://h/live/****', state: 'connected', bytes_sent: 12_345_678, restarts: 1 });
  assert.equal(d.state, 'connected');
  assert.equal(d.text, '↗ rtmp://h/live/**** connected, 12.3 MB sent, 1 restart');
  assert.equal(d.tooltip, '');
});

test('retrying: the last error in the line and the tooltip', () => {
  const d = describeTarget({
    target: 'rtmp://h/app/****', state: 'retrying', restarts: 3, bytes_sent: 0,
    last_error: 'rtmp://h/app/****: Input/output error',
  });
  assert.equal(d.text, '↗ rtmp://h/app/**** retrying, 3 restarts: rtmp://h/app/****: Input/output error');
  assert.equal(d.tooltip, 'rtmp://h/app/****: Input/output error');
});

test('a connected target keeps its last error out of the line', () => {
  const d = describeTarget({ target: 'rtmp://h/live/****', state: 'connected', last_error: 'old', bytes_sent: 900 });
  assert.equal(d.text, '↗ rtmp://h/live/**** connected, 900 B sent');
});
