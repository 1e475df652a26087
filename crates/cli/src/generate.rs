//! `hlsmark generate` (being built).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`hlsmark generate` is not implemented yet")
}
