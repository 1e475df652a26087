//! Domain rules the routes call (and tests can call without HTTP): the segment index and the
//! clock conversions through it, snapping to frames, the streams overview, and the live edge's
//! waits (LL-HLS blocking reloads and hinted parts), marker writes (one or a batch), and the seek bar's thumbnail tiles.

pub mod clips;
pub mod clocks;
pub mod live;
pub mod markers;
pub mod removed;
pub mod segment_index;
pub mod snap;
pub mod streams;
pub mod tiles;
pub mod webhooks;
