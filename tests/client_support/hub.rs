//! A Docker Hub double for the client tests, on plain std::net threads:
//!
//! - the *shim* (what `docker.io` resolves to through berth's
//!   `registry-endpoints` setting) forwards the distribution API to an
//!   upstream registry (berth's own server in token mode), but answers blob
//!   GETs with a 307 to the blob host, as Docker Hub does with its CDN; it
//!   also injects push faults (a connection dropped mid-upload, a 500, a 429
//!   with `Retry-After`) and, on demand, rate-limits every manifest request;
//! - the *blob host* (a second port) serves those blobs from the shim's stash
//!   with Range support, records every `Authorization` header it is sent,
//!   and injects per-blob faults on large blobs: a 429 with `Retry-After`, a
//!   500, then a connection dropped halfway through the body.
//!
//! Bodies are small test images, so requests and responses are buffered.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

/// Blobs at least this large get the blob host's fault sequence.
const FAULTY_BLOB_MIN: u64 = 4096;

type Headers = Vec<(String, String)>;

#[derive(Default)]
pub struct HubLog {
    /// `Authorization` values the blob host received (must stay empty).
    pub blob_authorizations: Vec<String>,
    /// (digest, Range header) of every blob host request.
    pub blob_requests: Vec<(String, Option<String>)>,
    /// Faults injected: "blob 429", "blob 500", "blob drop", "upload drop",
    /// "upload 500", "manifest put 429", "rate limit".
    pub faults: Vec<String>,
}

struct State {
    upstream: String,
    shim_addr: String,
    blob_addr: String,
    stash: PathBuf,
    rate_limit_manifests: AtomicBool,
    upload_puts: AtomicUsize,
    manifest_puts: AtomicUsize,
    blob_attempts: Mutex<HashMap<String, usize>>,
    log: Mutex<HubLog>,
}

impl State {
    fn fault(&self, what: &str) {
        self.log.lock().unwrap().faults.push(what.to_string());
    }
}

/// The shim and the blob host, stopped when the test process ends.
pub struct Hub {
    /// `http://127.0.0.1:PORT` of the shim.
    pub url: String,
    state: Arc<State>,
    _stash: TempDir,
}

impl Hub {
    /// Starts both servers in front of the registry at `upstream` (host:port).
    pub fn start(upstream: &str) -> Hub {
        let stash = tempfile::Builder::new()
            .prefix("berth-hub.")
            .tempdir()
            .unwrap();
        let shim = TcpListener::bind("127.0.0.1:0").unwrap();
        let blobs = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            shim_addr: shim.local_addr().unwrap().to_string(),
            blob_addr: blobs.local_addr().unwrap().to_string(),
            stash: stash.path().to_path_buf(),
            rate_limit_manifests: AtomicBool::new(false),
            upload_puts: AtomicUsize::new(0),
            manifest_puts: AtomicUsize::new(0),
            blob_attempts: Mutex::new(HashMap::new()),
            log: Mutex::new(HubLog::default()),
        });
        let url = format!("http://{}", shim.local_addr().unwrap());
        serve(shim, state.clone(), shim_connection);
        serve(blobs, state.clone(), blob_connection);
        Hub {
            url,
            state,
            _stash: stash,
        }
    }

    /// Makes every manifest request answer 429 from now on.
    pub fn rate_limit_manifests(&self) {
        self.state
            .rate_limit_manifests
            .store(true, Ordering::SeqCst);
    }

    pub fn log<T>(&self, read: impl FnOnce(&HubLog) -> T) -> T {
        read(&self.state.log.lock().unwrap())
    }
}

fn serve(
    listener: TcpListener,
    state: Arc<State>,
    handle: fn(TcpStream, &State) -> std::io::Result<()>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            std::thread::spawn(move || {
                let _ = handle(stream, &state);
            });
        }
    });
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The start line and headers of the next message; None at end of stream.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<(String, Headers)>> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((start.trim_end().to_string(), headers)))
}

