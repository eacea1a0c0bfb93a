//! What the registry does, independent of HTTP: blobs a repository holds,
//! upload sessions, manifests with their validation, tags, referrers and the
//! catalog, all over a [`StorageDriver`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_oci::manifest::{Descriptor, Manifest, ManifestError};
use berth_oci::media_types as mt;
use berth_oci::{Algorithm, Digest, Hasher};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics::METRICS;
use crate::names::{is_valid_tag, layout, new_upload_id};
use crate::storage::{ByteStream, StorageDriver, StorageResult};

/// What the registry allows; filled from the config.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub delete_enabled: bool,
    pub manifest_max_bytes: usize,
    /// Largest blob accepted in one upload, if limited.
    pub blob_max_bytes: Option<u64>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: true,
            manifest_max_bytes: 4 << 20,
            blob_max_bytes: None,
        }
    }
}

/// The hash of an upload session's data so far, kept between requests so a
/// chunk is hashed once. It is a cache: when it is missing (a restart, another
/// process) or does not cover the file exactly, the data on disk is hashed
/// again, so the session survives restarts.
struct SessionHash {
    algorithm: Option<Algorithm>,
    hasher: Option<Hasher>,
}

/// An upload session's record beside its data.
#[derive(Debug, Serialize, Deserialize)]
struct UploadInfo {
    started: chrono::DateTime<chrono::Utc>,
    algorithm: String,
}

/// A manifest revision's link: what GET needs without parsing the manifest.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionLink {
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
}

/// A manifest as served.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// The result of a manifest PUT.
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

pub struct Registry {
    driver: Arc<dyn StorageDriver>,
    options: RegistryOptions,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionHash>>>>,
    /// GC coordination: whoever makes a blob reachable (upload, mount,
    /// manifest PUT) holds its stripe's read lock while doing so and pins the
    /// digest; the sweeper deletes a blob only under the write lock and only
    /// if it is not pinned. Reads never take these locks.
    stripes: Vec<tokio::sync::RwLock<()>>,
    pins: Mutex<HashSet<Digest>>,
    gc_running: AtomicBool,
}

const STRIPES: usize = 64;
const MAX_PINS: usize = 200_000;

fn not_found_as<T>(r: StorageResult<T>, err: impl FnOnce() -> ApiError) -> ApiResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Err(err()),
        Err(e) => Err(e.into()),
    }
}

/// `Ok(None)` when the path is absent.
fn optional<T>(r: StorageResult<T>) -> StorageResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn blob_unknown(d: &Digest) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} is not known to this repository"),
    )
    .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

fn upload_unknown() -> ApiError {
    ApiError::new(ErrorCode::BlobUploadUnknown, "upload session not found")
}

fn manifest_unknown(reference: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not known"),
    )
}

/// One page of a sorted list: entries after `last`, at most `n`, and whether
/// more follow.
pub fn paginate(all: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let start = match last {
        Some(l) => all.partition_point(|x| x.as_str() <= l),
        None => 0,
    };
    let rest = &all[start..];
    match n {
        Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
        _ => (rest.to_vec(), false),
    }
}

impl Registry {
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Registry {
        Registry {
            driver,
            options,
            sessions: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
            pins: Mutex::new(HashSet::new()),
            gc_running: AtomicBool::new(false),
        }
    }

    fn stripe_of(d: &Digest) -> usize {
        usize::from_str_radix(&d.hex()[..2], 16).unwrap_or(0) % STRIPES
    }

