//! The one error type of the layer module.

use std::io;
use std::path::PathBuf;

use super::Compression;

/// Why writing or applying a layer failed. Every message is one line and names
/// the layer entry (for a tar being applied) or the file (for a tree being
/// archived) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// An entry name climbs above the root of the layer (`../x`, `a/../../x`).
    #[error("layer entry {entry:?}: path escapes the target directory")]
    PathEscapes { entry: String },

    /// An entry name that can never be valid: absolute, NUL byte, empty, a
    /// whiteout of `.` or `..`, a non-directory replacing the target root.
    #[error("layer entry {entry:?}: {reason}")]
    InvalidPath { entry: String, reason: &'static str },

    /// A hardlink whose target is outside the layer root, absolute or empty.
    #[error("layer entry {entry:?}: hardlink target {target:?} {reason}")]
    InvalidLink {
        entry: String,
        target: String,
        reason: &'static str,
    },

    /// Resolving the entry's parent directory went through a symlink that
    /// climbs above the target root.
    #[error("layer entry {entry:?}: symlink {symlink:?} escapes the target directory")]
    SymlinkEscapes { entry: String, symlink: String },

    /// More than 40 symlinks while resolving the entry's parent directory.
    #[error("layer entry {entry:?}: too many levels of symbolic links")]
    TooManySymlinks { entry: String },

    /// A component of the entry's parent path exists and is not a directory.
    #[error("layer entry {entry:?}: {component:?} is not a directory")]
    NotADirectory { entry: String, component: String },

    /// A tar entry type layers may not contain (sparse files, volume labels, unknown flags).
    #[error("layer entry {entry:?}: unsupported entry type {kind}")]
    UnsupportedEntry { entry: String, kind: String },

    /// A header field or PAX record of a named entry is invalid.
    #[error("layer entry {entry:?}: {reason}")]
    MalformedEntry { entry: String, reason: String },

    /// The stream is not a valid tar at this offset (bad checksum, garbage).
    #[error("malformed layer tar at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },

    /// The tar stream ended inside a header or inside an entry's data.
    #[error("layer tar truncated at byte {offset}{}", truncated_in(.entry))]
    Truncated { offset: u64, entry: Option<String> },

    /// The compressed stream is corrupt or truncated.
    #[error("decompressing {compression} layer")]
    Decompress {
        compression: Compression,
        #[source]
        source: io::Error,
    },

    /// A file system operation for an entry failed while applying a layer.
    #[error("layer entry {entry:?}: {op}")]
    Apply {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The target directory of `apply_layer` cannot be used.
    #[error("layer target {}", .path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Reading a file of the tree being archived failed.
    #[error("{}: {op}", .path.display())]
    Source {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The tree being archived holds something a layer cannot represent.
    #[error("{}: {reason}", .path.display())]
    UnsupportedSource { path: PathBuf, reason: String },

    /// Writing the layer blob failed.
    #[error("writing layer")]
    Output(#[source] io::Error),

    /// An option is out of range (compression level, ...).
    #[error("invalid layer option: {0}")]
    InvalidOption(String),
}

fn truncated_in(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" (in the data of entry {e:?})"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_entry() {
        let e = LayerError::PathEscapes {
            entry: "../etc/passwd".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"layer entry "../etc/passwd": path escapes the target directory"#
        );
        let e = LayerError::Truncated {
            offset: 1024,
            entry: Some("a".into()),
        };
        assert_eq!(
            e.to_string(),
            r#"layer tar truncated at byte 1024 (in the data of entry "a")"#
        );
    }
}
