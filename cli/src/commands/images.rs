use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use berth_oci::image::{Image, history_rows, inspect_json};
use berth_oci::{Digest, Platform, Reference, Store};
use clap::Args;
use serde_json::json;

use super::open_store;
use crate::format::{human_size, since, table};

#[derive(Args)]
pub struct ImagesArgs {
    /// Output format: "table" or "json" (one JSON object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show full image IDs
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
pub struct TagArgs {
    /// Existing image (name[:tag], digest or ID)
    source: String,
    /// New name[:tag]
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Images to remove (name[:tag], digest or ID)
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove an image ID even if several tags point at it
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Images (name[:tag], digest or ID)
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    image: String,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show layer digests
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt (kept for docker compatibility; berth never prompts)
    #[arg(short, long)]
    force: bool,
}

/// The image for the host platform, or for any platform present when the host's is not.
fn local_image(store: &Store, descriptor: &berth_oci::Descriptor) -> anyhow::Result<Image> {
    match store.image(descriptor, &Platform::host()) {
        Ok(i) => Ok(i),
        Err(first) => match store.present_images(descriptor)?.into_iter().next() {
            Some(i) => Ok(i),
            None => Err(first.into()),
        },
    }
}

pub fn images(root: &Path, args: ImagesArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let mut rows = Vec::new();
    for entry in store.entries()? {
        let image = local_image(&store, &entry.descriptor)
            .with_context(|| format!("reading image {}", entry.descriptor.digest))?;
        let (repo, tag) = match &entry.reference {
            Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()),
            None => ("<none>".to_string(), "<none>".to_string()),
        };
        rows.push((repo, tag, image, entry.descriptor.digest));
    }
    rows.sort_by(|a, b| {
        b.2.config
            .created
            .cmp(&a.2.config.created)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    let short_id = |d: &Digest| {
        if args.no_trunc {
            d.to_string()
        } else {
            d.short().to_string()
        }
    };
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for (_, _, image, _) in &rows {
            if seen.insert(image.id().clone()) {
                println!("{}", short_id(image.id()));
            }
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => {
            for (repo, tag, image, digest) in &rows {
                let line = json!({
                    "Repository": repo,
                    "Tag": tag,
                    "ID": short_id(image.id()),
                    "Digest": digest.to_string(),
                    "CreatedAt": image.config.created.clone().unwrap_or_default(),
                    "CreatedSince": since(image.config.created.as_deref()),
                    "Size": human_size(image.size()),
                });
                println!("{line}");
            }
        }
        "table" => {
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|(repo, tag, image, _)| {
                    vec![
                        repo.clone(),
                        tag.clone(),
                        short_id(image.id()),
                        since(image.config.created.as_deref()),
                        human_size(image.size()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                    &table_rows
                )
            );
        }
        other => bail!("unknown --format {other:?} (expected table or json)"),
    }
    Ok(())
}

pub fn tag(root: &Path, args: TagArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        bail!(
            "tag {:?}: a target reference cannot contain a digest",
            args.target
        );
    }
    let _guard = store.writer_guard()?;
    let source = store.resolve(&args.source)?;
    store.set_tag(&target, &source.descriptor)?;
    Ok(())
}

pub fn rmi(root: &Path, args: RmiArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    for name in &args.images {
        let resolved = store.resolve(name)?;
        let digest = resolved.descriptor.digest.clone();
        match resolved.reference {
            Some(r) => {
                store.remove_tag(&r)?;
                println!("Untagged: {}", r.familiar());
            }
            None => {
                let tags = store.tags_of(&digest)?;
                if tags.len() > 1 && !args.force {
                    bail!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        digest.short()
                    );
                }
                for t in &tags {
                    store.remove_tag(t)?;
                    println!("Untagged: {}", t.familiar());
                }
                store.update_index(|entries| entries.retain(|d| d.digest != digest))?;
            }
        }
        if store
            .entries()?
            .iter()
            .all(|e| e.descriptor.digest != digest)
        {
            let (report, _) = super::collect_garbage(&store, false)?;
            println!("Deleted: {digest}");
            for b in report.blobs_removed.iter().filter(|b| **b != digest) {
                println!("Deleted: {b}");
            }
        }
    }
    Ok(())
}

pub fn inspect(root: &Path, args: InspectArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for name in &args.images {
        let resolved = store.resolve(name)?;
        let image = local_image(&store, &resolved.descriptor)?;
        let tags = store.tags_of(&resolved.descriptor.digest)?;
        out.push(inspect_json(&image, &tags));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn history(root: &Path, args: HistoryArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let resolved = store.resolve(&args.image)?;
    let image = local_image(&store, &resolved.descriptor)?;
    let rows = history_rows(&image);
    if args.quiet {
        for r in &rows {
            println!(
                "{}",
                r.layer
                    .as_ref()
                    .map_or("<missing>".to_string(), |d| d.short().to_string())
            );
        }
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = if i == 0 {
                if args.no_trunc {
                    image.id().to_string()
                } else {
                    image.id().short().to_string()
                }
            } else {
                "<missing>".to_string()
            };
            let mut by = r.created_by.replace('\t', " ");
            if !args.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                id,
                since(
                    Some(&r.created)
                        .filter(|c| !c.is_empty())
                        .map(String::as_str),
                ),
                by,
                human_size(r.size),
                r.comment.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table_rows
        )
    );
    Ok(())
}

pub fn prune(root: &Path, _args: PruneArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let (report, snapshots) = super::collect_garbage(&store, true)?;
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in &report.untagged_images {
        by_kind
            .entry("Deleted Images:")
            .or_default()
            .push(format!("deleted: {d}"));
    }
    for (title, lines) in by_kind {
        println!("{title}");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {} ({} blobs, {} unpacked layers)",
        human_size(report.bytes_reclaimed),
        report.blobs_removed.len(),
        snapshots
    );
    Ok(())
}