    /// Read locks on the stripes of `digests`, taken in order.
    async fn hold(&self, digests: &[&Digest]) -> Vec<tokio::sync::RwLockReadGuard<'_, ()>> {
        let mut idx: Vec<usize> = digests.iter().map(|d| Self::stripe_of(d)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].read().await);
        }
        guards
    }

    fn pin(&self, digests: &[&Digest]) {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if pins.len() > MAX_PINS && !self.gc_running.load(Ordering::SeqCst) {
            pins.clear();
        }
        pins.extend(digests.iter().map(|d| (*d).clone()));
    }

    /// Starts a GC run: pins from now on protect blobs until `end_gc`.
    pub(crate) fn begin_gc(&self) {
        self.gc_running.store(true, Ordering::SeqCst);
        self.pins.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) fn end_gc(&self) {
        self.gc_running.store(false, Ordering::SeqCst);
    }

    /// The sweeper's exclusive hold on a blob's stripe.
    pub(crate) async fn lock_for_sweep(&self, d: &Digest) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.stripes[Self::stripe_of(d)].write().await
    }

    pub(crate) fn is_pinned(&self, d: &Digest) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(d)
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    // ---------------------------------------------------------------- blobs

    /// Size of a blob the repository holds.
    pub async fn blob_size(&self, name: &str, digest: &Digest) -> ApiResult<u64> {
        not_found_as(
            self.driver.stat(&layout::layer_link(name, digest)).await,
            || blob_unknown(digest),
        )?;
        let info = not_found_as(self.driver.stat(&layout::blob_data(digest)).await, || {
            blob_unknown(digest)
        })?;
        Ok(info.size)
    }

    /// Streams `len` bytes of a blob from `offset` (the caller checked the
    /// repository holds it).
    pub async fn blob_stream(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> ApiResult<ByteStream> {
        not_found_as(
            self.driver
                .committed_reader(&layout::blob_data(digest), offset, Some(len))
                .await,
            || blob_unknown(digest),
        )
    }

    pub async fn delete_blob(&self, name: &str, digest: &Digest) -> ApiResult<()> {
        self.require_delete()?;
        let dir = layout::layer_link(name, digest);
        let dir = dir.trim_end_matches("/link");
        not_found_as(self.driver.delete(dir).await, || blob_unknown(digest))
    }

    fn require_delete(&self) -> ApiResult<()> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Unsupported,
                "deletes are disabled on this registry",
            ))
        }
    }

    /// Links a blob held by `from` into `name`; false when `from` does not
    /// hold it (the client then uploads).
    pub async fn mount_blob(&self, name: &str, from: &str, digest: &Digest) -> ApiResult<bool> {
        match self.blob_size(from, digest).await {
            Ok(_) => {
                let _held = self.hold(&[digest]).await;
                // The blob may have been swept since it was looked at.
                if optional(self.driver.stat(&layout::blob_data(digest)).await)?.is_none() {
                    return Ok(false);
                }
                self.link_blob(name, digest).await?;
                self.pin(&[digest]);
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::BlobUnknown => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn link_blob(&self, name: &str, digest: &Digest) -> StorageResult<()> {
        self.driver
            .put_content(
                &layout::layer_link(name, digest),
                Bytes::from(digest.to_string()),
            )
            .await
    }

    // -------------------------------------------------------------- uploads

    pub async fn start_upload(&self, name: &str, algorithm: Algorithm) -> ApiResult<String> {
        let id = new_upload_id();
        let info = UploadInfo {
            started: chrono::Utc::now(),
            algorithm: algorithm.to_string(),
        };
        let json = serde_json::to_vec(&info).map_err(|e| ApiError::internal(&e))?;
        self.driver
            .put_content(&layout::upload_info(name, &id), Bytes::from(json))
            .await?;
        METRICS.upload_started();
        Ok(id)
    }

    /// Bytes received so far by an upload session.
    pub async fn upload_size(&self, name: &str, id: &str) -> ApiResult<u64> {
        not_found_as(
            self.driver.stat(&layout::upload_info(name, id)).await,
            upload_unknown,
        )?;
        Ok(optional(self.driver.stat(&layout::upload_data(name, id)).await)?.map_or(0, |i| i.size))
    }

    fn session(&self, name: &str, id: &str) -> Arc<tokio::sync::Mutex<SessionHash>> {
        let key = format!("{name}/{id}");
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(SessionHash {
                    algorithm: None,
                    hasher: None,
                }))
            })
            .clone()
    }

    fn forget_session(&self, name: &str, id: &str) {
        let key = format!("{name}/{id}");
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key);
    }

    async fn upload_algorithm(&self, name: &str, id: &str) -> ApiResult<Algorithm> {
        let raw = not_found_as(
            self.driver
                .get_content(&layout::upload_info(name, id))
                .await,
            upload_unknown,
        )?;
        let info: UploadInfo = serde_json::from_slice(&raw).map_err(|e| ApiError::internal(&e))?;
        info.algorithm
            .parse()
            .map_err(|e: berth_oci::DigestError| ApiError::internal(&e))
    }

    /// Hashes the session's data on disk with `algorithm`.
    async fn rehash(&self, name: &str, id: &str, algorithm: Algorithm) -> ApiResult<Hasher> {
        let mut hasher = Hasher::new(algorithm);
        let stream = optional(
            self.driver
                .reader(&layout::upload_data(name, id), 0, None)
                .await,
        )?;
        if let Some(mut stream) = stream {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ApiError::internal(&e))?;
                hasher.update(&chunk);
            }
        }
        Ok(hasher)
    }

    /// Appends a request body to an upload session. `range` is the
    /// Content-Range (`start-end`, inclusive) of a chunked upload: it must
    /// start where the data ends. Returns the new size.
    pub async fn append_upload<S, E>(
        &self,
        name: &str,
        id: &str,
        body: S,
        range: Option<(u64, u64)>,
    ) -> ApiResult<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let session = self.session(name, id);
        let mut state = session.lock().await;
        self.append_locked(name, id, &mut state, body, range).await
    }

    async fn append_locked<S, E>(
        &self,
        name: &str,
        id: &str,
        state: &mut SessionHash,
        mut body: S,
        range: Option<(u64, u64)>,
    ) -> ApiResult<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let size = self.upload_size(name, id).await?;
        if let Some((start, end)) = range
            && (start != size || end < start)
        {
            return Err(ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("Content-Range {start}-{end} does not continue the upload at {size}"),
            )
            .with_status(axum::http::StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(
                axum::http::header::RANGE,
                range_header(size)
                    .parse()
                    .map_err(|e| ApiError::internal(&e))?,
            ));
        }
        let algorithm = match state.algorithm {
            Some(a) => a,
            None => {
                let a = self.upload_algorithm(name, id).await?;
                state.algorithm = Some(a);
                a
            }
        };
        let mut hasher = match state.hasher.take() {
            Some(h) if h.len() == size => h,
            _ => self.rehash(name, id, algorithm).await?,
        };
        let expected = range.map(|(s, e)| e - s + 1);
        let mut writer = self
            .driver
            .writer(&layout::upload_data(name, id), true)
            .await?;
        let mut received: u64 = 0;
        let mut failure: Option<ApiError> = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(ApiError::new(
                        ErrorCode::BlobUploadInvalid,
                        format!("request body failed: {e}"),
                    ));
                    break;
                }
            };
            received += chunk.len() as u64;
            if let Some(max) = self.options.blob_max_bytes
                && size + received > max
            {
                failure = Some(
                    ApiError::new(
                        ErrorCode::SizeInvalid,
                        format!("blob larger than the limit of {max} bytes"),
                    )
                    .with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE),
                );
                break;
            }
            if let Some(exp) = expected
                && received > exp
            {
                failure = Some(ApiError::new(
                    ErrorCode::SizeInvalid,
                    "request body is longer than its Content-Range",
                ));
                break;
            }
            METRICS.bytes_in(chunk.len() as u64);
            // Hashed here, as the chunk arrives: a chunk is at most hyper's
            // read buffer (~400 KiB, well under a millisecond), and handing
            // it to another thread cost more CPU than it saved (measured).
            hasher.update(&chunk);
            if let Err(e) = writer.write(chunk).await {
                failure = Some(e.into());
                break;
            }
        }
        // What reached the writer is kept (the client can resume from the
        // size it reads back); the hash is only trusted if it all landed.
        let written = writer.size();
        let committed = writer.commit().await;
        match committed {
            Ok(()) if failure.is_none() => {
                if let Some(exp) = expected
                    && received != exp
                {
                    return Err(ApiError::new(
                        ErrorCode::SizeInvalid,
                        format!("Content-Range announced {exp} bytes, body had {received}"),
                    ));
                }
                state.hasher = Some(hasher);
                Ok(written)
            }
            Ok(()) => Err(failure.unwrap_or_else(upload_unknown)),
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes an upload: appends the body, checks the digest, publishes the
    /// blob and links it into the repository. On a digest mismatch the session
    /// and its data are discarded and nothing is stored.
    pub async fn complete_upload<S, E>(
        &self,
        name: &str,
        id: &str,
        digest: &Digest,
        body: S,
        range: Option<(u64, u64)>,
    ) -> ApiResult<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let session = self.session(name, id);
        let mut state = session.lock().await;
        self.append_locked(name, id, &mut state, body, range)
            .await?;
        let hasher = match state.hasher.take() {
            Some(h) if state.algorithm == Some(digest.algorithm()) => h,
            _ => self.rehash(name, id, digest.algorithm()).await?,
        };
        let size = hasher.len();
        let actual = hasher.finish();
        if &actual != digest {
            drop(state);
            self.discard_upload(name, id).await?;
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!("content has digest {actual}, not {digest}"),
            )
            .with_detail(
                serde_json::json!({ "expected": digest.to_string(), "actual": actual.to_string() }),
            ));
        }
        if let Some(max) = self.options.blob_max_bytes
            && size > max
        {
            drop(state);
            self.discard_upload(name, id).await?;
            return Err(ApiError::new(ErrorCode::SizeInvalid, "blob too large"));
        }
        let data = layout::upload_data(name, id);
        let blob = layout::blob_data(digest);
        let held = self.hold(&[digest]).await;
        if size == 0 && optional(self.driver.stat(&data).await)?.is_none() {
            self.driver.put_content(&blob, Bytes::new()).await?;
        } else {
            // Publishing replaces an existing copy with identical bytes.
            self.driver.move_to(&data, &blob).await?;
        }
        self.link_blob(name, digest).await?;
        self.pin(&[digest]);
        drop(held);
        drop(state);
        self.discard_upload(name, id).await?;
        Ok(())
    }

    async fn discard_upload(&self, name: &str, id: &str) -> ApiResult<()> {
        self.forget_session(name, id);
        match self.driver.delete(&layout::upload_dir(name, id)).await {
            Ok(()) => {
                METRICS.upload_ended();
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn cancel_upload(&self, name: &str, id: &str) -> ApiResult<()> {
        self.upload_size(name, id).await?;
        let session = self.session(name, id);
        let _state = session.lock().await;
        self.discard_upload(name, id).await
    }

    /// Removes upload sessions of every repository started before `cutoff`.
    /// Returns how many were removed.
    pub async fn purge_uploads(&self, cutoff: SystemTime) -> ApiResult<usize> {
        let mut removed = 0;
        for repo in self.repositories().await? {
            let dir = layout::uploads_dir(&repo);
            for id in optional(self.driver.list(&dir).await)?.unwrap_or_default() {
                // Last activity: the newest of the session's directory, record
                // and data (a session being created has only the directory).
                let mut last = SystemTime::UNIX_EPOCH;
                for path in [
                    layout::upload_dir(&repo, &id),
                    layout::upload_info(&repo, &id),
                    layout::upload_data(&repo, &id),
                ] {
                    if let Some(i) = optional(self.driver.stat(&path).await)? {
                        last = last.max(i.modified);
                    }
                }
                if last < cutoff {
                    let session = self.session(&repo, &id);
                    let _state = session.lock().await;
                    self.discard_upload(&repo, &id).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    // ------------------------------------------------------------ manifests

    async fn resolve(&self, name: &str, reference: &str) -> ApiResult<Digest> {
        if let Ok(d) = Digest::parse(reference) {
            return Ok(d);
        }
        if !is_valid_tag(reference) {
            return Err(ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("{reference:?} is neither a tag nor a digest"),
            ));
        }
        let raw = not_found_as(
            self.driver
                .get_content(&layout::tag_link(name, reference))
                .await,
            || manifest_unknown(reference),
        )?;
        let text = String::from_utf8_lossy(&raw);
        Digest::parse(text.trim()).map_err(|e| ApiError::internal(&e))
    }

    async fn revision(&self, name: &str, digest: &Digest) -> ApiResult<Option<RevisionLink>> {
        let Some(raw) = optional(
            self.driver
                .get_content(&layout::revision_link(name, digest))
                .await,
        )?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| ApiError::internal(&e))
    }

    pub async fn get_manifest(&self, name: &str, reference: &str) -> ApiResult<StoredManifest> {
        let digest = self.resolve(name, reference).await?;
        let link = self
            .revision(name, &digest)
            .await?
            .ok_or_else(|| manifest_unknown(reference))?;
        let content = not_found_as(
            self.driver.get_content(&layout::blob_data(&digest)).await,
            || manifest_unknown(reference),
        )?;
        Ok(StoredManifest {
            digest,
            media_type: link.media_type,
            content,
        })
    }

    /// Stores a manifest under a tag or digest, plus `extra_tags`.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        content: Bytes,
        extra_tags: &[String],
    ) -> ApiResult<PutManifest> {
        let by_digest = Digest::parse(reference).ok();
        let mut tags: Vec<&str> = Vec::new();
        if by_digest.is_none() {
            if !is_valid_tag(reference) {
                return Err(ApiError::new(
                    ErrorCode::ManifestInvalid,
                    format!("invalid tag {reference:?}"),
                ));
            }
            tags.push(reference);
        }
        for t in extra_tags {
            if !is_valid_tag(t) {
                return Err(ApiError::new(
                    ErrorCode::ManifestInvalid,
                    format!("invalid tag {t:?}"),
                ));
            }
            tags.push(t);
        }
        let digest = match &by_digest {
            Some(d) => {
                let actual = Digest::of_bytes(d.algorithm(), &content);
                if &actual != d {
                    return Err(ApiError::new(
                        ErrorCode::DigestInvalid,
                        format!("manifest has digest {actual}, not {d}"),
                    ));
                }
                actual
            }
            None => Digest::of_bytes(Algorithm::Sha256, &content),
        };
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
            });

        let parsed = parse_manifest(content_type, &content)?;
        let mut referenced: Vec<Digest> = match &parsed {
            Parsed::Known(m) => m
                .references()
                .into_iter()
                .map(|d| d.digest.clone())
                .collect(),
            Parsed::Opaque(_) => Vec::new(),
        };
        referenced.push(digest.clone());
        let refs: Vec<&Digest> = referenced.iter().collect();
        let held = self.hold(&refs).await;
        let (media_type, subject_desc) = self.validate_manifest(name, &parsed).await?;

        let blob = layout::blob_data(&digest);
        if optional(self.driver.stat(&blob).await)?.is_none() {
            self.driver.put_content(&blob, content.clone()).await?;
        }
        let link = RevisionLink {
            media_type: media_type.clone(),
            subject: subject_desc.as_ref().map(|(d, _)| d.clone()),
        };
        let json = serde_json::to_vec(&link).map_err(|e| ApiError::internal(&e))?;
        self.driver
            .put_content(&layout::revision_link(name, &digest), Bytes::from(json))
            .await?;
        if let Some((subject, mut descriptor)) = subject_desc.clone() {
            descriptor.digest = digest.clone();
            descriptor.size = content.len() as u64;
            descriptor.media_type = media_type;
            let json = serde_json::to_vec(&descriptor).map_err(|e| ApiError::internal(&e))?;
            self.driver
                .put_content(
                    &layout::referrer_link(name, &subject, &digest),
                    Bytes::from(json),
                )
                .await?;
        }
        self.pin(&refs);
        drop(held);
        for tag in tags {
            self.driver
                .put_content(
                    &layout::tag_link(name, tag),
                    Bytes::from(digest.to_string()),
                )
                .await?;
        }
        Ok(PutManifest {
            digest,
            subject: subject_desc.map(|(d, _)| d),
        })
    }

    /// Checks a manifest and everything it references; returns its media type
    /// and, when it has a subject, the subject's digest and the descriptor the
    /// referrers API lists for it (digest and size filled in by the caller).
    async fn validate_manifest(
        &self,
        name: &str,
        parsed: &Parsed,
    ) -> ApiResult<(String, Option<(Digest, Descriptor)>)> {
        let manifest = match parsed {
            Parsed::Known(m) => m,
            // Media types the spec does not define are stored as opaque
            // content: nothing to check inside them.
            Parsed::Opaque(t) => return Ok((t.clone(), None)),
        };
        let media_type = manifest.media_type().to_string();
        let (children, blobs, subject, artifact_type, annotations): (
            Vec<&Descriptor>,
            Vec<&Descriptor>,
            _,
            _,
            _,
        ) = match manifest {
            Manifest::Image(m) => (
                Vec::new(),
                std::iter::once(&m.config).chain(m.layers.iter()).collect(),
                m.subject.as_ref(),
                m.artifact_type
                    .clone()
                    .or_else(|| Some(m.config.media_type.clone())),
                m.annotations.clone(),
            ),
            Manifest::Index(i) => (
                i.manifests.iter().collect(),
                Vec::new(),
                i.subject.as_ref(),
                i.artifact_type.clone(),
                i.annotations.clone(),
            ),
        };
        for d in blobs {
            if d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                // Foreign/non-distributable layers live elsewhere.
                continue;
            }
            if d.data.is_some() && d.media_type == mt::OCI_EMPTY {
                continue;
            }
            match self.blob_size(name, &d.digest).await {
                Ok(size) if size == d.size => {}
                Ok(size) => {
                    return Err(ApiError::new(
                        ErrorCode::ManifestInvalid,
                        format!(
                            "descriptor of {} says {} bytes, the blob has {size}",
                            d.digest, d.size
                        ),
                    ));
                }
                Err(e) if e.code() == ErrorCode::BlobUnknown => {
                    return Err(ApiError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("blob {} is not in repository {name}", d.digest),
                    )
                    .with_detail(serde_json::json!({ "digest": d.digest.to_string() })));
                }
                Err(e) => return Err(e),
            }
        }
        for d in children {
            if self.revision(name, &d.digest).await?.is_none() {
                return Err(ApiError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest {} is not in repository {name}", d.digest),
                )
                .with_detail(serde_json::json!({ "digest": d.digest.to_string() })));
            }
        }
        let subject = subject.map(|s| {
            let mut desc = Descriptor::new(&media_type, s.digest.clone(), 0);
            desc.artifact_type = artifact_type;
            desc.annotations = annotations;
            (s.digest.clone(), desc)
        });
        Ok((media_type, subject))
    }

    /// Deletes a tag (by tag) or a manifest with its tags and referrer entry
    /// (by digest).
    pub async fn delete_manifest(&self, name: &str, reference: &str) -> ApiResult<()> {
        self.require_delete()?;
        let Ok(digest) = Digest::parse(reference) else {
            if !is_valid_tag(reference) {
                return Err(manifest_unknown(reference));
            }
            return not_found_as(
                self.driver.delete(&layout::tag_dir(name, reference)).await,
                || manifest_unknown(reference),
            );
        };
        let link = self
            .revision(name, &digest)
            .await?
            .ok_or_else(|| manifest_unknown(reference))?;
        for tag in self.all_tags(name).await? {
            let target = optional(self.driver.get_content(&layout::tag_link(name, &tag)).await)?;
            if target.is_some_and(|t| t.as_ref() == digest.to_string().as_bytes()) {
                optional(self.driver.delete(&layout::tag_dir(name, &tag)).await)?;
            }
        }
        if let Some(subject) = link.subject {
            optional(
                self.driver
                    .delete(&layout::referrer_dir(name, &subject, &digest))
                    .await,
            )?;
        }
        not_found_as(
            self.driver
                .delete(&layout::revision_dir(name, &digest))
                .await,
            || manifest_unknown(reference),
        )
    }

    /// Removes an untagged manifest for GC, even when deletes are disabled
    /// for clients.
    pub(crate) async fn remove_manifest_for_gc(
        &self,
        name: &str,
        digest: &Digest,
    ) -> ApiResult<()> {
        let link = self.revision(name, digest).await?;
        if let Some(subject) = link.and_then(|l| l.subject) {
            optional(
                self.driver
                    .delete(&layout::referrer_dir(name, &subject, digest))
                    .await,
            )?;
        }
        optional(
            self.driver
                .delete(&layout::revision_dir(name, digest))
                .await,
        )?;
        Ok(())
    }

    // ------------------------------------------------------ tags, referrers

    pub async fn repository_exists(&self, name: &str) -> ApiResult<bool> {
        Ok(
            optional(self.driver.stat(&layout::manifests_dir(name)).await)?.is_some()
                || optional(self.driver.stat(&layout::layers_dir(name)).await)?.is_some(),
        )
    }

    async fn all_tags(&self, name: &str) -> ApiResult<Vec<String>> {
        Ok(optional(self.driver.list(&layout::tags_dir(name)).await)?.unwrap_or_default())
    }

    /// Tags of a repository, sorted; `NAME_UNKNOWN` when it does not exist.
    pub async fn tags(&self, name: &str) -> ApiResult<Vec<String>> {
        if !self.repository_exists(name).await? {
            return Err(ApiError::new(
                ErrorCode::NameUnknown,
                format!("repository {name} is not known"),
            ));
        }
        self.all_tags(name).await
    }

    /// Descriptors of the manifests whose subject is `subject`.
    pub async fn referrers(&self, name: &str, subject: &Digest) -> ApiResult<Vec<Descriptor>> {
        let dir = layout::referrers_of(name, subject);
        let mut out = Vec::new();
        for alg in optional(self.driver.list(&dir).await)?.unwrap_or_default() {
            let alg_dir = format!("{dir}/{alg}");
            for hex in optional(self.driver.list(&alg_dir).await)?.unwrap_or_default() {
                let link = format!("{alg_dir}/{hex}/link");
                let Some(raw) = optional(self.driver.get_content(&link).await)? else {
                    continue;
                };
                let desc: Descriptor =
                    serde_json::from_slice(&raw).map_err(|e| ApiError::internal(&e))?;
                out.push(desc);
            }
        }
        Ok(out)
    }

    /// All repository names, sorted.
    pub async fn repositories(&self) -> ApiResult<Vec<String>> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let dir = if prefix.is_empty() {
                layout::REPOSITORIES.to_string()
            } else {
                layout::repo(&prefix)
            };
            let Some(children) = optional(self.driver.list(&dir).await)? else {
                continue;
            };
            for child in children {
                if child.starts_with('_') {
                    if (child == "_manifests" || child == "_layers") && !out.contains(&prefix) {
                        out.push(prefix.clone());
                    }
                    continue;
                }
                pending.push(if prefix.is_empty() {
                    child
                } else {
                    format!("{prefix}/{child}")
                });
            }
        }
        out.sort();
        Ok(out)
    }
}

enum Parsed {
    Known(Manifest),
    Opaque(String),
}

/// Parses a manifest; `Opaque` for a media type the spec does not define
/// (stored as opaque content).
fn parse_manifest(content_type: Option<&str>, content: &[u8]) -> ApiResult<Parsed> {
    match Manifest::parse(content, content_type) {
        Ok(m) => Ok(Parsed::Known(m)),
        Err(ManifestError::UnsupportedMediaType(t)) => Ok(Parsed::Opaque(t)),
        Err(e) => {
            let mut msg = e.to_string();
            if let Some(s) = std::error::Error::source(&e) {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
            }
            Err(ApiError::new(ErrorCode::ManifestInvalid, msg))
        }
    }
}

/// The `Range` header of an upload holding `size` bytes (distribution's
/// `0-0` for an empty one).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
