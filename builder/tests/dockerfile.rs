//! The Dockerfile front end against the Dockerfile reference and BuildKit's
//! documented behaviour, item by item of the issue.

use std::collections::BTreeMap;

use berth_builder::dockerfile::ast::*;
use berth_builder::dockerfile::expand::Lexer;
use berth_builder::dockerfile::stages::{
    Base, BuildOptions, Platform, StageGraph, StageScope, Vars,
};
use berth_builder::dockerfile::{ast_json, lint, parse};

fn df(src: &str) -> Dockerfile<'_> {
    parse(src, "Dockerfile").unwrap_or_else(|e| panic!("{e}\n---\n{src}"))
}

fn err(src: &str) -> String {
    parse(src, "Dockerfile")
        .expect_err("should fail")
        .to_string()
}

fn cmd(src: &str, n: usize) -> Command<'_> {
    df(src).instructions[n].command.clone()
}

// ---------- lexing and structure ----------

#[test]
fn directives_at_the_top_only() {
    let d = df("# syntax=docker/dockerfile:1.7\n# escape=`\n# check=skip=all\nFROM a\n");
    assert_eq!(d.directive("syntax"), Some("docker/dockerfile:1.7"));
    assert_eq!(d.directive("check"), Some("skip=all"));
    assert_eq!(d.escape, '`');
    // After a comment, an instruction or a blank line, they are comments.
    for src in [
        "# hello\n# escape=`\nFROM a",
        "FROM a\n# escape=`\nRUN x",
        "\n# escape=`\nFROM a",
        "# unknowndirective=x\n# escape=`\nFROM a",
    ] {
        let d = df(src);
        assert_eq!(d.escape, '\\', "{src}");
    }
    assert!(err("# escape=`\n# escape=\\\nFROM a").contains("only one escape parser directive"));
    assert!(err("# escape=%\nFROM a").contains("invalid escape token"));
}

#[test]
fn continuation_with_comments_and_blank_lines_in_between() {
    let d = df(
        "FROM a\nRUN echo one \\\n# a comment\n    # an indented comment\n\n    two \\\n  three\nRUN next\n",
    );
    let Command::Run(run) = &d.instructions[1].command else {
        panic!()
    };
    assert_eq!(
        run.command,
        CommandLine::Shell("echo one     two   three".into())
    );
    assert_eq!(d.instructions[1].start.line, 2);
    assert_eq!(d.instructions[1].end_line, 7);
    assert_eq!(d.instructions[2].start.line, 8);
    assert_eq!(d.empty_continuation_lines, vec![7]);
}

#[test]
fn trailing_escape_at_end_of_file_crlf_and_bom() {
    let d = df("\u{feff}FROM a\r\nRUN echo hi \\\r\n  there\r\nRUN last \\");
    assert_eq!(d.instructions.len(), 3);
    assert_eq!(
        d.instructions[1].command,
        Command::Run(Run {
            command: CommandLine::Shell("echo hi   there".into()),
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![],
        })
    );
    assert!(
        matches!(&d.instructions[2].command, Command::Run(r) if r.command == CommandLine::Shell("last".into()))
    );
}

#[test]
fn backtick_escape_keeps_windows_paths() {
    let d = df(
        "# escape=`\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    && echo ok\n",
    );
    assert_eq!(d.instructions.len(), 3);
    let Command::Copy(c) = &d.instructions[1].command else {
        panic!()
    };
    assert_eq!(c.dest, "c:\\");
    let Command::Run(r) = &d.instructions[2].command else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Shell("dir c:\\     && echo ok".into())
    );
    // With the default escape, the same file continues the COPY line.
    let d = df("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n");
    assert_eq!(d.instructions.len(), 2);
}

#[test]
fn instructions_are_case_insensitive_and_all_known() {
    let d = df(
        "from a\nRun x\ncmd y\nLaBeL a=b\nmaintainer me\nexpose 80\nenv a=b\nadd a b\ncopy a b\nentrypoint e\nvolume /v\nuser u\nworkdir /w\narg A\nonbuild run x\nstopsignal SIGTERM\nhealthcheck NONE\nshell [\"sh\"]\n",
    );
    let kws: Vec<Keyword> = d.instructions.iter().map(|i| i.keyword).collect();
    assert_eq!(kws, Keyword::ALL.to_vec());
    assert_eq!(d.instructions[1].keyword_as_written, "Run");
    assert_eq!(
        err("FROM a\nCOPPY a b"),
        "Dockerfile:2:1: unknown instruction: COPPY (did you mean COPY?)"
    );
}

