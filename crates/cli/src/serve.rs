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
    /// Built player page (`npm --prefix frontend ci && npm --prefix frontend run build`).
    #[arg(long, env = "HLSMARK_FRONTEND_DIR", default_value = "frontend/dist")]
    pub frontend_dir: PathBuf,
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
}

impl ServeArgs {
    /// The validated runtime configuration.
    pub fn config(&self, store: &StoreArgs, live_window: u32) -> anyhow::Result<ApiConfig> {
        let mut c = ApiConfig::new(store.data_dir.clone());
        c.listen = self.listen;
        c.frontend_dir = self.frontend_dir.clone();
        c.default_stream = StreamName::new(&store.stream)?;
        c.live_window = usize::try_from(live_window).context("--live-window")?;
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
    let config = args.serve.config(&args.store, args.live_window)?;
    crate::common::runtime()?.block_on(async {
        let store = crate::common::open_store(&args.store).await?;
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
        println!("hlsmark serve: listening on http://{host}:{}", addr.port());
        api.run_until(crate::common::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}
