//! `berth pull|push|login|logout|manifest inspect|tags|copy`: moving images
//! between the local store and registries through `berth-registry-client`.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_oci::{Platform, Reference, Store};
use berth_registry_client::{
    Client, ClientOptions, Credential, CredentialStore, Event, Progress, PullOptions, PushOptions,
    Settings, SkipReason, block_on,
};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transport options every registry command shares (global flags).
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub insecure_registries: Vec<String>,
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args)]
pub struct PullArgs {
    /// Image to pull, e.g. busybox, ghcr.io/org/app:1.0, app@sha256:...
    reference: String,
    /// Platform to choose from a multi-platform image (os/arch[/variant])
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        conflicts_with = "all_platforms"
    )]
    platform: Option<String>,
    /// Pull every platform of a multi-platform image and keep the index
    #[arg(long)]
    all_platforms: bool,
    /// Print only the digest
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct PushArgs {
    /// Local image to push (its own name is the destination unless DEST is given)
    reference: String,
    /// Destination reference, e.g. registry.example.com/team/app:1.0
    destination: Option<String>,
    /// Push every local tag of the repository REFERENCE
    #[arg(long, conflicts_with = "destination")]
    all_tags: bool,
    /// Print only the digest
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub)
    registry: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// Password on the command line (prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub)
    registry: Option<String>,
}

#[derive(Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Print a remote manifest or index, raw, as the registry serves it
    Inspect {
        /// Image reference (tag or digest)
        reference: String,
    },
}

#[derive(Args)]
pub struct TagsArgs {
    /// Repository, e.g. localhost:5000/app
    repository: String,
}

#[derive(Args)]
pub struct CopyArgs {
    /// Source image reference
    source: String,
    /// Destination image reference
    destination: String,
    /// Print only the digest
    #[arg(short, long)]
    quiet: bool,
}

/// A client from the global flags plus berth's settings file (see
/// [`Settings`]: `insecure-registries`, `registry-endpoints`).
pub fn client(opts: &RemoteOptions, progress: Arc<dyn Progress>) -> anyhow::Result<Client> {
    let settings = Settings::load().context("reading berth's settings file")?;
    let mut insecure_registries = opts.insecure_registries.clone();
    insecure_registries.extend(settings.insecure_registries);
    let options = ClientOptions {
        insecure_registries,
        tls_ca: opts.tls_ca.iter().cloned().collect(),
        registry_endpoints: settings.registry_endpoints,
        progress,
        ..ClientOptions::default()
    };
    Ok(Client::new(options)?)
}

fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Ok(Platform::new(os, arch, Some(variant)))
        }
        _ => anyhow::bail!("invalid platform {s:?}: expected os/arch or os/arch/variant"),
    }
}

fn reference(s: &str) -> anyhow::Result<Reference> {
    Ok(Reference::parse(s)?)
}

pub fn pull(root: &Path, opts: &RemoteOptions, a: PullArgs) -> anyhow::Result<()> {
    let reference = reference(&a.reference)?;
    let options = PullOptions {
        platform: a.platform.as_deref().map(parse_platform).transpose()?,
        all_platforms: a.all_platforms,
    };
    let store = Store::open(root)?;
    let progress = Lines::new(a.quiet, "Downloading");
    let client = client(opts, progress.clone())?;
    let pulled = block_on(client.pull(&store, &reference, &options))??;
    progress.finish();
    if a.quiet {
        println!("{}", pulled.remote_digest);
    } else {
        println!("Digest: {}", pulled.remote_digest);
        println!("{reference}");
    }
    Ok(())
}

pub fn push(root: &Path, opts: &RemoteOptions, a: PushArgs) -> anyhow::Result<()> {
    let store = Store::open(root)?;
    let mut jobs = Vec::new();
    if a.all_tags {
        let repo = Reference::parse_name_only(&a.reference)?.repository();
        for entry in store.entries()? {
            if let Some(r) = entry.reference
                && r.repository() == repo
            {
                jobs.push((entry.descriptor, r));
            }
        }
        if jobs.is_empty() {
            anyhow::bail!("no local tags of {}", repo.familiar_name());
        }
    } else {
        let resolved = store.resolve(&a.reference)?;
        let destination = match &a.destination {
            Some(d) => reference(d)?,
            None => match resolved.reference {
                Some(r) => r,
                None => reference(&a.reference)?,
            },
        };
        jobs.push((resolved.descriptor, destination));
    }
    let progress = Lines::new(a.quiet, "Pushing");
    let client = client(opts, progress.clone())?;
    for (descriptor, destination) in jobs {
        let pushed =
            block_on(client.push(&store, &descriptor, &destination, &PushOptions::default()))??;
        progress.finish();
        if a.quiet {
            println!("{}", pushed.digest);
        } else {
            println!(
                "{destination}: digest: {} size: {}",
                pushed.digest, pushed.size
            );
        }
    }
    Ok(())
}

fn registry_or_hub(registry: Option<&str>) -> String {
    match registry {
        None => "docker.io".to_string(),
        Some(r) => {
            let r = r
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host = r.split('/').next().unwrap_or(r);
            match host {
                "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
                h => h.to_string(),
            }
        }
    }
}

