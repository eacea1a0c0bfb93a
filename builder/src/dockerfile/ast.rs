//! The parsed Dockerfile: instructions with their source positions, flags as
//! written, and typed commands. Words that BuildKit expands later (paths,
//! `--chown`, mount options, ENV values …) are kept exactly as written, quotes
//! included; [`super::stages`] expands them with the right variables in scope.

use std::borrow::Cow;
use std::time::Duration;

use super::error::Position;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The name errors are reported under.
    pub file: String,
    /// The escape character: `\` unless `# escape=` chose the backtick.
    pub escape: char,
    /// Parser directives from the top of the file, in order.
    pub directives: Vec<Directive>,
    pub instructions: Vec<Instruction>,
    /// Last lines of instructions that had blank lines inside a continuation
    /// (BuildKit drops those lines and warns: `NoEmptyContinuation`).
    pub empty_continuation_lines: Vec<usize>,
}

impl Dockerfile {
    /// The value of a parser directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// `# name=value` before the first instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    /// Lower case.
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// One instruction, possibly spread over several lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub keyword: Keyword,
    /// The keyword with its original casing (`from`, `FROM`, `From`);
    /// borrowed for the all-lower and all-upper spellings.
    pub keyword_as_written: Cow<'static, str>,
    /// Where the keyword is.
    pub start: Position,
    /// The last line of the instruction, heredoc bodies included.
    pub end_line: usize,
    /// `--name[=value]` flags in the order written.
    pub flags: Vec<Flag>,
    /// Where the arguments (after the flags) start.
    pub args_position: Position,
    pub command: Command,
    /// Here-documents, in the order their `<<WORD` appear.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's logical line: continuations joined, comments and
    /// blank continuation lines dropped (BuildKit's `Original`).
    pub original: String,
}

impl Instruction {
    /// The heredoc a `<<NAME` source or argument refers to. Like BuildKit,
    /// a name given twice refers to the last body with that name.
    pub fn heredoc(&self, name: &str) -> Option<&Heredoc> {
        self.heredocs.iter().rev().find(|h| h.name == name)
    }
}

/// Every instruction of the Dockerfile reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// Lower case, as BuildKit's AST spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "from",
            Keyword::Run => "run",
            Keyword::Cmd => "cmd",
            Keyword::Label => "label",
            Keyword::Maintainer => "maintainer",
            Keyword::Expose => "expose",
            Keyword::Env => "env",
            Keyword::Add => "add",
            Keyword::Copy => "copy",
            Keyword::Entrypoint => "entrypoint",
            Keyword::Volume => "volume",
            Keyword::User => "user",
            Keyword::Workdir => "workdir",
            Keyword::Arg => "arg",
            Keyword::Onbuild => "onbuild",
            Keyword::Stopsignal => "stopsignal",
            Keyword::Healthcheck => "healthcheck",
            Keyword::Shell => "shell",
        }
    }

    /// Upper case, for messages.
    pub fn upper(self) -> String {
        self.upper_str().to_string()
    }

    pub fn upper_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// The spelling as written, without allocating for the usual ones.
    pub fn spelling(self, written: &str) -> Cow<'static, str> {
        if written == self.upper_str() {
            Cow::Borrowed(self.upper_str())
        } else if written == self.as_str() {
            Cow::Borrowed(self.as_str())
        } else {
            Cow::Owned(written.to_string())
        }
    }

    /// Case-insensitive lookup.
    pub fn parse(word: &str) -> Option<Keyword> {
        if word.len() > 11 {
            return None;
        }
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

/// A `--name[=value]` flag as written (quotes and `\` escapes already
/// removed, as BuildKit does when it splits flags off the line).
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub name: String,
    /// `None` for a bare `--name`.
    pub value: Option<String>,
    pub position: Position,
}

impl Flag {
    /// `--name=value` or `--name`.
    pub fn as_written(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={}", self.name, v),
            None => format!("--{}", self.name),
        }
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    /// The delimiter with quotes removed.
    pub name: String,
    /// The body exactly as read: every line with its line ending, up to but
    /// not including the delimiter line.
    pub body: String,
    /// False when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`):
    /// the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub strip_tabs: bool,
    /// A file descriptor written before `<<` (`3<<EOF`).
    pub fd: Option<u32>,
    /// The first line of the body.
    pub body_line: usize,
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `<<-` asked
    /// for it: what a COPY of the heredoc writes.
    pub fn content(&self) -> String {
        if !self.strip_tabs {
            return self.body.clone();
        }
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// Exec form (a JSON array) or shell form (a string for the shell).
#[derive(Debug, Clone, PartialEq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

impl CommandLine {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandLine::Exec(_))
    }
}

/// `key=value` in ENV and LABEL.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// As written, quotes included; expansion removes them.
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written, if any.
    pub default: Option<String>,
}

/// The typed meaning of an instruction.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// Always exec form: BuildKit rejects `SHELL` in shell form.
    Shell(Vec<String>),
    Label(Vec<KeyValue>),
    Env(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    Add(Add),
    Copy(Copy),
    Volume {
        paths: Vec<String>,
        exec_form: bool,
    },
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(Box<Instruction>),
    StopSignal(String),
    Healthcheck(Healthcheck),
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    /// The base: an image reference, a stage name, or `scratch`; unexpanded.
    pub image: String,
    /// The stage name, lower-cased as BuildKit stores it.
    pub stage_name: Option<String>,
    /// The stage name as written (for `StageNameCasing`).
    pub stage_name_as_written: Option<String>,
    /// The `AS` keyword as written (for `FromAsCasing`).
    pub as_keyword: Option<String>,
    pub platform: Option<String>,
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<RunMount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount=…`. Values holding a `$` are kept unexpanded and checked
/// again after expansion ([`super::flags::parse_mount`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunMount {
    pub mount_type: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size as written (`64m`).
    pub size: Option<String>,
    /// secret: expose the secret as this environment variable.
    pub env: Option<String>,
    /// The flag value as written.
    pub spec: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    Insecure,
    Sandbox,
}

/// `--device=name[,required[=bool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub required: bool,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A path, glob or URL as written.
    Path(String),
    /// `<<NAME`: the body of that heredoc becomes a file called NAME.
    Heredoc(String),
}

/// `--chmod`: octal or (Dockerfile 1.14+) symbolic.
#[derive(Debug, Clone, PartialEq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(String),
    /// Holds a variable; checked after expansion.
    Unexpanded(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// Written as a JSON array.
    pub exec_form: bool,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: String,
    pub exec_form: bool,
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    /// `--unpack` given explicitly (true or false); `None` means the default.
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        command: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
