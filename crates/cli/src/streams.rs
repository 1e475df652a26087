//! Which streams to run: the per-stream flags (`--source`, `--video`, ...; each with an
//! `HLSMARK_*` variable) for one stream, or `--config hlsmark.toml` with one `[[stream]]` table
//! per stream, whose keys are the flag names with `_`. Both end as validated
//! [`StreamConfig`]s; every problem is one line naming the file, line, stream and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hlsmark_clock::{FrameRate, UtcTime};
use hlsmark_sources::encode::{AudioMode, Encoding, VideoMode, parse_resolution};
use hlsmark_sources::{PreviewSpec, Source, StreamConfig};
use hlsmark_store::StreamName;

use crate::generate::GeneratorArgs;

/// Per-stream flags that say what a stream reads and how it is encoded.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// What the stream reads: `generator`, a file path, `rtsp://...`, `rtsps://...`,
    /// `http(s)://...` (HLS `.m3u8` too) or `/dev/videoN`.
    #[arg(long, env = "HLSMARK_SOURCE", default_value = "generator")]
    pub source: String,
    /// Read the file as it grows (a recording in progress); needs a file path as --source.
    #[arg(long, env = "HLSMARK_FOLLOW", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub follow: bool,
    /// Play a file source for ever (`true`) or once (`false`).
    #[arg(long = "loop", env = "HLSMARK_LOOP", default_value_t = true, action = clap::ArgAction::Set)]
    pub looped: bool,
    /// `encode` (libx264, keyframes at every segment target: exact segment lengths) or `copy`
    /// (keep the source's H.264, cut at its keyframes; the cheap path for cameras).
    #[arg(long, env = "HLSMARK_VIDEO", default_value = "encode")]
    pub video: VideoMode,
    /// One knob for size and CRF: 1.0 = full size CRF 18, 0.75 = 75 % CRF 23, 0.5 = 50 % CRF 28,
    /// 0.25 = 35 % CRF 34, 0.0 = 25 % CRF 40, linear between.
    #[arg(long, env = "HLSMARK_QUALITY", default_value_t = 1.0)]
    pub quality: f64,
    /// Encoded picture size `WxH` (even), overriding --quality's size [default: from --quality].
    #[arg(long, env = "HLSMARK_RESOLUTION", value_parser = parse_resolution)]
    pub resolution: Option<(u32, u32)>,
    /// libx264 CRF 0-51, overriding --quality's CRF [default: from --quality].
    #[arg(long, env = "HLSMARK_CRF")]
    pub crf: Option<u8>,
    /// `auto`: AAC 48 kHz when the source has audio (the generator: with --tone); `off`: no audio.
    #[arg(long, env = "HLSMARK_AUDIO", default_value = "auto")]
    pub audio: AudioMode,
    /// Generator only: a quiet tone with a short 1 kHz beep on the first frame of every event.
    #[arg(long, env = "HLSMARK_TONE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tone: bool,
    /// A source that delivers nothing for this long is restarted (`10s`).
    #[arg(long, env = "HLSMARK_STALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
    /// LL-HLS part length: ffmpeg writes a fragment at least this often and each is published as
    /// a part (`200ms`); `0` turns LL-HLS parts off (20 ms up to the segment duration).
    #[arg(long, env = "HLSMARK_PART_DURATION", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub part_duration: Duration,
    /// Width of the live preview pictures (`/preview/{stream}.gif|.mjpeg`), even, 64-1280: a
    /// second, low-resolution output of the stream's ffmpeg.
    #[arg(long, env = "HLSMARK_PREVIEW_WIDTH", default_value_t = hlsmark_previews::DEFAULT_WIDTH)]
    pub preview_width: u32,
    /// Preview pictures a second, 1-15; `0` turns previews off (no second ffmpeg output)
    /// [default: 10 when ffmpeg encodes; 0 with `--video copy`, whose whole point is that ffmpeg
    /// decodes nothing: set it to have previews of a copied camera at the cost of a decode].
    #[arg(long, env = "HLSMARK_PREVIEW_FPS")]
    pub preview_fps: Option<u32>,
    /// Restream the stream to an RTMP/RTMPS ingest (`rtmp://host/app/key`; repeat for several;
    /// the variable takes them comma-separated): the H.264 copied, AAC copied or silent AAC
    /// added, one supervised ffmpeg per target. The key is never shown in logs, the API or the
    /// page (`rtmp://host/app/****`); it is on ffmpeg's command line, so local users can see it
    /// with `ps`.
    #[arg(long = "restream", env = "HLSMARK_RESTREAM", value_delimiter = ',')]
    pub restream: Vec<String>,
    /// File sources: `true` plays the file in real time; `false` reads it as fast as ffmpeg can
    /// and publishes each segment as it is cut (an import: needs --loop false; without
    /// --start-utc the import ends now). Other sources refuse `false`.
    #[arg(long, env = "HLSMARK_PACE", default_value_t = true, action = clap::ArgAction::Set)]
    pub pace: bool,
    /// File sources played once: the UTC of the file's first frame (RFC 3339,
    /// `2026-12-01T22:00:00Z`), to import a recording backdated to when it was made; every
    /// segment's UTC follows from media time. Not in the future; needs --loop false.
    #[arg(long, env = "HLSMARK_START_UTC", value_parser = parse_start_utc)]
    pub start_utc: Option<UtcTime>,
    /// Run every `[[stream]]` of this TOML file instead of one stream; the flags above are
    /// the defaults of keys a table leaves out (see examples/hlsmark.toml).
    #[arg(long, env = "HLSMARK_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `--start-utc` / `start_utc`: an RFC 3339 time with its offset.
