//! One repository of one registry: the low-level distribution API calls
//! (manifests, blobs, uploads, mounts, tags) with auth and retries handled by
//! the [`Client`]. Blobs stream; nothing larger than a manifest is held in
//! memory.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use berth_oci::digest::HashingWriter;
use berth_oci::manifest::Manifest;
use berth_oci::media_types as mt;
use berth_oci::store::Ingest;
use berth_oci::{Algorithm, Descriptor, Digest, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use url::Url;

use crate::error::{Error, Result};
use crate::progress::{Event, Progress, SkipReason};
use crate::transport::{Client, Endpoint, classify, read_limited, status_error};

/// Accepted manifest types, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (distribution's limit).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

const READ_BUFFER: usize = 256 << 10;

/// A manifest as received: raw bytes (stored unmodified), type and digest.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl RemoteManifest {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            &self.media_type,
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }

    pub fn parse(&self) -> Result<Manifest> {
        Manifest::parse(&self.bytes, Some(&self.media_type)).map_err(Error::Manifest)
    }
}

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub enum MountOutcome {
    Mounted,
    /// The registry started a normal upload instead, at this location.
    Upload(Url),
}

/// A session on one repository; cheap to clone.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    endpoint: Arc<Endpoint>,
    name: String,
    scopes: Vec<String>,
}

impl Client {
    /// A pull session on `registry/name` (pinging the registry on first use).
    pub async fn repository(&self, registry: &str, name: &str) -> Result<Repository> {
        let endpoint = self.endpoint(registry).await?;
        Ok(Repository {
            client: self.clone(),
            endpoint,
            name: name.to_string(),
            scopes: vec![format!("repository:{name}:pull")],
        })
    }
}

/// A download is copied into a few buffers of this size that go round
/// between the network side and the disk writer: memory stays bounded and
/// steady (no buffer is allocated per network read, none freed on another
/// thread), and the disk sees large writes.
const DOWNLOAD_BUFFER: usize = 512 << 10;
/// Buffers per download: one filling, one being written, one queued.
const DOWNLOAD_BUFFERS: usize = 3;

enum Chunk {
    Data(Vec<u8>),
    Restart,
}

/// The network side of a download: fills the buffer in hand and passes it
/// to the writer when full.
struct BufferRing {
    full: mpsc::Sender<Chunk>,
    free: mpsc::Receiver<Vec<u8>>,
    current: Option<Vec<u8>>,
    allocated: usize,
    capacity: usize,
}

/// The writer stopped (its error is what it returns).
struct WriterGone;

impl BufferRing {
    async fn next_buffer(&mut self) -> std::result::Result<Vec<u8>, WriterGone> {
        if self.allocated < DOWNLOAD_BUFFERS {
            self.allocated += 1;
            return Ok(Vec::with_capacity(self.capacity));
        }
        self.free.recv().await.ok_or(WriterGone)
    }

    async fn push(&mut self, mut bytes: &[u8]) -> std::result::Result<(), WriterGone> {
        while !bytes.is_empty() {
            let mut buf = match self.current.take() {
                Some(b) => b,
                None => self.next_buffer().await?,
            };
            let n = bytes.len().min(self.capacity - buf.len());
            buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if buf.len() >= self.capacity {
                self.full
                    .send(Chunk::Data(buf))
                    .await
                    .map_err(|_| WriterGone)?;
            } else {
                self.current = Some(buf);
            }
        }
        Ok(())
    }

    /// Drops what is buffered and has the writer start over.
    async fn restart(&mut self) -> std::result::Result<(), WriterGone> {
        if let Some(buf) = &mut self.current {
            buf.clear();
        }
        self.full.send(Chunk::Restart).await.map_err(|_| WriterGone)
    }

