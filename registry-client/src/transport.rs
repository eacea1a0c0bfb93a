//! The HTTP layer: one `Client` per process holding the connection pools, the
//! registry endpoints it has found (scheme, auth challenge) and the token
//! cache; `send` adds authentication, answers 401 challenges, and retries
//! connection errors, 5xx and 429 with exponential backoff and jitter.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use url::Url;

use crate::auth::{Challenge, TokenCache, fetch_token, parse_challenge};
use crate::credentials::{Credential, CredentialStore};
use crate::error::{Error, Result};
use crate::progress::{Event, NoProgress, Progress};

/// How a [`Client`] reaches registries.
#[derive(Clone)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP, or over HTTPS
    /// without certificate verification when they offer it.
    pub insecure_registries: Vec<String>,
    /// Extra trusted CA certificates (PEM files).
    pub tls_ca: Vec<PathBuf>,
    /// Where a registry's API really is, by the name references use:
    /// `docker.io` -> `http://127.0.0.1:5000/` sends every `docker.io/...`
    /// reference there (a mirror or a test double). The URL's scheme is used
    /// as given, without probing.
    pub registry_endpoints: HashMap<String, Url>,
    pub credentials: CredentialStore,
    /// Attempts per request on transient failures (at least 1).
    pub max_attempts: u32,
    /// First backoff delay; doubled per attempt, with jitter.
    pub backoff: Duration,
    /// Longest `Retry-After` honoured before giving up with the 429.
    pub max_retry_after: Duration,
    /// Blob transfers in flight at once.
    pub concurrency: usize,
    /// Blobs up to this size are uploaded with one PUT; larger ones in PATCH
    /// chunks, so that an interrupted upload resumes from the server's offset.
    pub monolithic_upload_max: u64,
    /// PATCH chunk size (raised to the registry's `OCI-Chunk-Min-Length`).
    /// Large by default: every request boundary costs the registry a save
    /// and a restore of its hash state (distribution: 0.3 s more for a
    /// 512 MiB blob in four chunks than in one), and an interrupted chunk
    /// resumes from the offset the registry reports, not from its start.
    pub upload_chunk_size: u64,
    pub progress: Arc<dyn Progress>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            tls_ca: Vec::new(),
            registry_endpoints: HashMap::new(),
            credentials: CredentialStore::from_env(),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(60),
            concurrency: 4,
            monolithic_upload_max: 64 << 20,
            upload_chunk_size: 1 << 30,
            progress: Arc::new(NoProgress),
        }
    }
}

/// A registry client; cheap to clone, share one per process.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: ClientOptions,
    verified: reqwest::Client,
    unverified: reqwest::Client,
    endpoints: tokio::sync::Mutex<HashMap<String, Arc<Endpoint>>>,
    pub(crate) tokens: TokenCache,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
}

/// A registry as found by pinging `/v2/`.
#[derive(Debug)]
pub struct Endpoint {
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Where the API is (`https://registry-1.docker.io`).
    pub base: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) challenge: Mutex<Option<Challenge>>,
}

impl Endpoint {
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| Error::Invalid(format!("bad URL path {path:?}: {e}")))
    }
}

