//! `berth build` and `berth builder prune`: Dockerfile builds through
//! `berth-builder`, with progress rendering and outputs.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_builder::build::{self, BuildRequest, CacheIndex, Event, Progress, Secret};
use berth_builder::dockerfile::NetworkMode;
use berth_oci::Reference;
use berth_oci::archive::{self, ArchiveFormat};
use berth_oci::layer::{self, ApplyOptions, Compression, CreateOptions, WhiteoutMode};
use berth_registry_client::{NoProgress, PushOptions};
use clap::{Args, Subcommand, ValueEnum};

use super::open_store;
use super::remote::RemoteOptions;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Tty,
    Plain,
    Quiet,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The build context: a directory, or "-" for a Dockerfile on stdin and no context
    context: PathBuf,
    /// Name the image (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; "-" reads stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build argument (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Build this stage and the stages it needs only
    #[arg(long)]
    target: Option<String>,
    /// Ignore the build cache
    #[arg(long)]
    no_cache: bool,
    /// Ignore the build cache for this stage (repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    no_cache_filter: Vec<String>,
    /// Pull base images even when they are in the local store
    #[arg(long)]
    pull: bool,
    /// Add a label to the image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Target platform (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR
    #[arg(long = "secret", value_name = "id=ID,src=PATH|env=VAR")]
    secrets: Vec<String>,
    /// Network for RUN steps: default, host or none
    #[arg(long)]
    network: Option<String>,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Export the result: type=oci|docker|tar|local,dest=PATH
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR | type=inline
    #[arg(long = "cache-to", value_name = "type=TYPE,...")]
    cache_to: Vec<String>,
    /// Import a build cache: type=registry,ref=REF | type=local,src=DIR (repeatable)
    #[arg(long = "cache-from", value_name = "type=TYPE,...")]
    cache_from: Vec<String>,
    /// Push the image to every -t name after building
    #[arg(long)]
    push: bool,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// "keep" keeps file times in new layers instead of clamping them to SOURCE_DATE_EPOCH (default 0)
    #[arg(long, value_name = "clamp|keep", default_value = "clamp")]
    timestamps: String,
    /// Suppress the build output and print the image ID
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Subcommand)]
enum BuilderCommand {
    /// Remove build cache entries (all of them without limits)
    #[command(
        after_help = "Examples:\n  berth builder prune\n  berth builder prune --keep-duration 24h --keep-storage 10GB"
    )]
    Prune {
        /// Keep entries used within this long (e.g. 24h, 30m, 7d)
        #[arg(long, value_name = "DURATION")]
        keep_duration: Option<String>,
        /// Keep at most this much layer data (e.g. 10GB, 512MB)
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
    },
}

/// Plain progress: one line per event, step output prefixed with the step
/// number, as BuildKit's `--progress plain`.
struct PlainProgress {
    out: Mutex<io::Stderr>,
    start: Instant,
    names: Mutex<BTreeMap<usize, (String, Instant)>>,
}

impl Progress for PlainProgress {
    fn event(&self, event: Event<'_>) {
        let Ok(mut out) = self.out.lock() else { return };
        let t = self.start.elapsed().as_secs_f64();
        match event {
            Event::Started { step, name } => {
                if let Ok(mut n) = self.names.lock() {
                    n.insert(step, (name.to_string(), Instant::now()));
                }
                let _ = writeln!(out, "#{step} {name}");
            }
            Event::Cached { step } => {
                let _ = writeln!(out, "#{step} CACHED");
            }
            Event::Output { step, data } => {
                // Seconds since the step started, as BuildKit prints them.
                let t = self
                    .names
                    .lock()
                    .ok()
                    .and_then(|n| n.get(&step).map(|(_, at)| at.elapsed().as_secs_f64()))
                    .unwrap_or(t);
                for line in String::from_utf8_lossy(data).lines() {
                    let _ = writeln!(out, "#{step} {t:.3} {line}");
                }
            }
            Event::Done { step, elapsed } => {
                let _ = writeln!(out, "#{step} DONE {:.1}s", elapsed.as_secs_f64());
            }
            Event::Failed { step, elapsed } => {
                let _ = writeln!(out, "#{step} ERROR {:.1}s", elapsed.as_secs_f64());
            }
            Event::Note { message } => {
                let _ = writeln!(out, "# {message}");
            }
        }
    }
}

/// The terminal view: a live line per step (indicatif) with its state and
/// time, the step's latest output line while it runs; `CACHED` for hits.
struct TtyProgress {
    bars: indicatif::MultiProgress,
    steps: Mutex<BTreeMap<usize, indicatif::ProgressBar>>,
}

