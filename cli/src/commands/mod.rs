pub mod archive;
pub mod images;

use std::path::Path;

use anyhow::Context;
use berth_oci::Store;

pub fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("opening store at {}", root.display()))
}
