//! `berth run`: turns an image (or, with --rootfs, a directory) into a
//! runtime [`Spec`] the way Docker does (ENTRYPOINT/CMD, Env, WorkingDir,
//! User; `--entrypoint` resets CMD), runs it with berth-runtime and exits with
//! the process's code: 125 when berth itself fails, 126 when the command
//! cannot be executed, 127 when it is not found, 137 for an OOM kill.
//!
//! The image's layers are unpacked once per chain ID by the snapshotter; each
//! container gets its own writable layer (`upper`, `work`) in its directory,
//! and the overlay is mounted by the container's init inside its own mount
//! namespace, so it disappears with the container whatever happens to berth.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use berth_oci::manifest::ContainerConfig;
use berth_oci::snapshot::Snapshotter;
use berth_oci::{Platform, Store};
use berth_runtime::spec::{CgroupSpec, Mount, Network, Resources, Rlimit, Seccomp};
use berth_runtime::supervise::{Attach, Signals, Stream};
use berth_runtime::{SpawnOptions, Spec, Stdio, capabilities, tty};
use clap::Args;

use super::containers::{self, Record, Status};

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background and print the container ID (output goes to `berth logs`)
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from berth's environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a host path or a named volume: SRC:DST[:ro]
    #[arg(short, long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: DST[:OPTIONS]
    #[arg(long, value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User name or UID, optionally with group: USER[:GROUP]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional groups to join
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: "host" (the host's) or "none" (a private loopback)
    #[arg(long, alias = "net", default_value = "host")]
    pub network: String,
    /// Memory limit (e.g. 256m, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap (default: twice --memory)
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Override the image's ENTRYPOINT (resets its CMD)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Run a minimal init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Give the container every capability, no seccomp filter, no masked paths
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined, no-new-privileges[=true|false]
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048); never raised otherwise
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Seconds between SIGTERM/SIGINT being forwarded and SIGKILL
    #[arg(long = "stop-timeout", default_value_t = 10)]
    pub stop_timeout: u64,
    /// Parent cgroup for the container's cgroup (default: berth)
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// User namespace uid map: CONTAINER:HOST:SIZE
    #[arg(long = "uidmap", value_name = "CTR:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// User namespace gid map: CONTAINER:HOST:SIZE
    #[arg(long = "gidmap", value_name = "CTR:HOST:SIZE")]
    pub gidmap: Vec<String>,
    /// Write the container ID to this file
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// IMAGE is a root filesystem directory to run directly (like podman's --rootfs)
    #[arg(long)]
    pub rootfs: bool,
    /// Print how long each phase took to stderr
    #[arg(long, hide = true)]
    pub timings: bool,
    /// Image to run (name[:tag], digest or ID), or a directory with --rootfs
    pub image: String,
    /// Command and arguments (replace the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// A failure of `berth run` with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            code: 125,
            message: format!("{e:#}").replace('\n', " "),
        }
    }
}

