//! The validated runtime configuration of the API server (the binary parses flags into this).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hlsmark_store::StreamName;

/// Everything the server needs besides the store. Built by `hlsmark serve` / `hlsmark run` from
/// flags and environment, or directly by tests.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on (`--listen`, default `0.0.0.0:5000`).
    pub listen: SocketAddr,
    /// Root of the data directory; segments of stream S live in `<data_dir>/hls/S/`.
    pub data_dir: PathBuf,
    /// A directory holding a built player page (`index.html` and `assets/`) to serve instead of
    /// the page embedded in the binary (page development). `None`: the embedded page.
    pub frontend_dir: Option<PathBuf>,
    /// TLS certificate chain and private key (PEM files); `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Stream used when a request names none.
    pub default_stream: StreamName,
    /// Segments in the live playlist when no [`Self::dvr_window`] is set (`--live-window`).
    pub live_window: usize,
    /// How far back the live playlist reaches (`--dvr-window`, e.g. `30s`, `2h`): converted to
    /// segments with the stream's newest epoch's segment duration ([`Self::live_segments`]).
    /// `None`: [`Self::live_window`] segments (30: 30 s at the default 1 s segments).
    /// Independent of the retention, which only bounds it (a playlist cannot list deleted
    /// segments; `hlsmark run` refuses a window longer than the retention at start). Long
    /// windows stay cheap for LL-HLS players through delta updates (`_HLS_skip`).
    pub dvr_window: Option<Duration>,
    /// Bearer token for writes; `None` refuses every write with 403.
    pub token: Option<String>,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`).
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Time a request's whole body has to arrive (actix's own timeout covers only the head): a
    /// stalled body gets a 408 instead of holding the connection and the shutdown.
    pub body_timeout: Duration,
    /// HTTP worker threads.
    pub workers: usize,
    /// How long in-flight requests get to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// Interval of SSE keep-alive comments.
    pub sse_keepalive: Duration,
    /// Open `/markers/live` feeds allowed per client IP (`--sse-max-per-ip`, 0 = no limit).
    /// Behind a reverse proxy every viewer has the proxy's address: raise it or set 0 there.
    pub sse_max_per_ip: usize,
    /// Open `/markers/live` feeds allowed in total (`--sse-max-clients`, 0 = no limit). The
    /// server lowers it to half of the connections its file-descriptor limit allows.
    pub sse_max_clients: usize,
    /// How long one read of a stream's store version is reused before the store is asked again:
    /// the cached playlist and timeline are at most this stale (writes through this server
    /// invalidate at once). Zero asks the store on every request. Segment paths are `stat`ed
    /// again after the same time (a deleted segment answers 404 at most this late).
    pub revalidate: Duration,
    /// A cheap write to the store's backing (a file beside the embedded store, a Redis key with
    /// a TTL) that `/readyz` makes, so a store that answers reads but refuses writes is not
    /// ready. `None`: only the store's own write transaction is tried.
    pub write_probe: Option<Arc<dyn crate::readiness::WriteProbe>>,
    /// Preview feeds and encoders (GIF, MJPEG). `hlsmark run` shares one with its ingest; by
    /// default a stream's pictures are read from `<data_dir>/hls/<stream>/preview.jpg`.
    pub previews: hlsmark_previews::Hub,
    /// Exact-frame thumbnails (ffmpeg) and their cache.
    pub thumbnails: Arc<hlsmark_previews::Thumbnails>,
    /// Longest clip `/clips/` and `/markers/{id}/clip.mp4` make (`--clip-max-duration`, 10 min);
    /// a longer range is 400 `range_too_large`.
    pub clip_max_duration: Duration,
    /// Clips being made or sent at once (`--clip-max-concurrent`, 8); more answer 503
    /// `too_many_clips` with `Retry-After`, so clip downloads cannot crowd out live viewers.
    pub clip_max_concurrent: usize,
    /// Send rate of one clip in megabits a second (`--clip-max-mbps`, 40; 0 = as fast as the
    /// client takes it): caps what clip downloads take from live viewers on a shared link or
    /// machine (8 clips at 40 Mbit/s: 320 Mbit/s at most; scripts/bench-clips.sh measures it).
    pub clip_max_mbps: u32,
    /// The slots of `clip_max_concurrent`, shared by every worker of the server.
    pub clip_gate: Arc<crate::services::clips::ClipGate>,
    /// `--media s3://...`: segments, parts and init sections are read from this store instead of
    /// `<data_dir>/hls` (`None`: the directory, as always).
    pub media: Option<hlsmark_mediastore::SharedMedia>,
    /// `--media-public-url`: playlists point players at `<url>/<stream>/<file>` (the bucket or a
    /// CDN in front of it) instead of this server's `/hls/<stream>/<file>`.
    pub media_public_url: Option<String>,
}