    /// Hands over the partly filled buffer; the writer ends once the ring is
    /// dropped.
    async fn flush(&mut self) -> std::result::Result<(), WriterGone> {
        match self.current.take() {
            Some(buf) if !buf.is_empty() => self
                .full
                .send(Chunk::Data(buf))
                .await
                .map_err(|_| WriterGone),
            _ => Ok(()),
        }
    }
}

/// Where a download goes: the store's ingest or any writer.
trait BlobSink: Send + 'static {
    fn offset(&self) -> u64;
    fn write_chunk(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn restart(&mut self) -> io::Result<()>;
}

impl BlobSink for Ingest {
    fn offset(&self) -> u64 {
        Ingest::offset(self)
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn restart(&mut self) -> io::Result<()> {
        self.truncate().map_err(io::Error::other)
    }
}

struct WriterSink<W: Write>(HashingWriter<W>);

impl<W: Write + Send + 'static> BlobSink for WriterSink<W> {
    fn offset(&self) -> u64 {
        self.0.bytes_written()
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn restart(&mut self) -> io::Result<()> {
        if self.0.bytes_written() == 0 {
            Ok(())
        } else {
            Err(io::Error::other(
                "the registry restarted the blob from byte 0 and the writer cannot rewind",
            ))
        }
    }
}

fn task_error(e: tokio::task::JoinError) -> Error {
    Error::Task(e.to_string())
}

impl Repository {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn registry(&self) -> &str {
        &self.endpoint.registry
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same session with push rights.
    pub fn for_push(mut self) -> Repository {
        let push = format!("repository:{}:pull,push", self.name);
        self.scopes
            .retain(|s| s != &format!("repository:{}:pull", self.name));
        self.scopes.insert(0, push);
        self
    }

    /// Adds pull rights on another repository (for cross-repository mounts).
    pub fn with_pull_from(mut self, other: &str) -> Repository {
        let scope = format!("repository:{other}:pull");
        if other != self.name && !self.scopes.contains(&scope) {
            self.scopes.push(scope);
        }
        self
    }

    fn progress(&self) -> Arc<dyn Progress> {
        self.client.options().progress.clone()
    }

    fn url(&self, tail: &str) -> Result<Url> {
        self.endpoint.url(&format!("/v2/{}/{tail}", self.name))
    }

    async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    ) -> Result<Response> {
        self.client
            .send(&self.endpoint, &self.scopes, what, build)
            .await
    }

    async fn fail(&self, what: &str, resp: Response) -> Error {
        status_error(&self.endpoint, &self.name, what, resp).await
    }

    // ---- manifests ------------------------------------------------------

    /// HEADs a manifest by tag or digest; `None` when the registry has none.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<Descriptor>> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let what = format!("manifest {reference}");
        let resp = self
            .send(&what, |http| {
                Ok(http
                    .head(url.clone())
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.fail(&what, resp).await);
        }
        let headers = resp.headers();
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let size = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(match (digest, media_type, size) {
            (Some(d), Some(m), Some(s)) => Some(Descriptor::new(&m, d, s)),
            _ => None,
        })
    }

