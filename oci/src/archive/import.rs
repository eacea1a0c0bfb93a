use std::collections::HashMap;
use std::io::{self, Read};

use serde::Deserialize;

use super::ArchiveError;
use crate::digest::{Algorithm, Digest};
use crate::manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest, to_canonical_json,
};
use crate::media_types as mt;
use crate::reference::Reference;
use crate::store::{MAX_DOCUMENT_SIZE, Store, entry_reference, untagged_descriptor};

/// One image an archive held, and the tag it now has in the store (if any).
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub descriptor: Descriptor,
    pub reference: Option<Reference>,
}

/// `manifest.json` of `docker save`.
#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// What a file of the archive became in the store.
#[derive(Debug, Clone)]
struct StoredFile {
    digest: Digest,
    size: u64,
}

/// Loads an oci-archive or docker-archive (optionally gzip- or zstd-compressed)
/// from a stream into the store and tags its images.
pub fn load(
    store: &Store,
    input: impl Read + Send + 'static,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    // Blobs written by this load must survive a concurrent prune until tagged.
    let _guard = store.writer_guard()?;
    // Archives are often gzipped as a whole (`docker save | gzip`).
    let (_, stream) = crate::layer::decompress(input).map_err(ArchiveError::Read)?;
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, stream));

    let mut documents: HashMap<String, Vec<u8>> = HashMap::new();
    let mut files: HashMap<String, StoredFile> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();

    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw_name = entry
            .path()
            .map_err(ArchiveError::Read)?
            .to_string_lossy()
            .into_owned();
        let name = clean_name(&raw_name);
        let kind = entry.header().entry_type();
        if kind.is_dir() || name.is_empty() {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            // docker save links identical layers to one copy.
            let target = entry
                .link_name()
                .map_err(ArchiveError::Read)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() {
                resolve_relative(&name, &target)
            } else {
                clean_name(&target)
            };
            links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if let Some(digest) = blob_name_digest(&name)? {
            let size = entry.size();
            store.write_blob_from(&mut entry, &digest, Some(size))?;
            files.insert(name, StoredFile { digest, size });
        } else if name.ends_with(".json") || name == "repositories" || name == "oci-layout" {
            let size = entry.size();
            if size > MAX_DOCUMENT_SIZE {
                return Err(ArchiveError::BadEntry {
                    entry: name,
                    reason: format!(
                        "{size} bytes, over the {MAX_DOCUMENT_SIZE}-byte document limit"
                    ),
                });
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            documents.insert(name, buf);
        } else if name.ends_with("layer.tar") || name.ends_with(".tar") || name.ends_with(".tar.gz")
        {
            // A legacy layer, named by its v1 ID rather than its digest.
            let mut ingest = store.ingest(
                &format!("load-{}-{name}", std::process::id()),
                Algorithm::Sha256,
            )?;
            ingest.truncate()?;
            let size = io::copy(&mut entry, &mut ingest).map_err(ArchiveError::Read)?;
            let digest = ingest.commit(Some(size), None)?;
            files.insert(name, StoredFile { digest, size });
        }
    }

    let lookup = |name: &str| -> Option<StoredFile> {
        let name = clean_name(name);
        let mut n = name.as_str();
        let mut hops = 0;
        while let Some(next) = links.get(n) {
            n = next;
            hops += 1;
            if hops > 16 {
                return None;
            }
        }
        files.get(n).cloned()
    };

    let loaded = if let Some(index_bytes) = documents.get("index.json") {
        load_from_index(store, index_bytes)?
    } else if let Some(manifest_bytes) = documents.get("manifest.json") {
        load_from_docker_manifest(store, manifest_bytes, &documents, &lookup)?
    } else {
        return Err(ArchiveError::UnknownFormat);
    };
    if loaded.is_empty() {
        return Err(ArchiveError::Empty);
    }
    Ok(loaded)
}

fn load_from_index(store: &Store, index_bytes: &[u8]) -> Result<Vec<LoadedImage>, ArchiveError> {
    let index: ImageIndex =
        serde_json::from_slice(index_bytes).map_err(|source| ArchiveError::BadDocument {
            file: "index.json".into(),
            source,
        })?;
    let mut loaded = Vec::new();
    for descriptor in index.manifests {
        check_complete(store, &descriptor)?;
        let reference = entry_reference(&descriptor);
        let clean = untagged_descriptor(&descriptor);
        match &reference {
            Some(r) => store.set_tag(r, &clean)?,
            None => store.add_untagged(&clean)?,
        }
        loaded.push(LoadedImage {
            descriptor: clean,
            reference,
        });
    }
    Ok(loaded)
}