/// Runs the command; never returns an error, only exit codes.
pub fn run(root: &Path, args: RunArgs) -> ExitCode {
    // Block the forwarded signals before anything can start a thread or a
    // container, so none is lost and all reach the signalfd.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: blocking signals: {e}");
            return ExitCode::from(125);
        }
    };
    match execute(root, args, &signals) {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(125)),
        Err(f) => {
            eprintln!("berth: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Phase timings for --timings.
#[derive(Default)]
struct Timings {
    started: Option<Instant>,
    marks: Vec<(&'static str, Duration)>,
    last: Option<Instant>,
}

impl Timings {
    fn start() -> Timings {
        let now = Instant::now();
        Timings {
            started: Some(now),
            marks: Vec::new(),
            last: Some(now),
        }
    }

    fn mark(&mut self, what: &'static str) {
        let now = Instant::now();
        if let Some(l) = self.last {
            self.marks.push((what, now - l));
        }
        self.last = Some(now);
    }

    fn print(&self) {
        let total = self.started.map(|s| s.elapsed()).unwrap_or_default();
        let parts: Vec<String> = self
            .marks
            .iter()
            .map(|(w, d)| format!("{w}={:.3}ms", d.as_secs_f64() * 1000.0))
            .collect();
        eprintln!(
            "berth timings: {} total={:.3}ms",
            parts.join(" "),
            total.as_secs_f64() * 1000.0
        );
    }
}

/// What the container runs on.
struct Rootfs {
    /// The mount point (an empty directory), or the directory itself with --rootfs.
    path: PathBuf,
    mount: Option<Mount>,
    image_id: String,
    config: ContainerConfig,
}

fn execute(root: &Path, args: RunArgs, signals: &Signals) -> Result<i32, Failure> {
    let mut t = Timings::start();
    if args.detach && (args.interactive || args.tty) {
        return Err(anyhow!("-d cannot be combined with -i or -t").into());
    }
    let network = match args.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        other => {
            return Err(anyhow!(
                "network {other:?} is not supported: use --network host or --network none"
            )
            .into());
        }
    };
    let cdirs = containers::containers_dir(root);
    fs::create_dir_all(&cdirs).with_context(|| format!("creating {}", cdirs.display()))?;
    containers::sweep(root);
    if let Some(n) = &args.name
        && containers::list(root).iter().any(|(_, r)| &r.name == n)
    {
        return Err(anyhow!("the container name {n:?} is already in use").into());
    }

    let id = random_id()?;
    let cdir = cdirs.join(&id);
    fs::create_dir(&cdir).with_context(|| format!("creating {}", cdir.display()))?;
    // Held while the container lives: `ps`/`rm`/sweep tell from it that we are alive.
    let lock = containers::try_lock(&cdir)?;
    let result = run_container(root, &args, &id, &cdir, network, signals, &mut t);
    if args.detach && result.is_ok() {
        // The forked monitor shares the lock's open file and holds it until
        // the container ends; dropping ours would unlock it for both.
        std::mem::forget(lock);
        return result;
    }
    drop(lock);
    match &result {
        Err(f) if !args.rm => match containers::load(&cdir) {
            // Kept, like docker keeps a container whose command was not found.
            Ok(mut r) => {
                r.status = Status::Exited;
                r.exit_code = Some(i32::from(f.code));
                r.finished_at = Some(containers::now());
                let _ = containers::save(&cdir, &r);
            }
            Err(_) => {
                let _ = containers::remove_dir(&cdir);
            }
        },
        _ if args.rm => {
            let _ = containers::remove_dir(&cdir);
        }
        _ => {}
    }
    t.mark("cleanup");
    if args.timings {
        t.print();
    }
    result
}

fn rootfs_for(root: &Path, args: &RunArgs, cdir: &Path) -> anyhow::Result<Rootfs> {
    if args.rootfs {
        let dir = fs::canonicalize(&args.image)
            .with_context(|| format!("rootfs directory {}", args.image))?;
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        return Ok(Rootfs {
            path: dir,
            mount: None,
            image_id: String::new(),
            config: ContainerConfig::default(),
        });
    }
    let store =
        Store::open(root).with_context(|| format!("opening store at {}", root.display()))?;
    let resolved = store
        .resolve(&args.image)
        .with_context(|| format!("Unable to find image '{}' locally", args.image))?;
    let image = local_image(&store, &resolved.descriptor)?;
    let snaps = Snapshotter::new(&store);
    let chains = snaps
        .unpack(&image)
        .context("unpacking the image's layers")?;
    // overlayfs needs a lower layer even for an empty image.
    let lowers = match chains.last() {
        Some(top) => snaps.lowers(top).context("finding the image's layers")?,
        None => {
            let empty = cdir.join("empty");
            fs::create_dir_all(&empty)?;
            vec![empty]
        }
    };
    let (rootfs, upper, work) = (cdir.join("rootfs"), cdir.join("upper"), cdir.join("work"));
    for d in [&rootfs, &upper, &work] {
        fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut options = vec![
        format!("lowerdir={}", lowerdir.join(":")),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
        "index=off".to_string(),
        "redirect_dir=off".to_string(),
        "metacopy=off".to_string(),
    ];
    if args.rm {
        // The writable layer is thrown away at exit: skip the syncfs of the
        // whole upper filesystem overlayfs does on unmount (tens of ms, or
        // seconds on a busy disk), as podman does for transient containers.
        options.push("volatile".to_string());
    }
    Ok(Rootfs {
        path: rootfs,
        mount: Some(Mount {
            destination: PathBuf::from("/"),
            kind: "overlay".to_string(),
            source: Some(PathBuf::from("overlay")),
            options,
        }),
        image_id: image.id().to_string(),
        config: image.config.config.clone().unwrap_or_default(),
    })
}

/// The image for the host platform, or any platform present when the host's is not.
fn local_image(
    store: &Store,
    descriptor: &berth_oci::Descriptor,
) -> anyhow::Result<berth_oci::image::Image> {
    match store.image(descriptor, &Platform::host()) {
        Ok(i) => Ok(i),
        Err(first) => Err(first).context("reading the image"),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_container(
    root: &Path,
    args: &RunArgs,
    id: &str,
    cdir: &Path,
    network: Network,
    signals: &Signals,
    t: &mut Timings,
) -> Result<i32, Failure> {
    let rootfs = rootfs_for(root, args, cdir)?;
    t.mark("image");
    let hostname = match (&args.hostname, network) {
        (Some(h), _) => h.clone(),
        (None, Network::None) => id[..12].to_string(),
        (None, Network::Host) => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| id[..12].to_string()),
    };
    let spec = build_spec(root, args, id, cdir, network, &hostname, &rootfs)?;
    let name = args.name.clone().unwrap_or_else(|| generated_name(id));
    let mut record = Record {
        id: id.to_string(),
        name,
        image: args.image.clone(),
        image_id: rootfs.image_id.clone(),
        command: spec.process.args.clone(),
        created: containers::now(),
        // Running as far as anyone can tell: our lock says whether it still is.
        status: Status::Running,
        pid: None,
        exit_code: None,
        oom_killed: false,
        started_at: None,
        finished_at: None,
        auto_remove: args.rm,
        cgroup_paths: Vec::new(),
    };
    if let Some(cg) = &spec.cgroup {
        record.cgroup_paths = berth_runtime::process::cgroup_paths(cg).unwrap_or_default();
    }
    containers::save(cdir, &record)?;
    if let Some(f) = &args.cidfile {
        fs::write(f, id).with_context(|| format!("writing {}", f.display()))?;
    }
    t.mark("spec");

    if args.detach {
        return detach(args, cdir, spec, record);
    }

    // Output: straight to our own descriptors for --rm (nothing to keep);
    // through pipes into container.log otherwise.
    let capture = !args.rm;
    let mut opts = SpawnOptions {
        stdin: if args.interactive && !args.tty {
            Stdio::Inherit
        } else {
            Stdio::Null
        },
        ..SpawnOptions::default()
    };
    let mut pipes: (Option<OwnedFd>, Option<OwnedFd>) = (None, None);
    if capture && !args.tty {
        let (r1, w1) = nix::unistd::pipe().context("pipe")?;
        let (r2, w2) = nix::unistd::pipe().context("pipe")?;
        opts.stdout = Stdio::Fd(w1);
        opts.stderr = Stdio::Fd(w2);
        pipes = (Some(r1), Some(r2));
    }
    let mut log = if capture {
        Some(containers::LogWriter::create(&cdir.join("container.log"))?)
    } else {
        None
    };
    let raw = if args.tty && args.interactive && tty::is_terminal(io::stdin().as_fd()) {
        tty::RawMode::enable(io::stdin().as_fd()).ok()
    } else {
        None
    };

    let mut container = match berth_runtime::spawn(&spec, opts) {
        Ok(c) => c,
        Err(e) => {
            drop(raw);
            return Err(Failure {
                code: u8::try_from(e.exit_code()).unwrap_or(125),
                message: berth_runtime::error_chain(&e),
            });
        }
    };
    t.mark("start");
    record.pid = Some(container.pid());
    record.started_at = Some(containers::now());
    if !args.rm {
        // (--rm containers skip this write: `rm -f` finds them by cgroup.)
        containers::save(cdir, &record)?;
    }

    let attach = Attach {
        signals: Some(signals),
        tty: container.take_tty(),
        stdin_to_tty: args.interactive,
        stdout: pipes.0,
        stderr: pipes.1,
        stop_timeout: Duration::from_secs(args.stop_timeout),
    };
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let exit = berth_runtime::supervise::attach(&mut container, attach, &mut |stream, data| {
        let (out, name): (&mut dyn Write, &str) = match stream {
            Stream::Stdout => (&mut stdout, "stdout"),
            Stream::Stderr => (&mut stderr, "stderr"),
        };
        let _ = out.write_all(data);
        let _ = out.flush();
        if let Some(l) = log.as_mut() {
            l.write(name, data);
        }
    });
    drop(raw);
    t.mark("run");
    if let Some(l) = log.as_mut() {
        l.flush();
    }
    let exit = exit.map_err(|e| Failure {
        code: 125,
        message: berth_runtime::error_chain(&e),
    })?;
    let code = exit.code();
    if exit.oom_killed {
        eprintln!(
            "berth: container {} was killed: out of memory{}",
            &id[..12],
            args.memory
                .as_deref()
                .map(|m| format!(" (--memory {m})"))
                .unwrap_or_default()
        );
    }
    if !args.rm {
        record.status = Status::Exited;
        record.exit_code = Some(code);
        record.oom_killed = exit.oom_killed;
        record.finished_at = Some(containers::now());
        containers::save(cdir, &record)?;
    }
    if args.timings {
        eprintln!(
            "berth timings: runtime startup={:.3}ms running={:.3}ms",
            exit.startup.as_secs_f64() * 1000.0,
            exit.running.as_secs_f64() * 1000.0
        );
    }
    Ok(code)
}

/// `-d`: a forked monitor process supervises the container (logging its
/// output, recording its end); the command prints the ID once it has started.
fn detach(args: &RunArgs, cdir: &Path, spec: Spec, mut record: Record) -> Result<i32, Failure> {
    let (ready_r, ready_w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: berth is single-threaded here (no runtime, no thread was started).
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut msg = String::new();
            let _ = io::Read::read_to_string(&mut fs::File::from(ready_r), &mut msg);
            match msg.split_once(' ') {
                Some(("ok", _)) => {
                    println!("{}", record.id);
                    Ok(0)
                }
                Some((code, m)) => Err(Failure {
                    code: code.parse().unwrap_or(125),
                    message: m.to_string(),
                }),
                None => Err(anyhow!("the container monitor died while starting").into()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            let ready = fs::File::from(ready_w);
            let code = monitor(args, cdir, &spec, &mut record, ready);
            // SAFETY: leave the forked monitor without unwinding into main.
            unsafe { libc::_exit(code) }
        }
    }
}

fn monitor(
    args: &RunArgs,
    cdir: &Path,
    spec: &Spec,
    record: &mut Record,
    mut ready: fs::File,
) -> i32 {
    let devnull = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let (Ok(r1w1), Ok(r2w2), Ok(mut log)) = (
        nix::unistd::pipe(),
        nix::unistd::pipe(),
        containers::LogWriter::create(&cdir.join("container.log")),
    ) else {
        let _ = write!(ready, "125 cannot set up output capture");
        return 125;
    };
    let opts = SpawnOptions {
        stdin: Stdio::Null,
        stdout: Stdio::Fd(r1w1.1),
        stderr: Stdio::Fd(r2w2.1),
        ..SpawnOptions::default()
    };
    let mut container = match berth_runtime::spawn(spec, opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(
                ready,
                "{} {}",
                e.exit_code(),
                berth_runtime::error_chain(&e)
            );
            if !args.rm {
                record.status = Status::Exited;
                record.exit_code = Some(e.exit_code());
                record.finished_at = Some(containers::now());
                let _ = containers::save(cdir, record);
            } else {
                let _ = containers::remove_dir(cdir);
            }
            return e.exit_code();
        }
    };
    record.status = Status::Running;
    record.pid = Some(container.pid());
    record.started_at = Some(containers::now());
    let _ = containers::save(cdir, record);
    let _ = write!(ready, "ok {}", record.id);
    // EOF tells the waiting `berth run -d` to print the ID and exit.
    drop(ready);
    // Our own stdio goes nowhere from now on.
    if let Ok(null) = &devnull {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe {
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(null), fd);
            }
        }
    }
    let attach = Attach {
        signals: None,
        tty: None,
        stdin_to_tty: false,
        stdout: Some(r1w1.0),
        stderr: Some(r2w2.0),
        stop_timeout: Duration::from_secs(args.stop_timeout),
    };
    let exit = berth_runtime::supervise::attach(&mut container, attach, &mut |stream, data| {
        log.write(
            if stream == Stream::Stderr {
                "stderr"
            } else {
                "stdout"
            },
            data,
        );
    });
    log.flush();
    let code = exit.as_ref().map(|e| e.code()).unwrap_or(125);
    if args.rm {
        let _ = containers::remove_dir(cdir);
    } else {
        record.status = Status::Exited;
        record.exit_code = Some(code);
        record.oom_killed = exit.map(|e| e.oom_killed).unwrap_or(false);
        record.finished_at = Some(containers::now());
        let _ = containers::save(cdir, record);
    }
    code
}

/// The runtime spec for a run: Docker's defaults, the image's config, the flags.
fn build_spec(
    root: &Path,
    args: &RunArgs,
    id: &str,
    cdir: &Path,
    network: Network,
    hostname: &str,
    rootfs: &Rootfs,
) -> anyhow::Result<Spec> {
    let cfg = &rootfs.config;
    let argv = command(
        cfg.entrypoint.as_deref(),
        cfg.cmd.as_deref(),
        args.entrypoint.as_deref(),
        &args.command,
    );
    if argv.is_empty() {
        bail!("no command specified");
    }
    let mut spec = Spec::new(&rootfs.path, argv);
    spec.root.mount = rootfs.mount.clone();
    spec.root.readonly = args.read_only;
    spec.hostname = Some(hostname.to_string());
    spec.namespaces.network = network;
    spec.init = args.init;

    let mut env_file_lines = Vec::new();
    for f in &args.env_file {
        let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        env_file_lines.extend(text.lines().map(String::from));
    }
    spec.process.env = environment(
        cfg.env.as_deref().unwrap_or_default(),
        &env_file_lines,
        &args.env,
        &|k| std::env::var(k).ok(),
        hostname,
        args.tty,
    );
    spec.process.cwd = match args
        .workdir
        .as_deref()
        .or(cfg.working_dir.as_deref())
        .filter(|w| !w.is_empty())
    {
        Some(w) if w.starts_with('/') => PathBuf::from(w),
        Some(w) if args.workdir.is_some() => {
            bail!("the working directory '{w}' is invalid, it needs to be an absolute path")
        }
        Some(w) => Path::new("/").join(w),
        None => PathBuf::from("/"),
    };
    spec.process.user.spec = args
        .user
        .clone()
        .or_else(|| cfg.user.clone())
        .unwrap_or_default();
    spec.process.user.additional_groups = args.group_add.clone();
    spec.process.terminal = args.tty;
    if args.tty {
        spec.process.console_size = tty::get_winsize(io::stdout().as_fd())
            .or_else(|| tty::get_winsize(io::stdin().as_fd()));
    }

    if args.privileged {
        spec.make_privileged();
    }
    spec.process.capabilities =
        capabilities::adjust(&spec.process.capabilities, &args.cap_add, &args.cap_drop)?;
    for opt in &args.security_opt {
        match opt.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => spec.seccomp = Seccomp::Unconfined,
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                spec.process.no_new_privileges = true
            }
            "no-new-privileges=false" | "no-new-privileges:false" => {
                spec.process.no_new_privileges = false
            }
            other => bail!("unsupported --security-opt {other:?}"),
        }
    }
    if spec.seccomp == Seccomp::DockerDefault && berth_runtime::seccomp::build(&[]).is_err() {
        tracing::warn!("no default seccomp filter on this architecture; running unconfined");
        spec.seccomp = Seccomp::Unconfined;
    }
    for u in &args.ulimit {
        spec.process.rlimits.push(parse_ulimit(u)?);
    }
    if !args.uidmap.is_empty() || !args.gidmap.is_empty() {
        if !args.rootfs {
            bail!(
                "--uidmap/--gidmap need --rootfs with a directory owned by the mapped ids \
                 (image layers are not id-mapped yet)"
            );
        }
        spec.namespaces.user = Some(berth_runtime::spec::IdMappings {
            uid: args
                .uidmap
                .iter()
                .map(|m| parse_idmap(m))
                .collect::<Result<_, _>>()?,
            gid: args
                .gidmap
                .iter()
                .map(|m| parse_idmap(m))
                .collect::<Result<_, _>>()?,
        });
    }

    let mut mounts = berth_runtime::etc::write_files(cdir, network, hostname)
        .context("writing /etc/hosts, /etc/hostname and /etc/resolv.conf")?;
    for v in &args.volume {
        mounts.push(parse_volume(v, root)?);
    }
    for t in &args.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    spec.mounts.extend(mounts);

    let memory = args.memory.as_deref().map(parse_bytes).transpose()?;
    let memory_swap = match args.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(parse_bytes(s)?),
        None => None,
    };
    if let Some(m) = memory
        && m < 6 * 1024 * 1024
    {
        bail!("minimum memory limit allowed is 6MB");
    }
    spec.cgroup = Some(CgroupSpec {
        name: format!("berth-{id}"),
        parent: args.cgroup_parent.as_ref().map(PathBuf::from),
        resources: Resources {
            memory,
            memory_swap,
            cpus: args.cpus,
            pids: args.pids_limit,
        },
    });
    spec.validate()?;
    Ok(spec)
}

