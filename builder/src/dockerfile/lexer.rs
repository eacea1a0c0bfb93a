//! From bytes to logical lines, as BuildKit's parser reads them: a UTF-8 BOM
//! on the first line is dropped, line endings (`\n`, `\r\n`) are removed,
//! parser directives are read from the top, comment lines are skipped, and
//! lines ending in the escape character are joined with the next ones —
//! comment lines and blank lines inside such a continuation are dropped (the
//! blank ones are remembered for the `NoEmptyContinuation` check).
//!
//! Each logical line keeps a map from its byte offsets back to source lines
//! and columns, so that errors can point at the exact flag or argument.
//!
//! Nothing is copied unless it has to be: a logical line that is one physical
//! line (most are) borrows the source, and a heredoc body, being whole source
//! lines, always does. A line joined from several is a copy, but its
//! segments remember where they came from, so that words parsed from it can
//! be borrowed from the source again ([`LogicalLine::to_source`]).

use std::borrow::Cow;

use super::ast::Directive;
use super::error::{DockerfileError, ErrorKind, Position};
use super::scan;
use super::words;

/// A stretch of a logical line that came from one source line.
#[derive(Debug, Clone, Copy)]
struct Segment<'src> {
    /// Byte offset in the logical line.
    offset: usize,
    /// The stretch as it is in the source.
    text: &'src str,
    line: usize,
    /// Column (1-based, in chars) of the segment's first char.
    column: usize,
}

/// The byte offset of `part` in `whole` if `part` is a slice of it.
fn offset_within(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// One instruction's text with continuations joined.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine<'src> {
    /// The whole source the line was read from.
    source: &'src str,
    /// Borrowed from the source unless continuation lines were joined.
    pub text: Cow<'src, str>,
    first: Segment<'src>,
    more: Vec<Segment<'src>>,
    /// The text is ASCII: columns are byte distances.
    ascii: bool,
    pub end_line: usize,
    /// A blank line sat inside the continuation.
    pub had_empty_continuation: bool,
}

impl<'src> LogicalLine<'src> {
    /// `part` with the source's lifetime: borrowed from the source when it
    /// is a slice of it already, or a slice of [`Self::text`] within one
    /// source line; copied otherwise (text that spans a joined continuation,
    /// or that the parser rewrote).
    pub fn to_source(&self, part: Cow<'_, str>) -> Cow<'src, str> {
        let part = match part {
            Cow::Owned(owned) => return Cow::Owned(owned),
            Cow::Borrowed(part) => part,
        };
        if let Some(start) = offset_within(self.source, part)
            && let Some(same) = self.source.get(start..start + part.len())
        {
            return Cow::Borrowed(same);
        }
        if let Some(start) = offset_within(&self.text, part) {
            let seg = self.segment_at(start);
            // The text is the segments joined: inside one, the same bytes
            // are in the source.
            let within = start - seg.offset;
            if let Some(same) = seg.text.get(within..within + part.len()) {
                return Cow::Borrowed(same);
            }
        }
        Cow::Owned(part.to_string())
    }

    /// The text of all segments joined.
    fn joined_text(&self, len: usize) -> String {
        let mut joined = String::with_capacity(len);
        joined.push_str(self.first.text);
        for seg in &self.more {
            joined.push_str(seg.text);
        }
        joined
    }

    /// The segment holding byte `offset` of the text.
    fn segment_at(&self, offset: usize) -> Segment<'src> {
        self.more
            .iter()
            .rev()
            .find(|s| s.offset <= offset)
            .copied()
            .unwrap_or(self.first)
    }

    /// The source position of a byte offset in [`Self::text`].
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let seg = self.segment_at(offset);
        let start = seg.offset.min(offset);
        let chars = if self.ascii {
            offset - start
        } else {
            self.text
                .get(start..offset)
                .map_or(0, |s| s.chars().count())
        };
        Position::new(seg.line, seg.column + chars)
    }
}

/// Reads parser directives the way BuildKit's `DirectiveParser` does: only
/// from the first lines, each `# name=value` with a known name; the first
/// line that is not one ends the search.
#[derive(Debug, Default)]
struct DirectiveReader {
    done: bool,
    found: Vec<Directive>,
}

