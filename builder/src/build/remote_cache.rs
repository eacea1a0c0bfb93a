//! Build cache export and import (`--cache-to`, `--cache-from`), for CI
//! runners that start with an empty root.
//!
//! The cache is one OCI artifact: an image manifest whose `artifactType` is
//! [`ARTIFACT_TYPE`], whose config blob is the cache index (step key →
//! index of the step's layer in the manifest, or none for an empty step) and
//! whose layers are the cached layers. An image manifest rather than an
//! index with custom media types, since registries such as ECR and GHCR
//! reject the latter. `type=inline` puts the same index into the built
//! image's config under [`INLINE_FIELD`], pointing at the image's layers.
//!
//! Keys are the build's own step keys: they hash content and instruction
//! text only, never host paths, inode numbers or mtimes, so runner B finds
//! what runner A exported. Layers found through an imported cache are only
//! fetched when a later step needs the files or the final image needs them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use berth_oci::manifest::to_canonical_json;
use berth_oci::{Descriptor, Digest, ImageManifest, Manifest, Reference, Store, media_types};
use berth_registry_client::{Client, MountOutcome, block_on};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::BuildError;

pub const ARTIFACT_TYPE: &str = "application/vnd.berth.buildcache.v1";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.berth.buildcache.config.v1+json";
pub const INLINE_FIELD: &str = "berth.buildcache.v1";
/// The tag a local (directory) cache is stored under.
const LOCAL_TAG: &str = "berth-buildcache:latest";

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the stage that becomes the image.
    Min,
    /// The steps of every stage built.
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTarget {
    Registry(Reference),
    Local(PathBuf),
    Inline,
}

/// `--cache-to type=…` or `--cache-from type=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub target: CacheTarget,
    pub mode: CacheMode,
}

impl CacheSpec {
    /// Parses `type=registry,ref=R[,mode=min|max]`, `type=local,dest=D` /
    /// `type=local,src=D`, `type=inline`; a bare reference means registry.
    pub fn parse(text: &str) -> Result<CacheSpec, BuildError> {
        let bad = |m: String| BuildError::Invalid(format!("cache option {text:?}: {m}"));
        let mut kv = BTreeMap::new();
        for part in text.split(',') {
            match part.split_once('=') {
                Some((k, v)) => {
                    kv.insert(k.trim().to_string(), v.trim().to_string());
                }
                None if !text.contains('=') => {
                    kv.insert("type".into(), "registry".into());
                    kv.insert("ref".into(), part.trim().to_string());
                }
                None => return Err(bad(format!("{part:?} is not key=value"))),
            }
        }
        let mode = match kv.get("mode").map(String::as_str) {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(m) => return Err(bad(format!("mode={m}: use min or max"))),
        };
        let target = match kv.get("type").map(String::as_str) {
            Some("registry") => {
                let r = kv
                    .get("ref")
                    .ok_or_else(|| bad("ref= is required".into()))?;
                CacheTarget::Registry(Reference::parse(r).map_err(|e| bad(e.to_string()))?)
            }
            Some("local") => {
                let d = kv
                    .get("dest")
                    .or_else(|| kv.get("src"))
                    .ok_or_else(|| bad("dest= or src= is required".into()))?;
                CacheTarget::Local(PathBuf::from(d))
            }
            Some("inline") => CacheTarget::Inline,
            other => {
                return Err(bad(format!(
                    "unknown type {other:?} (registry, local, inline)"
                )));
            }
        };
        Ok(CacheSpec { target, mode })
    }
}

/// The cache index document (the artifact's config blob).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheDocument {
    /// Step key (hex) → what the step produced.
    pub entries: BTreeMap<String, DocEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocEntry {
    /// Index into the manifest's (or image's) layers; None: no layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    #[serde(rename = "diffID", skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
}

/// Where an imported layer can be fetched from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    Registry {
        registry: String,
        repository: String,
    },
    Local(PathBuf),
}

/// A step result found in an imported cache.
#[derive(Debug, Clone)]
pub struct RemoteEntry {
    pub layer: Option<(Descriptor, Digest)>,
    pub source: usize,
}

/// Everything imported with `--cache-from`.
#[derive(Debug, Default)]
pub struct Imported {
    pub entries: HashMap<String, RemoteEntry>,
    pub sources: Vec<LayerSource>,
    /// Caches that could not be read (the build goes on without them).
    pub warnings: Vec<String>,
}

