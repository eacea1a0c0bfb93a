//! A small driver for the layer module, used by `bench/layers.sh`.
//!
//! ```text
//! layertool create DIR OUT [--compression gzip|zstd|none] [--level N] [--threads N] [--upper] [--mtime-clamp SECS]
//! layertool diff LOWER NEW OUT [--compression ...] [--level N] [--threads N]
//! layertool extract LAYER DIR [--overlay] [--no-owner]
//! ```
//!
//! `OUT` may be `-` for standard output. Digests are printed on standard error
//! when writing to standard output, on standard output otherwise.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use berth_oci::layer::{
    ApplyOptions, Compression, CreateOptions, LayerDigests, WhiteoutMode, apply_layer,
    write_diff_as_layer, write_dir_as_layer, write_upper_as_layer,
};

const USAGE: &str = "usage:
  layertool create DIR OUT [--compression gzip|zstd|none] [--level N] [--threads N] [--upper] [--mtime-clamp SECS]
  layertool diff LOWER NEW OUT [--compression gzip|zstd|none] [--level N] [--threads N]
  layertool extract LAYER DIR [--overlay] [--no-owner]";

struct Args {
    positional: Vec<String>,
    opts: CreateOptions,
    upper: bool,
    overlay: bool,
    no_owner: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        positional: Vec::new(),
        opts: CreateOptions::default(),
        upper: false,
        overlay: false,
        no_owner: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--compression" => {
                a.opts.compression = value("--compression")?
                    .parse::<Compression>()
                    .map_err(|e| e.to_string())?
            }
            "--level" => {
                a.opts.level = Some(
                    value("--level")?
                        .parse()
                        .map_err(|e| format!("--level: {e}"))?,
                )
            }
            "--threads" => {
                a.opts.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--mtime-clamp" => {
                a.opts.mtime_clamp = Some(
                    value("--mtime-clamp")?
                        .parse()
                        .map_err(|e| format!("--mtime-clamp: {e}"))?,
                )
            }
            "--upper" => a.upper = true,
            "--overlay" => a.overlay = true,
            "--no-owner" => a.no_owner = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => a.positional.push(s.to_string()),
        }
    }
    Ok(a)
}

fn report(d: &LayerDigests, to_stderr: bool, secs: f64) {
    let text = format!(
        "diff_id {}\ndigest {}\nsize {}\nuncompressed_size {}\nseconds {secs:.3}\n",
        d.diff_id, d.digest, d.size, d.uncompressed_size
    );
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn output(path: &str) -> io::Result<Box<dyn Write + Send>> {
    if path == "-" {
        Ok(Box::new(io::stdout()))
    } else {
        Ok(Box::new(File::create(path)?))
    }
}

fn run(cmd: &str, a: Args) -> Result<(), String> {
    let start = Instant::now();
    match (cmd, a.positional.as_slice()) {
        ("create", [dir, out]) => {
            let w = output(out).map_err(|e| format!("{out}: {e}"))?;
            let dir = PathBuf::from(dir);
            let d = if a.upper {
                write_upper_as_layer(&dir, &a.opts, w)
            } else {
                write_dir_as_layer(&dir, &a.opts, w)
            }
            .map_err(|e| e.to_string())?;
            report(&d, out == "-", start.elapsed().as_secs_f64());
        }
        ("diff", [lower, new, out]) => {
            let w = output(out).map_err(|e| format!("{out}: {e}"))?;
            let d = write_diff_as_layer(lower.as_ref(), new.as_ref(), &a.opts, w)
                .map_err(|e| e.to_string())?;
            report(&d, out == "-", start.elapsed().as_secs_f64());
        }
        ("extract", [layer, dir]) => {
            let f = File::open(layer).map_err(|e| format!("{layer}: {e}"))?;
            let mut opts = ApplyOptions::default();
            if a.overlay {
                opts.whiteouts = WhiteoutMode::Overlay;
            }
            if a.no_owner {
                opts.preserve_owner = false;
            }
            let s = apply_layer(BufReader::with_capacity(1 << 20, f), dir.as_ref(), &opts)
                .map_err(|e| e.to_string())?;
            println!(
                "diff_id {}\nuncompressed_size {}\ncompression {}\nseconds {:.3}",
                s.diff_id,
                s.uncompressed_size,
                s.compression,
                start.elapsed().as_secs_f64()
            );
        }
        _ => return Err(USAGE.to_string()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let parsed = match parse(rest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("layertool: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(cmd, parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layertool: {e}");
            ExitCode::FAILURE
        }
    }
}
