//! The JSON form of a parsed Dockerfile, printed by `berth dockerfile parse`
//! and documented in the [module docs of `dockerfile`](super).
//!
//! What goes into the JSON is decided once, by the helpers below
//! (`form`, `for_each_word`, …). Two writers use them:
//! - [`write_json`] writes the text directly: keys are known literals, strings
//!   are escaped in runs, and output goes through a buffer of its own, with
//!   none of serde's work per value. It writes exactly what `serde_json`'s
//!   compact and pretty formatters would (the tests compare the two).
//! - The `serde` views back [`to_json`] and [`instruction_to_json`].

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde_json::Value;

use super::ast::{
    ArgDecl, Command, CommandLine, Directive, Dockerfile, Flag, Healthcheck, Heredoc, Instruction,
    KeyValue, Source,
};
use super::scan;

// ---------- what the JSON holds ----------

/// `"exec"` or `"shell"`.
fn form_of(exec: bool) -> &'static str {
    if exec { "exec" } else { "shell" }
}

/// The `form` field: exec or shell, for the instructions that have one.
fn form(command: &Command) -> Option<&'static str> {
    match command {
        Command::Run(r) => Some(form_of(r.command.is_exec())),
        Command::Cmd(cl) | Command::Entrypoint(cl) => Some(form_of(cl.is_exec())),
        Command::Shell(_) => Some("exec"),
        Command::Add(a) => Some(form_of(a.exec_form)),
        Command::Copy(c) => Some(form_of(c.exec_form)),
        Command::Volume { exec_form, .. } => Some(form_of(*exec_form)),
        Command::Healthcheck(Healthcheck::Check { command, .. }) => {
            Some(form_of(command.is_exec()))
        }
        _ => None,
    }
}

/// ONBUILD's nested instruction.
fn nested<'a, 'src>(instr: &'a Instruction<'src>) -> Option<&'a Instruction<'src>> {
    match &instr.command {
        Command::Onbuild(nested) => Some(nested),
        _ => None,
    }
}

/// The heredocs shown for an instruction: ONBUILD's belong to its nested
/// instruction.
fn shown_heredocs<'a, 'src>(instr: &'a Instruction<'src>) -> &'a [Heredoc<'src>] {
    if nested(instr).is_some() {
        &[]
    } else {
        &instr.heredocs
    }
}

/// The `arguments` of an instruction (see the module docs of `dockerfile`).
enum Arguments<'a, 'src> {
    /// A list of strings: see [`for_each_word`].
    Words(&'a Command<'src>),
    /// ENV and LABEL.
    Pairs(&'a [KeyValue<'src>]),
    /// ARG.
    Decls(&'a [ArgDecl<'src>]),
}

fn arguments<'a, 'src>(command: &'a Command<'src>) -> Arguments<'a, 'src> {
    match command {
        Command::Label(p) | Command::Env(p) => Arguments::Pairs(p),
        Command::Arg(list) => Arguments::Decls(list),
        _ => Arguments::Words(command),
    }
}

/// One string of a word list.
#[derive(Clone, Copy)]
enum Word<'a> {
    Text(&'a str),
    /// A heredoc source, written `<<NAME`.
    Heredoc(&'a str),
}

/// The words of a command line: the exec array, or the one shell string.
fn command_line_words<'a>(cl: &'a CommandLine<'_>) -> &'a [Cow<'a, str>] {
    match cl {
        CommandLine::Exec(list) => list,
        CommandLine::Shell(s) => std::slice::from_ref(s),
    }
}

/// Calls `f` with each word of the `arguments` of a command whose arguments
/// are words ([`Arguments::Words`]).
fn for_each_word<'a>(command: &'a Command<'_>, mut f: impl FnMut(Word<'a>)) {
    fn texts<'a>(list: &'a [Cow<'a, str>], f: &mut impl FnMut(Word<'a>)) {
        list.iter().for_each(|s| f(Word::Text(s)));
    }
    match command {
        Command::From(from) => {
            f(Word::Text(&from.image));
            if let (Some(kw), Some(name)) = (&from.as_keyword, &from.stage_name_as_written) {
                f(Word::Text(kw));
                f(Word::Text(name));
            }
        }
        Command::Run(r) => texts(command_line_words(&r.command), &mut f),
        Command::Cmd(cl) | Command::Entrypoint(cl) => texts(command_line_words(cl), &mut f),
        Command::Shell(list) | Command::Expose(list) => texts(list, &mut f),
        Command::Volume { paths, .. } => texts(paths, &mut f),
        Command::Maintainer(s)
        | Command::User(s)
        | Command::Workdir(s)
        | Command::StopSignal(s) => f(Word::Text(s)),
        Command::Add(a) => sources_and_dest(&a.sources, &a.dest, f),
        Command::Copy(c) => sources_and_dest(&c.sources, &c.dest, f),
        Command::Onbuild(nested) => f(Word::Text(nested.original.trim())),
        Command::Healthcheck(Healthcheck::None) => f(Word::Text("NONE")),
        Command::Healthcheck(Healthcheck::Check { command, .. }) => {
            f(Word::Text("CMD"));
            texts(command_line_words(command), &mut f);
        }
        Command::Label(_) | Command::Env(_) | Command::Arg(_) => {}
    }
}