/// Every blob an image needs must now be in the store (for an index, at least
/// one child image must be complete).
fn check_complete(store: &Store, descriptor: &Descriptor) -> Result<(), ArchiveError> {
    if !store.has_blob(&descriptor.digest) {
        return Err(ArchiveError::Missing {
            what: "manifest",
            name: descriptor.digest.to_string(),
        });
    }
    let bytes = store.read_document(&descriptor.digest, "manifest")?;
    match Manifest::parse(&bytes, Some(&descriptor.media_type))? {
        Manifest::Image(m) => {
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                if !store.has_blob(&d.digest) {
                    return Err(ArchiveError::Missing {
                        what: if mt::is_config(&d.media_type) {
                            "config"
                        } else {
                            "layer"
                        },
                        name: d.digest.to_string(),
                    });
                }
            }
            Ok(())
        }
        Manifest::Index(i) => {
            let mut first_err = None;
            for child in &i.manifests {
                match check_complete(store, child) {
                    Ok(()) => return Ok(()),
                    Err(e) => first_err = first_err.or(Some(e)),
                }
            }
            Err(first_err.unwrap_or(ArchiveError::Empty))
        }
    }
}

fn load_from_docker_manifest(
    store: &Store,
    manifest_bytes: &[u8],
    documents: &HashMap<String, Vec<u8>>,
    lookup: &dyn Fn(&str) -> Option<StoredFile>,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(manifest_bytes).map_err(|source| ArchiveError::BadDocument {
            file: "manifest.json".into(),
            source,
        })?;
    let mut loaded = Vec::new();
    for entry in entries {
        let (config_digest, config_size) = match lookup(&entry.config) {
            Some(f) => (f.digest, f.size),
            None => {
                let bytes = documents.get(&clean_name(&entry.config)).ok_or_else(|| {
                    ArchiveError::Missing {
                        what: "config",
                        name: entry.config.clone(),
                    }
                })?;
                (store.write_blob(bytes, None)?, bytes.len() as u64)
            }
        };
        let config = ImageConfig::parse(&store.read_document(&config_digest, "image config")?)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::BadEntry {
                entry: "manifest.json".into(),
                reason: format!(
                    "{} layers listed but the config has {} diff_ids",
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let file = lookup(path).ok_or_else(|| ArchiveError::Missing {
                what: "layer",
                name: path.clone(),
            })?;
            let media_type = layer_media_type(store, &file.digest)?;
            if media_type == mt::OCI_LAYER && &file.digest != diff_id {
                return Err(ArchiveError::BadEntry {
                    entry: path.clone(),
                    reason: format!(
                        "layer digest {} does not match diff_id {diff_id}",
                        file.digest
                    ),
                });
            }
            layers.push(Descriptor::new(media_type, file.digest, file.size));
        }
        // The config was written by Docker; an OCI manifest describes it as
        // Docker's own containerd image store does for loaded images.
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: Descriptor::new(mt::OCI_CONFIG, config_digest, config_size),
            layers,
            subject: None,
            annotations: None,
            extra: Default::default(),
        };
        let (bytes, _) =
            to_canonical_json(&manifest).map_err(|source| ArchiveError::BadDocument {
                file: "manifest.json".into(),
                source,
            })?;
        let digest = store.write_blob(&bytes, None)?;
        let mut descriptor = Descriptor::new(mt::OCI_MANIFEST, digest, bytes.len() as u64);
        descriptor.platform = Some(config.platform());
        let tags: Vec<Reference> = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<_, _>>()?;
        if tags.is_empty() {
            store.add_untagged(&descriptor)?;
            loaded.push(LoadedImage {
                descriptor: descriptor.clone(),
                reference: None,
            });
        }
        for t in tags {
            store.set_tag(&t, &descriptor)?;
            loaded.push(LoadedImage {
                descriptor: descriptor.clone(),
                reference: Some(t),
            });
        }
    }
    Ok(loaded)
}

/// The media type of a legacy layer, from its first bytes.
fn layer_media_type(store: &Store, digest: &Digest) -> Result<&'static str, ArchiveError> {
    let mut magic = [0u8; 4];
    let mut f = store.open_blob(digest)?;
    let n = read_up_to(&mut f, &mut magic).map_err(ArchiveError::Read)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => mt::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => mt::OCI_LAYER_ZSTD,
        _ => mt::OCI_LAYER,
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `blobs/sha256/<hex>` → its digest; other names → None; a blobs/ name with a
/// bad digest is an error (it would otherwise be stored unverified).
fn blob_name_digest(name: &str) -> Result<Option<Digest>, ArchiveError> {
    let Some(rest) = name.strip_prefix("blobs/") else {
        return Ok(None);
    };
    let Some((alg, hex)) = rest.split_once('/') else {
        return Ok(None);
    };
    let digest = Digest::parse(&format!("{alg}:{hex}")).map_err(|e| ArchiveError::BadEntry {
        entry: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some(digest))
}

fn clean_name(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn resolve_relative(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return clean_name(target);
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    clean_name(&format!("{dir}/{target}"))
}
