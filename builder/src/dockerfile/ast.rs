//! The parsed Dockerfile: instructions with their source positions, flags as
//! written, and typed commands. Words that BuildKit expands later (paths,
//! `--chown`, mount options, ENV values …) are kept exactly as written, quotes
//! included; [`super::stages`] expands them with the right variables in scope.
//!
//! The AST borrows from the source text (`'src`): a word that appears in the
//! source as it is stored (the usual case) is a `Cow::Borrowed` slice of it,
//! so parsing allocates little more than the instruction list. Words that had
//! to be rewritten (continuation lines joined, quotes removed from a flag,
//! JSON escapes decoded, a name lower-cased) are `Cow::Owned`. `into_owned`
//! turns any of these types into one that no longer borrows the source.
//!
//! `map_text` rebuilds a value with every string passed through a function;
//! `into_owned` is built on it, and the parser uses it to move an
//! instruction parsed from a joined copy of its lines back onto the source.

use std::borrow::Cow;
use std::time::Duration;

use super::error::Position;

/// A copy of `text` that no longer borrows the source.
fn owned(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

/// [`map_text`](Instruction::map_text) for a list of strings.
fn map_list<'a, 'b, F>(list: Vec<Cow<'a, str>>, f: &mut F) -> Vec<Cow<'b, str>>
where
    F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
{
    list.into_iter().map(f).collect()
}

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile<'src> {
    /// The name errors are reported under.
    pub file: String,
    /// The escape character: `\` unless `# escape=` chose the backtick.
    pub escape: char,
    /// Parser directives from the top of the file, in order.
    pub directives: Vec<Directive>,
    pub instructions: Vec<Instruction<'src>>,
    /// Last lines of instructions that had blank lines inside a continuation
    /// (BuildKit drops those lines and warns: `NoEmptyContinuation`).
    pub empty_continuation_lines: Vec<usize>,
}

impl<'a> Dockerfile<'a> {
    /// The value of a parser directive (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// The same Dockerfile, no longer borrowing the source.
    pub fn into_owned(self) -> Dockerfile<'static> {
        self.map_text(&mut owned)
    }

    /// The same Dockerfile with every string of the AST replaced by `f` of it.
    pub fn map_text<'b, F>(self, f: &mut F) -> Dockerfile<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Dockerfile {
            file: self.file,
            escape: self.escape,
            directives: self.directives,
            instructions: self
                .instructions
                .into_iter()
                .map(|i| i.map_text(f))
                .collect(),
            empty_continuation_lines: self.empty_continuation_lines,
        }
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
pub struct Instruction<'src> {
    pub keyword: Keyword,
    /// The keyword with its original casing (`from`, `FROM`, `From`).
    pub keyword_as_written: Cow<'src, str>,
    /// Where the keyword is.
    pub start: Position,
    /// The last line of the instruction, heredoc bodies included.
    pub end_line: usize,
    /// `--name[=value]` flags in the order written.
    pub flags: Vec<Flag<'src>>,
    /// Where the arguments (after the flags) start.
    pub args_position: Position,
    pub command: Command<'src>,
    /// Here-documents, in the order their `<<WORD` appear.
    pub heredocs: Vec<Heredoc<'src>>,
    /// The instruction's logical line: continuations joined, comments and
    /// blank continuation lines dropped (BuildKit's `Original`).
    pub original: Cow<'src, str>,
}

