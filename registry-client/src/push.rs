//! `push`: an image of the local store to a registry. Blobs first (skipped
//! when the repository has them, mounted when a source repository is known),
//! then child manifests by digest, then the top manifest under the tag.

use berth_oci::image::select_platform;
use berth_oci::manifest::Manifest;
use berth_oci::{Descriptor, Digest, Platform, Reference, Store};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::progress::Event;
use crate::pull::remote_reference;
use crate::repository::Repository;
use crate::transport::Client;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// For an index whose children are not all in the store: the platform to
    /// push alone (default: the host's).
    pub platform: Option<Platform>,
    /// A repository of the same registry to mount blobs from.
    pub mount_from: Option<String>,
}

impl Client {
    /// Pushes the image `source` (a descriptor of the store, e.g. from
    /// `Store::resolve`) to `destination`; returns the pushed top descriptor.
    pub async fn push(
        &self,
        store: &Store,
        source: &Descriptor,
        destination: &Reference,
        options: &PushOptions,
    ) -> Result<Descriptor> {
        let mut repo = self
            .repository(destination.domain(), destination.path())
            .await?
            .for_push();
        if let Some(from) = &options.mount_from {
            repo = repo.with_pull_from(from);
        }
        let target = remote_reference(destination);
        let bytes = store.read_document(&source.digest, "manifest")?;
        match Manifest::parse(&bytes, Some(&source.media_type))? {
            Manifest::Image(_) => {
                push_image(&repo, store, source, &bytes, options).await?;
                put(&repo, &target, &source.media_type, bytes).await?;
                Ok(source.clone())
            }
            Manifest::Index(index) => {
                let all_present = index.manifests.iter().all(|d| store.has_blob(&d.digest));
                if all_present {
                    for child in &index.manifests {
                        let child_bytes = store.read_document(&child.digest, "manifest")?;
                        push_image(&repo, store, child, &child_bytes, options).await?;
                        put(
                            &repo,
                            &child.digest.to_string(),
                            &child.media_type,
                            child_bytes,
                        )
                        .await?;
                    }
                    put(&repo, &target, &source.media_type, bytes).await?;
                    return Ok(source.clone());
                }
                // A partially pulled index: push the one platform that is here.
                let want = options.platform.clone().unwrap_or_else(Platform::host);
                let present: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| store.has_blob(&d.digest))
                    .collect();
                let child = select_platform(&present, &want).ok_or_else(|| Error::NoPlatform {
                    reference: source.digest.to_string(),
                    platform: want.to_short_string(),
                    available: present
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(Platform::to_short_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                let child_bytes = store.read_document(&child.digest, "manifest")?;
                push_image(&repo, store, child, &child_bytes, options).await?;
                put(&repo, &target, &child.media_type, child_bytes).await?;
                Ok(child.clone())
            }
        }
    }
}

async fn put(repo: &Repository, target: &str, media_type: &str, bytes: Vec<u8>) -> Result<Digest> {
    repo.put_manifest(target, media_type, Bytes::from(bytes))
        .await
}

/// Uploads the config and layers of one image manifest.
async fn push_image(
    repo: &Repository,
    store: &Store,
    desc: &Descriptor,
    bytes: &[u8],
    options: &PushOptions,
) -> Result<()> {
    let Manifest::Image(manifest) = Manifest::parse(bytes, Some(&desc.media_type))? else {
        return Err(Error::Invalid(format!(
            "{}: nested indexes are not pushed",
            desc.digest
        )));
    };
    let progress = repo.client().options().progress.clone();
    let mut blobs: Vec<&Descriptor> = Vec::new();
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if blobs.iter().any(|b| b.digest == d.digest) {
            continue;
        }
        // Foreign layers stay where their URLs point.
        if d.urls.is_some() && !store.has_blob(&d.digest) {
            continue;
        }
        blobs.push(d);
    }
    let concurrency = repo.client().options().concurrency.max(1);
    futures_util::stream::iter(blobs)
        .map(|d| {
            let progress = progress.clone();
            async move {
                let outcome = match mount_source(repo, store, d, options) {
                    Some(from) => {
                        let with_source = repo.clone().with_pull_from(&from);
                        with_source
                            .push_blob_from_store(store, d, Some(&from))
                            .await?
                    }
                    None => repo.push_blob_from_store(store, d, None).await?,
                };
                record_source(store, &d.digest, repo);
                if outcome != crate::progress::SkipReason::Present {
                    progress.event(Event::Skipped {
                        digest: d.digest.clone(),
                        size: d.size,
                        reason: outcome,
                    });
                }
                Ok::<(), Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The repository to mount `d` from: the one the caller named, else the
/// newest other repository of the same registry the blob was pulled from or
/// pushed to (as docker's push does).
fn mount_source(
    repo: &Repository,
    store: &Store,
    d: &Descriptor,
    options: &PushOptions,
) -> Option<String> {
    if let Some(from) = &options.mount_from {
        return Some(from.clone());
    }
    store
        .blob_sources(&d.digest)
        .into_iter()
        .find(|s| s.registry == repo.registry() && s.repository != repo.name())
        .map(|s| s.repository)
}

/// Notes that `digest` is in `repo` now. Only a hint for later mounts: a
/// failure to write it costs nothing but a later upload.
pub(crate) fn record_source(store: &Store, digest: &Digest, repo: &Repository) {
    if let Err(e) = store.record_blob_source(digest, repo.registry(), repo.name()) {
        tracing::debug!("cannot record where {digest} is: {e}");
    }
}