fn parse_start_utc(s: &str) -> Result<UtcTime, String> {
    UtcTime::parse_rfc3339(s.trim()).map_err(|e| {
        format!("{s:?}: {e} (write an RFC 3339 time with its offset: 2026-12-01T22:00:00Z)")
    })
}

/// Every per-stream setting in one place: what flags give, a table overrides.
#[derive(Debug, Clone)]
struct Settings {
    source: SourceArgs,
    generator: GeneratorArgs,
}

impl Settings {
    /// `missing_ok`: a file source that does not exist (yet) is taken, with a warning, instead of
    /// refused: one stream of a config file whose share is not mounted at boot must not keep
    /// the others from starting (it is retried, with ffmpeg's reason on `/streams` and the page).
    fn config(
        &self,
        name: &str,
        data_dir: &Path,
        missing_ok: bool,
    ) -> anyhow::Result<StreamConfig> {
        let stream = StreamName::new(name).map_err(|e| anyhow!("name {name:?}: {e}"))?;
        let mut c = self
            .generator
            .apply(StreamConfig::new(stream, data_dir.to_owned()));
        let s = &self.source;
        c.source = match Source::parse(&s.source, s.follow, s.looped) {
            Err(hlsmark_sources::source::SourceError::MissingFile { given })
                if missing_ok && !s.follow =>
            {
                tracing::warn!(stream = name, file = %given, "no such file (yet): the stream is retried until it is there; the other streams run");
                Source::File {
                    path: PathBuf::from(s.source.trim()),
                    looped: s.looped,
                }
            }
            r => r?,
        };
        c.encoding = Encoding {
            video: s.video,
            quality: s.quality,
            resolution: s.resolution,
            crf: s.crf,
            audio: s.audio,
            tone: s.tone,
        };
        c.stall_timeout = s.stall_timeout;
        c.part_duration = s.part_duration;
        c.pace = s.pace;
        c.start_utc = s.start_utc;
        // A copied stream decodes nothing; previews would add a full decode: only when asked.
        let fps = s.preview_fps.unwrap_or(match s.video {
            VideoMode::Copy => 0,
            VideoMode::Encode => hlsmark_previews::DEFAULT_FPS,
        });
        c.preview = preview(s.preview_width, fps)?;
        c.restream = s
            .restream
            .iter()
            .map(|u| hlsmark_outputs::Target::parse(u))
            .collect::<Result<_, _>>()?;
        c.validate()?;
        Ok(c)
    }
}

/// The preview branch of `--preview-width`/`--preview-fps` (`None` when the rate is 0). Until
/// [`wire_previews`] gives it an in-process feed, the pictures go to `<stream dir>/preview.jpg`
/// (read by a separate `hlsmark serve`).
fn preview(width: u32, fps: u32) -> anyhow::Result<Option<PreviewSpec>> {
    if fps == 0 {
        return Ok(None);
    }
    if !hlsmark_previews::WIDTHS.contains(&width) || !width.is_multiple_of(2) {
        bail!("--preview-width {width}: must be even and between 64 and 1280");
    }
    if !hlsmark_previews::RATES.contains(&fps) {
        bail!("--preview-fps {fps}: must be 0 (off) or between 1 and 15");
    }
    Ok(Some(PreviewSpec::new(width, fps, None, true)))
}

