//! Image archives: `oci-archive` (a tar of an OCI image layout) and
//! `docker-archive` (what `docker save` writes: `manifest.json` and
//! `repositories`, in the Docker 25+ form that is also an OCI layout).
//!
//! Import streams every blob straight into the store's ingests, verifying each
//! digest; export streams blobs from the store into the tar. Neither holds a
//! layer in memory.

mod export;
mod import;

pub use export::{ArchiveFormat, SaveItem, save};
pub use import::{LoadedImage, load};

use crate::digest::DigestError;
use crate::manifest::ManifestError;
use crate::reference::ReferenceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive")]
    Read(#[source] std::io::Error),
    #[error("writing archive {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive entry {entry:?}: {reason}")]
    BadEntry { entry: String, reason: String },
    #[error(
        "archive is neither an OCI layout nor a docker save archive (no index.json or manifest.json)"
    )]
    UnknownFormat,
    #[error("archive {file}")]
    BadDocument {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive references {what} {name:?}, which it does not contain")]
    Missing { what: &'static str, name: String },
    #[error("archive holds no image")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

#[cfg(test)]
mod tests;