/// COPY and ADD arguments: the sources, then the destination.
fn sources_and_dest<'a>(sources: &'a [Source<'_>], dest: &'a str, mut f: impl FnMut(Word<'a>)) {
    for source in sources {
        f(match source {
            Source::Path(p) => Word::Text(p),
            Source::Heredoc(n) => Word::Heredoc(n),
        });
    }
    f(Word::Text(dest));
}

// ---------- the direct writer ----------

/// Output is collected here and written to the destination in chunks of
/// about this size.
const CHUNK: usize = 64 * 1024;

/// Writes the JSON form of `df` to `out`, indented when `pretty`. The text is
/// what `serde_json::to_writer` (or `to_writer_pretty`) would write for the
/// schema of the module docs.
pub fn write_json<W: Write>(df: &Dockerfile, out: W, pretty: bool) -> serde_json::Result<()> {
    let mut json = JsonWriter {
        out,
        buf: Vec::with_capacity(CHUNK + CHUNK / 2),
        pretty,
        depth: 0,
    };
    json.file(df).map_err(serde_json::Error::io)
}

/// The JSON form of a Dockerfile parsed with
/// [`parse_each`](super::parse_each), one instruction at a time: `new` with
/// the file's [`head`](super::head), [`instruction`](Self::instruction) for
/// each, then [`finish`](Self::finish). The text is exactly what
/// [`write_json`] writes for the parsed Dockerfile.
///
/// The first `hold_back` bytes are held rather than written: a Dockerfile
/// of up to that much JSON with an error somewhere prints no JSON at all
/// (the error may only be known at the end). Past that the text streams to
/// `out`, so memory stays bounded however large the file is; an error found
/// later leaves the text written so far incomplete, which
/// [`streaming`](Self::streaming) tells.
pub struct JsonStream<W: Write> {
    json: JsonWriter<W>,
    count: usize,
    hold_back: usize,
    streaming: bool,
    /// The first write error: later instructions are no longer written.
    error: Option<io::Error>,
}

impl<W: Write> JsonStream<W> {
    pub fn new(pretty: bool, head: &Dockerfile, out: W, hold_back: usize) -> Self {
        let mut json = JsonWriter {
            out,
            buf: Vec::with_capacity(CHUNK + CHUNK / 2),
            pretty,
            depth: 0,
        };
        json.head(head);
        JsonStream {
            json,
            count: 0,
            hold_back,
            streaming: false,
            error: None,
        }
    }

    /// Adds the next instruction.
    pub fn instruction(&mut self, instr: &Instruction) {
        if self.error.is_some() {
            return;
        }
        self.json.item(self.count == 0);
        self.json.instruction(instr);
        self.count += 1;
        let limit = if self.streaming {
            CHUNK
        } else {
            self.hold_back
        };
        if self.json.buf.len() >= limit {
            self.streaming = true;
            if let Err(e) = self.json.out.write_all(&self.json.buf) {
                self.error = Some(e);
            }
            self.json.buf.clear();
        }
    }

    /// True once text has been written to `out`.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// Writes the rest of the text: the instructions not yet written and the
    /// file's closing fields.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        // `head` left the depth where the instructions are.
        self.json.tail(self.count > 0);
        self.json.out.write_all(&self.json.buf)?;
        self.json.out.flush()
    }
}

