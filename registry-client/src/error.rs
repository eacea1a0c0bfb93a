//! The crate's error type: one variant per failure a user can act on, each
//! rendered as one line naming the registry and what to do.

use std::path::PathBuf;
use std::time::Duration;

use berth_oci::manifest::ManifestError;
use berth_oci::{Digest, ReferenceError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bad manifest")]
    Manifest(#[from] ManifestError),
    #[error(
        "{host}: TLS handshake failed (pass the registry's CA with --tls-ca FILE, or --insecure-registry {host} to skip verification)"
    )]
    Tls {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{host}: cannot connect")]
    Connect {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{host}: request failed")]
    Http {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{host}: UNAUTHORIZED: {message} (log in with `berth login {host}`)")]
    Unauthorized { host: String, message: String },
    #[error("{host}: DENIED: {message}")]
    Denied { host: String, message: String },
    #[error("{host}: MANIFEST_UNKNOWN: {reference} not found")]
    ManifestUnknown { host: String, reference: String },
    #[error("{host}: NAME_UNKNOWN: repository {repository} not found")]
    NameUnknown { host: String, repository: String },
    #[error("{host}: BLOB_UNKNOWN: {digest} not found in {repository}")]
    BlobUnknown {
        host: String,
        repository: String,
        digest: Digest,
    },
    #[error("{host}: TOOMANYREQUESTS: rate limited{}{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default(), rate_limit_text(limit.as_deref(), remaining.as_deref()))]
    RateLimited {
        host: String,
        retry_after: Option<Duration>,
        limit: Option<String>,
        remaining: Option<String>,
    },
    #[error("{host}: {method} {path}: HTTP {status}{}", codes_text(errors))]
    Status {
        host: String,
        method: String,
        path: String,
        status: u16,
        errors: Vec<(String, String)>,
    },
    #[error("{host}: token service {realm}: {message}")]
    Token {
        host: String,
        realm: String,
        message: String,
    },
    #[error("{host}: protocol error: {message}")]
    Protocol { host: String, message: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{what} is over the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("{reference}: no image for platform {platform} (available: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("credentials file {path}")]
    CredentialsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid JSON")]
    CredentialsJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config file {path} is not valid JSON")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("credential helper docker-credential-{helper} {action}: {message}")]
    CredentialHelper {
        helper: String,
        action: &'static str,
        message: String,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("internal task failed: {0}")]
    Task(String),
}

fn rate_limit_text(limit: Option<&str>, remaining: Option<&str>) -> String {
    match (limit, remaining) {
        (None, None) => String::new(),
        (l, r) => format!(
            " (ratelimit-limit: {}, ratelimit-remaining: {})",
            l.unwrap_or("?"),
            r.unwrap_or("?")
        ),
    }
}

fn codes_text(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(code, message)| format!(": {code}: {message}"))
        .collect()
}

impl Error {
    /// Whether a retry of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Http { .. } | Error::RateLimited { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
