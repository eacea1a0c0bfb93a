use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_oci::archive::{self, ArchiveFormat};
use clap::{Args, ValueEnum};

use super::open_store;

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// `docker save` format (manifest.json + repositories, also an OCI layout)
    Docker,
    /// oci-archive: a tar of an OCI image layout
    Oci,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Images to save (name[:tag], digest or ID)
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker")]
    format: FormatArg,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print nothing
    #[arg(short, long)]
    quiet: bool,
}

pub fn save(root: &Path, args: SaveArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let mut items = Vec::new();
    for name in &args.images {
        let resolved = store.resolve(name)?;
        items.push((resolved.descriptor, resolved.reference));
    }
    let format = match args.format {
        FormatArg::Docker => ArchiveFormat::Docker,
        FormatArg::Oci => ArchiveFormat::Oci,
    };
    match &args.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed save never
            // leaves a truncated archive under the requested name.
            let tmp = temp_beside(path);
            let result = (|| -> anyhow::Result<()> {
                let file =
                    File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                let mut w = BufWriter::with_capacity(1 << 20, file);
                archive::save(&store, &items, format, &mut w)?;
                let file = w.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            archive::save(&store, &items, format, &mut w)?;
            w.flush()?;
            Ok(())
        }
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.berth-tmp-{}", std::process::id()))
}

pub fn load(root: &Path, args: LoadArgs) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let loaded = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            archive::load(&store, file).with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty (use -i FILE)");
            }
            archive::load(&store, io::stdin()).context("loading from stdin")?
        }
    };
    if !args.quiet {
        for image in loaded {
            match image.reference {
                Some(r) => println!("Loaded image: {}", r.familiar()),
                None => println!("Loaded image ID: {}", image.descriptor.digest),
            }
        }
    }
    Ok(())
}
