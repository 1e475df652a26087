//! Integration tests of the API against real parts: media cut by ffmpeg, the redb store or a real
//! redis-server, ffprobe as the HLS client, `hlsmark serve` processes for the replica test.

// Helper functions (not #[test] fns) unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod common;
mod fastpath;
mod files;
mod hardening;
mod markers;
mod playlists;
mod replicas;
