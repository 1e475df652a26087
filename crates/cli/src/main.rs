//! `hlsmark`: the one command users and scripts run. It only parses configuration and wires the
//! library crates together; each subcommand lives in its own module.

use clap::{Parser, Subcommand};

// Shared flags (--stream, --data-dir, --store, --store-prefix) live in common.rs: flatten
// `common::StoreArgs` into a subcommand's Args instead of redefining them.
mod common;
mod generate;
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::main(args),
        Command::Serve(args) => serve::main(args),
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
