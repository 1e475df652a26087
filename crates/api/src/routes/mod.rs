//! Route handlers, one module per area, and the query-parameter parsing they share.

pub mod clips;
pub mod hls;
pub mod markers;
pub mod meta;
pub mod params;
pub mod preview;
pub mod streams;