/// Docker's rule: `--entrypoint` replaces ENTRYPOINT and drops CMD; arguments
/// after the image replace CMD.
pub fn command(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint_flag: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = match entrypoint_flag {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => image_entrypoint.unwrap_or_default().to_vec(),
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if entrypoint_flag.is_none() {
        argv.extend(image_cmd.unwrap_or_default().iter().cloned());
    }
    argv
}

/// The container's environment: HOSTNAME, the image's Env, --env-file lines,
/// then -e (later ones replace earlier ones by key); TERM for a terminal;
/// Docker's default PATH when none is set.
pub fn environment(
    image_env: &[String],
    env_file_lines: &[String],
    flags: &[String],
    host: &dyn Fn(&str) -> Option<String>,
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |entry: &str, only_if_unset: bool| {
        let (k, v) = match entry.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match host(entry) {
                Some(v) => (entry.to_string(), v),
                None => return,
            },
        };
        if k.is_empty() || (only_if_unset && values.contains_key(&k)) {
            return;
        }
        if !values.contains_key(&k) {
            order.push(k.clone());
        }
        values.insert(k, v);
    };
    set(&format!("HOSTNAME={hostname}"), false);
    for e in image_env {
        set(e, false);
    }
    for line in env_file_lines {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        set(l, false);
    }
    for e in flags {
        set(e, false);
    }
    if tty {
        set("TERM=xterm", true);
    }
    set(&format!("PATH={}", berth_runtime::spec::DEFAULT_PATH), true);
    order
        .into_iter()
        .map(|k| {
            let v = values.get(&k).cloned().unwrap_or_default();
            format!("{k}={v}")
        })
        .collect()
}

