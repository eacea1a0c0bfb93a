//! The build engine: a Dockerfile and a context in, an image in the local
//! store out, with BuildKit's semantics.
//!
//! Stages form a DAG ([`StageGraph`]); stages whose dependencies are done
//! run in parallel threads, and a stage `--target` does not need is never
//! built. Within a stage, each instruction is expanded with the stage's
//! variables and gets a cache key: the key of the step before it, the
//! normalised instruction, the environment it sees, and content digests of
//! its inputs (never mtimes or host paths). Metadata instructions change
//! only the image config. RUN, COPY, ADD and WORKDIR look their key up in
//! the [`cache::CacheIndex`]; on a miss they run on an overlay snapshot of
//! the layers so far, and the upper directory becomes the step's layer.
//! Snapshots are only unpacked when a step that missed needs the files, so
//! a fully cached build touches no filesystem but the store's small files.
//!
//! Output is reproducible by default: layer mtimes are clamped to
//! `SOURCE_DATE_EPOCH` (0 unless given), the config's `created` and history
//! times are that epoch, and nothing host-specific goes into the config.

pub mod cache;
pub mod context;
pub mod copy;
pub mod fetch;
pub mod progress;
pub mod remote_cache;
pub mod rootfs;
pub mod run;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use berth_oci::image::Image;
use berth_oci::layer::{Compression, CreateOptions};
use berth_oci::manifest::{ContainerConfig, HealthConfig, History, RootFs};
use berth_oci::media_types;
use berth_oci::snapshot::{Active, SnapshotError, SnapshotMode, Snapshotter};
use berth_oci::store::FileLock;
use berth_oci::{Descriptor, Digest, ImageConfig, ImageManifest, Store, StoreError};
use berth_runtime::spec::{Mount, Network};
use serde_json::{Map, Value};

use crate::dockerfile::stages::{Base, BuildOptions, Platform, StageGraph, StageScope, Vars};
use crate::dockerfile::{
    self, Chmod, Command, CommandLine, Dockerfile, DockerfileError, Healthcheck, Instruction,
    MountType, NetworkMode, SecurityMode, Source,
};

