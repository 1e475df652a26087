//! hlsmark-generator (work in progress).
