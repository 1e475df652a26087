//! Flags shared by `generate`, `serve` and `run`: where the store and the segments are, and which
//! stream. Each subcommand flattens [`StoreArgs`] so a flag means the same thing everywhere.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Stream name (1-64 of a-z A-Z 0-9 _ -).
    #[arg(long, env = "HLSMARK_STREAM", default_value = "live")]
    pub stream: String,
    /// Directory for segments (`<data-dir>/hls/<stream>/`) and the embedded store.
    #[arg(long, env = "HLSMARK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Store: `redis://host:port/` for Redis, `redis+cluster://host:port,host:port,...` for a
    /// Redis Cluster, or a file path for the embedded store [default: <data-dir>/hlsmark.redb].
    #[arg(long, env = "HLSMARK_STORE")]
    pub store: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "HLSMARK_STORE_PREFIX", default_value = "hlsmark")]
    pub store_prefix: String,
    /// Where segments, parts and init sections live: `s3://bucket/prefix` (S3-compatible object
    /// storage; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or the directory
    /// [default: <data-dir>/hls].
    #[arg(long, env = "HLSMARK_MEDIA")]
    pub media: Option<String>,
    /// S3 endpoint, e.g. `http://127.0.0.1:3900` [default: AWS_ENDPOINT_URL, else AWS].
    #[arg(long, env = "HLSMARK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "HLSMARK_S3_REGION")]
    pub s3_region: Option<String>,
    /// API nodes: playlists point players at `<url>/<stream>/<file>` for segments and init
    /// sections (the bucket's public URL or a CDN in front of it); parts stay on the API.
    #[arg(long, env = "HLSMARK_MEDIA_PUBLIC_URL")]
    pub media_public_url: Option<String>,
}

impl StoreArgs {
    /// The store spec, with the embedded default under the data dir.
    pub fn store_spec(&self) -> String {
        match &self.store {
            Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => self
                .data_dir
                .join("hlsmark.redb")
                .to_string_lossy()
                .into_owned(),
        }
    }
}

/// The async runtime every subcommand runs on: two workers are plenty for the generator's
/// bookkeeping and the store client (the HTTP server has its own worker threads).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the store named by the flags, with the spec in the error.
pub async fn open_store(
    args: &StoreArgs,
) -> anyhow::Result<std::sync::Arc<dyn hlsmark_store::Store>> {
    use anyhow::Context as _;
    let spec = args.store_spec();
    hlsmark_store::open(&spec, &args.store_prefix)
        .await
        .with_context(|| format!("opening store {}", hlsmark_sources::source::mask_url(&spec)))
}

/// The `--media` spec: `None` for the default directory (`<data-dir>/hls`, the files as always).
/// A directory other than that is refused (the API and the ingest both read `<data-dir>/hls`;
/// use `--data-dir`).
pub fn media_spec(args: &StoreArgs) -> anyhow::Result<Option<hlsmark_mediastore::MediaSpec>> {
    let value = args
        .media
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let endpoint = args.s3_endpoint.as_deref().filter(|v| !v.is_empty());
    let region = args.s3_region.as_deref().filter(|v| !v.is_empty());
    let Some(value) = value else {
        anyhow::ensure!(
            endpoint.is_none() && region.is_none(),
            "--s3-endpoint/--s3-region are set but --media is not s3://bucket/prefix"
        );
        return Ok(None);
    };
    match hlsmark_mediastore::MediaSpec::parse(value, endpoint, region)? {
        hlsmark_mediastore::MediaSpec::Dir(d) => {
            let default = args.data_dir.join("hls");
            let same = |p: &std::path::Path| std::fs::canonicalize(p).ok();
            anyhow::ensure!(
                d == default || (same(&d).is_some() && same(&d) == same(&default)),
                "--media {}: a media directory other than <data-dir>/hls ({}) is not supported; \
                 set --data-dir instead",
                d.display(),
                default.display()
            );
            Ok(None)
        }
        s3 => Ok(Some(s3)),
    }
}

/// Opens the media store of `--media` (`None`: the data directory). An S3 bucket is checked
/// here: a bad URL, a missing bucket, refused credentials or no server is one line at start.
pub async fn open_media(
    args: &StoreArgs,
) -> anyhow::Result<Option<hlsmark_mediastore::SharedMedia>> {
    let Some(spec) = media_spec(args)? else {
        return Ok(None);
    };
    let m = hlsmark_mediastore::open(&spec).await?;
    tracing::info!(media = %m.describe(), "media store");
    Ok(Some(m))
}

/// `--media-public-url`: an `http(s)://` URL without credentials, or nothing.
pub fn media_public_url(args: &StoreArgs) -> anyhow::Result<Option<String>> {
    let Some(u) = args
        .media_public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    let host = rest.and_then(|r| r.split('/').next()).unwrap_or("");
    anyhow::ensure!(
        !host.is_empty() && !host.contains('@') && !u.contains(['"', ' ', '\n', '?', '#']),
        "--media-public-url: an http:// or https:// URL without credentials, query or spaces \
         (e.g. https://cdn.example.com/media)"
    );
    Ok(Some(u.trim_end_matches('/').to_owned()))
}