pub use cache::CacheIndex;
pub use context::Context;
pub use progress::{Event, Progress, Quiet};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store")]
    Store(#[from] StoreError),
    #[error("snapshot")]
    Snapshot(#[from] SnapshotError),
    #[error("context: {0}")]
    Context(String),
    #[error("copy: {0}")]
    Copy(String),
    #[error("run: {0}")]
    Run(String),
    /// A step failed: where, and why.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
        /// The last lines the step printed.
        output: Vec<String>,
    },
    #[error("base image {0} is not in the local store")]
    MissingImage(String),
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    pub fn io(path: &Path, source: io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How the build reaches registries for base images missing locally (and
/// for all of them with `pull`).
#[derive(Clone)]
pub struct Registry {
    pub client: berth_registry_client::Client,
    /// Pull every base image even when it is in the store (`--pull`).
    pub always_pull: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("always_pull", &self.always_pull)
            .finish()
    }
}

/// A secret given with `--secret`: its bytes never reach a layer, the
/// cache key or the image config.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The name errors are reported under (`Dockerfile`, `app/Dockerfile`).
    pub dockerfile_name: String,
    pub dockerfile: String,
    /// Where the Dockerfile lives, for `<Dockerfile>.dockerignore`.
    pub dockerfile_path: Option<PathBuf>,
    /// None: no context (a Dockerfile from stdin).
    pub context: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `os/arch[/variant]`; the host's when None.
    pub platform: Option<String>,
    pub no_cache: bool,
    /// Stages (by name) whose steps ignore the cache.
    pub no_cache_filter: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    /// `--network` for every RUN (a RUN's own `--network` wins).
    pub network: Option<NetworkMode>,
    /// Seconds since the epoch for layer mtimes and `created`.
    pub source_date_epoch: i64,
    /// Keep file times in new layers (`--timestamps=keep`).
    pub keep_timestamps: bool,
    pub compression: Compression,
    /// None: base images must be in the local store.
    pub registry: Option<Registry>,
    /// `--cache-to`: where to export the build cache.
    pub cache_to: Vec<remote_cache::CacheSpec>,
    /// `--cache-from`: caches to import (only their indexes are read first).
    pub cache_from: Vec<remote_cache::CacheSpec>,
    /// Leave layers found in an imported cache where they are when only the
    /// final image needs them (it is pushed, and the registry mounts them).
    pub lazy_layers: bool,
}

impl BuildRequest {
    pub fn new(dockerfile_name: &str, dockerfile: String) -> BuildRequest {
        BuildRequest {
            dockerfile_name: dockerfile_name.to_string(),
            dockerfile,
            dockerfile_path: None,
            context: None,
            build_args: BTreeMap::new(),
            target: None,
            platform: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            labels: BTreeMap::new(),
            secrets: BTreeMap::new(),
            network: None,
            source_date_epoch: 0,
            keep_timestamps: false,
            compression: Compression::Gzip,
            registry: None,
            cache_to: Vec::new(),
            cache_from: Vec::new(),
            lazy_layers: false,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image manifest, stored (not tagged: the caller tags it).
    pub manifest: Descriptor,
    pub config: ImageConfig,
    /// Docker's image ID: the config digest.
    pub image_id: Digest,
    pub steps: usize,
    pub cached: usize,
    /// Layers fetched from imported caches, and their bytes.
    pub fetched_layers: usize,
    pub fetched_bytes: u64,
    /// Layers of the image that are not in the store (with `lazy_layers`):
    /// where each can be mounted or fetched from.
    pub remote_layers: Vec<(Descriptor, remote_cache::LayerSource)>,
}

/// A finished stage: what a later stage builds on or copies from.
#[derive(Debug, Clone)]
struct StageResult {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: Digest,
    scope: StageScope,
}

/// What every stage thread shares.
struct Shared<'a> {
    store: &'a Store,
    snaps: Snapshotter,
    cache: CacheIndex,
    req: &'a BuildRequest,
    df: &'a Dockerfile<'a>,
    graph: &'a StageGraph,
    opts: BuildOptions,
    ctx: &'a Context,
    progress: &'a dyn Progress,
    next_step: AtomicUsize,
    cached: AtomicUsize,
    results: Mutex<Vec<Option<Arc<StageResult>>>>,
    work: PathBuf,
    imported: remote_cache::Imported,
    /// Layer digest → index of the imported cache it can be fetched from.
    layer_sources: Mutex<HashMap<Digest, usize>>,
    /// Every layer step's result, by stage, for `--cache-to`.
    records: Mutex<Vec<(usize, remote_cache::ExportEntry)>>,
    fetched_layers: AtomicUsize,
    fetched_bytes: AtomicU64,
}

fn sha256_key(parts: &[&str]) -> Digest {
    let mut text = String::new();
    for p in parts {
        text.push_str(p);
        text.push('\n');
    }
    Digest::sha256_of(text.as_bytes())
}

fn epoch_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Builds the Dockerfile; the image is in the store when this returns Ok.
pub fn build(
    store: &Store,
    req: &BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildOutcome, BuildError> {
    let df = dockerfile::parse(&req.dockerfile, &req.dockerfile_name)?;
    let target_platform = match &req.platform {
        Some(p) => Platform::parse(p).map_err(BuildError::Invalid)?,
        None => Platform::host(),
    };
    let opts = BuildOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        target_platform,
        build_platform: Platform::host(),
    };
    let graph = StageGraph::new(&df, &opts)?;
    let cache_dir = store.root().join("buildcache");
    let ctx = match &req.context {
        Some(dir) => Context::open(
            dir,
            req.dockerfile_path.as_deref(),
            &cache_dir.join("context"),
        )?,
        None => Context::empty(),
    };
    let work = cache_dir.join("work").join(format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    // Blobs written from here on must survive a concurrent `berth prune`.
    let _guard = store.writer_guard()?;
    let client = req.registry.as_ref().map(|r| &r.client);
    let imported = remote_cache::import(store, client, &req.cache_from)?;
    for w in &imported.warnings {
        progress.event(Event::Note {
            message: &format!("WARNING: {w}"),
        });
    }
    if !req.cache_from.is_empty() {
        progress.event(Event::Note {
            message: &format!(
                "imported build cache: {} entries from {} source(s)",
                imported.entries.len(),
                imported.sources.len()
            ),
        });
    }
    let shared = Shared {
        store,
        snaps: Snapshotter::new(store),
        cache: CacheIndex::open(store.root()),
        req,
        df: &df,
        graph: &graph,
        opts,
        ctx: &ctx,
        progress,
        next_step: AtomicUsize::new(1),
        cached: AtomicUsize::new(0),
        results: Mutex::new(vec![None; graph.stages.len()]),
        work: work.clone(),
        imported,
        layer_sources: Mutex::new(HashMap::new()),
        records: Mutex::new(Vec::new()),
        fetched_layers: AtomicUsize::new(0),
        fetched_bytes: AtomicU64::new(0),
    };
    let result = run_stages(&shared);
    let _ = fs::remove_dir_all(&work);
    ctx.save_hash_cache();
    let target = result?;
    let outcome = write_image(&shared, &target)?;
    export_caches(&shared)?;
    Ok(BuildOutcome {
        fetched_layers: shared.fetched_layers.load(Ordering::SeqCst),
        fetched_bytes: shared.fetched_bytes.load(Ordering::SeqCst),
        ..outcome
    })
}

/// Runs the stages the target needs, each as soon as its dependencies are
/// done, at most as many at once as there are cores.
fn run_stages(shared: &Shared) -> Result<Arc<StageResult>, BuildError> {
    let order = shared.graph.build_order();
    let limit = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut done: Vec<bool> = vec![false; shared.graph.stages.len()];
    let mut started: Vec<bool> = done.clone();
    let mut first_error: Option<BuildError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<StageResult, BuildError>)>();
        let mut running = 0usize;
        loop {
            if first_error.is_none() {
                for &s in &order {
                    if running >= limit {
                        break;
                    }
                    if started[s] {
                        continue;
                    }
                    let ready = shared.graph.stages[s]
                        .dependencies
                        .iter()
                        .all(|d| done[d.stage]);
                    if ready {
                        started[s] = true;
                        running += 1;
                        let tx = tx.clone();
                        scope.spawn(move || {
                            let r = build_stage(shared, s);
                            let _ = tx.send((s, r));
                        });
                    }
                }
            }
            if running == 0 {
                break;
            }
            let Ok((s, r)) = rx.recv() else { break };
            running -= 1;
            match r {
                Ok(res) => {
                    if let Ok(mut results) = shared.results.lock() {
                        results[s] = Some(Arc::new(res));
                    }
                    done[s] = true;
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    let target = shared.graph.target;
    shared
        .results
        .lock()
        .ok()
        .and_then(|r| r[target].clone())
        .ok_or_else(|| BuildError::Invalid("the target stage was not built".to_string()))
}

fn stage_result(shared: &Shared, index: usize) -> Result<Arc<StageResult>, BuildError> {
    shared
        .results
        .lock()
        .ok()
        .and_then(|r| r[index].clone())
        .ok_or_else(|| BuildError::Invalid(format!("stage {index} is not built")))
}

/// The running state of one stage.
struct StageState {
    /// The stage's index in the graph.
    index: usize,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: Digest,
    scope: StageScope,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
    no_cache: bool,
    name: String,
    total: usize,
    done: usize,
}

fn env_vars(config: &ImageConfig) -> Vars {
    let mut vars = Vars::new();
    if let Some(env) = config.config.as_ref().and_then(|c| c.env.as_ref()) {
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                vars.set(k, v);
            }
        }
    }
    vars
}

fn empty_config(platform: &Platform) -> ImageConfig {
    ImageConfig {
        created: None,
        author: None,
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        os_version: None,
        os_features: None,
        variant: (!platform.variant.is_empty()).then(|| platform.variant.clone()),
        config: Some(ContainerConfig {
            env: Some(vec![format!("PATH={}", berth_runtime::spec::DEFAULT_PATH)]),
            ..ContainerConfig::default()
        }),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        },
        history: Vec::new(),
        extra: Map::new(),
    }
}

/// An image from the local store, for `platform` (`FROM --platform`) or
/// the build's target platform.
fn local_image(shared: &Shared, name: &str, platform: Option<&str>) -> Result<Image, BuildError> {
    let wanted = match platform {
        Some(p) => Platform::parse(p).map_err(BuildError::Invalid)?,
        None => shared.opts.target_platform.clone(),
    };
    let platform = berth_oci::Platform::new(
        &wanted.os,
        &wanted.architecture,
        (!wanted.variant.is_empty()).then_some(wanted.variant.as_str()),
    );
    let local = shared
        .store
        .resolve(name)
        .ok()
        .and_then(|r| shared.store.image(&r.descriptor, &platform).ok());
    let registry = shared.req.registry.as_ref();
    match (local, registry) {
        (Some(image), r) if !r.is_some_and(|r| r.always_pull) => Ok(image),
        (_, Some(registry)) => {
            let reference = berth_oci::Reference::parse(name)
                .map_err(|e| BuildError::Invalid(format!("base image {name}: {e}")))?;
            let options = berth_registry_client::PullOptions {
                platform: Some(platform.clone()),
                all_platforms: false,
            };
            let pulled = berth_registry_client::block_on(registry.client.pull(
                shared.store,
                &reference,
                &options,
            ))
            .and_then(|r| r)
            .map_err(|e| BuildError::Pull {
                image: name.to_string(),
                message: anyhow_chain(&e),
            })?;
            Ok(shared.store.image(&pulled.descriptor, &platform)?)
        }
        (_, None) => Err(BuildError::MissingImage(name.to_string())),
    }
}

fn build_stage(shared: &Shared, index: usize) -> Result<StageResult, BuildError> {
    let stage = &shared.graph.stages[index];
    let df = shared.df;
    let from_instr = &df.instructions[stage.from_instruction];
    let name = stage.display_name();
    let total = stage.instructions.len() + 1;
    let step = shared.next_step.fetch_add(1, Ordering::SeqCst);
    // The base as resolved (ARGs expanded), as BuildKit titles it.
    let base_text = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(i) => shared.graph.stages[*i].display_name(),
        Base::Image(image) => image.clone(),
    };
    let from_text = match &stage.name {
        Some(n) => format!("[{name} 1/{total}] FROM {base_text} AS {n}"),
        None => format!("[{name} 1/{total}] FROM {base_text}"),
    };
    shared.progress.event(Event::Started {
        step,
        name: &from_text,
    });
    let started = Instant::now();
    let mut state = match &stage.base {
        Base::Scratch => StageState {
            index,
            config: empty_config(&shared.opts.target_platform),
            layers: Vec::new(),
            key: sha256_key(&["scratch", &shared.opts.target_platform.architecture]),
            scope: StageScope::new(shared.graph, &shared.opts, df.escape, Vars::new()),
            cmd_set: false,
            no_cache: false,
            name: name.clone(),
            total,
            done: 1,
        },
        Base::Stage(i) => {
            let base = stage_result(shared, *i)?;
            StageState {
                index,
                config: base.config.clone(),
                layers: base.layers.clone(),
                key: base.key.clone(),
                scope: base.scope.clone(),
                cmd_set: false,
                no_cache: false,
                name: name.clone(),
                total,
                done: 1,
            }
        }
        Base::Image(image_name) => {
            let image = local_image(shared, image_name, stage.platform.as_deref())
                .map_err(|e| step_error(df, from_instr, e))?;
            let env = env_vars(&image.config);
            StageState {
                index,
                key: sha256_key(&["image", &image.id().to_string()]),
                config: image.config,
                layers: image.manifest.layers,
                scope: StageScope::new(shared.graph, &shared.opts, df.escape, env),
                cmd_set: false,
                no_cache: false,
                name: name.clone(),
                total,
                done: 1,
            }
        }
    };
    state.no_cache = shared.req.no_cache
        || stage.name.as_ref().is_some_and(|n| {
            shared
                .req
                .no_cache_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(n))
        });
    shared.progress.event(Event::Done {
        step,
        elapsed: started.elapsed(),
    });
    // ONBUILD triggers of the base run first, then are dropped.
    let triggers: Vec<String> = state
        .config
        .config
        .as_mut()
        .and_then(|c| c.on_build.take())
        .unwrap_or_default();
    for trigger in triggers {
        // A trigger is one instruction without its FROM: give it one to parse.
        let text = format!("FROM scratch\n{trigger}\n");
        let parsed = dockerfile::parse(&text, &format!("{} (ONBUILD)", df.file))?;
        for instr in parsed.instructions.iter().skip(1) {
            state.total += 1;
            run_instruction(shared, &parsed, instr, &mut state)?;
        }
    }
    for &i in &stage.instructions {
        let instr = &df.instructions[i];
        run_instruction(shared, df, instr, &mut state)?;
    }
    Ok(StageResult {
        config: state.config,
        layers: state.layers,
        key: state.key,
        scope: state.scope,
    })
}

