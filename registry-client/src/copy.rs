//! `copy`: registry to registry without the local store. Blobs are mounted
//! when both repositories are on one registry, else streamed from the source
//! GET into the destination PUT (the destination verifies the digest);
//! manifests are copied byte for byte, every platform of an index.

use std::sync::{Arc, Mutex};

use berth_oci::manifest::Manifest;
use berth_oci::{Descriptor, Reference};
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::progress::{Event, Progress, SkipReason};
use crate::pull::remote_reference;
use crate::repository::{MountOutcome, RemoteManifest, Repository};
use crate::transport::Client;

impl Client {
    /// Copies `source` to `destination`; returns the top manifest's descriptor.
    pub async fn copy(&self, source: &Reference, destination: &Reference) -> Result<Descriptor> {
        let src = self.repository(source.domain(), source.path()).await?;
        let same_registry = source.domain() == destination.domain();
        let mut dst = self
            .repository(destination.domain(), destination.path())
            .await?
            .for_push();
        if same_registry {
            dst = dst.with_pull_from(source.path());
        }
        let top = src.get_manifest(&remote_reference(source)).await?;
        if let Manifest::Index(index) = top.parse()? {
            for child in &index.manifests {
                let m = src.get_manifest(&child.digest.to_string()).await?;
                copy_image(&src, &dst, &m, same_registry).await?;
                dst.put_manifest(&m.digest.to_string(), &m.media_type, m.bytes.clone())
                    .await?;
            }
        } else {
            copy_image(&src, &dst, &top, same_registry).await?;
        }
        dst.put_manifest(
            &remote_reference(destination),
            &top.media_type,
            top.bytes.clone(),
        )
        .await?;
        Ok(top.descriptor())
    }
}

async fn copy_image(
    src: &Repository,
    dst: &Repository,
    m: &RemoteManifest,
    same_registry: bool,
) -> Result<()> {
    let Manifest::Image(manifest) = m.parse()? else {
        return Err(Error::Invalid(format!(
            "{}: nested indexes are not copied",
            m.digest
        )));
    };
    let mut blobs: Vec<&Descriptor> = Vec::new();
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if d.urls.is_none() && !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d);
        }
    }
    let concurrency = src.client().options().concurrency.max(1);
    futures_util::stream::iter(blobs)
        .map(|d| copy_blob(src, dst, d, same_registry))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn copy_blob(
    src: &Repository,
    dst: &Repository,
    desc: &Descriptor,
    same_registry: bool,
) -> Result<()> {
    let client = src.client();
    let progress = client.options().progress.clone();
    let skipped = |reason| {
        progress.event(Event::Skipped {
            digest: desc.digest.clone(),
            size: desc.size,
            reason,
        })
    };
    if dst.head_blob(&desc.digest).await?.is_some() {
        skipped(SkipReason::Exists);
        return Ok(());
    }
    let max_attempts = client.options().max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let location = if same_registry {
                match dst.mount_blob(&desc.digest, src.name()).await? {
                    MountOutcome::Mounted => return Ok(true),
                    MountOutcome::Upload(loc) => loc,
                }
            } else {
                dst.start_upload().await?.0
            };
            progress.event(Event::Started {
                digest: desc.digest.clone(),
                size: desc.size,
                offset: 0,
            });
            let resp = src.blob_response(&desc.digest, 0).await?;
            let body = Mutex::new(Some(streamed_body(resp, desc, progress.clone())));
            dst.put_blob_body(&location, desc, || {
                body.lock()
                    .ok()
                    .and_then(|mut b| b.take())
                    .ok_or_else(|| Error::Task("blob body already sent".to_string()))
            })
            .await?;
            Ok::<bool, Error>(false)
        }
        .await;
        match result {
            Ok(true) => {
                skipped(SkipReason::Mounted);
                return Ok(());
            }
            Ok(false) => {
                progress.event(Event::Finished {
                    digest: desc.digest.clone(),
                    size: desc.size,
                });
                return Ok(());
            }
            Err(e) if e.is_transient() && attempt < max_attempts => {
                client
                    .retry_pause(&format!("copy {}", desc.digest), attempt, &e, None)
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn streamed_body(
    resp: reqwest::Response,
    desc: &Descriptor,
    progress: Arc<dyn Progress>,
) -> reqwest::Body {
    let digest = desc.digest.clone();
    let size = desc.size;
    let mut done = 0u64;
    reqwest::Body::wrap_stream(resp.bytes_stream().map(move |chunk| {
        if let Ok(c) = &chunk {
            done += c.len() as u64;
            progress.event(Event::Advanced {
                digest: digest.clone(),
                done,
                size,
            });
        }
        chunk
    }))
}
