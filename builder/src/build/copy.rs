//! COPY and ADD: choosing the source files (context, another stage, an image,
//! heredocs), and writing them into the image's filesystem. The files go in
//! as a tar stream applied with the store's layer extractor, which resolves
//! every destination inside the image root (a symlink in the image cannot
//! send a write outside it) and creates missing parent directories.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_oci::layer::{ApplyOptions, WhiteoutMode, apply_layer};
use sha2::{Digest as _, Sha256};

use crate::dockerignore::Dockerignore;

use super::BuildError;
use super::context::{Context, ContextEntry, EntryKind};
use super::rootfs;

/// Where a copied item's bytes come from.
#[derive(Debug, Clone)]
pub enum ItemData {
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Dir,
    Symlink(String),
}

/// One file, directory or link to write, relative to the destination.
#[derive(Debug, Clone)]
pub struct Item {
    /// "" = the destination itself.
    pub rel: String,
    pub data: ItemData,
    pub mode: u32,
    /// The source's owner, kept when copying from a stage or an image
    /// (context files belong to root); `--chown` overrides it.
    pub owner: Option<(u32, u32)>,
    /// Modification time of the source (seconds); the layer clamps it.
    pub mtime: u64,
}

/// The files one COPY/ADD writes, and whether the destination is a directory.
#[derive(Debug, Default)]
pub struct Selection {
    pub items: Vec<Item>,
    /// A source was a directory or a pattern, or there were several: the
    /// destination must be a directory.
    pub needs_dir: bool,
    /// What went into the cache key (content digests, modes, names).
    pub hasher: KeyHasher,
}

/// Accumulates what identifies a selection's content.
#[derive(Default)]
pub struct KeyHasher(Sha256);

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

impl KeyHasher {
    pub fn add(&mut self, part: &str) {
        self.0.update(part.as_bytes());
        self.0.update([0u8]);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Cleans a source path as BuildKit does: relative to the context, no `./`,
/// no trailing slash, `..` clamped at the root.
pub fn clean_source(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn matcher(patterns: &[String]) -> Result<Option<Dockerignore>, BuildError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    Dockerignore::from_patterns(patterns)
        .map(Some)
        .map_err(|e| BuildError::Context(e.to_string()))
}

fn basename(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Follows a context symlink named directly as a source, inside the context.
fn follow_context_link<'c>(ctx: &'c Context, entry: &'c ContextEntry) -> Option<&'c ContextEntry> {
    if entry.kind != EntryKind::Symlink {
        return Some(entry);
    }
    ctx.get(&resolve_context_path(ctx, &entry.rel)?)
}

/// The context path `path` names with every symlink on the way followed
/// inside the context (`current -> releases/v2`, `loop -> .`): "" for the
/// context root, None when it leads nowhere or out of the context.
fn resolve_context_path(ctx: &Context, path: &str) -> Option<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .rev()
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            done.pop()?;
            continue;
        }
        let candidate = if done.is_empty() {
            comp.clone()
        } else {
            format!("{}/{comp}", done.join("/"))
        };
        let entry = ctx.get(&candidate)?;
        if entry.kind == EntryKind::Symlink {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = entry.link_target.as_deref()?;
            if target.starts_with('/') {
                done.clear();
            }
            for c in target.split('/').rev() {
                if !c.is_empty() && c != "." {
                    todo.push(c.to_string());
                }
            }
        } else {
            done.push(comp);
        }
    }
    Some(done.join("/"))
}

