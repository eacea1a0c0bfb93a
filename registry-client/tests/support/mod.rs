//! A scripted registry for the client's protocol tests: Docker Hub's shape
//! (bearer token service with GET and OAuth2 POST, blob GETs redirected to a
//! separate blob host) with injected failures (429 with rate-limit headers,
//! 500, a connection dropped mid-blob). It records what clients sent so
//! tests can assert on it. Kept in memory: test blobs are small.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_oci::Digest;

pub const USER: &str = "hubuser";
pub const PASSWORD: &str = "hubpass";
pub const REFRESH_TOKEN: &str = "refresh-abc";

#[derive(Default)]
pub struct Recorded {
    /// Scope sets asked for at the token service, in order.
    pub token_scopes: Vec<Vec<String>>,
    /// Token requests made with the OAuth2 POST form.
    pub oauth_posts: usize,
    /// Requests to the blob host that carried an Authorization header.
    pub blob_host_authorized: usize,
    /// Range headers the blob host received.
    pub ranges: Vec<String>,
    pub mounts: usize,
    pub rate_limited: usize,
    /// Content-Range headers of PATCH requests.
    pub patches: Vec<String>,
    pub upload_status_checks: usize,
}

#[derive(Default)]
pub struct Faults {
    /// Answer this many manifest requests with 429 first.
    pub manifest_429: usize,
    /// Retry-After sent with those 429s (seconds).
    pub retry_after: u64,
    /// Blob whose first GET gets a 500 and second is cut in half.
    pub flaky_blob: Option<Digest>,
    /// Keep only half of the first PATCH and answer 500.
    pub cut_first_patch: bool,
}

#[derive(Default)]
pub struct MockState {
    pub blobs: HashMap<String, Bytes>,
    /// Repositories each blob is linked into.
    pub links: HashSet<(String, String)>,
    /// (repository, reference) -> (media type, bytes)
    pub manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    tokens: HashMap<String, Vec<String>>,
    flaky_hits: usize,
    pub faults: Faults,
    pub recorded: Recorded,
    registry_addr: Option<SocketAddr>,
    blob_addr: Option<SocketAddr>,
    next_id: usize,
}

pub type Shared = Arc<Mutex<MockState>>;

pub struct Mock {
    pub state: Shared,
    pub registry: SocketAddr,
    pub blob_host: SocketAddr,
}

impl Mock {
    pub async fn start() -> Mock {
        let state: Shared = Arc::default();
        let reg = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let blob = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (registry, blob_host) = (reg.local_addr().unwrap(), blob.local_addr().unwrap());
        {
            let mut s = state.lock().unwrap();
            s.registry_addr = Some(registry);
            s.blob_addr = Some(blob_host);
        }
        let app = Router::new()
            .fallback(registry_handler)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(reg, app).await });
        let app = Router::new()
            .fallback(blob_handler)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(blob, app).await });
        Mock {
            state,
            registry,
            blob_host,
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        self.registry.to_string()
    }

    pub fn add_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        let mut s = self.state.lock().unwrap();
        s.blobs.insert(d.to_string(), Bytes::copy_from_slice(bytes));
        s.links.insert((repo.to_string(), d.to_string()));
        d
    }

    pub fn add_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let d = Digest::sha256_of(bytes);
        let mut s = self.state.lock().unwrap();
        for r in [reference.to_string(), d.to_string()] {
            s.manifests.insert(
                (repo.to_string(), r),
                (media_type.to_string(), Bytes::copy_from_slice(bytes)),
            );
        }
    }
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

