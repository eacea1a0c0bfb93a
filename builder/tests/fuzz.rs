//! Property tests standing in for a fuzzer (cargo-fuzz needs nightly): the
//! parser, the expander and the `.dockerignore` matcher never panic and
//! finish within a time budget on arbitrary input. Every case is timed; the
//! budget is generous for a debug build on a slow machine, while an
//! exponential algorithm would blow it by orders of magnitude.

use std::time::{Duration, Instant};

use berth_builder::dockerfile::expand::Lexer;
use berth_builder::dockerfile::stages::{BuildOptions, StageGraph, StageScope, Vars};
use berth_builder::dockerfile::{ast_json, lint, parse};
use berth_builder::dockerignore::Dockerignore;
use proptest::prelude::*;

const BUDGET: Duration = Duration::from_secs(2);

fn timed<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < BUDGET, "{what} took {took:?} on {input:?}");
    out
}

/// Pieces that exercise every corner of the grammar.
const DOCKERFILE_TOKENS: &[&str] = &[
    "FROM ",
    "from ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "LABEL ",
    "ARG ",
    "ONBUILD ",
    "CMD ",
    "ENTRYPOINT ",
    "HEALTHCHECK ",
    "SHELL ",
    "EXPOSE ",
    "WORKDIR ",
    "USER ",
    "VOLUME ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "NONE",
    "CMD",
    " AS ",
    " as ",
    "alpine",
    "build",
    "scratch",
    "--mount=",
    "type=cache,target=/x",
    "type=secret,id=a",
    "from=build",
    "--from=",
    "0",
    "1",
    "--chown=",
    "--chmod=",
    "755",
    "u+x",
    "--link",
    "--platform=",
    "$TARGETPLATFORM",
    "--network=none",
    "--interval=",
    "30s",
    "--retries=",
    "--",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "EOF",
    "\tEOF",
    "\n",
    "\r\n",
    "\\\n",
    "`\n",
    "\\",
    "`",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=error=true\n",
    "#",
    " ",
    "\t",
    "=",
    "a=b",
    "a",
    "\"",
    "'",
    "[",
    "]",
    "[\"a\", \"b\"]",
    ",",
    "$",
    "${",
    "}",
    "${a:-b}",
    "${a#*}",
    "${a//x/y}",
    ":",
    "-",
    "+",
    "?",
    "%",
    "*",
    "/",
    "é",
    "\u{feff}",
];

const WORD_TOKENS: &[&str] = &[
    "$", "${", "}", "{", ":", "-", "+", "?", "#", "##", "%", "%%", "/", "//", "*", "?", "\\", "'",
    "\"", "a", "b", "ab", "v", " ", "\t", "\n", "x/y", ".", "é", "${v", "${e", "$v", "$e",
];

const IGNORE_TOKENS: &[&str] = &[
    "*", "**", "?", "[", "]", "^", "!", "/", "a", "b", ".", "..", "\\", "-", "a-z", " ", "\n", "#",
    "é",
];

fn joined(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 0..max).prop_map(|v| v.concat())
}

fn exercise_dockerfile(src: &str) {
    timed("parse", src, || {
        if let Ok(df) = parse(src, "Dockerfile") {
            let _ = ast_json::to_json(&df);
            let _ = lint::check(&df);
            if let Ok(graph) = StageGraph::new(&df, &BuildOptions::default()) {
                let _ = graph.build_order();
                for stage in &graph.stages {
                    let mut scope =
                        StageScope::new(&graph, &BuildOptions::default(), df.escape, Vars::new());
                    for &i in &stage.instructions {
                        if scope.apply(&df, &df.instructions[i]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_grammar_soup(src in joined(DOCKERFILE_TOKENS, 80)) {
        exercise_dockerfile(&src);
    }

    #[test]
    fn parser_never_panics_on_any_text(src in any::<String>()) {
        exercise_dockerfile(&src);
        exercise_dockerfile(&format!("FROM a\nRUN {src}\nCOPY {src}\nENV {src}\n"));
    }

    #[test]
    fn parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        timed("parse_bytes", &String::from_utf8_lossy(&bytes), || {
            let _ = berth_builder::dockerfile::parse_bytes(&bytes, "Dockerfile");
        });
    }

    #[test]
    fn expander_never_panics(word in joined(WORD_TOKENS, 60), value in joined(WORD_TOKENS, 20)) {
        let vars: Vars = [("v", value.as_str()), ("e", "")].into_iter().collect();
        for escape in ['\\', '`'] {
            let mut lexer = Lexer::new(escape);
            timed("expand", &word, || { let _ = lexer.process(&word, &vars); });
            lexer.raw_quotes = true;
            lexer.raw_escapes = true;
            lexer.skip_unset = true;
            timed("expand raw", &word, || { let _ = lexer.process(&word, &vars); });
        }
    }

    #[test]
    fn dockerignore_never_panics(
        patterns in joined(IGNORE_TOKENS, 40),
        paths in prop::collection::vec(joined(IGNORE_TOKENS, 20), 0..8),
    ) {
        timed("dockerignore", &patterns, || {
            if let Ok(d) = Dockerignore::parse(&patterns, ".dockerignore") {
                for p in &paths {
                    let _ = d.is_excluded(p);
                }
                let _ = d.with_build_files_kept("Dockerfile");
            }
        });
    }
}

#[test]
fn pathological_patterns_stay_linear() {
    // Backtracking matchers take exponential time on these.
    let stars = "*a".repeat(30) + "b";
    let long = "a".repeat(20_000);
    let d = Dockerignore::parse(&format!("{stars}\n**/{stars}\n"), ".dockerignore").unwrap();
    timed("dockerignore stars", &stars, || {
        assert!(!d.is_excluded(&long))
    });

    let vars: Vars = [("v", long.as_str())].into_iter().collect();
    let lexer = Lexer::new('\\');
    for op in ["#", "##", "%", "%%"] {
        let word = format!("${{v{op}{stars}}}");
        timed("expand stars", op, || {
            assert_eq!(lexer.process_word(&word, &vars).unwrap(), long);
        });
    }
    let word = format!("${{v/{stars}/x}}");
    let short: Vars = [("v", "a".repeat(2_000).as_str())].into_iter().collect();
    timed("replace stars", "replace", || {
        lexer.process_word(&word, &short).unwrap();
    });
}

#[test]
fn huge_inputs_are_handled() {
    // A long logical line, deep nesting and many heredocs.
    let mut src = String::from("FROM a\nRUN x");
    for _ in 0..50_000 {
        src.push_str(" \\\n y");
    }
    src.push('\n');
    src.push_str(&format!(
        "ENV A={}\n",
        "${B:-".repeat(5_000) + &"}".repeat(5_000)
    ));
    exercise_dockerfile(&src);
    let mut many = String::from("FROM a\n");
    for i in 0..2_000 {
        many.push_str(&format!("RUN <<E{i}\nbody\nE{i}\n"));
    }
    timed("heredocs", "many heredocs", || {
        assert_eq!(
            parse(&many, "Dockerfile").unwrap().instructions.len(),
            2_001
        )
    });
}
