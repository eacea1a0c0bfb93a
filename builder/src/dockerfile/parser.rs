//! From logical lines to typed instructions, in BuildKit's two steps: first
//! every line becomes a node (command word, flags, arguments split the way
//! that instruction splits them, heredoc bodies attached), then every node is
//! checked and typed. Errors of the first step therefore come before errors
//! of the second, wherever they are in the file — as with BuildKit.

use super::ast::{
    Add, ArgDecl, Command, CommandLine, Copy, Dockerfile, Flag, From, Healthcheck, Heredoc,
    Instruction, KeyValue, Keyword, Run, Source,
};
use super::error::{DockerfileError, ErrorKind, Position};
use super::flags::{self, FlagError, FlagKind, FlagSet};
use super::heredoc;
use super::lexer::{LogicalLine, Reader};
use super::words::{self, JsonArgs};
use crate::suggest;

/// Parses a Dockerfile. `file` is the name errors are reported under.
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, DockerfileError> {
    let mut reader = Reader::new(source, file);
    // Instructions are large; reserving for a rough count (half the lines)
    // saves most of the copying as the vector grows.
    let lines = source.bytes().filter(|&b| b == b'\n').count();
    let mut instructions = Vec::with_capacity(lines / 2 + 1);
    let mut empty_continuation_lines = Vec::new();
    let mut any_line = false;
    let mut seen_from = false;
    // BuildKit reads the whole file into nodes before it types any of them,
    // so an error of that first step anywhere wins over a typing error. We
    // do both in one pass (no second copy of the file in memory) and keep
    // the first typing error until the first step has seen every line.
    let mut deferred: Option<DockerfileError> = None;
    while let Some(line) = reader.next_logical()? {
        any_line = true;
        let escape = reader.escape;
        let ctx = Ctx {
            file,
            line: &line,
            escape,
        };
        let node = ctx.node(0, &line.text)?;
        let mut heredocs = Vec::new();
        if node.can_contain_heredoc() {
            let markers = heredoc::markers_in_line(&line.text).map_err(|m| {
                let kind = ErrorKind::Arguments(format!("{}: {m}", node.upper_name()));
                ctx.error(node.keyword_pos, &node, kind)
            })?;
            for marker in markers {
                let Some((body, body_line)) = reader.read_heredoc(&marker.name, marker.strip_tabs)
                else {
                    let kind = ErrorKind::UnterminatedHeredoc {
                        instruction: node.upper_name(),
                        name: marker.name.clone(),
                    };
                    return Err(ctx.error(node.keyword_pos, &node, kind));
                };
                heredocs.push(Heredoc {
                    name: marker.name,
                    body,
                    expand: marker.expand,
                    strip_tabs: marker.strip_tabs,
                    fd: marker.fd,
                    body_line,
                });
            }
        }
        if line.had_empty_continuation {
            empty_continuation_lines.push(line.end_line);
        }
        if deferred.is_some() {
            continue;
        }
        let end_line = reader.line_no().max(line.end_line);
        let mut instruction = match ctx.typed(&node, heredocs, end_line) {
            Ok(i) => i,
            Err(e) => {
                deferred = Some(e);
                continue;
            }
        };
        match instruction.keyword {
            Keyword::From => seen_from = true,
            Keyword::Arg => {}
            _ if !seen_from => {
                let kind = ErrorKind::NoBuildStage {
                    instruction: node.upper_name(),
                };
                deferred = Some(ctx.error(node.keyword_pos, &node, kind));
                continue;
            }
            _ => {}
        }
        // The top level owns its line and flags: move them instead of
        // copying (a large share of the parse time otherwise).
        instruction.flags = node.flags;
        instruction.original = line.text;
        instructions.push(instruction);
    }
    if !any_line {
        return Err(DockerfileError::new(
            file,
            Position::new(reader.line_no().max(1), 1),
            None,
            ErrorKind::NoInstructions,
        ));
    }
    if let Some(e) = deferred {
        return Err(e);
    }
    if !seen_from {
        let last = instructions.last().map_or(Position::new(1, 1), |i| i.start);
        return Err(DockerfileError::new(file, last, None, ErrorKind::NoStages));
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape: reader.escape,
        directives: reader.directives().to_vec(),
        instructions,
        empty_continuation_lines,
    })
}

/// Parses a Dockerfile given as bytes; invalid UTF-8 is replaced with U+FFFD.
pub fn parse_bytes(source: &[u8], file: &str) -> Result<Dockerfile, DockerfileError> {
    match std::str::from_utf8(source) {
        Ok(text) => parse(text, file),
        Err(_) => parse(&String::from_utf8_lossy(source), file),
    }
}