fn step_error(df: &Dockerfile, instr: &Instruction, e: BuildError) -> BuildError {
    match e {
        BuildError::Step { .. } | BuildError::Dockerfile(_) => e,
        other => BuildError::Step {
            file: df.file.clone(),
            line: instr.start.line,
            instruction: instr.keyword.upper(),
            message: format!("{:#}", anyhow_chain(&other)),
            output: Vec::new(),
        },
    }
}

/// The error and its sources, joined like anyhow's `{:#}`.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn container_config(config: &mut ImageConfig) -> &mut ContainerConfig {
    config.config.get_or_insert_with(ContainerConfig::default)
}

fn set_env(config: &mut ImageConfig, key: &str, value: &str) {
    let cc = container_config(config);
    let env = cc.env.get_or_insert_with(Vec::new);
    let prefix = format!("{key}=");
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

fn command_args(config: &ImageConfig, cmd: &CommandLine) -> Vec<String> {
    match cmd {
        CommandLine::Exec(args) => args.iter().map(|a| a.to_string()).collect(),
        CommandLine::Shell(line) => {
            let mut v = shell_of(config);
            v.push(line.to_string());
            v
        }
    }
}

fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// `path.Join(workdir, p)` for relative paths, like BuildKit.
fn resolve_workdir(current: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", if current.is_empty() { "/" } else { current })
    };
    let cleaned = copy::clean_source(&joined);
    format!("/{cleaned}")
}

fn workdir_of(config: &ImageConfig) -> String {
    config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

fn push_history(shared: &Shared, state: &mut StageState, created_by: String, empty: bool) {
    state.config.history.push(History {
        created: Some(epoch_rfc3339(shared.req.source_date_epoch)),
        created_by: Some(created_by),
        author: None,
        comment: Some("buildkit.dockerfile.v0".to_string()),
        empty_layer: empty.then_some(true),
        extra: Map::new(),
    });
}

fn run_instruction(
    shared: &Shared,
    df: &Dockerfile,
    raw: &Instruction,
    state: &mut StageState,
) -> Result<(), BuildError> {
    let instr = state.scope.apply(df, raw)?;
    state.done += 1;
    let step = shared.next_step.fetch_add(1, Ordering::SeqCst);
    let title = format!(
        "[{} {}/{}] {}",
        state.name, state.done, state.total, raw.original
    );
    shared.progress.event(Event::Started { step, name: &title });
    let started = Instant::now();
    let result = dispatch(shared, df, &instr, state, step);
    match result {
        Ok(cached) => {
            if cached {
                shared.cached.fetch_add(1, Ordering::SeqCst);
                shared.progress.event(Event::Cached { step });
            }
            shared.progress.event(Event::Done {
                step,
                elapsed: started.elapsed(),
            });
            Ok(())
        }
        Err(e) => {
            shared.progress.event(Event::Failed {
                step,
                elapsed: started.elapsed(),
            });
            Err(step_error(df, raw, e))
        }
    }
}

/// Applies one expanded instruction; Ok(true) when it came from the cache.
fn dispatch(
    shared: &Shared,
    df: &Dockerfile,
    instr: &Instruction,
    state: &mut StageState,
    step: usize,
) -> Result<bool, BuildError> {
    let original = instr.original.to_string();
    let meta = |state: &mut StageState, created_by: String| {
        state.key = sha256_key(&[&state.key.to_string(), &created_by]);
        push_history(shared, state, created_by, true);
    };
    match &instr.command {
        Command::From(_) => Err(BuildError::Invalid("FROM inside a stage".to_string())),
        Command::Env(pairs) => {
            let mut text = Vec::new();
            for p in pairs {
                set_env(&mut state.config, &p.key, &p.value);
                text.push(format!("{}={}", p.key, p.value));
            }
            meta(state, format!("ENV {}", text.join(" ")));
            Ok(false)
        }
        Command::Label(pairs) => {
            let mut text = Vec::new();
            let cc = container_config(&mut state.config);
            let labels = cc.labels.get_or_insert_with(BTreeMap::new);
            for p in pairs {
                labels.insert(p.key.to_string(), p.value.to_string());
                text.push(format!("{}={}", p.key, p.value));
            }
            meta(state, format!("LABEL {}", text.join(" ")));
            Ok(false)
        }
        Command::Maintainer(m) => {
            state.config.author = Some(m.to_string());
            meta(state, format!("MAINTAINER {m}"));
            Ok(false)
        }
        Command::Expose(ports) => {
            let cc = container_config(&mut state.config);
            let exposed = cc.exposed_ports.get_or_insert_with(BTreeMap::new);
            let mut names = Vec::new();
            for p in ports {
                let p = p.to_string();
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                exposed.insert(p.clone(), Value::Object(Map::new()));
                names.push(format!("{p}:{{}}"));
            }
            meta(state, format!("EXPOSE map[{}]", names.join(" ")));
            Ok(false)
        }
        Command::User(u) => {
            container_config(&mut state.config).user = Some(u.to_string());
            meta(state, format!("USER {u}"));
            Ok(false)
        }
        Command::Cmd(cmd) => {
            let args = command_args(&state.config, cmd);
            container_config(&mut state.config).cmd = Some(args.clone());
            state.cmd_set = true;
            meta(state, format!("CMD {}", go_list(&args)));
            Ok(false)
        }
        Command::Entrypoint(cmd) => {
            let args = command_args(&state.config, cmd);
            let cmd_set = state.cmd_set;
            let cc = container_config(&mut state.config);
            cc.entrypoint = Some(args.clone());
            if !cmd_set {
                cc.cmd = None;
            }
            meta(state, format!("ENTRYPOINT {}", go_list(&args)));
            Ok(false)
        }
        Command::Shell(args) => {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            container_config(&mut state.config).shell = Some(args.clone());
            meta(state, format!("SHELL {}", go_list(&args)));
            Ok(false)
        }
        Command::Volume { paths, .. } => {
            let cc = container_config(&mut state.config);
            let vols = cc.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                vols.insert(p.to_string(), Value::Object(Map::new()));
            }
            let list: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            meta(state, format!("VOLUME [{}]", list.join(" ")));
            Ok(false)
        }
        Command::StopSignal(s) => {
            container_config(&mut state.config).stop_signal = Some(s.to_string());
            meta(state, format!("STOPSIGNAL {s}"));
            Ok(false)
        }
        Command::Arg(decls) => {
            // The key records the names only: a value changes keys only
            // where a later step sees it (RUN's environment, expanded words).
            let names: Vec<&str> = decls.iter().map(|d| d.name.as_ref()).collect();
            let text: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.to_string(),
                })
                .collect();
            state.key = sha256_key(&[&state.key.to_string(), &format!("ARG {}", names.join(" "))]);
            push_history(shared, state, format!("ARG {}", text.join(" ")), true);
            Ok(false)
        }
        Command::Onbuild(inner) => {
            let text = inner.original.to_string();
            container_config(&mut state.config)
                .on_build
                .get_or_insert_with(Vec::new)
                .push(text.clone());
            meta(state, format!("ONBUILD {text}"));
            Ok(false)
        }
        Command::Healthcheck(h) => {
            let health = match h {
                Healthcheck::None => HealthConfig {
                    test: Some(vec!["NONE".to_string()]),
                    ..HealthConfig::default()
                },
                Healthcheck::Check {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let test = match command {
                        CommandLine::Exec(a) => {
                            let mut v = vec!["CMD".to_string()];
                            v.extend(a.iter().map(|x| x.to_string()));
                            v
                        }
                        CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.to_string()],
                    };
                    let ns = |d: &Option<std::time::Duration>| {
                        d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    };
                    HealthConfig {
                        test: Some(test),
                        interval: ns(interval),
                        timeout: ns(timeout),
                        start_period: ns(start_period),
                        start_interval: ns(start_interval),
                        retries: retries.map(i64::from),
                        ..HealthConfig::default()
                    }
                }
            };
            let text = format!("HEALTHCHECK {:?}", health.test.clone().unwrap_or_default());
            container_config(&mut state.config).healthcheck = Some(health);
            meta(state, text);
            Ok(false)
        }
        Command::Workdir(w) => {
            let dir = resolve_workdir(&workdir_of(&state.config), w);
            container_config(&mut state.config).working_dir = Some(dir.clone());
            let created_by = format!("WORKDIR {dir}");
            let key = sha256_key(&[&state.key.to_string(), &created_by]);
            layer_step(
                shared,
                state,
                key,
                created_by,
                step,
                |_shared, state, work| {
                    let root = work.mount_host()?;
                    if !rootfs::exists_in_root(&root, &dir) {
                        // Made as the current USER, as BuildKit does.
                        let user = state
                            .config
                            .config
                            .as_ref()
                            .and_then(|c| c.user.clone())
                            .unwrap_or_default();
                        let owner = if user.is_empty() || user == "root" || user == "0" {
                            None
                        } else {
                            Some(
                                rootfs::lookup_owner(&root, &user)
                                    .map_err(|e| BuildError::Copy(e.to_string()))?,
                            )
                        };
                        let sel = copy::Selection {
                            needs_dir: true,
                            ..copy::Selection::default()
                        };
                        copy::write_into(
                            &root,
                            &sel,
                            &copy::Placement {
                                owner,
                                ..copy::Placement::at(format!("{dir}/"))
                            },
                        )?;
                    }
                    Ok(())
                },
            )
        }
        Command::Copy(c) => {
            let sources: Vec<String> = c
                .sources
                .iter()
                .filter_map(|s| match s {
                    Source::Path(p) => Some(p.to_string()),
                    Source::Heredoc(_) => None,
                })
                .collect();
            let heredocs = heredoc_sources(instr, &c.sources);
            let spec = CopySpec {
                sources,
                heredocs,
                dest: c.dest.to_string(),
                from: c.from.as_ref().map(|f| f.to_string()),
                chown: c.chown.as_ref().map(|f| f.to_string()),
                chmod: c.chmod.clone().map(|m| m.into_owned()),
                link: c.link,
                parents: c.parents,
                exclude: c.exclude.iter().map(|e| e.to_string()).collect(),
                add: false,
                downloads: Vec::new(),
            };
            copy_step(shared, state, &original, spec, step)
        }
        Command::Add(a) => {
            let mut sources = Vec::new();
            let mut downloads = Vec::new();
            for s in &a.sources {
                if let Source::Path(p) = s {
                    if p.starts_with("git@") || p.ends_with(".git") {
                        return Err(BuildError::Invalid(format!(
                            "ADD of git repository {p} is not supported yet"
                        )));
                    }
                    if p.starts_with("http://") || p.starts_with("https://") {
                        // Fetched now: its content is part of the step's key.
                        let name = fetch::file_name(p);
                        let file = shared
                            .work
                            .join(format!("download-{step}-{}", downloads.len()));
                        let digest = fetch::download(p, &file, a.checksum.as_deref())?;
                        downloads.push((name, file, digest));
                        continue;
                    }
                    if a.checksum.is_some() {
                        return Err(BuildError::Invalid(
                            "--checksum applies to http(s) sources only".to_string(),
                        ));
                    }
                    sources.push(p.to_string());
                }
            }
            let heredocs = heredoc_sources(instr, &a.sources);
            let spec = CopySpec {
                sources,
                heredocs,
                dest: a.dest.to_string(),
                from: None,
                chown: a.chown.as_ref().map(|f| f.to_string()),
                chmod: a.chmod.clone().map(|m| m.into_owned()),
                link: a.link,
                parents: false,
                exclude: a.exclude.iter().map(|e| e.to_string()).collect(),
                add: a.unpack != Some(false),
                downloads,
            };
            copy_step(shared, state, &original, spec, step)
        }
        Command::Run(r) => run_step(shared, df, instr, r, state, step),
    }
}

