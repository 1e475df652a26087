//! `hlsmark run`: the generator, the API and the embedded store in one process, on port 5000 by
//! default: the main job for anyone without Docker. Needs only ffmpeg.
//!
//! Both halves get the same flags as `generate` and `serve` (same names, same `HLSMARK_*`
//! variables) and share one store handle, so the embedded (redb) store works: it allows one
//! process per file. SIGINT/SIGTERM stops both: the API lets in-flight requests finish, the
//! generator closes ffmpeg's input, publishes the last segment, and the process exits 0.

use anyhow::Context as _;

use crate::common::StoreArgs;
use crate::generate::GeneratorArgs;
use crate::serve::ServeArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    crate::init_logging();
    let gen_config = args
        .generator
        .config(&args.store.stream, args.store.data_dir.clone())?;
    let api_config = args.serve.config(&args.store, args.generator.live_window)?;
    check_data_dir(&args.store)?;
    crate::common::runtime()?.block_on(async {
        let store = crate::common::open_store(&args.store).await?;
        // Check ffmpeg and bind before starting anything, so each start-up problem is one line.
        hlsmark_generator::ffmpeg::check_ffmpeg(&args.generator.ffmpeg).await?;
        let api = hlsmark_api::Api::bind(api_config, store.clone())?;
        let addr = api.local_addr();
        println!(
            "hlsmark run: open http://{} (stream {:?})",
            display_addr(addr),
            args.store.stream
        );

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
        let gen_result = hlsmark_generator::run(gen_config, store, stopped(stop_rx)).await;
        // The generator ended (signal, --stop-after or a fatal error): stop the API too.
        let _ = stop_tx.send(true);
        let api_result = api_task.await.context("API task")?;
        signals.abort();
        let report = gen_result?;
        api_result?;
        if !report.flushed {
            anyhow::bail!("the store was unreachable at exit; some records were not written");
        }
        Ok(())
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