/// HEALTHCHECK's arguments: the type word and what follows it.
#[derive(Debug)]
struct HealthArgs {
    kind: String,
    rest: String,
    rest_offset: usize,
    exec: Option<Vec<String>>,
}

/// The first step's result for one instruction; it borrows its text from
/// the logical line.
#[derive(Debug)]
struct Node<'a> {
    keyword: Option<Keyword>,
    keyword_text: &'a str,
    keyword_pos: Position,
    flags: Vec<Flag>,
    /// The arguments after the flags, trimmed.
    args: &'a str,
    /// Byte offset of `args` in the logical line.
    args_offset: usize,
    /// Set when the arguments are a JSON array of strings.
    exec: Option<Vec<String>>,
    /// ENV and LABEL pairs.
    pairs: Option<Vec<KeyValue>>,
    health: Option<HealthArgs>,
    /// ONBUILD's instruction.
    child: Option<Box<Node<'a>>>,
}

impl Node<'_> {
    fn upper_name(&self) -> String {
        self.keyword_text.to_ascii_uppercase()
    }

    /// BuildKit's `canContainHeredoc`: RUN, COPY and ADD (also behind
    /// ONBUILD) in shell form.
    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.keyword, &self.child) {
            (Some(Keyword::Onbuild), Some(child)) => child.as_ref(),
            _ => self,
        };
        matches!(
            node.keyword,
            Some(Keyword::Run | Keyword::Copy | Keyword::Add)
        ) && node.exec.is_none()
    }
}

struct Ctx<'a> {
    file: &'a str,
    line: &'a LogicalLine,
    escape: char,
}