/// A JSON writer with `serde_json`'s layout: compact, or pretty with
/// two-space indents (`"key": value`, a container's items each on a line of
/// their own, empty containers as `[]`).
struct JsonWriter<W> {
    out: W,
    buf: Vec<u8>,
    pretty: bool,
    /// How many containers are open.
    depth: usize,
}

impl<W: Write> JsonWriter<W> {
    fn file(&mut self, df: &Dockerfile) -> io::Result<()> {
        self.head(df);
        for (i, instr) in df.instructions.iter().enumerate() {
            self.item(i == 0);
            self.instruction(instr);
            if self.buf.len() >= CHUNK {
                self.out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        self.tail(!df.instructions.is_empty());
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }

    /// Everything before the first instruction: the file's fields up to the
    /// opening of the `instructions` array (depth 2 after it).
    fn head(&mut self, df: &Dockerfile) {
        self.open(b'{');
        self.key(true, "file");
        self.string(&df.file);
        self.key(false, "escape");
        let mut escape = [0; 4];
        self.string(df.escape.encode_utf8(&mut escape));
        self.key(false, "directives");
        self.array(&df.directives, |json, d| json.directive(d));
        self.key(false, "instructions");
        self.open(b'[');
    }

    /// Closes what [`Self::head`] opened.
    fn tail(&mut self, any_instructions: bool) {
        self.close(b']', any_instructions);
        self.close(b'}', true);
    }

    fn directive(&mut self, d: &Directive) {
        self.open(b'{');
        self.key(true, "name");
        self.string(&d.name);
        self.key(false, "value");
        self.string(&d.value);
        self.key(false, "line");
        self.number(d.line);
        self.close(b'}', true);
    }

    fn instruction(&mut self, instr: &Instruction) {
        self.open(b'{');
        self.key(true, "keyword");
        self.string(instr.keyword.as_str());
        self.key(false, "keyword_as_written");
        self.string(&instr.keyword_as_written);
        self.key(false, "start_line");
        self.number(instr.start.line);
        self.key(false, "start_column");
        self.number(instr.start.column);
        self.key(false, "end_line");
        self.number(instr.end_line);
        self.key(false, "flags");
        self.array(&instr.flags, |json, flag| json.flag(flag));
        if let Some(form) = form(&instr.command) {
            self.key(false, "form");
            self.string(form);
        }
        self.key(false, "arguments");
        self.arguments(&instr.command);
        self.key(false, "heredocs");
        self.array(shown_heredocs(instr), |json, h| json.heredoc(h));
        if let Some(nested) = nested(instr) {
            self.key(false, "onbuild");
            self.instruction(nested);
        }
        self.close(b'}', true);
    }

    /// `--name=value` or `--name`, as [`Flag::as_written`] spells it.
    fn flag(&mut self, flag: &Flag) {
        self.buf.extend_from_slice(b"\"--");
        self.escaped(&flag.name);
        if let Some(value) = &flag.value {
            self.buf.push(b'=');
            self.escaped(value);
        }
        self.buf.push(b'"');
    }

    fn arguments(&mut self, command: &Command) {
        match arguments(command) {
            Arguments::Pairs(pairs) => self.array(pairs, |json, p| {
                json.open(b'{');
                json.key(true, "key");
                json.string(&p.key);
                json.key(false, "value");
                json.string(&p.value);
                json.key(false, "legacy");
                json.buf
                    .extend_from_slice(if p.legacy { b"true" } else { b"false" });
                json.close(b'}', true);
            }),
            Arguments::Decls(decls) => self.array(decls, |json, a| {
                json.open(b'{');
                json.key(true, "key");
                json.string(&a.name);
                json.key(false, "value");
                match &a.default {
                    Some(v) => json.string(v),
                    None => json.buf.extend_from_slice(b"null"),
                }
                json.close(b'}', true);
            }),
            Arguments::Words(command) => {
                self.open(b'[');
                let mut first = true;
                for_each_word(command, |word| {
                    self.item(first);
                    first = false;
                    match word {
                        Word::Text(s) => self.string(s),
                        Word::Heredoc(name) => {
                            self.buf.extend_from_slice(b"\"<<");
                            self.escaped(name);
                            self.buf.push(b'"');
                        }
                    }
                });
                self.close(b']', !first);
            }
        }
    }

    fn heredoc(&mut self, h: &Heredoc) {
        self.open(b'{');
        self.key(true, "name");
        self.string(&h.name);
        self.key(false, "body");
        self.string(&h.body);
        self.key(false, "expand");
        self.boolean(h.expand);
        self.key(false, "strip_tabs");
        self.boolean(h.strip_tabs);
        self.key(false, "fd");
        match h.fd {
            Some(fd) => self.number(fd as usize),
            None => self.buf.extend_from_slice(b"null"),
        }
        self.key(false, "body_line");
        self.number(h.body_line);
        self.close(b'}', true);
    }

    /// An array of `items`, each written by `write`.
    fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.open(b'[');
        for (i, item) in items.iter().enumerate() {
            self.item(i == 0);
            write(self, item);
        }
        self.close(b']', !items.is_empty());
    }

    #[inline]
    fn open(&mut self, bracket: u8) {
        self.buf.push(bracket);
        self.depth += 1;
    }

    /// Closes a container; in pretty form a container with items ends on a
    /// line of its own.
    #[inline]
    fn close(&mut self, bracket: u8, had_items: bool) {
        self.depth -= 1;
        if self.pretty && had_items {
            self.new_line();
        }
        self.buf.push(bracket);
    }

    /// Starts an array item or an object entry.
    #[inline(always)]
    fn item(&mut self, first: bool) {
        if !first {
            self.buf.push(b',');
        }
        if self.pretty {
            self.new_line();
        }
    }

    #[inline]
    fn new_line(&mut self) {
        self.buf.push(b'\n');
        for _ in 0..self.depth {
            self.buf.extend_from_slice(b"  ");
        }
    }

    /// An object key (plain ASCII: never escaped) and its colon.
    // Always inlined: `key` is a literal, and with its length known the
    // copy is a few moves instead of a call to `memcpy`.
    #[inline(always)]
    fn key(&mut self, first: bool, key: &str) {
        self.item(first);
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf
            .extend_from_slice(if self.pretty { b"\": " } else { b"\":" });
    }

    #[inline]
    fn boolean(&mut self, value: bool) {
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[start..]);
    }