impl<'a> Instruction<'a> {
    /// The heredoc a `<<NAME` source or argument refers to. Like BuildKit,
    /// a name given twice refers to the last body with that name.
    pub fn heredoc(&self, name: &str) -> Option<&Heredoc<'a>> {
        self.heredocs.iter().rev().find(|h| h.name == name)
    }

    /// The same instruction, no longer borrowing the source.
    pub fn into_owned(self) -> Instruction<'static> {
        self.map_text(&mut owned)
    }

    /// The same instruction with every string replaced by `f` of it.
    pub fn map_text<'b, F>(self, f: &mut F) -> Instruction<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Instruction {
            keyword: self.keyword,
            keyword_as_written: f(self.keyword_as_written),
            start: self.start,
            end_line: self.end_line,
            flags: self.flags.into_iter().map(|x| x.map_text(f)).collect(),
            args_position: self.args_position,
            command: self.command.map_text(f),
            heredocs: self.heredocs.into_iter().map(|h| h.map_text(f)).collect(),
            original: f(self.original),
        }
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

    /// Case-insensitive (ASCII) lookup.
    pub fn parse(word: &str) -> Option<Keyword> {
        // Every instruction is looked up, so rather than compare the word
        // with each keyword: its length and first letter leave at most one
        // candidate (ADD and ARG also need the second), then compare that.
        let bytes = word.as_bytes();
        let letter = |i: usize| bytes.get(i).map(u8::to_ascii_lowercase);
        let candidate = match (bytes.len(), letter(0)?) {
            (4, b'f') => Keyword::From,
            (3, b'r') => Keyword::Run,
            (3, b'c') => Keyword::Cmd,
            (5, b'l') => Keyword::Label,
            (10, b'm') => Keyword::Maintainer,
            (6, b'e') => Keyword::Expose,
            (3, b'e') => Keyword::Env,
            (3, b'a') if letter(1) == Some(b'd') => Keyword::Add,
            (3, b'a') => Keyword::Arg,
            (4, b'c') => Keyword::Copy,
            (10, b'e') => Keyword::Entrypoint,
            (6, b'v') => Keyword::Volume,
            (4, b'u') => Keyword::User,
            (7, b'w') => Keyword::Workdir,
            (7, b'o') => Keyword::Onbuild,
            (10, b's') => Keyword::Stopsignal,
            (11, b'h') => Keyword::Healthcheck,
            (5, b's') => Keyword::Shell,
            _ => return None,
        };
        // The keyword is lower-case letters only: a byte matches one of
        // them when it is the letter or its upper case, i.e. equal once the
        // case bit (0x20) is set.
        let spelled = candidate.as_str().as_bytes();
        (bytes.iter().zip(spelled).all(|(&b, &k)| b | 0x20 == k)).then_some(candidate)
    }
}

/// A `--name[=value]` flag as written (quotes and `\` escapes already
/// removed, as BuildKit does when it splits flags off the line).
#[derive(Debug, Clone, PartialEq)]
pub struct Flag<'src> {
    pub name: Cow<'src, str>,
    /// `None` for a bare `--name`.
    pub value: Option<Cow<'src, str>>,
    pub position: Position,
}

impl<'a> Flag<'a> {
    /// `--name=value` or `--name`.
    pub fn as_written(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={}", self.name, v),
            None => format!("--{}", self.name),
        }
    }

    pub fn into_owned(self) -> Flag<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Flag<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Flag {
            name: f(self.name),
            value: self.value.map(f),
            position: self.position,
        }
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc<'src> {
    /// The delimiter with quotes removed.
    pub name: Cow<'src, str>,
    /// The body exactly as read: every line with its line ending, up to but
    /// not including the delimiter line.
    pub body: Cow<'src, str>,
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

impl<'a> Heredoc<'a> {
    /// The body with leading tabs removed from every line when `<<-` asked
    /// for it: what a COPY of the heredoc writes.
    pub fn content(&self) -> String {
        if !self.strip_tabs {
            return self.body.to_string();
        }
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }

    pub fn into_owned(self) -> Heredoc<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Heredoc<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Heredoc {
            name: f(self.name),
            body: f(self.body),
            expand: self.expand,
            strip_tabs: self.strip_tabs,
            fd: self.fd,
            body_line: self.body_line,
        }
    }
}

/// Exec form (a JSON array) or shell form (a string for the shell).
#[derive(Debug, Clone, PartialEq)]
pub enum CommandLine<'src> {
    Exec(Vec<Cow<'src, str>>),
    Shell(Cow<'src, str>),
}

impl<'a> CommandLine<'a> {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandLine::Exec(_))
    }

    pub fn into_owned(self) -> CommandLine<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> CommandLine<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        match self {
            CommandLine::Exec(list) => CommandLine::Exec(map_list(list, f)),
            CommandLine::Shell(line) => CommandLine::Shell(f(line)),
        }
    }
}

/// `key=value` in ENV and LABEL.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue<'src> {
    /// As written, quotes included; expansion removes them.
    pub key: Cow<'src, str>,
    pub value: Cow<'src, str>,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

impl<'a> KeyValue<'a> {
    pub fn into_owned(self) -> KeyValue<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> KeyValue<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        KeyValue {
            key: f(self.key),
            value: f(self.value),
            legacy: self.legacy,
        }
    }
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl<'src> {
    pub name: Cow<'src, str>,
    /// The default as written, if any.
    pub default: Option<Cow<'src, str>>,
}

impl<'a> ArgDecl<'a> {
    pub fn into_owned(self) -> ArgDecl<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> ArgDecl<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        ArgDecl {
            name: f(self.name),
            default: self.default.map(f),
        }
    }
}

