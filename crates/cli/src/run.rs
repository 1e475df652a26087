//! `hlsmark run`: every stream's ingest, the API and the embedded store in one process, on port
//! 5000 by default: the main job for anyone without Docker. Needs only ffmpeg.
//!
//! Both halves get the same flags as `generate` and `serve` (same names, same `HLSMARK_*`
//! variables; `--source` or `--config` for the streams) and share one store handle, so the
//! embedded (redb) store works: it allows one process per file. SIGINT/SIGTERM stops both: the
//! API lets in-flight requests finish, each stream finishes ffmpeg's output and publishes its last
//! segment, and the process exits 0.

use anyhow::Context as _;

use crate::common::StoreArgs;
use crate::generate::GeneratorArgs;
use crate::serve::ServeArgs;
use crate::streams::SourceArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
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
    let mut api_config = args.serve.config(&args.store, args.generator.live_window)?;
    // The playlist cannot list segments the retention deleted: a longer window is a mistake.
    if let Some(w) = api_config.dvr_window
        && let Some(c) = configs.iter().find(|c| c.retention < w)
    {
        anyhow::bail!(
            "--dvr-window {} is longer than stream {:?}'s retention {}: raise --retention or shorten the window",
            humantime::format_duration(w),
            c.stream.as_str(),
            humantime::format_duration(c.retention)
        );
    }
    // One process: preview pictures go from each stream's tap straight to the API's encoders.
    crate::streams::wire_previews(&mut configs, &api_config.previews);
    if let Some(first) = configs.first() {
        // The page opens on the first stream of the config (or the one --stream names).
        api_config.default_stream = first.stream.clone();
    }
    check_data_dir(&args.store)?;
    let webhooks = args.serve.webhooks.config(args.source.config.as_deref())?;
    crate::common::runtime()?.block_on(async {
        // ffmpeg is checked (two process starts, ~100 ms) while the store opens: launch time.
        let (store, ffmpeg) = tokio::join!(
            crate::common::open_store(&args.store),
            hlsmark_sources::ffmpeg::check_ffmpeg(&args.generator.ffmpeg)
        );
        let store = store?;
        // One media store for both halves (`--media`; `None`: the data directory).
        let media = crate::common::open_media(&args.store).await?;
        api_config.media = media.clone();
        for c in &mut configs {
            c.media = media.clone();
        }
        // Registered before the API and the ingest write their first marker.
        let dispatcher = match webhooks {
            Some(w) => Some(crate::webhooks::Dispatcher::start(w, &store, &api_config).await),
            None => None,
        };
        // Check ffmpeg and bind before starting anything, so each start-up problem is one line.
        ffmpeg?;
        let writes_off = api_config.token.is_none();
        let api = hlsmark_api::Api::bind(api_config, store.clone())?;
        let addr = api.local_addr();
        crate::common::say(format_args!(
            "hlsmark run: open {}://{}",
            api.scheme(),
            display_addr(addr)
        ));
        if writes_off {
            crate::common::say(format_args!("{}", crate::common::WRITES_OFF));
        }
        for c in &configs {
            let (kind, source) = (c.source.kind(), c.source.masked());
            // The generator's source is its kind: said once.
            let source = if source == kind {
                String::new()
            } else {
                format!(" {source}")
            };
            crate::common::say(format_args!(
                "  stream {:?}: {kind}{source}",
                c.stream.as_str()
            ));
        }

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let signals = tokio::spawn({
            let stop_tx = stop_tx.clone();
            async move {
                crate::common::shutdown_signal().await;
                let _ = stop_tx.send(true);
            }
        });
        let api_task = tokio::spawn(api.run_until(stopped(stop_rx.clone())));
        // `--stop-after` bounds the whole run; without it a stream that ends by itself (a file
        // played once, a source that can never work) leaves its archive to be watched.
        let bounded = configs.iter().any(|c| c.stop_after.is_some());
        let ingest = hlsmark_sources::run_many(configs, store, stopped(stop_rx.clone())).await;
        if ingest.is_ok() && !bounded && !*stop_rx.borrow() {
            crate::common::say(format_args!(
                "hlsmark run: every stream has ended; still serving the archive (Ctrl-C stops)"
            ));
            stopped(stop_rx).await;
        }
        // Every stream ended (signal, --stop-after or a fatal error): stop the API too.
        let _ = stop_tx.send(true);
        let api_result = api_task.await.context("API task")?;
        if let Some(d) = dispatcher {
            d.stop().await;
        }
        signals.abort();
        let reports = ingest?;
        api_result?;
        crate::common::check_reports(&reports)
    })
}

/// A data dir that cannot be written is one clear line at start, not an ffmpeg error later.
fn check_data_dir(store: &StoreArgs) -> anyhow::Result<()> {
    let dir = &store.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("data dir {} cannot be created", dir.display()))?;
    let probe = dir.join(".hlsmark-write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("data dir {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn display_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
