//! Online garbage collection: mark every blob reachable from the manifests
//! of every repository (config, layers, index children, and with
//! `delete_untagged` only what tags reach, plus the referrers of what is
//! kept), then sweep blobs that are unmarked and older than the grace
//! period.
//!
//! Pushes go on meanwhile. A blob made reachable during the run (uploaded,
//! mounted, or referenced by a manifest PUT) is pinned in the registry under
//! its stripe's read lock; the sweeper deletes under the write lock and skips
//! pinned blobs, so such a blob survives, and a manifest PUT either sees its
//! blobs intact or fails with `MANIFEST_BLOB_UNKNOWN`. Uploads are also
//! younger than the grace period. Only one stripe is locked at a time and
//! reads take no lock.
//!
//! Run from a separate process (`berth registry gc`) the pins of a running
//! server are not visible; the grace period is then the only protection.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use berth_oci::manifest::Manifest;

use crate::error::ApiResult;
use crate::metrics::METRICS;
use crate::names::layout;
use crate::registry::Registry;
use crate::storage::StorageResult;

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub dry_run: bool,
    pub grace: Duration,
    pub delete_untagged: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub marked: usize,
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub manifests_deleted: usize,
}

fn optional<T>(r: StorageResult<T>) -> StorageResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Digests under a `<alg>/<hex>` directory pair.
async fn digests_under(registry: &Registry, dir: &str) -> ApiResult<Vec<Digest>> {
    let driver = registry.driver();
    let mut out = Vec::new();
    for alg in optional(driver.list(dir).await)?.unwrap_or_default() {
        let alg_dir = format!("{dir}/{alg}");
        for hex in optional(driver.list(&alg_dir).await)?.unwrap_or_default() {
            if let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

pub async fn collect(registry: &Registry, options: &GcOptions) -> ApiResult<GcReport> {
    registry.begin_gc();
    let result = run(registry, options).await;
    registry.end_gc();
    if let Ok(r) = &result {
        METRICS.gc_run(r.bytes_freed);
    }
    result
}

async fn run(registry: &Registry, options: &GcOptions) -> ApiResult<GcReport> {
    let driver = registry.driver().clone();
    let started = SystemTime::now();
    let cutoff = started
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();

    for repo in registry.repositories().await? {
        let revisions = digests_under(registry, &layout::revisions_dir(&repo)).await?;
        let mut manifests = Vec::new();
        for d in &revisions {
            let Ok(m) = registry.get_manifest(&repo, &d.to_string()).await else {
                continue;
            };
            let parsed = Manifest::parse(&m.content, Some(&m.media_type)).ok();
            manifests.push((d.clone(), parsed));
        }
        let keep: BTreeSet<Digest> = if options.delete_untagged {
            let mut keep = BTreeSet::new();
            for tag in registry.tags(&repo).await.unwrap_or_default() {
                if let Some(raw) =
                    optional(driver.get_content(&layout::tag_link(&repo, &tag)).await)?
                    && let Ok(d) = Digest::parse(String::from_utf8_lossy(&raw).trim())
                {
                    keep.insert(d);
                }
            }
            // Close over index children and referrers of kept manifests.
            loop {
                let before = keep.len();
                for (d, parsed) in &manifests {
                    let Some(m) = parsed else { continue };
                    if keep.contains(d) {
                        if let Manifest::Index(i) = m {
                            keep.extend(i.manifests.iter().map(|c| c.digest.clone()));
                        }
                    } else {
                        let subject = match m {
                            Manifest::Image(x) => x.subject.as_ref(),
                            Manifest::Index(x) => x.subject.as_ref(),
                        };
                        if subject.is_some_and(|s| keep.contains(&s.digest)) {
                            keep.insert(d.clone());
                        }
                    }
                }
                if keep.len() == before {
                    break;
                }
            }
            // Young revisions may be a push whose tag is not written yet.
            for d in &revisions {
                let link = optional(driver.stat(&layout::revision_link(&repo, d)).await)?;
                if link.is_some_and(|i| i.modified >= cutoff) {
                    keep.insert(d.clone());
                }
            }
            keep
        } else {
            revisions.iter().cloned().collect()
        };
        for (d, parsed) in manifests {
            if !keep.contains(&d) {
                report.manifests_deleted += 1;
                if !options.dry_run {
                    let _ = registry.remove_manifest_for_gc(&repo, &d).await;
                }
                continue;
            }
            marked.insert(d.clone());
            if let Some(m) = parsed {
                marked.extend(m.references().into_iter().map(|r| r.digest.clone()));
            }
        }
    }
    report.marked = marked.len();

    // Sweep blobs/<alg>/<xx>/<hex>/data.
    for alg in optional(driver.list(layout::BLOBS).await)?.unwrap_or_default() {
        let alg_dir = format!("{}/{alg}", layout::BLOBS);
        for prefix in optional(driver.list(&alg_dir).await)?.unwrap_or_default() {
            let prefix_dir = format!("{alg_dir}/{prefix}");
            for hex in optional(driver.list(&prefix_dir).await)?.unwrap_or_default() {
                let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) else {
                    continue;
                };
                if marked.contains(&d) {
                    continue;
                }
                let data = layout::blob_data(&d);
                let _sweep = registry.lock_for_sweep(&d).await;
                let Some(info) = optional(driver.stat(&data).await)? else {
                    continue;
                };
                if info.modified >= cutoff || registry.is_pinned(&d) {
                    continue;
                }
                report.blobs_deleted += 1;
                report.bytes_freed += info.size;
                if !options.dry_run {
                    optional(driver.delete(&format!("{prefix_dir}/{hex}")).await)?;
                }
            }
        }
    }
    Ok(report)
}
