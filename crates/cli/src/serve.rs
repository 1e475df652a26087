//! `hlsmark serve`: parses the API's flags (each with an `HLSMARK_*` variable), validates them
//! into an [`ApiConfig`], opens the store and serves HTTP until SIGINT/SIGTERM (in-flight requests
//! finish, exit 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hlsmark_api::ApiConfig;
use hlsmark_store::StreamName;

use crate::common::StoreArgs;

/// Flags of the HTTP server (shared by `serve` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "HLSMARK_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,
    /// Serve the player page from this directory (a `frontend/dist` being developed) instead of
    /// the page built into the binary [default: the embedded page].
    #[arg(long, env = "HLSMARK_FRONTEND_DIR")]
    pub frontend_dir: Option<PathBuf>,
    /// Boxed: `run`'s arguments would otherwise outgrow `generate`'s (clippy's enum-size lint).
    #[command(flatten)]
    pub tls: Box<TlsArgs>,
    /// Bearer token that POST/DELETE /markers require (16-256 visible ASCII characters)
    /// [default: none, writes are refused with 403].
    #[arg(long, env = "HLSMARK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Origin allowed to call the API from another site, e.g. `https://dash.example.com`;
    /// repeat the flag or separate with commas [default: none, same origin only].
    #[arg(
        long = "cors-origin",
        env = "HLSMARK_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// How far back the live playlist reaches (`30s`, `2h`; 1 s to 24 h), turned into whole
    /// segments of each stream's segment duration; at most the retention (`run` refuses a longer
    /// one) [default: `--live-window` segments, 30 s at 1 s segments].
    #[arg(long, env = "HLSMARK_DVR_WINDOW", value_parser = humantime::parse_duration)]
    pub dvr_window: Option<Duration>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HLSMARK_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Time a request's whole body has to arrive before the answer is 408 (`10s`).
    #[arg(long, env = "HLSMARK_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// HTTP worker threads [default: number of CPUs, at most 8].
    #[arg(long, env = "HLSMARK_WORKERS")]
    pub workers: Option<usize>,
    /// Time in-flight requests get to finish at shutdown (`10s`).
    #[arg(long, env = "HLSMARK_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// How long a read of the store's version is reused before asking again: the most a served
    /// playlist can lag the index (`0s` = ask on every request; at most `1s`). A segment file's
    /// `stat` is reused as long (a deleted segment answers 404 at most this late).
    #[arg(long, env = "HLSMARK_REVALIDATE", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub revalidate: Duration,
    /// Open `/markers/live` feeds allowed per client address; beyond it 503
    /// `too_many_connections` (0 = no limit). Behind a reverse proxy every viewer has the proxy's
    /// address: raise it there.
    #[arg(long, env = "HLSMARK_SSE_MAX_PER_IP", default_value_t = 50)]
    pub sse_max_per_ip: usize,
    /// Open `/markers/live` feeds allowed in total (0 = no limit); never more than half of the
    /// connections the open-file limit allows.
    #[arg(long, env = "HLSMARK_SSE_MAX_CLIENTS", default_value_t = 1000)]
    pub sse_max_clients: usize,
    /// Viewers of one stream's live previews (`/preview/{stream}.gif|.mjpeg`, all formats
    /// together) beyond which the server answers 503.
    #[arg(long, env = "HLSMARK_PREVIEW_MAX_VIEWERS", default_value_t = 200)]
    pub preview_max_viewers: usize,
    /// Longest clip `/clips/{stream}.mp4` and `/markers/{id}/clip.mp4` make; a longer range is
    /// 400 `range_too_large` (`1s` to `24h`).
    #[arg(long, env = "HLSMARK_CLIP_MAX_DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub clip_max_duration: Duration,
    /// Clips being made or sent at once; more answer 503 `too_many_clips` with `Retry-After`
    /// (1-1000).
    #[arg(long, env = "HLSMARK_CLIP_MAX_CONCURRENT", default_value_t = 8)]
    pub clip_max_concurrent: usize,
    /// Send rate of one clip in Mbit/s, so clip downloads leave bandwidth to live viewers
    /// (0 = as fast as the client takes it).
    #[arg(long, env = "HLSMARK_CLIP_MAX_MBPS", default_value_t = 40)]
    pub clip_max_mbps: u32,
    /// Boxed like `tls`.
    #[command(flatten)]
    pub webhooks: Box<crate::webhooks::WebhookArgs>,
}

