//! Containers on disk and `berth ps`, `berth rm`, `berth logs`.
//!
//! ```text
//! ROOT/containers/<id>/container.json   what ps shows: name, image, command, status, exit code
//! ROOT/containers/<id>/container.log    captured output, one JSON object per chunk (not --rm)
//! ROOT/containers/<id>/{hosts,hostname,resolv.conf}
//! ROOT/containers/<id>/{rootfs,upper,work}   overlay mount point and writable layer
//! ```
//!
//! The berth process supervising a container holds a flock on its directory.
//! A container whose record says running but whose lock nobody holds lost
//! its berth (killed with SIGKILL, say): the kernel killed the container with
//! it (parent-death signal) and its mounts went with its mount namespace, so
//! [`sweep`] only has to remove the cgroup and record the end (or remove the
//! container, for --rm).

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::format::{since, table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// container.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// What the user named (`busybox`, or the rootfs directory with --rootfs).
    pub image: String,
    #[serde(default)]
    pub image_id: String,
    pub command: Vec<String>,
    pub created: String,
    pub status: Status,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// --rm: the directory goes when the container ends.
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub cgroup_paths: Vec<PathBuf>,
}

pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Writes container.json by rename (no fsync: the record describes a
/// process, and a crash ends the process too).
pub fn save(dir: &Path, r: &Record) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".container.json.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(r)?;
    fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join("container.json"))
        .with_context(|| format!("writing {}", dir.join("container.json").display()))?;
    Ok(())
}

pub fn load(dir: &Path) -> anyhow::Result<Record> {
    let p = dir.join("container.json");
    let bytes = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
}

/// All containers with a readable record.
pub fn list(root: &Path) -> Vec<(PathBuf, Record)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(containers_dir(root)) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if let Ok(r) = load(&dir) {
            out.push((dir, r));
        }
    }
    out.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    out
}

/// Finds a container by name, full ID or unique ID prefix.
pub fn find(root: &Path, key: &str) -> anyhow::Result<(PathBuf, Record)> {
    let all = list(root);
    if let Some(found) = all.iter().find(|(_, r)| r.name == key || r.id == key) {
        return Ok(found.clone());
    }
    let matches: Vec<_> = all.iter().filter(|(_, r)| r.id.starts_with(key)).collect();
    match matches.as_slice() {
        [one] if !key.is_empty() => Ok((*one).clone()),
        [] | [_] => bail!("No such container: {key}"),
        _ => bail!("multiple containers match {key}: use more of the ID"),
    }
}

/// An exclusive flock on a container's directory, released when dropped (or
/// when every process sharing it has exited).
pub struct DirLock {
    _lock: Flock<fs::File>,
}

/// Locks `dir` without waiting; None when someone else holds it.
pub fn try_lock(dir: &Path) -> anyhow::Result<Option<DirLock>> {
    let f = fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    loop {
        match Flock::lock(f.try_clone()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(DirLock { _lock: lock })),
            Err((_, nix::errno::Errno::EINTR)) => continue,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => {
                return Err(e).with_context(|| format!("locking {}", dir.display()));
            }
        }
    }
}

/// True when the berth process supervising the container is alive.
pub fn supervised(dir: &Path) -> bool {
    matches!(try_lock(dir), Ok(None))
}

/// Removes a container's directory (its overlay work dir has a 000 directory;
/// root removes it anyway).
pub fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Cleans up after containers whose berth died: their cgroup goes, and
/// --rm ones are removed, others recorded as exited (137: killed with berth).
pub fn sweep(root: &Path) {
    for (dir, mut r) in list(root) {
        if r.status == Status::Exited {
            continue;
        }
        let Ok(Some(_lock)) = try_lock(&dir) else {
            continue;
        };
        if !r.cgroup_paths.is_empty() {
            if let Err(e) = berth_runtime::process::remove_stale_cgroup(&r.cgroup_paths) {
                tracing::warn!("container {}: {e}", r.id);
            }
        }
        if r.auto_remove {
            let _ = remove_dir(&dir);
        } else {
            r.status = Status::Exited;
            r.exit_code.get_or_insert(137);
            r.finished_at = Some(now());
            let _ = save(&dir, &r);
        }
    }
}