fn error_body(code: StatusCode, err: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": err, "message": message}]}).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn challenge(s: &MockState, scope: Option<&str>) -> Response {
    let mut value = format!(
        "Bearer realm=\"http://{}/token\",service=\"mock-registry\"",
        s.registry_addr.unwrap()
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    let mut r = error_body(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, value.parse().unwrap());
    r
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn allowed(scopes: &[String], repo: &str, action: &str) -> bool {
    scopes.iter().any(|s| {
        let mut parts = s.splitn(3, ':');
        parts.next() == Some("repository")
            && parts.next() == Some(repo)
            && parts
                .next()
                .is_some_and(|acts| acts.split(',').any(|a| a == action))
    })
}

async fn registry_handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    let path = uri.path().to_string();
    let query = query_pairs(uri.query().unwrap_or(""));
    let get = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());

    if path == "/token" {
        return token(&mut s, &method, &headers, &query, &body);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| s.tokens.get(t).cloned());
    if path == "/v2/" {
        return if bearer.is_some() {
            status(StatusCode::OK)
        } else {
            challenge(&s, None)
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let (repo, kind, tail) = ["/manifests/", "/blobs/uploads/", "/blobs/", "/tags/list"]
        .iter()
        .find_map(|k| rest.find(k).map(|i| (&rest[..i], *k, &rest[i + k.len()..])))
        .unwrap_or(("", "", ""));
    let action = if method == Method::GET || method == Method::HEAD {
        "pull"
    } else {
        "push"
    };
    let scopes = bearer.unwrap_or_default();
    if !allowed(&scopes, repo, action) {
        let scope = format!(
            "repository:{repo}:{}",
            if action == "push" {
                "pull,push"
            } else {
                "pull"
            }
        );
        return challenge(&s, Some(&scope));
    }
    match kind {
        "/manifests/" => {
            if s.faults.manifest_429 > 0 {
                s.faults.manifest_429 -= 1;
                s.recorded.rate_limited += 1;
                let mut r = error_body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "You have reached your pull rate limit.",
                );
                let h = r.headers_mut();
                h.insert(
                    header::RETRY_AFTER,
                    s.faults.retry_after.to_string().parse().unwrap(),
                );
                h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
                h.insert("ratelimit-remaining", "0;w=21600".parse().unwrap());
                return r;
            }
            let key = (repo.to_string(), tail.to_string());
            if method == Method::PUT {
                let mt = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let d = Digest::sha256_of(&body);
                s.manifests.insert(key, (mt.clone(), body.clone()));
                s.manifests
                    .insert((repo.to_string(), d.to_string()), (mt, body));
                return (
                    StatusCode::CREATED,
                    [("docker-content-digest", d.to_string())],
                )
                    .into_response();
            }
            let Some((mt, bytes)) = s.manifests.get(&key).cloned() else {
                return error_body(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                );
            };
            let d = Digest::sha256_of(&bytes).to_string();
            let len = bytes.len().to_string();
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Response::builder()
                .header(header::CONTENT_TYPE, mt)
                .header(header::CONTENT_LENGTH, len)
                .header("docker-content-digest", d)
                .body(body)
                .unwrap()
        }
        "/blobs/" => {
            let linked = s.links.contains(&(repo.to_string(), tail.to_string()));
            let Some(bytes) = s.blobs.get(tail).filter(|_| linked).cloned() else {
                return error_body(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
            };
            if method == Method::HEAD {
                return Response::builder()
                    .header(header::CONTENT_LENGTH, bytes.len().to_string())
                    .body(Body::empty())
                    .unwrap();
            }
            // Like Docker Hub: the blob lives on another host.
            let to = format!("http://{}/blob/{tail}?sig=signed", s.blob_addr.unwrap());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
        "/blobs/uploads/" => {
            if method == Method::PATCH
                && let Some(r) = headers.get("content-range").and_then(|v| v.to_str().ok())
            {
                s.recorded.patches.push(r.to_string());
            }
            upload(
                &mut s,
                &method,
                repo,
                tail,
                get("mount"),
                get("from"),
                get("digest"),
                body,
            )
        }
        "/tags/list" => {
            let mut tags: Vec<String> = s
                .manifests
                .keys()
                .filter(|(r, t)| r == repo && !t.starts_with("sha256:"))
                .map(|(_, t)| t.clone())
                .collect();
            tags.sort();
            serde_json::json!({"name": repo, "tags": tags})
                .to_string()
                .into_response()
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn token(
    s: &mut MockState,
    method: &Method,
    headers: &HeaderMap,
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    let (scopes, ok, field) = if *method == Method::POST {
        s.recorded.oauth_posts += 1;
        let form = query_pairs(&String::from_utf8_lossy(body));
        let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let scopes: Vec<String> = get("scope")
            .map(|v| v.split(' ').map(str::to_string).collect())
            .unwrap_or_default();
        let ok = get("grant_type").as_deref() == Some("refresh_token")
            && get("refresh_token").as_deref() == Some(REFRESH_TOKEN);
        (scopes, ok, "access_token")
    } else {
        let scopes: Vec<String> = query
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(want.as_str());
        (scopes, ok, "token")
    };
    if !ok {
        return error_body(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials");
    }
    s.recorded.token_scopes.push(scopes.clone());
    s.next_id += 1;
    let t = format!("tok-{}", s.next_id);
    s.tokens.insert(t.clone(), scopes);
    serde_json::json!({ field: t, "expires_in": 300 })
        .to_string()
        .into_response()
}

#[allow(clippy::too_many_arguments)]
fn upload(
    s: &mut MockState,
    method: &Method,
    repo: &str,
    id: &str,
    mount: Option<String>,
    from: Option<String>,
    digest: Option<String>,
    body: Bytes,
) -> Response {
    if *method == Method::POST {
        if let (Some(m), Some(f)) = (&mount, &from)
            && s.links.contains(&(f.clone(), m.clone()))
        {
            s.recorded.mounts += 1;
            s.links.insert((repo.to_string(), m.clone()));
            return status(StatusCode::CREATED);
        }
        s.next_id += 1;
        let id = format!("u{}", s.next_id);
        s.uploads.insert(id.clone(), (repo.to_string(), Vec::new()));
        let loc = format!("/v2/{repo}/blobs/uploads/{id}");
        return (StatusCode::ACCEPTED, [(header::LOCATION, loc)]).into_response();
    }
    let cut = *method == Method::PATCH && s.faults.cut_first_patch;
    if cut {
        s.faults.cut_first_patch = false;
    }
    if *method == Method::GET {
        s.recorded.upload_status_checks += 1;
    }
    let Some((_, data)) = s.uploads.get_mut(id) else {
        return error_body(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "no such upload",
        );
    };
    let loc = format!("/v2/{repo}/blobs/uploads/{id}");
    if *method == Method::GET {
        let end = data.len().saturating_sub(1);
        return (
            StatusCode::NO_CONTENT,
            [(header::LOCATION, loc), (header::RANGE, format!("0-{end}"))],
        )
            .into_response();
    }
    if cut {
        // As if the connection dropped halfway through the chunk.
        data.extend_from_slice(&body[..body.len() / 2]);
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    data.extend_from_slice(&body);
    if *method == Method::PATCH {
        let end = data.len().saturating_sub(1);
        return (
            StatusCode::ACCEPTED,
            [(header::LOCATION, loc), (header::RANGE, format!("0-{end}"))],
        )
            .into_response();
    }
    let Some(want) = digest else {
        return error_body(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest");
    };
    let data = s.uploads.remove(id).map(|(_, d)| d).unwrap_or_default();
    if Digest::sha256_of(&data).to_string() != want {
        return error_body(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
    }
    s.blobs.insert(want.clone(), Bytes::from(data));
    s.links.insert((repo.to_string(), want));
    status(StatusCode::CREATED)
}

async fn blob_handler(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    if headers.contains_key(header::AUTHORIZATION) {
        s.recorded.blob_host_authorized += 1;
    }
    let Some(digest) = uri.path().strip_prefix("/blob/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let Some(bytes) = s.blobs.get(digest).cloned() else {
        return status(StatusCode::NOT_FOUND);
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(r) = &range {
        s.recorded.ranges.push(r.clone());
    }
    let flaky = s
        .faults
        .flaky_blob
        .as_ref()
        .is_some_and(|d| d.to_string() == digest);
    if flaky {
        s.flaky_hits += 1;
        match s.flaky_hits {
            1 => return status(StatusCode::INTERNAL_SERVER_ERROR),
            2 => {
                // Half the body, then the connection drops.
                let half = bytes.slice(..bytes.len() / 2);
                let stream = futures_util::stream::iter(vec![
                    Ok::<Bytes, std::io::Error>(half),
                    Err(std::io::Error::other("injected drop")),
                ]);
                return Response::builder()
                    .header(header::CONTENT_LENGTH, bytes.len().to_string())
                    .body(Body::from_stream(stream))
                    .unwrap();
            }
            _ => {}
        }
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    match start {
        Some(from) if from < bytes.len() => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
            )
            .header(header::CONTENT_LENGTH, (bytes.len() - from).to_string())
            .body(Body::from(bytes.slice(from..)))
            .unwrap(),
        _ => Response::builder()
            .header(header::CONTENT_LENGTH, bytes.len().to_string())
            .body(Body::from(bytes))
            .unwrap(),
    }
}