/// Docker's RAMInBytes: `32m`, `1g`, `512k`, `1024` (bytes), binary units.
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1i64 << 20),
        Some('g') => (&t[..t.len() - 1], 1i64 << 30),
        Some('t') => (&t[..t.len() - 1], 1i64 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("invalid size {s:?}"))?;
    if n < 0.0 {
        bail!("invalid size {s:?}");
    }
    Ok((n * mult as f64) as i64)
}

/// `nofile=1024:2048` or `nofile=1024` (soft = hard).
pub fn parse_ulimit(s: &str) -> anyhow::Result<Rlimit> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit {s:?}: want NAME=SOFT[:HARD]"))?;
    let parse = |v: &str| -> anyhow::Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| anyhow!("invalid ulimit value {v:?} in {s:?}"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(vals)?, parse(vals)?),
    };
    if soft > hard {
        bail!("ulimit {s:?}: soft limit above hard limit");
    }
    Ok(Rlimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

fn parse_idmap(s: &str) -> anyhow::Result<berth_runtime::spec::IdMap> {
    let parts: Vec<u32> = s
        .split(':')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("invalid id map {s:?}: want CONTAINER:HOST:SIZE"))?;
    match parts.as_slice() {
        [c, h, n] => Ok(berth_runtime::spec::IdMap {
            container: *c,
            host: *h,
            size: *n,
        }),
        _ => bail!("invalid id map {s:?}: want CONTAINER:HOST:SIZE"),
    }
}