#[test]
fn exec_form_versus_shell_form() {
    assert_eq!(
        cmd("FROM a\nCMD [\"a\", \"b c\"]", 1),
        Command::Cmd(CommandLine::Exec(vec!["a".into(), "b c".into()]))
    );
    // JSON escapes, including escaped quotes.
    assert_eq!(
        cmd(
            r#"FROM a
ENTRYPOINT ["echo", "say \"hi\"", "tab\there", "\u00e9"]"#,
            1
        ),
        Command::Entrypoint(CommandLine::Exec(vec![
            "echo".into(),
            "say \"hi\"".into(),
            "tab\there".into(),
            "é".into()
        ]))
    );
    // Not valid JSON: shell form, as written.
    assert_eq!(
        cmd("FROM a\nCMD ['single', 'quotes']", 1),
        Command::Cmd(CommandLine::Shell("['single', 'quotes']".into()))
    );
    assert_eq!(
        cmd("FROM a\nCMD [\"a\" \"b\"]", 1),
        Command::Cmd(CommandLine::Shell("[\"a\" \"b\"]".into()))
    );
    assert_eq!(
        cmd("FROM a\nRUN [\"a\"] && b", 1),
        Command::Run(Run {
            command: CommandLine::Shell("[\"a\"] && b".into()),
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![]
        })
    );
    // A JSON array of something else than strings is an error.
    assert!(err("FROM a\nCMD [\"a\", 1]").contains("arrays must be comprised of strings only"));
    // SHELL must be JSON.
    assert!(
        err("FROM a\nSHELL /bin/bash -c")
            .contains("SHELL requires the arguments to be in JSON form")
    );
    assert_eq!(
        cmd("FROM a\nSHELL [\"pwsh\", \"-c\"]", 1),
        Command::Shell(vec!["pwsh".into(), "-c".into()])
    );
}

#[test]
fn run_flags_are_typed() {
    let c = cmd(
        "FROM a\nRUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok,target=/run/tok --network=none --security=insecure --device=vendor.com/gpu=all go build",
        1,
    );
    let Command::Run(run) = c else { panic!() };
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(run.mounts[0].mount_type, MountType::Cache);
    assert_eq!(run.mounts[0].sharing, Some(CacheSharing::Locked));
    assert_eq!(run.mounts[1].mount_type, MountType::Secret);
    assert_eq!(run.mounts[1].id.as_deref(), Some("tok"));
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.security, Some(SecurityMode::Insecure));
    assert_eq!(run.devices[0].name, "vendor.com/gpu=all");
    assert_eq!(run.command, CommandLine::Shell("go build".into()));
    for ty in ["bind", "cache", "tmpfs", "ssh"] {
        let src = format!("FROM a\nRUN --mount=type={ty},target=/x true");
        let Command::Run(r) = cmd(&src, 1) else {
            panic!()
        };
        assert_eq!(r.mounts[0].mount_type.as_str(), ty);
    }
    assert!(err("FROM a\nRUN --network=bridge x").contains("unsupported network mode"));
    assert!(err("FROM a\nRUN --security=root x").contains("unsupported security mode"));
    assert!(err("FROM a\nRUN --network=none --network=host x").contains("given twice"));
    assert!(err("FROM a\nRUN --mount x").contains("needs a value"));
}

#[test]
fn copy_and_add_flags_are_typed() {
    let Command::Copy(c) = cmd(
        "FROM a\nCOPY --from=build --chown=1000:1000 --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b /dst/",
        1,
    ) else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod, Some(Chmod::Octal(0o755)));
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", "tmp"]);
    assert_eq!(
        c.sources,
        [Source::Path("a".into()), Source::Path("b".into())]
    );
    assert_eq!(c.dest, "/dst/");
    let Command::Copy(c) = cmd("FROM a\nCOPY --chmod=u+rwx,go-w a /b", 1) else {
        panic!()
    };
    assert_eq!(c.chmod, Some(Chmod::Symbolic("u+rwx,go-w".into())));
    let Command::Add(a) = cmd(
        "FROM a\nADD --checksum=sha256:abc --keep-git-dir=true --unpack=false --link=false https://x/y.tgz /z",
        1,
    ) else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert!(a.keep_git_dir && !a.link);
    assert_eq!(a.unpack, Some(false));
    assert!(err("FROM a\nCOPY --chmod=999 a b").contains("invalid chmod"));
    assert!(err("FROM a\nADD --from=x a b").contains("unknown flag --from for ADD"));
    assert!(err("FROM a\nCOPY --link=maybe a b").contains("expecting a boolean"));
    assert!(err("FROM a\nCOPY onlyone").contains("requires at least two arguments"));
    let Command::Copy(c) = cmd("FROM a\nCOPY [\"with space\", \"/d\"]", 1) else {
        panic!()
    };
    assert!(c.exec_form);
    assert_eq!(c.sources, [Source::Path("with space".into())]);
}