    #[inline]
    fn string(&mut self, s: &str) {
        self.buf.push(b'"');
        self.escaped(s);
        self.buf.push(b'"');
    }

    /// The contents of a JSON string, escaped as `serde_json` escapes them:
    /// `"` and `\` with a backslash, control characters as `\n`-style or
    /// `\u00XX` escapes, everything else (non-ASCII included) as it is.
    fn escaped(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = s.as_bytes();
        // Copy the runs between bytes that need escaping whole.
        let mut unwritten = 0;
        while let Some(i) = scan::find_json_escape(&bytes[unwritten..]).map(|i| unwritten + i) {
            self.buf.extend_from_slice(&bytes[unwritten..i]);
            unwritten = i + 1;
            let b = bytes[i];
            let short = match b {
                b'"' => b'"',
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                _ => {
                    let hex = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
                    self.buf.extend_from_slice(b"\\u00");
                    self.buf.extend_from_slice(&hex);
                    continue;
                }
            };
            self.buf.extend_from_slice(&[b'\\', short]);
        }
        self.buf.extend_from_slice(&bytes[unwritten..]);
    }
}

// ---------- the serde views ----------

/// A sequence of views, serialized as a JSON array.
struct Seq<I>(I);

impl<I> Serialize for Seq<I>
where
    I: Iterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

struct FileView<'a, 'src>(&'a Dockerfile<'src>);

impl Serialize for FileView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let df = self.0;
        let mut file = serializer.serialize_struct("FileView", 4)?;
        file.serialize_field("file", &df.file)?;
        file.serialize_field("escape", &df.escape)?;
        file.serialize_field("directives", &Seq(df.directives.iter().map(DirectiveView)))?;
        file.serialize_field(
            "instructions",
            &Seq(df.instructions.iter().map(InstructionView)),
        )?;
        file.end()
    }
}

