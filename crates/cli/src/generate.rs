//! `hlsmark generate`: ingest without the API. Parses the per-stream flags (each with an
//! `HLSMARK_*` variable) or `--config`'s `[[stream]]` tables into validated
//! [`StreamConfig`]s, opens the store and runs every stream until SIGINT/SIGTERM or their end.

use std::path::PathBuf;
use std::time::Duration;

use hlsmark_clock::FrameRate;
use hlsmark_sources::StreamConfig;

use crate::common::StoreArgs;
use crate::streams::SourceArgs;

/// Per-stream flags of segmenting and retention, and of the synthetic generator (shared by
/// `generate` and `run`; `[[stream]]` keys of the same names override them).
#[derive(Debug, Clone, clap::Args)]
pub struct GeneratorArgs {
    /// Frame width in pixels (even); for a `page:` source, the browser's viewport.
    #[arg(long, env = "HLSMARK_WIDTH", default_value_t = 1280)]
    pub width: u32,
    /// Frame height in pixels (even); for a `page:` source, the browser's viewport.
    #[arg(long, env = "HLSMARK_HEIGHT", default_value_t = 720)]
    pub height: u32,
    /// Frames per second: `30`, `25`, `30000/1001` (the generator's, and a `page:` source's).
    #[arg(long, env = "HLSMARK_FPS", default_value = "30")]
    pub fps: FrameRate,
    /// Checkerboard block size in pixels (also the size of the mint event corner).
    #[arg(long, env = "HLSMARK_BLOCK_SIZE", default_value_t = 80)]
    pub block_size: u32,
    /// Pixels per second the checkerboard rolls.
    #[arg(long, env = "HLSMARK_ROLL_SPEED", default_value_t = 80)]
    pub roll_speed: u32,
    /// Segment duration, rounded to whole frames (`1s`, `2s`, `500ms`).
    #[arg(long, env = "HLSMARK_SEGMENT_DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub segment_duration: Duration,
    /// Segments in the live playlist (the API reads the same variable); retention never goes below it.
    #[arg(long, env = "HLSMARK_LIVE_WINDOW", default_value_t = 30)]
    pub live_window: u32,
    /// Segments older than this leave the disk and the index (`1h`, `30m`).
    #[arg(long, env = "HLSMARK_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Markers older than this are deleted too [default: markers are kept].
    #[arg(long, env = "HLSMARK_MARKER_RETENTION", value_parser = humantime::parse_duration)]
    pub marker_retention: Option<Duration>,
    /// Mean idle time between events (exponentially distributed).
    #[arg(long, env = "HLSMARK_EVENT_MEAN", default_value = "10s", value_parser = humantime::parse_duration)]
    pub event_mean: Duration,
    /// How long each event keeps the corner mint.
    #[arg(long, env = "HLSMARK_EVENT_DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub event_duration: Duration,
    /// Seed of the event schedule (same seed, same events).
    #[arg(long, env = "HLSMARK_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Pace frames to the wall clock; `false` runs as fast as ffmpeg encodes.
    #[arg(long, env = "HLSMARK_REALTIME", default_value_t = true, action = clap::ArgAction::Set)]
    pub realtime: bool,
    /// Stop after this much media (`30s`, `1h`) [default: run until SIGINT/SIGTERM].
    #[arg(long, env = "HLSMARK_STOP_AFTER", value_parser = humantime::parse_duration)]
    pub stop_after: Option<Duration>,
    /// The ffmpeg binary (name on PATH or a path).
    #[arg(long, env = "HLSMARK_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The browser of `page:` sources (name on PATH or a path; Debian's `chromium`).
    #[arg(long, env = "HLSMARK_CHROMIUM", default_value = "chromium")]
    pub chromium: PathBuf,
    /// Wait while another ingest holds a stream's lease and take over when it stops or dies
    /// (needs a shared `redis://` store). Without it a held lease ends the start with one line
    /// naming the holder.
    #[arg(long, env = "HLSMARK_STANDBY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub standby: bool,
    /// Ingest lease time: a standby takes over at most this long after the active ingest's last
    /// renewal (renewed every third of it), e.g. `2s`.
    #[arg(long, env = "HLSMARK_LEASE_TTL", default_value = "1500ms", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,
    /// This ingest's name in the lease and in `/streams` (1-128 of A-Z a-z 0-9 _ . : @ -)
    /// [default: host:pid].
    #[arg(long, env = "HLSMARK_INGEST_ID", value_parser = parse_ingest_id)]
    pub ingest_id: Option<String>,
}

/// `--lease-ttl`: a duration within the store's bounds.
fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    let (min, max) = (
        hlsmark_store::lease::MIN_LEASE_TTL,
        hlsmark_store::lease::MAX_LEASE_TTL,
    );
    if (min..=max).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "must be from {} ms to {} s",
            min.as_millis(),
            max.as_secs()
        ))
    }
}

/// `--ingest-id`: the characters a lease holder id may have.
fn parse_ingest_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars().count() <= hlsmark_store::lease::MAX_HOLDER_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("use 1-128 of A-Z, a-z, 0-9, '_', '.', ':', '@' and '-'".into())
    }
}

impl GeneratorArgs {
    /// `c` with these settings (the CLI validates the result once the source is set too).
    pub fn apply(&self, mut c: StreamConfig) -> StreamConfig {
        c.width = self.width;
        c.height = self.height;
        c.fps = self.fps;
        c.block_size = self.block_size;
        c.roll_speed = self.roll_speed;
        c.segment_duration = self.segment_duration;
        c.live_window = self.live_window;
        c.retention = self.retention;
        c.marker_retention = self.marker_retention;
        c.event_mean = self.event_mean;
        c.event_duration = self.event_duration;
        c.seed = self.seed;
        c.realtime = self.realtime;
        c.stop_after = self.stop_after;
        c.ffmpeg = self.ffmpeg.clone();
        c.chromium = self.chromium.clone();
        c.lease = hlsmark_sources::lease::LeaseConfig {
            holder: self
                .ingest_id
                .clone()
                .unwrap_or_else(hlsmark_sources::lease::default_holder),
            ttl: self.lease_ttl,
            standby: self.standby,
        };
        c
    }

    /// `--standby` needs a store several processes share: a redb file is opened by one process
    /// (the second could not even open it), so a standby there would wait forever.
    pub fn check_standby(&self, store: &StoreArgs) -> anyhow::Result<()> {
        let spec = store.store_spec();
        let shared = ["redis://", "redis+unix://", "redis+cluster://"]
            .iter()
            .any(|s| spec.starts_with(s));
        if self.standby && !shared {
            anyhow::bail!(
                "--standby needs a store that several processes share (--store redis://...): the \
                 embedded store file {spec} is opened by one process only"
            );
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    crate::init_logging();
    args.generator.check_standby(&args.store)?;
    let mut configs = crate::streams::configs(
        &args.store.stream,
        &args.store.data_dir,
        &args.source,
        &args.generator,
    )?;
    crate::common::runtime()?.block_on(async {
        let store = crate::common::open_store(&args.store).await?;
        let media = crate::common::open_media(&args.store).await?;
        for c in &mut configs {
            c.media = media.clone();
        }
        let reports =
            hlsmark_sources::run_many(configs, store, crate::common::shutdown_signal()).await?;
        crate::common::check_reports(&reports)
    })
}