/// Selects context sources.
pub fn select_context(
    ctx: &Context,
    sources: &[String],
    excludes: &[String],
    parents: bool,
) -> Result<Selection, BuildError> {
    let exclude = matcher(excludes)?;
    let mut sel = Selection {
        needs_dir: sources.len() > 1,
        ..Selection::default()
    };
    for raw in sources {
        let src = clean_source(raw);
        let matches: Vec<&ContextEntry> = if has_glob(&src) {
            let pattern = Dockerignore::from_patterns(&[src.as_str()])
                .map_err(|e| BuildError::Context(e.to_string()))?;
            sel.needs_dir = true;
            ctx.entries()
                .iter()
                .filter(|e| pattern.patterns().iter().any(|p| p.matches(&e.rel)))
                .collect()
        } else if src.is_empty() {
            Vec::new()
        } else {
            match ctx.get(&src) {
                Some(e) => vec![e],
                None => match resolve_context_path(ctx, &src) {
                    // Through links back to the context root: all of it.
                    Some(r) if r.is_empty() => {
                        sel.needs_dir = true;
                        add_context_tree(ctx, "", "", &exclude, &mut sel)?;
                        sel.hasher.add(&format!("src {src}"));
                        continue;
                    }
                    Some(r) => ctx.get(&r).into_iter().collect(),
                    None => Vec::new(),
                },
            }
        };
        sel.hasher.add(&format!("src {src}"));
        if src.is_empty() {
            // The whole context.
            sel.needs_dir = true;
            add_context_tree(ctx, "", "", &exclude, &mut sel)?;
            continue;
        }
        if matches.is_empty() {
            return Err(BuildError::Context(format!(
                "failed to compute cache key: \"/{src}\": not found"
            )));
        }
        for m in matches {
            let target = follow_context_link(ctx, m).ok_or_else(|| {
                BuildError::Context(format!("\"/{}\": symlink leads outside the context", m.rel))
            })?;
            let prefix = if parents {
                m.rel.clone()
            } else if target.kind == EntryKind::Dir {
                String::new()
            } else {
                basename(&m.rel).to_string()
            };
            if parents {
                sel.needs_dir = true;
            }
            match target.kind {
                EntryKind::Dir => {
                    sel.needs_dir = true;
                    if parents && !prefix.is_empty() {
                        sel.items.push(Item {
                            rel: prefix.clone(),
                            data: ItemData::Dir,
                            mode: target.mode,
                            owner: None,
                            mtime: 0,
                        });
                    }
                    add_context_tree(ctx, &target.rel, &prefix, &exclude, &mut sel)?;
                }
                _ => {
                    if excluded(&exclude, &m.rel) {
                        continue;
                    }
                    add_context_entry(ctx, target, prefix, &mut sel)?;
                }
            }
        }
    }
    Ok(sel)
}

fn excluded(exclude: &Option<Dockerignore>, rel: &str) -> bool {
    exclude.as_ref().is_some_and(|m| m.is_excluded(rel))
}

fn add_context_tree(
    ctx: &Context,
    dir_rel: &str,
    prefix: &str,
    exclude: &Option<Dockerignore>,
    sel: &mut Selection,
) -> Result<(), BuildError> {
    let strip = if dir_rel.is_empty() {
        0
    } else {
        dir_rel.len() + 1
    };
    for e in ctx.children_of(dir_rel) {
        let below = &e.rel[strip..];
        if excluded(exclude, &e.rel) || excluded(exclude, below) {
            continue;
        }
        let rel = if prefix.is_empty() {
            below.to_string()
        } else {
            format!("{prefix}/{below}")
        };
        add_context_entry(ctx, e, rel, sel)?;
    }
    Ok(())
}

fn add_context_entry(
    ctx: &Context,
    e: &ContextEntry,
    rel: String,
    sel: &mut Selection,
) -> Result<(), BuildError> {
    let mut mtime = e.mtime();
    let data = match e.kind {
        EntryKind::Dir => {
            sel.hasher.add(&format!("d {rel} {:o}", e.mode));
            ItemData::Dir
        }
        EntryKind::Symlink => {
            let t = e.link_target.clone().unwrap_or_default();
            sel.hasher.add(&format!("l {rel} {t}"));
            ItemData::Symlink(t)
        }
        EntryKind::File => {
            let digest = ctx.file_digest(e)?;
            mtime = e.mtime();
            sel.hasher.add(&format!("f {rel} {:o} {digest}", e.mode));
            ItemData::HostFile(ctx.host_path(e))
        }
    };
    sel.items.push(Item {
        rel,
        data,
        mode: e.mode,
        owner: None,
        mtime,
    });
    Ok(())
}