const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Go's `\s` in RE2: ASCII space, tab, newline, form feed, carriage return.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn match_directive(token: &str) -> Option<(String, String)> {
    let rest = token.strip_prefix('#')?.trim_start_matches(is_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| {
            if i == 0 {
                !c.is_ascii_alphabetic()
            } else {
                !c.is_ascii_alphanumeric()
            }
        })
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let after = rest[name_len..]
        .trim_start_matches(is_re_space)
        .strip_prefix('=')?;
    let value = after.trim_start_matches(is_re_space);
    let value = if value.is_empty() {
        // `.+?` still needs one character: the regexp backtracks into the
        // spaces and takes the last one.
        let last = after.chars().last()?;
        last.to_string()
    } else {
        value.trim_end_matches(is_re_space).to_string()
    };
    Some((name.to_string(), value))
}

impl DirectiveReader {
    fn read(&mut self, token: &str, line: usize) -> Result<Option<Directive>, ErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(token) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ErrorKind::DuplicateDirective(name));
        }
        let directive = Directive { name, value, line };
        self.found.push(directive.clone());
        Ok(Some(directive))
    }
}

/// The line without its line ending (any `\r` and `\n` at its end).
fn trim_newline(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &line[..end]
}

fn is_comment(line: &str) -> bool {
    words::trim_start(line).starts_with('#')
}

/// BuildKit's line-continuation test: the line ends with the escape
/// character (spaces and tabs after it allowed) that is not itself escaped.
/// Returns the line without it and whether the instruction ends here.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    let Some(before) = line[..end].strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() {
        return ("", false);
    }
    if before.ends_with(escape) {
        // `\\` at the end: an escaped escape, not a continuation.
        return (line, true);
    }
    (before, false)
}

/// The source (`'a`), read line by line; `file` is the name errors are
/// reported under.
pub(crate) struct Reader<'a, 'f> {
    file: &'f str,
    /// The source without its byte order mark.
    source: &'a str,
    rest: &'a str,
    line_no: usize,
    pub escape: char,
    directives: DirectiveReader,
}

impl<'a, 'f> Reader<'a, 'f> {
    pub fn new(source: &'a str, file: &'f str) -> Self {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        Reader {
            file,
            source,
            rest: source,
            line_no: 0,
            escape: '\\',
            directives: DirectiveReader::default(),
        }
    }

    /// A reader that starts at byte `offset` of `source` (which has no byte
    /// order mark), on line `line_no + 1`, past the directives and with the
    /// escape character they chose: the second half of a file read in two.
    pub fn resume(
        source: &'a str,
        file: &'f str,
        offset: usize,
        line_no: usize,
        escape: char,
    ) -> Self {
        Reader {
            file,
            source,
            rest: source.get(offset..).unwrap_or(""),
            line_no,
            escape,
            directives: DirectiveReader {
                done: true,
                found: Vec::new(),
            },
        }
    }

    /// The source this reader reads, without its byte order mark.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// How many bytes of the source have been read.
    pub fn offset(&self) -> usize {
        self.source.len() - self.rest.len()
    }

