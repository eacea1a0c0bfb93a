use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use serde_json::{Value, json};

use super::ArchiveError;
use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageIndex, Manifest, Platform};
use crate::media_types as mt;
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (skopeo's `oci-archive:`).
    Oci,
    /// `docker save`'s format as Docker 25+ writes it: an OCI layout plus
    /// `manifest.json` and `repositories`, loadable by `docker load` and `podman load`.
    Docker,
}

/// One image to write, with the tag to record for it (if any).
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub descriptor: Descriptor,
    pub reference: Option<Reference>,
}

/// Writes the images to `out` as a deterministic tar: same images, same bytes.
pub fn save(
    store: &Store,
    items: &[(Descriptor, Option<Reference>)],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut docker_positions: BTreeMap<Digest, usize> = BTreeMap::new();

    for (descriptor, reference) in items {
        collect_blobs(store, descriptor, &mut blobs)?;
        let mut entry = descriptor.clone();
        if let Some(r) = reference {
            let mut a = entry.annotations.take().unwrap_or_default();
            // podman reads the docker format as an OCI layout first and takes
            // ref.name as the image name: give it the full name there.
            let ref_name = match format {
                ArchiveFormat::Oci => r.familiar(),
                ArchiveFormat::Docker => r.to_string(),
            };
            a.insert(mt::ANNOTATION_REF_NAME.into(), ref_name);
            a.insert(mt::ANNOTATION_CONTAINERD_NAME.into(), r.to_string());
            entry.annotations = Some(a);
        }
        index_entries.push(entry);

        if format == ArchiveFormat::Docker {
            let image = store.image(descriptor, &Platform::host())?;
            let tag = reference
                .as_ref()
                .and_then(|r| r.tag().map(|t| (r.familiar_name(), t.to_string())));
            if let Some((name, t)) = &tag {
                repositories
                    .entry(name.clone())
                    .or_default()
                    .insert(t.clone(), image.id().hex().to_string());
            }
            // One manifest.json entry per image, listing all of its tags.
            let pos = *docker_positions.entry(image.id().clone()).or_insert_with(|| {
                docker_entries.push(json!({
                    "Config": blob_name(image.id()),
                    "RepoTags": Value::Array(vec![]),
                    "Layers": image.manifest.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
                }));
                docker_entries.len() - 1
            });
            if let Some(r) = reference.as_ref().filter(|r| r.tag().is_some())
                && let Some(Value::Array(tags)) = docker_entries[pos].get_mut("RepoTags")
            {
                tags.push(Value::String(r.familiar()));
            }
        }
    }

    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let layout = format!("{{\"imageLayoutVersion\":\"{}\"}}", mt::OCI_LAYOUT_VERSION);
    append_bytes(&mut tar, "oci-layout", layout.as_bytes())?;
    append_dir(&mut tar, "blobs/")?;
    let algorithms: BTreeSet<&str> = blobs.iter().map(|d| d.algorithm().as_str()).collect();
    for a in &algorithms {
        append_dir(&mut tar, &format!("blobs/{a}/"))?;
    }
    for digest in &blobs {
        let mut file = store.open_blob(digest)?;
        let size = store.blob_size(digest)?;
        let mut header = file_header(size);
        tar.append_data(&mut header, blob_name(digest), &mut file)
            .map_err(write_err)?;
    }
    let index = ImageIndex::new_oci(index_entries);
    append_bytes(&mut tar, "index.json", &to_json(&index)?)?;
    if format == ArchiveFormat::Docker {
        append_bytes(&mut tar, "manifest.json", &to_json(&docker_entries)?)?;
        if !repositories.is_empty() {
            append_bytes(&mut tar, "repositories", &to_json(&repositories)?)?;
        }
    }
    tar.into_inner()
        .map_err(write_err)?
        .flush()
        .map_err(write_err)?;
    Ok(())
}

fn collect_blobs(
    store: &Store,
    descriptor: &Descriptor,
    out: &mut BTreeSet<Digest>,
) -> Result<(), ArchiveError> {
    if !out.insert(descriptor.digest.clone()) {
        return Ok(());
    }
    let bytes = store.read_document(&descriptor.digest, "manifest")?;
    match Manifest::parse(&bytes, Some(&descriptor.media_type))? {
        Manifest::Image(m) => {
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                if !store.has_blob(&d.digest) {
                    return Err(ArchiveError::Missing {
                        what: "blob",
                        name: d.digest.to_string(),
                    });
                }
                out.insert(d.digest.clone());
            }
        }
        Manifest::Index(i) => {
            // Children of other platforms that were never pulled are left out.
            for child in i.manifests.iter().filter(|c| store.has_blob(&c.digest)) {
                collect_blobs(store, child, out)?;
            }
        }
    }
    Ok(())
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ArchiveError> {
    serde_json::to_vec(v).map_err(|e| ArchiveError::Write {
        path: "archive".into(),
        source: io::Error::other(e),
    })
}

fn write_err(source: io::Error) -> ArchiveError {
    ArchiveError::Write {
        path: "archive".into(),
        source,
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = file_header(bytes.len() as u64);
    tar.append_data(&mut h, name, bytes).map_err(write_err)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    tar.append_data(&mut h, name, io::empty())
        .map_err(write_err)
}
