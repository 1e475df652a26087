//! The validated runtime configuration of the API server (the binary parses flags into this).

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Built player page (`index.html` and `assets/`).
    pub frontend_dir: PathBuf,
    /// Stream used when a request names none.
    pub default_stream: StreamName,
    /// Segments in the live playlist.
    pub live_window: usize,
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
    /// How long one read of a stream's store version is reused before the store is asked again:
    /// the cached playlist and timeline are at most this stale (writes through this server
    /// invalidate at once). Zero asks the store on every request. Segment paths are `stat`ed
    /// again after the same time (a deleted segment answers 404 at most this late).
    pub revalidate: Duration,
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("live window must be 1 to 10000 segments, got {0}")]
    LiveWindow(usize),
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
            data_dir,
            frontend_dir: PathBuf::from("frontend/dist"),
            default_stream: StreamName::live(),
            live_window: 30,
            token: None,
            cors_origins: Vec::new(),
            body_limit: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            shutdown_timeout: Duration::from_secs(10),
            sse_keepalive: Duration::from_secs(15),
            revalidate: Duration::from_millis(20),
        }
    }

    /// Checks every value; the binary calls this at start so bad config fails with one line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.live_window == 0 || self.live_window > 10_000 {
            return Err(ConfigError::LiveWindow(self.live_window));
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
        if self.revalidate > Duration::from_secs(1) {
            return Err(ConfigError::Revalidate(self.revalidate));
        }
        Ok(())
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

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let c = ApiConfig::new(PathBuf::from("data"));
        assert_eq!(c.validate(), Ok(()));
        let bad = ApiConfig {
            live_window: 0,
            ..c.clone()
        };
        assert_eq!(bad.validate(), Err(ConfigError::LiveWindow(0)));
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
