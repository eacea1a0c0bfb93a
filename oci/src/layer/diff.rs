//! The naive differ: a layer from two full trees, for when overlayfs is not
//! available to record the change set.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::Mode;

use super::create::{LayerWriter, TreeMode, open_root};
use super::source::{FileKind, SourceMeta, stat_at};
use super::sys::{self, O_DIR_PATH};
use super::{CreateOptions, LayerDigests, LayerError, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// A directory whose children from `lower` are all gone, at least this many,
/// is written as opaque (one marker) rather than one whiteout per child.
const OPAQUE_MIN_DELETED: usize = 2;

/// The difference between `lower` (the parent's full tree) and `new` (the full
/// tree after the change) as a layer:
///
/// * entries added, or changed in type, mode, owner, size, mtime (to the
///   nanosecond), link target, xattrs or device number, are written from `new`;
///   a directory is written when it changed itself or anything below it did
///   (so its metadata survives being re-created by the layer);
/// * entries that are gone get a `.wh.<name>`; a deleted directory gets one
///   whiteout, not one per child; a directory none of whose children survive
///   (two or more) is marked opaque instead;
/// * a directory replaced by a non-directory is written as that entry (it hides
///   the directory below), a non-directory replaced by a directory as the
///   whole new subtree.
///
/// Contents are not compared: like docker's differ, a file rewritten with the
/// same size and mtime is not seen. The roots' own metadata is not compared.
pub fn write_diff_as_layer(
    lower: &Path,
    new: &Path,
    opts: &CreateOptions,
    out: impl Write + Send,
) -> Result<LayerDigests, LayerError> {
    let lower_root = open_root(lower)?;
    let new_root = open_root(new)?;
    let changes = compute_changes(lower, lower_root, new, new_root.as_fd())?;

    let mut w = LayerWriter::new(out, opts, new)?;
    let mut parents = ParentCache::default();
    for change in changes.into_iter().flatten() {
        match change {
            Change::Marker { path } => w.write_marker(&path)?,
            Change::Entry { path, meta } => {
                let (parent, name) = split_parent(&path);
                let dir = parents.open(new, new_root.as_fd(), parent)?;
                w.write_entry(dir, name, &path, &meta)?;
            }
            Change::Tree { path, meta } => {
                let (parent, name) = split_parent(&path);
                let dir = parents.open(new, new_root.as_fd(), parent)?;
                w.write_entry(dir, name, &path, &meta)?;
                let child = sys::open_dir_at(dir, name)
                    .map_err(|e| source_err(new, &path, "opening directory", e))?;
                let mut prefix = path;
                prefix.push(b'/');
                w.write_tree(child, prefix, TreeMode::Plain)?;
            }
        }
    }
    w.finish()
}

#[derive(Debug)]
enum Change {
    /// One entry of `new` (for a directory, only its own header).
    Entry { path: Vec<u8>, meta: SourceMeta },
    /// A directory of `new` and everything below it.
    Tree { path: Vec<u8>, meta: SourceMeta },
    /// A whiteout or opaque marker with this full name.
    Marker { path: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Lower,
    New,
    Both,
}

fn merge(lower: Vec<Vec<u8>>, new: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Side)> {
    let mut out = Vec::with_capacity(lower.len().max(new.len()));
    let mut l = lower.into_iter().peekable();
    let mut n = new.into_iter().peekable();
    loop {
        let side = match (l.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => Side::Lower,
            (None, Some(_)) => Side::New,
            (Some(a), Some(b)) => match a.cmp(b) {
                std::cmp::Ordering::Less => Side::Lower,
                std::cmp::Ordering::Greater => Side::New,
                std::cmp::Ordering::Equal => Side::Both,
            },
        };
        let name = match side {
            Side::Lower => l.next(),
            Side::New => n.next(),
            Side::Both => {
                n.next();
                l.next()
            }
        };
        if let Some(name) = name {
            out.push((name, side));
        }
    }
    out
}

fn source_err(root: &Path, path: &[u8], op: &'static str, e: std::io::Error) -> LayerError {
    LayerError::Source {
        path: root.join(OsStr::from_bytes(path)),
        op,
        source: e,
    }
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + name.len() + 1);
    p.extend_from_slice(prefix);
    p.extend_from_slice(name);
    p
}

/// Walks both trees in step (depth-first, bytewise order) and lists what the
/// layer must contain, in the order it must contain it. Each directory present
/// in both trees holds a slot before its children, filled in when the
/// directory or anything below it turned out to change.
fn compute_changes(
    lower_path: &Path,
    lower_root: OwnedFd,
    new_path: &Path,
    new_root: BorrowedFd<'_>,
) -> Result<Vec<Option<Change>>, LayerError> {
    struct Frame {
        lower: OwnedFd,
        new: OwnedFd,
        prefix: Vec<u8>,
        items: std::vec::IntoIter<(Vec<u8>, Side)>,
        /// Slot of this directory's own entry and its metadata in `new`.
        slot: Option<(usize, SourceMeta, bool)>,
        opaque: bool,
    }
    let list = |root: &Path, fd: BorrowedFd<'_>, prefix: &[u8]| {
        sys::list_dir(fd).map_err(|e| source_err(root, prefix, "listing directory", e))
    };
    let open = |root: &Path, fd: BorrowedFd<'_>, name: &[u8], path: &[u8]| {
        sys::open_dir_at(fd, name).map_err(|e| source_err(root, path, "opening directory", e))
    };
    let stat = |root: &Path, fd: BorrowedFd<'_>, name: &[u8], path: &[u8]| {
        stat_at(fd, name).map_err(|e| source_err(root, path, "reading metadata", e))
    };

    let new_root = new_root
        .try_clone_to_owned()
        .map_err(|e| source_err(new_path, b"", "duplicating descriptor", e))?;
    let items = merge(
        list(lower_path, lower_root.as_fd(), b"")?,
        list(new_path, new_root.as_fd(), b"")?,
    );
    let mut changes: Vec<Option<Change>> = Vec::new();
    let mut stack = vec![Frame {
        lower: lower_root,
        new: new_root,
        prefix: Vec::new(),
        items: items.into_iter(),
        slot: None,
        opaque: false,
    }];

    while let Some(frame) = stack.last_mut() {
        let Some((name, side)) = frame.items.next() else {
            let Some(done) = stack.pop() else { break };
            if let Some((slot, meta, changed)) = done.slot {
                // Unchanged subdirectories give their slots back, so anything
                // after this slot is a real change.
                if changed || changes.len() > slot + 1 {
                    let mut path = done.prefix;
                    path.pop();
                    changes[slot] = Some(Change::Entry { path, meta });
                } else {
                    changes.truncate(slot);
                }
            }
            continue;
        };
        let path = join(&frame.prefix, &name);
        match side {
            Side::Lower => {
                if !frame.opaque {
                    let mut wh = frame.prefix.clone();
                    wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                    wh.extend_from_slice(&name);
                    changes.push(Some(Change::Marker { path: wh }));
                }
            }
            Side::New => {
                let meta = stat(new_path, frame.new.as_fd(), &name, &path)?;
                match meta.kind {
                    FileKind::Socket => {}
                    FileKind::Dir => changes.push(Some(Change::Tree { path, meta })),
                    _ => changes.push(Some(Change::Entry { path, meta })),
                }
            }
            Side::Both => {
                let ml = stat(lower_path, frame.lower.as_fd(), &name, &path)?;
                let mn = stat(new_path, frame.new.as_fd(), &name, &path)?;
                if ml.is_dir() && mn.is_dir() {
                    let lower = open(lower_path, frame.lower.as_fd(), &name, &path)?;
                    let new = open(new_path, frame.new.as_fd(), &name, &path)?;
                    let items = merge(
                        list(lower_path, lower.as_fd(), &path)?,
                        list(new_path, new.as_fd(), &path)?,
                    );
                    let survivors = items.iter().filter(|(_, s)| *s == Side::Both).count();
                    let deleted = items.iter().filter(|(_, s)| *s == Side::Lower).count();
                    let opaque = survivors == 0 && deleted >= OPAQUE_MIN_DELETED;
                    let changed = ml.differs_from(&mn);
                    let slot = changes.len();
                    changes.push(None);
                    let mut prefix = path;
                    prefix.push(b'/');
                    if opaque {
                        changes.push(Some(Change::Marker {
                            path: join(&prefix, WHITEOUT_OPAQUE.as_bytes()),
                        }));
                    }
                    stack.push(Frame {
                        lower,
                        new,
                        prefix,
                        items: items.into_iter(),
                        slot: Some((slot, mn, changed)),
                        opaque,
                    });
                } else if mn.kind == FileKind::Socket {
                    // Sockets are never written; one replacing a file still
                    // deletes that file.
                    if ml.kind != FileKind::Socket {
                        changes.push(Some(Change::Marker {
                            path: join(&frame.prefix, &join(WHITEOUT_PREFIX.as_bytes(), &name)),
                        }));
                    }
                } else if mn.is_dir() {
                    changes.push(Some(Change::Tree { path, meta: mn }));
                } else if ml.is_dir() || ml.differs_from(&mn) {
                    changes.push(Some(Change::Entry { path, meta: mn }));
                }
            }
        }
    }
    Ok(changes)
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