/// The typed meaning of an instruction.
#[derive(Debug, Clone, PartialEq)]
pub enum Command<'src> {
    From(From<'src>),
    Run(Run<'src>),
    Cmd(CommandLine<'src>),
    Entrypoint(CommandLine<'src>),
    /// Always exec form: BuildKit rejects `SHELL` in shell form.
    Shell(Vec<Cow<'src, str>>),
    Label(Vec<KeyValue<'src>>),
    Env(Vec<KeyValue<'src>>),
    Maintainer(Cow<'src, str>),
    Expose(Vec<Cow<'src, str>>),
    Add(Add<'src>),
    Copy(Copy<'src>),
    Volume {
        paths: Vec<Cow<'src, str>>,
        exec_form: bool,
    },
    User(Cow<'src, str>),
    Workdir(Cow<'src, str>),
    Arg(Vec<ArgDecl<'src>>),
    Onbuild(Box<Instruction<'src>>),
    StopSignal(Cow<'src, str>),
    Healthcheck(Healthcheck<'src>),
}

impl<'a> Command<'a> {
    pub fn into_owned(self) -> Command<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Command<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        match self {
            Command::From(from) => Command::From(from.map_text(f)),
            Command::Run(run) => Command::Run(run.map_text(f)),
            Command::Cmd(line) => Command::Cmd(line.map_text(f)),
            Command::Entrypoint(line) => Command::Entrypoint(line.map_text(f)),
            Command::Shell(list) => Command::Shell(map_list(list, f)),
            Command::Label(list) => {
                Command::Label(list.into_iter().map(|p| p.map_text(f)).collect())
            }
            Command::Env(list) => Command::Env(list.into_iter().map(|p| p.map_text(f)).collect()),
            Command::Maintainer(who) => Command::Maintainer(f(who)),
            Command::Expose(ports) => Command::Expose(map_list(ports, f)),
            Command::Add(add) => Command::Add(add.map_text(f)),
            Command::Copy(copy) => Command::Copy(copy.map_text(f)),
            Command::Volume { paths, exec_form } => Command::Volume {
                paths: map_list(paths, f),
                exec_form,
            },
            Command::User(user) => Command::User(f(user)),
            Command::Workdir(dir) => Command::Workdir(f(dir)),
            Command::Arg(decls) => Command::Arg(decls.into_iter().map(|d| d.map_text(f)).collect()),
            Command::Onbuild(nested) => Command::Onbuild(Box::new(nested.map_text(f))),
            Command::StopSignal(signal) => Command::StopSignal(f(signal)),
            Command::Healthcheck(check) => Command::Healthcheck(check.map_text(f)),
        }
    }
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq)]
pub struct From<'src> {
    /// The base: an image reference, a stage name, or `scratch`; unexpanded.
    pub image: Cow<'src, str>,
    /// The stage name, lower-cased as BuildKit stores it.
    pub stage_name: Option<Cow<'src, str>>,
    /// The stage name as written (for `StageNameCasing`).
    pub stage_name_as_written: Option<Cow<'src, str>>,
    /// The `AS` keyword as written (for `FromAsCasing`).
    pub as_keyword: Option<Cow<'src, str>>,
    pub platform: Option<Cow<'src, str>>,
}

impl<'a> From<'a> {
    pub fn into_owned(self) -> From<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> From<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        From {
            image: f(self.image),
            stage_name: self.stage_name.map(&mut *f),
            stage_name_as_written: self.stage_name_as_written.map(&mut *f),
            as_keyword: self.as_keyword.map(&mut *f),
            platform: self.platform.map(f),
        }
    }
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Run<'src> {
    pub command: CommandLine<'src>,
    pub mounts: Vec<RunMount<'src>>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
    pub devices: Vec<Device<'src>>,
}

impl<'a> Run<'a> {
    pub fn into_owned(self) -> Run<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Run<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Run {
            command: self.command.map_text(f),
            mounts: self.mounts.into_iter().map(|m| m.map_text(f)).collect(),
            network: self.network,
            security: self.security,
            devices: self.devices.into_iter().map(|d| d.map_text(f)).collect(),
        }
    }
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
pub struct RunMount<'src> {
    pub mount_type: MountType,
    pub from: Option<Cow<'src, str>>,
    pub source: Option<Cow<'src, str>>,
    pub target: Option<Cow<'src, str>>,
    pub readonly: bool,
    pub id: Option<Cow<'src, str>>,
    pub sharing: Option<CacheSharing>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size as written (`64m`).
    pub size: Option<Cow<'src, str>>,
    /// secret: expose the secret as this environment variable.
    pub env: Option<Cow<'src, str>>,
    /// The flag value as written.
    pub spec: Cow<'src, str>,
}

impl<'a> RunMount<'a> {
    pub fn into_owned(self) -> RunMount<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> RunMount<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        RunMount {
            mount_type: self.mount_type,
            from: self.from.map(&mut *f),
            source: self.source.map(&mut *f),
            target: self.target.map(&mut *f),
            readonly: self.readonly,
            id: self.id.map(&mut *f),
            sharing: self.sharing,
            required: self.required,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size.map(&mut *f),
            env: self.env.map(&mut *f),
            spec: f(self.spec),
        }
    }
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
pub struct Device<'src> {
    pub name: Cow<'src, str>,
    pub required: bool,
}

impl<'a> Device<'a> {
    pub fn into_owned(self) -> Device<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Device<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Device {
            name: f(self.name),
            required: self.required,
        }
    }
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source<'src> {
    /// A path, glob or URL as written.
    Path(Cow<'src, str>),
    /// `<<NAME`: the body of that heredoc becomes a file called NAME.
    Heredoc(Cow<'src, str>),
}

impl<'a> Source<'a> {
    pub fn into_owned(self) -> Source<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Source<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        match self {
            Source::Path(path) => Source::Path(f(path)),
            Source::Heredoc(name) => Source::Heredoc(f(name)),
        }
    }
}

/// `--chmod`: octal or (Dockerfile 1.14+) symbolic.
#[derive(Debug, Clone, PartialEq)]
pub enum Chmod<'src> {
    Octal(u32),
    Symbolic(Cow<'src, str>),
    /// Holds a variable; checked after expansion.
    Unexpanded(Cow<'src, str>),
}

impl<'a> Chmod<'a> {
    pub fn into_owned(self) -> Chmod<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Chmod<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        match self {
            Chmod::Octal(mode) => Chmod::Octal(mode),
            Chmod::Symbolic(mode) => Chmod::Symbolic(f(mode)),
            Chmod::Unexpanded(mode) => Chmod::Unexpanded(f(mode)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Copy<'src> {
    pub sources: Vec<Source<'src>>,
    pub dest: Cow<'src, str>,
    /// Written as a JSON array.
    pub exec_form: bool,
    pub from: Option<Cow<'src, str>>,
    pub chown: Option<Cow<'src, str>>,
    pub chmod: Option<Chmod<'src>>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<Cow<'src, str>>,
}

impl<'a> Copy<'a> {
    pub fn into_owned(self) -> Copy<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Copy<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Copy {
            sources: self.sources.into_iter().map(|s| s.map_text(f)).collect(),
            dest: f(self.dest),
            exec_form: self.exec_form,
            from: self.from.map(&mut *f),
            chown: self.chown.map(&mut *f),
            chmod: self.chmod.map(|c| c.map_text(f)),
            link: self.link,
            parents: self.parents,
            exclude: map_list(self.exclude, f),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Add<'src> {
    pub sources: Vec<Source<'src>>,
    pub dest: Cow<'src, str>,
    pub exec_form: bool,
    pub chown: Option<Cow<'src, str>>,
    pub chmod: Option<Chmod<'src>>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<Cow<'src, str>>,
    /// `--unpack` given explicitly (true or false); `None` means the default.
    pub unpack: Option<bool>,
    pub exclude: Vec<Cow<'src, str>>,
}

impl<'a> Add<'a> {
    pub fn into_owned(self) -> Add<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Add<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        Add {
            sources: self.sources.into_iter().map(|s| s.map_text(f)).collect(),
            dest: f(self.dest),
            exec_form: self.exec_form,
            chown: self.chown.map(&mut *f),
            chmod: self.chmod.map(|c| c.map_text(f)),
            link: self.link,
            keep_git_dir: self.keep_git_dir,
            checksum: self.checksum.map(&mut *f),
            unpack: self.unpack,
            exclude: map_list(self.exclude, f),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Healthcheck<'src> {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        command: CommandLine<'src>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

impl<'a> Healthcheck<'a> {
    pub fn into_owned(self) -> Healthcheck<'static> {
        self.map_text(&mut owned)
    }

    pub fn map_text<'b, F>(self, f: &mut F) -> Healthcheck<'b>
    where
        F: FnMut(Cow<'a, str>) -> Cow<'b, str>,
    {
        match self {
            Healthcheck::None => Healthcheck::None,
            Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => Healthcheck::Check {
                command: command.map_text(f),
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_lookup_ignores_ascii_case_only() {
        let linear = |word: &str| {
            Keyword::ALL
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(word))
        };
        let mut words = vec![
            String::new(),
            "a".into(),
            "ad".into(),
            "adx".into(),
            "axg".into(),
            "fröm".into(),
            "ʀun".into(),
            "RUN\u{0}".into(),
            "healthchecks".into(),
        ];
        for k in Keyword::ALL {
            let lower = k.as_str();
            words.push(lower.to_string());
            words.push(lower.to_ascii_uppercase());
            words.push(lower[..1].to_ascii_uppercase() + &lower[1..]);
            // Case bit set on a non-letter, and one letter off.
            words.push(lower.replacen(|_| true, "@", 1));
            words.push(lower[..lower.len() - 1].to_string() + "_");
        }
        for word in &words {
            assert_eq!(Keyword::parse(word), linear(word), "{word:?}");
        }
    }
}
