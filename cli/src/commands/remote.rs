//! `berth pull|push|login|logout|manifest|tags|copy`: moving images between
//! the local store and registries through `berth-registry-client`.

use std::path::{Path, PathBuf};

use clap::Args;

/// Transport options every registry command shares (global flags).
#[allow(dead_code)] // read once the registry client lands (issue 7)
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub insecure_registries: Vec<String>,
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args)]
pub struct PullArgs {
    reference: String,
}

#[derive(Args)]
pub struct PushArgs {
    reference: String,
    destination: Option<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    registry: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    registry: Option<String>,
}

#[derive(Args)]
pub struct ManifestArgs {
    reference: String,
}

#[derive(Args)]
pub struct TagsArgs {
    repository: String,
}

#[derive(Args)]
pub struct CopyArgs {
    source: String,
    destination: String,
}

fn not_yet(what: &str) -> anyhow::Result<()> {
    anyhow::bail!("berth {what} is not implemented yet")
}

pub fn pull(_root: &Path, _opts: &RemoteOptions, _a: PullArgs) -> anyhow::Result<()> {
    not_yet("pull")
}
pub fn push(_root: &Path, _opts: &RemoteOptions, _a: PushArgs) -> anyhow::Result<()> {
    not_yet("push")
}
pub fn login(_opts: &RemoteOptions, _a: LoginArgs) -> anyhow::Result<()> {
    not_yet("login")
}
pub fn logout(_opts: &RemoteOptions, _a: LogoutArgs) -> anyhow::Result<()> {
    not_yet("logout")
}
pub fn manifest(_opts: &RemoteOptions, _a: ManifestArgs) -> anyhow::Result<()> {
    not_yet("manifest inspect")
}
pub fn tags(_opts: &RemoteOptions, _a: TagsArgs) -> anyhow::Result<()> {
    not_yet("tags")
}
pub fn copy(_opts: &RemoteOptions, _a: CopyArgs) -> anyhow::Result<()> {
    not_yet("copy")
}
