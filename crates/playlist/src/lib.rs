//! hlsmark-playlist (work in progress).
