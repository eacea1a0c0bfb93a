//! Parses every Dockerfile under `fixtures/dockerfiles/` and checks its
//! instruction count against `fixtures/dockerfiles/counts.txt`, whose
//! numbers were written down with the files (not produced by this parser).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_builder::dockerfile::{self, ast_json, lint, stages};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerfiles")
}

fn expected_counts() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(corpus_dir().join("counts.txt")).expect("counts.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, count) = l.rsplit_once(' ').expect("<file> <count>");
            (name.to_string(), count.parse().expect("count"))
        })
        .collect()
}

fn corpus_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("fixtures/dockerfiles")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "counts.txt")
        .collect();
    names.sort();
    names
}

#[test]
fn every_corpus_file_parses_with_its_instruction_count() {
    let expected = expected_counts();
    let files = corpus_files();
    assert!(files.len() >= 100, "corpus has only {} files", files.len());
    let mut failures = Vec::new();
    for name in &files {
        let Some(&want) = expected.get(name) else {
            failures.push(format!("{name}: not listed in counts.txt"));
            continue;
        };
        let bytes = std::fs::read(corpus_dir().join(name)).expect("read");
        match dockerfile::parse_bytes(&bytes, name) {
            Ok(df) if df.instructions.len() == want => {}
            Ok(df) => failures.push(format!(
                "{name}: {} instructions, expected {want}",
                df.instructions.len()
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for name in expected.keys() {
        if !files.contains(name) {
            failures.push(format!("{name}: listed in counts.txt but missing"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_corpus_file_plans_lints_and_prints() {
    for name in corpus_files() {
        let bytes = std::fs::read(corpus_dir().join(&name)).expect("read");
        let df = dockerfile::parse_bytes(&bytes, &name).expect("parses");
        let graph = stages::StageGraph::new(&df, &stages::BuildOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!graph.build_order().is_empty(), "{name}");
        let report = lint::check(&df).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.error.is_none(), "{name}: {:?}", report.error);
        let json = ast_json::to_json(&df);
        assert_eq!(
            json["instructions"].as_array().map(Vec::len),
            Some(df.instructions.len()),
            "{name}"
        );
    }
}