    pub fn directives(&self) -> &[Directive] {
        &self.directives.found
    }

    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// The next source line with its line ending.
    fn next_physical(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = scan::find_byte(self.rest.as_bytes(), b'\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.line_no += 1;
        Some(line)
    }

    fn error(&self, kind: ErrorKind) -> DockerfileError {
        DockerfileError::new(self.file, Position::new(self.line_no.max(1), 1), None, kind)
    }

    /// Called only while directives may still come (most lines skip it).
    #[cold]
    fn check_directive(&mut self, token: &str) -> Result<(), DockerfileError> {
        let line = self.line_no;
        match self.directives.read(token, line) {
            Ok(Some(d)) if d.name == "escape" => match d.value.as_str() {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                other => return Err(self.error(ErrorKind::InvalidEscapeToken(other.to_string()))),
            },
            Ok(_) => {}
            Err(kind) => return Err(self.error(kind)),
        }
        Ok(())
    }

    /// The next instruction's logical line, or `None` at the end.
    pub fn next_logical(&mut self) -> Result<Option<LogicalLine<'a>>, DockerfileError> {
        loop {
            let Some(raw) = self.next_physical() else {
                return Ok(None);
            };
            let start_line = self.line_no;
            let no_newline = trim_newline(raw);
            let token = words::trim_start(no_newline);
            if !self.directives.done {
                self.check_directive(token)?;
            }
            if token.starts_with('#') {
                continue;
            }
            let leading = no_newline.len() - token.len();
            let column = no_newline[..leading].chars().count() + 1;
            let (first, mut end_of_line) = trim_continuation(token, self.escape);
            if end_of_line && first.is_empty() {
                continue;
            }
            let mut logical = LogicalLine {
                source: self.source,
                text: Cow::Borrowed(first),
                first: Segment {
                    offset: 0,
                    text: first,
                    line: start_line,
                    column,
                },
                more: Vec::new(),
                ascii: false,
                end_line: start_line,
                had_empty_continuation: false,
            };
            // The length of the text with the continuation lines found so
            // far; the text itself is joined once they are all known.
            let mut joined_len = first.len();
            while !end_of_line {
                let Some(raw) = self.next_physical() else {
                    break;
                };
                let token = trim_newline(raw);
                if !self.directives.done {
                    self.check_directive(token)?;
                }
                if is_comment(raw) {
                    continue;
                }
                if words::trim_start(token).is_empty() {
                    logical.had_empty_continuation = true;
                    continue;
                }
                let (part, eol) = trim_continuation(token, self.escape);
                end_of_line = eol;
                logical.more.push(Segment {
                    offset: joined_len,
                    text: part,
                    line: self.line_no,
                    column: 1,
                });
                joined_len += part.len();
            }
            if !logical.more.is_empty() {
                logical.text = Cow::Owned(logical.joined_text(joined_len));
            }
            logical.ascii = logical.text.is_ascii();
            logical.end_line = self.line_no;
            return Ok(Some(logical));
        }
    }