impl TtyProgress {
    fn new() -> TtyProgress {
        TtyProgress {
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            steps: Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, step: usize) -> Option<indicatif::ProgressBar> {
        self.steps.lock().ok()?.get(&step).cloned()
    }
}

impl Progress for TtyProgress {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { step, name } => {
                let style = indicatif::ProgressStyle::with_template(
                    " {spinner} {prefix} {msg:.dim} {elapsed:>4}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
                let bar = self.bars.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style);
                let mut title = name.to_string();
                if title.len() > 70 {
                    title.truncate(char_boundary(&title, 67));
                    title.push_str("...");
                }
                bar.set_prefix(title);
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Ok(mut steps) = self.steps.lock() {
                    steps.insert(step, bar);
                }
            }
            Event::Cached { step } => {
                if let Some(b) = self.bar(step) {
                    b.set_message("CACHED");
                }
            }
            Event::Output { step, data } => {
                if let Some(b) = self.bar(step)
                    && let Some(line) = String::from_utf8_lossy(data)
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                {
                    let mut line = line.to_string();
                    if line.len() > 60 {
                        line.truncate(char_boundary(&line, 60));
                    }
                    b.set_message(line);
                }
            }
            Event::Done { step, elapsed } => {
                if let Some(b) = self.bar(step) {
                    let cached = b.message() == "CACHED";
                    b.set_style(
                        indicatif::ProgressStyle::with_template(" => {prefix} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.finish_with_message(if cached {
                        "CACHED".to_string()
                    } else {
                        format!("{:.1}s", elapsed.as_secs_f64())
                    });
                }
            }
            Event::Failed { step, elapsed } => {
                if let Some(b) = self.bar(step) {
                    b.set_style(
                        indicatif::ProgressStyle::with_template(" => {prefix} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.finish_with_message(format!("ERROR {:.1}s", elapsed.as_secs_f64()));
                }
            }
            Event::Note { message } => {
                let _ = self.bars.println(format!(" => {message}"));
            }
        }
    }
}

/// The largest char boundary of `s` at or below `at`.
fn char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => bail!("invalid duration unit {other:?} in {s:?} (use s, m, h or d)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let bytes = super::run::parse_bytes(s)?;
    u64::try_from(bytes).with_context(|| format!("invalid size {s:?}"))
}

fn parse_kv_list(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn read_secret(spec: &str) -> anyhow::Result<(String, Secret)> {
    let kv = parse_kv_list(spec);
    let id = kv
        .get("id")
        .cloned()
        .with_context(|| format!("--secret {spec:?}: id= is required"))?;
    if let Some(var) = kv.get("env") {
        let v = std::env::var(var).with_context(|| format!("--secret {id}: ${var} is not set"))?;
        return Ok((id, Secret(v.into_bytes())));
    }
    let src = kv
        .get("src")
        .or_else(|| kv.get("source"))
        .cloned()
        .unwrap_or_else(|| id.clone());
    if kv.get("type").map(String::as_str) == Some("env") {
        let v = std::env::var(&src).with_context(|| format!("--secret {id}: ${src} is not set"))?;
        return Ok((id, Secret(v.into_bytes())));
    }
    let bytes = fs::read(&src).with_context(|| format!("--secret {id}: reading {src}"))?;
    Ok((id, Secret(bytes)))
}

pub fn build(root: &Path, opts: &RemoteOptions, a: BuildArgs) -> anyhow::Result<()> {
    if a.push && a.tags.is_empty() {
        bail!("--push needs at least one -t NAME to push to");
    }
    let client = super::remote::client(opts, std::sync::Arc::new(NoProgress))?;
    let tags: Vec<Reference> = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}")))
        .collect::<anyhow::Result<_>>()?;
    let stdin_context = a.context.as_os_str() == "-";
    let (dockerfile_name, dockerfile_text, dockerfile_path) = match &a.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from standard input")?;
            ("Dockerfile".to_string(), s, None)
        }
        Some(f) => {
            let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            (f.display().to_string(), text, Some(f.clone()))
        }
        None if stdin_context => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from standard input")?;
            ("Dockerfile".to_string(), s, None)
        }
        None => {
            let f = a.context.join("Dockerfile");
            let text =
                fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            ("Dockerfile".to_string(), text, Some(f))
        }
    };
    let mut req = BuildRequest::new(&dockerfile_name, dockerfile_text);
    req.dockerfile_path = dockerfile_path.and_then(|p| fs::canonicalize(p).ok());
    req.context = (!stdin_context).then(|| a.context.clone());
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => {
                req.build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    req.build_args.insert(arg.clone(), v);
                }
            }
        }
    }
    req.target = a.target.clone();
    req.platform = a.platform.clone();
    req.no_cache = a.no_cache;
    req.no_cache_filter = a.no_cache_filter.clone();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        req.labels.insert(k.to_string(), v.to_string());
    }
    for s in &a.secrets {
        let (id, secret) = read_secret(s)?;
        req.secrets.insert(id, secret);
    }
    req.network = match a.network.as_deref() {
        None | Some("default") => None,
        Some("host") => Some(NetworkMode::Host),
        Some("none") => Some(NetworkMode::None),
        Some(other) => bail!("--network {other}: use default, host or none"),
    };
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        && !epoch.is_empty()
    {
        req.source_date_epoch = epoch
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is not a number"))?;
    }
    req.keep_timestamps = match a.timestamps.as_str() {
        "keep" => true,
        "clamp" => false,
        other => bail!("--timestamps {other}: use clamp or keep"),
    };
    req.compression = match a.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    };
    req.registry = Some(build::Registry {
        client: client.clone(),
        always_pull: a.pull,
    });
    for c in &a.cache_to {
        req.cache_to.push(build::remote_cache::CacheSpec::parse(c)?);
    }
    for c in &a.cache_from {
        req.cache_from
            .push(build::remote_cache::CacheSpec::parse(c)?);
    }
    // Pushed and not exported: layers a cache already holds in the
    // registry need not pass through this machine.
    req.lazy_layers = a.push && a.outputs.is_empty();
    let outputs: Vec<BTreeMap<String, String>> = a
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<_>>()?;

    let store = open_store(root)?;
    let mode = if a.quiet {
        ProgressMode::Quiet
    } else {
        a.progress
    };
    let mode = match mode {
        ProgressMode::Auto if io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        m => m,
    };
    let started = Instant::now();
    let plain = PlainProgress {
        out: Mutex::new(io::stderr()),
        start: started,
        names: Mutex::new(BTreeMap::new()),
    };
    let tty = TtyProgress::new();
    let progress: &dyn Progress = match mode {
        ProgressMode::Plain => &plain,
        ProgressMode::Tty => &tty,
        _ => &build::Quiet,
    };
    let outcome = match build::build(&store, &req, progress) {
        Ok(o) => o,
        Err(e) => {
            if let build::BuildError::Step { output, .. } = &e
                && !output.is_empty()
                && mode != ProgressMode::Quiet
            {
                eprintln!("------");
                for line in output {
                    eprintln!(" > {line}");
                }
                eprintln!("------");
            }
            return Err(e.into());
        }
    };
    let _guard = store.writer_guard()?;
    let complete = outcome.remote_layers.is_empty();
    if complete {
        if tags.is_empty() {
            store.add_untagged(&outcome.manifest)?;
        }
        for t in &tags {
            store.set_tag(t, &outcome.manifest)?;
        }
    }
    if let Some(f) = &a.iidfile {
        fs::write(f, outcome.image_id.to_string())
            .with_context(|| format!("writing {}", f.display()))?;
    }
    for out in &outputs {
        export(&store, &outcome, tags.first(), out)?;
    }
    if a.quiet {
        println!("{}", outcome.image_id);
    } else if mode != ProgressMode::Quiet {
        eprintln!(
            "writing image {} ({} steps, {} cached) in {:.2}s",
            outcome.image_id,
            outcome.steps,
            outcome.cached,
            started.elapsed().as_secs_f64()
        );
        if outcome.fetched_layers > 0 || !a.cache_from.is_empty() {
            eprintln!(
                "fetched {} cached layer(s), {} bytes",
                outcome.fetched_layers, outcome.fetched_bytes
            );
        }
        if complete {
            for t in &tags {
                eprintln!("naming to {t}");
            }
        } else {
            eprintln!(
                "not stored locally: {} layer(s) stay in the registry (pushed by mount)",
                outcome.remote_layers.len()
            );
        }
    }
    if a.push {
        for t in &tags {
            mount_remote_layers(&store, &client, t, &outcome.remote_layers)?;
            let pushed = berth_registry_client::block_on(client.push(
                &store,
                &outcome.manifest,
                t,
                &PushOptions::default(),
            ))?
            .with_context(|| format!("pushing {t}"))?;
            if mode != ProgressMode::Quiet {
                eprintln!(
                    "pushed {t}: digest: {} size: {}",
                    pushed.digest, pushed.size
                );
            }
        }
    }
    Ok(())
}