impl Ctx<'_> {
    fn pos(&self, offset: usize) -> Position {
        self.line.position(offset)
    }

    fn error(&self, position: Position, node: &Node, kind: ErrorKind) -> DockerfileError {
        DockerfileError::new(self.file, position, Some(node.keyword_text), kind)
    }

    fn args_error(&self, node: &Node, message: String) -> DockerfileError {
        self.error(
            self.pos(node.args_offset),
            node,
            ErrorKind::Arguments(message),
        )
    }

    fn flag_error(&self, node: &Node, e: FlagError) -> DockerfileError {
        self.error(e.position, node, e.kind)
    }

    fn flag_value_error(
        &self,
        node: &Node,
        flag: &str,
        value: &str,
        position: Position,
        reason: String,
    ) -> DockerfileError {
        let kind = ErrorKind::InvalidFlagValue {
            instruction: node.upper_name(),
            flag: flag.to_string(),
            value: value.to_string(),
            reason,
        };
        self.error(position, node, kind)
    }

    /// Step one: BuildKit's `newNodeFromLine` on `text`, which starts at
    /// byte `base` of the logical line.
    fn node<'t>(&self, base: usize, text: &'t str) -> Result<Node<'t>, DockerfileError> {
        let lead = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        let start = base + lead;
        let (command, rest_offset) = words::split_command_word(trimmed);
        let mut flags = Vec::new();
        let mut args_offset = start + trimmed.len();
        if let Some(rest_offset) = rest_offset {
            let rest = &trimmed[rest_offset..];
            let (raw_flags, args_start) = words::extract_flags(rest);
            for raw in raw_flags {
                let body = raw.word.strip_prefix("--").unwrap_or(&raw.word);
                let (name, value) = match body.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (body.to_string(), None),
                };
                flags.push(Flag {
                    name,
                    value,
                    position: self.pos(start + rest_offset + raw.offset),
                });
            }
            let args_text = &rest[args_start..];
            args_offset =
                start + rest_offset + args_start + (args_text.len() - args_text.trim_start().len());
        }
        // `text` always runs to the end of the logical line, so the arguments
        // are everything from `args_offset` on.
        let args = text.get(args_offset - base..).unwrap_or("").trim();
        let mut node = Node {
            keyword: Keyword::parse(command),
            keyword_text: command,
            keyword_pos: self.pos(start),
            flags,
            args,
            args_offset,
            exec: None,
            pairs: None,
            health: None,
            child: None,
        };
        let not_strings = |node: &Node| {
            let kind = ErrorKind::JsonNotStrings {
                instruction: node.upper_name(),
            };
            self.error(self.pos(node.args_offset), node, kind)
        };
        match node.keyword {
            Some(
                Keyword::Run
                | Keyword::Cmd
                | Keyword::Entrypoint
                | Keyword::Shell
                | Keyword::Copy
                | Keyword::Add
                | Keyword::Volume,
            ) if !node.args.is_empty() => match words::parse_json_array(node.args) {
                JsonArgs::Strings(list) => node.exec = Some(list),
                JsonArgs::NotStrings => return Err(not_strings(&node)),
                JsonArgs::NotJson => {}
            },
            Some(Keyword::Env | Keyword::Label) => {
                node.pairs = self.name_values(&node)?;
            }
            Some(Keyword::Healthcheck) if !node.args.is_empty() => {
                let kind_len = node
                    .args
                    .find(char::is_whitespace)
                    .unwrap_or(node.args.len());
                let rest = node.args[kind_len..].trim_start();
                let rest_offset = node.args_offset + (node.args.len() - rest.len());
                let exec = if rest.is_empty() {
                    None
                } else {
                    match words::parse_json_array(rest) {
                        JsonArgs::Strings(list) => Some(list),
                        JsonArgs::NotStrings => return Err(not_strings(&node)),
                        JsonArgs::NotJson => None,
                    }
                };
                node.health = Some(HealthArgs {
                    kind: node.args[..kind_len].to_string(),
                    rest: rest.to_string(),
                    rest_offset,
                    exec,
                });
            }
            Some(Keyword::Onbuild) if !node.args.is_empty() => {
                let child = self.node(node.args_offset, &text[node.args_offset - base..])?;
                node.child = Some(Box::new(child));
            }
            _ => {}
        }
        Ok(node)
    }

    /// BuildKit's `parseNameVal` for ENV and LABEL: `k=v` words (quotes kept
    /// for the expander), or the legacy `KEY value` form.
    fn name_values(&self, node: &Node) -> Result<Option<Vec<KeyValue>>, DockerfileError> {
        let words = words::parse_words(node.args, self.escape);
        let Some(first) = words.first() else {
            return Ok(None);
        };
        if !first.contains('=') {
            let parts = words::split_whitespace(node.args);
            if parts.len() < 2 {
                return Err(self.args_error(
                    node,
                    format!("{} must have two arguments", node.upper_name()),
                ));
            }
            let (value_offset, _) = parts[1];
            return Ok(Some(vec![KeyValue {
                key: parts[0].1.to_string(),
                value: node.args[value_offset..].to_string(),
                legacy: true,
            }]));
        }
        let mut pairs = Vec::with_capacity(words.len());
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(self.args_error(
                    node,
                    format!(
                        "{}: Syntax error - can't find = in {word:?}. Must be of the form: name=value",
                        node.upper_name()
                    ),
                ));
            };
            pairs.push(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
                legacy: false,
            });
        }
        Ok(Some(pairs))
    }

    /// The instruction's arguments as BuildKit's list parsers see them: the
    /// JSON array, or the words split at whitespace.
    fn list_args(&self, node: &Node) -> Vec<String> {
        match &node.exec {
            Some(list) => list.clone(),
            None if node.args.is_empty() => Vec::new(),
            None => words::split_whitespace(node.args)
                .into_iter()
                .map(|(_, w)| w.to_string())
                .collect(),
        }
    }

    fn command_line(node: &Node) -> CommandLine {
        match &node.exec {
            Some(list) => CommandLine::Exec(list.clone()),
            None => CommandLine::Shell(node.args.to_string()),
        }
    }

    fn flag_set(
        &self,
        node: &Node,
        accepted: &[(&'static str, FlagKind)],
    ) -> Result<FlagSet, DockerfileError> {
        FlagSet::parse(node.keyword_text, &node.flags, accepted)
            .map_err(|e| self.flag_error(node, e))
    }

    fn exactly_one(&self, node: &Node) -> Result<String, DockerfileError> {
        if node.args.is_empty() {
            return Err(self.args_error(
                node,
                format!("{} requires exactly one argument", node.upper_name()),
            ));
        }
        Ok(node.args.to_string())
    }

    fn at_least_one(&self, node: &Node) -> DockerfileError {
        self.args_error(
            node,
            format!("{} requires at least one argument", node.upper_name()),
        )
    }

    /// Step two: checks and types one node.
    fn typed(
        &self,
        node: &Node,
        heredocs: Vec<Heredoc>,
        end_line: usize,
    ) -> Result<Instruction, DockerfileError> {
        let Some(keyword) = node.keyword else {
            let upper = node.upper_name();
            let suggestion =
                suggest::closest(&upper, Keyword::ALL.iter().map(|k| k.as_str()), false)
                    .map(|s| s.to_ascii_uppercase());
            let kind = ErrorKind::UnknownInstruction {
                name: upper,
                suggestion,
            };
            return Err(self.error(node.keyword_pos, node, kind));
        };
        let command = self.command(keyword, node, &heredocs, end_line)?;
        Ok(Instruction {
            keyword,
            keyword_as_written: keyword.spelling(node.keyword_text),
            start: node.keyword_pos,
            end_line,
            // Filled in by the caller, which owns them (see `parse`).
            flags: Vec::new(),
            args_position: self.pos(node.args_offset),
            command,
            heredocs,
            original: String::new(),
        })
    }

    fn command(
        &self,
        keyword: Keyword,
        node: &Node,
        heredocs: &[Heredoc],
        end_line: usize,
    ) -> Result<Command, DockerfileError> {
        use FlagKind::{Bool, String as Str, Strings};
        Ok(match keyword {
            Keyword::From => {
                let args = self.list_args(node);
                let (stage_name, stage_name_as_written, as_keyword) = if args.len() == 3
                    && args[1].eq_ignore_ascii_case("as")
                {
                    let name = args[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(self.args_error(
                                node,
                                format!(
                                    "FROM: invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                                    args[2]
                                ),
                            ));
                    }
                    (Some(name), Some(args[2].clone()), Some(args[1].clone()))
                } else if args.len() != 1 {
                    return Err(self.args_error(
                        node,
                        "FROM requires either one or three arguments".to_string(),
                    ));
                } else {
                    (None, None, None)
                };
                let flags = self.flag_set(node, &[("platform", Str)])?;
                Command::From(From {
                    image: args[0].clone(),
                    stage_name,
                    stage_name_as_written,
                    as_keyword,
                    platform: flags.string("platform").map(|(v, _)| v),
                })
            }
            Keyword::Run => {
                let flags = self.flag_set(
                    node,
                    &[
                        ("mount", Strings),
                        ("network", Str),
                        ("security", Str),
                        ("device", Strings),
                    ],
                )?;
                let mut mounts = Vec::new();
                for (spec, pos) in flags.strings("mount") {
                    let mount = flags::parse_mount(&spec)
                        .map_err(|r| self.flag_value_error(node, "mount", &spec, pos, r))?;
                    mounts.push(mount);
                }
                let network = match flags.string("network") {
                    Some((v, pos)) => Some(
                        flags::parse_network(&v)
                            .map_err(|r| self.flag_value_error(node, "network", &v, pos, r))?,
                    ),
                    None => None,
                };
                let security = match flags.string("security") {
                    Some((v, pos)) => Some(
                        flags::parse_security(&v)
                            .map_err(|r| self.flag_value_error(node, "security", &v, pos, r))?,
                    ),
                    None => None,
                };
                let mut devices = Vec::new();
                for (v, pos) in flags.strings("device") {
                    devices.push(
                        flags::parse_device(&v)
                            .map_err(|r| self.flag_value_error(node, "device", &v, pos, r))?,
                    );
                }
                Command::Run(Run {
                    command: Self::command_line(node),
                    mounts,
                    network,
                    security,
                    devices,
                })
            }
            Keyword::Cmd => {
                self.flag_set(node, &[])?;
                Command::Cmd(Self::command_line(node))
            }
            Keyword::Entrypoint => {
                self.flag_set(node, &[])?;
                Command::Entrypoint(Self::command_line(node))
            }
            Keyword::Shell => {
                self.flag_set(node, &[])?;
                match &node.exec {
                    Some(list) if !list.is_empty() => Command::Shell(list.clone()),
                    Some(_) => return Err(self.at_least_one(node)),
                    None if node.args.is_empty() => return Err(self.at_least_one(node)),
                    None => {
                        return Err(self.args_error(
                            node,
                            "SHELL requires the arguments to be in JSON form".to_string(),
                        ));
                    }
                }
            }
            Keyword::Env | Keyword::Label => {
                self.flag_set(node, &[])?;
                let Some(pairs) = &node.pairs else {
                    return Err(self.at_least_one(node));
                };
                if pairs.iter().any(|p| p.key.is_empty()) {
                    return Err(self.args_error(
                        node,
                        format!("{} names can not be blank", node.upper_name()),
                    ));
                }
                if keyword == Keyword::Env {
                    Command::Env(pairs.clone())
                } else {
                    Command::Label(pairs.clone())
                }
            }
            Keyword::Maintainer => {
                let who = self.exactly_one(node)?;
                self.flag_set(node, &[])?;
                Command::Maintainer(who)
            }
            Keyword::Expose => {
                let ports = self.list_args(node);
                if ports.is_empty() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                Command::Expose(ports)
            }
            Keyword::Copy => {
                let args = self.list_args(node);
                if args.len() < 2 {
                    return Err(self.no_destination(node));
                }
                let flags = self.flag_set(
                    node,
                    &[
                        ("exclude", Strings),
                        ("parents", Bool),
                        ("chown", Str),
                        ("from", Str),
                        ("chmod", Str),
                        ("link", Bool),
                    ],
                )?;
                let (sources, dest) = self.sources_and_dest(node, &args)?;
                Command::Copy(Copy {
                    sources,
                    dest,
                    exec_form: node.exec.is_some(),
                    from: flags.string("from").map(|(v, _)| v),
                    chown: flags.string("chown").map(|(v, _)| v),
                    chmod: self.chmod(node, &flags)?,
                    link: flags.bool("link").unwrap_or(false),
                    parents: flags.bool("parents").unwrap_or(false),
                    exclude: flags
                        .strings("exclude")
                        .into_iter()
                        .map(|(v, _)| v)
                        .collect(),
                })
            }
            Keyword::Add => {
                let args = self.list_args(node);
                if args.len() < 2 {
                    return Err(self.no_destination(node));
                }
                let flags = self.flag_set(
                    node,
                    &[
                        ("exclude", Strings),
                        ("chown", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("keep-git-dir", Bool),
                        ("checksum", Str),
                        ("unpack", Bool),
                    ],
                )?;
                let (sources, dest) = self.sources_and_dest(node, &args)?;
                Command::Add(Add {
                    sources,
                    dest,
                    exec_form: node.exec.is_some(),
                    chown: flags.string("chown").map(|(v, _)| v),
                    chmod: self.chmod(node, &flags)?,
                    link: flags.bool("link").unwrap_or(false),
                    keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
                    checksum: flags.string("checksum").map(|(v, _)| v),
                    unpack: flags.bool("unpack"),
                    exclude: flags
                        .strings("exclude")
                        .into_iter()
                        .map(|(v, _)| v)
                        .collect(),
                })
            }
            Keyword::Volume => {
                let paths = self.list_args(node);
                if paths.is_empty() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                let mut trimmed = Vec::with_capacity(paths.len());
                for p in paths {
                    let t = p.trim();
                    if t.is_empty() {
                        return Err(self.args_error(
                            node,
                            "VOLUME specified can not be an empty string".to_string(),
                        ));
                    }
                    trimmed.push(t.to_string());
                }
                Command::Volume {
                    paths: trimmed,
                    exec_form: node.exec.is_some(),
                }
            }
            Keyword::User => {
                let user = self.exactly_one(node)?;
                self.flag_set(node, &[])?;
                Command::User(user)
            }
            Keyword::Workdir => {
                let dir = self.exactly_one(node)?;
                self.flag_set(node, &[])?;
                Command::Workdir(dir)
            }
            Keyword::Stopsignal => {
                // BuildKit never checks STOPSIGNAL's flags; neither do we.
                Command::StopSignal(self.exactly_one(node)?)
            }
            Keyword::Arg => {
                let names = words::parse_words(node.args, self.escape);
                if names.is_empty() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                let mut decls = Vec::with_capacity(names.len());
                for word in names {
                    let decl = match word.split_once('=') {
                        Some(("", _)) => {
                            return Err(
                                self.args_error(node, "ARG names can not be blank".to_string())
                            );
                        }
                        Some((name, value)) => ArgDecl {
                            name: name.to_string(),
                            default: Some(value.to_string()),
                        },
                        None => ArgDecl {
                            name: word,
                            default: None,
                        },
                    };
                    decls.push(decl);
                }
                Command::Arg(decls)
            }
            Keyword::Onbuild => {
                let Some(child) = &node.child else {
                    return Err(self.at_least_one(node));
                };
                self.flag_set(node, &[])?;
                match child.keyword {
                    Some(Keyword::Onbuild) => {
                        return Err(self.args_error(
                            node,
                            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string(),
                        ));
                    }
                    Some(k @ (Keyword::Maintainer | Keyword::From)) => {
                        return Err(self.args_error(
                            node,
                            format!("{} isn't allowed as an ONBUILD trigger", k.upper()),
                        ));
                    }
                    _ => {}
                }
                let mut nested = self.typed(child, heredocs.to_vec(), end_line)?;
                nested.flags = child.flags.clone();
                nested.original = self.line.text[node.args_offset..].to_string();
                Command::Onbuild(Box::new(nested))
            }
            Keyword::Healthcheck => self.healthcheck(node)?,
        })
    }

    fn no_destination(&self, node: &Node) -> DockerfileError {
        self.args_error(
            node,
            format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                node.upper_name()
            ),
        )
    }

    fn chmod(
        &self,
        node: &Node,
        flags: &FlagSet,
    ) -> Result<Option<super::ast::Chmod>, DockerfileError> {
        match flags.string("chmod") {
            Some((v, pos)) => flags::parse_chmod(&v)
                .map(Some)
                .map_err(|r| self.flag_value_error(node, "chmod", &v, pos, r)),
            None => Ok(None),
        }
    }

    fn sources_and_dest(
        &self,
        node: &Node,
        args: &[String],
    ) -> Result<(Vec<Source>, String), DockerfileError> {
        let (dest, sources) = match args.split_last() {
            Some((d, s)) => (d, s),
            None => return Err(self.no_destination(node)),
        };
        if heredoc::parse_marker(dest).ok().flatten().is_some() {
            return Err(self.args_error(
                node,
                format!(
                    "{} cannot accept a heredoc as a destination",
                    node.upper_name()
                ),
            ));
        }
        let mut out = Vec::with_capacity(sources.len());
        for src in sources {
            // Like BuildKit, a `<<NAME` source is a heredoc even in JSON form
            // (where no body is read, so the file is empty).
            match heredoc::parse_marker(src).ok().flatten() {
                Some(marker) => out.push(Source::Heredoc(marker.name)),
                None => out.push(Source::Path(src.clone())),
            }
        }
        Ok((out, dest.clone()))
    }

    fn healthcheck(&self, node: &Node) -> Result<Command, DockerfileError> {
        let Some(health) = &node.health else {
            return Err(self.at_least_one(node));
        };
        let kind = health.kind.to_ascii_uppercase();
        if kind == "NONE" {
            if !health.rest.is_empty() {
                return Err(
                    self.args_error(node, "HEALTHCHECK NONE takes no arguments".to_string())
                );
            }
            return Ok(Command::Healthcheck(Healthcheck::None));
        }
        use FlagKind::String as Str;
        let flags = self.flag_set(
            node,
            &[
                ("interval", Str),
                ("timeout", Str),
                ("start-period", Str),
                ("start-interval", Str),
                ("retries", Str),
            ],
        )?;
        if kind != "CMD" {
            return Err(self.args_error(
                node,
                format!("Unknown type {:?} in HEALTHCHECK (try CMD)", kind),
            ));
        }
        let command = match &health.exec {
            Some(list) if !list.is_empty() => CommandLine::Exec(list.clone()),
            None if !health.rest.is_empty() => CommandLine::Shell(health.rest.clone()),
            _ => {
                return Err(self.error(
                    self.pos(health.rest_offset),
                    node,
                    ErrorKind::Arguments("Missing command after HEALTHCHECK CMD".to_string()),
                ));
            }
        };
        let interval = |name: &str| -> Result<_, DockerfileError> {
            match flags.string(name) {
                Some((v, pos)) => flags::parse_health_interval(name, &v)
                    .map_err(|r| self.flag_value_error(node, name, &v, pos, r)),
                None => Ok(None),
            }
        };
        let retries = match flags.string("retries") {
            Some((v, _)) if v.is_empty() => None,
            Some((v, pos)) => match v.parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err(self.flag_value_error(
                        node,
                        "retries",
                        &v,
                        pos,
                        format!("--retries cannot be negative ({n})"),
                    ));
                }
                Ok(n) if n <= i64::from(i32::MAX) => Some(n as u32),
                _ => {
                    return Err(self.flag_value_error(
                        node,
                        "retries",
                        &v,
                        pos,
                        "not a 32-bit integer".to_string(),
                    ));
                }
            },
            None => None,
        };
        Ok(Command::Healthcheck(Healthcheck::Check {
            command,
            interval: interval("interval")?,
            timeout: interval("timeout")?,
            start_period: interval("start-period")?,
            start_interval: interval("start-interval")?,
            retries,
        }))
    }
}

/// BuildKit's `^[a-z][a-z0-9-_.]*$` for (lower-cased) stage names.
pub(crate) fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}