/// `-v SRC:DST[:OPTS]`: SRC an absolute host path (created if missing, as
/// Docker's -v does) or a volume name (ROOT/volumes/NAME/_data); `-v DST` alone
/// is an anonymous volume.
pub fn parse_volume(s: &str, root: &Path) -> anyhow::Result<Mount> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, opts] => (Some(*src), *dst, *opts),
        _ => bail!("invalid volume specification {s:?}"),
    };
    if !dst.starts_with('/') {
        bail!("invalid volume specification {s:?}: the destination must be absolute");
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave"
            | "rslave" | "nocopy" => {}
            other => bail!("invalid volume option {other:?} in {s:?}"),
        }
    }
    let source = match src {
        Some(p) if p.starts_with('/') => {
            let p = PathBuf::from(p);
            if !p.exists() {
                fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
            }
            p
        }
        Some(name) => {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                bail!("invalid volume name {name:?}");
            }
            volume_dir(root, name)?
        }
        None => volume_dir(root, &random_id()?)?,
    };
    Ok(Mount::bind(&source, Path::new(dst), readonly))
}

fn volume_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = root.join("volumes").join(name).join("_data");
    fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// `--tmpfs DST[:OPTS]` with Docker's defaults (noexec, nosuid, nodev).
pub fn parse_tmpfs(s: &str) -> anyhow::Result<Mount> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    if !dst.starts_with('/') {
        bail!("invalid tmpfs {s:?}: the destination must be absolute");
    }
    let mut options: Vec<String> = ["noexec", "nosuid", "nodev"]
        .iter()
        .map(|o| o.to_string())
        .collect();
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(Mount {
        destination: PathBuf::from(dst),
        kind: "tmpfs".to_string(),
        source: Some(PathBuf::from("tmpfs")),
        options,
    })
}