/// A message body framed by Content-Length or chunked encoding; `to_eof`
/// for responses that have neither.
fn read_body(
    reader: &mut impl BufRead,
    headers: &Headers,
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let hex = size_line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(hex, 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            if size == 0 {
                // Trailers end with an empty line.
                while read_head_line(reader)? {}
                return Ok(body);
            }
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    }
    if let Some(len) = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_head_line(reader: &mut impl BufRead) -> std::io::Result<bool> {
    let mut line = String::new();
    Ok(reader.read_line(&mut line)? > 0 && !line.trim().is_empty())
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    let has_length = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn error_json(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

fn rate_limit_headers(retry_after: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_string()),
        ("Retry-After", retry_after.to_string()),
        ("ratelimit-limit", "100;w=21600".to_string()),
        ("ratelimit-remaining", "0;w=21600".to_string()),
    ]
}

/// A blob GET path `/v2/NAME/blobs/DIGEST` (not an upload).
fn blob_digest(path: &str) -> Option<&str> {
    let (name, digest) = path.strip_prefix("/v2/")?.rsplit_once("/blobs/")?;
    (!name.is_empty() && digest.starts_with("sha256:") && !digest.contains('/')).then_some(digest)
}

fn shim_connection(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    while let Some((start, headers)) = read_head(&mut reader)? {
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let head_only = method == "HEAD";

        if method == "PUT" && path.contains("/blobs/uploads/") {
            let n = state.upload_puts.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                // Take half the body, then drop the connection.
                let len = header(&headers, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut half = vec![0; len / 2];
                reader.read_exact(&mut half)?;
                state.fault("upload drop");
                return stream.shutdown(Shutdown::Both);
            }
            if n == 1 {
                read_body(&mut reader, &headers, false)?;
                state.fault("upload 500");
                let body = error_json("UNKNOWN", "injected failure");
                respond(&mut stream, "500 Internal Server Error", &[], &body, false)?;
                continue;
            }
        }
        let body = read_body(&mut reader, &headers, false)?;
        if path.contains("/manifests/") && state.rate_limit_manifests.load(Ordering::SeqCst) {
            state.fault("rate limit");
            let body = error_json("TOOMANYREQUESTS", "You have reached your pull rate limit.");
            respond(
                &mut stream,
                "429 Too Many Requests",
                &rate_limit_headers("1"),
                &body,
                head_only,
            )?;
            continue;
        }
        if method == "PUT"
            && path.contains("/manifests/")
            && state.manifest_puts.fetch_add(1, Ordering::SeqCst) == 0
        {
            state.fault("manifest put 429");
            let body = error_json("TOOMANYREQUESTS", "slow down");
            respond(
                &mut stream,
                "429 Too Many Requests",
                &rate_limit_headers("1"),
                &body,
                false,
            )?;
            continue;
        }
        if method == "GET"
            && let Some(digest) = blob_digest(&path)
        {
            // Fetch it from upstream with the client's credentials, then send
            // the client to the blob host for the bytes.
            let digest = digest.to_string();
            let whole: Headers = headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("range"))
                .cloned()
                .collect();
            let (status, up_headers, up_body) = forward(state, "GET", &target, &whole, &[])?;
            if !status.starts_with("200") {
                relay(state, &mut stream, &status, &up_headers, &up_body, false)?;
                continue;
            }
            std::fs::write(state.stash.join(&digest), &up_body)?;
            let location = format!("http://{}/cdn/{digest}?expires=4102444800", state.blob_addr);
            respond(
                &mut stream,
                "307 Temporary Redirect",
                &[("Location", location)],
                b"",
                false,
            )?;
            continue;
        }
        let (status, up_headers, up_body) = forward(state, &method, &target, &headers, &body)?;
        relay(
            state,
            &mut stream,
            &status,
            &up_headers,
            &up_body,
            head_only,
        )?;
    }
    Ok(())
}