/// What `/readyz` writes to learn that the store takes writes: a key with a 5 s TTL in Redis
/// (refused under `MISCONF` or on a `READONLY` replica), a small file beside the embedded store
/// (refused on a full or read-only disk).
pub fn write_probe(args: &StoreArgs) -> std::sync::Arc<dyn hlsmark_api::WriteProbe> {
    let spec = args.store_spec();
    if (spec.starts_with("redis://") || spec.starts_with("redis+unix://"))
        && let Ok(client) = redis::Client::open(spec.as_str())
    {
        return std::sync::Arc::new(RedisWriteProbe {
            client,
            key: format!("{}:readyz", args.store_prefix),
            conn: tokio::sync::Mutex::new(None),
        });
    }
    if spec.starts_with(hlsmark_store::redis_cluster::SCHEME)
        && let Ok(nodes) = hlsmark_store::redis_cluster::parse_spec(&spec)
        && let Ok(client) = redis::cluster::ClusterClient::new(nodes)
    {
        return std::sync::Arc::new(RedisClusterWriteProbe {
            client,
            key: format!("{}:readyz", args.store_prefix),
            conn: tokio::sync::Mutex::new(None),
        });
    }
    let dir = std::path::Path::new(&spec)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    std::sync::Arc::new(hlsmark_api::DirWriteProbe::new(dir))
}

/// `SET {prefix}:readyz <pid> PX 5000` over a connection of its own (kept between probes,
/// dropped after an error): the key never grows and expires by itself.
struct RedisWriteProbe {
    client: redis::Client,
    key: String,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisWriteProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWriteProbe")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl hlsmark_api::WriteProbe for RedisWriteProbe {
    fn check(&self) -> hlsmark_api::ProbeFuture<'_> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let mut conn = match slot.take() {
                Some(c) => c,
                None => self
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?,
            };
            let set = set_probe_key(&mut conn, &self.key).await;
            match set {
                Ok(()) => {
                    *slot = Some(conn);
                    Ok(())
                }
                // MISCONF, READONLY, OOM...: Redis says why.
                Err(e) => Err(format!("Redis refused a write: {e}")),
            }
        })
    }
}

/// The write both Redis probes make: `SET key <pid> PX 5000` (the key expires by itself).
async fn set_probe_key(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(std::process::id())
        .arg("PX")
        .arg(5000)
        .query_async(conn)
        .await
}

/// [`RedisWriteProbe`] on a Redis Cluster: the key is in one slot, so this asks the master of
/// that slot (a cluster that refuses writes there, `CLUSTERDOWN` or no master, is not ready).
struct RedisClusterWriteProbe {
    client: redis::cluster::ClusterClient,
    key: String,
    conn: tokio::sync::Mutex<Option<redis::cluster_async::ClusterConnection>>,
}

impl std::fmt::Debug for RedisClusterWriteProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterWriteProbe")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl hlsmark_api::WriteProbe for RedisClusterWriteProbe {
    fn check(&self) -> hlsmark_api::ProbeFuture<'_> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let mut conn = match slot.take() {
                Some(c) => c,
                None => self
                    .client
                    .get_async_connection()
                    .await
                    .map_err(|e| format!("cannot connect to the Redis Cluster: {e}"))?,
            };
            let set = set_probe_key(&mut conn, &self.key).await;
            match set {
                Ok(()) => {
                    *slot = Some(conn);
                    Ok(())
                }
                Err(e) => Err(format!("the Redis Cluster refused a write: {e}")),
            }
        })
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the default action (exit) still applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT"),
        _ = term.recv() => tracing::info!("SIGTERM"),
    }
}

/// Exit status from the streams' reports: an error names every stream that failed or could not
/// write all its records.
pub fn check_reports(reports: &[hlsmark_sources::Report]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for r in reports {
        if let Some(why) = &r.failed {
            problems.push(format!("stream {:?} failed: {why}", r.stream));
        } else if !r.flushed {
            problems.push(format!(
                "stream {:?}: the store was unreachable at exit; some records were not written",
                r.stream
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}

/// Said at start when no token is set: the API answers every write 403 `writes_disabled`.
pub const WRITES_OFF: &str = "  markers are read-only: POST/DELETE /markers need --token (HLSMARK_TOKEN, 16-256 characters); without one they answer 403";

/// Prints a line for the user on stdout. A closed or full stdout (a pipe whose reader went away,
/// `>/dev/full`) must not take the server down: `println!` would panic there, so the error is
/// dropped; the same facts are in the log.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The Redis URL's password was printed in clear in the start-up error (found by QA:
    /// `--store redis://user:pw@127.0.0.1:1/` with nothing listening).
    #[tokio::test]
    async fn a_store_that_cannot_be_opened_is_named_without_its_password() {
        let port = hlsmark_testkit::free_port();
        let args = StoreArgs {
            stream: "live".into(),
            data_dir: PathBuf::from("/nonexistent"),
            store: Some(format!("redis://user:R3disPw99@127.0.0.1:{port}/")),
            store_prefix: "hlsmark".into(),
            media: None,
            s3_endpoint: None,
            s3_region: None,
            media_public_url: None,
        };
        let Err(e) = open_store(&args).await else {
            panic!("nothing listens on {port}");
        };
        let e = format!("{e:#}");
        assert!(!e.contains("R3disPw99"), "{e}");
        assert!(
            e.contains(&format!("redis://user:****@127.0.0.1:{port}/")),
            "{e}"
        );
    }
}
