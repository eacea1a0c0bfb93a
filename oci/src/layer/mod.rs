//! Layer tars: turning a directory tree into an OCI layer blob and applying a
//! layer blob onto a directory, safely.
//!
//! This module owns everything between a file system and the bytes of a layer:
//!
//! * **Creation** ([`write_dir_as_layer`], [`write_upper_as_layer`],
//!   [`write_diff_as_layer`]): a deterministic tar stream in the format Go's
//!   `archive/tar` writes for docker and containerd (ustar headers, PAX records
//!   for long names and xattrs, entries sorted bytewise within each directory,
//!   hardlinks detected by inode), compressed (gzip in parallel, zstd, or none)
//!   and hashed in one streaming pass: the diffID of the tar and the digest of
//!   the blob come out together.
//! * **Whiteouts**: overlayfs upper dirs (`0/0` char devices, `overlay.opaque`
//!   xattrs) become OCI `.wh.` entries, and on apply `.wh.` entries become
//!   either overlay whiteouts again (for a snapshot used as an overlay lowerdir)
//!   or deletions (for a plain root file system), see [`WhiteoutMode`].
//! * **Extraction** ([`apply_layer`]): decompression and hashing on a second
//!   thread, and a chroot-like resolver that never lets an entry create, write
//!   or follow a link to anything outside the target directory.
//! * **Compression helpers** ([`decompress`], [`compress_writer`]) for the
//!   archive import/export code that has to hash uncompressed streams.
//!
//! ```no_run
//! use berth_oci::layer::{apply_layer, write_dir_as_layer, ApplyOptions, CreateOptions};
//! # fn main() -> Result<(), berth_oci::layer::LayerError> {
//! let mut blob = Vec::new();
//! let digests = write_dir_as_layer("rootfs".as_ref(), &CreateOptions::default(), &mut blob)?;
//! println!("diffID {} digest {} size {}", digests.diff_id, digests.digest, digests.size);
//! let stats = apply_layer(&blob[..], "unpacked".as_ref(), &ApplyOptions::default())?;
//! assert_eq!(stats.diff_id, digests.diff_id);
//! # Ok(()) }
//! ```

mod apply;
mod compression;
mod create;
mod diff;
mod error;
mod pgzip;
mod resolve;
mod source;
mod sys;
mod tar_read;
mod tar_write;

use crate::digest::Digest;

pub use apply::{ApplyOptions, ApplyStats, WhiteoutMode, apply_layer};
pub use compression::{CompressWriter, Compression, compress_writer, decompress};
pub use create::{write_dir_as_layer, write_upper_as_layer};
pub use diff::write_diff_as_layer;
pub use error::LayerError;
pub use pgzip::ParallelGzEncoder;

/// Prefix of the name of a whiteout entry: `dir/.wh.name` deletes `dir/name`
/// of the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the entry that marks its directory opaque: nothing of the layers
/// below shows through it.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// What creating a layer produced: the two digests an image needs and the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar stream (the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the bytes written to the output (the manifest's layer digest).
    pub digest: Digest,
    /// Number of bytes written to the output.
    pub size: u64,
    /// Number of bytes of the uncompressed tar stream.
    pub uncompressed_size: u64,
}

/// How to write a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Compression level: gzip 0-9 (default 6), zstd 1-22 (default 3); ignored for `None`.
    pub level: Option<u32>,
    /// Like `SOURCE_DATE_EPOCH`: file modification times later than this are
    /// written as this (seconds since the epoch).
    pub mtime_clamp: Option<i64>,
    /// Also give the source files whose times `mtime_clamp` clamps that time
    /// on disk (atime too), as the walk meets them: what stays behind (a
    /// snapshot) then matches the layer, without a second walk.
    pub clamp_source_times: bool,
    /// Compression threads; 0 means `std::thread::available_parallelism`.
    /// The output does not depend on it.
    pub threads: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            compression: Compression::Gzip,
            level: None,
            mtime_clamp: None,
            clamp_source_times: false,
            threads: 0,
        }
    }
}

/// Resolves `threads == 0` to the number of CPUs this process may use.
pub(crate) fn effective_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Displays raw tar or file names (not necessarily UTF-8) in error messages.
pub(crate) fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
