//! From logical lines to typed instructions, in BuildKit's two steps: first
//! every line becomes a node (command word, flags, arguments split the way
//! that instruction splits them, heredoc bodies attached), then every node is
//! checked and typed. Errors of the first step therefore come before errors
//! of the second, wherever they are in the file — as with BuildKit.
//!
//! Both steps work on the logical line's text with its own lifetime `'t`, and
//! every word of the result borrows from it. For a line read from one source
//! line, that text is the source itself, so the instruction borrows the
//! source. A line joined from continuations is a copy; before it goes away,
//! each word of its instruction is borrowed from the source again where it
//! appears there unchanged, and copied where it does not (a word spanning a
//! join).

use std::borrow::Cow;

use super::ast::{
    Add, ArgDecl, Command, CommandLine, Copy, Dockerfile, Flag, From, Healthcheck, Heredoc,
    Instruction, KeyValue, Keyword, Run, RunMount, Source,
};
use super::error::{DockerfileError, ErrorKind, Position};
use super::flags::{self, FlagError, FlagKind, FlagSet};
use super::heredoc;
use super::lexer::{LogicalLine, Reader};
use super::scan;
use super::words::{self, JsonArgs, push_exact};
use crate::suggest;

/// Parses a Dockerfile. `file` is the name errors are reported under. The
/// result borrows from `source`.
///
/// A large file is read in two halves on two threads when the machine has
/// the cores (see [`parse_in_two`]); the result is the same as reading it in
/// one pass.
pub fn parse<'src>(source: &'src str, file: &str) -> Result<Dockerfile<'src>, DockerfileError> {
    if source.len() >= TWO_THREADS_FROM
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && let Some((df, _)) = parse_in_two(source, file)
    {
        return Ok(df);
    }
    let mut instructions = reserved(source);
    let mut df = parse_each(source, file, |instruction| instructions.push(instruction))?;
    df.instructions = instructions;
    Ok(df)
}

/// From this size on, [`parse`] reads a file in two halves at once.
const TWO_THREADS_FROM: usize = 4 << 20;

/// A vector for the instructions of `text`. Instructions are large, and
/// growing the vector copies all of them: it holds the most there can be
/// (one per line). The unused tail is never touched, so it costs address
/// space, not memory; shrinking the vector at the end would copy every
/// instruction, so it stays.
fn reserved<'src>(text: &str) -> Vec<Instruction<'src>> {
    let lines = scan::count_byte(text.as_bytes(), b'\n');
    let mut instructions = Vec::new();
    if instructions.try_reserve_exact(lines + 1).is_err() {
        // The system refused that much address space: the vector grows as
        // instructions come instead.
    }
    instructions
}

/// Parses a large file in two halves on two threads, or returns `None`
/// where that cannot give the one-pass result, for [`parse`] to read it in
/// one pass: when the file has an error (which error wins depends on the
/// whole file) or no FROM in its first half (the second half is read as if
/// a stage had begun).
///
/// The second half starts at the first line past the middle that looks like
/// an instruction's first line: it starts with a keyword, and the line before
/// it is neither blank, a comment nor continued. That is a guess (the line
/// may be inside a heredoc's body): the first half, read from the top, is
/// stopped where the second begins, and only if its last instruction ends
/// exactly there was the guess right. If not, the first half's thread reads
/// on to the end, and its result is the whole file's. The flag tells whether
/// the second half was used.
fn parse_in_two<'src>(source: &'src str, file: &str) -> Option<(Dockerfile<'src>, bool)> {
    let mut first_reader = Reader::new(source, file);
    let text = first_reader.source();
    let escape = head(source, file).escape;
    let split = second_half_start(text, escape)?;
    let lines_before = scan::count_byte(&text.as_bytes()[..split], b'\n');
    let (first, second) = std::thread::scope(|scope| {
        // Without a second thread, this one reads the whole file.
        let second = std::thread::Builder::new()
            .spawn_scoped(scope, move || {
                let mut reader = Reader::resume(text, file, split, lines_before, escape);
                let mut pass = Pass::new(file, true);
                let mut instructions = reserved(&text[split..]);
                let ended = pass.read(&mut reader, usize::MAX, &mut |i| instructions.push(i));
                (ended, pass, instructions)
            })
            .ok();
        let stop = if second.is_some() { split } else { usize::MAX };
        let mut pass = Pass::new(file, false);
        let mut instructions = reserved(text);
        let mut push = |i| instructions.push(i);
        let mut ended = pass.read(&mut first_reader, stop, &mut push);
        if matches!(ended, Ok(Ended::PastStop)) {
            ended = pass.read(&mut first_reader, usize::MAX, &mut push);
        }
        ((ended, pass, instructions), second.map(|s| s.join()))
    });
    let (first_ended, first_pass, mut instructions) = first;
    let first_ended = first_ended.ok()?;
    if first_pass.deferred.is_some() || !first_pass.seen_from {
        return None;
    }
    if matches!(first_ended, Ended::AtStop) {
        let (second_ended, second_pass, mut rest) = second?.ok()?;
        second_ended.ok()?;
        if second_pass.deferred.is_some() || !second_pass.any_line {
            return None;
        }
        let mut df = first_pass.finish(&first_reader).ok()?;
        df.empty_continuation_lines
            .extend(second_pass.empty_continuation_lines);
        instructions.append(&mut rest);
        df.instructions = instructions;
        return Some((df, true));
    }
    let mut df = first_pass.finish(&first_reader).ok()?;
    df.instructions = instructions;
    Some((df, false))
}

