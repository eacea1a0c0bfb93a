//! `berth registry serve|gc`: run the OCI Distribution registry of
//! `berth-registry-server`, or collect its garbage.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_registry_server::Config;
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
        after_help = "Settings come from the config file, then BERTH_REGISTRY_* environment\nvariables (BERTH_REGISTRY_STORAGE_DELETE_ENABLED=false), then flags.\nThe first line on stdout is `listening on ADDR`.\n\nExamples:\n  berth --root /srv/registry registry serve --addr 127.0.0.1:5000\n  berth registry serve --config registry.yaml --print-config"
    )]
    Serve {
        /// Configuration file (YAML)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen address (port 0 picks a free port)
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Print the effective configuration (YAML) and exit
        #[arg(long)]
        print_config: bool,
    },
    /// Remove blobs no tag or manifest reaches
    #[command(
        after_help = "Blobs younger than gc.grace_period_secs are kept. While a server runs on the\nsame storage prefer its scheduled GC (gc.interval_secs), which also protects\nblobs pushed during the run.\n\nExamples:\n  berth --root /srv/registry registry gc --dry-run\n  berth registry gc --config registry.yaml"
    )]
    Gc {
        /// Configuration file (YAML)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Report what would be deleted without deleting it
        #[arg(long)]
        dry_run: bool,
        /// Also delete manifests no tag reaches
        #[arg(long)]
        delete_untagged: bool,
    },
}

fn load(config: Option<&Path>, storage_root: Option<&Path>) -> anyhow::Result<Config> {
    let mut c = Config::load(config)?;
    if let Some(root) = storage_root {
        c.root = root.to_path_buf();
    }
    Ok(c)
}

pub fn run(storage_root: Option<&Path>, args: RegistryArgs) -> anyhow::Result<()> {
    match args.command {
        RegistryCommand::Serve {
            config,
            addr,
            print_config,
        } => {
            let mut c = load(config.as_deref(), storage_root)?;
            if let Some(addr) = addr {
                c.addr = addr;
            }
            if print_config {
                print!("{}", c.to_yaml());
                return Ok(());
            }
            berth_registry_server::serve_blocking(c).context("registry server failed")
        }
        RegistryCommand::Gc {
            config,
            dry_run,
            delete_untagged,
        } => {
            let mut c = load(config.as_deref(), storage_root)?;
            if delete_untagged {
                c.gc.delete_untagged = true;
            }
            let report = berth_registry_server::gc_blocking(&c, dry_run)?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!(
                "{verb} {} blobs ({} bytes) and {} manifests; {} blobs in use",
                report.blobs_deleted, report.bytes_freed, report.manifests_deleted, report.marked
            );
            Ok(())
        }
    }
}