/// Where the TLS certificate chain and its private key are (PEM). Both are read at start
/// (`Api::bind`): a missing or unreadable file, no certificate, no key or a key that does not
/// belong to the certificate stops the start with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("live window must be 1 to {max} segments, got {0}", max = hlsmark_store::LIVE_WINDOW_MAX)]
    LiveWindow(usize),
    #[error("DVR window must be 1 s to 24 h, got {0:?}")]
    DvrWindow(Duration),
    #[error("token must be 16 to 256 visible ASCII characters (got {0} characters)")]
    Token(usize),
    #[error(
        "CORS origin {0:?} must look like https://example.com or http://host:port, and never be \"*\""
    )]
    CorsOrigin(String),
    #[error("body limit must be 1 KiB to 16 MiB, got {0} bytes")]
    BodyLimit(usize),
    #[error("body timeout must be 100 ms to 10 min, got {0:?}")]
    BodyTimeout(Duration),
    #[error("workers must be 1 to 256, got {0}")]
    Workers(usize),
    #[error("SSE limits must be at most 1000000 (0 = no limit), got {0}")]
    SseLimit(usize),
    #[error("clip max duration must be 1 s to 24 h, got {0:?}")]
    ClipMaxDuration(Duration),
    #[error("clip max concurrent must be 1 to 1000, got {0}")]
    ClipMaxConcurrent(usize),
    #[error("clip max rate must be 0 (no cap) to 100000 Mbit/s, got {0}")]
    ClipMaxMbps(u32),
    #[error(
        "revalidate must be at most 1 s (a playlist must not be older than half a segment), got {0:?}"
    )]
    Revalidate(Duration),
}

impl ApiConfig {
    /// Defaults of every setting (what `hlsmark serve` uses without flags).
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            frontend_dir: None,
            tls: None,
            default_stream: StreamName::live(),
            live_window: 30,
            dvr_window: None,
            token: None,
            cors_origins: Vec::new(),
            body_limit: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            shutdown_timeout: Duration::from_secs(10),
            sse_keepalive: Duration::from_secs(15),
            sse_max_per_ip: 50,
            sse_max_clients: 1000,
            revalidate: Duration::from_millis(20),
            write_probe: None,
            previews: hlsmark_previews::Hub::new(hlsmark_previews::HubConfig {
                files_root: Some(data_dir.join("hls")),
                ..hlsmark_previews::HubConfig::default()
            }),
            thumbnails: Arc::new(hlsmark_previews::Thumbnails::new(
                PathBuf::from("ffmpeg"),
                1024,
                64 << 20,
            )),
            clip_max_duration: Duration::from_secs(600),
            clip_max_concurrent: 8,
            clip_max_mbps: 40,
            clip_gate: Arc::default(),
            media: None,
            media_public_url: None,
            data_dir,
        }
    }

    /// Checks every value; the binary calls this at start so bad config fails with one line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !u32::try_from(self.live_window)
            .is_ok_and(|w| (1..=hlsmark_store::LIVE_WINDOW_MAX).contains(&w))
        {
            return Err(ConfigError::LiveWindow(self.live_window));
        }
        if let Some(w) = self.dvr_window
            && !(DVR_WINDOW_MIN..=DVR_WINDOW_MAX).contains(&w)
        {
            return Err(ConfigError::DvrWindow(w));
        }
        if let Some(t) = &self.token {
            let ok = (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ConfigError::Token(t.chars().count()));
            }
        }
        for o in &self.cors_origins {
            if !valid_origin(o) {
                return Err(ConfigError::CorsOrigin(o.clone()));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit) {
            return Err(ConfigError::BodyLimit(self.body_limit));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&self.body_timeout) {
            return Err(ConfigError::BodyTimeout(self.body_timeout));
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::Workers(self.workers));
        }
        for n in [self.sse_max_per_ip, self.sse_max_clients] {
            if n > 1_000_000 {
                return Err(ConfigError::SseLimit(n));
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.clip_max_duration)
        {
            return Err(ConfigError::ClipMaxDuration(self.clip_max_duration));
        }
        if !(1..=1000).contains(&self.clip_max_concurrent) {
            return Err(ConfigError::ClipMaxConcurrent(self.clip_max_concurrent));
        }
        if self.clip_max_mbps > 100_000 {
            return Err(ConfigError::ClipMaxMbps(self.clip_max_mbps));
        }
        if self.revalidate > Duration::from_secs(1) {
            return Err(ConfigError::Revalidate(self.revalidate));
        }
        Ok(())
    }
}

