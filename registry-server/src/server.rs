//! Binding, TLS, the accept loop with graceful shutdown, and the background
//! work of a running server (abandoned uploads, scheduled GC).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::auth::{Auth, AuthSetupError};
use crate::config::{Config, TlsConfig};
use crate::gc::{self, GcOptions, GcReport};
use crate::limits::Limits;
use crate::registry::{Registry, RegistryOptions};
use crate::routes::{AppState, Shared, router};
use crate::storage::{FilesystemDriver, StorageDriver};

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often abandoned uploads and idle rate-limit buckets are cleaned.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the storage root {path}")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("auth setup failed")]
    Auth(#[from] AuthSetupError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("garbage collection failed")]
    Gc(#[source] crate::error::ApiError),
}

fn registry_of(config: &Config) -> Result<Registry, ServerError> {
    std::fs::create_dir_all(&config.root).map_err(|source| ServerError::Root {
        path: config.root.display().to_string(),
        source,
    })?;
    let driver: Arc<dyn StorageDriver> = Arc::new(FilesystemDriver::new(&config.root));
    Ok(Registry::new(
        driver,
        RegistryOptions {
            delete_enabled: config.storage.delete_enabled,
            manifest_max_bytes: config.storage.manifest_max_bytes,
            blob_max_bytes: config.storage.blob_max_bytes,
        },
    ))
}

fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    let err = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ServerError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| err("cannot read certificates", &tls.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("bad certificate in", &tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| err("cannot read private key", &tls.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| err("cannot read client CA", ca, &e))?
            {
                let c = c.map_err(|e| err("bad certificate in", ca, &e))?;
                roots
                    .add(c)
                    .map_err(|e| err("bad certificate in", ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A bound, not yet serving registry.
pub struct Server {
    config: Config,
    state: Shared,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let registry = registry_of(&config)?;
        let auth = Auth::new(&config.auth, config.tls.is_some())?;
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener =
            TcpListener::bind(&config.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.addr.clone(),
                    source,
                })?;
        let state = Arc::new(AppState {
            registry,
            auth,
            limits: Limits::new(&config.limits),
            ready: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Server {
            config,
            state,
            listener,
            tls,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: self.config.addr.clone(),
                source,
            })
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            config,
            state,
            listener,
            tls,
        } = self;
        let app = router(state.clone());
        let housekeeping = tokio::spawn(housekeeping(state.clone(), config.clone()));
        state.ready.store(true, Ordering::Relaxed);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let service = app
                .clone()
                .map_request(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
            let service = TowerToHyperService::new(service);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    },
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        state.ready.store(false, Ordering::Relaxed);
        drop(listener);
        housekeeping.abort();
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("shutdown grace period over; dropping open connections");
            }
        }
        Ok(())
    }
}

async fn housekeeping(state: Shared, config: Config) {
    let gc_every = Duration::from_secs(config.gc.interval_secs);
    let mut next_gc = (config.gc.interval_secs > 0).then(|| tokio::time::Instant::now() + gc_every);
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY.min(if gc_every.is_zero() {
        HOUSEKEEPING_EVERY
    } else {
        gc_every
    }));
    loop {
        tick.tick().await;
        state.limits.prune();
        let cutoff = SystemTime::now()
            .checked_sub(Duration::from_secs(config.storage.upload_max_age_secs))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match state.registry.purge_uploads(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "abandoned uploads removed"),
            Err(e) => tracing::warn!(error = %e, "cleaning abandoned uploads failed"),
        }
        if let Some(at) = next_gc
            && tokio::time::Instant::now() >= at
        {
            next_gc = Some(tokio::time::Instant::now() + gc_every);
            let options = GcOptions {
                dry_run: false,
                grace: Duration::from_secs(config.gc.grace_period_secs),
                delete_untagged: config.gc.delete_untagged,
            };
            match gc::collect(&state.registry, &options).await {
                Ok(r) => tracing::info!(
                    deleted = r.blobs_deleted,
                    freed = r.bytes_freed,
                    manifests = r.manifests_deleted,
                    "gc run"
                ),
                Err(e) => tracing::warn!(error = %e, "gc failed"),
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

/// `berth registry serve`: binds, prints `listening on ADDR` as the first
/// line of stdout, serves until SIGINT/SIGTERM.
pub fn serve_blocking(config: Config) -> Result<(), ServerError> {
    runtime()?.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {addr}");
            let _ = out.flush();
        }
        server.run(shutdown_signal()).await
    })
}

/// `berth registry gc`: one collection over the configured storage.
pub fn gc_blocking(config: &Config, dry_run: bool) -> Result<GcReport, ServerError> {
    let registry = registry_of(config)?;
    let options = GcOptions {
        dry_run,
        grace: Duration::from_secs(config.gc.grace_period_secs),
        delete_untagged: config.gc.delete_untagged,
    };
    runtime()?.block_on(async move {
        gc::collect(&registry, &options)
            .await
            .map_err(ServerError::Gc)
    })
}
