//! The JSON form of a parsed Dockerfile, printed by `berth dockerfile parse`
//! and documented in the [module docs of `dockerfile`](super). It is
//! produced through borrowed views with `serde`, so printing a large file
//! streams without building a tree first.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::ast::{
    ArgDecl, Command, CommandLine, Dockerfile, Healthcheck, Heredoc, Instruction, KeyValue, Source,
};

#[derive(Serialize)]
struct FileView<'a> {
    file: &'a str,
    escape: String,
    directives: Vec<DirectiveView<'a>>,
    instructions: Vec<InstructionView<'a>>,
}

#[derive(Serialize)]
struct DirectiveView<'a> {
    name: &'a str,
    value: &'a str,
    line: usize,
}

#[derive(Serialize)]
struct PairView<'a> {
    key: &'a str,
    value: &'a str,
    legacy: bool,
}

#[derive(Serialize)]
struct ArgView<'a> {
    key: &'a str,
    value: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ArgumentsView<'a> {
    Words(Vec<std::borrow::Cow<'a, str>>),
    Pairs(Vec<PairView<'a>>),
    Args(Vec<ArgView<'a>>),
}

#[derive(Serialize)]
struct HeredocView<'a> {
    name: &'a str,
    body: &'a str,
    expand: bool,
    strip_tabs: bool,
    fd: Option<u32>,
    body_line: usize,
}

#[derive(Serialize)]
struct InstructionView<'a> {
    keyword: &'static str,
    keyword_as_written: &'a str,
    start_line: usize,
    start_column: usize,
    end_line: usize,
    flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    form: Option<&'static str>,
    arguments: ArgumentsView<'a>,
    heredocs: Vec<HeredocView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    onbuild: Option<Box<InstructionView<'a>>>,
}

fn words<'a>(list: impl IntoIterator<Item = &'a String>) -> ArgumentsView<'a> {
    ArgumentsView::Words(list.into_iter().map(|s| s.as_str().into()).collect())
}

fn command_line(cl: &CommandLine) -> (&'static str, Vec<std::borrow::Cow<'_, str>>) {
    match cl {
        CommandLine::Exec(list) => ("exec", list.iter().map(|s| s.as_str().into()).collect()),
        CommandLine::Shell(s) => ("shell", vec![s.as_str().into()]),
    }
}

fn sources<'a>(list: &'a [Source], dest: &'a str) -> ArgumentsView<'a> {
    let mut out: Vec<std::borrow::Cow<'a, str>> = list
        .iter()
        .map(|s| match s {
            Source::Path(p) => p.as_str().into(),
            Source::Heredoc(n) => format!("<<{n}").into(),
        })
        .collect();
    out.push(dest.into());
    ArgumentsView::Words(out)
}

fn pairs(list: &[KeyValue]) -> ArgumentsView<'_> {
    ArgumentsView::Pairs(
        list.iter()
            .map(|p| PairView {
                key: &p.key,
                value: &p.value,
                legacy: p.legacy,
            })
            .collect(),
    )
}

fn args(list: &[ArgDecl]) -> ArgumentsView<'_> {
    ArgumentsView::Args(
        list.iter()
            .map(|a| ArgView {
                key: &a.name,
                value: a.default.as_deref(),
            })
            .collect(),
    )
}

fn heredoc(h: &Heredoc) -> HeredocView<'_> {
    HeredocView {
        name: &h.name,
        body: &h.body,
        expand: h.expand,
        strip_tabs: h.strip_tabs,
        fd: h.fd,
        body_line: h.body_line,
    }
}

fn form(exec: bool) -> Option<&'static str> {
    Some(if exec { "exec" } else { "shell" })
}

fn view(instr: &Instruction) -> InstructionView<'_> {
    let mut shape = None;
    let mut onbuild = None;
    let arguments = match &instr.command {
        Command::From(f) => {
            let mut list: Vec<std::borrow::Cow<'_, str>> = vec![f.image.as_str().into()];
            if let (Some(kw), Some(name)) = (&f.as_keyword, &f.stage_name_as_written) {
                list.push(kw.as_str().into());
                list.push(name.as_str().into());
            }
            ArgumentsView::Words(list)
        }
        Command::Run(r) => {
            let (f, list) = command_line(&r.command);
            shape = Some(f);
            ArgumentsView::Words(list)
        }
        Command::Cmd(cl) | Command::Entrypoint(cl) => {
            let (f, list) = command_line(cl);
            shape = Some(f);
            ArgumentsView::Words(list)
        }
        Command::Shell(list) => {
            shape = Some("exec");
            words(list)
        }
        Command::Label(p) | Command::Env(p) => pairs(p),
        Command::Maintainer(s)
        | Command::User(s)
        | Command::Workdir(s)
        | Command::StopSignal(s) => words([s]),
        Command::Expose(ports) => words(ports),
        Command::Add(a) => {
            shape = form(a.exec_form);
            sources(&a.sources, &a.dest)
        }
        Command::Copy(c) => {
            shape = form(c.exec_form);
            sources(&c.sources, &c.dest)
        }
        Command::Volume { paths, exec_form } => {
            shape = form(*exec_form);
            words(paths)
        }
        Command::Arg(list) => args(list),
        Command::Onbuild(nested) => {
            onbuild = Some(Box::new(view(nested)));
            ArgumentsView::Words(vec![nested.original.trim().into()])
        }
        Command::Healthcheck(Healthcheck::None) => ArgumentsView::Words(vec!["NONE".into()]),
        Command::Healthcheck(Healthcheck::Check { command, .. }) => {
            let (f, list) = command_line(command);
            shape = Some(f);
            let mut all = vec!["CMD".into()];
            all.extend(list);
            ArgumentsView::Words(all)
        }
    };
    // ONBUILD's heredocs belong to its nested instruction.
    let heredocs = if onbuild.is_some() {
        Vec::new()
    } else {
        instr.heredocs.iter().map(heredoc).collect()
    };
    InstructionView {
        keyword: instr.keyword.as_str(),
        keyword_as_written: &instr.keyword_as_written,
        start_line: instr.start.line,
        start_column: instr.start.column,
        end_line: instr.end_line,
        flags: instr.flags.iter().map(|f| f.as_written()).collect(),
        form: shape,
        arguments,
        heredocs,
        onbuild,
    }
}

fn file_view(df: &Dockerfile) -> FileView<'_> {
    FileView {
        file: &df.file,
        escape: df.escape.to_string(),
        directives: df
            .directives
            .iter()
            .map(|d| DirectiveView {
                name: &d.name,
                value: &d.value,
                line: d.line,
            })
            .collect(),
        instructions: df.instructions.iter().map(view).collect(),
    }
}

/// Writes the JSON form of `df` to `out`, indented when `pretty`.
pub fn write_json<W: Write>(df: &Dockerfile, out: W, pretty: bool) -> serde_json::Result<()> {
    let v = file_view(df);
    if pretty {
        serde_json::to_writer_pretty(out, &v)
    } else {
        serde_json::to_writer(out, &v)
    }
}

/// The whole file as a JSON value.
pub fn to_json(df: &Dockerfile) -> Value {
    serde_json::to_value(file_view(df)).unwrap_or(Value::Null)
}

/// One instruction as a JSON value.
pub fn instruction_to_json(instr: &Instruction) -> Value {
    serde_json::to_value(view(instr)).unwrap_or(Value::Null)
}