/// HTTPS: both or neither.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// TLS certificate chain (PEM); with `--tls-key`, serves HTTPS (HTTP/2 and HTTP/1.1 by ALPN)
    /// [default: none, plain HTTP/1.1 and h2c].
    #[arg(long, env = "HLSMARK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "HLSMARK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The validated runtime configuration.
    pub fn config(&self, store: &StoreArgs, live_window: u32) -> anyhow::Result<ApiConfig> {
        let mut c = ApiConfig::new(store.data_dir.clone());
        c.listen = self.listen;
        c.frontend_dir = self
            .frontend_dir
            .clone()
            .filter(|d| !d.as_os_str().is_empty());
        c.tls = match (&self.tls.tls_cert, &self.tls.tls_key) {
            (Some(cert), Some(key)) => Some(hlsmark_api::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        c.default_stream = StreamName::new(&store.stream)?;
        c.live_window = usize::try_from(live_window).context("--live-window")?;
        c.dvr_window = self.dvr_window;
        c.token = self.token.clone().filter(|t| !t.is_empty());
        c.cors_origins = self
            .cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        c.body_limit = self.body_limit;
        c.body_timeout = self.body_timeout;
        if let Some(w) = self.workers {
            c.workers = w;
        }
        c.shutdown_timeout = self.shutdown_timeout;
        c.revalidate = self.revalidate;
        c.sse_max_per_ip = self.sse_max_per_ip;
        c.sse_max_clients = self.sse_max_clients;
        c.previews = hlsmark_previews::Hub::new(hlsmark_previews::HubConfig {
            max_viewers_per_stream: self.preview_max_viewers.max(1),
            ..c.previews.config().clone()
        });
        c.clip_max_duration = self.clip_max_duration;
        c.clip_max_concurrent = self.clip_max_concurrent;
        c.clip_max_mbps = self.clip_max_mbps;
        c.write_probe = Some(crate::common::write_probe(store));
        c.media_public_url = crate::common::media_public_url(store)?;
        crate::common::media_spec(store)?;
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Segments in the live playlist.
    #[arg(long, env = "HLSMARK_LIVE_WINDOW", default_value_t = 30)]
    pub live_window: u32,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    crate::init_logging();
    let mut config = args.serve.config(&args.store, args.live_window)?;
    let webhooks = args.serve.webhooks.config(None)?;
    crate::common::runtime()?.block_on(async {
        let store = crate::common::open_store(&args.store).await?;
        config.media = crate::common::open_media(&args.store).await?;
        let dispatcher = match webhooks {
            Some(w) => Some(crate::webhooks::Dispatcher::start(w, &store, &config).await),
            None => None,
        };
        let writes_off = config.token.is_none();
        let api = hlsmark_api::Api::bind(config, store)?;
        // Scripts and tests read this line to learn the port (useful with --listen 127.0.0.1:0).
        // An unspecified address (0.0.0.0, [::]) is not a URL a browser can open: print localhost.
        let addr = api.local_addr();
        let host = if addr.ip().is_unspecified() {
            "localhost".to_owned()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        crate::common::say(format_args!(
            "hlsmark serve: listening on {}://{host}:{}",
            api.scheme(),
            addr.port()
        ));
        if writes_off {
            crate::common::say(format_args!("{}", crate::common::WRITES_OFF));
        }
        api.run_until(crate::common::shutdown_signal()).await?;
        if let Some(d) = dispatcher {
            d.stop().await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}
