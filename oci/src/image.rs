//! Images in the local store: resolving what a user typed (tag, digest, image ID
//! prefix) to a manifest and config, choosing a platform from an index, and the
//! views `berth images` / `inspect` / `history` print.

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageConfig, ImageManifest, Manifest, Platform};
use crate::reference::Reference;
use crate::store::{Store, StoreError, TagEntry};

/// A single-platform image read from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The entry the user named (an index for multi-platform images).
    pub top: Descriptor,
    /// The image manifest chosen for the platform.
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
}

impl Image {
    /// Docker's image ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

/// How a user string was resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub descriptor: Descriptor,
    /// The tag used, when the string named one.
    pub reference: Option<Reference>,
}

impl Store {
    /// Resolves a tag (`busybox`, `user/app:v1`), a digest reference
    /// (`busybox@sha256:…`), a manifest or config digest, or an image ID prefix,
    /// the way `docker image inspect` does: tags first, then IDs.
    pub fn resolve(&self, input: &str) -> Result<Resolved, StoreError> {
        let entries = self.entries()?;
        if let Ok(reference) = Reference::parse(input) {
            if let Some(d) = reference.digest() {
                if let Some(e) = entries.iter().find(|e| &e.descriptor.digest == d) {
                    return Ok(Resolved {
                        descriptor: e.descriptor.clone(),
                        reference: None,
                    });
                }
            } else if let Some(descriptor) = self.resolve_tag(&reference)? {
                return Ok(Resolved {
                    descriptor,
                    reference: Some(reference),
                });
            }
        }
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        if !hex.is_empty()
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            if let Some(found) = self.find_by_id_prefix(&entries, hex)? {
                return Ok(found);
            }
        }
        Err(StoreError::ImageNotFound(input.to_string()))
    }

    fn find_by_id_prefix(
        &self,
        entries: &[TagEntry],
        hex: &str,
    ) -> Result<Option<Resolved>, StoreError> {
        let mut found: Option<Descriptor> = None;
        for e in entries {
            let by_manifest = e.descriptor.digest.hex().starts_with(hex);
            let by_config = !by_manifest
                && self
                    .image(&e.descriptor, &Platform::host())
                    .map(|img| img.id().hex().starts_with(hex))
                    .unwrap_or(false);
            if by_manifest || by_config {
                match &found {
                    Some(f) if f.digest != e.descriptor.digest => {
                        return Err(StoreError::ImageNotFound(format!(
                            "{hex} (ambiguous: matches more than one image)"
                        )));
                    }
                    _ => found = Some(e.descriptor.clone()),
                }
            }
        }
        Ok(found.map(|descriptor| Resolved {
            descriptor,
            reference: None,
        }))
    }

    /// Reads the image a descriptor points at, choosing `platform` from an index.
    pub fn image(&self, top: &Descriptor, platform: &Platform) -> Result<Image, StoreError> {
        let mut descriptor = top.clone();
        for _depth in 0..4 {
            let bytes = self.read_document(&descriptor.digest, "manifest")?;
            match Manifest::parse(&bytes, Some(&descriptor.media_type))? {
                Manifest::Image(manifest) => {
                    return self.image_from_manifest(top, descriptor, *manifest);
                }
                Manifest::Index(index) => {
                    let present: Vec<&Descriptor> = index
                        .manifests
                        .iter()
                        .filter(|d| self.has_blob(&d.digest))
                        .collect();
                    descriptor = select_platform(&present, platform)
                        .ok_or_else(|| {
                            StoreError::ImageNotFound(format!(
                                "{} has no manifest for {} in the local store",
                                top.digest,
                                platform.to_short_string()
                            ))
                        })?
                        .clone();
                }
            }
        }
        Err(StoreError::ImageNotFound(format!(
            "{}: indexes nested too deep",
            top.digest
        )))
    }

    /// Every single-platform image under `top` whose manifest is in the store:
    /// the image itself, or each child of an index that was pulled.
    pub fn present_images(&self, top: &Descriptor) -> Result<Vec<Image>, StoreError> {
        let mut images = Vec::new();
        let mut pending = vec![(top.clone(), 0)];
        while let Some((descriptor, depth)) = pending.pop() {
            let bytes = self.read_document(&descriptor.digest, "manifest")?;
            match Manifest::parse(&bytes, Some(&descriptor.media_type))? {
                Manifest::Image(manifest) => {
                    images.push(self.image_from_manifest(top, descriptor, *manifest)?);
                }
                Manifest::Index(index) if depth < 4 => pending.extend(
                    index
                        .manifests
                        .into_iter()
                        .rev()
                        .filter(|d| self.has_blob(&d.digest))
                        .map(|d| (d, depth + 1)),
                ),
                Manifest::Index(_) => {}
            }
        }
        Ok(images)
    }

    fn image_from_manifest(
        &self,
        top: &Descriptor,
        manifest_descriptor: Descriptor,
        manifest: ImageManifest,
    ) -> Result<Image, StoreError> {
        let config_bytes = self.read_document(&manifest.config.digest, "image config")?;
        let config = ImageConfig::parse(&config_bytes)?;
        Ok(Image {
            top: top.clone(),
            manifest_descriptor,
            manifest,
            config,
            config_bytes,
        })
    }

    /// Tags of the store that point at `digest`.
    pub fn tags_of(&self, digest: &Digest) -> Result<Vec<Reference>, StoreError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| &e.descriptor.digest == digest)
            .filter_map(|e| e.reference)
            .collect())
    }
}