struct DirectiveView<'a>(&'a Directive);

impl Serialize for DirectiveView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut view = serializer.serialize_struct("DirectiveView", 3)?;
        view.serialize_field("name", &d.name)?;
        view.serialize_field("value", &d.value)?;
        view.serialize_field("line", &d.line)?;
        view.end()
    }
}

struct FlagView<'a, 'src>(&'a Flag<'src>);

impl Serialize for FlagView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.as_written())
    }
}

struct PairView<'a, 'src>(&'a KeyValue<'src>);

impl Serialize for PairView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut view = serializer.serialize_struct("PairView", 3)?;
        view.serialize_field("key", &p.key)?;
        view.serialize_field("value", &p.value)?;
        view.serialize_field("legacy", &p.legacy)?;
        view.end()
    }
}

struct DeclView<'a, 'src>(&'a ArgDecl<'src>);

impl Serialize for DeclView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut view = serializer.serialize_struct("ArgView", 2)?;
        view.serialize_field("key", &a.name)?;
        view.serialize_field("value", &a.default)?;
        view.end()
    }
}

struct HeredocView<'a, 'src>(&'a Heredoc<'src>);

impl Serialize for HeredocView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut view = serializer.serialize_struct("HeredocView", 6)?;
        view.serialize_field("name", &h.name)?;
        view.serialize_field("body", &h.body)?;
        view.serialize_field("expand", &h.expand)?;
        view.serialize_field("strip_tabs", &h.strip_tabs)?;
        view.serialize_field("fd", &h.fd)?;
        view.serialize_field("body_line", &h.body_line)?;
        view.end()
    }
}

impl Serialize for Word<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Word::Text(s) => serializer.serialize_str(s),
            Word::Heredoc(name) => serializer.collect_str(&format_args!("<<{name}")),
        }
    }
}

struct ArgumentsView<'a, 'src>(&'a Command<'src>);

impl Serialize for ArgumentsView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match arguments(self.0) {
            Arguments::Pairs(pairs) => serializer.collect_seq(pairs.iter().map(PairView)),
            Arguments::Decls(decls) => serializer.collect_seq(decls.iter().map(DeclView)),
            Arguments::Words(command) => {
                let mut len = 0;
                for_each_word(command, |_| len += 1);
                let mut seq = serializer.serialize_seq(Some(len))?;
                let mut outcome = Ok(());
                for_each_word(command, |word| {
                    if outcome.is_ok() {
                        outcome = seq.serialize_element(&word);
                    }
                });
                outcome?;
                seq.end()
            }
        }
    }
}

struct InstructionView<'a, 'src>(&'a Instruction<'src>);

impl Serialize for InstructionView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let instr = self.0;
        let form = form(&instr.command);
        let nested = nested(instr);
        let fields = 8 + usize::from(form.is_some()) + usize::from(nested.is_some());
        let mut view = serializer.serialize_struct("InstructionView", fields)?;
        view.serialize_field("keyword", instr.keyword.as_str())?;
        view.serialize_field("keyword_as_written", &instr.keyword_as_written)?;
        view.serialize_field("start_line", &instr.start.line)?;
        view.serialize_field("start_column", &instr.start.column)?;
        view.serialize_field("end_line", &instr.end_line)?;
        view.serialize_field("flags", &Seq(instr.flags.iter().map(FlagView)))?;
        match form {
            Some(form) => view.serialize_field("form", form)?,
            None => view.skip_field("form")?,
        }
        view.serialize_field("arguments", &ArgumentsView(&instr.command))?;
        let heredocs = shown_heredocs(instr);
        view.serialize_field("heredocs", &Seq(heredocs.iter().map(HeredocView)))?;
        match nested {
            Some(nested) => view.serialize_field("onbuild", &InstructionView(nested))?,
            None => view.skip_field("onbuild")?,
        }
        view.end()
    }
}

/// The whole file as a JSON value.
pub fn to_json(df: &Dockerfile) -> Value {
    serde_json::to_value(FileView(df)).unwrap_or(Value::Null)
}

