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

test('frame grid: snap, step across an epoch gap, UTC and coverage (the timeline\'s arithmetic)', () => {
  const tl = new Timeline({
    segment_duration: 1, fps: '30',
    epochs: [
      { index: 0, first_seq: 0, hls_start_90k: 0, fps: '30', segment_frames: 30, hls_end_90k: 10 * D + 1000, utc_start: ANCHOR },
      { index: 1, first_seq: 11, hls_start_90k: 13 * D, fps: '30', segment_frames: 30, utc_start: '2026-11-24T07:00:13.000Z' },
    ],
  });
  assert.equal(tl.frameStartAt(5 * D + 2999), 5 * D);
  assert.equal(tl.frameStartAt(5 * D + 3000), 5 * D + 3000);
  // epoch 0 ends 1000 ticks into frame 300: that frame is its last
  assert.equal(tl.lastFrameStart(tl.epochs[0]), 10 * D);
  assert.equal(tl.stepFrames(10 * D, 1), 13 * D, 'the next frame after the last of epoch 0 is the first of epoch 1');
  assert.equal(tl.stepFrames(13 * D, -1), 10 * D);
  assert.equal(tl.stepFrames(13 * D + 10, 2), 13 * D + 6000);
  assert.equal(tl.stepFrames(0, -1), 0, 'nothing before the first frame');
  assert.equal(tl.frameStartAt(11 * D), 10 * D, 'a time in the gap snaps to the nearer frame');
  assert.equal(tl.frameStartAt(12.9 * D), 13 * D);
  assert.equal(tl.utcMsAt(13 * D + 9000), Date.parse('2026-11-24T07:00:13.100Z'));
  const { spans, gaps } = tl.coverage(D, 20 * D);
  assert.deepEqual(spans, [[D, 10 * D + 1000], [13 * D, 20 * D]]);
  assert.deepEqual(gaps, [[10 * D + 1000, 13 * D]]);
  const ntsc = new Timeline({ fps: '30000/1001', epochs: [{ index: 0, first_seq: 0, hls_start_90k: 7, fps: '30000/1001', segment_frames: 30 }] });
  assert.equal(ntsc.stepFrames(7, 1001), 7 + 1001 * 3003);
  assert.equal(ntsc.frameStartAt(7 + 3003 * 5 - 1), 7 + 3003 * 4);
});

test('wall axis: a restart leaves no gap in HLS time but one on the wall clock', () => {
  // Epoch 0: 10 s from 07:00:00; the source was down 2.5 s; epoch 1 continues at HLS 10 s.
  const tl = new Timeline({
    segment_duration: 1, fps: '30',
    epochs: [
      { index: 0, first_seq: 0, hls_start_90k: 0, fps: '30', segment_frames: 30, hls_end_90k: 10 * D, utc_start: ANCHOR },
      { index: 1, first_seq: 10, hls_start_90k: 10 * D, fps: '30', segment_frames: 30, utc_start: '2026-11-24T07:00:12.500Z' },
    ],
  });
  assert.equal(tl.wallOf(5 * D), 5 * D);
  assert.equal(tl.wallOf(10 * D), 12.5 * D, 'the first frame of epoch 1 sits 2.5 s later on the wall axis');
  assert.deepEqual(tl.hlsAtWall(13 * D), { hls: 10.5 * D, gap: false });
  assert.deepEqual(tl.hlsAtWall(10.5 * D), { hls: 10 * D - 3000, gap: true }, 'early in the gap: the last frame before it');
  assert.deepEqual(tl.hlsAtWall(12.4 * D), { hls: 10 * D, gap: true }, 'late in the gap: the first frame after it');
  const { spans, gaps } = tl.wallCoverage(0, 20 * D);
  assert.deepEqual(spans, [[0, 10 * D], [12.5 * D, 20 * D]]);
  assert.deepEqual(gaps, [[10 * D, 12.5 * D]]);
  assert.equal(tl.utcMsOfWall(12.5 * D), Date.parse('2026-11-24T07:00:12.500Z'));
});