/// Where [`parse_in_two`] guesses the second half starts: the first line at
/// or past the middle of `text` that starts with an instruction's keyword
/// and follows a line that ends an instruction, if it holds one (not blank,
/// not a comment, not continued with `escape`).
fn second_half_start(text: &str, escape: char) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut line_start = text.len() / 2;
    loop {
        line_start += scan::find_byte(bytes.get(line_start..)?, b'\n')? + 1;
        let rest = &bytes[line_start..];
        let word = scan::find_word_end(rest, [b' '; 3]).unwrap_or(rest.len());
        if Keyword::parse(&text[line_start..line_start + word]).is_none() {
            continue;
        }
        let before = &text[..line_start - 1];
        let previous = before.rfind('\n').map_or(before, |i| &before[i + 1..]);
        let previous = words::trim(previous.strip_suffix('\r').unwrap_or(previous));
        if previous.is_empty() || previous.starts_with('#') {
            continue;
        }
        if crate::dockerfile::lexer::trim_continuation(previous, escape).1 {
            return Some(line_start);
        }
    }
}

/// Parses a Dockerfile like [`parse`], but hands each instruction to `each`
/// as soon as it is read instead of collecting them: the returned
/// [`Dockerfile`] has no `instructions`. A consumer that needs one
/// instruction at a time (printing, say) so never holds the whole AST.
///
/// On an error, the instructions already handed over are not a Dockerfile:
/// like BuildKit, an error of the first step anywhere in the file wins over
/// one found while typing an earlier instruction, so the error only comes at
/// the end.
pub fn parse_each<'src>(
    source: &'src str,
    file: &str,
    mut each: impl FnMut(Instruction<'src>),
) -> Result<Dockerfile<'src>, DockerfileError> {
    let mut reader = Reader::new(source, file);
    let mut pass = Pass::new(file, false);
    pass.read(&mut reader, usize::MAX, &mut each)?;
    pass.finish(&reader)
}

/// Why [`Pass::read`] returned.
enum Ended {
    AtEnd,
    /// The next instruction starts exactly at the stop offset.
    AtStop,
    /// The last instruction read runs past the stop offset.
    PastStop,
}

/// What reading a file carries from one instruction to the next.
struct Pass<'f> {
    file: &'f str,
    empty_continuation_lines: Vec<usize>,
    any_line: bool,
    seen_from: bool,
    last_start: Option<Position>,
    /// BuildKit reads the whole file into nodes before it types any of
    /// them, so an error of that first step anywhere wins over a typing
    /// error. We do both in one pass (no second copy of the file in memory)
    /// and keep the first typing error until the first step has seen every
    /// line.
    deferred: Option<DockerfileError>,
}

impl<'f> Pass<'f> {
    fn new(file: &'f str, seen_from: bool) -> Self {
        Pass {
            file,
            empty_continuation_lines: Vec::new(),
            any_line: false,
            seen_from,
            last_start: None,
            deferred: None,
        }
    }

    /// Reads instructions, handing each to `each`, up to the end of the
    /// source or until the reader is at or past the byte offset `stop`.
    fn read<'src>(
        &mut self,
        reader: &mut Reader<'src, '_>,
        stop: usize,
        each: &mut impl FnMut(Instruction<'src>),
    ) -> Result<Ended, DockerfileError> {
        let file = self.file;
        loop {
            let at = reader.offset();
            if at >= stop {
                return Ok(if at == stop {
                    Ended::AtStop
                } else {
                    Ended::PastStop
                });
            }
            let Some(line) = reader.next_logical()? else {
                return Ok(Ended::AtEnd);
            };
            self.any_line = true;
            if line.had_empty_continuation {
                self.empty_continuation_lines.push(line.end_line);
            }
            let ctx = Ctx {
                file,
                line: &line,
                escape: reader.escape,
            };
            // Both steps for the line. The instruction is large: it goes from
            // `typed` to `each` with as few moves as can be.
            let typed = match &line.text {
                &Cow::Borrowed(text) => {
                    let mut node = Node::empty();
                    ctx.first_step(text, reader, &mut node)?;
                    if self.deferred.is_some() {
                        continue;
                    }
                    ctx.typed(&mut node, ctx.end_line(reader))
                }
                Cow::Owned(text) => {
                    let mut node = Node::empty();
                    ctx.first_step(text, reader, &mut node)?;
                    if self.deferred.is_some() {
                        continue;
                    }
                    ctx.typed(&mut node, ctx.end_line(reader))
                        .map(|i| i.map_text(&mut |t| line.to_source(t)))
                }
            };
            let mut instruction = match typed {
                Ok(i) => i,
                Err(e) => {
                    self.deferred = Some(e);
                    continue;
                }
            };
            match instruction.keyword {
                Keyword::From => self.seen_from = true,
                Keyword::Arg => {}
                _ if !self.seen_from => {
                    let written = &instruction.keyword_as_written;
                    let kind = ErrorKind::NoBuildStage {
                        instruction: written.to_ascii_uppercase(),
                    };
                    self.deferred = Some(DockerfileError::new(
                        file,
                        instruction.start,
                        Some(written),
                        kind,
                    ));
                    continue;
                }
                _ => {}
            }
            self.last_start = Some(instruction.start);
            // The instruction takes the line itself: no copy.
            instruction.original = line.text;
            each(instruction);
        }
    }