/// Makes the layers an imported cache holds available to `destination`'s
/// repository: mounted there when they live on the same registry, fetched
/// into the store otherwise.
fn mount_remote_layers(
    store: &berth_oci::Store,
    client: &berth_registry_client::Client,
    destination: &Reference,
    layers: &[(berth_oci::Descriptor, build::remote_cache::LayerSource)],
) -> anyhow::Result<()> {
    use build::remote_cache::LayerSource;
    for (layer, source) in layers {
        let mounted = match source {
            LayerSource::Registry {
                registry,
                repository,
            } if registry == destination.domain() => berth_registry_client::block_on(async {
                let repo = client
                    .repository(destination.domain(), destination.path())
                    .await?
                    .for_push()
                    .with_pull_from(repository);
                if repo.head_blob(&layer.digest).await?.is_some() {
                    return Ok(true);
                }
                Ok::<bool, berth_registry_client::Error>(matches!(
                    repo.mount_blob(&layer.digest, repository).await?,
                    berth_registry_client::MountOutcome::Mounted
                ))
            })??,
            _ => false,
        };
        if !mounted {
            build::remote_cache::fetch_layer(store, Some(client), source, layer)?;
        }
    }
    Ok(())
}

fn parse_output(spec: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut kv = parse_kv_list(spec);
    if !spec.contains('=') {
        // `-o DIR` means type=local,dest=DIR, as docker build takes it.
        kv.insert("type".into(), "local".into());
        kv.insert("dest".into(), spec.to_string());
    }
    match kv.get("type").map(String::as_str) {
        Some("oci" | "docker" | "tar" | "local") => {}
        Some("image" | "registry") => {
            bail!("--output type=image/registry is not available yet (needs the registry client)")
        }
        other => bail!("--output {spec:?}: unknown type {other:?} (use oci, docker, tar or local)"),
    }
    if !kv.contains_key("dest") {
        bail!("--output {spec:?}: dest= is required");
    }
    Ok(kv)
}