fn pull_error(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Pull {
        image: what.to_string(),
        message: e.to_string(),
    }
}

fn entries_from(
    doc: &CacheDocument,
    layers: &[Descriptor],
    source: usize,
    out: &mut HashMap<String, RemoteEntry>,
) {
    for (key, e) in &doc.entries {
        let layer = match (e.layer, &e.diff_id) {
            (Some(i), Some(diff)) => match layers.get(i) {
                Some(d) => Some((d.clone(), diff.clone())),
                None => continue,
            },
            _ => None,
        };
        out.entry(key.clone())
            .or_insert(RemoteEntry { layer, source });
    }
}

/// Reads every `--cache-from`: only the index documents, never layers.
/// A cache that does not exist yet is skipped (the first CI run).
pub fn import(
    store: &Store,
    client: Option<&Client>,
    specs: &[CacheSpec],
) -> Result<Imported, BuildError> {
    let mut imported = Imported::default();
    for spec in specs {
        match &spec.target {
            CacheTarget::Inline => {}
            CacheTarget::Local(dir) => {
                if !dir.join("index.json").is_file() {
                    continue;
                }
                let layout = Store::open(dir)?;
                let resolved = layout.resolve(LOCAL_TAG)?;
                let bytes = layout.read_document(&resolved.descriptor.digest, "manifest")?;
                let manifest = parse_image_manifest(&bytes, &resolved.descriptor.media_type)?;
                let config = layout.read_document(&manifest.config.digest, "cache index")?;
                let doc: CacheDocument = serde_json::from_slice(&config).map_err(|e| {
                    BuildError::Invalid(format!("cache index in {}: {e}", dir.display()))
                })?;
                let source = imported.sources.len();
                imported.sources.push(LayerSource::Local(dir.clone()));
                entries_from(&doc, &manifest.layers, source, &mut imported.entries);
            }
            CacheTarget::Registry(reference) => {
                let client = client.ok_or_else(|| {
                    BuildError::Invalid("--cache-from type=registry needs registry access".into())
                })?;
                let what = reference.to_string();
                let tag = berth_registry_client::remote_reference(reference);
                // An unreachable cache is a slow build, not a failed one.
                let result = block_on(async {
                    let repo = client
                        .repository(reference.domain(), reference.path())
                        .await?;
                    if repo.head_manifest(&tag).await?.is_none() {
                        return Ok(None);
                    }
                    let remote = repo.get_manifest(&tag).await?;
                    let manifest = match remote.parse()? {
                        Manifest::Image(m) => *m,
                        Manifest::Index(_) => {
                            return Err(berth_registry_client::Error::Invalid(format!(
                                "{what} is an index, not a berth build cache"
                            )));
                        }
                    };
                    repo.fetch_blob_into_store(store, &manifest.config).await?;
                    Ok(Some(manifest))
                })
                .map_err(|e| pull_error(&what, e))
                .and_then(|r| r.map_err(|e| pull_error(&what, e)));
                let manifest = match result {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) => {
                        imported
                            .warnings
                            .push(format!("cache {what} not imported: {e}"));
                        continue;
                    }
                };
                let config = store.read_document(&manifest.config.digest, "cache index")?;
                let doc = if manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE) {
                    serde_json::from_slice::<CacheDocument>(&config)
                        .map_err(|e| BuildError::Invalid(format!("cache index of {what}: {e}")))?
                } else {
                    // An image with inline cache metadata in its config.
                    let value: serde_json::Value = serde_json::from_slice(&config)
                        .map_err(|e| BuildError::Invalid(format!("config of {what}: {e}")))?;
                    match value.get(INLINE_FIELD) {
                        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                            BuildError::Invalid(format!("inline cache of {what}: {e}"))
                        })?,
                        None => continue,
                    }
                };
                let source = imported.sources.len();
                imported.sources.push(LayerSource::Registry {
                    registry: reference.domain().to_string(),
                    repository: reference.path().to_string(),
                });
                entries_from(&doc, &manifest.layers, source, &mut imported.entries);
            }
        }
    }
    Ok(imported)
}

fn parse_image_manifest(bytes: &[u8], media_type: &str) -> Result<ImageManifest, BuildError> {
    match Manifest::parse(bytes, Some(media_type)) {
        Ok(Manifest::Image(m)) => Ok(*m),
        Ok(Manifest::Index(_)) => Err(BuildError::Invalid("cache manifest is an index".into())),
        Err(e) => Err(BuildError::Invalid(format!("cache manifest: {e}"))),
    }
}