#[test]
fn misspelt_flag_error_names_file_line_column_and_instruction() {
    let e = parse(
        "FROM alpine\nRUN true\n\n\n\n\nCOPY --from=x --chwon=1 a b\n",
        "Dockerfile",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:7:15: unknown flag --chwon for COPY (did you mean --chown?)"
    );
    assert_eq!(e.instruction.as_deref(), Some("COPY"));
    assert_eq!((e.position.line, e.position.column), (7, 15));
    // On a continuation line the column is that line's.
    let e = parse("FROM a\nCOPY \\\n    --chwon=1 a b\n", "app.Dockerfile").unwrap_err();
    assert_eq!(
        e.to_string(),
        "app.Dockerfile:3:5: unknown flag --chwon for COPY (did you mean --chown?)"
    );
}

#[test]
fn from_platform_and_stage_names() {
    let Command::From(f) = cmd("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build", 0) else {
        panic!()
    };
    assert_eq!(f.image, "golang:1.22");
    assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(f.stage_name.as_deref(), Some("build"));
    assert_eq!(f.stage_name_as_written.as_deref(), Some("Build"));
    assert!(err("FROM a AS 1st").contains("invalid name for build stage"));
    assert!(err("FROM a b").contains("FROM requires either one or three arguments"));
    assert!(err("FROM").contains("FROM requires either one or three arguments"));
    assert!(err("RUN x\nFROM a").contains("no build stage in current context"));
    assert!(err("ARG A=1\n").contains("no stages"));
    assert!(err("# just a comment\n\n").contains("file with no instructions"));
}

#[test]
fn onbuild_nests_an_instruction() {
    let Command::Onbuild(inner) = cmd("FROM a\nONBUILD COPY --chown=app . /app", 1) else {
        panic!()
    };
    assert_eq!(inner.keyword, Keyword::Copy);
    assert_eq!(inner.flags[0].name, "chown");
    assert!(err("FROM a\nONBUILD ONBUILD RUN x").contains("Chaining ONBUILD"));
    assert!(err("FROM a\nONBUILD FROM b").contains("isn't allowed as an ONBUILD trigger"));
    assert!(err("FROM a\nONBUILD").contains("requires at least one argument"));
    let d = df("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let Command::Onbuild(inner) = &d.instructions[1].command else {
        panic!()
    };
    assert_eq!(inner.heredocs[0].body, "echo hi\n");
}

#[test]
fn healthcheck_options() {
    let Command::Healthcheck(h) = cmd(
        "FROM a\nHEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=4 CMD curl -f http://localhost/",
        1,
    ) else {
        panic!()
    };
    assert_eq!(
        h,
        Healthcheck::Check {
            command: CommandLine::Shell("curl -f http://localhost/".into()),
            interval: Some(std::time::Duration::from_secs(30)),
            timeout: Some(std::time::Duration::from_secs(5)),
            start_period: Some(std::time::Duration::from_secs(60)),
            start_interval: Some(std::time::Duration::from_secs(2)),
            retries: Some(4),
        }
    );
    assert_eq!(
        cmd("FROM a\nhealthcheck none", 1),
        Command::Healthcheck(Healthcheck::None)
    );
    assert!(matches!(
        cmd("FROM a\nHEALTHCHECK CMD [\"/bin/check\"]", 1),
        Command::Healthcheck(Healthcheck::Check {
            command: CommandLine::Exec(_),
            ..
        })
    ));
    assert!(err("FROM a\nHEALTHCHECK NONE x").contains("takes no arguments"));
    assert!(err("FROM a\nHEALTHCHECK CMD").contains("Missing command"));
    assert!(err("FROM a\nHEALTHCHECK RUN x").contains("Unknown type"));
    assert!(err("FROM a\nHEALTHCHECK --interval=1us CMD x").contains("cannot be less than 1ms"));
    assert!(err("FROM a\nHEALTHCHECK --retries=-1 CMD x").contains("cannot be negative"));
    assert!(err("FROM a\nHEALTHCHECK --interval=5 CMD x").contains("missing unit"));
}

#[test]
fn other_instructions() {
    assert_eq!(
        cmd("FROM a\nEXPOSE 80/tcp 443", 1),
        Command::Expose(vec!["80/tcp".into(), "443".into()])
    );
    assert_eq!(
        cmd("FROM a\nUSER app:app", 1),
        Command::User("app:app".into())
    );
    assert_eq!(
        cmd("FROM a\nWORKDIR /a b", 1),
        Command::Workdir("/a b".into())
    );
    assert_eq!(
        cmd("FROM a\nSTOPSIGNAL SIGKILL", 1),
        Command::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        cmd("FROM a\nMAINTAINER Jane <j@x>", 1),
        Command::Maintainer("Jane <j@x>".into())
    );
    assert_eq!(
        cmd("FROM a\nVOLUME /a /b", 1),
        Command::Volume {
            paths: vec!["/a".into(), "/b".into()],
            exec_form: false
        }
    );
    assert_eq!(
        cmd("FROM a\nVOLUME [\"/a\"]", 1),
        Command::Volume {
            paths: vec!["/a".into()],
            exec_form: true
        }
    );
    assert!(err("FROM a\nVOLUME [\" \"]").contains("can not be an empty string"));
    assert!(err("FROM a\nUSER").contains("exactly one argument"));
    assert!(err("FROM a\nEXPOSE").contains("at least one argument"));
    assert!(err("FROM a\nWORKDIR --x=1 /a").contains("unknown flag --x for WORKDIR"));
}