/// `hlsmark run`: every stream's preview pictures go straight into `hub` (the API's), not
/// through files.
pub fn wire_previews(configs: &mut [StreamConfig], hub: &hlsmark_previews::Hub) {
    for c in configs {
        // An unpaced import runs many times faster than real time: no live preview of it.
        match &mut c.preview {
            Some(p) if c.pace => {
                p.feed = Some(hub.register(c.stream.as_str(), p.width, p.fps));
                p.write_file = false;
            }
            _ => hub.mark_off(c.stream.as_str()),
        }
    }
}

/// The streams to run: the `[[stream]]` tables of `--config`, or one stream from the flags.
pub fn configs(
    stream: &str,
    data_dir: &Path,
    source: &SourceArgs,
    generator: &GeneratorArgs,
) -> anyhow::Result<Vec<StreamConfig>> {
    let base = Settings {
        source: source.clone(),
        generator: generator.clone(),
    };
    match &source.config {
        None => Ok(vec![base.config(stream, data_dir, false)?]),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}: cannot be read", path.display()))?;
            from_toml(&text, &path.display().to_string(), &base, data_dir)
        }
    }
}

/// The TOML file: `[[stream]]` tables and nothing else.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stream: Vec<toml::Spanned<Table>>,
}

/// A frame rate as `30` or `"30000/1001"`.
#[derive(Debug, serde::Deserialize)]
#[serde(
    untagged,
    expecting = "fps: a whole number (30) or a string (\"30000/1001\")"
)]
enum Fps {
    Int(u32),
    Text(String),
}

/// `restream = ["rtmp://..."]` or one string. Untagged with its own message: serde's type errors
/// quote the value, and a restream URL holds a stream key.
#[derive(Debug, serde::Deserialize)]
#[serde(
    untagged,
    expecting = "restream: a list of URLs ([\"rtmp://host/app/key\", ...]) or one URL"
)]
enum Restreams {
    One(String),
    Many(Vec<String>),
}

/// `webhooks = ["https://..."]` or one string, for the same reason as [`Restreams`]: a webhook
/// URL may carry a token, and serde's type errors would quote it.
#[derive(Debug, serde::Deserialize)]
#[serde(
    untagged,
    expecting = "webhooks: a list of URLs ([\"https://host/path\", ...]) or one URL"
)]
pub(crate) enum WebhookUrls {
    One(String),
    Many(Vec<String>),
}

impl WebhookUrls {
    /// The URLs, one or many.
    pub(crate) fn urls(&self) -> &[String] {
        match self {
            WebhookUrls::One(u) => std::slice::from_ref(u),
            WebhookUrls::Many(v) => v,
        }
    }
}

/// One `[[stream]]`: the per-stream flag names with `_`. Durations are strings (`"1s"`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    name: String,
    source: Option<String>,
    follow: Option<bool>,
    #[serde(rename = "loop")]
    looped: Option<bool>,
    pace: Option<bool>,
    start_utc: Option<String>,
    video: Option<String>,
    quality: Option<f64>,
    resolution: Option<String>,
    crf: Option<u8>,
    audio: Option<String>,
    tone: Option<bool>,
    stall_timeout: Option<String>,
    part_duration: Option<String>,
    preview_width: Option<u32>,
    preview_fps: Option<u32>,
    restream: Option<Restreams>,
    /// Delivered by `crate::webhooks` (which reads them again); checked here for the line.
    webhooks: Option<WebhookUrls>,
    segment_duration: Option<String>,
    fps: Option<Fps>,
    width: Option<u32>,
    height: Option<u32>,
    retention: Option<String>,
    marker_retention: Option<String>,
    block_size: Option<u32>,
    roll_speed: Option<u32>,
    event_mean: Option<String>,
    event_duration: Option<String>,
    seed: Option<u64>,
    realtime: Option<bool>,
    stop_after: Option<String>,
}