fn export(
    store: &berth_oci::Store,
    outcome: &build::BuildOutcome,
    tag: Option<&Reference>,
    out: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let dest = PathBuf::from(out.get("dest").map(String::as_str).unwrap_or("-"));
    let kind = out.get("type").map(String::as_str).unwrap_or("local");
    match kind {
        "oci" | "docker" => {
            let format = if kind == "oci" {
                ArchiveFormat::Oci
            } else {
                ArchiveFormat::Docker
            };
            let items = vec![(outcome.manifest.clone(), tag.cloned())];
            write_file_atomically(&dest, |w| Ok(archive::save(store, &items, format, w)?))
        }
        "local" => {
            fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
            let resolved = store.image(&outcome.manifest, &berth_oci::Platform::host())?;
            for l in &resolved.manifest.layers {
                let blob = store.open_blob(&l.digest)?;
                let opts = ApplyOptions {
                    whiteouts: WhiteoutMode::Delete,
                    ..ApplyOptions::default()
                };
                layer::apply_layer(io::BufReader::new(blob), &dest, &opts)
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            Ok(())
        }
        _ => {
            // type=tar: the final filesystem as one tar.
            let tmp = tempdir_beside(&dest)?;
            let result = (|| -> anyhow::Result<()> {
                let mut local = out.clone();
                local.insert("type".into(), "local".into());
                local.insert("dest".into(), tmp.display().to_string());
                export(store, outcome, tag, &local)?;
                let opts = CreateOptions {
                    compression: Compression::None,
                    ..CreateOptions::default()
                };
                write_file_atomically(&dest, |w| {
                    layer::write_dir_as_layer(&tmp, &opts, w)?;
                    Ok(())
                })
            })();
            let _ = fs::remove_dir_all(&tmp);
            result
        }
    }
}

fn tempdir_beside(dest: &Path) -> anyhow::Result<PathBuf> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let p = parent.join(format!(".berth-export-{}", std::process::id()));
    fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p)
}

fn write_file_atomically(
    dest: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.berth-tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn builder(root: &Path, a: BuilderArgs) -> anyhow::Result<()> {
    match a.command {
        BuilderCommand::Prune {
            keep_duration,
            keep_storage,
        } => {
            let cache = CacheIndex::open(root);
            let removed = if keep_duration.is_none() && keep_storage.is_none() {
                cache.clear()
            } else {
                let d = keep_duration.as_deref().map(parse_duration).transpose()?;
                let s = keep_storage.as_deref().map(parse_size).transpose()?;
                cache.prune(d, s)
            };
            let store = open_store(root)?;
            let (report, snapshots) = super::collect_garbage(&store, false)?;
            println!(
                "Deleted build cache entries: {removed}; blobs: {}; snapshots: {snapshots}",
                report.blobs_removed.len()
            );
            Ok(())
        }
    }
}
