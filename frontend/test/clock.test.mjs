// Unit tests of the browser clock model (no browser needed): node --test test/clock.test.mjs
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Timeline, parseFps, seekTargetSecs } from '../src/clock.js';

const D = 90000;
const ANCHOR = '2026-11-24T07:00:00.000Z';

test('one epoch: client = hls - S x D (the proof of concept offset)', () => {
  const tl = new Timeline({ segment_duration: 1, fps: '30', epochs: [{ index: 0, first_seq: 0, hls_start: 0, hls_start_90k: 0, fps: '30', segment_frames: 30, utc_start: ANCHOR }] });
  const hls = 37 * D + 7 * 3000;
  assert.equal(tl.hlsToClient(hls, tl.segmentStart(30)), hls - 30 * D);
  assert.equal(tl.clientToHls(hls - 30 * D, tl.segmentStart(30)), hls);
  assert.equal(tl.seqAt(hls), 37);
  assert.equal(tl.joinSeqOf(30 * D), 30);
  assert.equal(tl.joinSeqOf(30 * D + 1500), null);
  assert.equal(tl.frameTicks(), 3000);
});

test('two epochs: the short final segment of epoch 0 is skipped (same case as the clock crate)', () => {
  const tl = new Timeline({
    segment_duration: 1, fps: '30',
    epochs: [
      { index: 1, first_seq: 11, hls_start_90k: 11 * D, fps: '30', segment_frames: 30 },
      { index: 0, first_seq: 0, hls_start_90k: 0, fps: '30', segment_frames: 30, hls_end: 10.5 },
    ],
  });
  const hls = 12 * D + D / 10;
  const zero = tl.segmentStart(8);
  assert.equal(tl.hlsToClient(hls, zero), 3 * D + D / 2 + D / 10);
  assert.equal(tl.clientToHls(3 * D + D / 2 + D / 10, zero), hls);
  assert.equal(tl.hlsToClient(9 * D, tl.segmentStart(12)), -(2 * D + D / 2));
  assert.equal(tl.clientToHls(-(2 * D + D / 2), tl.segmentStart(12)), 9 * D);
  assert.equal(tl.epochAtSeq(10).index, 0);
  assert.equal(tl.epochAtSeq(11).index, 1);
});

test('NTSC rates stay exact', () => {
  assert.deepEqual(parseFps('30000/1001'), { num: 30000, den: 1001 });
  assert.deepEqual(parseFps(29.97), { num: 30000, den: 1001 });
  const tl = new Timeline({ fps: '30000/1001', epochs: [{ index: 0, first_seq: 0, hls_start_90k: 0, fps: '30000/1001', segment_frames: 30 }] });
  assert.equal(tl.frameTicks(), 3003);
  assert.equal(tl.segmentStart(3), 3 * 90090);
});

test('the seek target is the middle of the frame', () => {
  assert.equal(seekTargetSecs(90000, 3000), 1 + 1500 / 90000);
});