// ---------- heredocs ----------

#[test]
fn heredocs_in_run_copy_add() {
    let d = df(
        "FROM a\nRUN <<EOF\napt-get update\napt-get install -y curl\nEOF\nRUN python3 <<EOF\nprint(1)\nEOF\nCOPY <<EOF /etc/motd\nhello\nEOF\nADD <<conf /etc/x.conf\nk=v\nconf\nRUN echo after\n",
    );
    assert_eq!(d.instructions.len(), 6);
    assert_eq!(
        d.instructions[1].heredocs[0].body,
        "apt-get update\napt-get install -y curl\n"
    );
    assert_eq!(d.instructions[1].end_line, 5);
    assert!(
        matches!(&d.instructions[2].command, Command::Run(r) if r.command == CommandLine::Shell("python3 <<EOF".into()))
    );
    let Command::Copy(c) = &d.instructions[3].command else {
        panic!()
    };
    assert_eq!(c.sources, [Source::Heredoc("EOF".into())]);
    assert_eq!(d.instructions[3].heredoc("EOF").unwrap().body, "hello\n");
    let Command::Add(a) = &d.instructions[4].command else {
        panic!()
    };
    assert_eq!(a.sources, [Source::Heredoc("conf".into())]);
    assert_eq!(d.instructions[5].start.line, 15);
}

#[test]
fn several_heredocs_and_strip_tabs() {
    let d = df(
        "FROM a\nRUN <<FILE1 cat > file1 && <<-FILE2 cat > file2\nI am\nfirst\nFILE1\n\tI am\n\t\tsecond\n\tFILE2\n",
    );
    let hs = &d.instructions[1].heredocs;
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[0].body, "I am\nfirst\n");
    assert!(hs[1].strip_tabs);
    assert_eq!(hs[1].body, "\tI am\n\t\tsecond\n");
    assert_eq!(hs[1].content(), "I am\nsecond\n");
}

#[test]
fn quoted_heredoc_delimiters_do_not_expand() {
    let d = df(
        "FROM a\nARG X=1\nCOPY <<\"EOF\" /a\n$X\nEOF\nCOPY <<'EOF' /b\n$X\nEOF\nCOPY <<EOF /c\n$X\nEOF\n",
    );
    assert!(!d.instructions[2].heredocs[0].expand);
    assert!(!d.instructions[3].heredocs[0].expand);
    assert!(d.instructions[4].heredocs[0].expand);
    // Expansion of COPY heredoc bodies follows the flag.
    let graph = StageGraph::new(&d, &BuildOptions::default()).unwrap();
    let mut scope = StageScope::new(&graph, &BuildOptions::default(), d.escape, Vars::new());
    let out: Vec<Instruction> = graph.stages[0]
        .instructions
        .iter()
        .map(|&i| scope.apply(&d, &d.instructions[i]).unwrap())
        .collect();
    assert_eq!(out[1].heredocs[0].body, "$X\n");
    assert_eq!(out[2].heredocs[0].body, "$X\n");
    assert_eq!(out[3].heredocs[0].body, "1\n");
}

#[test]
fn heredoc_errors_and_non_heredocs() {
    assert!(err("FROM a\nRUN <<EOF\nno end\n").contains("unterminated heredoc"));
    assert!(
        err("FROM a\nCOPY a <<EOF\nx\nEOF\n").contains("cannot accept a heredoc as a destination")
    );
    // Exec form and other instructions do not read heredocs.
    let d = df("FROM a\nRUN [\"cat\", \"<<EOF\"]\nCMD cat <<EOF\n");
    assert_eq!(d.instructions.len(), 3);
    assert!(d.instructions.iter().all(|i| i.heredocs.is_empty()));
    // CMD reads no body, so the delimiter line is an instruction of its own.
    assert!(err("FROM a\nCMD cat <<EOF\nEOF\n").contains("unknown instruction: EOF"));
}

// ---------- ENV, LABEL, ARG ----------