/// The heredoc sources of a COPY/ADD: (name, content).
fn heredoc_sources(instr: &Instruction, sources: &[Source]) -> Vec<(String, Vec<u8>)> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Heredoc(n) => instr
                .heredoc(n)
                .map(|h| (n.to_string(), h.content().into_bytes())),
            Source::Path(_) => None,
        })
        .collect()
}

struct CopySpec {
    sources: Vec<String>,
    heredocs: Vec<(String, Vec<u8>)>,
    dest: String,
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<Chmod<'static>>,
    link: bool,
    parents: bool,
    exclude: Vec<String>,
    /// ADD: unpack local archives.
    add: bool,
    /// ADD of URLs: (file name, downloaded file, its digest). Never unpacked.
    downloads: Vec<(String, PathBuf, Digest)>,
}

/// Where a COPY --from reads: an earlier stage or an image.
enum FromSource {
    Stage(Arc<StageResult>),
    Image(Box<Image>),
}

fn copy_from_source(shared: &Shared, from: &str) -> Result<FromSource, BuildError> {
    if let Some(i) = shared.graph.stage_by_name(from) {
        return Ok(FromSource::Stage(stage_result(shared, i)?));
    }
    if let Ok(n) = from.parse::<usize>()
        && n < shared.graph.stages.len()
    {
        return Ok(FromSource::Stage(stage_result(shared, n)?));
    }
    Ok(FromSource::Image(Box::new(local_image(
        shared, from, None,
    )?)))
}