/// Where a registry's API lives: Docker Hub's is not at `docker.io`.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client> {
        let build = |verify: bool| -> Result<reqwest::Client> {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(16);
            for path in &options.tls_ca {
                let pem = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::Invalid(format!("{}: not a PEM certificate: {e}", path.display()))
                })?;
                for cert in certs {
                    b = b.add_root_certificate(cert);
                }
            }
            if !verify {
                b = b.danger_accept_invalid_certs(true);
            }
            b.build()
                .map_err(|e| Error::Invalid(format!("cannot set up HTTP client: {e}")))
        };
        Ok(Client {
            inner: Arc::new(Inner {
                verified: build(true)?,
                unverified: build(false)?,
                options,
                endpoints: tokio::sync::Mutex::new(HashMap::new()),
                tokens: TokenCache::default(),
                credentials: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn progress(&self) -> &dyn Progress {
        self.inner.options.progress.as_ref()
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.inner
            .options
            .insecure_registries
            .iter()
            .any(|r| r == registry || r == api_host(registry))
    }

    /// The endpoint of `registry`, pinging it on first use.
    pub async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>> {
        let mut endpoints = self.inner.endpoints.lock().await;
        if let Some(e) = endpoints.get(registry) {
            return Ok(e.clone());
        }
        let endpoint = Arc::new(self.ping(registry).await?);
        endpoints.insert(registry.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    /// The API base URLs to try for `registry`, in order.
    fn candidate_bases(&self, registry: &str, insecure: bool) -> Result<Vec<Url>> {
        let overridden = self
            .inner
            .options
            .registry_endpoints
            .get(registry)
            .or_else(|| match registry {
                "index.docker.io" | "registry-1.docker.io" => {
                    self.inner.options.registry_endpoints.get("docker.io")
                }
                _ => None,
            });
        if let Some(base) = overridden {
            return Ok(vec![base.clone()]);
        }
        let host = api_host(registry);
        let mut schemes = vec!["https"];
        if insecure {
            schemes.push("http");
        }
        schemes
            .into_iter()
            .map(|scheme| {
                Url::parse(&format!("{scheme}://{host}/"))
                    .map_err(|e| Error::Invalid(format!("bad registry host {host:?}: {e}")))
            })
            .collect()
    }

    async fn ping(&self, registry: &str) -> Result<Endpoint> {
        let insecure = self.is_insecure(registry);
        let http = if insecure {
            self.inner.unverified.clone()
        } else {
            self.inner.verified.clone()
        };
        let bases = self.candidate_bases(registry, insecure)?;
        let probing = bases.len() > 1;
        let mut last_error = None;
        for base in bases {
            let scheme = base.scheme().to_string();
            let endpoint = Endpoint {
                registry: registry.to_string(),
                base,
                http: http.clone(),
                challenge: Mutex::new(None),
            };
            let url = endpoint.url("/v2/")?;
            // Probing HTTPS on an insecure registry that may speak only HTTP:
            // one try, then plain HTTP.
            let attempt = if probing && scheme == "https" {
                http.get(url.clone())
                    .send()
                    .await
                    .map_err(|e| classify(registry, e))
            } else {
                self.with_retries(registry, "ping", || {
                    let http = http.clone();
                    let url = url.clone();
                    async move { Ok(http.get(url).send().await) }
                })
                .await
            };
            match attempt {
                Ok(resp) => {
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        let challenge = resp
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_challenge);
                        if let Ok(mut c) = endpoint.challenge.lock() {
                            *c = challenge;
                        }
                    }
                    return Ok(endpoint);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Invalid(format!("cannot reach {registry}"))))
    }

    /// The stored credential for a registry, looked up once.
    pub(crate) fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Ok(cache) = self.inner.credentials.lock()
            && let Some(c) = cache.get(registry)
        {
            return Ok(c.clone());
        }
        let found = self.inner.options.credentials.get(registry)?;
        if let Ok(mut cache) = self.inner.credentials.lock() {
            cache.insert(registry.to_string(), found.clone());
        }
        Ok(found)
    }

    /// The Authorization header value for `scopes`, fetching a token if needed.
    async fn authorization(
        &self,
        endpoint: &Endpoint,
        scopes: &[String],
        credential: Option<&Credential>,
    ) -> Result<Option<String>> {
        let challenge = endpoint.challenge.lock().ok().and_then(|c| c.clone());
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match credential {
                Some(Credential::Basic { username, password }) => Some(basic(username, password)),
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let cache = &self.inner.tokens;
                if let Some(t) = cache.get(&endpoint.registry, scopes) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .with_retries_result(&endpoint.registry, "token", || {
                        fetch_token(
                            &endpoint.http,
                            &endpoint.registry,
                            &realm,
                            service.as_deref(),
                            scopes,
                            credential,
                        )
                    })
                    .await?;
                cache.put(
                    &endpoint.registry,
                    scopes,
                    token.value.clone(),
                    token.lifetime,
                );
                Ok(Some(format!("Bearer {}", token.value)))
            }
        }
    }

    /// Sends a request built by `build` (called once per attempt) with the
    /// auth for `scopes`, answering one 401 challenge and retrying transient
    /// failures. Non-success statuses other than 401/429/5xx are returned for
    /// the caller to interpret.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        scopes: &[String],
        what: &str,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    ) -> Result<Response> {
        let credential = self.credential(&endpoint.registry)?;
        self.send_as(endpoint, scopes, what, credential.as_ref(), true, build)
            .await
    }

    pub(crate) async fn send_as(
        &self,
        endpoint: &Endpoint,
        scopes: &[String],
        what: &str,
        credential: Option<&Credential>,
        retry: bool,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    ) -> Result<Response> {
        let mut answered_challenge = false;
        loop {
            let auth = self.authorization(endpoint, scopes, credential).await?;
            let attempt = || {
                let auth = auth.clone();
                let req = build(&endpoint.http);
                async move {
                    let mut req = req?;
                    if let Some(a) = auth {
                        req = req.header(reqwest::header::AUTHORIZATION, a);
                    }
                    Ok(req.send().await)
                }
            };
            let resp = if retry {
                self.with_retries(&endpoint.registry, what, attempt).await?
            } else {
                match attempt().await? {
                    Ok(r) => r,
                    Err(e) => return Err(classify(&endpoint.registry, e)),
                }
            };
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let offered = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let known = endpoint.challenge.lock().ok().and_then(|c| c.clone());
            // Retry once when the challenge is new or a cached token went stale.
            if answered_challenge || offered.is_none() || (known == offered && auth.is_none()) {
                return Err(status_error(endpoint, "", what, resp).await);
            }
            answered_challenge = true;
            self.inner.tokens.forget(&endpoint.registry, scopes);
            if let Ok(mut c) = endpoint.challenge.lock() {
                *c = offered;
            }
        }
    }

    /// Runs `attempt` until it yields a response that is not a transient
    /// failure, or the attempts run out.
    async fn with_retries<F, Fut>(&self, registry: &str, what: &str, attempt: F) -> Result<Response>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Result<Response>>>,
    {
        let max = self.inner.options.max_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let last = n >= max;
            match attempt().await? {
                Err(e) => {
                    let err = classify(registry, e);
                    if last || !err.is_transient() {
                        return Err(err);
                    }
                    self.retry_pause(what, n, &err, None).await;
                }
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let err = rate_limited(registry, resp.headers());
                    let wait = match &err {
                        Error::RateLimited { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    if last || wait.is_some_and(|w| w > self.inner.options.max_retry_after) {
                        return Err(err);
                    }
                    self.retry_pause(what, n, &err, wait).await;
                }
                Ok(resp) if resp.status().is_server_error() && !last => {
                    let err = Error::Protocol {
                        host: registry.to_string(),
                        message: format!("{what}: HTTP {}", resp.status()),
                    };
                    self.retry_pause(what, n, &err, None).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    async fn with_retries_result<T, F, Fut>(&self, _registry: &str, what: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let max = self.inner.options.max_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            match f().await {
                Err(e) if n < max && e.is_transient() => self.retry_pause(what, n, &e, None).await,
                other => return other,
            }
        }
    }

    pub(crate) async fn retry_pause(
        &self,
        what: &str,
        attempt: u32,
        error: &Error,
        at_least: Option<Duration>,
    ) {
        self.progress().event(Event::Retrying {
            what: what.to_string(),
            attempt,
            error: error.to_string(),
        });
        tokio::time::sleep(self.backoff(attempt).max(at_least.unwrap_or_default())).await;
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.options.backoff;
        let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
        let capped = exp.min(Duration::from_secs(10));
        // Full jitter in [cap/2, cap) spreads out clients that failed together.
        let factor = rand::rng().random_range(0.5..1.0);
        capped.mul_f64(factor)
    }

    /// Checks credentials against a registry (for `berth login`): a request to
    /// `/v2/` with them, through the token service when the registry has one.
    pub async fn verify_login(&self, registry: &str, credential: &Credential) -> Result<()> {
        let endpoint = self.endpoint(registry).await?;
        let url = endpoint.url("/v2/")?;
        let resp = self
            .send_as(&endpoint, &[], "login", Some(credential), true, |http| {
                Ok(http.get(url.clone()))
            })
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(status_error(&endpoint, "", "login", resp).await)
    }
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Turns a reqwest failure into the crate's error, recognising TLS trouble.
pub(crate) fn classify(registry: &str, e: reqwest::Error) -> Error {
    let host = registry.to_string();
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        chain.push_str(&s.to_string().to_ascii_lowercase());
        chain.push(' ');
        source = s.source();
    }
    // rustls reports a plain-HTTP server as a corrupt TLS record.
    let tls = [
        "certificate",
        "handshake",
        "unknownissuer",
        "invalid peer",
        "corrupt message",
        "invalidcontenttype",
        "received fatal alert",
    ]
    .iter()
    .any(|k| chain.contains(k));
    if tls {
        Error::Tls { host, source: e }
    } else if e.is_connect() || e.is_timeout() {
        Error::Connect { host, source: e }
    } else {
        Error::Http { host, source: e }
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn rate_limited(registry: &str, headers: &HeaderMap) -> Error {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Error::RateLimited {
        host: registry.to_string(),
        retry_after,
        limit: header_str(headers, "ratelimit-limit"),
        remaining: header_str(headers, "ratelimit-remaining"),
    }
}

/// Reads a small body whole, refusing more than `limit` bytes.
pub(crate) async fn read_limited(resp: Response, limit: usize) -> reqwest::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            out.extend_from_slice(&chunk[..limit - out.len()]);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `CODE: message` pairs from a distribution-spec error body.
pub(crate) fn error_codes(body: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let list = v.get("errors").and_then(|e| e.as_array()).cloned();
    list.unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let code = e.get("code")?.as_str()?.to_string();
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            Some((code, message))
        })
        .collect()
}

pub(crate) fn error_summary(body: &[u8]) -> Option<String> {
    let codes = error_codes(body);
    if codes.is_empty() {
        let text = String::from_utf8_lossy(body);
        let line = text.lines().next().unwrap_or_default().trim();
        return (!line.is_empty()).then(|| line.chars().take(200).collect());
    }
    Some(
        codes
            .iter()
            .map(|(c, m)| format!("{c}: {m}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The error for an unexpected response. `repository` names the repository
/// (or is empty), `what` the operation, for NAME_UNKNOWN and the like.
pub(crate) async fn status_error(
    endpoint: &Endpoint,
    repository: &str,
    what: &str,
    resp: Response,
) -> Error {
    let host = endpoint.registry.clone();
    let status = resp.status();
    let method_path = resp.url().path().to_string();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return rate_limited(&host, resp.headers());
    }
    let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
    let codes = error_codes(&body);
    let message = codes
        .first()
        .map(|(_, m)| m.clone())
        .filter(|m| !m.is_empty());
    let has = |code: &str| codes.iter().any(|(c, _)| c == code);
    if status == StatusCode::UNAUTHORIZED || has("UNAUTHORIZED") {
        return Error::Unauthorized {
            host,
            message: message.unwrap_or_else(|| "authentication required".to_string()),
        };
    }
    if status == StatusCode::FORBIDDEN || has("DENIED") {
        return Error::Denied {
            host,
            message: message.unwrap_or_else(|| "requested access to the resource is denied".into()),
        };
    }
    if has("NAME_UNKNOWN") {
        return Error::NameUnknown {
            host,
            repository: repository.to_string(),
        };
    }
    if has("MANIFEST_UNKNOWN") || (status == StatusCode::NOT_FOUND && what.starts_with("manifest"))
    {
        return Error::ManifestUnknown {
            host,
            reference: what
                .strip_prefix("manifest ")
                .unwrap_or(repository)
                .to_string(),
        };
    }
    Error::Status {
        host,
        method: what.to_string(),
        path: method_path,
        status: status.as_u16(),
        errors: codes,
    }
}