/// Selects sources from another stage's or an image's filesystem mounted at
/// `root` on the host. Patterns may be used in the last path component.
pub fn select_tree(
    root: &Path,
    sources: &[String],
    excludes: &[String],
    parents: bool,
) -> Result<Selection, BuildError> {
    let exclude = matcher(excludes)?;
    let mut sel = Selection {
        needs_dir: sources.len() > 1,
        ..Selection::default()
    };
    for raw in sources {
        let src = clean_source(raw);
        sel.hasher.add(&format!("src {src}"));
        let candidates: Vec<String> = if has_glob(basename(&src)) {
            sel.needs_dir = true;
            let (dir, pat) = src.rsplit_once('/').unwrap_or(("", src.as_str()));
            let pattern = Dockerignore::from_patterns(&[pat])
                .map_err(|e| BuildError::Context(e.to_string()))?;
            let host_dir = rootfs::resolve_in_root(root, dir)
                .map_err(|e| BuildError::io(&root.join(dir), e))?;
            let mut names: Vec<String> = match host_dir {
                None => Vec::new(),
                Some(host_dir) => fs::read_dir(&host_dir)
                    .map_err(|e| BuildError::io(&host_dir, e))?
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| pattern.patterns().iter().any(|p| p.matches(n)))
                    .collect(),
            };
            names.sort();
            names
                .into_iter()
                .map(|n| {
                    if dir.is_empty() {
                        n
                    } else {
                        format!("{dir}/{n}")
                    }
                })
                .collect()
        } else {
            vec![src.clone()]
        };
        let mut found = false;
        for cand in candidates {
            let Some(host) = rootfs::resolve_in_root(root, &cand)
                .map_err(|e| BuildError::io(&root.join(&cand), e))?
            else {
                continue;
            };
            found = true;
            let meta = fs::metadata(&host).map_err(|e| BuildError::io(&host, e))?;
            let prefix = if parents {
                cand.clone()
            } else if meta.is_dir() {
                String::new()
            } else {
                basename(&cand).to_string()
            };
            if meta.is_dir() {
                sel.needs_dir = true;
                if parents && !prefix.is_empty() {
                    sel.items.push(Item {
                        rel: prefix.clone(),
                        data: ItemData::Dir,
                        mode: meta.permissions().mode() & 0o7777,
                        owner: Some((meta.uid(), meta.gid())),
                        mtime: u64::try_from(meta.mtime()).unwrap_or(0),
                    });
                }
                walk_host(&host, "", &prefix, &cand, &exclude, &mut sel)?;
            } else if !excluded(&exclude, &cand) {
                sel.hasher.add(&format!("f {prefix}"));
                sel.items.push(Item {
                    rel: prefix,
                    data: ItemData::HostFile(host),
                    mode: meta.permissions().mode() & 0o7777,
                    owner: Some((meta.uid(), meta.gid())),
                    mtime: u64::try_from(meta.mtime()).unwrap_or(0),
                });
            }
        }
        if !found {
            return Err(BuildError::Context(format!(
                "failed to compute cache key: \"/{src}\": not found"
            )));
        }
    }
    Ok(sel)
}

fn walk_host(
    host_dir: &Path,
    below: &str,
    prefix: &str,
    src_rel: &str,
    exclude: &Option<Dockerignore>,
    sel: &mut Selection,
) -> Result<(), BuildError> {
    let dir = if below.is_empty() {
        host_dir.to_path_buf()
    } else {
        host_dir.join(below)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| BuildError::io(&dir, e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let child_below = if below.is_empty() {
            name.clone()
        } else {
            format!("{below}/{name}")
        };
        // Patterns match below the source as well as from the root.
        if excluded(exclude, &child_below) || excluded(exclude, &format!("{src_rel}/{child_below}"))
        {
            continue;
        }
        let rel = if prefix.is_empty() {
            child_below.clone()
        } else {
            format!("{prefix}/{child_below}")
        };
        let path = host_dir.join(&child_below);
        let meta = fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        let mode = meta.mode() & 0o7777;
        let owner = Some((meta.uid(), meta.gid()));
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let ft = meta.file_type();
        if ft.is_dir() {
            sel.items.push(Item {
                rel,
                data: ItemData::Dir,
                mode,
                owner,
                mtime,
            });
            walk_host(host_dir, &child_below, prefix, src_rel, exclude, sel)?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).map_err(|e| BuildError::io(&path, e))?;
            sel.items.push(Item {
                rel,
                data: ItemData::Symlink(t.to_string_lossy().into_owned()),
                mode,
                owner,
                mtime,
            });
        } else if ft.is_file() {
            sel.items.push(Item {
                rel,
                data: ItemData::HostFile(path),
                mode,
                owner,
                mtime,
            });
        }
    }
    Ok(())
}

/// `--chmod`: octal, or symbolic (`u+x,go=r`) applied to each item's mode.
#[derive(Debug, Clone)]
pub enum ModeChange {
    Octal(u32),
    Symbolic(String),
}

impl ModeChange {
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeChange::Octal(m) => *m,
            ModeChange::Symbolic(s) => apply_symbolic(s, mode, is_dir),
        }
    }
}

