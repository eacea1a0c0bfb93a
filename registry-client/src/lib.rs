//! berth-registry-client owns talking to registries: finding a registry's
//! endpoint and auth challenge, credentials (docker config.json, containers
//! auth.json, credential helpers), bearer tokens, and moving images with
//! bounded concurrency, Range resume, retries and progress events.
//!
//! Two layers:
//! - [`Repository`]: one repository's distribution API (manifests with the
//!   right `Accept`, blobs into the store or any writer with digest
//!   verification, uploads, mounts, tags), auth handled inside.
//! - [`Client::pull`], [`Client::push`], [`Client::copy`]: whole images.
//!
//! [`Settings`] reads berth's client settings file (`insecure-registries`,
//! `registry-endpoints`), for the CLI to merge into [`ClientOptions`].
//!
//! ```no_run
//! # async fn demo(store: &berth_oci::Store) -> Result<(), berth_registry_client::Error> {
//! use berth_registry_client::{Client, ClientOptions, PullOptions};
//! let client = Client::new(ClientOptions::default())?;
//! let reference = berth_oci::Reference::parse("busybox")?;
//! let pulled = client.pull(store, &reference, &PullOptions::default()).await?;
//! println!("{}", pulled.descriptor.digest);
//! # Ok(()) }
//! ```

mod auth;
pub mod config;
mod copy;
pub mod credentials;
mod error;
pub mod progress;
mod pull;
mod push;
mod repository;
mod transport;

pub use auth::{Challenge, parse_challenge};
pub use config::Settings;
pub use credentials::{Credential, CredentialStore};
pub use error::{Error, Result};
pub use progress::{Event, NoProgress, Progress, SkipReason};
pub use pull::{PullOptions, Pulled, remote_reference};
pub use push::PushOptions;
pub use repository::{MANIFEST_ACCEPT, MountOutcome, RemoteManifest, Repository};
pub use transport::{Client, ClientOptions, Endpoint, api_host};

/// Runs a future to completion on a new single-threaded runtime (plus the
/// blocking pool), for callers that are not async themselves (the CLI).
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    // One thread for the network: the connections and the transfers that
    // read them run where their buffers are allocated and freed, which keeps
    // a pull's memory low and steady (the allocator holds on to memory freed
    // from another thread). Disk writes and hashing run on the blocking pool,
    // beside it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Task(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}
