//! `hlsmark`: the one command users and scripts run. It only parses configuration and wires the
//! library crates together; each subcommand lives in its own module.

use clap::{Parser, Subcommand};

// Shared flags (--stream, --data-dir, --store, --store-prefix) live in common.rs: flatten
// `common::StoreArgs` into a subcommand's Args instead of redefining them.
mod common;
mod generate;
mod run;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "hlsmark",
    version,
    about = "Live HLS with a seekable timeline and frame-exact event markers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Synthesize frames, encode and cut HLS segments with ffmpeg, publish segments and events.
    Generate(generate::Args),
    /// Serve playlists, segments, markers and the player page over HTTP.
    Serve(serve::Args),
    /// Generator + API + embedded store in one process: the whole product on :5000.
    Run(run::Args),
}

/// Default log filter: our info logs, without actix-http's per-connection errors (a malformed
/// request line, 431, 408 on an idle client...), which any client could use to flood the log at
/// ERROR level. The client already got its 4xx.
const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off";

/// Logs go to stderr; `RUST_LOG` filters them (default [`DEFAULT_LOG_FILTER`]).
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Run(args) => run::main(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (with the cause chain), never a backtrace.
            eprintln!("hlsmark: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