#[test]
fn env_and_label_pairs() {
    let Command::Env(p) = cmd("FROM a\nENV A=1 B=\"two words\" C=three\\ words D=", 1) else {
        panic!()
    };
    let kv: Vec<(&str, &str)> = p
        .iter()
        .map(|p| (p.key.as_ref(), p.value.as_ref()))
        .collect();
    assert_eq!(
        kv,
        [
            ("A", "1"),
            ("B", "\"two words\""),
            ("C", "three\\ words"),
            ("D", "")
        ]
    );
    let Command::Env(p) = cmd("FROM a\nENV MY_NAME John Doe", 1) else {
        panic!()
    };
    assert_eq!(
        (p[0].key.as_ref(), p[0].value.as_ref(), p[0].legacy),
        ("MY_NAME", "John Doe", true)
    );
    let Command::Label(p) = cmd(
        "FROM a\nLABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 multi.line=\"a \\\nb\"",
        1,
    ) else {
        panic!()
    };
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].key, "\"com.example.vendor\"");
    assert!(err("FROM a\nENV A=1 B").contains("can't find = in \"B\""));
    assert!(err("FROM a\nENV ONLYKEY").contains("must have two arguments"));
    assert!(err("FROM a\nENV =x").contains("names can not be blank"));
    assert!(err("FROM a\nLABEL").contains("at least one argument"));
}

#[test]
fn arg_with_and_without_defaults() {
    let Command::Arg(a) = cmd("ARG A B=2 C=\"x y\"\nFROM a", 0) else {
        panic!()
    };
    assert_eq!(a.len(), 3);
    assert_eq!(
        a[0],
        ArgDecl {
            name: "A".into(),
            default: None
        }
    );
    assert_eq!(a[1].default.as_deref(), Some("2"));
    assert_eq!(a[2].default.as_deref(), Some("\"x y\""));
    assert!(err("FROM a\nARG =1").contains("ARG names can not be blank"));
}

// ---------- variable expansion and scoping ----------

fn expanded_stage<'src>(
    src: &'src str,
    build_args: &[(&str, &str)],
    stage: usize,
) -> (Vec<Instruction<'src>>, StageScope) {
    let d = df(src);
    let opts = BuildOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..BuildOptions::default()
    };
    let graph = StageGraph::new(&d, &opts).unwrap();
    // Walk the chain of base stages first.
    let mut chain = vec![stage];
    while let Base::Stage(p) = graph.stages[*chain.last().unwrap()].base {
        chain.push(p);
    }
    let mut scope = StageScope::new(&graph, &opts, d.escape, Vars::new());
    let mut out = Vec::new();
    for s in chain.into_iter().rev() {
        out.clear();
        for &i in &graph.stages[s].instructions {
            out.push(scope.apply(&d, &d.instructions[i]).unwrap());
        }
    }
    (out, scope)
}

#[test]
fn env_sees_old_values_within_one_instruction() {
    let (out, scope) = expanded_stage("FROM a\nENV a=old\nENV a=1 b=$a\nENV c=$a\n", &[], 0);
    let Command::Env(p) = &out[1].command else {
        panic!()
    };
    assert_eq!(p[1].value, "old");
    assert_eq!(scope.vars.get("b"), Some("old"));
    assert_eq!(scope.vars.get("c"), Some("1"));
}

#[test]
fn which_instructions_expand() {
    let src = "FROM a\nENV D=/data P=8080 U=app N=x S=SIGTERM\nADD $N.tgz $D/\nCOPY --chown=$U:$U --from=$N ${N}.txt $D/\nEXPOSE $P\nLABEL l=$N\nSTOPSIGNAL $S\nUSER $U\nVOLUME $D\nWORKDIR $D/w\nRUN echo $D\nCMD echo $D\nENTRYPOINT [\"echo\", \"$D\"]\n";
    let (out, _) = expanded_stage(src, &[], 0);
    let Command::Add(a) = &out[1].command else {
        panic!()
    };
    assert_eq!(
        (a.sources[0].clone(), a.dest.as_ref()),
        (Source::Path("x.tgz".into()), "/data/")
    );
    let Command::Copy(c) = &out[2].command else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.sources[0], Source::Path("x.txt".into()));
    assert_eq!(out[3].command, Command::Expose(vec!["8080".into()]));
    assert!(matches!(&out[4].command, Command::Label(p) if p[0].value == "x"));
    assert_eq!(out[5].command, Command::StopSignal("SIGTERM".into()));
    assert_eq!(out[6].command, Command::User("app".into()));
    assert!(matches!(&out[7].command, Command::Volume { paths, .. } if paths[0] == "/data"));
    assert_eq!(out[8].command, Command::Workdir("/data/w".into()));
    // RUN, CMD and ENTRYPOINT bodies go to the shell untouched.
    assert!(
        matches!(&out[9].command, Command::Run(r) if r.command == CommandLine::Shell("echo $D".into()))
    );
    assert_eq!(
        out[10].command,
        Command::Cmd(CommandLine::Shell("echo $D".into()))
    );
    assert_eq!(
        out[11].command,
        Command::Entrypoint(CommandLine::Exec(vec!["echo".into(), "$D".into()]))
    );
}

