//! hlsmark-api (work in progress).