/// Shortest and longest `--dvr-window`.
pub const DVR_WINDOW_MIN: Duration = Duration::from_secs(1);
pub const DVR_WINDOW_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most segments a live playlist lists (a 24 h window of 200 ms segments would be 432,000).
pub const LIVE_SEGMENTS_MAX: usize = 100_000;

impl ApiConfig {
    /// Segments the live playlist lists for a stream whose segments last `segment` (its newest
    /// epoch's nominal duration): the DVR window rounded up to whole segments (at least 1, at
    /// most [`LIVE_SEGMENTS_MAX`]), or [`Self::live_window`] without one.
    pub fn live_segments(&self, segment: hlsmark_clock::Duration90k) -> usize {
        let Some(window) = self.dvr_window else {
            return self.live_window;
        };
        let seg = u128::try_from(segment.ticks()).unwrap_or(0).max(1);
        // 90 kHz ticks of the window, in integers (µs * 9 / 100).
        let ticks = window.as_micros().saturating_mul(9) / 100;
        let n = ticks.div_ceil(seg);
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .clamp(1, LIVE_SEGMENTS_MAX)
    }
}

/// `scheme://host[:port]` with no path, no wildcard.
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    (scheme == "http" || scheme == "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && !rest.contains('*')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::Duration90k;

    #[test]
    fn dvr_window_becomes_whole_segments_of_the_epoch() {
        let mut c = ApiConfig::new(PathBuf::from("data"));
        // No window: today's 30 segments, whatever the segment duration.
        assert_eq!(c.live_segments(Duration90k(90_000)), 30);
        assert_eq!(c.live_segments(Duration90k(180_000)), 30);
        c.dvr_window = Some(Duration::from_secs(7200));
        assert_eq!(c.live_segments(Duration90k(90_000)), 7200);
        assert_eq!(c.live_segments(Duration90k(180_000)), 3600);
        // 29.97 fps, 30-frame segments (90,090 ticks): rounded up, so the window is covered.
        assert_eq!(c.live_segments(Duration90k(90_090)), 7193);
        c.dvr_window = Some(Duration::from_millis(1500));
        assert_eq!(c.live_segments(Duration90k(90_000)), 2);
        // A window shorter than one segment still lists one; absurd ones are capped.
        c.dvr_window = Some(Duration::from_secs(1));
        assert_eq!(c.live_segments(Duration90k(6 * 90_000)), 1);
        c.dvr_window = Some(DVR_WINDOW_MAX);
        assert_eq!(c.live_segments(Duration90k(18_000)), LIVE_SEGMENTS_MAX);
        assert_eq!(c.live_segments(Duration90k(0)), LIVE_SEGMENTS_MAX);
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let c = ApiConfig::new(PathBuf::from("data"));
        assert_eq!(c.validate(), Ok(()));
        let bad = ApiConfig {
            live_window: 0,
            ..c.clone()
        };
        assert_eq!(bad.validate(), Err(ConfigError::LiveWindow(0)));
        // The same bound as the ingest's (the store crate's).
        let max = hlsmark_store::LIVE_WINDOW_MAX as usize;
        let most = ApiConfig {
            live_window: max,
            ..c.clone()
        };
        assert_eq!(most.validate(), Ok(()));
        let over = ApiConfig {
            live_window: max + 1,
            ..c.clone()
        };
        assert_eq!(over.validate(), Err(ConfigError::LiveWindow(max + 1)));
        for w in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(86_401),
        ] {
            let bad = ApiConfig {
                dvr_window: Some(w),
                ..c.clone()
            };
            assert_eq!(bad.validate(), Err(ConfigError::DvrWindow(w)));
        }
        let bad = ApiConfig {
            token: Some("short".into()),
            ..c.clone()
        };
        assert!(matches!(bad.validate(), Err(ConfigError::Token(5))));
        for o in [
            "*",
            "http://x/*",
            "example.com",
            "http://a.com/path",
            "ftp://a",
        ] {
            let bad = ApiConfig {
                cors_origins: vec![o.into()],
                ..c.clone()
            };
            assert!(bad.validate().is_err(), "{o}");
        }
        let ok = ApiConfig {
            cors_origins: vec![
                "https://dash.example.com".into(),
                "http://localhost:3000".into(),
            ],
            ..c
        };
        assert_eq!(ok.validate(), Ok(()));
    }
}