/// Copies one imported layer into the store; returns the bytes moved.
pub fn fetch_layer(
    store: &Store,
    client: Option<&Client>,
    source: &LayerSource,
    layer: &Descriptor,
) -> Result<u64, BuildError> {
    if store.has_blob(&layer.digest) {
        return Ok(0);
    }
    match source {
        LayerSource::Local(dir) => {
            let layout = Store::open(dir)?;
            let mut blob = layout.open_blob(&layer.digest)?;
            store.write_blob_from(&mut blob, &layer.digest, Some(layer.size))?;
        }
        LayerSource::Registry {
            registry,
            repository,
        } => {
            let client = client.ok_or_else(|| {
                BuildError::Invalid("fetching cached layers needs registry access".into())
            })?;
            let what = format!("{registry}/{repository}@{}", layer.digest);
            block_on(async {
                let repo = client.repository(registry, repository).await?;
                repo.fetch_blob_into_store(store, layer).await
            })
            .map_err(|e| pull_error(&what, e))?
            .map_err(|e| pull_error(&what, e))?;
        }
    }
    Ok(layer.size)
}

/// One step result to export.
#[derive(Debug, Clone)]
pub struct ExportEntry {
    pub key: Digest,
    pub layer: Option<(Descriptor, Digest)>,
}

/// The document and layer list for a set of entries.
fn document(entries: &[ExportEntry]) -> (CacheDocument, Vec<Descriptor>) {
    let mut doc = CacheDocument::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    for e in entries {
        let entry = match &e.layer {
            Some((desc, diff)) => {
                let index = match layers.iter().position(|l| l.digest == desc.digest) {
                    Some(i) => i,
                    None => {
                        layers.push(desc.clone());
                        layers.len() - 1
                    }
                };
                DocEntry {
                    layer: Some(index),
                    diff_id: Some(diff.clone()),
                }
            }
            None => DocEntry {
                layer: None,
                diff_id: None,
            },
        };
        doc.entries.insert(e.key.hex().to_string(), entry);
    }
    (doc, layers)
}

/// The inline form: entries pointing at the image's own layers.
pub fn inline_document(entries: &[ExportEntry], image_layers: &[Descriptor]) -> CacheDocument {
    let mut doc = CacheDocument::default();
    for e in entries {
        let entry = match &e.layer {
            Some((desc, diff)) => match image_layers.iter().position(|l| l.digest == desc.digest) {
                Some(i) => DocEntry {
                    layer: Some(i),
                    diff_id: Some(diff.clone()),
                },
                None => continue,
            },
            None => DocEntry {
                layer: None,
                diff_id: None,
            },
        };
        doc.entries.insert(e.key.hex().to_string(), entry);
    }
    doc
}

fn artifact(
    store: &Store,
    doc: &CacheDocument,
    layers: Vec<Descriptor>,
) -> Result<(Vec<u8>, ImageManifest), BuildError> {
    let config = serde_json::to_vec(doc).map_err(|e| BuildError::Invalid(e.to_string()))?;
    let config_digest = store.write_blob(&config, None)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: Descriptor::new(CONFIG_MEDIA_TYPE, config_digest, config.len() as u64),
        layers,
        subject: None,
        annotations: None,
        extra: Map::new(),
    };
    let (bytes, _) =
        to_canonical_json(&manifest).map_err(|e| BuildError::Invalid(e.to_string()))?;
    Ok((bytes, manifest))
}

