//! Tags, kept as annotated descriptors in the layout's `index.json`.

use std::fs;
use std::io;

use super::{Store, StoreError, write_atomic};
use crate::manifest::{Descriptor, ImageIndex};
use crate::media_types as mt;
use crate::reference::Reference;

/// One entry of `index.json`: a manifest (or index) and the tag naming it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct TagEntry {
    pub descriptor: Descriptor,
    pub reference: Option<Reference>,
}

impl TagEntry {
    pub(super) fn is_tagged_descriptor(d: &Descriptor) -> bool {
        entry_reference(d).is_some()
    }
}

/// The reference an index.json entry names: containerd's full name first, then
/// the OCI ref.name when it is a full reference rather than a bare tag.
pub(crate) fn entry_reference(d: &Descriptor) -> Option<Reference> {
    if let Some(name) = d.annotation(mt::ANNOTATION_CONTAINERD_NAME)
        && let Ok(r) = Reference::parse(name)
        && r.tag().is_some()
    {
        return Some(r);
    }
    let name = d.annotation(mt::ANNOTATION_REF_NAME)?;
    // A bare "latest" (as `skopeo copy … oci:dir:latest` writes) names no repository.
    if !name.contains(':') && !name.contains('/') {
        return None;
    }
    Reference::parse(name).ok().filter(|r| r.tag().is_some())
}

pub(super) fn read_index(store: &Store) -> Result<ImageIndex, StoreError> {
    let path = store.root().join("index.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ImageIndex::new_oci(Vec::new()));
        }
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| StoreError::BadLayout {
        path,
        reason: format!("index.json: {e}"),
    })
}

pub(super) fn write_entries(store: &Store, entries: &[Descriptor]) -> Result<(), StoreError> {
    let index = ImageIndex::new_oci(entries.to_vec());
    write_index(store, &index)
}

fn write_index(store: &Store, index: &ImageIndex) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(index).map_err(|e| StoreError::BadLayout {
        path: store.root().join("index.json"),
        reason: e.to_string(),
    })?;
    write_atomic(&store.root().join("index.json"), &bytes)
}

fn tagged_descriptor(reference: &Reference, descriptor: &Descriptor) -> Descriptor {
    let mut d = descriptor.clone();
    let mut annotations = d.annotations.take().unwrap_or_default();
    annotations.insert(mt::ANNOTATION_REF_NAME.to_string(), reference.familiar());
    annotations.insert(
        mt::ANNOTATION_CONTAINERD_NAME.to_string(),
        reference.to_string(),
    );
    d.annotations = Some(annotations);
    d
}

pub(crate) fn untagged_descriptor(descriptor: &Descriptor) -> Descriptor {
    let mut d = descriptor.clone();
    if let Some(a) = d.annotations.as_mut() {
        a.remove(mt::ANNOTATION_REF_NAME);
        a.remove(mt::ANNOTATION_CONTAINERD_NAME);
        if a.is_empty() {
            d.annotations = None;
        }
    }
    d
}

impl Store {
    /// Every entry of index.json, tagged or not.
    pub fn entries(&self) -> Result<Vec<TagEntry>, StoreError> {
        Ok(read_index(self)?
            .manifests
            .into_iter()
            .map(|descriptor| TagEntry {
                reference: entry_reference(&descriptor),
                descriptor,
            })
            .collect())
    }

    /// The manifest a tag points at.
    pub fn resolve_tag(&self, reference: &Reference) -> Result<Option<Descriptor>, StoreError> {
        let wanted = reference
            .repository()
            .with_tag(reference.tag().unwrap_or("latest"))?;
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.reference.as_ref() == Some(&wanted))
            .map(|e| e.descriptor))
    }

    /// Applies `change` to the entries of index.json under the index lock and
    /// writes the result atomically.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> T,
    ) -> Result<T, StoreError> {
        let _guard = self.lock_index()?;
        let mut index = read_index(self)?;
        let out = change(&mut index.manifests);
        write_index(self, &index)?;
        Ok(out)
    }

    /// Points `reference` (which must carry a tag) at `descriptor`, replacing
    /// whatever it pointed at. An untagged entry of the same manifest is dropped.
    pub fn set_tag(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), StoreError> {
        let reference = match reference.tag() {
            Some(t) => reference.repository().with_tag(t)?,
            None => reference.repository().with_tag("latest")?,
        };
        let entry = tagged_descriptor(&reference, descriptor);
        self.update_index(|entries| {
            entries.retain(|d| {
                let same_tag = entry_reference(d).as_ref() == Some(&reference);
                let untagged_same = entry_reference(d).is_none() && d.digest == descriptor.digest;
                !same_tag && !untagged_same
            });
            entries.push(entry);
        })
    }

    /// Records a manifest with no tag (a dangling image, as after `docker load`
    /// of an untagged image), unless an entry for it exists already.
    pub fn add_untagged(&self, descriptor: &Descriptor) -> Result<(), StoreError> {
        let entry = untagged_descriptor(descriptor);
        self.update_index(|entries| {
            if !entries.iter().any(|d| d.digest == entry.digest) {
                entries.push(entry);
            }
        })
    }

    /// Removes a tag; returns the descriptor it pointed at.
    pub fn remove_tag(&self, reference: &Reference) -> Result<Option<Descriptor>, StoreError> {
        let wanted = reference
            .repository()
            .with_tag(reference.tag().unwrap_or("latest"))?;
        self.update_index(|entries| {
            let pos = entries
                .iter()
                .position(|d| entry_reference(d).as_ref() == Some(&wanted))?;
            Some(untagged_descriptor(&entries.remove(pos)))
        })
    }
}
