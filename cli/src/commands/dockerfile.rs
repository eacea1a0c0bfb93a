//! `berth dockerfile parse|check`: the Dockerfile front end on its own —
//! print the parsed AST as JSON, or run BuildKit's build checks.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_builder::dockerfile::{self, ast_json, lint};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args)]
pub struct DockerfileArgs {
    #[command(subcommand)]
    command: DockerfileCommand,
}

#[derive(Subcommand)]
enum DockerfileCommand {
    /// Print the parsed Dockerfile as JSON (schema: berth-builder's
    /// `dockerfile` module docs)
    #[command(
        after_help = "Examples:\n  berth dockerfile parse Dockerfile\n  berth dockerfile parse --compact app.Dockerfile | jq '.instructions[].keyword'\n  cat Dockerfile | berth dockerfile parse -"
    )]
    Parse {
        /// The Dockerfile ("-" reads standard input)
        file: PathBuf,
        /// One line of JSON instead of indented output
        #[arg(long)]
        compact: bool,
    },
    /// Run BuildKit's build checks; exit 1 on errors (`# check=error=true`
    /// turns warnings into errors)
    #[command(
        after_help = "Examples:\n  berth dockerfile check Dockerfile\n  berth dockerfile check --format json Dockerfile"
    )]
    Check {
        /// The Dockerfile ("-" reads standard input)
        file: PathBuf,
        /// Output format: "text" or "json"
        #[arg(long, default_value = "text")]
        format: String,
    },
}

/// The name errors are reported under, and the Dockerfile's text: valid
/// UTF-8 as read (no copy), invalid bytes replaced with U+FFFD.
fn read(file: &PathBuf) -> anyhow::Result<(String, String)> {
    let (name, bytes) = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        ("Dockerfile".to_string(), bytes)
    } else {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        (file.display().to_string(), bytes)
    };
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((name, text))
}

pub fn run(args: DockerfileArgs) -> anyhow::Result<()> {
    match args.command {
        DockerfileCommand::Parse { file, compact } => {
            let (name, source) = read(&file)?;
            // One instruction at a time: the JSON text is all that is kept,
            // never the whole AST.
            let mut json = ast_json::JsonStream::new(!compact);
            let df = dockerfile::parse_each(&source, &name, |i| json.instruction(&i))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            json.finish(&df, &mut out)?;
            writeln!(out)?;
            out.flush()?;
            Ok(())
        }
        DockerfileCommand::Check { file, format } => {
            let (name, source) = read(&file)?;
            let report = lint::check_source(&source, &name)?;
            match format.as_str() {
                "json" => {
                    let value = json!({
                        "findings": report.findings,
                        "error": report.error.as_ref().map(|e| e.to_string()),
                        "failed": report.failed(),
                        "summary": report.summary(),
                    });
                    println!("{}", serde_json::to_string_pretty(&value)?);
                }
                "text" => {
                    for f in &report.findings {
                        println!("{name}:{}: {}: {} ({})", f.line, f.rule, f.message, f.url);
                    }
                    if !report.failed() {
                        println!("{}", report.summary());
                    }
                }
                other => bail!("unknown format {other:?}: use \"text\" or \"json\""),
            }
            if report.failed() {
                bail!("{}", report.summary());
            }
            Ok(())
        }
    }
}