    /// The file's own fields once every instruction has been read, or the
    /// error the whole file has.
    fn finish<'src>(self, reader: &Reader<'src, '_>) -> Result<Dockerfile<'src>, DockerfileError> {
        let file = self.file;
        if !self.any_line {
            return Err(DockerfileError::new(
                file,
                Position::new(reader.line_no().max(1), 1),
                None,
                ErrorKind::NoInstructions,
            ));
        }
        if let Some(e) = self.deferred {
            return Err(e);
        }
        if !self.seen_from {
            let last = self.last_start.unwrap_or(Position::new(1, 1));
            return Err(DockerfileError::new(file, last, None, ErrorKind::NoStages));
        }
        Ok(Dockerfile {
            file: file.to_string(),
            escape: reader.escape,
            directives: reader.directives().to_vec(),
            instructions: Vec::new(),
            empty_continuation_lines: self.empty_continuation_lines,
        })
    }
}

/// The fields of the file that come before its instructions, as [`parse`]
/// reports them (name, escape character, parser directives), read from the
/// top only: directives end where the first instruction starts. A consumer
/// that prints instructions as [`parse_each`] hands them over needs these
/// first. An error in that first line is left for the full parse to report.
pub fn head(source: &str, file: &str) -> Dockerfile<'static> {
    let mut reader = Reader::new(source, file);
    // Only the first logical line is read: that ends the directives.
    let _ = reader.next_logical();
    Dockerfile {
        file: file.to_string(),
        escape: reader.escape,
        directives: reader.directives().to_vec(),
        instructions: Vec::new(),
        empty_continuation_lines: Vec::new(),
    }
}

/// Parses a Dockerfile given as bytes; invalid UTF-8 is replaced with U+FFFD
/// (the result is then owned, since it cannot borrow `source`).
pub fn parse_bytes<'src>(
    source: &'src [u8],
    file: &str,
) -> Result<Dockerfile<'src>, DockerfileError> {
    match std::str::from_utf8(source) {
        Ok(text) => parse(text, file),
        Err(_) => parse(&String::from_utf8_lossy(source), file).map(Dockerfile::into_owned),
    }
}

/// HEALTHCHECK's arguments: the type word and what follows it.
#[derive(Debug)]
struct HealthArgs<'t> {
    kind: &'t str,
    rest: &'t str,
    rest_offset: usize,
    exec: Option<Vec<Cow<'t, str>>>,
}

/// The first step's result for one instruction; it borrows its text from
/// the logical line.
#[derive(Debug)]
struct Node<'t> {
    keyword: Option<Keyword>,
    keyword_text: &'t str,
    keyword_pos: Position,
    flags: Vec<Flag<'t>>,
    /// The arguments after the flags, trimmed.
    args: &'t str,
    /// Byte offset of `args` in the logical line.
    args_offset: usize,
    /// The line from `args_offset` to its end, untrimmed: ONBUILD's nested
    /// instruction keeps it as its `original`.
    args_to_end: &'t str,
    /// Set when the arguments are a JSON array of strings.
    exec: Option<Vec<Cow<'t, str>>>,
    /// ENV and LABEL pairs.
    pairs: Option<Vec<KeyValue<'t>>>,
    health: Option<HealthArgs<'t>>,
    /// ONBUILD's instruction.
    child: Option<Box<Node<'t>>>,
    /// Here-documents, in the order their `<<WORD` appear.
    heredocs: Vec<Heredoc<'t>>,
}

impl Node<'_> {
    /// A node to be filled by [`Ctx::node`]. Nodes are large, so they are
    /// filled where they stay rather than returned.
    fn empty() -> Self {
        Node {
            keyword: None,
            keyword_text: "",
            keyword_pos: Position::default(),
            flags: Vec::new(),
            args: "",
            args_offset: 0,
            args_to_end: "",
            exec: None,
            pairs: None,
            health: None,
            child: None,
            heredocs: Vec::new(),
        }
    }

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

