//! `berth`: the command line. It parses arguments (clap), wires the library
//! crates together, renders output, and turns every error into one line on
//! stderr and an exit code.

// Built without transparent huge pages (`no_thp`): berth's processes are
// short or stream in small buffers, and a 2 MiB page zeroed on first touch
// costs them time and resident memory for a few KiB used.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    /// Talk plain HTTP (or HTTPS without verification) to this registry
    /// host[:port]; may be repeated. Also `insecure-registries` in berth's
    /// settings file ($BERTH_CONFIG, default ~/.config/berth/config.json)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,

    /// Trust this CA certificate (PEM) for registry TLS, besides the system's
    #[arg(long = "tls-ca", global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

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
    /// Build an image from a Dockerfile
    #[command(
        after_help = "Examples:\n  berth build -t app:1.0 .\n  berth build -f docker/Dockerfile --target runtime --build-arg VERSION=2 .\n  berth build --output type=oci,dest=app.tar ."
    )]
    Build(Box<commands::build::BuildArgs>),
    /// Manage the build cache
    #[command(after_help = "Examples:\n  berth builder prune --keep-duration 24h")]
    Builder(commands::build::BuilderArgs),
    /// Pull an image from a registry
    #[command(
        after_help = "Examples:\n  berth pull busybox\n  berth pull --platform linux/arm64 ghcr.io/org/app:1.0\n  berth pull --insecure-registry localhost:5000 localhost:5000/tools/app"
    )]
    Pull(commands::remote::PullArgs),
    /// Push an image to a registry
    #[command(
        after_help = "Examples:\n  berth push localhost:5000/app:1.0\n  berth push app:1.0 registry.example.com/team/app:1.0"
    )]
    Push(commands::remote::PushArgs),
    /// Log in to a registry
    #[command(
        after_help = "Examples:\n  echo \"$TOKEN\" | berth login -u ci --password-stdin registry.example.com"
    )]
    Login(commands::remote::LoginArgs),
    /// Log out of a registry
    #[command(after_help = "Examples:\n  berth logout registry.example.com")]
    Logout(commands::remote::LogoutArgs),
    /// Show a remote manifest
    #[command(after_help = "Examples:\n  berth manifest inspect busybox:latest")]
    Manifest(commands::remote::ManifestArgs),
    /// List a remote repository's tags
    #[command(after_help = "Examples:\n  berth tags localhost:5000/app")]
    Tags(commands::remote::TagsArgs),
    /// Copy an image from one registry to another
    #[command(
        after_help = "Examples:\n  berth copy docker.io/library/busybox:latest localhost:5000/mirror/busybox:latest"
    )]
    Copy(commands::remote::CopyArgs),
    /// Run or collect garbage of an OCI registry
    #[command(
        after_help = "Examples:\n  berth registry serve --addr 127.0.0.1:5000\n  berth registry gc --dry-run"
    )]
    Registry(commands::registry::RegistryArgs),
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
    // `berth registry` serves its own storage: a --root given there is the
    // registry's storage root, not the image store.
    // Absolute, so that paths derived from it stay valid in containers and
    // after a change of directory.
    let absolute = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        }
    };
    let cli_root = cli.root.map(absolute);
    let registry_root = cli_root.clone();
    let root = cli_root.unwrap_or_else(default_root);
    let remote = commands::remote::RemoteOptions {
        insecure_registries: cli.insecure_registry,
        tls_ca: cli.tls_ca,
    };
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
        Command::Build(a) => commands::build::build(&root, &remote, *a),
        Command::Builder(a) => commands::build::builder(&root, a),
        Command::Pull(a) => commands::remote::pull(&root, &remote, a),
        Command::Push(a) => commands::remote::push(&root, &remote, a),
        Command::Login(a) => commands::remote::login(&remote, a),
        Command::Logout(a) => commands::remote::logout(&remote, a),
        Command::Manifest(a) => commands::remote::manifest(&remote, a),
        Command::Tags(a) => commands::remote::tags(&remote, a),
        Command::Copy(a) => commands::remote::copy(&remote, a),
        Command::Registry(a) => commands::registry::run(registry_root.as_deref(), a),
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
