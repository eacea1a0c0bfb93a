//! berth-oci is the floor of berth: digests, image references, media types and
//! the manifest/index/config documents; the local content store (an OCI image
//! layout with resumable ingests, atomic tags and mark-and-sweep GC); layer tars
//! (creation, safe extraction, whiteouts, compression); snapshots (layers unpacked
//! once per chain ID, overlayfs prepare/commit); and oci-archive/docker-archive
//! import and export. It knows nothing of HTTP, Dockerfiles or processes.

pub mod archive;
pub mod digest;
pub mod image;
pub mod layer;
pub mod manifest;
pub mod media_types;
pub mod reference;
pub mod snapshot;
pub mod store;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest, Platform};
pub use reference::{Reference, ReferenceError};
pub use store::{Store, StoreError};