// ---------------------------------------------------------------------------
// The log: one JSON object per chunk of output, like Docker's json-file driver.

#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends each chunk with one write, so `berth logs` sees output at once.
pub struct LogWriter {
    file: fs::File,
}

impl LogWriter {
    pub fn create(path: &Path) -> anyhow::Result<LogWriter> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(LogWriter { file: f })
    }

    pub fn write(&mut self, stream: &str, data: &[u8]) {
        let line = LogLine {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: stream.to_string(),
            time: now(),
        };
        if let Ok(mut s) = serde_json::to_vec(&line) {
            s.push(b'\n');
            let _ = self.file.write_all(&s);
        }
    }

    pub fn flush(&mut self) {
        let _ = self.file.sync_data();
    }
}

// ---------------------------------------------------------------------------
// Commands

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: "table" or "json" (one JSON object per line)
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// Containers (name, ID or ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Container (name, ID or ID prefix)
    container: String,
}

fn status_text(r: &Record) -> String {
    match r.status {
        Status::Created => "Created".to_string(),
        Status::Running => format!(
            "Up {}",
            since(r.started_at.as_deref().or(Some(&r.created))).trim_end_matches(" ago")
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            r.exit_code.unwrap_or(0),
            since(r.finished_at.as_deref())
        ),
    }
}

pub fn ps(root: &Path, a: PsArgs) -> anyhow::Result<()> {
    sweep(root);
    let rows: Vec<Record> = list(root)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| a.all || r.status == Status::Running)
        .collect();
    let mut out = io::stdout().lock();
    if a.quiet {
        for r in &rows {
            let id = if a.no_trunc {
                &r.id[..]
            } else {
                &r.id[..12.min(r.id.len())]
            };
            writeln!(out, "{id}")?;
        }
        return Ok(());
    }
    if a.format == "json" {
        for r in &rows {
            let v = serde_json::json!({
                "ID": if a.no_trunc { r.id.clone() } else { r.id.chars().take(12).collect() },
                "Image": r.image,
                "Command": r.command.join(" "),
                "CreatedAt": r.created,
                "Status": status_text(r),
                "State": r.status,
                "Names": r.name,
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = if a.no_trunc {
                r.id.clone()
            } else {
                r.id.chars().take(12).collect()
            };
            let mut command = format!("\"{}\"", r.command.join(" "));
            if !a.no_trunc && command.chars().count() > 22 {
                command = command.chars().take(20).collect::<String>() + "…\"";
            }
            vec![
                id,
                r.image.clone(),
                command,
                since(Some(&r.created)),
                status_text(r),
                String::new(),
                r.name.clone(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES"
            ],
            &table_rows
        )
    )?;
    Ok(())
}

pub fn rm(root: &Path, a: RmArgs) -> anyhow::Result<()> {
    sweep(root);
    let mut failed = Vec::new();
    for key in &a.containers {
        match rm_one(root, key, a.force) {
            Ok(id) => println!("{id}"),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn rm_one(root: &Path, key: &str, force: bool) -> anyhow::Result<String> {
    let (dir, r) = find(root, key)?;
    if supervised(&dir) {
        if !force {
            bail!(
                "cannot remove container {}: it is running (stop it or use rm -f)",
                r.name
            );
        }
        // The supervising berth sees the exit, removes the cgroup and
        // records it; wait (bounded) for it to let go of the lock.
        match r.pid {
            // SAFETY: kill with a pid from the record and a constant signal.
            Some(pid) => unsafe {
                libc::kill(pid, libc::SIGKILL);
            },
            None => berth_runtime::process::kill_cgroup(&r.cgroup_paths),
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while supervised(&dir) {
            if std::time::Instant::now() > deadline {
                bail!("container {} did not stop within 10 s", r.name);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    remove_dir(&dir)?;
    Ok(r.name)
}

pub fn logs(root: &Path, a: LogsArgs) -> anyhow::Result<()> {
    let (dir, _) = find(root, &a.container)?;
    let path = dir.join("container.log");
    let f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        let Ok(l) = serde_json::from_str::<LogLine>(&line) else {
            continue;
        };
        if l.stream == "stderr" {
            err.write_all(l.log.as_bytes())?;
        } else {
            out.write_all(l.log.as_bytes())?;
        }
    }
    Ok(())
}
