//! `hlsmark serve` (being built).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`hlsmark serve` is not implemented yet")
}