fn apply_symbolic(spec: &str, mut mode: u32, is_dir: bool) -> u32 {
    for clause in spec.split(',') {
        let who_end = clause.find(['+', '-', '=']).unwrap_or(clause.len());
        let (who, rest) = clause.split_at(who_end);
        let mut mask = 0u32;
        for c in who.chars() {
            mask |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => 0,
            };
        }
        if who.is_empty() {
            mask = 0o7777;
        }
        let mut chars = rest.chars().peekable();
        while let Some(op) = chars.next() {
            let mut bits = 0u32;
            while let Some(&c) = chars.peek() {
                if matches!(c, '+' | '-' | '=') {
                    break;
                }
                chars.next();
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => 0,
                };
            }
            let bits = bits & mask;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                '=' => mode = (mode & !(mask & 0o7777)) | bits,
                _ => {}
            }
        }
    }
    mode & 0o7777
}

/// How the selected items land in the image.
pub struct Placement {
    /// Absolute destination path in the image.
    pub dest: String,
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<ModeChange>,
    /// `SOURCE_DATE_EPOCH`: later modification times are written as this,
    /// so the layer commit has no times left to clamp.
    pub mtime_clamp: Option<i64>,
    /// The overlay upper directory of the mount `root` is, if it is one: a
    /// destination absent from the mount is written straight into it, past
    /// overlayfs (nothing below can show through a new directory).
    pub upper: Option<PathBuf>,
}

impl Placement {
    /// Files land at `dest` with their own owners, modes and times.
    pub fn at(dest: impl Into<String>) -> Placement {
        Placement {
            dest: dest.into(),
            owner: None,
            chmod: None,
            mtime_clamp: None,
            upper: None,
        }
    }
}

/// Writes `sel` into the image filesystem at `root` (a host directory: the
/// merged mount of the step's snapshot).
pub fn write_into(root: &Path, sel: &Selection, place: &Placement) -> Result<(), BuildError> {
    // Symlinks on the way are followed inside the image, dangling ones too
    // (`/l -> /tmp/x`: COPY f /l/ writes /tmp/x/f), as BuildKit does.
    let dest_rel = resolve_lexically(root, place.dest.trim_end_matches('/'))
        .map_err(|e| BuildError::io(&root.join(place.dest.trim_start_matches('/')), e))?;
    let dest_is_dir = sel.needs_dir
        || place.dest.ends_with('/')
        || sel.items.is_empty()
        || fs::symlink_metadata(root.join(&dest_rel)).is_ok_and(|m| m.is_dir());
    let default_owner = place.owner.unwrap_or((0, 0));
    // Names in the stream: the destination joined with each item.
    let name_of = |item: &Item| -> String {
        if dest_is_dir {
            if item.rel.is_empty() {
                dest_rel.clone()
            } else if dest_rel.is_empty() {
                item.rel.clone()
            } else {
                format!("{dest_rel}/{}", item.rel)
            }
        } else {
            dest_rel.clone()
        }
    };
    // Missing directories on the way to the destination (and the
    // destination itself) are made, owned like the files (`--chown`).
    let mut missing_dirs = Vec::new();
    let dir_path = if dest_is_dir {
        dest_rel.as_str()
    } else {
        dest_rel.rsplit_once('/').map_or("", |(p, _)| p)
    };
    if !dir_path.is_empty() {
        let mut prefix = String::new();
        for comp in dir_path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if fs::symlink_metadata(root.join(&prefix)).is_err() {
                missing_dirs.push(prefix.clone());
            }
        }
    }
    // A new destination goes straight into the upper dir: its first missing
    // directory is made through the mount (which copies its parents up, or
    // makes it opaque over a whiteout), then nothing of the layers below is
    // visible under it.
    let target = match (&place.upper, missing_dirs.first()) {
        (Some(upper), Some(first))
            if make_dir_in_root(root, first)
                .map_err(|e| BuildError::io(&root.join(first), e))? =>
        {
            upper.as_path()
        }
        _ => root,
    };
    let clamp = place.mtime_clamp.map(|c| u64::try_from(c).unwrap_or(0));
    let items: Vec<(String, Item)> = sel.items.iter().map(|i| (name_of(i), i.clone())).collect();
    let chmod = place.chmod.clone();
    let forced_owner = place.owner;
    let dest_for_mode = dest_rel.clone();
    let (reader, writer) = io::pipe().map_err(|e| BuildError::io(root, e))?;
    let producer = std::thread::spawn(move || -> io::Result<()> {
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, writer));
        tar.mode(tar::HeaderMode::Deterministic);
        let header_for = |kind: tar::EntryType, mode: u32, size: u64, item: Option<&Item>| {
            let (uid, gid) = forced_owner
                .or(item.and_then(|i| i.owner))
                .unwrap_or(default_owner);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
            h.set_size(size);
            let mtime = item.map_or(0, |i| i.mtime);
            h.set_mtime(clamp.map_or(mtime, |c| mtime.min(c)));
            h
        };
        for dir in &missing_dirs {
            // The destination directory itself takes --chmod; parents 0755.
            let mode = match &chmod {
                Some(c) if *dir == dest_for_mode => c.apply(0o755, true),
                _ => 0o755,
            };
            let mut h = header_for(tar::EntryType::Directory, mode, 0, None);
            tar.append_data(&mut h, format!("{dir}/"), io::empty())?;
        }
        for (name, item) in items {
            if name.is_empty() {
                continue;
            }
            match &item.data {
                ItemData::Dir => {
                    let mode = chmod
                        .as_ref()
                        .map_or(item.mode, |c| c.apply(item.mode, true));
                    let mut h = header_for(tar::EntryType::Directory, mode, 0, Some(&item));
                    tar.append_data(&mut h, format!("{name}/"), io::empty())?;
                }
                ItemData::Symlink(target) => {
                    let mut h = header_for(tar::EntryType::Symlink, 0o777, 0, Some(&item));
                    tar.append_link(&mut h, &name, target)?;
                }
                ItemData::HostFile(path) => {
                    let f = fs::File::open(path)?;
                    let size = f.metadata()?.len();
                    let mode = chmod
                        .as_ref()
                        .map_or(item.mode, |c| c.apply(item.mode, false));
                    let mut h = header_for(tar::EntryType::Regular, mode, size, Some(&item));
                    // A file that changes size while read is an error, not a
                    // corrupt stream: take exactly `size` bytes.
                    let mut limited = f.take(size);
                    tar.append_data(&mut h, &name, &mut limited)?;
                }
                ItemData::Bytes(bytes) => {
                    let mode = chmod
                        .as_ref()
                        .map_or(item.mode, |c| c.apply(item.mode, false));
                    let mut h = header_for(
                        tar::EntryType::Regular,
                        mode,
                        bytes.len() as u64,
                        Some(&item),
                    );
                    tar.append_data(&mut h, &name, bytes.as_slice())?;
                }
            }
        }
        tar.into_inner()?.flush()
    });
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..ApplyOptions::default()
    };
    let applied = apply_layer(io::BufReader::new(reader), target, &opts);
    let produced = producer
        .join()
        .map_err(|_| BuildError::Context("copy writer thread panicked".to_string()))?;
    produced.map_err(|e| BuildError::Copy(format!("reading sources: {e}")))?;
    applied.map_err(|e| BuildError::Copy(format!("{e:#}")))?;
    Ok(())
}