/// Picks the child of an index for a platform: os and architecture must match;
/// an exact variant wins, then an entry without variant, then any variant.
pub fn select_platform<'a>(
    candidates: &[&'a Descriptor],
    want: &Platform,
) -> Option<&'a Descriptor> {
    let matching: Vec<&'a Descriptor> = candidates
        .iter()
        .copied()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let variant_of = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    matching
        .iter()
        .find(|d| variant_of(d) == want.variant)
        .or_else(|| matching.iter().find(|d| variant_of(d).is_none()))
        .or(matching.first())
        .copied()
        .or_else(|| {
            // A single child without a platform is taken as the image itself.
            if candidates.len() == 1 && candidates[0].platform.is_none() {
                Some(candidates[0])
            } else {
                None
            }
        })
}

/// `docker image inspect`'s JSON for one image.
pub fn inspect_json(image: &Image, tags: &[Reference]) -> Value {
    let repo_tags: Vec<String> = tags.iter().map(Reference::familiar).collect();
    let mut repo_digests: Vec<String> = tags
        .iter()
        .map(|t| format!("{}@{}", t.familiar_name(), image.top.digest))
        .collect();
    repo_digests.dedup();
    let c = &image.config;
    let mut out = json!({
        "Id": image.id().to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": c.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": c.created.clone().unwrap_or_default(),
        "Author": c.author.clone().unwrap_or_default(),
        "Config": serde_json::to_value(c.config.clone().unwrap_or_default()).unwrap_or(Value::Null),
        "Architecture": c.architecture,
        "Os": c.os,
        "Size": image.size(),
        "RootFS": {
            "Type": if c.rootfs.kind.is_empty() { "layers" } else { c.rootfs.kind.as_str() },
            "Layers": c.rootfs.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
        "Descriptor": {
            "mediaType": image.top.media_type,
            "digest": image.top.digest.to_string(),
            "size": image.top.size,
        },
    });
    if let (Some(v), Some(map)) = (&c.variant, out.as_object_mut()) {
        map.insert("Variant".into(), Value::String(v.clone()));
    }
    out
}

/// Rows of `docker history`: newest first, layer sizes matched to non-empty entries.
pub struct HistoryRow {
    pub created: String,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub layer: Option<Digest>,
}

pub fn history_rows(image: &Image) -> Vec<HistoryRow> {
    let mut layers = image.manifest.layers.iter();
    let mut rows: Vec<HistoryRow> = image
        .config
        .history
        .iter()
        .map(|h| {
            let layer = if h.empty_layer.unwrap_or(false) {
                None
            } else {
                layers.next()
            };
            HistoryRow {
                created: h.created.clone().unwrap_or_default(),
                created_by: h.created_by.clone().unwrap_or_default(),
                size: layer.map_or(0, |l| l.size),
                comment: h.comment.clone().unwrap_or_default(),
                layer: layer.map(|l| l.digest.clone()),
            }
        })
        .collect();
    // Images without history still show their layers.
    for l in layers {
        rows.push(HistoryRow {
            created: String::new(),
            created_by: String::new(),
            size: l.size,
            comment: String::new(),
            layer: Some(l.digest.clone()),
        });
    }
    rows.reverse();
    rows
}