/// The directory of `new` the last change was in, kept open across changes.
#[derive(Default)]
struct ParentCache {
    path: Option<Vec<u8>>,
    fd: Option<OwnedFd>,
}

impl ParentCache {
    fn open<'a>(
        &'a mut self,
        root_path: &Path,
        root: BorrowedFd<'a>,
        parent: &[u8],
    ) -> Result<BorrowedFd<'a>, LayerError> {
        if parent.is_empty() {
            return Ok(root);
        }
        if self.path.as_deref() != Some(parent) || self.fd.is_none() {
            let mut fd: Option<OwnedFd> = None;
            for comp in parent.split(|&b| b == b'/') {
                let at = match &fd {
                    Some(f) => f.as_fd(),
                    None => root,
                };
                let next = nix::fcntl::openat(at, comp, O_DIR_PATH, Mode::empty())
                    .map_err(|e| source_err(root_path, parent, "opening directory", e.into()))?;
                fd = Some(next);
            }
            self.fd = fd;
            self.path = Some(parent.to_vec());
        }
        match &self.fd {
            Some(fd) => Ok(fd.as_fd()),
            None => Ok(root),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_marks_sides() {
        let m = merge(
            vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()],
            vec![b"b".to_vec(), b"c".to_vec(), b"e".to_vec()],
        );
        let sides: Vec<_> = m.iter().map(|(n, s)| (n.as_slice(), *s)).collect();
        assert_eq!(
            sides,
            vec![
                (&b"a"[..], Side::Lower),
                (b"b", Side::New),
                (b"c", Side::Both),
                (b"d", Side::Lower),
                (b"e", Side::New)
            ]
        );
    }

    #[test]
    fn split_parent_works() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
    }
}
