//! The four clocks of hlsmark and the only place where one is converted into another.
//!
//! * [`GenTime`]: the generator's monotonic clock (time of rendered frames since the stream began).
//! * [`HlsTime`]: media time, the clock inside the segments and the one markers are keyed by.
//! * [`ClientTime`]: a player's `currentTime`, relative to the segment it joined at.
//! * [`UtcTime`]: wall time, written into playlists as `EXT-X-PROGRAM-DATE-TIME`.
//!
//! Every clock counts integer 90 kHz ticks in an `i64`: ten thousand years fit, and no conversion
//! on the media path ever touches a float. Floats exist only at the edges ([`Duration90k::as_secs_f64`],
//! [`HlsTime::from_secs_f64`]) where EXTINF and JSON need them. See `design/time.md`.

mod frame;
mod frame_table;
mod part;
mod segment;
mod time;
mod timeline;

pub use frame::{FrameRate, FrameRateError};
pub use frame_table::{FrameTable, FrameTableError};
pub use part::Part;
pub use segment::Segment;
pub use time::{
    ClientTime, Duration90k, GenTime, HlsTime, MAX_ABS_TICKS, TICKS_PER_SECOND, TimeError, UtcTime,
};
pub use timeline::{Epoch, SeqNo, Timeline, TimelineError};