/// Writes the cache for `entries` to a registry or a directory. Layers not
/// in the store (found in an imported cache) are mounted from their source
/// repository when it is on the same registry, fetched otherwise.
pub fn export(
    store: &Store,
    client: Option<&Client>,
    spec: &CacheSpec,
    entries: &[ExportEntry],
    imported: &Imported,
    layer_sources: &HashMap<Digest, usize>,
) -> Result<(), BuildError> {
    let (doc, layers) = document(entries);
    match &spec.target {
        CacheTarget::Inline => Ok(()),
        CacheTarget::Local(dir) => {
            for l in &layers {
                if !store.has_blob(&l.digest)
                    && let Some(&s) = layer_sources.get(&l.digest)
                {
                    fetch_layer(store, client, &imported.sources[s], l)?;
                }
            }
            let (bytes, manifest) = artifact(store, &doc, layers)?;
            let layout = Store::open(dir)?;
            let _guard = layout.writer_guard()?;
            for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
                let mut blob = store.open_blob(&d.digest)?;
                layout.write_blob_from(&mut blob, &d.digest, Some(d.size))?;
            }
            let digest = layout.write_blob(&bytes, None)?;
            let desc = Descriptor::new(media_types::OCI_MANIFEST, digest, bytes.len() as u64);
            let tag =
                Reference::parse(LOCAL_TAG).map_err(|e| BuildError::Invalid(e.to_string()))?;
            layout.set_tag(&tag, &desc)?;
            Ok(())
        }
        CacheTarget::Registry(reference) => {
            let client = client.ok_or_else(|| {
                BuildError::Invalid("--cache-to type=registry needs registry access".into())
            })?;
            let (bytes, manifest) = artifact(store, &doc, layers)?;
            let what = reference.to_string();
            let tag = berth_registry_client::remote_reference(reference);
            block_on(async {
                let repo = client
                    .repository(reference.domain(), reference.path())
                    .await?
                    .for_push();
                for l in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
                    if !store.has_blob(&l.digest) {
                        if repo.head_blob(&l.digest).await?.is_some() {
                            continue;
                        }
                        let source = layer_sources.get(&l.digest).map(|&s| &imported.sources[s]);
                        if let Some(LayerSource::Registry {
                            registry,
                            repository,
                        }) = source
                            && registry == reference.domain()
                        {
                            let mounting = repo.clone().with_pull_from(repository);
                            if let MountOutcome::Mounted =
                                mounting.mount_blob(&l.digest, repository).await?
                            {
                                continue;
                            }
                        }
                        let source = source.cloned();
                        let (store2, client2, l2) = (store.clone(), client.clone(), l.clone());
                        tokio::task::spawn_blocking(move || match source {
                            Some(s) => fetch_layer(&store2, Some(&client2), &s, &l2).map(|_| ()),
                            None => Ok(()),
                        })
                        .await
                        .map_err(|e| berth_registry_client::Error::Task(e.to_string()))?
                        .map_err(|e| berth_registry_client::Error::Invalid(e.to_string()))?;
                    }
                    repo.push_blob_from_store(store, l, None).await?;
                }
                repo.put_manifest(&tag, media_types::OCI_MANIFEST, Bytes::from(bytes))
                    .await?;
                Ok::<(), berth_registry_client::Error>(())
            })
            .map_err(|e| pull_error(&what, e))?
            .map_err(|e| BuildError::Invalid(format!("exporting cache to {what}: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_options_parse() {
        let s = CacheSpec::parse("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap();
        assert_eq!(s.mode, CacheMode::Max);
        assert!(matches!(s.target, CacheTarget::Registry(_)));
        let s = CacheSpec::parse("type=local,dest=/tmp/c").unwrap();
        assert_eq!(s.target, CacheTarget::Local(PathBuf::from("/tmp/c")));
        assert_eq!(s.mode, CacheMode::Min);
        assert_eq!(
            CacheSpec::parse("type=inline").unwrap().target,
            CacheTarget::Inline
        );
        assert!(CacheSpec::parse("type=s3,bucket=x").is_err());
        assert!(CacheSpec::parse("type=registry").is_err());
        assert!(CacheSpec::parse("type=registry,ref=x,mode=all").is_err());
        let s = CacheSpec::parse("localhost:5000/app:cache").unwrap();
        assert!(matches!(s.target, CacheTarget::Registry(_)));
    }

    #[test]
    fn documents_share_layers_and_keep_empty_steps() {
        let d = |n: u8| Digest::sha256_of(&[n]);
        let layer = Descriptor::new(media_types::OCI_LAYER_GZIP, d(1), 10);
        let entries = vec![
            ExportEntry {
                key: d(10),
                layer: Some((layer.clone(), d(2))),
            },
            ExportEntry {
                key: d(11),
                layer: None,
            },
            ExportEntry {
                key: d(12),
                layer: Some((layer.clone(), d(2))),
            },
        ];
        let (doc, layers) = document(&entries);
        assert_eq!(layers.len(), 1);
        assert_eq!(doc.entries.len(), 3);
        assert_eq!(doc.entries[d(11).hex()].layer, None);
        let mut out = HashMap::new();
        entries_from(&doc, &layers, 0, &mut out);
        assert_eq!(out[d(12).hex()].layer.as_ref().unwrap().0.digest, d(1));
        assert!(out[d(11).hex()].layer.is_none());
    }
}
