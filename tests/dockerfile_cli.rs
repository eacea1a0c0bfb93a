//! `berth dockerfile parse` as users run it: the JSON it prints for small and
//! large files, and what an error leaves on stdout.

mod common;

use common::*;
use serde_json::Value;

fn parse(args: &[&str]) -> std::process::Output {
    Root::new().run(args)
}

#[test]
fn parse_prints_the_instructions_as_json() {
    let root = Root::new();
    let file = root.scratch("Dockerfile");
    std::fs::write(
        &file,
        "# escape=`\nFROM busybox AS base\nRUN echo a `\n  b\nCOPY --chown=1:1 <<EOF /x\nhi\nEOF\n",
    )
    .unwrap();
    let out = root.ok(&["dockerfile", "parse", file.to_str().unwrap()]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["escape"], "`");
    assert_eq!(json["directives"][0]["name"], "escape");
    let instructions = json["instructions"].as_array().unwrap();
    let keywords: Vec<_> = instructions
        .iter()
        .map(|i| i["keyword"].as_str().unwrap())
        .collect();
    assert_eq!(keywords, ["from", "run", "copy"]);
    assert_eq!(instructions[1]["end_line"], 4);
    assert_eq!(instructions[2]["heredocs"][0]["name"], "EOF");
    // Compact and pretty are the same JSON.
    let compact = root.ok(&["dockerfile", "parse", "--compact", file.to_str().unwrap()]);
    assert_eq!(compact.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
    let compact: Value = serde_json::from_slice(&compact.stdout).unwrap();
    assert_eq!(compact, json);
}

#[test]
fn an_error_prints_no_json_and_names_the_place() {
    let root = Root::new();
    let file = root.scratch("Dockerfile");
    let good = "FROM a\nRUN x\n".repeat(1000);
    std::fs::write(&file, format!("{good}COPY --chwon=1 a b\n{good}")).unwrap();
    let out = parse(&["dockerfile", "parse", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout: {} bytes", out.stdout.len());
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2001:6"), "{err}");
    assert!(err.contains("did you mean --chown?"), "{err}");
}

#[test]
fn a_large_file_streams_its_json_and_matches_the_small_form() {
    let root = Root::new();
    let block = "FROM golang:1.22 AS build\nRUN --mount=type=cache,target=/root/.cache \\\n    go build ./...\nRUN <<EOF\nset -eux\nEOF\nENV A=1 B=\"two words\"\nCOPY --from=build /out /app\nCMD [\"/app\"]\n";
    // Over 8 MiB of JSON, so the text streams rather than being held.
    let copies = 40_000;
    let file = root.scratch("Dockerfile");
    std::fs::write(&file, block.repeat(copies)).unwrap();
    let out = root.ok(&["dockerfile", "parse", "--compact", file.to_str().unwrap()]);
    assert!(
        out.stdout.len() > 8 << 20,
        "only {} bytes of JSON",
        out.stdout.len()
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let instructions = json["instructions"].as_array().unwrap();
    assert_eq!(instructions.len(), 6 * copies);
    let small = root.scratch("Small.Dockerfile");
    std::fs::write(&small, block).unwrap();
    let one = root.ok(&["dockerfile", "parse", "--compact", small.to_str().unwrap()]);
    let one: Value = serde_json::from_slice(&one.stdout).unwrap();
    for (i, want) in one["instructions"].as_array().unwrap().iter().enumerate() {
        let got = &instructions[6 * (copies - 1) + i];
        // Same instruction, 9 lines per block further down.
        assert_eq!(got["keyword"], want["keyword"]);
        assert_eq!(got["arguments"], want["arguments"]);
        assert_eq!(got["flags"], want["flags"]);
        assert_eq!(
            got["start_line"].as_u64().unwrap(),
            want["start_line"].as_u64().unwrap() + 9 * (copies as u64 - 1)
        );
    }

    // An error near the end of such a file: the JSON printed so far is
    // incomplete, and the error says so.
    let bad = root.scratch("Bad.Dockerfile");
    std::fs::write(&bad, format!("{}RUN [\"a\", 1]\n", block.repeat(copies))).unwrap();
    let out = parse(&["dockerfile", "parse", "--compact", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(serde_json::from_slice::<Value>(&out.stdout).is_err());
    let err = stderr(&out);
    assert!(
        err.contains("the JSON printed above is incomplete"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:{}", bad.display(), 9 * copies + 1)),
        "{err}"
    );
}