/// Makes the directory `rel` (whose parent exists, reached without
/// following a symlink out of `root`) owner-only for now: the stream
/// entry that follows gives it its mode and owner. False when something
/// is there already.
fn make_dir_in_root(root: &Path, rel: &str) -> io::Result<bool> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = rootfs::open_in_root(root, parent, libc::O_DIRECTORY | libc::O_RDONLY)?;
    match nix::sys::stat::mkdirat(&dir, name, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The path `path` names inside `root` with every symlink on the way
/// followed inside the root, dangling or not (relative to the root, no
/// leading slash). `..` never climbs above the root; more than 40 links is
/// an error, as for the kernel.
pub fn resolve_lexically(root: &Path, path: &str) -> io::Result<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .rev()
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            done.pop();
            continue;
        }
        let candidate = if done.is_empty() {
            comp.clone()
        } else {
            format!("{}/{comp}", done.join("/"))
        };
        // `done` holds no symlinks, so only the last component can be one.
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(root.join(&candidate))?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in target.split('/').rev() {
                    if !c.is_empty() && c != "." {
                        todo.push(c.to_string());
                    }
                }
            }
            _ => done.push(comp),
        }
    }
    Ok(done.join("/"))
}

/// Extracts a local tar archive (plain, gzip or zstd) into `dest` inside the
/// image root, as ADD does; files keep the archive's owners.
pub fn extract_archive(
    root: &Path,
    archive: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
) -> Result<(), BuildError> {
    let dest_rel = dest.trim_matches('/');
    let target = if dest_rel.is_empty() {
        root.to_path_buf()
    } else {
        if !rootfs::exists_in_root(root, dest_rel) {
            // Make the directory (and parents) through an empty stream entry.
            let sel = Selection {
                needs_dir: true,
                ..Selection::default()
            };
            write_into(root, &sel, &Placement::at(format!("/{dest_rel}/")))?;
        }
        rootfs::resolve_in_root(root, dest_rel)
            .map_err(|e| BuildError::io(&root.join(dest_rel), e))?
            .ok_or_else(|| BuildError::Copy(format!("{dest}: not found after creating it")))?
    };
    let kind = archive_kind(archive).map_err(|e| BuildError::io(archive, e))?;
    let file = io::BufReader::new(fs::File::open(archive).map_err(|e| BuildError::io(archive, e))?);
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        owner,
        literal_whiteouts: true,
        ..ApplyOptions::default()
    };
    // The extractor itself recognises gzip, zstd and plain tar.
    let reader: Box<dyn Read + Send> = match kind {
        Some("bzip2") => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Some("xz") => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        _ => Box::new(file),
    };
    apply_layer(io::BufReader::new(reader), &target, &opts)
        .map_err(|e| BuildError::Copy(format!("extracting {}: {e:#}", archive.display())))?;
    Ok(())
}

