//! `hlsmark`: the one command users and scripts run. It only parses configuration and wires the
//! library crates together; each subcommand lives in its own module.

use clap::{Parser, Subcommand};

// Shared flags (--stream, --data-dir, --store, --store-prefix) live in common.rs: flatten
// `common::StoreArgs` into a subcommand's Args instead of redefining them.
mod common;
mod generate;
mod run;
mod serve;
mod streams;
mod webhooks;

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

// `allow_negative_numbers`: `--width -2` is a value its flag refuses with a range, not clap's
// "unexpected argument '-2' found".
#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest without the API: each stream's source through ffmpeg into segments and the store.
    #[command(allow_negative_numbers = true)]
    Generate(generate::Args),
    /// Serve playlists, segments, markers and the player page over HTTP.
    #[command(allow_negative_numbers = true)]
    Serve(serve::Args),
    /// Ingest + API + embedded store in one process: the whole product on :5000.
    // Boxed: the flags of both halves make it much larger than the other commands.
    #[command(allow_negative_numbers = true)]
    Run(Box<run::Args>),
}

/// Default log filter: our info logs, without actix-http's per-connection errors (a malformed
/// request line, 431, 408 on an idle client...), which any client could use to flood the log at
/// ERROR level. The client already got its 4xx. Nor mp4-atom's warning for every box it does not
/// model (the `©nam`/`©cmt` tags ffmpeg copies from an RTSP camera's SDP into the init section):
/// the boxes are skipped and nothing is wrong.
const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off,mp4_atom=error";

/// Logs go to stderr; `RUST_LOG` filters them (default [`DEFAULT_LOG_FILTER`]).
/// A failed log write is dropped: tracing-subscriber's default reports it with `eprintln!`,
/// which panics when stderr itself fails (a log file on a full disk), killing the task that
/// logged (issue 18: the stream died when the disk filled).
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// Raises the open-file soft limit to the hard limit (every subcommand holds connections, pipes
/// and segment files) and says what it runs with.
fn raise_fd_limit() {
    match hlsmark_api::raise_fd_limit() {
        Ok(l) if l.now > l.before => tracing::info!(
            from = l.before,
            to = l.now,
            hard = l.hard,
            "raised the open-file limit"
        ),
        Ok(l) => tracing::info!(limit = l.now, hard = l.hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    raise_fd_limit();
    let result = match cli.command {
        Command::Generate(args) => generate::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Run(args) => run::main(*args),
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
