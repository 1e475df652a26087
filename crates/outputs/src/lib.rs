//! hlsmark-outputs: restream targets. Each stream may push its media to any number of RTMP or
//! RTMPS ingests (a streaming platform, a CDN, another server) without a second encode.
//!
//! ```text
//! sources pipeline ─ Init, Fragment (rebased fMP4) ─▶ Restream::init / ::fragment (never blocks)
//!                                                        │ one bounded queue per target
//!                                                        ▼ (full: drop, resync at a keyframe)
//!                           target task ─stdin (fMP4)─▶ ffmpeg -c:v copy -c:a copy|aac -f flv rtmp://…
//!                                │ ◀─ -progress (stdout): bytes, media time ─┘
//!                                └─ state: connecting | connected | retrying (last error) | failed
//! ```
//!
//! A target is a [`Target`] (validated at start-up, its stream key never shown: [`Target::masked`]);
//! [`Restream`] runs one supervised ffmpeg per target (restart on exit or stall with backoff,
//! 1 s doubling to 30 s) and reports each target's [`TargetStatus`]. One failing target never
//! touches the stream or the other targets. Depends on `media` only. See `design/outputs.md`.

mod args;
mod progress;
mod restream;
mod target;

pub use args::{AudioPlan, ffmpeg_args};
pub use progress::Progress;
pub use restream::{Restream, TargetState, TargetStatus};
pub use target::{Target, TargetError};
