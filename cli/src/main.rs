//! `berth`: the command line. It parses arguments (clap), wires the library
//! crates together, renders output, and turns every error into one line on
//! stderr and an exit code.

mod commands;
mod format;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Build, run, store, push and pull OCI container images",
    long_about = "berth keeps images in a local content-addressed store (an OCI image layout \
                  that skopeo and umoci read directly), moves them in and out as docker/OCI \
                  archives, and (as later releases land) builds, runs, pushes and serves them.",
    after_help = "Examples:\n  berth load -i busybox.tar\n  berth images\n  berth inspect busybox\n  berth save -o out.tar busybox:latest"
)]
struct Cli {
    /// Store root (an OCI image layout). Default: /var/lib/berth for root,
    /// $XDG_DATA_HOME/berth otherwise.
    #[arg(long, global = true, env = "BERTH_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List images in the local store
    #[command(
        after_help = "Examples:\n  berth images\n  berth images --format json\n  berth images -q"
    )]
    Images(commands::images::ImagesArgs),
    /// Give an image another name
    #[command(
        after_help = "Examples:\n  berth tag busybox:latest localhost:5000/tools/busybox:1.36"
    )]
    Tag(commands::images::TagArgs),
    /// Remove image tags, and the images no tag points at any more
    #[command(after_help = "Examples:\n  berth rmi busybox\n  berth rmi -f 3f57d9401f8d")]
    Rmi(commands::images::RmiArgs),
    /// Show an image's details as JSON (like `docker image inspect`)
    #[command(
        after_help = "Examples:\n  berth inspect busybox\n  berth inspect sha256:3f57d9401f8d"
    )]
    Inspect(commands::images::InspectArgs),
    /// Show the history of an image
    #[command(
        after_help = "Examples:\n  berth history busybox\n  berth history --no-trunc busybox"
    )]
    History(commands::images::HistoryArgs),
    /// Write images to a docker-archive or oci-archive tar
    #[command(
        after_help = "Examples:\n  berth save -o busybox.tar busybox\n  berth save --format oci -o busybox.oci.tar busybox:latest\n  berth save busybox | gzip > busybox.tar.gz"
    )]
    Save(commands::archive::SaveArgs),
    /// Load images from a docker-archive or oci-archive tar (optionally compressed)
    #[command(
        after_help = "Examples:\n  berth load -i busybox.tar\n  gunzip -c busybox.tar.gz | berth load"
    )]
    Load(commands::archive::LoadArgs),
    /// Remove untagged images, unreferenced blobs and abandoned writes
    #[command(after_help = "Examples:\n  berth prune")]
    Prune(commands::images::PruneArgs),
    /// Parse a Dockerfile to JSON, or run BuildKit's build checks on it
    #[command(
        after_help = "Examples:\n  berth dockerfile parse Dockerfile\n  berth dockerfile check Dockerfile"
    )]
    Dockerfile(commands::dockerfile::DockerfileArgs),
    /// Run a command in a new container
    #[command(
        after_help = "Examples:\n  berth run --rm busybox echo hello\n  berth run --rm -it busybox sh\n  berth run --rm --network none --memory 256m --pids-limit 100 busybox sh -c 'ip link'\n  berth run -d --name web -v /srv/www:/www:ro busybox httpd -f -h /www\n  berth run --rm --rootfs ./bundle/rootfs /bin/true\n\nExit status: the command's own; 125 when berth fails, 126 when the command\ncannot be executed, 127 when it is not found, 137 when it was killed (OOM)."
    )]
    Run(Box<commands::run::RunArgs>),
    /// List containers
    #[command(after_help = "Examples:\n  berth ps\n  berth ps -a\n  berth ps -aq")]
    Ps(commands::containers::PsArgs),
    /// Remove containers
    #[command(after_help = "Examples:\n  berth rm web\n  berth rm -f 3f57d9401f8d")]
    Rm(commands::containers::RmArgs),
    /// Show the output a container wrote (containers not run with --rm)
    #[command(after_help = "Examples:\n  berth logs web")]
    Logs(commands::containers::LogsArgs),
}

fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/berth");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("berth")
}

fn main() -> ExitCode {
    // A container's init is this binary re-executed: it must not start
    // tracing, parse arguments or anything else first.
    berth_runtime::init::main_if_init();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("BERTH_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let root = cli.root.unwrap_or_else(default_root);
    let result = match cli.command {
        Command::Run(a) => return commands::run::run(&root, *a),
        Command::Ps(a) => commands::containers::ps(&root, a),
        Command::Rm(a) => commands::containers::rm(&root, a),
        Command::Logs(a) => commands::containers::logs(&root, a),
        Command::Images(a) => commands::images::images(&root, a),
        Command::Tag(a) => commands::images::tag(&root, a),
        Command::Rmi(a) => commands::images::rmi(&root, a),
        Command::Inspect(a) => commands::images::inspect(&root, a),
        Command::History(a) => commands::images::history(&root, a),
        Command::Save(a) => commands::archive::save(&root, a),
        Command::Load(a) => commands::archive::load(&root, a),
        Command::Prune(a) => commands::images::prune(&root, a),
        Command::Dockerfile(a) => commands::dockerfile::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole cause chain joined by ": ".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("berth: {msg}");
            ExitCode::from(1)
        }
    }
}