/// For serde's "unknown field `retension`, expected one of `name`, ...": the expected key a typo
/// is closest to (at most two letters added, removed or changed), else `None`.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (typo, expected) = rest.split_once("`, expected one of ")?;
    let distance = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    expected
        .split(", ")
        .map(|k| k.trim_matches('`'))
        .map(|k| (distance(typo, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_owned())
}

/// Parses `text` (named `file` in errors) into validated configurations.
fn from_toml(
    text: &str,
    file: &str,
    base: &Settings,
    data_dir: &Path,
) -> anyhow::Result<Vec<StreamConfig>> {
    let parsed: File = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().replace('\n', " ");
        let msg = match did_you_mean(&msg) {
            Some(key) => format!("did you mean `{key}`? {msg}"),
            None => msg,
        };
        match stream_index_at(text, at) {
            Some(i) => anyhow!("{file}: line {}, stream {i}: {msg}", line_of(text, at)),
            None => anyhow!("{file}: line {}: {msg}", line_of(text, at)),
        }
    })?;
    if parsed.stream.is_empty() {
        bail!("{file}: no [[stream]] table; add one per stream (see examples/hlsmark.toml)");
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(parsed.stream.len());
    for spanned in &parsed.stream {
        let line = line_of(text, spanned.span().start);
        let t = spanned.get_ref();
        let at = |key: &str| format!("{file}: line {line}, stream {:?}: {key}", t.name);
        if let Some(first) = seen.insert(t.name.clone(), line) {
            bail!(
                "{file}: line {line}: two streams are named {:?} (the other at line {first}); names must be unique",
                t.name
            );
        }
        let settings = overlay(base, t).map_err(|(key, e)| anyhow!("{}: {e}", at(key)))?;
        let c = settings
            .config(&t.name, data_dir, parsed.stream.len() > 1)
            .map_err(|e| anyhow!("{file}: line {line}, stream {:?}: {e:#}", t.name))?;
        out.push(c);
    }
    Ok(out)
}

