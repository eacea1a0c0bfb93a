//! `berth build` and `berth builder prune`: Dockerfile builds through
//! `berth-builder`, with progress rendering and outputs.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::remote::RemoteOptions;

#[derive(Args)]
pub struct BuildArgs {
    context: PathBuf,
}

#[derive(Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Subcommand)]
enum BuilderCommand {
    /// Remove build cache entries
    Prune,
}

pub fn build(_root: &Path, _opts: &RemoteOptions, _a: BuildArgs) -> anyhow::Result<()> {
    anyhow::bail!("berth build is not implemented yet")
}

pub fn builder(_root: &Path, a: BuilderArgs) -> anyhow::Result<()> {
    match a.command {
        BuilderCommand::Prune => anyhow::bail!("berth builder prune is not implemented yet"),
    }
}
