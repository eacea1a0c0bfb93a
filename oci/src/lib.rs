//! berth-oci is the floor of berth: digests, image references, media types and
//! the manifest/index/config documents; the local content store (an OCI image
//! layout with resumable ingests, atomic tags and mark-and-sweep GC); layer tars
//! (creation, safe extraction, whiteouts, compression); snapshots (layers unpacked
//! once per chain ID, overlayfs prepare/commit); and oci-archive/docker-archive
//! import and export. It knows nothing of HTTP, Dockerfiles or processes.

pub mod digest;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