/// `base` with the table's keys on top; an error names the key.
fn overlay(base: &Settings, t: &Table) -> Result<Settings, (&'static str, String)> {
    fn dur(
        key: &'static str,
        v: &Option<String>,
    ) -> Result<Option<Duration>, (&'static str, String)> {
        v.as_deref()
            .map(|s| {
                humantime::parse_duration(s).map_err(|e| {
                    (
                        key,
                        format!("{s:?}: {e} (write durations like \"1s\", \"500ms\", \"1h\")"),
                    )
                })
            })
            .transpose()
    }
    fn parsed<T: FromStr>(
        key: &'static str,
        v: &Option<String>,
    ) -> Result<Option<T>, (&'static str, String)>
    where
        T::Err: std::fmt::Display,
    {
        v.as_deref()
            .map(|s| s.parse::<T>().map_err(|e| (key, e.to_string())))
            .transpose()
    }
    let mut s = base.clone();
    let (src, g) = (&mut s.source, &mut s.generator);
    if let Some(v) = &t.source {
        src.source = v.clone();
    }
    src.follow = t.follow.unwrap_or(src.follow);
    src.looped = t.looped.unwrap_or(src.looped);
    src.pace = t.pace.unwrap_or(src.pace);
    if let Some(v) = &t.start_utc {
        src.start_utc = Some(parse_start_utc(v).map_err(|e| ("start_utc", e))?);
    }
    if let Some(v) = parsed("video", &t.video)? {
        src.video = v;
    }
    src.quality = t.quality.unwrap_or(src.quality);
    if let Some(r) = &t.resolution {
        src.resolution = Some(parse_resolution(r).map_err(|e| ("resolution", e))?);
    }
    src.crf = t.crf.or(src.crf);
    if let Some(v) = parsed("audio", &t.audio)? {
        src.audio = v;
    }
    src.tone = t.tone.unwrap_or(src.tone);
    if let Some(d) = dur("stall_timeout", &t.stall_timeout)? {
        src.stall_timeout = d;
    }
    if let Some(d) = dur("part_duration", &t.part_duration)? {
        src.part_duration = d;
    }
    src.preview_width = t.preview_width.unwrap_or(src.preview_width);
    src.preview_fps = t.preview_fps.or(src.preview_fps);
    match &t.restream {
        Some(Restreams::One(u)) => src.restream = vec![u.clone()],
        Some(Restreams::Many(v)) => src.restream = v.clone(),
        None => {}
    }
    for u in t.webhooks.iter().flat_map(WebhookUrls::urls) {
        hlsmark_webhooks::Target::parse(u, None).map_err(|e| ("webhooks", e.to_string()))?;
    }
    if let Some(d) = dur("segment_duration", &t.segment_duration)? {
        g.segment_duration = d;
    }
    match &t.fps {
        Some(Fps::Int(n)) => g.fps = FrameRate::new(*n, 1).map_err(|e| ("fps", e.to_string()))?,
        Some(Fps::Text(s)) => {
            g.fps = s
                .parse()
                .map_err(|e: hlsmark_clock::FrameRateError| ("fps", e.to_string()))?
        }
        None => {}
    }
    g.width = t.width.unwrap_or(g.width);
    g.height = t.height.unwrap_or(g.height);
    if let Some(d) = dur("retention", &t.retention)? {
        g.retention = d;
    }
    if let Some(d) = dur("marker_retention", &t.marker_retention)? {
        g.marker_retention = Some(d);
    }
    g.block_size = t.block_size.unwrap_or(g.block_size);
    g.roll_speed = t.roll_speed.unwrap_or(g.roll_speed);
    if let Some(d) = dur("event_mean", &t.event_mean)? {
        g.event_mean = d;
    }
    if let Some(d) = dur("event_duration", &t.event_duration)? {
        g.event_duration = d;
    }
    g.seed = t.seed.unwrap_or(g.seed);
    g.realtime = t.realtime.unwrap_or(g.realtime);
    if let Some(d) = dur("stop_after", &t.stop_after)? {
        g.stop_after = Some(d);
    }
    Ok(s)
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

/// Which `[[stream]]` (1-based) the byte offset `at` falls in, if any.
fn stream_index_at(text: &str, at: usize) -> Option<usize> {
    let before = text.get(..at).unwrap_or(text);
    let n = before
        .lines()
        .filter(|l| l.trim_start().starts_with("[[stream]]"))
        .count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct T {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        generator: GeneratorArgs,
    }

    #[test]
    fn preview_keys_set_or_turn_off_the_preview_branch() {
        let c = load(
            "[[stream]]\nname = \"a\"\npreview_width = 320\npreview_fps = 5\n[[stream]]\nname = \"b\"\npreview_fps = 0\n[[stream]]\nname = \"c\"\n",
        )
        .unwrap();
        let p = c[0].preview.as_ref().unwrap();
        assert_eq!((p.width, p.fps, p.write_file), (320, 5, true));
        assert!(c[1].preview.is_none());
        let d = c[2].preview.as_ref().unwrap();
        assert_eq!((d.width, d.fps), (480, 10));
        assert!(
            err("[[stream]]\nname = \"a\"\npreview_width = 2000\n")
                .contains("--preview-width 2000")
        );
        assert!(err("[[stream]]\nname = \"a\"\npreview_fps = 60\n").contains("--preview-fps 60"));
        let mut c = c;
        let hub = hlsmark_previews::Hub::default();
        wire_previews(&mut c, &hub);
        assert!(hub.has_feed("a") && !hub.has_feed("b"));
        assert!(!hub.is_off("a") && hub.is_off("b"));
        assert!(!c[0].preview.as_ref().unwrap().write_file);
    }

    fn base() -> Settings {
        let t = T::parse_from(["t"]);
        Settings {
            source: t.source,
            generator: t.generator,
        }
    }

    fn load(text: &str) -> anyhow::Result<Vec<StreamConfig>> {
        from_toml(text, "h.toml", &base(), Path::new("/d"))
    }

    fn err(text: &str) -> String {
        let e = format!("{:#}", load(text).unwrap_err());
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn webhook_urls_of_the_wrong_type_are_refused_without_quoting_them() {
        for table in [
            "webhooks = [\"https://h/x?token=s3cr3t\", 1]",
            "webhooks = {url = \"https://h/x?token=s3cr3t\"}",
        ] {
            let e = err(&format!("[[stream]]\nname = \"a\"\n{table}\n"));
            assert!(e.contains("webhooks: a list of URLs"), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        let c = load("[[stream]]\nname = \"a\"\nwebhooks = \"https://h/x?token=s3cr3t\"\n");
        assert!(c.is_ok(), "one URL is a list of one");
    }

    #[test]
    fn restream_targets_are_checked_with_the_key_masked() {
        let c = load(
            "[[stream]]\nname = \"a\"\nrestream = [\"rtmp://h/live/k3y-secret\", \"rtmps://h:443/app/k2-secret\"]\n[[stream]]\nname = \"b\"\n",
        )
        .unwrap();
        let masked: Vec<String> = c[0].restream.iter().map(|t| t.masked()).collect();
        assert_eq!(masked, ["rtmp://h/live/****", "rtmps://h:443/app/****"]);
        assert!(c[1].restream.is_empty());
        for (table, want) in [
            (
                "restream = [\"http://h/live/k3y-secret\"]",
                "not rtmp or rtmps",
            ),
            ("restream = [\"rtmp:///live/k3y-secret\"]", "no host"),
            (
                "restream = [\"rtmp://h/k3y-secret\"]",
                "application and a stream key",
            ),
            (
                "restream = [\"rtmp://h/live/k3y-secret\", 1]",
                "restream: a list of URLs",
            ),
            (
                "restream = {url = \"rtmp://h/live/k3y-secret\"}",
                "restream: a list of URLs",
            ),
        ] {
            let e = err(&format!("[[stream]]\nname = \"a\"\n{table}\n"));
            assert!(e.contains(want), "{e}");
            assert!(e.contains("stream \"a\"") || e.contains("stream 1"), "{e}");
            // serde's own type errors would quote the value: the key.
            assert!(!e.contains("k3y-secret"), "{e}");
        }
        // One URL as a plain string is one target.
        let c =
            load("[[stream]]\nname = \"a\"\nrestream = \"rtmp://h/live/k3y-secret\"\n").unwrap();
        assert_eq!(c[0].restream[0].masked(), "rtmp://h/live/****");
        let t = T::parse_from([
            "t",
            "--restream",
            "rtmp://a/live/x1",
            "--restream",
            "rtmp://b/live/x2",
        ]);
        assert_eq!(t.source.restream.len(), 2);
    }

    #[test]
    fn two_streams_with_their_own_settings() {
        let c = load(
            r#"
[[stream]]
name = "a"
fps = "30000/1001"
segment_duration = "2s"
part_duration = "500ms"
tone = true
quality = 0.5

[[stream]]
name = "b"
fps = 25
width = 320
height = 180
stop_after = "3s"
loop = false
part_duration = "0"
"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].stream.as_str(), "a");
        assert_eq!(c[0].fps, FrameRate::new(30_000, 1_001).unwrap());
        assert_eq!(c[0].segment_duration, Duration::from_secs(2));
        assert_eq!(c[0].part_duration, Duration::from_millis(500));
        assert_eq!(c[1].part_duration, Duration::ZERO);
        assert!(c[0].encoding.tone);
        assert!((c[0].encoding.quality - 0.5).abs() < 1e-9);
        assert_eq!(c[1].fps, FrameRate::integer(25));
        assert_eq!((c[1].width, c[1].height), (320, 180));
        assert_eq!(c[1].stop_after, Some(Duration::from_secs(3)));
        // Defaults come from the flags.
        assert_eq!(c[1].stall_timeout, Duration::from_secs(10));
        assert!(c[1].source.is_generator());
    }

    #[test]
    fn import_keys_pace_and_start_utc() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rec.mp4");
        std::fs::write(&f, b"x").unwrap();
        let f = f.display();
        let c = load(&format!(
            "[[stream]]\nname = \"a\"\nsource = \"{f}\"\nloop = false\npace = false\nstart_utc = \"2026-12-01T22:00:00.5+01:00\"\n[[stream]]\nname = \"b\"\n"
        ))
        .unwrap();
        assert!(!c[0].pace && c[0].is_import());
        assert_eq!(
            c[0].start_utc.unwrap().to_rfc3339_millis(),
            "2026-12-01T21:00:00.500Z"
        );
        assert!(c[1].pace && c[1].start_utc.is_none() && !c[1].is_import());
        let e = err(&format!(
            "[[stream]]\nname = \"a\"\nsource = \"{f}\"\nloop = false\nstart_utc = \"yesterday\"\n"
        ));
        assert!(e.contains("start_utc") && e.contains("RFC 3339"), "{e}");
        let e = err(&format!(
            "[[stream]]\nname = \"a\"\nsource = \"{f}\"\nstart_utc = \"2026-12-01T22:00:00Z\"\n"
        ));
        assert!(
            e.contains("stream \"a\"") && e.contains("--loop false"),
            "{e}"
        );
        let e = err("[[stream]]\nname = \"a\"\npace = false\n");
        assert!(e.contains("--pace false") && e.contains("generator"), "{e}");
        let e = err(
            "[[stream]]\nname = \"a\"\nsource = \"generator\"\nstart_utc = \"2099-01-01T00:00:00Z\"\n",
        );
        assert!(e.contains("--start-utc"), "{e}");
        let t = T::parse_from([
            "t",
            "--pace",
            "false",
            "--start-utc",
            "2026-12-01T22:00:00Z",
        ]);
        assert!(!t.source.pace);
        assert!(t.source.start_utc.is_some());
        assert!(T::try_parse_from(["t", "--start-utc", "22:00"]).is_err());
    }

    #[test]
    fn a_misspelt_key_gets_the_nearest_one() {
        let e = err("[[stream]]\nname = \"a\"\nretension = \"1h\"\n");
        assert!(e.contains("did you mean `retention`?"), "{e}");
        assert!(e.contains("unknown field `retension`"), "{e}");
        let e = err("[[stream]]\nname = \"a\"\nzzzzzz = 1\n");
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn problems_name_the_file_line_stream_and_key() {
        let e = err("[[stream]]\nname = \"a\"\ncolour = 1\n");
        assert!(
            e.contains("h.toml: line 3, stream 1") && e.contains("colour"),
            "{e}"
        );
        let e = err("[[stream]]\nname = \"a\"\n[[stream]]\nname = \"a\"\n");
        assert!(
            e.contains("line 3") && e.contains("two streams are named \"a\""),
            "{e}"
        );
        let e = err("[[stream]]\nname = \"a b\"\n");
        assert!(e.contains("name \"a b\""), "{e}");
        let e = err("[[stream]]\nname = \"a\"\nsource = \"srt://x\"\n");
        assert!(
            e.contains("stream \"a\"") && e.contains("unknown scheme"),
            "{e}"
        );
        let e = err("[[stream]]\nname = \"a\"\nsource = \"/no/such.mp4\"\n");
        assert!(
            e.contains("no such file") && e.contains("/no/such.mp4"),
            "{e}"
        );
        // With other streams, a missing file does not keep them from starting: it is taken
        // (and retried at run time with the reason), a typo in a scheme still is an error.
        let two = "[[stream]]\nname = \"a\"\nsource = \"/no/such.mp4\"\n\
                   [[stream]]\nname = \"b\"\nsource = \"generator\"\n";
        let c = load(two).unwrap();
        assert!(
            matches!(&c[0].source, Source::File { path, .. } if path == Path::new("/no/such.mp4")),
            "{:?}",
            c[0].source
        );
        let e = err("[[stream]]\nname = \"a\"\nsource = \"srt://x\"\n[[stream]]\nname = \"b\"\n");
        assert!(e.contains("unknown scheme"), "{e}");
        let e = err("[[stream]]\nname = \"a\"\nsegment_duration = \"fast\"\n");
        assert!(
            e.contains("segment_duration") && e.contains("\"fast\""),
            "{e}"
        );
        let e = err("[[stream]]\nname = \"a\"\nvideo = \"h265\"\n");
        assert!(e.contains("video") && e.contains("copy, encode"), "{e}");
        let e = err("[[stream]]\nname = \"a\"\nquality = 3\n");
        assert!(e.contains("--quality 3"), "{e}");
        let e = err("[[stream]]\nname = \"a\"\nfps = \"x\"\n");
        assert!(e.contains("fps"), "{e}");
        // Not serde's "data did not match any variant of untagged enum Fps" (found by QA).
        let e = err("[[stream]]\nname = \"a\"\nfps = true\n");
        assert!(e.contains("fps: a whole number (30) or a string"), "{e}");
        assert!(!e.contains("untagged"), "{e}");
        let e = err("[[stream]\nname = 1\n");
        assert!(e.contains("h.toml: line 1"), "{e}");
        let e = err("[[stream]]\nsource = \"generator\"\n");
        assert!(e.contains("name"), "{e}");
        let e = err("");
        assert!(e.contains("no [[stream]]"), "{e}");
        let e = err("streams = 1\n");
        assert!(e.contains("line 1") && e.contains("streams"), "{e}");
    }
}