    /// Reads a heredoc body up to its delimiter line. Returns the body (each
    /// line with its ending: a slice of the source) and its first line, or
    /// `None` if the file ended first.
    pub fn read_heredoc(&mut self, delimiter: &str, strip_tabs: bool) -> Option<(&'a str, usize)> {
        let first = self.line_no + 1;
        let body_start = self.rest;
        let mut body_len = 0;
        while let Some(raw) = self.next_physical() {
            let mut candidate = trim_newline(raw);
            if strip_tabs {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == delimiter {
                return Some((&body_start[..body_len], first));
            }
            body_len += raw.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<String> {
        let mut r = Reader::new(src, "Dockerfile");
        let mut out = Vec::new();
        while let Some(l) = r.next_logical().unwrap() {
            out.push(l.text.into_owned());
        }
        out
    }

    #[test]
    fn continuation_drops_comments_and_blank_lines() {
        let src = "RUN a \\\n  # comment\n\n  b \\\n c\nRUN d";
        assert_eq!(lines(src), ["RUN a   b  c", "RUN d"]);
        let mut r = Reader::new(src, "Dockerfile");
        let l = r.next_logical().unwrap().unwrap();
        assert!(l.had_empty_continuation);
        assert_eq!((l.position(0).line, l.end_line), (1, 5));
    }

    #[test]
    fn crlf_bom_and_trailing_escape_at_eof() {
        assert_eq!(
            lines("\u{feff}FROM a\r\nRUN b \\\r\n  c\r\n"),
            ["FROM a", "RUN b   c"]
        );
        assert_eq!(lines("RUN x \\"), ["RUN x "]);
        assert_eq!(lines("RUN x \\\\\nRUN y"), ["RUN x \\\\", "RUN y"]);
        assert_eq!(lines("RUN x \\  \t\n y"), ["RUN x  y"]);
    }

    #[test]
    fn directives_only_at_the_top() {
        let src = "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n# escape=\\\nRUN b `\n c";
        let mut r = Reader::new(src, "Dockerfile");
        let mut texts = Vec::new();
        while let Some(l) = r.next_logical().unwrap() {
            texts.push(l.text.into_owned());
        }
        assert_eq!(texts, ["FROM a", "RUN b  c"]);
        assert_eq!(r.escape, '`');
        assert_eq!(r.directives().len(), 2);
        assert_eq!(r.directives()[0].value, "docker/dockerfile:1");
    }

    #[test]
    fn unknown_directive_ends_directives() {
        let mut r = Reader::new("# foo=bar\n# escape=`\nFROM a", "Dockerfile");
        while r.next_logical().unwrap().is_some() {}
        assert_eq!(r.escape, '\\');
        assert!(r.directives().is_empty());
    }

    #[test]
    fn blank_line_ends_directives() {
        let mut r = Reader::new("\n# escape=`\nFROM a", "Dockerfile");
        while r.next_logical().unwrap().is_some() {}
        assert_eq!(r.escape, '\\');
    }

    #[test]
    fn directive_errors() {
        let mut r = Reader::new("# escape=x\nFROM a", "Dockerfile");
        assert!(r.next_logical().is_err());
        let mut r = Reader::new("# syntax=a\n#SYNTAX = b\nFROM a", "Dockerfile");
        let e = r.next_logical().unwrap_err();
        assert_eq!(e.position.line, 2);
        assert!(e.to_string().contains("only one syntax parser directive"));
    }

    #[test]
    fn directive_syntax() {
        assert_eq!(
            match_directive("#  Escape = `  "),
            Some(("Escape".into(), "`".into()))
        );
        assert_eq!(
            match_directive("# check=skip=all;error=true").unwrap().1,
            "skip=all;error=true"
        );
        assert_eq!(match_directive("# 1x=y"), None);
        assert_eq!(match_directive("# x="), None);
        assert_eq!(match_directive("# x= ").unwrap().1, " ");
    }

    #[test]
    fn positions_map_back_to_source() {
        let mut r = Reader::new("  COPY a \\\n   --chwon=x b", "Dockerfile");
        let l = r.next_logical().unwrap().unwrap();
        assert_eq!(l.position(0), Position::new(1, 3));
        let off = l.text.find("--chwon").unwrap();
        assert_eq!(l.position(off), Position::new(2, 4));
    }

    #[test]
    fn joined_lines_map_back_to_the_source() {
        let src = "RUN a \\\n  # c\n  bb \\\n ccc";
        let mut r = Reader::new(src, "Dockerfile");
        let l = r.next_logical().unwrap().unwrap();
        assert_eq!(l.text, "RUN a   bb  ccc");
        let text: &str = &l.text;
        let borrowed = |part: &str| matches!(l.to_source(Cow::Borrowed(part)), Cow::Borrowed(s) if s == part && offset_within(src, s).is_some());
        // Within one source line: borrowed from the source.
        assert!(borrowed(&text[0..5]));
        assert!(borrowed(&text[8..10]));
        assert!(borrowed(&text[12..15]));
        // Across a join: copied, same text.
        let across = l.to_source(Cow::Borrowed(&text[4..10]));
        assert!(matches!(across, Cow::Owned(_)));
        assert_eq!(across, "a   bb");
        // Not from the line at all: copied.
        assert!(matches!(l.to_source(Cow::Borrowed("RUN")), Cow::Owned(_)));
    }

    #[test]
    fn heredoc_bodies() {
        let mut r = Reader::new("RUN <<EOF\nline1\n\tline2\nEOF\nRUN x", "Dockerfile");
        r.next_logical().unwrap();
        let (body, first) = r.read_heredoc("EOF", false).unwrap();
        assert_eq!(body, "line1\n\tline2\n");
        assert_eq!(first, 2);
        assert_eq!(r.next_logical().unwrap().unwrap().text, "RUN x");
        let mut r = Reader::new("RUN <<-EOF\n\tx\n\tEOF\n", "Dockerfile");
        r.next_logical().unwrap();
        assert_eq!(r.read_heredoc("EOF", true).unwrap().0, "\tx\n");
        let mut r = Reader::new("RUN <<EOF\nnever ends\n", "Dockerfile");
        r.next_logical().unwrap();
        assert!(r.read_heredoc("EOF", false).is_none());
    }
}
