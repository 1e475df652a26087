//! Integration tests of the API against real parts: media cut by ffmpeg, the redb store or a real
//! redis-server, ffprobe as the HLS client, `hlsmark serve` processes for the replica test.

// Helper functions (not #[test] fns) unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod clips;
mod common;
mod dvr;
mod faults;
mod files;
mod hardening;
mod llhls;
mod markers;
mod outage;
mod page;
mod playlists;
mod previews;
mod real_sources;
mod replicas;
mod tls;
