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

/// How much JSON is held back before printing starts: a Dockerfile of up
/// to this much JSON (every real one) with an error anywhere prints none.
const JSON_HOLD_BACK: usize = 8 << 20;

/// How many instructions go from the parser to the printer at a time.
const BATCH: usize = 256;

/// Prints `source` parsed, as JSON. The parser and the JSON writer run on
/// two threads, the parser handing instructions over in batches, so a large
/// file takes about as long as the slower of the two rather than their sum;
/// one batch at a time is held, never the whole AST.
fn print_json(source: &str, name: &str, pretty: bool) -> anyhow::Result<()> {
    let head = dockerfile::head(source, name);
    let (parsed, json) = std::thread::scope(|scope| -> anyhow::Result<_> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<_>>(8);
        // Printed batches come back to be emptied here: what the parser
        // allocated is freed on its own thread, where that is cheapest.
        let (printed_batches, recycled) = std::sync::mpsc::channel::<Vec<_>>();
        let printer = std::thread::Builder::new().spawn_scoped(scope, move || {
            let mut json =
                ast_json::JsonStream::new(pretty, &head, std::io::stdout(), JSON_HOLD_BACK);
            for batch in received {
                for instruction in &batch {
                    json.instruction(instruction);
                }
                let _ = printed_batches.send(batch);
            }
            json
        });
        let printer = printer.context("starting the JSON printer's thread")?;
        let mut batch = Vec::with_capacity(BATCH);
        let parsed = dockerfile::parse_each(source, name, |instruction| {
            batch.push(instruction);
            if batch.len() == BATCH {
                let next = match recycled.try_recv() {
                    Ok(mut printed) => {
                        printed.clear();
                        printed
                    }
                    Err(_) => Vec::with_capacity(BATCH),
                };
                // The printer only stops early by panicking, which the join
                // below reports.
                let _ = batches.send(std::mem::replace(&mut batch, next));
            }
        });
        if !batch.is_empty() {
            let _ = batches.send(batch);
        }
        drop(batches);
        match printer.join() {
            Ok(json) => Ok((parsed, json)),
            Err(_) => bail!("printing the JSON of {name} failed"),
        }
    })?;
    match parsed {
        Ok(_) => {
            json.finish()?;
            let mut out = std::io::stdout().lock();
            writeln!(out)?;
            out.flush()?;
            Ok(())
        }
        Err(e) if json.streaming() => {
            // Finish the partial text's last line so the error stands apart.
            println!();
            Err(anyhow::Error::new(e).context("the JSON printed above is incomplete"))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn run(args: DockerfileArgs) -> anyhow::Result<()> {
    match args.command {
        DockerfileCommand::Parse { file, compact } => {
            let (name, source) = read(&file)?;
            print_json(&source, &name, !compact)
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