fn copy_step(
    shared: &Shared,
    state: &mut StageState,
    original: &str,
    spec: CopySpec,
    step: usize,
) -> Result<bool, BuildError> {
    let dest = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        let wd = workdir_of(&state.config);
        let joined = resolve_workdir(&wd, &spec.dest);
        if spec.dest.ends_with('/') {
            format!("{joined}/")
        } else {
            joined
        }
    };
    let from = match &spec.from {
        Some(f) => Some(copy_from_source(shared, f)?),
        None => None,
    };
    // Sources from the context are selected (and hashed) now, for the key.
    let mut key_parts = vec![
        format!("COPY dest={dest}"),
        format!("chown={:?}", spec.chown),
        format!("chmod={:?}", spec.chmod),
        format!(
            "link={} parents={} add={}",
            spec.link, spec.parents, spec.add
        ),
        format!("exclude={:?}", spec.exclude),
    ];
    let context_selection = match &from {
        None if !spec.sources.is_empty() => {
            let sel = copy::select_context(shared.ctx, &spec.sources, &spec.exclude, spec.parents)?;
            Some(sel)
        }
        _ => None,
    };
    let mut context_selection = context_selection;
    if let Some(sel) = context_selection.as_mut() {
        let hasher = std::mem::take(&mut sel.hasher);
        key_parts.push(format!("context={}", hasher.finish()));
    }
    match &from {
        Some(FromSource::Stage(s)) => {
            key_parts.push(format!("from-stage={} {:?}", s.key, spec.sources))
        }
        Some(FromSource::Image(i)) => {
            key_parts.push(format!("from-image={} {:?}", i.id(), spec.sources))
        }
        None => {}
    }
    for (name, body) in &spec.heredocs {
        key_parts.push(format!("heredoc {name} {}", Digest::sha256_of(body)));
    }
    for (name, _, digest) in &spec.downloads {
        key_parts.push(format!("download {name} {digest}"));
    }
    let parent = if spec.link {
        // --link: the layer does not depend on what is below it.
        format!("link {}", shared.opts.target_platform.architecture)
    } else {
        state.key.to_string()
    };
    let mut parts: Vec<&str> = vec![&parent];
    parts.extend(key_parts.iter().map(String::as_str));
    let key = sha256_key(&parts);
    let created_by = format!("{original} # buildkit");
    let from_ref = from.as_ref();
    let link = spec.link;
    layer_step_on(
        shared,
        state,
        key,
        created_by,
        step,
        link,
        |shared, state, work| {
            let root = work.mount_host()?;
            let owner = match &spec.chown {
                Some(c) => {
                    // Names come from the stage's /etc/passwd, also for --link
                    // (whose own root starts empty).
                    let users = if link {
                        work.mount_readonly(shared, &state.layers, &state.config, "users")?
                    } else {
                        root.clone()
                    };
                    Some(
                        rootfs::lookup_owner(&users, c)
                            .map_err(|e| BuildError::Copy(e.to_string()))?,
                    )
                }
                None => None,
            };
            let chmod = match &spec.chmod {
                Some(Chmod::Octal(m)) => Some(copy::ModeChange::Octal(*m)),
                Some(Chmod::Symbolic(s)) => Some(copy::ModeChange::Symbolic(s.to_string())),
                Some(Chmod::Unexpanded(s)) => {
                    return Err(BuildError::Copy(format!("invalid --chmod {s}")));
                }
                None => None,
            };
            let place = copy::Placement {
                dest: dest.clone(),
                owner,
                chmod,
                mtime_clamp: (!shared.req.keep_timestamps).then_some(shared.req.source_date_epoch),
                upper: work.upper_dir(),
            };
            // Heredoc sources are files named after their delimiter.
            if !spec.heredocs.is_empty() {
                let sel = copy::Selection {
                    items: spec
                        .heredocs
                        .iter()
                        .map(|(name, body)| copy::Item {
                            rel: name.clone(),
                            data: copy::ItemData::Bytes(body.clone()),
                            mode: 0o644,
                            owner: None,
                            mtime: 0,
                        })
                        .collect(),
                    needs_dir: spec.heredocs.len() + spec.sources.len() > 1,
                    hasher: copy::KeyHasher::default(),
                };
                copy::write_into(&root, &sel, &place)?;
            }
            if !spec.downloads.is_empty() {
                // Downloads land with mode 0600, as BuildKit gives them.
                let items: Vec<copy::Item> = spec
                    .downloads
                    .iter()
                    .map(|(name, file, _)| copy::Item {
                        rel: name.clone(),
                        data: copy::ItemData::HostFile(file.clone()),
                        mode: 0o600,
                        owner: None,
                        mtime: 0,
                    })
                    .collect();
                let sel = copy::Selection {
                    needs_dir: spec.downloads.len() + spec.sources.len() > 1,
                    items,
                    hasher: copy::KeyHasher::default(),
                };
                copy::write_into(&root, &sel, &place)?;
            }
            match from_ref {
                None => {
                    if let Some(sel) = &context_selection {
                        if spec.add {
                            add_with_archives(shared, &root, sel, &place)?;
                        } else {
                            copy::write_into(&root, sel, &place)?;
                        }
                    }
                }
                Some(source) => {
                    let (layers, config) = match source {
                        FromSource::Stage(s) => (s.layers.clone(), s.config.clone()),
                        FromSource::Image(i) => (i.manifest.layers.clone(), i.config.clone()),
                    };
                    let view = work.mount_readonly(shared, &layers, &config, "from")?;
                    let sel = copy::select_tree(&view, &spec.sources, &spec.exclude, spec.parents)?;
                    copy::write_into(&root, &sel, &place)?;
                }
            }
            Ok(())
        },
    )
}

/// ADD from the context: local tar archives are unpacked into the
/// destination; everything else is copied.
fn add_with_archives(
    _shared: &Shared,
    root: &Path,
    sel: &copy::Selection,
    place: &copy::Placement,
) -> Result<(), BuildError> {
    let mut plain = copy::Selection {
        needs_dir: sel.needs_dir,
        ..copy::Selection::default()
    };
    let mut archives = Vec::new();
    for item in &sel.items {
        if let copy::ItemData::HostFile(p) = &item.data {
            if copy::archive_kind(p)
                .map_err(|e| BuildError::io(p, e))?
                .is_some()
            {
                archives.push(p.clone());
                continue;
            }
        }
        plain.items.push(item.clone());
    }
    if !plain.items.is_empty() {
        copy::write_into(root, &plain, place)?;
    }
    for a in archives {
        copy::extract_archive(root, &a, &place.dest, place.owner)?;
    }
    Ok(())
}

/// The scratch space of one step that missed the cache: a writable snapshot
/// over the stage's layers, mounted on the host when a step writes files
/// itself (COPY, ADD, WORKDIR); read-only views of other stages.
struct StepWork<'s> {
    snaps: &'s Snapshotter,
    active: Option<Active>,
    dir: PathBuf,
    host_mounts: Vec<PathBuf>,
}