pub fn login(opts: &RemoteOptions, a: LoginArgs) -> anyhow::Result<()> {
    let registry = registry_or_hub(a.registry.as_deref());
    let username = match a.username {
        Some(u) => u,
        None => anyhow::bail!("berth login needs --username (and --password-stdin)"),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        p
    } else {
        anyhow::bail!("berth login needs --password-stdin (or --password)");
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    let credential = Credential::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let client = client(opts, Arc::new(berth_registry_client::NoProgress))?;
    block_on(client.verify_login(&registry, &credential))??;
    let place = CredentialStore::from_env().store(&registry, &username, &password)?;
    eprintln!("Credentials saved in {place}");
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(_opts: &RemoteOptions, a: LogoutArgs) -> anyhow::Result<()> {
    let registry = registry_or_hub(a.registry.as_deref());
    if CredentialStore::from_env().erase(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}

pub fn manifest(opts: &RemoteOptions, a: ManifestArgs) -> anyhow::Result<()> {
    let ManifestCommand::Inspect { reference: r } = a.command;
    let reference = reference(&r)?;
    let client = client(opts, Arc::new(berth_registry_client::NoProgress))?;
    let manifest = block_on(async {
        let repo = client
            .repository(reference.domain(), reference.path())
            .await?;
        repo.get_manifest(&berth_registry_client::remote_reference(&reference))
            .await
    })??;
    // The bytes exactly as served, so that their digest can be checked.
    let mut out = io::stdout().lock();
    out.write_all(&manifest.bytes)?;
    out.flush()?;
    Ok(())
}

pub fn tags(opts: &RemoteOptions, a: TagsArgs) -> anyhow::Result<()> {
    let repo_ref = Reference::parse_name_only(&a.repository)?;
    if repo_ref.tag().is_some() || repo_ref.digest().is_some() {
        anyhow::bail!("berth tags takes a repository without tag or digest");
    }
    let client = client(opts, Arc::new(berth_registry_client::NoProgress))?;
    let tags = block_on(async {
        client
            .repository(repo_ref.domain(), repo_ref.path())
            .await?
            .list_tags()
            .await
    })??;
    let mut out = io::stdout().lock();
    for t in tags {
        writeln!(out, "{t}")?;
    }
    Ok(())
}

pub fn copy(opts: &RemoteOptions, a: CopyArgs) -> anyhow::Result<()> {
    let source = reference(&a.source)?;
    let destination = reference(&a.destination)?;
    let progress = Lines::new(a.quiet, "Copying");
    let client = client(opts, progress.clone())?;
    let copied = block_on(client.copy(&source, &destination))??;
    progress.finish();
    if a.quiet {
        println!("{}", copied.digest);
    } else {
        println!(
            "{destination}: digest: {} size: {}",
            copied.digest, copied.size
        );
    }
    Ok(())
}

/// Progress on stderr: on a terminal one indicatif bar per blob (bytes and
/// speed); otherwise one line per blob as it starts and ends. Nothing with
/// --quiet. Off a terminal retries are not shown, so that a failure leaves
/// exactly one line (the error) on stderr.
struct Lines {
    quiet: bool,
    tty: bool,
    verb: &'static str,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Lines {
    fn new(quiet: bool, verb: &'static str) -> Arc<Lines> {
        let tty = io::stderr().is_terminal();
        let target = if quiet || !tty {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Arc::new(Lines {
            quiet,
            tty,
            verb,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        })
    }

    fn finish(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.abandon();
            }
        }
    }

    fn line(&self, text: &str) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

fn human(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

impl Progress for Lines {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        match event {
            Event::Started {
                digest,
                size,
                offset,
            } => {
                if self.tty {
                    let bar = self.multi.add(ProgressBar::new(size));
                    let style = ProgressStyle::with_template(
                        "{prefix} {msg:11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    bar.set_style(style);
                    bar.set_prefix(digest.short().to_string());
                    bar.set_message(self.verb);
                    bar.set_position(offset);
                    if let Ok(mut bars) = self.bars.lock() {
                        bars.insert(digest.to_string(), bar);
                    }
                } else {
                    let resume = if offset > 0 {
                        format!(", resuming at {}", human(offset))
                    } else {
                        String::new()
                    };
                    self.line(&format!(
                        "{}: {} {}{resume}",
                        digest.short(),
                        self.verb,
                        human(size)
                    ));
                }
            }
            Event::Advanced { digest, done, .. } => {
                if let Ok(bars) = self.bars.lock()
                    && let Some(bar) = bars.get(&digest.to_string())
                {
                    bar.set_position(done);
                }
            }
            Event::Finished { digest, size } => {
                let bar = self
                    .bars
                    .lock()
                    .ok()
                    .and_then(|mut b| b.remove(&digest.to_string()));
                match bar {
                    Some(bar) => {
                        bar.set_message("done");
                        bar.finish();
                    }
                    None => self.line(&format!("{}: done {}", digest.short(), human(size))),
                }
            }
            Event::Skipped { digest, reason, .. } => {
                let why = match reason {
                    SkipReason::Present => "already in the store",
                    SkipReason::Exists => "already exists",
                    SkipReason::Mounted => "mounted",
                };
                self.line(&format!("{}: {why}", digest.short()));
            }
            Event::Retrying { .. } if !self.tty => {}
            Event::Retrying {
                what,
                attempt,
                error,
            } => {
                self.line(&format!("retrying {what} (attempt {attempt}): {error}"));
            }
            Event::Resolved { .. } | Event::ManifestStored { .. } => {}
        }
    }
}
