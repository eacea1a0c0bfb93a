//! `pull`: a reference on a registry into the local store. The manifest is
//! HEADed first so that an image the store has is not fetched again; blobs
//! go straight into the store's ingests, several at once; manifests are
//! stored byte for byte, children before the index; the tag is set last.

use berth_oci::image::select_platform;
use berth_oci::manifest::Manifest;
use berth_oci::{Descriptor, Digest, Platform, Reference, Store};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::progress::{Event, SkipReason};
use crate::repository::{RemoteManifest, Repository};
use crate::transport::Client;

/// What to pull from an index.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to choose from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Store the whole index and every child instead of one platform.
    pub all_platforms: bool,
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What the reference now points at in the store: the image manifest, or
    /// the index with `all_platforms`.
    pub descriptor: Descriptor,
    /// The digest the registry serves for the reference (the index's, when
    /// one platform was chosen from it).
    pub remote_digest: Digest,
}

/// The tag or digest to ask the registry for.
pub fn remote_reference(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}

impl Client {
    /// Pulls `reference` into `store` and tags it there (a digest-only
    /// reference is recorded untagged).
    pub async fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<Pulled> {
        let _guard = store.writer_guard()?;
        let repo = self
            .repository(reference.domain(), reference.path())
            .await?;
        let wanted = remote_reference(reference);
        let top = fetch_manifest(&repo, store, &wanted).await?;
        let stored = match top.parse()? {
            Manifest::Image(_) => {
                pull_image(&repo, store, &top).await?;
                top.descriptor()
            }
            Manifest::Index(index) if options.all_platforms => {
                for child in &index.manifests {
                    let m = fetch_manifest(&repo, store, &child.digest.to_string()).await?;
                    if let Manifest::Image(_) = m.parse()? {
                        pull_image(&repo, store, &m).await?;
                    } else {
                        store_manifest(store, &m)?;
                    }
                }
                store_manifest(store, &top)?;
                top.descriptor()
            }
            Manifest::Index(index) => {
                let want = options.platform.clone().unwrap_or_else(Platform::host);
                let children: Vec<&Descriptor> = index.manifests.iter().collect();
                let child = select_platform(&children, &want).ok_or_else(|| Error::NoPlatform {
                    reference: reference.to_string(),
                    platform: want.to_short_string(),
                    available: children
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(Platform::to_short_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                let m = fetch_manifest(&repo, store, &child.digest.to_string()).await?;
                pull_image(&repo, store, &m).await?;
                let mut descriptor = m.descriptor();
                descriptor.platform = child.platform.clone();
                descriptor
            }
        };
        if reference.tag().is_some() {
            store.set_tag(reference, &stored)?;
        } else {
            store.add_untagged(&stored)?;
        }
        Ok(Pulled {
            descriptor: stored,
            remote_digest: top.digest,
        })
    }
}

/// The manifest from the store when a HEAD says the store has it, else from
/// the registry.
async fn fetch_manifest(
    repo: &Repository,
    store: &Store,
    reference: &str,
) -> Result<RemoteManifest> {
    let by_digest = Digest::parse(reference).ok();
    let known = match by_digest {
        Some(d) if store.has_blob(&d) => Some(d),
        Some(_) => None,
        None => repo
            .head_manifest(reference)
            .await?
            .map(|d| d.digest)
            .filter(|d| store.has_blob(d)),
    };
    if let Some(digest) = known {
        let bytes = store.read_document(&digest, "manifest")?;
        if let Ok(parsed) = Manifest::parse(&bytes, None) {
            return Ok(RemoteManifest {
                media_type: parsed.media_type().to_string(),
                bytes: Bytes::from(bytes),
                digest,
            });
        }
    }
    repo.get_manifest(reference).await
}

fn store_manifest(store: &Store, m: &RemoteManifest) -> Result<()> {
    store.write_blob(&m.bytes, Some(&m.digest))?;
    Ok(())
}

/// Fetches the config and layers the store lacks, then stores the manifest.
async fn pull_image(repo: &Repository, store: &Store, m: &RemoteManifest) -> Result<()> {
    let Manifest::Image(manifest) = m.parse()? else {
        return Err(Error::Protocol {
            host: repo.registry().to_string(),
            message: format!("{} is not an image manifest", m.digest),
        });
    };
    let progress = repo.client().options().progress.clone();
    let mut blobs: Vec<Descriptor> = Vec::new();
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if blobs.iter().any(|b| b.digest == d.digest) {
            continue;
        }
        if store.has_blob(&d.digest) {
            progress.event(Event::Skipped {
                digest: d.digest.clone(),
                size: d.size,
                reason: SkipReason::Present,
            });
        } else if d.urls.is_some()
            && berth_oci::media_types::is_layer(&d.media_type)
            && is_foreign(&d.media_type)
        {
            // Non-distributable layers live elsewhere; registries do not serve them.
        } else {
            blobs.push(d.clone());
        }
    }
    let concurrency = repo.client().options().concurrency.max(1);
    futures_util::stream::iter(blobs.iter())
        .map(|d| repo.fetch_blob_into_store(store, d))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if store.has_blob(&d.digest) {
            crate::push::record_source(store, &d.digest, repo);
        }
    }
    store_manifest(store, m)?;
    progress.event(Event::ManifestStored {
        reference: format!("{}/{}", repo.registry(), repo.name()),
        digest: m.digest.clone(),
    });
    Ok(())
}

fn is_foreign(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains("foreign")
}
