//! berth-registry-server owns the OCI Distribution 1.1 registry that
//! `berth registry serve` runs: the HTTP API on axum ([`routes`]), what the
//! registry does independent of HTTP ([`registry`]), storage drivers
//! ([`storage`], filesystem now, fit for object stores), auth (htpasswd basic
//! auth or a built-in Docker-style token service, [`auth`]), online garbage
//! collection ([`gc`]), limits and metrics, and the YAML configuration
//! ([`config`]). It knows nothing of the registry client or of builds.

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod registry;
pub mod routes;
pub mod server;
pub mod storage;

pub use config::Config;
pub use error::{ApiError, ErrorCode};
pub use gc::{GcOptions, GcReport};
pub use server::{Server, ServerError, gc_blocking, serve_blocking};
