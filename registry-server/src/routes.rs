//! The HTTP surface: the Distribution API under `/v2/`, the token endpoint
//! and the operational endpoints, and the middleware around them (common
//! headers, auth, rate limits, metrics, request logs).
//!
//! Repository names contain `/`, so `/v2/...` is one catch-all route whose
//! path is split from the end (`.../manifests/<ref>`, `.../blobs/<digest>`,
//! `.../blobs/uploads/<id>`, `.../tags/list`, `.../referrers/<digest>`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use berth_oci::media_types as mt;
use berth_oci::{Algorithm, Digest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;

use crate::auth::{Action, Auth};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::limits::Limits;
use crate::metrics::METRICS;
use crate::names::{is_valid_name, is_valid_upload_id};
use crate::registry::{Registry, paginate, range_header};

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const CONTENT_DIGEST: &str = "docker-content-digest";
pub const UPLOAD_UUID: &str = "docker-upload-uuid";
pub const OCI_SUBJECT: &str = "oci-subject";
pub const OCI_FILTERS_APPLIED: &str = "oci-filters-applied";

pub struct AppState {
    pub registry: Registry,
    pub auth: Auth,
    pub limits: Limits,
    /// Set once the storage root answered; `/readyz` reports it.
    pub ready: std::sync::atomic::AtomicBool,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
        .route("/token", get(crate::auth::token_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { METRICS.render() }))
        .layer(middleware::from_fn_with_state(state.clone(), around))
        .with_state(state)
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// Route label for metrics and logs.
fn route_label(path: &str) -> &'static str {
    if path == "/v2" || path == "/v2/" {
        "base"
    } else if path == "/v2/_catalog" {
        "catalog"
    } else if let Some(rest) = path.strip_prefix("/v2/") {
        if rest.contains("/blobs/uploads") {
            "uploads"
        } else if rest.contains("/blobs/") {
            "blobs"
        } else if rest.contains("/manifests/") {
            "manifests"
        } else if rest.ends_with("/tags/list") {
            "tags"
        } else if rest.contains("/referrers/") {
            "referrers"
        } else {
            "other"
        }
    } else if path == "/token" {
        "token"
    } else {
        "ops"
    }
}

/// Every request: rate limit, then the handler, then the common header,
/// metrics and a log line.
async fn around(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    // HTTP/2 requests carry the host in the URI (`:authority`), not in a
    // Host header; handlers that build absolute URLs (the token realm) read
    // the header, so give them one.
    if !req.headers().contains_key(axum::http::header::HOST)
        && let Some(authority) = req.uri().authority().cloned()
        && let Ok(value) = axum::http::HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(axum::http::header::HOST, value);
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let label = route_label(&path);
    let mut response = match client.map(|ip| state.limits.check_rate(ip)) {
        Some(Err(e)) => e.into_response(),
        _ => next.run(req).await,
    };
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    let status = response.status().as_u16();
    METRICS.request(label, status);
    tracing::info!(
        target: "berth_registry::access",
        %method,
        path,
        status,
        client = client.map(|c| c.to_string()).unwrap_or_default(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn base(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match state.auth.authorize(&headers, None).await {
        Ok(_) => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        Err(e) => e.into_response(),
    }
}

/// What a `/v2/<rest>` path names.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn parse_route(rest: &str) -> Option<Route<'_>> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some(Route::Upload(name, last))
        }
        _ => None,
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name {name:?}"),
        ))
    }
}

fn parse_digest(s: &str) -> ApiResult<Digest> {
    Digest::parse(s).map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::Unsupported, "method not allowed here")
}