/// `--name=value` (quotes already removed) as name and value, borrowed
/// when the word is.
fn split_flag(word: Cow<'_, str>) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
    match word {
        Cow::Borrowed(w) => {
            let body = w.strip_prefix("--").unwrap_or(w);
            match words::split_once_byte(body, b'=') {
                Some((n, v)) => (Cow::Borrowed(n), Some(Cow::Borrowed(v))),
                None => (Cow::Borrowed(body), None),
            }
        }
        Cow::Owned(w) => {
            let body = w.strip_prefix("--").unwrap_or(&w);
            match words::split_once_byte(body, b'=') {
                Some((n, v)) => (Cow::Owned(n.to_string()), Some(Cow::Owned(v.to_string()))),
                None => (Cow::Owned(body.to_string()), None),
            }
        }
    }
}

/// `text` with surrounding whitespace removed, borrowed when it is.
fn trim_cow(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
        Cow::Owned(t) if t.trim().len() == t.len() => Cow::Owned(t),
        Cow::Owned(t) => Cow::Owned(t.trim().to_string()),
    }
}

/// ASCII lower case, copying only when there is an upper-case letter.
fn lower_cow(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        text
    }
}

/// The name of the heredoc a COPY/ADD argument refers to (`<<NAME`), if it
/// is one; borrowed when the argument is.
fn heredoc_source<'t>(word: &Cow<'t, str>) -> Option<Cow<'t, str>> {
    match word {
        &Cow::Borrowed(w) => heredoc::parse_marker(w).ok().flatten().map(|m| m.name),
        Cow::Owned(w) => heredoc::parse_marker(w)
            .ok()
            .flatten()
            .map(|m| Cow::Owned(m.name.into_owned())),
    }
}

/// The instruction's arguments as BuildKit's list parsers see them: the
/// JSON array, or the words split at whitespace.
fn list_args<'t>(exec: Option<Vec<Cow<'t, str>>>, args: &'t str) -> Vec<Cow<'t, str>> {
    match exec {
        Some(list) => list,
        None if args.is_empty() => Vec::new(),
        None => {
            let words = words::split_whitespace(args);
            let mut list = Vec::with_capacity(words.len());
            list.extend(words.map(|(_, w)| Cow::Borrowed(w)));
            list
        }
    }
}

/// COPY and ADD arguments as in [`list_args`], each a [`Source::Path`] for
/// now (the last is the destination; heredoc sources are found later).
fn path_args<'t>(exec: Option<Vec<Cow<'t, str>>>, args: &'t str) -> Vec<Source<'t>> {
    match exec {
        Some(list) => list.into_iter().map(Source::Path).collect(),
        None if args.is_empty() => Vec::new(),
        None => {
            let words = words::split_whitespace(args);
            let mut list = Vec::with_capacity(words.len());
            list.extend(words.map(|(_, w)| Source::Path(Cow::Borrowed(w))));
            list
        }
    }
}

/// The first `N` words of `args` split at whitespace (as [`list_args`]
/// splits them), and how many words there are in all.
fn first_words<const N: usize>(args: &str) -> ([&str; N], usize) {
    let mut first = [""; N];
    if args.is_empty() {
        return (first, 0);
    }
    let mut count = 0;
    for (_, word) in words::split_whitespace(args) {
        if let Some(slot) = first.get_mut(count) {
            *slot = word;
        }
        count += 1;
    }
    (first, count)
}

fn command_line<'t>(exec: Option<Vec<Cow<'t, str>>>, args: &'t str) -> CommandLine<'t> {
    match exec {
        Some(list) => CommandLine::Exec(list),
        None => CommandLine::Shell(Cow::Borrowed(args)),
    }
}

struct Ctx<'a, 'src> {
    file: &'a str,
    line: &'a LogicalLine<'src>,
    escape: char,
}

