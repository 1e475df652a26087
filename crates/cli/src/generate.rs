//! `hlsmark generate`: parses the generator's flags (each with an `HLSMARK_*` variable), validates
//! them into a [`GeneratorConfig`], opens the store and runs the generator until SIGINT/SIGTERM or
//! `--stop-after`.

use std::path::PathBuf;
use std::time::Duration;

use hlsmark_clock::FrameRate;
use hlsmark_generator::GeneratorConfig;
use hlsmark_store::StreamName;

use crate::common::StoreArgs;

/// Flags of the synthetic source and segmenter (shared by `generate` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct GeneratorArgs {
    /// Frame width in pixels (even).
    #[arg(long, env = "HLSMARK_WIDTH", default_value_t = 1280)]
    pub width: u32,
    /// Frame height in pixels (even).
    #[arg(long, env = "HLSMARK_HEIGHT", default_value_t = 720)]
    pub height: u32,
    /// Frames per second: `30`, `25`, `30000/1001`.
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
}

impl GeneratorArgs {
    /// The validated runtime configuration.
    pub fn config(&self, stream: &str, data_dir: PathBuf) -> anyhow::Result<GeneratorConfig> {
        let stream = StreamName::new(stream)?;
        let mut c = GeneratorConfig::new(stream, data_dir);
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
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    crate::init_logging();
    let config = args
        .generator
        .config(&args.store.stream, args.store.data_dir.clone())?;
    crate::common::runtime()?.block_on(async {
        let store = crate::common::open_store(&args.store).await?;
        let report =
            hlsmark_generator::run(config, store, crate::common::shutdown_signal()).await?;
        if !report.flushed {
            anyhow::bail!("the store was unreachable at exit; some records were not written");
        }
        Ok(())
    })
}
