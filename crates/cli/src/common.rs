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
    /// Store: `redis://host:port/` for Redis, or a file path for the embedded store
    /// [default: <data-dir>/hlsmark.redb].
    #[arg(long, env = "HLSMARK_STORE")]
    pub store: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "HLSMARK_STORE_PREFIX", default_value = "hlsmark")]
    pub store_prefix: String,
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
        .with_context(|| format!("opening store {spec}"))
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