impl<'src> Ctx<'_, 'src> {
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

    /// Step one for the logical line `text`: fills `node` (an
    /// [empty](Node::empty) one), with the bodies of its heredocs (read from
    /// `reader`).
    fn first_step<'t>(
        &self,
        text: &'t str,
        reader: &mut Reader<'src, '_>,
        node: &mut Node<'t>,
    ) -> Result<(), DockerfileError>
    where
        'src: 't,
    {
        self.node(0, text, node)?;
        if node.can_contain_heredoc() {
            let markers = heredoc::markers_in_line(text).map_err(|m| {
                let kind = ErrorKind::Arguments(format!("{}: {m}", node.upper_name()));
                self.error(node.keyword_pos, node, kind)
            })?;
            node.heredocs.reserve_exact(markers.len());
            for marker in markers {
                let Some((body, body_line)) = reader.read_heredoc(&marker.name, marker.strip_tabs)
                else {
                    let kind = ErrorKind::UnterminatedHeredoc {
                        instruction: node.upper_name(),
                        name: marker.name.into_owned(),
                    };
                    return Err(self.error(node.keyword_pos, node, kind));
                };
                node.heredocs.push(Heredoc {
                    name: marker.name,
                    body: Cow::Borrowed(body),
                    expand: marker.expand,
                    strip_tabs: marker.strip_tabs,
                    fd: marker.fd,
                    body_line,
                });
            }
        }
        Ok(())
    }

    /// The last line of the instruction just read, heredoc bodies included.
    fn end_line(&self, reader: &Reader) -> usize {
        reader.line_no().max(self.line.end_line)
    }

    /// Step one: BuildKit's `newNodeFromLine` on `text`, which starts at
    /// byte `base` of the logical line; fills `node` (an empty one).
    fn node<'t>(
        &self,
        base: usize,
        text: &'t str,
        node: &mut Node<'t>,
    ) -> Result<(), DockerfileError> {
        let trimmed_start = words::trim_start(text);
        let lead = text.len() - trimmed_start.len();
        let trimmed = words::trim_end(trimmed_start);
        let start = base + lead;
        let (command, rest_offset) = words::split_command_word(trimmed);
        let mut args_offset = start + trimmed.len();
        if let Some(rest_offset) = rest_offset {
            let rest = &trimmed[rest_offset..];
            let mut flag_words = words::flag_words(rest);
            for (word, offset) in flag_words.by_ref() {
                let (name, value) = split_flag(word);
                let position = self.pos(start + rest_offset + offset);
                push_exact(
                    &mut node.flags,
                    Flag {
                        name,
                        value,
                        position,
                    },
                );
            }
            let args_start = flag_words.args_start();
            let args_text = &rest[args_start..];
            args_offset = start
                + rest_offset
                + args_start
                + (args_text.len() - words::trim_start(args_text).len());
        }
        // `text` always runs to the end of the logical line, so the arguments
        // are everything from `args_offset` on.
        let args_to_end = text.get(args_offset - base..).unwrap_or("");
        node.keyword = Keyword::parse(command);
        node.keyword_text = command;
        node.keyword_pos = self.pos(start);
        node.args = words::trim(args_to_end);
        node.args_offset = args_offset;
        node.args_to_end = args_to_end;
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
                JsonArgs::NotStrings => return Err(not_strings(node)),
                JsonArgs::NotJson => {}
            },
            Some(Keyword::Env | Keyword::Label) => {
                node.pairs = self.name_values(node)?;
            }
            Some(Keyword::Healthcheck) if !node.args.is_empty() => {
                let kind_len = words::find_space_or(node.args, 0, [b' '; 3]);
                let rest = node.args[kind_len..].trim_start();
                let rest_offset = node.args_offset + (node.args.len() - rest.len());
                let exec = if rest.is_empty() {
                    None
                } else {
                    match words::parse_json_array(rest) {
                        JsonArgs::Strings(list) => Some(list),
                        JsonArgs::NotStrings => return Err(not_strings(node)),
                        JsonArgs::NotJson => None,
                    }
                };
                node.health = Some(HealthArgs {
                    kind: &node.args[..kind_len],
                    rest,
                    rest_offset,
                    exec,
                });
            }
            Some(Keyword::Onbuild) if !node.args.is_empty() => {
                let mut child = Box::new(Node::empty());
                self.node(node.args_offset, node.args_to_end, &mut child)?;
                node.child = Some(child);
            }
            _ => {}
        }
        Ok(())
    }

    /// BuildKit's `parseNameVal` for ENV and LABEL: `k=v` words (quotes kept
    /// for the expander), or the legacy `KEY value` form.
    fn name_values<'t>(
        &self,
        node: &Node<'t>,
    ) -> Result<Option<Vec<KeyValue<'t>>>, DockerfileError> {
        let args = node.args;
        let mut words = words::parse_words(args, self.escape).peekable();
        let Some(first) = words.peek() else {
            return Ok(None);
        };
        if !first.contains('=') {
            let mut parts = words::split_whitespace(args);
            let (Some((_, key)), Some((value_offset, _))) = (parts.next(), parts.next()) else {
                return Err(self.args_error(
                    node,
                    format!("{} must have two arguments", node.upper_name()),
                ));
            };
            return Ok(Some(vec![KeyValue {
                key: Cow::Borrowed(key),
                value: Cow::Borrowed(&args[value_offset..]),
                legacy: true,
            }]));
        }
        // The AST keeps the list: make room for exactly its words.
        let mut pairs = Vec::with_capacity(words.clone().count());
        for word in words {
            let Some((key, value)) = words::split_once_byte(word, b'=') else {
                return Err(self.args_error(
                    node,
                    format!(
                        "{}: Syntax error - can't find = in {word:?}. Must be of the form: name=value",
                        node.upper_name()
                    ),
                ));
            };
            pairs.push(KeyValue {
                key: Cow::Borrowed(key),
                value: Cow::Borrowed(value),
                legacy: false,
            });
        }
        Ok(Some(pairs))
    }

    fn flag_set<'f, 't>(
        &self,
        node: &'f Node<'t>,
        accepted: &[(&'static str, FlagKind)],
    ) -> Result<FlagSet<'f, 't>, DockerfileError> {
        FlagSet::parse(node.keyword_text, &node.flags, accepted)
            .map_err(|e| self.flag_error(node, e))
    }

    fn exactly_one<'t>(&self, node: &Node<'t>) -> Result<Cow<'t, str>, DockerfileError> {
        if node.args.is_empty() {
            return Err(self.args_error(
                node,
                format!("{} requires exactly one argument", node.upper_name()),
            ));
        }
        Ok(Cow::Borrowed(node.args))
    }

    fn at_least_one(&self, node: &Node) -> DockerfileError {
        self.args_error(
            node,
            format!("{} requires at least one argument", node.upper_name()),
        )
    }

    /// Step two: checks and types one node; takes its flags, arguments and
    /// heredocs.
    fn typed<'t>(
        &self,
        node: &mut Node<'t>,
        end_line: usize,
    ) -> Result<Instruction<'t>, DockerfileError> {
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
        let heredocs = std::mem::take(&mut node.heredocs);
        let command = self.command(keyword, node, &heredocs, end_line)?;
        Ok(Instruction {
            keyword,
            keyword_as_written: Cow::Borrowed(node.keyword_text),
            start: node.keyword_pos,
            end_line,
            flags: std::mem::take(&mut node.flags),
            args_position: self.pos(node.args_offset),
            command,
            heredocs,
            // The whole logical line: set by the caller, which owns it (see
            // `parse`); ONBUILD's nested instruction sets its own.
            original: Cow::Borrowed(""),
        })
    }

    /// The typed command of `node`; takes the arguments out of it.
    fn command<'t>(
        &self,
        keyword: Keyword,
        node: &mut Node<'t>,
        heredocs: &[Heredoc<'t>],
        end_line: usize,
    ) -> Result<Command<'t>, DockerfileError> {
        use FlagKind::{Bool, String as Str, Strings};
        let exec_form = node.exec.is_some();
        Ok(match keyword {
            Keyword::From => {
                // FROM never takes the JSON form: its arguments are words.
                let ([image, as_keyword, name], count) = first_words::<3>(node.args);
                let (stage_name, stage_name_as_written, as_keyword) = if count == 3
                    && as_keyword.eq_ignore_ascii_case("as")
                {
                    let lower = lower_cow(Cow::Borrowed(name));
                    if !valid_stage_name(&lower) {
                        return Err(self.args_error(
                                node,
                                format!(
                                    "FROM: invalid name for build stage: {name:?}, name can't start with a number or contain symbols",
                                ),
                            ));
                    }
                    (
                        Some(lower),
                        Some(Cow::Borrowed(name)),
                        Some(Cow::Borrowed(as_keyword)),
                    )
                } else if count != 1 {
                    return Err(self.args_error(
                        node,
                        "FROM requires either one or three arguments".to_string(),
                    ));
                } else {
                    (None, None, None)
                };
                let flags = self.flag_set(node, &[("platform", Str)])?;
                Command::From(From {
                    image: Cow::Borrowed(image),
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
                let mut mounts = Vec::with_capacity(flags.strings("mount").count());
                for (spec, pos) in flags.strings("mount") {
                    let mount = match &spec {
                        &Cow::Borrowed(s) => flags::parse_mount(s),
                        Cow::Owned(s) => flags::parse_mount(s).map(RunMount::into_owned),
                    };
                    mounts.push(
                        mount.map_err(|r| self.flag_value_error(node, "mount", &spec, pos, r))?,
                    );
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
                let mut devices = Vec::with_capacity(flags.strings("device").count());
                for (v, pos) in flags.strings("device") {
                    let device = match &v {
                        &Cow::Borrowed(s) => flags::parse_device(s),
                        Cow::Owned(s) => flags::parse_device(s).map(|d| d.into_owned()),
                    };
                    devices.push(
                        device.map_err(|r| self.flag_value_error(node, "device", &v, pos, r))?,
                    );
                }
                Command::Run(Run {
                    command: command_line(node.exec.take(), node.args),
                    mounts,
                    network,
                    security,
                    devices,
                })
            }
            Keyword::Cmd => {
                self.flag_set(node, &[])?;
                Command::Cmd(command_line(node.exec.take(), node.args))
            }
            Keyword::Entrypoint => {
                self.flag_set(node, &[])?;
                Command::Entrypoint(command_line(node.exec.take(), node.args))
            }
            Keyword::Shell => {
                self.flag_set(node, &[])?;
                match node.exec.take() {
                    Some(list) if !list.is_empty() => Command::Shell(list),
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
                let Some(pairs) = node.pairs.take() else {
                    return Err(self.at_least_one(node));
                };
                if pairs.iter().any(|p| p.key.is_empty()) {
                    return Err(self.args_error(
                        node,
                        format!("{} names can not be blank", node.upper_name()),
                    ));
                }
                if keyword == Keyword::Env {
                    Command::Env(pairs)
                } else {
                    Command::Label(pairs)
                }
            }
            Keyword::Maintainer => {
                let who = self.exactly_one(node)?;
                self.flag_set(node, &[])?;
                Command::Maintainer(who)
            }
            Keyword::Expose => {
                let ports = list_args(node.exec.take(), node.args);
                if ports.is_empty() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                Command::Expose(ports)
            }
            Keyword::Copy => {
                let args = path_args(node.exec.take(), node.args);
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
                let (sources, dest) = self.sources_and_dest(node, args)?;
                Command::Copy(Copy {
                    sources,
                    dest,
                    exec_form,
                    from: flags.string("from").map(|(v, _)| v),
                    chown: flags.string("chown").map(|(v, _)| v),
                    chmod: self.chmod(node, &flags)?,
                    link: flags.bool("link").unwrap_or(false),
                    parents: flags.bool("parents").unwrap_or(false),
                    exclude: flags.strings("exclude").map(|(v, _)| v).collect(),
                })
            }
            Keyword::Add => {
                let args = path_args(node.exec.take(), node.args);
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
                let (sources, dest) = self.sources_and_dest(node, args)?;
                Command::Add(Add {
                    sources,
                    dest,
                    exec_form,
                    chown: flags.string("chown").map(|(v, _)| v),
                    chmod: self.chmod(node, &flags)?,
                    link: flags.bool("link").unwrap_or(false),
                    keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
                    checksum: flags.string("checksum").map(|(v, _)| v),
                    unpack: flags.bool("unpack"),
                    exclude: flags.strings("exclude").map(|(v, _)| v).collect(),
                })
            }
            Keyword::Volume => {
                let paths = list_args(node.exec.take(), node.args);
                if paths.is_empty() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                let mut trimmed = Vec::with_capacity(paths.len());
                for p in paths {
                    let t = trim_cow(p);
                    if t.is_empty() {
                        return Err(self.args_error(
                            node,
                            "VOLUME specified can not be an empty string".to_string(),
                        ));
                    }
                    trimmed.push(t);
                }
                Command::Volume {
                    paths: trimmed,
                    exec_form,
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
                let mut names = words::parse_words(node.args, self.escape).peekable();
                if names.peek().is_none() {
                    return Err(self.at_least_one(node));
                }
                self.flag_set(node, &[])?;
                // The AST keeps the list: make room for exactly its names.
                let mut decls = Vec::with_capacity(names.clone().count());
                for word in names {
                    let decl = match words::split_once_byte(word, b'=') {
                        Some(("", _)) => {
                            return Err(
                                self.args_error(node, "ARG names can not be blank".to_string())
                            );
                        }
                        Some((name, value)) => ArgDecl {
                            name: Cow::Borrowed(name),
                            default: Some(Cow::Borrowed(value)),
                        },
                        None => ArgDecl {
                            name: Cow::Borrowed(word),
                            default: None,
                        },
                    };
                    decls.push(decl);
                }
                Command::Arg(decls)
            }
            Keyword::Onbuild => {
                let Some(mut child) = node.child.take() else {
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
                // The nested instruction's heredocs are those of the line.
                child.heredocs = heredocs.to_vec();
                let mut nested = self.typed(&mut child, end_line)?;
                nested.original = Cow::Borrowed(node.args_to_end);
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

    fn chmod<'t>(
        &self,
        node: &Node<'t>,
        flags: &FlagSet<'_, 't>,
    ) -> Result<Option<super::ast::Chmod<'t>>, DockerfileError> {
        let Some((v, pos)) = flags.string("chmod") else {
            return Ok(None);
        };
        let chmod = match &v {
            &Cow::Borrowed(s) => flags::parse_chmod(s),
            Cow::Owned(s) => flags::parse_chmod(s).map(|c| c.into_owned()),
        };
        chmod
            .map(Some)
            .map_err(|r| self.flag_value_error(node, "chmod", &v, pos, r))
    }

    /// COPY and ADD arguments from [`path_args`]: the sources (with heredoc
    /// ones found) and the destination.
    #[allow(clippy::type_complexity)]
    fn sources_and_dest<'t>(
        &self,
        node: &Node<'t>,
        mut sources: Vec<Source<'t>>,
    ) -> Result<(Vec<Source<'t>>, Cow<'t, str>), DockerfileError> {
        let Some(Source::Path(dest)) = sources.pop() else {
            return Err(self.no_destination(node));
        };
        if heredoc::parse_marker(&dest).ok().flatten().is_some() {
            return Err(self.args_error(
                node,
                format!(
                    "{} cannot accept a heredoc as a destination",
                    node.upper_name()
                ),
            ));
        }
        // Like BuildKit, a `<<NAME` source is a heredoc even in JSON form
        // (where no body is read, so the file is empty).
        for source in &mut sources {
            if let Source::Path(path) = source
                && let Some(name) = heredoc_source(path)
            {
                *source = Source::Heredoc(name);
            }
        }
        Ok((sources, dest))
    }

    fn healthcheck<'t>(&self, node: &mut Node<'t>) -> Result<Command<'t>, DockerfileError> {
        let Some(health) = node.health.take() else {
            return Err(self.at_least_one(node));
        };
        if health.kind.eq_ignore_ascii_case("NONE") {
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
        if !health.kind.eq_ignore_ascii_case("CMD") {
            return Err(self.args_error(
                node,
                format!(
                    "Unknown type {:?} in HEALTHCHECK (try CMD)",
                    health.kind.to_ascii_uppercase()
                ),
            ));
        }
        let command = match health.exec {
            Some(list) if !list.is_empty() => CommandLine::Exec(list),
            None if !health.rest.is_empty() => CommandLine::Shell(Cow::Borrowed(health.rest)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass result.
    fn one_pass<'s>(source: &'s str) -> Result<Dockerfile<'s>, DockerfileError> {
        let mut instructions = Vec::new();
        let mut df = parse_each(source, "Dockerfile", |i| instructions.push(i))?;
        df.instructions = instructions;
        Ok(df)
    }

    /// Reads `source` in two halves and checks the result is the one-pass
    /// one; returns whether the second half was used.
    fn same_in_two(source: &str) -> bool {
        let expected = one_pass(source).unwrap();
        match parse_in_two(source, "Dockerfile") {
            Some((df, halves)) => {
                assert_eq!(df.instructions.len(), expected.instructions.len());
                for (i, (got, want)) in df
                    .instructions
                    .iter()
                    .zip(&expected.instructions)
                    .enumerate()
                {
                    assert_eq!(got, want, "instruction {i}");
                }
                assert_eq!(df, expected);
                halves
            }
            // No line past the middle looks like an instruction's start.
            None => false,
        }
    }

    fn corpus() -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerfiles");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
            .collect();
        paths.sort();
        let mut all = String::new();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            // Directives only count at the top: files that need one (an
            // escape character) stay out.
            if text.contains("escape=") {
                continue;
            }
            all.push_str(text.trim_start_matches('\u{feff}'));
            all.push('\n');
        }
        all
    }

    #[test]
    fn corpus_read_in_two_halves_is_read_as_in_one() {
        let corpus = corpus();
        let mut halves = 0;
        // Padding at the end moves the middle, so the guess lands on many
        // different lines: instructions, heredoc bodies, continuations.
        for pad in 0..40 {
            let source = format!("{corpus}RUN true{}\n", " ".repeat(pad * 997));
            if same_in_two(&source) {
                halves += 1;
            }
        }
        assert!(
            halves >= 20,
            "only {halves} of 40 files were read in two halves"
        );
    }

    #[test]
    fn a_heredoc_over_the_middle_is_read_in_one_pass() {
        let body = "apk add x\nRUN fake\nFROM fake AS f\n".repeat(200);
        let source = format!(
            "FROM a\n{}RUN <<EOF\n{body}EOF\n{}",
            "RUN x\n".repeat(50),
            "RUN y\n".repeat(50)
        );
        // The middle falls in the heredoc: the guess is wrong, and the
        // first half's thread reads on.
        assert!(!same_in_two(&source));
        let df = parse(&source, "Dockerfile").unwrap();
        assert_eq!(df.instructions.len(), 102);
    }

    #[test]
    fn continuations_and_backtick_escapes_over_the_middle() {
        let source = format!(
            "# escape=`\nFROM a\n{}RUN a `\n{}  end\n{}",
            "COPY x C:\\dir\\\n".repeat(300),
            "  b `\n  # comment inside\n\n".repeat(300),
            "RUN c\nWORKDIR C:\\w\n".repeat(300)
        );
        assert!(same_in_two(&source));
        let crlf = source.replace('\n', "\r\n");
        assert!(same_in_two(&crlf));
        let bom = format!("\u{feff}{source}");
        assert!(same_in_two(&bom));
    }

    #[test]
    fn errors_and_late_stages_fall_back_to_one_pass() {
        let good = "FROM a\nRUN x\n".repeat(500);
        // A typing error in the second half and a first-step error after it:
        // the first-step error wins, as in one pass.
        let source = format!("{good}COPY --chwon=x a b\n{good}RUN [\"a\", 1]\n");
        assert!(parse_in_two(&source, "Dockerfile").is_none());
        let two = parse(&source, "Dockerfile").unwrap_err().to_string();
        assert_eq!(two, one_pass(&source).unwrap_err().to_string());
        // No FROM in the first half: the second half cannot assume a stage.
        let late = format!(
            "{}FROM a\n{}",
            "ARG x=1\n".repeat(2000),
            "RUN y\n".repeat(100)
        );
        assert!(parse_in_two(&late, "Dockerfile").is_none());
        assert_eq!(
            parse(&late, "Dockerfile").unwrap(),
            one_pass(&late).unwrap()
        );
        let no_stage = format!("{}RUN y\n", "ARG x=1\n".repeat(2000));
        assert_eq!(
            parse(&no_stage, "Dockerfile").unwrap_err().to_string(),
            one_pass(&no_stage).unwrap_err().to_string()
        );
    }

    #[test]
    fn a_large_file_goes_through_parse_in_two_halves() {
        let block = "FROM a AS b\nRUN <<EOF\necho hi\nEOF\nENV x=1 \\\n  y=2\n";
        let source = block.repeat(TWO_THREADS_FROM / block.len() + 1);
        assert!(same_in_two(&source));
        assert_eq!(
            parse(&source, "Dockerfile").unwrap(),
            one_pass(&source).unwrap()
        );
    }
}