/// 64 hex digits from the kernel's random pool.
fn random_id() -> anyhow::Result<String> {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into buf.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e).context("getrandom");
        }
        filled += n as usize;
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A Docker-style `adjective_noun` name derived from the ID.
fn generated_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quiet", "sharp", "tender", "witty",
    ];
    const NOUN: [&str; 16] = [
        "anchor", "barge", "cove", "dock", "ferry", "harbor", "jetty", "keel", "lagoon", "mast",
        "pier", "quay", "reef", "sloop", "tide", "wharf",
    ];
    let b = |i: usize| usize::from_str_radix(&id[i..i + 1], 16).unwrap_or(0);
    format!("{}_{}_{}", ADJ[b(0)], NOUN[b(1)], &id[2..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_like_docker() {
        let ep = v(&["/entry.sh"]);
        let cmd = v(&["serve", "--port", "80"]);
        // Image defaults.
        assert_eq!(
            command(Some(&ep), Some(&cmd), None, &[]),
            v(&["/entry.sh", "serve", "--port", "80"])
        );
        // Arguments replace CMD only.
        assert_eq!(
            command(Some(&ep), Some(&cmd), None, &v(&["x"])),
            v(&["/entry.sh", "x"])
        );
        // --entrypoint resets CMD.
        assert_eq!(command(Some(&ep), Some(&cmd), Some("sh"), &[]), v(&["sh"]));
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some("sh"), &v(&["-c", "id"])),
            v(&["sh", "-c", "id"])
        );
        // --entrypoint "" clears it.
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some(""), &v(&["ls"])),
            v(&["ls"])
        );
        assert_eq!(command(None, Some(&v(&["sh"])), None, &[]), v(&["sh"]));
        assert!(command(None, None, None, &[]).is_empty());
    }

    #[test]
    fn environment_merges_in_dockers_order() {
        let host = |k: &str| (k == "FROM_HOST").then(|| "h".to_string());
        let env = environment(
            &v(&["PATH=/img/bin", "A=image", "B=image"]),
            &v(&["# comment", "", "B=file", "C=file"]),
            &v(&["C=flag", "FROM_HOST", "NOT_ON_HOST", "D=x=y"]),
            &host,
            "box",
            true,
        );
        assert_eq!(
            env,
            v(&[
                "HOSTNAME=box",
                "PATH=/img/bin",
                "A=image",
                "B=file",
                "C=flag",
                "FROM_HOST=h",
                "D=x=y",
                "TERM=xterm"
            ])
        );
        let env = environment(&[], &[], &[], &host, "h", false);
        assert_eq!(
            env,
            v(&[
                "HOSTNAME=h",
                &format!("PATH={}", berth_runtime::spec::DEFAULT_PATH)
            ])
        );
    }

    #[test]
    fn sizes_and_ulimits() {
        assert_eq!(parse_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512KB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=10").unwrap();
        assert_eq!((u.soft, u.hard), (10, 10));
        assert!(parse_ulimit("nofile=2:1").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn volumes_and_tmpfs() {
        let root = tempfile::tempdir().unwrap();
        let host = root.path().join("data");
        let m = parse_volume(&format!("{}:/data:ro", host.display()), root.path()).unwrap();
        assert!(host.is_dir(), "-v creates a missing host directory");
        assert_eq!(m.destination, Path::new("/data"));
        assert!(m.options.contains(&"ro".to_string()));
        let m = parse_volume("cache:/cache", root.path()).unwrap();
        assert_eq!(m.source.unwrap(), root.path().join("volumes/cache/_data"));
        assert!(parse_volume("a:relative", root.path()).is_err());
        assert!(parse_volume("/a:/b:bogus", root.path()).is_err());
        let t = parse_tmpfs("/run:size=1m,mode=700").unwrap();
        assert_eq!(t.kind, "tmpfs");
        assert_eq!(
            t.options,
            v(&["noexec", "nosuid", "nodev", "size=1m", "mode=700"])
        );
    }

    #[test]
    fn ids_and_names() {
        let id = random_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, random_id().unwrap());
        let n = generated_name("0f123456789");
        assert_eq!(n, "brave_wharf_1234");
    }
}
