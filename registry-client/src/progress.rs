//! Progress events. The library reports; the caller renders (the CLI draws
//! bars, a build prints lines, tests may ignore them).

use berth_oci::Digest;

/// What happened to one blob or manifest.
#[derive(Debug, Clone)]
pub enum Event {
    /// A manifest was resolved (`digest` of the bytes received).
    Resolved {
        reference: String,
        digest: Digest,
        media_type: String,
    },
    /// A blob transfer starts; `offset` > 0 when resuming a partial download.
    Started {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// Bytes moved so far for a blob.
    Advanced {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// A blob was transferred and verified.
    Finished { digest: Digest, size: u64 },
    /// A blob needed no transfer (already in the store or the registry).
    Skipped {
        digest: Digest,
        size: u64,
        reason: SkipReason,
    },
    /// A manifest was written (to the store on pull, to the registry on push).
    ManifestStored { reference: String, digest: Digest },
    /// A request is retried after a transient failure.
    Retrying {
        what: String,
        attempt: u32,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Already in the local store.
    Present,
    /// Already in the target repository.
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// Receives progress events; called from several tasks at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Discards every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}