impl StepWork<'_> {
    fn mount_host(&mut self) -> Result<PathBuf, BuildError> {
        let target = self.dir.join("merged");
        if self.host_mounts.contains(&target) {
            return Ok(target);
        }
        fs::create_dir_all(&target).map_err(|e| BuildError::io(&target, e))?;
        let active = self
            .active
            .as_ref()
            .ok_or_else(|| BuildError::Invalid("no snapshot".to_string()))?;
        active.mount(&target)?;
        self.host_mounts.push(target.clone());
        Ok(target)
    }

    /// The writable snapshot's overlay upper dir (under `mount_host`'s mount).
    fn upper_dir(&self) -> Option<PathBuf> {
        self.active.as_ref().and_then(Active::upper_dir)
    }

    /// A read-only view of some layers, mounted on the host.
    fn mount_readonly(
        &mut self,
        shared: &Shared,
        layers: &[Descriptor],
        config: &ImageConfig,
        name: &str,
    ) -> Result<PathBuf, BuildError> {
        let target = self
            .dir
            .join(format!("view-{name}-{}", self.host_mounts.len()));
        fs::create_dir_all(&target).map_err(|e| BuildError::io(&target, e))?;
        let mut lowers = match materialize(shared, layers, config)? {
            Some(top) => self.snaps.lowers(&top)?,
            None => Vec::new(),
        };
        // A read-only overlay needs two lower layers.
        let empty = self.dir.join("empty");
        fs::create_dir_all(&empty).map_err(|e| BuildError::io(&empty, e))?;
        lowers.push(empty);
        if lowers.len() < 2 {
            lowers.push(self.dir.join("empty"));
        }
        let list: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", list.join(":")).as_str()),
        )
        .map_err(|e| BuildError::io(&target, io::Error::from(e)))?;
        self.host_mounts.push(target.clone());
        Ok(target)
    }

    fn unmount_all(&mut self) {
        for m in self.host_mounts.drain(..).rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for StepWork<'_> {
    fn drop(&mut self) {
        self.unmount_all();
        if let Some(a) = self.active.take() {
            let _ = self.snaps.remove_active(a);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Brings layers found in imported caches into the store.
fn fetch_missing(shared: &Shared, layers: &[Descriptor]) -> Result<(), BuildError> {
    for l in layers {
        if shared.store.has_blob(&l.digest) {
            continue;
        }
        let source = shared
            .layer_sources
            .lock()
            .ok()
            .and_then(|s| s.get(&l.digest).copied());
        if let Some(s) = source {
            let client = shared.req.registry.as_ref().map(|r| &r.client);
            let n =
                remote_cache::fetch_layer(shared.store, client, &shared.imported.sources[s], l)?;
            if n > 0 {
                shared.fetched_layers.fetch_add(1, Ordering::SeqCst);
                shared.fetched_bytes.fetch_add(n, Ordering::SeqCst);
            }
        }
    }
    Ok(())
}

/// Writes `--cache-to` exports.
fn export_caches(shared: &Shared) -> Result<(), BuildError> {
    let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
    let sources = shared
        .layer_sources
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let client = shared.req.registry.as_ref().map(|r| &r.client);
    for spec in &shared.req.cache_to {
        if spec.target == remote_cache::CacheTarget::Inline {
            continue;
        }
        let entries: Vec<remote_cache::ExportEntry> = records
            .iter()
            .filter(|(stage, _)| {
                spec.mode == remote_cache::CacheMode::Max || *stage == shared.graph.target
            })
            .map(|(_, e)| e.clone())
            .collect();
        remote_cache::export(
            shared.store,
            client,
            spec,
            &entries,
            &shared.imported,
            &sources,
        )?;
        shared.progress.event(Event::Note {
            message: &format!("exported build cache: {} entries", entries.len()),
        });
    }
    Ok(())
}

/// Unpacks the snapshots of `layers` (those not unpacked yet); returns the
/// top chain ID (None for no layers).
fn materialize(
    shared: &Shared,
    layers: &[Descriptor],
    config: &ImageConfig,
) -> Result<Option<Digest>, BuildError> {
    if layers.is_empty() {
        return Ok(None);
    }
    fetch_missing(shared, layers)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: Descriptor::new(media_types::OCI_CONFIG, Digest::sha256_of(b""), 0),
        layers: layers.to_vec(),
        subject: None,
        annotations: None,
        extra: Map::new(),
    };
    let image = Image {
        top: manifest.config.clone(),
        manifest_descriptor: manifest.config.clone(),
        manifest,
        config: config.clone(),
        config_bytes: Vec::new(),
    };
    let chains = shared.snaps.unpack(&image)?;
    Ok(chains.last().cloned())
}

/// A step that may produce a layer: from the cache, or by running `work` on
/// a fresh snapshot and committing what it changed.
fn layer_step<F>(
    shared: &Shared,
    state: &mut StageState,
    key: Digest,
    created_by: String,
    step: usize,
    work: F,
) -> Result<bool, BuildError>
where
    F: FnOnce(&Shared, &StageState, &mut StepWork) -> Result<(), BuildError>,
{
    layer_step_on(shared, state, key, created_by, step, false, work)
}

/// [`layer_step`]; with `link` (`COPY --link`) the step runs on an empty
/// snapshot, so its layer and `key` do not depend on the layers below, while
/// the steps after it still do (their parent is `H(previous key, key)`).
#[allow(clippy::too_many_arguments)]
fn layer_step_on<F>(
    shared: &Shared,
    state: &mut StageState,
    key: Digest,
    created_by: String,
    step: usize,
    link: bool,
    work: F,
) -> Result<bool, BuildError>
where
    F: FnOnce(&Shared, &StageState, &mut StepWork) -> Result<(), BuildError>,
{
    let chain_key = if link {
        sha256_key(&[&state.key.to_string(), &key.to_string()])
    } else {
        key.clone()
    };
    if !state.no_cache
        && let Some(entry) = shared.cache.get(&key)
        && entry
            .layer
            .as_ref()
            .is_none_or(|l| shared.store.has_blob(&l.digest))
    {
        let layer = entry.layer.clone().zip(entry.diff_id.clone());
        let _ = shared.cache.put(&key, layer.clone());
        apply_layer_result(shared, state, key, chain_key, created_by, layer);
        return Ok(true);
    }
    if !state.no_cache
        && let Some(remote) = shared.imported.entries.get(key.hex())
    {
        // Found in an imported cache: the layer stays remote until needed.
        if let Some((desc, _)) = &remote.layer
            && let Ok(mut sources) = shared.layer_sources.lock()
        {
            sources.entry(desc.digest.clone()).or_insert(remote.source);
        }
        let layer = remote.layer.clone();
        apply_layer_result(shared, state, key, chain_key, created_by, layer);
        return Ok(true);
    }
    let parent = if link {
        None
    } else {
        materialize(shared, &state.layers, &state.config)?
    };
    let dir = shared.work.join(format!("step-{step}"));
    fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
    let active = shared.snaps.prepare(
        &format!("build-{}-{step}-{}", std::process::id(), key.hex()),
        parent.as_ref(),
        SnapshotMode::Overlay,
    )?;
    let mut sw = StepWork {
        snaps: &shared.snaps,
        active: Some(active),
        dir,
        host_mounts: Vec::new(),
    };
    work(shared, state, &mut sw)?;
    sw.unmount_all();
    let Some(active) = sw.active.take() else {
        return Err(BuildError::Invalid("snapshot lost".to_string()));
    };
    let upper_empty = active
        .upper_dir()
        .map(|u| {
            fs::read_dir(u)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        })
        .unwrap_or(false);
    let layer = if upper_empty {
        shared.snaps.remove_active(active)?;
        None
    } else {
        let opts = CreateOptions {
            compression: shared.req.compression,
            mtime_clamp: (!shared.req.keep_timestamps).then_some(shared.req.source_date_epoch),
            // So the snapshot a later `berth run` sees matches the layer
            // other machines unpack.
            clamp_source_times: true,
            ..CreateOptions::default()
        };
        let (digests, _chain) = shared.snaps.commit(active, &opts)?;
        let media_type = match shared.req.compression {
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
            Compression::None => media_types::OCI_LAYER,
            _ => media_types::OCI_LAYER_GZIP,
        };
        Some((
            Descriptor::new(media_type, digests.digest, digests.size),
            digests.diff_id,
        ))
    };
    shared
        .cache
        .put(&key, layer.clone())
        .map_err(|e| BuildError::io(Path::new("buildcache/index"), e))?;
    apply_layer_result(shared, state, key, chain_key, created_by, layer);
    Ok(false)
}

fn apply_layer_result(
    shared: &Shared,
    state: &mut StageState,
    key: Digest,
    chain_key: Digest,
    created_by: String,
    layer: Option<(Descriptor, Digest)>,
) {
    if let Ok(mut records) = shared.records.lock() {
        records.push((
            state.index,
            remote_cache::ExportEntry {
                key: key.clone(),
                layer: layer.clone(),
            },
        ));
    }
    state.key = chain_key;
    let empty = layer.is_none();
    if let Some((desc, diff_id)) = layer {
        state.layers.push(desc);
        state.config.rootfs.diff_ids.push(diff_id);
    }
    push_history(shared, state, created_by, empty);
}

/// The files RUN mounts cannot leave behind: mount points the runtime
/// created that were not in the image.
fn mount_stub_targets(mounts: &[Mount]) -> Vec<String> {
    let mut out: Vec<String> = [
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/proc",
        "/sys",
        "/dev",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in mounts {
        out.push(m.destination.display().to_string());
    }
    out
}

fn remove_stubs(upper: &Path, lowers: &[PathBuf], targets: &[String]) {
    for t in targets {
        let mut rel = PathBuf::from(t.trim_start_matches('/'));
        loop {
            if rel.as_os_str().is_empty() {
                break;
            }
            let in_lower = lowers
                .iter()
                .any(|l| fs::symlink_metadata(l.join(&rel)).is_ok());
            if in_lower {
                break;
            }
            let p = upper.join(&rel);
            let Ok(meta) = fs::symlink_metadata(&p) else {
                break;
            };
            let removed = if meta.is_dir() {
                fs::remove_dir(&p).is_ok()
            } else if meta.is_file() && meta.len() == 0 {
                fs::remove_file(&p).is_ok()
            } else {
                false
            };
            if !removed {
                break;
            }
            match rel.parent() {
                Some(parent) => rel = parent.to_path_buf(),
                None => break,
            }
        }
        // Parents overlayfs copied up only to hold a stub: empty now, and
        // the same as below apart from times, they are no change at all.
        let mut dir = PathBuf::from(t.trim_start_matches('/'));
        while let Some(parent) = dir.parent().map(Path::to_path_buf) {
            if parent.as_os_str().is_empty() {
                break;
            }
            if !unchanged_copy_up(upper, lowers, &parent)
                || fs::remove_dir(upper.join(&parent)).is_err()
            {
                break;
            }
            dir = parent;
        }
    }
}

/// A directory of the upper layer that is empty, not opaque, and has the
/// mode and owner of the same directory below.
fn unchanged_copy_up(upper: &Path, lowers: &[PathBuf], rel: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let p = upper.join(rel);
    let Ok(meta) = fs::symlink_metadata(&p) else {
        return false;
    };
    if !meta.is_dir()
        || fs::read_dir(&p)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return false;
    }
    let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| xattr_present(&p, name));
    if opaque {
        return false;
    }
    lowers
        .iter()
        .find_map(|l| fs::symlink_metadata(l.join(rel)).ok())
        .is_some_and(|lower| {
            lower.is_dir()
                && lower.mode() == meta.mode()
                && lower.uid() == meta.uid()
                && lower.gid() == meta.gid()
        })
}

fn xattr_present(path: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (rootfs::cstr(path), std::ffi::CString::new(name)) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; a zero-size query writes nothing.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    r >= 0
}

fn run_step(
    shared: &Shared,
    _df: &Dockerfile,
    instr: &Instruction,
    r: &dockerfile::Run,
    state: &mut StageState,
    step: usize,
) -> Result<bool, BuildError> {
    let shell = shell_of(&state.config);
    // The argv: exec form as is; a lone heredoc is the script; heredocs
    // inside a command line go to the shell with their bodies.
    let mut script_file: Option<(String, Vec<u8>)> = None;
    let argv: Vec<String> = match &r.command {
        CommandLine::Exec(args) => args.iter().map(|a| a.to_string()).collect(),
        CommandLine::Shell(line) => {
            let trimmed = line.trim();
            let lone = instr.heredocs.len() == 1
                && trimmed
                    .trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(['"', '\''])
                    == instr.heredocs[0].name.as_ref();
            if lone {
                let body = instr.heredocs[0].content();
                if body.starts_with("#!") {
                    let name = instr.heredocs[0].name.to_string();
                    script_file = Some((name.clone(), body.into_bytes()));
                    vec![format!("/dev/pipes/{name}")]
                } else {
                    let mut v = shell.clone();
                    v.push(body);
                    v
                }
            } else if instr.heredocs.is_empty() {
                let mut v = shell.clone();
                v.push(line.to_string());
                v
            } else {
                let mut text = line.to_string();
                for h in &instr.heredocs {
                    text.push('\n');
                    text.push_str(&h.body);
                    if !h.body.ends_with('\n') && !h.body.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&h.name);
                }
                let mut v = shell.clone();
                v.push(text);
                v
            }
        }
    };
    let mut env_vars = state.scope.run_env();
    if env_vars.get("PATH").is_none() {
        env_vars.set("PATH", berth_runtime::spec::DEFAULT_PATH);
    }
    let env: Vec<String> = env_vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let user = state
        .config
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let cwd = workdir_of(&state.config);
    let network = match r.network.or(shared.req.network) {
        Some(NetworkMode::None) => Network::None,
        _ => Network::Host,
    };
    let privileged = r.security == Some(SecurityMode::Insecure);
    let mut sorted_env = env.clone();
    sorted_env.sort();
    let mut key_parts = vec![
        format!("RUN {}", serde_json::to_string(&argv).unwrap_or_default()),
        format!("env={}", sorted_env.join("\u{0}")),
        format!("user={user} cwd={cwd} net={network:?} priv={privileged}"),
    ];
    if let Some((name, body)) = &script_file {
        key_parts.push(format!("script {name} {}", Digest::sha256_of(body)));
    }
    for m in &r.mounts {
        // Secrets name their id only: the content never reaches a key.
        key_parts.push(format!(
            "mount {} target={:?} from={:?} source={:?} id={:?} ro={}",
            m.mount_type.as_str(),
            m.target,
            m.from,
            m.source,
            m.id,
            m.readonly
        ));
        if m.mount_type == MountType::Bind && m.from.is_none() {
            let src = copy::clean_source(m.source.as_deref().unwrap_or(""));
            let sel = copy::select_context(
                shared.ctx,
                &[if src.is_empty() { ".".to_string() } else { src }],
                &[],
                false,
            )?;
            key_parts.push(format!("bind-content={}", sel.hasher.finish()));
        }
        if m.mount_type == MountType::Bind
            && let Some(from) = &m.from
        {
            match copy_from_source(shared, from)? {
                FromSource::Stage(s) => key_parts.push(format!("bind-stage={}", s.key)),
                FromSource::Image(i) => key_parts.push(format!("bind-image={}", i.id())),
            }
        }
    }
    let parent = state.key.to_string();
    let mut parts: Vec<&str> = vec![&parent];
    parts.extend(key_parts.iter().map(String::as_str));
    let key = sha256_key(&parts);
    let created_by = match &r.command {
        CommandLine::Exec(_) => format!("RUN {} # buildkit", argv.join(" ")),
        CommandLine::Shell(line) => {
            let mut v = shell.clone();
            v.push(line.to_string());
            format!("RUN {} # buildkit", v.join(" "))
        }
    };
    let progress = shared.progress;
    layer_step(
        shared,
        state,
        key,
        created_by,
        step,
        |shared, state, work| {
            let active = work
                .active
                .as_ref()
                .ok_or_else(|| BuildError::Invalid("no snapshot".to_string()))?;
            let overlay_options = active.overlay_options();
            let upper_dir = active.upper_dir();
            let parent_chain = active.parent().cloned();
            let root_dir = work.dir.join("rootfs");
            fs::create_dir_all(&root_dir).map_err(|e| BuildError::io(&root_dir, e))?;
            let options: Vec<String> = overlay_options.split(',').map(str::to_string).collect();
            let root_mount = Mount {
                destination: PathBuf::from("/"),
                kind: "overlay".to_string(),
                source: Some(PathBuf::from("overlay")),
                options,
            };
            let etc_dir = work.dir.join("etc");
            fs::create_dir_all(&etc_dir).map_err(|e| BuildError::io(&etc_dir, e))?;
            let mut mounts = berth_runtime::etc::write_files(&etc_dir, network, "buildkitsandbox")
                .map_err(|e| BuildError::io(&etc_dir, e))?;
            let mut env = env.clone();
            let mut locks: Vec<FileLock> = Vec::new();
            for (n, m) in r.mounts.iter().enumerate() {
                run_mount(shared, state, work, m, n, &mut mounts, &mut env, &mut locks)?;
            }
            if let Some((name, body)) = &script_file {
                let p = work.dir.join(format!("script-{name}"));
                fs::write(&p, body).map_err(|e| BuildError::io(&p, e))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                    .map_err(|e| BuildError::io(&p, e))?;
                mounts.push(Mount::bind(
                    &p,
                    Path::new(&format!("/dev/pipes/{name}")),
                    true,
                ));
            }
            let stub_targets = mount_stub_targets(&mounts);
            let mut tail = run::Tail::new();
            let code = run::run(
                run::RunProcess {
                    argv: argv.clone(),
                    env,
                    user: user.clone(),
                    cwd: cwd.clone(),
                    network,
                    privileged,
                    root_dir,
                    root_mount,
                    mounts,
                },
                &mut |data| {
                    tail.push(data);
                    progress.event(Event::Output { step, data });
                },
            )?;
            drop(locks);
            if code != 0 {
                return Err(BuildError::Step {
                    file: String::new(),
                    line: 0,
                    instruction: String::new(),
                    message: format!(
                        "process \"{}\" did not complete successfully: exit code: {code}",
                        argv.join(" ")
                    ),
                    output: tail.lines(),
                });
            }
            if let Some(upper) = upper_dir {
                let lowers = match &parent_chain {
                    Some(p) => shared.snaps.lowers(p).unwrap_or_default(),
                    None => Vec::new(),
                };
                remove_stubs(&upper, &lowers, &stub_targets);
            }
            Ok(())
        },
    )
    .map_err(|e| match e {
        BuildError::Step {
            message, output, ..
        } => BuildError::Step {
            file: shared.df.file.clone(),
            line: instr.start.line,
            instruction: "RUN".to_string(),
            message,
            output,
        },
        other => other,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_mount(
    shared: &Shared,
    state: &StageState,
    work: &mut StepWork,
    m: &dockerfile::RunMount,
    n: usize,
    mounts: &mut Vec<Mount>,
    env: &mut Vec<String>,
    locks: &mut Vec<FileLock>,
) -> Result<(), BuildError> {
    // A relative target is under the WORKDIR, as BuildKit joins it.
    let target = m
        .target
        .as_deref()
        .map(|t| resolve_workdir(&workdir_of(&state.config), t));
    match m.mount_type {
        MountType::Cache => {
            let target =
                target.ok_or_else(|| BuildError::Invalid("cache mount needs a target".into()))?;
            let id =
                m.id.as_deref()
                    .map_or_else(|| target.clone(), str::to_string);
            let dir = shared
                .store
                .root()
                .join("buildcache/mounts")
                .join(Digest::sha256_of(id.as_bytes()).hex());
            if !dir.exists() {
                fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = m.mode.unwrap_or(0o755);
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                    .map_err(|e| BuildError::io(&dir, e))?;
                let _ = nix::unistd::chown(
                    &dir,
                    Some(nix::unistd::Uid::from_raw(m.uid.unwrap_or(0))),
                    Some(nix::unistd::Gid::from_raw(m.gid.unwrap_or(0))),
                );
            }
            if matches!(
                m.sharing,
                Some(dockerfile::CacheSharing::Locked) | Some(dockerfile::CacheSharing::Private)
            ) {
                let lock = dir.with_extension("lock");
                locks.push(
                    FileLock::acquire(&lock, berth_oci::store::LockMode::Exclusive)
                        .map_err(|e| BuildError::io(&lock, e))?,
                );
            }
            mounts.push(Mount::bind(&dir, Path::new(&target), m.readonly));
        }
        MountType::Tmpfs => {
            let target =
                target.ok_or_else(|| BuildError::Invalid("tmpfs mount needs a target".into()))?;
            let mut opts = vec!["nosuid", "nodev"];
            let size;
            if let Some(s) = &m.size {
                size = format!("size={s}");
                opts.push(&size);
            }
            mounts.push(Mount::new(&target, "tmpfs", Some("tmpfs"), &opts));
        }
        MountType::Bind => {
            let target =
                target.ok_or_else(|| BuildError::Invalid("bind mount needs a target".into()))?;
            let source = m.source.as_deref().unwrap_or("/");
            let host = match &m.from {
                None => {
                    let root = shared.ctx.root().ok_or_else(|| {
                        BuildError::Invalid("bind mount needs a build context".into())
                    })?;
                    rootfs::resolve_in_root(root, source)
                        .map_err(|e| BuildError::io(&root.join(source), e))?
                        .ok_or_else(|| {
                            BuildError::Context(format!(
                                "\"/{}\": not found",
                                source.trim_start_matches('/')
                            ))
                        })?
                }
                Some(from) => {
                    let (layers, config) = match copy_from_source(shared, from)? {
                        FromSource::Stage(s) => (s.layers.clone(), s.config.clone()),
                        FromSource::Image(i) => (i.manifest.layers.clone(), i.config.clone()),
                    };
                    let view =
                        work.mount_readonly(shared, &layers, &config, &format!("bind{n}"))?;
                    rootfs::resolve_in_root(&view, source)
                        .map_err(|e| BuildError::io(&view.join(source), e))?
                        .ok_or_else(|| {
                            BuildError::Context(format!("{from}: \"{source}\": not found"))
                        })?
                }
            };
            if m.readonly {
                mounts.push(Mount::bind(&host, Path::new(&target), true));
            } else {
                // Writable, but writes are thrown away: an overlay over it.
                let upper = work.dir.join(format!("bind{n}-upper"));
                let wdir = work.dir.join(format!("bind{n}-work"));
                for d in [&upper, &wdir] {
                    fs::create_dir_all(d).map_err(|e| BuildError::io(d, e))?;
                }
                if host.is_dir() {
                    let opts = format!(
                        "lowerdir={},upperdir={},workdir={}",
                        host.display(),
                        upper.display(),
                        wdir.display()
                    );
                    mounts.push(Mount::new(&target, "overlay", Some("overlay"), &[&opts]));
                } else {
                    let copy = work.dir.join(format!("bind{n}-file"));
                    fs::copy(&host, &copy).map_err(|e| BuildError::io(&host, e))?;
                    mounts.push(Mount::bind(&copy, Path::new(&target), false));
                }
            }
        }
        MountType::Secret => {
            let id =
                m.id.as_deref()
                    .map(str::to_string)
                    .or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_string)
                    })
                    .ok_or_else(|| BuildError::Invalid("secret mount needs an id".into()))?;
            let Some(secret) = shared.req.secrets.get(&id) else {
                if m.required {
                    return Err(BuildError::Invalid(format!("secret {id} not found")));
                }
                return Ok(());
            };
            if let Some(var) = &m.env {
                env.push(format!("{var}={}", String::from_utf8_lossy(&secret.0)));
                if target.is_none() {
                    return Ok(());
                }
            }
            let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
            let file = work.dir.join(format!("secret-{n}"));
            fs::write(&file, &secret.0).map_err(|e| BuildError::io(&file, e))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(m.mode.unwrap_or(0o400)))
                .map_err(|e| BuildError::io(&file, e))?;
            let _ = nix::unistd::chown(
                &file,
                Some(nix::unistd::Uid::from_raw(m.uid.unwrap_or(0))),
                Some(nix::unistd::Gid::from_raw(m.gid.unwrap_or(0))),
            );
            mounts.push(Mount::bind(&file, Path::new(&target), true));
        }
        MountType::Ssh => {
            if m.required {
                return Err(BuildError::Invalid(
                    "ssh mounts are not supported yet".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Writes the final config and manifest into the store.
fn write_image(shared: &Shared, target: &StageResult) -> Result<BuildOutcome, BuildError> {
    let mut config = target.config.clone();
    config.created = Some(epoch_rfc3339(shared.req.source_date_epoch));
    if !shared.req.labels.is_empty() {
        let cc = container_config(&mut config);
        let labels = cc.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &shared.req.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    if shared
        .req
        .cache_to
        .iter()
        .any(|c| c.target == remote_cache::CacheTarget::Inline)
    {
        let records = shared.records.lock().map(|r| r.clone()).unwrap_or_default();
        let entries: Vec<remote_cache::ExportEntry> = records
            .into_iter()
            .filter(|(stage, _)| *stage == shared.graph.target)
            .map(|(_, e)| e)
            .collect();
        let doc = remote_cache::inline_document(&entries, &target.layers);
        let value = serde_json::to_value(&doc).map_err(|e| BuildError::Invalid(e.to_string()))?;
        config
            .extra
            .insert(remote_cache::INLINE_FIELD.to_string(), value);
    }
    let mut remote_layers = Vec::new();
    if shared.req.lazy_layers {
        let sources = shared
            .layer_sources
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        for l in &target.layers {
            if !shared.store.has_blob(&l.digest) {
                match sources.get(&l.digest) {
                    Some(&s) => remote_layers.push((l.clone(), shared.imported.sources[s].clone())),
                    None => {
                        return Err(BuildError::Store(StoreError::BlobNotFound(
                            l.digest.clone(),
                        )));
                    }
                }
            }
        }
    } else {
        fetch_missing(shared, &target.layers)?;
    }
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| BuildError::Invalid(e.to_string()))?;
    let config_digest = shared.store.write_blob(&config_bytes, None)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: Descriptor::new(
            media_types::OCI_CONFIG,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers: target.layers.clone(),
        subject: None,
        annotations: None,
        extra: Map::new(),
    };
    let (manifest_bytes, _) = berth_oci::manifest::to_canonical_json(&manifest)
        .map_err(|e| BuildError::Invalid(e.to_string()))?;
    let manifest_digest = shared.store.write_blob(&manifest_bytes, None)?;
    let mut desc = Descriptor::new(
        media_types::OCI_MANIFEST,
        manifest_digest,
        manifest_bytes.len() as u64,
    );
    desc.platform = Some(berth_oci::Platform::new(
        &config.os,
        &config.architecture,
        config.variant.as_deref(),
    ));
    Ok(BuildOutcome {
        manifest: desc,
        config,
        image_id: config_digest,
        steps: shared.next_step.load(Ordering::SeqCst) - 1,
        cached: shared.cached.load(Ordering::SeqCst),
        fetched_layers: 0,
        fetched_bytes: 0,
        remote_layers,
    })
}
