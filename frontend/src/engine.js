// The HLS engine under video.js: hls.js (Apache-2.0) in low-latency mode, registered as the Html5
// tech's first source handler, so video.js stays the UI (controls, seek bar, live tracker) and
// hls.js loads playlists, LL-HLS parts and segments into MSE. video.js's own engine (VHS) reads no
// LL-HLS parts; see design/frontend.md for the choice.
//
// The page reads three things from hls.js (nothing else of its internals):
//  - where each discontinuity sequence's media sits on the player's clock: hls.js gives the
//    SourceBuffer `timestampOffset = -initPTS.baseTime / timescale` for every sequence
//    (INIT_PTS_FOUND), so a frame with PTS p (in the track's timescale) plays at
//    `currentTime = (p - baseTime) / timescale`; hlsmark's PTS are HLS ticks, so `baseTime` is the
//    HLS time at currentTime 0 for that sequence;
//  - the playlist it plays (`levels[i].details`: fragments with sn, cc, PDT; parts; edge);
//  - stalls (BUFFER_STALLED_ERROR) and fatal errors, forwarded as player errors.

import videojs from 'video.js/dist/alt/video.core.js';
// The light build: no alternate renditions, subtitles, DRM or interstitials (hlsmark serves one
// muxed rendition); LL-HLS is in it.
import Hls from 'hls.js/light';

/** hls.js settings (documented in design/frontend.md). */
export const HLS_CONFIG = {
  lowLatencyMode: true,
  // video.js's live UI needs duration Infinity and a seekable range (MediaSource.setLiveSeekableRange).
  liveDurationInfinity: true,
  // hls.js's own catch-up only acts with more than 1 s of buffer ahead, which an LL player never
  // has (it plays PART-HOLD-BACK, 0.6 s, behind the edge), and resets any other rate on every
  // timeupdate: off, keepUp() below does it.
  maxLiveSyncPlaybackRate: 1,
  // Keep the DVR window that has been played seekable without a refetch; older media is dropped.
  backBufferLength: 90,
  enableWorker: true,
  // A stream with no playlist yet answers 404: fail fast, the page retries every 3 s.
  manifestLoadPolicy: {
    default: {
      maxTimeToFirstByteMs: 10000,
      maxLoadTimeMs: 20000,
      timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
      errorRetry: { maxNumRetry: 0, retryDelayMs: 1000, maxRetryDelayMs: 8000 },
    },
  },
};

const HLS_TYPES = /^(application\/(x-)?mpegurl|audio\/mpegurl|application\/vnd\.apple\.mpegurl)$/i;

/**
 * Registers the hls.js source handler on video.js's Html5 tech (before the native one). Each loaded
 * source gets a fresh Hls instance; `onEngine(hls, tech)` is called for it (the page hooks its
 * events), and `tech.hls` points at it until video.js disposes the source. `onFatal({code,
 * message})` reports a source hls.js gave up on (the page turns it into a player error).
 */
export function registerHlsJs({ onEngine, onFatal } = {}) {
  const Html5 = videojs.getTech('Html5');
  if (!Hls.isSupported()) return false;
  const handler = {
    name: 'hlsjs',
    canPlayType: (type) => (HLS_TYPES.test(type) ? 'probably' : ''),
    canHandleSource: (source) => handler.canPlayType(source.type ?? ''),
    handleSource(source, tech) {
      const hls = new Hls(HLS_CONFIG);
      tech.hls = hls;
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        // Fatal: hls.js has given up on this source. Tell video.js, whose error handler retries.
        hls.destroy();
        if (tech.hls === hls) tech.hls = null;
        const code = data.type === Hls.ErrorTypes.NETWORK_ERROR ? 2 : 3;
        onFatal?.({ code, message: `${data.details}${data.response?.code ? ` (HTTP ${data.response.code})` : ''}` }, tech);
      });
      onEngine?.(hls, tech);
      hls.attachMedia(tech.el());
      hls.loadSource(source.src);
      const timer = setInterval(() => keepUp(hls, tech.el()), 200);
      return {
        dispose() {
          clearInterval(timer);
          hls.destroy();
          if (tech.hls === hls) tech.hls = null;
        },
      };
    },
  };
  Html5.registerSourceHandler(handler, 0);
  return true;
}

/** Playback rate while catching up with the target latency (a 10 % speed-up is hard to notice). */
export const CATCH_UP_RATE = 1.1;

/**
 * Live catch-up: a player that starts (or recovers from a stall) further behind the edge than
 * hls.js's target latency (PART-HOLD-BACK) plays at CATCH_UP_RATE until it is back on target,
 * as long as it has media ahead; it never touches a paused, seeking, non-live or far-behind (DVR:
 * more than a target duration off) player.
 */
export function keepUp(hls, video) {
  const d = hls.levels?.[Math.max(0, hls.currentLevel)]?.details;
  const target = hls.targetLatency;
  let rate = 1;
  if (d?.live && target && !video.paused && !video.seeking && video.readyState >= 3) {
    const excess = hls.latency - target;
    let ahead = 0;
    const b = video.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= video.currentTime + 0.05 && video.currentTime < b.end(i)) ahead = b.end(i) - video.currentTime;
    }
    const catchingUp = video.playbackRate > 1;
    // Start above 100 ms off target, stop within 20 ms of it (no flapping); keep 150 ms ahead.
    if (excess < d.targetduration && excess > (catchingUp ? 0.02 : 0.1) && ahead > 0.15) rate = CATCH_UP_RATE;
  }
  if (video.playbackRate !== rate && (rate > 1 || video.playbackRate === CATCH_UP_RATE)) video.playbackRate = rate;
}

export { Hls, videojs };
