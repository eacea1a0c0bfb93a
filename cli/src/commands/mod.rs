pub mod archive;
pub mod build;
pub mod containers;
pub mod dockerfile;
pub mod images;
pub mod registry;
pub mod remote;
pub mod run;

use std::path::Path;

use anyhow::Context;
use berth_oci::Store;
use berth_oci::snapshot::{Snapshotter, chain_ids};
use berth_oci::store::PruneReport;

pub fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("opening store at {}", root.display()))
}

/// Sweeps blobs no tag or build cache entry reaches (and untagged images when
/// `untagged`), then the unpacked snapshots of layers no remaining image uses.
pub fn collect_garbage(store: &Store, untagged: bool) -> anyhow::Result<(PruneReport, usize)> {
    let cache_roots = berth_builder::build::CacheIndex::open(store.root()).roots();
    let report = store.prune(untagged, &cache_roots)?;
    let mut live = Vec::new();
    for entry in store.entries()? {
        // Every platform of an index that is present locally keeps its layers;
        // an image that cannot be read keeps nothing (it unpacks again if used).
        for image in store.present_images(&entry.descriptor).unwrap_or_default() {
            if let Some(top) = chain_ids(&image.config.rootfs.diff_ids).pop() {
                live.push(top);
            }
        }
    }
    let snapshots = Snapshotter::new(store).prune(&live)?;
    Ok((report, snapshots))
}