/// One request to the upstream registry on a fresh connection.
fn forward(
    state: &State,
    method: &str,
    target: &str,
    headers: &Headers,
    body: &[u8],
) -> std::io::Result<(String, Headers, Vec<u8>)> {
    let mut up = TcpStream::connect(&state.upstream)?;
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", state.upstream);
    for (k, v) in headers {
        let skip = ["host", "connection", "content-length", "transfer-encoding"];
        if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    up.write_all(out.as_bytes())?;
    up.write_all(body)?;
    let mut reader = BufReader::new(up);
    let (status_line, up_headers) = read_head(&mut reader)?
        .ok_or_else(|| std::io::Error::other("upstream closed without a response"))?;
    let status = status_line
        .split_once(' ')
        .map(|(_, s)| s.to_string())
        .unwrap_or_default();
    let no_body = method == "HEAD" || status.starts_with("204") || status.starts_with("304");
    let up_body = if no_body {
        Vec::new()
    } else {
        read_body(&mut reader, &up_headers, true)?
    };
    Ok((status, up_headers, up_body))
}

/// Sends an upstream response on, re-framed, with upstream URLs pointing at
/// the shim.
fn relay(
    state: &State,
    stream: &mut TcpStream,
    status: &str,
    headers: &Headers,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for (k, v) in headers {
        if ["connection", "transfer-encoding"]
            .iter()
            .any(|s| k.eq_ignore_ascii_case(s))
        {
            continue;
        }
        if k.eq_ignore_ascii_case("content-length") && !head_only {
            continue;
        }
        let value = if k.eq_ignore_ascii_case("location") {
            v.replace(&state.upstream, &state.shim_addr)
        } else {
            v.clone()
        };
        out.push((k.as_str(), value));
    }
    respond(stream, status, &out, body, head_only)
}

fn blob_connection(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    while let Some((start, headers)) = read_head(&mut reader)? {
        read_body(&mut reader, &headers, false)?;
        let target = start.split_whitespace().nth(1).unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default();
        let digest = path.strip_prefix("/cdn/").unwrap_or_default().to_string();
        let range = header(&headers, "range").map(str::to_string);
        {
            let mut log = state.log.lock().unwrap();
            if let Some(auth) = header(&headers, "authorization") {
                log.blob_authorizations.push(auth.to_string());
            }
            log.blob_requests.push((digest.clone(), range.clone()));
        }
        let Ok(blob) = std::fs::read(state.stash.join(&digest)) else {
            respond(&mut stream, "404 Not Found", &[], b"no such blob", false)?;
            continue;
        };
        let attempt = if blob.len() as u64 >= FAULTY_BLOB_MIN {
            let mut attempts = state.blob_attempts.lock().unwrap();
            let n = attempts.entry(digest.clone()).or_default();
            *n += 1;
            *n
        } else {
            usize::MAX
        };
        match attempt {
            1 => {
                state.fault("blob 429");
                let body = error_json("TOOMANYREQUESTS", "slow down");
                respond(
                    &mut stream,
                    "429 Too Many Requests",
                    &rate_limit_headers("1"),
                    &body,
                    false,
                )?;
            }
            2 => {
                state.fault("blob 500");
                respond(
                    &mut stream,
                    "500 Internal Server Error",
                    &[],
                    b"cdn hiccup",
                    false,
                )?;
            }
            3 => {
                state.fault("blob drop");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len());
                stream.write_all(head.as_bytes())?;
                stream.write_all(&blob[..blob.len() / 2])?;
                stream.flush()?;
                return stream.shutdown(Shutdown::Both);
            }
            _ => {
                let from = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|r| r.parse::<usize>().ok());
                match from {
                    Some(from) if from < blob.len() => {
                        let content_range =
                            format!("bytes {from}-{}/{}", blob.len() - 1, blob.len());
                        respond(
                            &mut stream,
                            "206 Partial Content",
                            &[("Content-Range", content_range)],
                            &blob[from..],
                            false,
                        )?;
                    }
                    _ => respond(&mut stream, "200 OK", &[], &blob, false)?,
                }
            }
        }
    }
    Ok(())
}