/// What kind of archive ADD should unpack a file as: gzip, zstd, bzip2, xz
/// or plain tar (by content, not name), or None for a plain file. A
/// compressed file whose content is not a tar is a plain file, as in Docker.
pub fn archive_kind(path: &Path) -> io::Result<Option<&'static str>> {
    let mut head = Vec::with_capacity(512);
    fs::File::open(path)?.take(512).read_to_end(&mut head)?;
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        "gzip"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else if head.starts_with(b"BZh") {
        "bzip2"
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz"
    } else {
        return Ok(is_tar_header(&head).then_some("tar"));
    };
    let file = io::BufReader::new(fs::File::open(path)?);
    let mut decoded: Box<dyn Read> = match kind {
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(file)),
        "zstd" => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        "bzip2" => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        _ => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
    };
    let mut inner = Vec::with_capacity(512);
    // A corrupt stream is not an archive either: copy it as it is.
    if decoded.by_ref().take(512).read_to_end(&mut inner).is_err() {
        return Ok(None);
    }
    Ok(is_tar_header(&inner).then_some(kind))
}

/// A tar header: 512 bytes whose checksum field matches (ustar, GNU and v7).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_cleaned_like_buildkit() {
        assert_eq!(clean_source("./src/"), "src");
        assert_eq!(clean_source("/a/./b/../c"), "a/c");
        assert_eq!(clean_source("../../etc/passwd"), "etc/passwd");
        assert_eq!(clean_source("."), "");
    }

    #[test]
    fn symbolic_chmod() {
        assert_eq!(apply_symbolic("u+x", 0o644, false), 0o744);
        assert_eq!(apply_symbolic("go-r", 0o644, false), 0o600);
        assert_eq!(apply_symbolic("a=r", 0o755, false), 0o444);
        assert_eq!(apply_symbolic("u=rwx,g=rx,o=", 0o600, false), 0o750);
        assert_eq!(apply_symbolic("a+X", 0o644, true), 0o755);
        assert_eq!(apply_symbolic("a+X", 0o644, false), 0o644);
        assert_eq!(ModeChange::Octal(0o700).apply(0o644, false), 0o700);
    }

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_are_recognised_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("a.tar");
        fs::write(&tar, tar_bytes()).unwrap();
        assert_eq!(archive_kind(&tar).unwrap(), Some("tar"));

        let gz = dir.path().join("a.bin");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar_bytes()).unwrap();
        fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(archive_kind(&gz).unwrap(), Some("gzip"));

        // A compressed file that is not a tar is copied, not unpacked.
        let gz_text = dir.path().join("notes.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'x'; 600]).unwrap();
        fs::write(&gz_text, enc.finish().unwrap()).unwrap();
        assert_eq!(archive_kind(&gz_text).unwrap(), None);

        let bz = dir.path().join("a.tbz");
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.write_all(&tar_bytes()).unwrap();
        fs::write(&bz, enc.finish().unwrap()).unwrap();
        assert_eq!(archive_kind(&bz).unwrap(), Some("bzip2"));

        let xz = dir.path().join("a.txz");
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(&tar_bytes()).unwrap();
        fs::write(&xz, enc.finish().unwrap()).unwrap();
        assert_eq!(archive_kind(&xz).unwrap(), Some("xz"));

        let plain = dir.path().join("plain.txt");
        fs::write(&plain, "just text").unwrap();
        assert_eq!(archive_kind(&plain).unwrap(), None);
    }
}