#[test]
fn mount_flags_expand() {
    let (out, _) = expanded_stage(
        "FROM a\nARG CACHE=/root/.cache\nRUN --mount=type=cache,target=$CACHE,id=${CACHE#/root/} x\n",
        &[],
        0,
    );
    let Command::Run(r) = &out[1].command else {
        panic!()
    };
    assert_eq!(r.mounts[0].target.as_deref(), Some("/root/.cache"));
    assert_eq!(r.mounts[0].id.as_deref(), Some(".cache"));
}

#[test]
fn global_args_only_in_from_unless_redeclared() {
    let src = "ARG VERSION=1.0\nARG BASE=alpine\nFROM $BASE:$VERSION\nRUN x\nENV IN_STAGE=${VERSION:-unset}\nARG VERSION\nENV AFTER=$VERSION\n";
    let d = df(src);
    let graph = StageGraph::new(&d, &BuildOptions::default()).unwrap();
    assert_eq!(graph.stages[0].base, Base::Image("alpine:1.0".into()));
    let (out, _) = expanded_stage(src, &[], 0);
    assert!(matches!(&out[1].command, Command::Env(p) if p[0].value == "unset"));
    assert!(matches!(&out[3].command, Command::Env(p) if p[0].value == "1.0"));
    // Build args override defaults, for global and stage ARGs alike.
    let (out, _) = expanded_stage(src, &[("VERSION", "2.0")], 0);
    assert!(matches!(&out[3].command, Command::Env(p) if p[0].value == "2.0"));
    let d = df(src);
    let opts = BuildOptions {
        build_args: [("VERSION".to_string(), "3".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        StageGraph::new(&d, &opts).unwrap().stages[0].base,
        Base::Image("alpine:3".into())
    );
}

#[test]
fn env_wins_over_arg_declared_before_it() {
    let src = "FROM a\nARG V=from-arg\nENV V=from-env\nENV SEEN=$V\n";
    let (_, scope) = expanded_stage(src, &[("V", "from-build-arg")], 0);
    assert_eq!(scope.vars.get("SEEN"), Some("from-env"));
    assert_eq!(scope.env.get("V"), Some("from-env"));
}

#[test]
fn predefined_platform_args() {
    let opts = BuildOptions {
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        ..Default::default()
    };
    let d = df(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETOS TARGETARCH TARGETVARIANT TARGETPLATFORM BUILDARCH\nENV T=$TARGETOS/$TARGETARCH/$TARGETVARIANT B=$BUILDARCH P=$TARGETPLATFORM\nENV NOTDECLARED=${BUILDOS:-none}\n",
    );
    let graph = StageGraph::new(&d, &opts).unwrap();
    assert_eq!(graph.stages[0].platform.as_deref(), Some("linux/amd64"));
    let mut scope = StageScope::new(&graph, &opts, d.escape, Vars::new());
    for &i in &graph.stages[0].instructions {
        scope.apply(&d, &d.instructions[i]).unwrap();
    }
    assert_eq!(scope.vars.get("T"), Some("linux/arm64/v8"));
    assert_eq!(scope.vars.get("B"), Some("amd64"));
    assert_eq!(scope.vars.get("P"), Some("linux/arm64/v8"));
    assert_eq!(scope.vars.get("NOTDECLARED"), Some("none"));
}

#[test]
fn proxy_args_reach_run_without_declaration() {
    let d = df("FROM a\nRUN curl x\n");
    let opts = BuildOptions {
        build_args: [
            ("HTTP_PROXY".to_string(), "http://p:3128".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let graph = StageGraph::new(&d, &opts).unwrap();
    let scope = StageScope::new(&graph, &opts, d.escape, Vars::new());
    let env = scope.run_env();
    assert_eq!(env.get("HTTP_PROXY"), Some("http://p:3128"));
    assert_eq!(
        env.get("OTHER"),
        None,
        "undeclared build args are not passed"
    );
}

#[test]
fn stages_inherit_variables_from_their_base_stage() {
    let src = "FROM a AS base\nENV X=1\nARG Y=2\nFROM base\nENV Z=$X$Y\n";
    let (_, scope) = expanded_stage(src, &[], 1);
    assert_eq!(scope.vars.get("Z"), Some("12"));
}

#[test]
fn expansion_forms() {
    let lx = Lexer::new('\\');
    let env: Vars = [
        ("file", "archive.tar.gz"),
        ("path", "/usr/local/bin"),
        ("empty", ""),
    ]
    .into_iter()
    .collect();
    let cases = [
        ("$file", "archive.tar.gz"),
        ("${file}", "archive.tar.gz"),
        ("${missing:-default}", "default"),
        ("${empty:-default}", "default"),
        ("${empty-default}", ""),
        ("${file:+alt}", "alt"),
        ("${missing+alt}", ""),
        ("${file#*.}", "tar.gz"),
        ("${file##*.}", "gz"),
        ("${file%.*}", "archive.tar"),
        ("${file%%.*}", "archive"),
        ("${path/local/opt}", "/usr/opt/bin"),
        ("${path//\\//_}", "_usr_local_bin"),
        ("'$file'", "$file"),
        ("\"$file\"", "archive.tar.gz"),
        ("\\$file", "$file"),
    ];
    for (input, want) in cases {
        assert_eq!(lx.process_word(input, &env).unwrap(), want, "{input}");
    }
    assert!(
        lx.process_word("${missing:?is required}", &env)
            .unwrap_err()
            .to_string()
            .contains("missing: is required")
    );
}

// ---------- stages ----------

#[test]
fn stage_graph_targets_and_dependencies() {
    let src = "FROM golang AS build\nRUN go build\nFROM alpine AS test\nCOPY --from=build /a /a\nFROM build AS dev\nFROM scratch\nCOPY --from=0 /a /a\nCOPY --from=alpine:3 /etc/os-release /\nRUN --mount=from=test,target=/t true\n";
    let d = df(src);
    let g = StageGraph::new(&d, &BuildOptions::default()).unwrap();
    assert_eq!(g.stages.len(), 4);
    assert_eq!(g.target, 3);
    assert_eq!(g.stages[2].base, Base::Stage(0));
    assert_eq!(g.stages[3].base, Base::Scratch);
    assert_eq!(g.stages[3].image_sources, ["alpine:3"]);
    assert_eq!(g.build_order(), [0, 1, 3]);
    let opts = BuildOptions {
        target: Some("TEST".into()),
        ..Default::default()
    };
    let g = StageGraph::new(&d, &opts).unwrap();
    assert_eq!(g.build_order(), [0, 1]);
    let opts = BuildOptions {
        target: Some("tset".into()),
        ..Default::default()
    };
    let e = StageGraph::new(&d, &opts).unwrap_err().to_string();
    assert!(
        e.contains("target stage \"tset\" could not be found (did you mean test?)"),
        "{e}"
    );
}

#[test]
fn cycles_unknown_indexes_and_forward_references() {
    let d = df("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n");
    let e = StageGraph::new(&d, &BuildOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("circular dependency detected"), "{e}");
    let d = df("FROM a AS self\nCOPY --from=self /x /x\n");
    assert!(
        StageGraph::new(&d, &BuildOptions::default())
            .unwrap_err()
            .to_string()
            .contains("circular dependency")
    );
    let d = df("FROM a\nCOPY --from=5 /x /x\n");
    let e = StageGraph::new(&d, &BuildOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2:1: invalid stage index 5");
    let d = df("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n");
    let opts = BuildOptions {
        target: Some("one".into()),
        ..Default::default()
    };
    assert!(
        StageGraph::new(&d, &opts)
            .unwrap_err()
            .to_string()
            .contains("needs to be defined before current stage")
    );
    // FROM names only earlier stages; a later name is an image.
    let d = df("FROM later AS first\nFROM alpine AS later\n");
    assert_eq!(
        StageGraph::new(&d, &BuildOptions::default())
            .unwrap()
            .stages[0]
            .base,
        Base::Image("later".into())
    );
}

// ---------- lint ----------

fn rules(src: &str) -> Vec<&'static str> {
    let d = df(src);
    lint::check(&d)
        .unwrap()
        .findings
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[test]
fn lint_rules() {
    assert_eq!(rules("FROM alpine AS Build\nRUN x\n"), ["StageNameCasing"]);
    assert_eq!(rules("FROM alpine as build\nRUN x\n"), ["FromAsCasing"]);
    assert_eq!(rules("from alpine AS build\nrun x\n"), ["FromAsCasing"]);
    assert_eq!(
        rules("FROM alpine\nRUN a \\\n\n b\n"),
        ["NoEmptyContinuation"]
    );
    assert_eq!(
        rules("FROM alpine\nRUN a\nrun b\nRUN c\n"),
        ["ConsistentInstructionCasing"]
    );
    assert_eq!(rules("FROM a AS x\nFROM b AS x\n"), ["DuplicateStageName"]);
    assert_eq!(rules("FROM a AS scratch\n"), ["ReservedStageName"]);
    assert_eq!(rules("FROM a\nCMD run it\n"), ["JSONArgsRecommended"]);
    assert_eq!(
        rules("FROM a\nSHELL [\"bash\", \"-c\"]\nENTRYPOINT run it\n"),
        Vec::<&str>::new()
    );
    assert_eq!(rules("FROM a\nMAINTAINER me\n"), ["MaintainerDeprecated"]);
    assert_eq!(
        rules("FROM $BASE\n"),
        ["InvalidDefaultArgInFrom", "UndefinedArgInFrom"]
    );
    assert_eq!(
        rules("ARG BASE\nFROM ${BASE:-alpine}\n"),
        Vec::<&str>::new()
    );
    assert_eq!(
        rules("FROM --platform=$TARGETPLATFORM alpine\n"),
        ["RedundantTargetPlatform"]
    );
    assert_eq!(
        rules("FROM --platform=linux/amd64 alpine AS build\n"),
        ["FromPlatformFlagConstDisallowed"]
    );
    assert_eq!(
        rules("FROM --platform=linux/amd64 alpine AS build-amd64\n"),
        Vec::<&str>::new()
    );
    assert_eq!(
        rules("FROM a\nWORKDIR app\nWORKDIR more\n"),
        ["WorkdirRelativePath"]
    );
    assert_eq!(
        rules("FROM a\nWORKDIR /app\nWORKDIR rel\n"),
        Vec::<&str>::new()
    );
    assert_eq!(
        rules("FROM a\nCMD [\"a\"]\nCMD [\"b\"]\n"),
        ["MultipleInstructionsDisallowed"]
    );
    assert_eq!(rules("FROM a\nENV name value\n"), ["LegacyKeyValueFormat"]);
    assert_eq!(
        rules("FROM a\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x\n"),
        ["SecretsUsedInArgOrEnv", "SecretsUsedInArgOrEnv"]
    );
    assert_eq!(
        rules("ARG TAG\nFROM alpine:$TAG\n"),
        ["InvalidDefaultArgInFrom"]
    );
    assert_eq!(
        rules("FROM a\nEXPOSE 80/TCP 127.0.0.1:8080:80\n"),
        ["ExposeProtoCasing", "ExposeInvalidFormat"]
    );
}

#[test]
fn lint_messages_match_buildkit() {
    let d = df("FROM alpine${BAES}\nCMD echo hi\n");
    let report = lint::check(&d).unwrap();
    let msgs: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.rule, f.message))
        .collect();
    assert!(msgs.contains(&"JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals".to_string()), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m == "UndefinedArgInFrom: FROM argument 'BAES' is not declared"),
        "{msgs:?}"
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "JSONArgsRecommended")
        .unwrap();
    assert_eq!(
        f.url,
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
    );
    assert_eq!(f.line, 2);
}

#[test]
fn check_directive_skips_and_errors() {
    let d = df("# check=skip=JSONArgsRecommended\nFROM a\nCMD x\nMAINTAINER m\n");
    let r = lint::check(&d).unwrap();
    assert_eq!(
        r.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
        ["MaintainerDeprecated"]
    );
    assert!(!r.failed());
    let d = df("# check=error=true\nFROM a\nCMD x\n");
    let r = lint::check(&d).unwrap();
    assert!(r.failed());
    assert_eq!(
        r.summary(),
        "lint violation found for rules: JSONArgsRecommended"
    );
    let d = df("# check=skip=all;error=true\nFROM a\nCMD x\n");
    assert!(!lint::check(&d).unwrap().failed());
    let d = df("# check=bogus\nFROM a\n");
    assert!(lint::check(&d).is_err());
}

// ---------- JSON ----------

#[test]
fn json_ast_shape() {
    let d = df(
        "# syntax=docker/dockerfile:1\nFROM alpine AS base\nENV A=1 B=\"x y\"\nARG V\nCOPY --from=base --chown=1 <<EOF /dst\nhi\nEOF\nRUN [\"echo\", \"hi\"]\nONBUILD RUN make\n",
    );
    let j = ast_json::to_json(&d);
    assert_eq!(j["directives"][0]["name"], "syntax");
    let ins = j["instructions"].as_array().unwrap();
    assert_eq!(ins[0]["keyword"], "from");
    assert_eq!(
        ins[0]["arguments"],
        serde_json::json!(["alpine", "AS", "base"])
    );
    assert_eq!(ins[1]["arguments"][1]["value"], "\"x y\"");
    assert_eq!(ins[2]["arguments"][0]["value"], serde_json::Value::Null);
    assert_eq!(
        ins[3]["flags"],
        serde_json::json!(["--from=base", "--chown=1"])
    );
    assert_eq!(ins[3]["arguments"], serde_json::json!(["<<EOF", "/dst"]));
    assert_eq!(ins[3]["heredocs"][0]["body"], "hi\n");
    assert_eq!(ins[3]["start_line"], 5);
    assert_eq!(ins[3]["end_line"], 7);
    assert_eq!(ins[4]["form"], "exec");
    assert_eq!(ins[5]["onbuild"]["keyword"], "run");
    assert_eq!(ins[5]["arguments"], serde_json::json!(["RUN make"]));
}