/// One instruction as a JSON value.
pub fn instruction_to_json(instr: &Instruction) -> Value {
    serde_json::to_value(InstructionView(instr)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    /// `write_json` against `serde_json` writing the serde views.
    fn assert_same_as_serde(df: &Dockerfile) {
        for pretty in [false, true] {
            let mut direct = Vec::new();
            write_json(df, &mut direct, pretty).unwrap();
            let reference = if pretty {
                serde_json::to_vec_pretty(&FileView(df)).unwrap()
            } else {
                serde_json::to_vec(&FileView(df)).unwrap()
            };
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&reference),
                "{} (pretty: {pretty})",
                df.file
            );
            assert_eq!(
                String::from_utf8_lossy(&streamed(df, pretty)),
                String::from_utf8_lossy(&direct),
                "{} streamed (pretty: {pretty})",
                df.file
            );
        }
    }

    /// `df` written by a [`JsonStream`].
    /// Held whole, and streamed from the first instruction on.
    fn streamed(df: &Dockerfile, pretty: bool) -> Vec<u8> {
        let mut outputs = Vec::new();
        for hold_back in [usize::MAX, 0] {
            let mut out = Vec::new();
            let mut stream = JsonStream::new(pretty, df, &mut out, hold_back);
            for instr in &df.instructions {
                stream.instruction(instr);
            }
            stream.finish().unwrap();
            outputs.push(out);
        }
        assert!(outputs[0] == outputs[1], "held and streamed JSON differ");
        outputs.remove(0)
    }

    #[test]
    fn stream_spanning_many_chunks_matches_write_json() {
        let block = "# escape=`\nFROM a AS b\nENV x=1 `\n  y=2\nRUN <<EOF\necho \"hi\"\nEOF\nONBUILD COPY . /x\n";
        let source = block.repeat(3 * CHUNK / block.len());
        let head = crate::dockerfile::head(&source, "Dockerfile");
        assert_eq!(head.escape, '`');
        let mut out = Vec::new();
        let mut stream = JsonStream::new(true, &head, &mut out, CHUNK / 2);
        let mut each = Vec::new();
        let rest = crate::dockerfile::parse_each(&source, "Dockerfile", |i| {
            stream.instruction(&i);
            each.push(i);
        })
        .unwrap();
        assert!(rest.instructions.is_empty());
        assert!(stream.streaming());
        stream.finish().unwrap();
        let df = parse(&source, "Dockerfile").unwrap();
        assert_eq!(each, df.instructions);
        let mut direct = Vec::new();
        write_json(&df, &mut direct, true).unwrap();
        assert!(out == direct, "streamed JSON differs from write_json");
    }

    #[test]
    fn held_stream_writes_nothing_until_finished() {
        let df = parse("FROM a\nRUN b\n", "Dockerfile").unwrap();
        let mut out = Vec::new();
        let mut stream = JsonStream::new(false, &df, &mut out, 1 << 20);
        for instr in &df.instructions {
            stream.instruction(instr);
        }
        assert!(!stream.streaming());
        drop(stream);
        assert!(
            out.is_empty(),
            "a dropped held stream wrote {} bytes",
            out.len()
        );
    }

    #[test]
    fn direct_writer_matches_serde_on_the_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerfiles");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Ok(df) = crate::dockerfile::parse_bytes(&bytes, &path.display().to_string()) {
                assert_same_as_serde(&df);
                seen += 1;
            }
        }
        assert!(seen >= 100, "only {seen} corpus files parsed");
    }

    #[test]
    fn direct_writer_escapes_like_serde() {
        let src = "# syntax=\"q\"\\x\nFROM a\u{1}b AS x\nENV k=\"\\\\\" L=\u{7f}é\u{2028}\nARG A B=\t\nRUN [\"\\u0000\\b\\f\\n\\r\\t\\\"\\/\"]\nCOPY 7<<-E\"O\"F /d\n\tx\u{1f}\n\tEOF\nHEALTHCHECK NONE\nONBUILD ADD --chown=\"a b\" <<X /y\nbody\nX\nONBUILD RUN x\nCMD []\n";
        let df = parse(src, "Docker\"file\n").unwrap();
        assert_same_as_serde(&df);
        let df = parse("FROM scratch", "").unwrap();
        assert_same_as_serde(&df);
    }
}