    /// GETs a manifest by tag or digest and verifies its digest against the
    /// reference (a digest) or the `Docker-Content-Digest` header.
    pub async fn get_manifest(&self, reference: &str) -> Result<RemoteManifest> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let what = format!("manifest {reference}");
        let resp = self
            .send(&what, |http| {
                Ok(http
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(&what, resp).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .filter(|t| mt::is_index(t) || mt::is_image_manifest(t));
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE + 1)
            .await
            .map_err(|e| classify(self.registry(), e))?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: format!("manifest {reference}"),
                limit: MAX_MANIFEST_SIZE as u64,
            });
        }
        let expected = Digest::parse(reference).ok().or(header_digest);
        let algorithm = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of_bytes(algorithm, &bytes);
        if let Some(want) = expected
            && want != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest {}/{}:{reference}", self.registry(), self.name),
                expected: want,
                actual: digest,
            });
        }
        let parsed = Manifest::parse(&bytes, content_type.as_deref()).map_err(Error::Manifest)?;
        let media_type = content_type.unwrap_or_else(|| parsed.media_type().to_string());
        let manifest = RemoteManifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest,
        };
        self.progress().event(Event::Resolved {
            reference: format!("{}/{}:{reference}", self.registry(), self.name),
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
        });
        Ok(manifest)
    }

    /// PUTs manifest bytes under a tag or digest; returns their digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let what = format!("manifest {reference}");
        let resp = self
            .send(&what, |http| {
                Ok(http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self.fail(&format!("put {what}"), resp).await);
        }
        let digest = Digest::sha256_of(&bytes);
        self.progress().event(Event::ManifestStored {
            reference: format!("{}/{}:{reference}", self.registry(), self.name),
            digest: digest.clone(),
        });
        Ok(digest)
    }

    // ---- blobs: download ------------------------------------------------

    /// The blob's size if the repository has it.
    pub async fn head_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let resp = self
            .send("blob head", |http| Ok(http.head(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail("blob head", resp).await),
        }
    }

    /// A GET of the blob from byte `offset` (following redirects, which drop
    /// the Authorization header when they leave the registry's host).
    pub async fn blob_response(&self, digest: &Digest, offset: u64) -> Result<Response> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let resp = self
            .send("blob", |http| {
                let mut req = http.get(url.clone());
                if offset > 0 {
                    req = req.header(RANGE, format!("bytes={offset}-"));
                }
                Ok(req)
            })
            .await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::BlobUnknown {
                host: self.registry().to_string(),
                repository: self.name.clone(),
                digest: digest.clone(),
            });
        }
        Err(self.fail("blob", resp).await)
    }

    /// Downloads a blob into the store (resuming an earlier partial download),
    /// verifying size and digest before it becomes visible.
    pub async fn fetch_blob_into_store(&self, store: &Store, desc: &Descriptor) -> Result<()> {
        if store.has_blob(&desc.digest) {
            return Ok(());
        }
        let opener = store.clone();
        let key = format!("pull-{}", desc.digest);
        let algorithm = desc.digest.algorithm();
        let mut ingest = tokio::task::spawn_blocking(move || opener.ingest(&key, algorithm))
            .await
            .map_err(task_error)??;
        if store.has_blob(&desc.digest) {
            // Another process stored it while we waited for the ingest lock.
            ingest.discard();
            return Ok(());
        }
        if ingest.offset() > desc.size {
            ingest.truncate()?;
        }
        let ingest = self.download(desc, ingest).await?;
        let (size, digest) = (desc.size, desc.digest.clone());
        let committed =
            tokio::task::spawn_blocking(move || ingest.commit(Some(size), Some(&digest)))
                .await
                .map_err(task_error)?;
        match committed {
            Ok(_) => Ok(()),
            Err(berth_oci::StoreError::DigestMismatch { expected, actual }) => {
                Err(Error::DigestMismatch {
                    what: format!("blob from {}/{}", self.registry(), self.name),
                    expected,
                    actual,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Downloads a blob into any writer, verifying size and digest at the end
    /// (the writer has seen the bytes by then: verify before trusting them).
    pub async fn fetch_blob_to<W: Write + Send + 'static>(
        &self,
        desc: &Descriptor,
        writer: W,
    ) -> Result<W> {
        let sink = WriterSink(HashingWriter::new(writer, desc.digest.algorithm()));
        let WriterSink(hashing) = self.download(desc, sink).await?;
        let (actual, n, writer) = hashing.finish();
        if n != desc.size {
            return Err(Error::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: n,
            });
        }
        if actual != desc.digest {
            return Err(Error::DigestMismatch {
                what: format!("blob from {}/{}", self.registry(), self.name),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(writer)
    }

    /// Streams the blob into `sink` on a blocking thread (the disk write and
    /// the hashing), fed with a ring of `DOWNLOAD_BUFFERS` reused buffers; a
    /// dropped connection resumes with a Range request from the bytes already
    /// received.
    async fn download<S: BlobSink>(&self, desc: &Descriptor, sink: S) -> Result<S> {
        let progress = self.progress();
        let digest = desc.digest.clone();
        let size = desc.size;
        let mut offset = sink.offset();
        progress.event(Event::Started {
            digest: digest.clone(),
            size,
            offset,
        });
        let (full_tx, mut full_rx) = mpsc::channel::<Chunk>(DOWNLOAD_BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>(DOWNLOAD_BUFFERS);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<S> {
            let mut sink = sink;
            while let Some(chunk) = full_rx.blocking_recv() {
                match chunk {
                    Chunk::Data(mut buf) => {
                        sink.write_chunk(&buf)?;
                        buf.clear();
                        // Never full: there are only DOWNLOAD_BUFFERS buffers.
                        let _ = free_tx.try_send(buf);
                    }
                    Chunk::Restart => sink.restart()?,
                }
            }
            Ok(sink)
        });
        let mut ring = BufferRing {
            full: full_tx,
            free: free_rx,
            current: None,
            allocated: 0,
            capacity: (size.saturating_sub(offset) as usize).clamp(1, DOWNLOAD_BUFFER),
        };
        let max_attempts = self.client.options().max_attempts.max(1);
        let mut failures = 0u32;
        let mut writer_gone = false;
        'transfer: while offset < size || (size == 0 && offset == 0 && failures == 0) {
            let resp = self.blob_response(&digest, offset).await?;
            if resp.status() != StatusCode::PARTIAL_CONTENT && offset > 0 {
                // The server ignored the Range: start over.
                if ring.restart().await.is_err() {
                    writer_gone = true;
                    break;
                }
                offset = 0;
            }
            let mut stream = resp.bytes_stream();
            let mut dropped = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(bytes) => {
                        let n = bytes.len() as u64;
                        if offset + n > size {
                            drop(ring);
                            let _ = writer.await;
                            return Err(Error::SizeMismatch {
                                digest,
                                expected: size,
                                actual: offset + n,
                            });
                        }
                        if ring.push(&bytes).await.is_err() {
                            writer_gone = true;
                            break 'transfer;
                        }
                        offset += n;
                        progress.event(Event::Advanced {
                            digest: digest.clone(),
                            done: offset,
                            size,
                        });
                    }
                    Err(e) => {
                        dropped = Some(classify(self.registry(), e));
                        break;
                    }
                }
            }
            if size == 0 {
                break;
            }
            if offset < size {
                failures += 1;
                let err = dropped.unwrap_or_else(|| Error::Protocol {
                    host: self.registry().to_string(),
                    message: format!("blob {digest}: connection closed at byte {offset} of {size}"),
                });
                if failures >= max_attempts {
                    drop(ring);
                    let _ = writer.await;
                    return Err(err);
                }
                self.client
                    .retry_pause(&format!("blob {digest}"), failures, &err, None)
                    .await;
            }
        }
        if ring.flush().await.is_err() {
            writer_gone = true;
        }
        drop(ring);
        let sink = writer.await.map_err(task_error)?;
        let sink = sink.map_err(|source| Error::Io {
            path: format!("blob {digest}").into(),
            source,
        })?;
        if writer_gone {
            return Err(Error::Task(format!("writer for blob {digest} stopped")));
        }
        progress.event(Event::Finished { digest, size });
        Ok(sink)
    }

    // ---- blobs: upload --------------------------------------------------

    /// Asks the registry to link a blob from another repository. A 202 means it
    /// could not and has started a normal upload instead.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<MountOutcome> {
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let resp = self
            .send("blob mount", |http| {
                Ok(http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Upload(self.location(&resp)?)),
            _ => Err(self.fail("blob mount", resp).await),
        }
    }

    /// Starts an upload session; returns its location and the registry's
    /// minimum chunk length, if it states one.
    pub async fn start_upload(&self) -> Result<(Url, Option<u64>)> {
        let url = self.url("blobs/uploads/")?;
        let resp = self
            .send("blob upload", |http| {
                Ok(http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail("blob upload", resp).await);
        }
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((self.location(&resp)?, min_chunk))
    }

    fn location(&self, resp: &Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                host: self.registry().to_string(),
                message: "upload response without Location".to_string(),
            })?;
        resp.url().join(loc).map_err(|e| Error::Protocol {
            host: self.registry().to_string(),
            message: format!("bad upload Location {loc:?}: {e}"),
        })
    }

    fn with_digest(location: &Url, digest: &Digest) -> Url {
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        url
    }

    /// Completes an upload with one PUT carrying the whole body.
    pub async fn put_blob_body(
        &self,
        location: &Url,
        desc: &Descriptor,
        body: impl Fn() -> Result<reqwest::Body>,
    ) -> Result<()> {
        let url = Self::with_digest(location, &desc.digest);
        let resp = self
            .client
            .send_as(
                &self.endpoint,
                &self.scopes,
                "blob upload",
                self.client.credential(self.registry())?.as_ref(),
                false,
                |http| {
                    Ok(http
                        .put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, desc.size)
                        .body(body()?))
                },
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail("blob upload", resp).await);
        }
        Ok(())
    }

    /// Uploads a blob from the local store unless the repository has it:
    /// mount from `mount_from` when given, else one PUT for small blobs and
    /// PATCH chunks for large ones, resuming from the server's offset.
    pub async fn push_blob_from_store(
        &self,
        store: &Store,
        desc: &Descriptor,
        mount_from: Option<&str>,
    ) -> Result<SkipReason> {
        let progress = self.progress();
        if self.head_blob(&desc.digest).await?.is_some() {
            return Ok(SkipReason::Exists);
        }
        let path = store.blob_path(&desc.digest);
        if !path.is_file() {
            return Err(berth_oci::StoreError::BlobNotFound(desc.digest.clone()).into());
        }
        let max_attempts = self.client.options().max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.upload_file_once(desc, &path, mount_from).await;
            match result {
                Err(e) if e.is_transient() && attempt < max_attempts => {
                    self.client
                        .retry_pause(&format!("upload {}", desc.digest), attempt, &e, None)
                        .await;
                }
                Ok(r) => {
                    if r != SkipReason::Mounted {
                        progress.event(Event::Finished {
                            digest: desc.digest.clone(),
                            size: desc.size,
                        });
                    }
                    return Ok(r);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns `Mounted` for a mount, `Present` for a transfer.
    async fn upload_file_once(
        &self,
        desc: &Descriptor,
        path: &Path,
        mount_from: Option<&str>,
    ) -> Result<SkipReason> {
        let (location, min_chunk) = match mount_from {
            Some(from) if from != self.name => match self.mount_blob(&desc.digest, from).await {
                Ok(MountOutcome::Mounted) => return Ok(SkipReason::Mounted),
                Ok(MountOutcome::Upload(loc)) => (loc, None),
                // A source we may not read, or one that is gone: the blob is
                // uploaded instead, as on a 202.
                Err(
                    Error::Unauthorized { .. }
                    | Error::Denied { .. }
                    | Error::Token { .. }
                    | Error::NameUnknown { .. }
                    | Error::BlobUnknown { .. },
                ) => self.start_upload().await?,
                Err(e) => return Err(e),
            },
            _ => self.start_upload().await?,
        };
        let progress = self.progress();
        progress.event(Event::Started {
            digest: desc.digest.clone(),
            size: desc.size,
            offset: 0,
        });
        let options = self.client.options();
        if desc.size <= options.monolithic_upload_max {
            self.put_blob_body(&location, desc, || {
                file_body(path, 0, desc.size, desc, progress.clone())
            })
            .await?;
            return Ok(SkipReason::Present);
        }
        let chunk = options.upload_chunk_size.max(min_chunk.unwrap_or(0)).max(1);
        let mut location = location;
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            let body = file_body(path, offset, len, desc, progress.clone())?;
            let sent = self.patch_chunk(&location, offset, len, body).await;
            match sent {
                Ok(next) => {
                    location = next;
                    offset += len;
                }
                Err(e) if e.is_transient() && failures + 1 < self.client.options().max_attempts => {
                    failures += 1;
                    self.client
                        .retry_pause(&format!("upload {}", desc.digest), failures, &e, None)
                        .await;
                    let (next, at) = self.upload_status(&location).await?;
                    location = next;
                    offset = at;
                }
                Err(e) => return Err(e),
            }
        }
        let url = Self::with_digest(&location, &desc.digest);
        let resp = self
            .send("blob upload", |http| {
                Ok(http.put(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail("blob upload", resp).await);
        }
        Ok(SkipReason::Present)
    }

    async fn patch_chunk(
        &self,
        location: &Url,
        offset: u64,
        len: u64,
        body: reqwest::Body,
    ) -> Result<Url> {
        let body = std::sync::Mutex::new(Some(body));
        let resp =
            self.client
                .send_as(
                    &self.endpoint,
                    &self.scopes,
                    "blob chunk",
                    self.client.credential(self.registry())?.as_ref(),
                    false,
                    |http| {
                        let body =
                            body.lock().ok().and_then(|mut b| b.take()).ok_or_else(|| {
                                Error::Task("chunk body already sent".to_string())
                            })?;
                        Ok(http
                            .patch(location.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, len)
                            .header("content-range", format!("{}-{}", offset, offset + len - 1))
                            .body(body))
                    },
                )
                .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail("blob chunk", resp).await);
        }
        self.location(&resp)
    }

    /// Where an interrupted upload stands: its location and the next offset.
    async fn upload_status(&self, location: &Url) -> Result<(Url, u64)> {
        let resp = self
            .send("upload status", |http| Ok(http.get(location.clone())))
            .await?;
        if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
            return Err(self.fail("upload status", resp).await);
        }
        let next = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map_or(0, |end| end + 1);
        let loc = if resp.headers().contains_key(LOCATION) {
            self.location(&resp)?
        } else {
            location.clone()
        };
        Ok((loc, next))
    }

    // ---- tags -----------------------------------------------------------

    /// Every tag of the repository, following `Link: <…>; rel="next"` pages.
    pub async fn list_tags(&self) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut next = Some(self.url("tags/list?n=1000")?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                break;
            }
            let resp = self.send("tags", |http| Ok(http.get(url.clone()))).await?;
            if !resp.status().is_success() {
                return Err(self.fail("tags", resp).await);
            }
            next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (target, params) = v.split_once(';')?;
                    params.contains("next").then_some(())?;
                    let target = target.trim().trim_start_matches('<').trim_end_matches('>');
                    url.join(target).ok()
                });
            let body = read_limited(resp, 16 << 20)
                .await
                .map_err(|e| classify(self.registry(), e))?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                    host: self.registry().to_string(),
                    message: format!("tags list is not JSON: {e}"),
                })?;
            if let Some(list) = v.get("tags").and_then(|t| t.as_array()) {
                tags.extend(list.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
        }
        Ok(tags)
    }
}

/// A request body streaming `len` bytes of a file from `offset`, reporting
/// progress as it is read.
fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    desc: &Descriptor,
    progress: Arc<dyn Progress>,
) -> Result<reqwest::Body> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let file = tokio::fs::File::from_std(file).take(len);
    let digest = desc.digest.clone();
    let size = desc.size;
    let mut done = offset;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER).map(move |chunk| {
        if let Ok(c) = &chunk {
            done += c.len() as u64;
            progress.event(Event::Advanced {
                digest: digest.clone(),
                done,
                size,
            });
        }
        chunk
    });
    Ok(reqwest::Body::wrap_stream(stream))
}
