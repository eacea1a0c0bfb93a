//! `berth registry serve|gc`: run the OCI Distribution registry of
//! `berth-registry-server`, or collect its garbage offline.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Serve an OCI Distribution 1.1 registry
    #[command(
        after_help = "Examples:\n  berth registry serve --addr 127.0.0.1:5000 --root /srv/registry"
    )]
    Serve {
        /// Configuration file (YAML)
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address
        #[arg(long)]
        addr: Option<String>,
    },
    /// Remove blobs no tag or manifest reaches
    #[command(after_help = "Examples:\n  berth registry gc --dry-run --config registry.yaml")]
    Gc {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(_storage_root: Option<&Path>, args: RegistryArgs) -> anyhow::Result<()> {
    match args.command {
        RegistryCommand::Serve { .. } | RegistryCommand::Gc { .. } => {
            anyhow::bail!("berth registry is not implemented yet")
        }
    }
}