async fn dispatch(
    State(state): State<Shared>,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> Response {
    match dispatch_inner(&state, method, headers, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch_inner(
    state: &Shared,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    let query = query_pairs(req.uri().query());
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let Some(route) = parse_route(rest) else {
        return Err(
            ApiError::new(ErrorCode::Unsupported, format!("no such endpoint: {path}"))
                .with_status(StatusCode::NOT_FOUND),
        );
    };
    let reg = &state.registry;
    let body = req.into_body();
    match route {
        Route::Catalog => {
            if method != Method::GET {
                return Err(method_not_allowed());
            }
            state
                .auth
                .authorize(&headers, Some(("*", Action::Catalog)))
                .await?;
            let all = reg.repositories().await?;
            let (page, n, last) = page_params(&query, all)?;
            let mut r = json_response(StatusCode::OK, &json!({ "repositories": page }));
            if let Some(link) = next_link("/v2/_catalog", &page, n, last) {
                r.headers_mut().insert(header::LINK, link);
            }
            Ok(r)
        }
        Route::Tags(name) => {
            check_name(name)?;
            if method != Method::GET {
                return Err(method_not_allowed());
            }
            state
                .auth
                .authorize(&headers, Some((name, Action::Pull)))
                .await?;
            let all = reg.tags(name).await?;
            let (page, n, last) = page_params(&query, all)?;
            let mut r = json_response(StatusCode::OK, &json!({ "name": name, "tags": page }));
            if let Some(link) = next_link(&format!("/v2/{name}/tags/list"), &page, n, last) {
                r.headers_mut().insert(header::LINK, link);
            }
            Ok(r)
        }
        Route::Manifest(name, reference) => {
            check_name(name)?;
            match method {
                Method::GET | Method::HEAD => {
                    state
                        .auth
                        .authorize(&headers, Some((name, Action::Pull)))
                        .await?;
                    let m = reg.get_manifest(name, reference).await?;
                    let len = m.content.len();
                    let body = if method == Method::HEAD {
                        Body::empty()
                    } else {
                        METRICS.bytes_out(len as u64);
                        Body::from(m.content)
                    };
                    let mut r = Response::new(body);
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_TYPE, header_value(&m.media_type)?);
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    h.insert(CONTENT_DIGEST, header_value(&m.digest.to_string())?);
                    h.insert(header::ETAG, header_value(&format!("\"{}\"", m.digest))?);
                    Ok(r)
                }
                Method::PUT => {
                    state
                        .auth
                        .authorize(&headers, Some((name, Action::Push)))
                        .await?;
                    let content = read_limited(body, reg.options().manifest_max_bytes).await?;
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    let tags: Vec<String> = query
                        .iter()
                        .filter(|(k, _)| k == "tag")
                        .map(|(_, v)| v.clone())
                        .collect();
                    let put = reg
                        .put_manifest(name, reference, content_type, content, &tags)
                        .await?;
                    let mut r = StatusCode::CREATED.into_response();
                    let h = r.headers_mut();
                    h.insert(
                        header::LOCATION,
                        header_value(&format!("/v2/{name}/manifests/{}", put.digest))?,
                    );
                    h.insert(CONTENT_DIGEST, header_value(&put.digest.to_string())?);
                    if let Some(subject) = put.subject {
                        h.insert(OCI_SUBJECT, header_value(&subject.to_string())?);
                    }
                    Ok(r)
                }
                Method::DELETE => {
                    state
                        .auth
                        .authorize(&headers, Some((name, Action::Delete)))
                        .await?;
                    reg.delete_manifest(name, reference).await?;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::Blob(name, digest) => {
            check_name(name)?;
            match method {
                Method::GET | Method::HEAD => {
                    state
                        .auth
                        .authorize(&headers, Some((name, Action::Pull)))
                        .await?;
                    let digest = parse_digest(digest)?;
                    blob_get(reg, name, &digest, &headers, method == Method::HEAD).await
                }
                Method::DELETE => {
                    state
                        .auth
                        .authorize(&headers, Some((name, Action::Delete)))
                        .await?;
                    let digest = parse_digest(digest)?;
                    reg.delete_blob(name, &digest).await?;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::Referrers(name, digest) => {
            check_name(name)?;
            if method != Method::GET {
                return Err(method_not_allowed());
            }
            state
                .auth
                .authorize(&headers, Some((name, Action::Pull)))
                .await?;
            let digest = parse_digest(digest)?;
            let mut list = reg.referrers(name, &digest).await?;
            let filter = query_get(&query, "artifactType");
            if let Some(t) = filter {
                list.retain(|d| d.artifact_type.as_deref() == Some(t));
            }
            let index = json!({
                "schemaVersion": 2,
                "mediaType": mt::OCI_INDEX,
                "manifests": list,
            });
            let mut r = json_response(StatusCode::OK, &index);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(mt::OCI_INDEX),
            );
            if filter.is_some() {
                r.headers_mut().insert(
                    OCI_FILTERS_APPLIED,
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(r)
        }
        Route::UploadStart(name) => {
            check_name(name)?;
            if method != Method::POST {
                return Err(method_not_allowed());
            }
            state
                .auth
                .authorize(&headers, Some((name, Action::Push)))
                .await?;
            let _permit = state.limits.upload_permit()?;
            upload_start(state, name, &headers, &query, body).await
        }
        Route::Upload(name, id) => {
            check_name(name)?;
            state
                .auth
                .authorize(&headers, Some((name, Action::Push)))
                .await?;
            if !is_valid_upload_id(id) {
                return Err(ApiError::new(
                    ErrorCode::BlobUploadUnknown,
                    "upload session not found",
                ));
            }
            match method {
                Method::GET => {
                    let size = reg.upload_size(name, id).await?;
                    upload_response(StatusCode::NO_CONTENT, name, id, size)
                }
                Method::PATCH => {
                    let _permit = state.limits.upload_permit()?;
                    let range = content_range(&headers)?;
                    let size = reg
                        .append_upload(name, id, body.into_data_stream(), range)
                        .await?;
                    upload_response(StatusCode::ACCEPTED, name, id, size)
                }
                Method::PUT => {
                    let _permit = state.limits.upload_permit()?;
                    let Some(d) = query_get(&query, "digest") else {
                        return Err(ApiError::new(
                            ErrorCode::DigestInvalid,
                            "the digest parameter is required to finish an upload",
                        ));
                    };
                    let digest = parse_digest(d)?;
                    let range = content_range(&headers)?;
                    reg.complete_upload(name, id, &digest, body.into_data_stream(), range)
                        .await?;
                    blob_created(name, &digest)
                }
                Method::DELETE => {
                    reg.cancel_upload(name, id).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(method_not_allowed()),
            }
        }
    }
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| ApiError::internal(&e))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `n` and `last` of a list request applied to the full sorted list.
fn page_params(
    query: &[(String, String)],
    all: Vec<String>,
) -> ApiResult<(Vec<String>, Option<usize>, bool)> {
    let n = match query_get(query, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, format!("bad page size n={n:?}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let (page, more) = paginate(all, n, query_get(query, "last"));
    Ok((page, n, more))
}

fn next_link(path: &str, page: &[String], n: Option<usize>, more: bool) -> Option<HeaderValue> {
    if !more {
        return None;
    }
    let last = page.last()?;
    let n = n?;
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    HeaderValue::from_str(&format!("<{path}?{q}>; rel=\"next\"")).ok()
}

async fn read_limited(body: Body, max: usize) -> ApiResult<Bytes> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("request body failed: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > max {
            return Err(ApiError::new(
                ErrorCode::SizeInvalid,
                format!("manifest larger than the limit of {max} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        buf.extend_from_slice(&chunk);
    }
    METRICS.bytes_in(buf.len() as u64);
    Ok(buf.freeze())
}

/// A chunk's `Content-Range: <start>-<end>` (also accepted with a `bytes `
/// prefix, as some clients send it).
fn content_range(headers: &HeaderMap) -> ApiResult<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(ErrorCode::BlobUploadInvalid, "malformed Content-Range")
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start = a.trim().parse().map_err(|_| bad())?;
    let end = b.trim().parse().map_err(|_| bad())?;
    Ok(Some((start, end)))
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> ApiResult<Response> {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/uploads/{id}"))?,
    );
    h.insert(header::RANGE, header_value(&range_header(size))?);
    h.insert(UPLOAD_UUID, header_value(id)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(r)
}

fn blob_created(name: &str, digest: &Digest) -> ApiResult<Response> {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}"))?,
    );
    h.insert(CONTENT_DIGEST, header_value(&digest.to_string())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(r)
}

async fn upload_start(
    state: &Shared,
    name: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
    body: Body,
) -> ApiResult<Response> {
    let reg = &state.registry;
    if let Some(mount) = query_get(query, "mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = query_get(query, "from")
            && is_valid_name(from)
            && state.auth.allows(headers, from, Action::Pull).await
            && reg.mount_blob(name, from, &digest).await?
        {
            return blob_created(name, &digest);
        }
        // Not mountable: the client uploads instead.
    }
    let algorithm = match query_get(query, "digest-algorithm") {
        Some(a) => a
            .parse::<Algorithm>()
            .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))?,
        None => Algorithm::Sha256,
    };
    if let Some(d) = query_get(query, "digest") {
        let digest = parse_digest(d)?;
        let id = reg.start_upload(name, digest.algorithm()).await?;
        reg.complete_upload(name, &id, &digest, body.into_data_stream(), None)
            .await?;
        return blob_created(name, &digest);
    }
    let id = reg.start_upload(name, algorithm).await?;
    let mut r = upload_response(StatusCode::ACCEPTED, name, &id, 0)?;
    r.headers_mut()
        .insert("oci-chunk-min-length", HeaderValue::from(0));
    Ok(r)
}

/// A single `bytes=` range against a blob of `size` bytes: `Ok(None)` to
/// serve the whole blob (no header, several ranges or one we do not parse),
/// `Err` when it cannot be satisfied.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(());
        }
        let n = n.min(size);
        return Ok(Some((size - n, size - 1)));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    let end = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size.saturating_sub(1)),
            _ => return Ok(None),
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn blob_get(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    headers: &HeaderMap,
    head_only: bool,
) -> ApiResult<Response> {
    let size = reg.blob_size(name, digest).await?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range(v, size).map_err(|()| {
            ApiError::new(ErrorCode::SizeInvalid, "requested range not satisfiable")
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}"))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                )
        })?,
        None => None,
    };
    let (status, offset, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head_only || len == 0 {
        Body::empty()
    } else {
        let stream = reg.blob_stream(digest, offset, len).await?;
        Body::from_stream(stream.inspect(|c| {
            if let Ok(c) = c {
                METRICS.bytes_out(c.len() as u64);
            }
        }))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_DIGEST, header_value(&digest.to_string())?);
    h.insert(header::ETAG, header_value(&format!("\"{digest}\""))?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((s, e)) = range {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {s}-{e}/{size}"))?,
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_from_the_end() {
        assert_eq!(parse_route("_catalog"), Some(Route::Catalog));
        assert_eq!(parse_route("a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            parse_route("a/blobs/manifests/latest"),
            Some(Route::Manifest("a/blobs", "latest"))
        );
        assert_eq!(
            parse_route("a/blobs/uploads/"),
            Some(Route::UploadStart("a"))
        );
        assert_eq!(
            parse_route("a/b/blobs/uploads/0123"),
            Some(Route::Upload("a/b", "0123"))
        );
        assert_eq!(
            parse_route("a/blobs/sha256:x"),
            Some(Route::Blob("a", "sha256:x"))
        );
        assert_eq!(
            parse_route("a/referrers/sha256:x"),
            Some(Route::Referrers("a", "sha256:x"))
        );
        assert_eq!(parse_route("a"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=-0", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }
}
