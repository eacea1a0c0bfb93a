//! The word-level helpers of BuildKit's line parser: splitting flags off an
//! instruction, splitting ENV/LABEL/ARG words with quotes preserved, the
//! `[\t\v\f\r ]+` split used by FROM/EXPOSE/COPY, and the JSON-array test
//! that decides between exec and shell form. Offsets are byte offsets into
//! the string given, so the caller can turn them into positions.
//!
//! Results borrow from the text given wherever the word appears there as it
//! is returned; only words that were rewritten (quotes removed from a flag,
//! escapes decoded in a JSON string) are copies.
//!
//! The scanners look at bytes: every character with a meaning here is ASCII
//! except whitespace, which `char::is_whitespace` also finds outside ASCII,
//! so only non-ASCII chars are decoded, to test them for that.

use std::borrow::Cow;

use super::scan;

/// `char::is_whitespace` for an ASCII byte (space, `\t`, `\n`, `\v`, `\f`,
/// `\r`).
pub(crate) fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

/// The char of `text` that starts at byte `at` (a char boundary).
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|rest| rest.chars().next())
}

/// The length in bytes of the char at byte `at`, 1 past the end.
fn char_len_at(text: &str, at: usize) -> usize {
    char_at(text, at).map_or(1, char::len_utf8)
}

/// The byte offset of the first char at or after byte `from` (a char
/// boundary) that is whitespace or one of the ASCII bytes `stops` (repeat one
/// to need fewer); `text.len()` if there is none.
pub(crate) fn find_space_or(text: &str, from: usize, stops: [u8; 3]) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    // Jump to each byte that may end the word, and look at it closely.
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| scan::find_word_end(rest, stops))
    {
        i += at;
        let b = bytes[i];
        if b.is_ascii() {
            if is_ascii_space(b) || stops.contains(&b) {
                return i;
            }
            i += 1;
        } else {
            match char_at(text, i) {
                Some(c) if c.is_whitespace() => return i,
                Some(c) => i += c.len_utf8(),
                None => i += 1,
            }
        }
    }
    bytes.len()
}

/// The byte offset of the first char at or after byte `from` (a char
/// boundary) that is not whitespace; `text.len()` if there is none.
pub(crate) fn skip_space(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            if !is_ascii_space(b) {
                return i;
            }
            i += 1;
        } else {
            match char_at(text, i) {
                Some(c) if c.is_whitespace() => i += c.len_utf8(),
                _ => return i,
            }
        }
    }
    bytes.len()
}

/// `text.trim_start()`: without leading whitespace (`char::is_whitespace`).
pub(crate) fn trim_start(text: &str) -> &str {
    &text[skip_space(text, 0)..]
}

/// `text.trim_end()`, deciding on bytes while they are ASCII.
pub(crate) fn trim_end(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while let Some(&b) = end.checked_sub(1).and_then(|i| bytes.get(i)) {
        if !b.is_ascii() {
            return text[..end].trim_end();
        }
        if !is_ascii_space(b) {
            break;
        }
        end -= 1;
    }
    &text[..end]
}

/// `text.trim()`, deciding on bytes while they are ASCII.
pub(crate) fn trim(text: &str) -> &str {
    trim_end(trim_start(text))
}

/// `text.split_once(byte)` for an ASCII byte.
pub(crate) fn split_once_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = scan::find_byte(text.as_bytes(), byte)?;
    Some((&text[..at], &text[at + 1..]))
}

/// Pushes `item` growing `list` by exactly one element. A vector that grows
/// on its own takes room for at least four, and the AST keeps every vector
/// it gets: for a file of many small instructions that spare room would be
/// much of its memory. Lists here are short, and the vector grown is usually
/// the last allocation made, which the allocator extends in place.
pub(crate) fn push_exact<T>(list: &mut Vec<T>, item: T) {
    list.reserve_exact(1);
    list.push(item);
}
/// BuildKit's `reWhitespace`: tab, vertical tab, form feed, CR and space.
/// The separators are ASCII, and UTF-8 never uses ASCII bytes inside a
/// multi-byte char, so scanning bytes finds the same boundaries as chars.
fn is_split_space(b: u8) -> bool {
    matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ')
}

/// Splits at runs of [`is_split_space`]; each word with its byte offset.
/// Leading or trailing separators produce an empty first or last word, as
/// Go's `Regexp.Split` does. The number of words is known from the start
/// (`len`), so a list of them can be allocated at its size.
pub(crate) fn split_whitespace(text: &str) -> SplitWhitespace<'_> {
    let bytes = text.as_bytes();
    let runs = (0..bytes.len())
        .filter(|&i| is_split_space(bytes[i]) && (i == 0 || !is_split_space(bytes[i - 1])))
        .count();
    SplitWhitespace {
        text,
        next_start: Some(0),
        remaining: runs + 1,
    }
}

/// The iterator of [`split_whitespace`].
pub(crate) struct SplitWhitespace<'a> {
    text: &'a str,
    /// Where the next word starts; `None` after the last.
    next_start: Option<usize>,
    remaining: usize,
}

impl<'a> Iterator for SplitWhitespace<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let bytes = self.text.as_bytes();
        let start = self.next_start?;
        let end = bytes[start..]
            .iter()
            .position(|&b| is_split_space(b))
            .map_or(bytes.len(), |i| start + i);
        self.next_start = (end < bytes.len()).then(|| {
            bytes[end..]
                .iter()
                .position(|&b| !is_split_space(b))
                .map_or(bytes.len(), |i| end + i)
        });
        self.remaining = self.remaining.saturating_sub(1);
        Some((start, &self.text[start..end]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for SplitWhitespace<'_> {}

/// Splits `text` into the command word and the rest, at the first run of
/// [`is_split_space`]: `(command, rest_offset)`.
pub(crate) fn split_command_word(text: &str) -> (&str, Option<usize>) {
    let bytes = text.as_bytes();
    match bytes.iter().position(|&b| is_split_space(b)) {
        None => (text, None),
        Some(i) => {
            let rest = bytes[i..]
                .iter()
                .position(|&b| !is_split_space(b))
                .map_or(text.len(), |j| i + j);
            (&text[..i], Some(rest))
        }
    }
}

/// BuildKit's `extractBuilderFlags`: leading words that start with `--` are
/// flags (quotes removed, `\` escapes applied); a lone `--` ends them. The
/// iterator yields each flag word (`--name=value`, borrowed from `line`
/// unless quotes or escapes were removed) with its byte offset; once it is
/// done, [`FlagWords::args_start`] is where the arguments begin.
pub(crate) fn flag_words(line: &str) -> FlagWords<'_> {
    FlagWords {
        line,
        pos: 0,
        args_start: None,
    }
}

/// The iterator of [`flag_words`].
pub(crate) struct FlagWords<'a> {
    line: &'a str,
    /// Where the next flag is looked for.
    pos: usize,
    /// Set when the flags are over.
    args_start: Option<usize>,
}

impl FlagWords<'_> {
    /// The byte offset where the arguments begin (the end of the line until
    /// the flags have all been read).
    pub fn args_start(&self) -> usize {
        self.args_start.unwrap_or(self.line.len())
    }
}

impl<'a> Iterator for FlagWords<'a> {
    type Item = (Cow<'a, str>, usize);

    fn next(&mut self) -> Option<(Cow<'a, str>, usize)> {
        const QUOTES_AND_ESCAPE: [u8; 3] = [b'\'', b'"', b'\\'];
        if self.args_start.is_some() {
            return None;
        }
        let line = self.line;
        let start = skip_space(line, self.pos);
        if !line[start..].starts_with("--") {
            self.args_start = Some(start);
            return None;
        }
        // Most flags hold no quotes or escapes: the word is then the text up
        // to the next whitespace, as written.
        let plain_end = find_space_or(line, start, QUOTES_AND_ESCAPE);
        let (word, end) = match line.as_bytes().get(plain_end) {
            Some(b) if QUOTES_AND_ESCAPE.contains(b) => {
                let (word, end) = unquote_flag_word(line, start);
                (Cow::Owned(word), end)
            }
            _ => (Cow::Borrowed(&line[start..plain_end]), plain_end),
        };
        if word == "--" {
            self.args_start = Some(end);
            return None;
        }
        if end == line.len() {
            self.args_start = Some(end);
        }
        self.pos = end;
        Some((word, start))
    }
}

/// One flag word of [`flag_words`] that holds quotes or escapes, from
/// `start` on: the word with quotes removed and escapes applied, and where
/// it ends (the whitespace after it, or the end of the line; an unterminated
/// quote runs to the end).
fn unquote_flag_word(line: &str, start: usize) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line[start..].char_indices();
    while let Some((i, c)) = chars.next() {
        if quote.is_none() && c.is_whitespace() {
            return (word, start + i);
        }
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (_, '\\') => match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                None => break,
            },
            _ => word.push(c),
        }
    }
    (word, line.len())
}

/// BuildKit's `parseWords` (ENV, LABEL, ARG): words split at unquoted
/// whitespace, with quotes and escapes kept as written for the expander.
/// Each word is a slice of `rest`. `escape` is `\\` or `` ` ``.
pub(crate) fn parse_words(rest: &str, escape: char) -> Words<'_> {
    Words {
        text: rest,
        pos: 0,
        // The escape character is always ASCII (`# escape=` allows no other).
        escape: u8::try_from(escape).ok().filter(u8::is_ascii),
    }
}

/// The iterator of [`parse_words`].
#[derive(Clone)]
pub(crate) struct Words<'a> {
    text: &'a str,
    /// Where the next word is looked for.
    pos: usize,
    escape: Option<u8>,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        let bytes = text.as_bytes();
        let end_of_text = bytes.len();
        let start = skip_space(text, self.pos);
        if start == end_of_text {
            self.pos = start;
            return None;
        }
        // A quoted word counts even when empty (`a=""`).
        let mut quoted = false;
        let mut i = start;
        // Where the word ends, and where the next one is looked for.
        let (end, resume) = 'word: loop {
            // Outside quotes (where `i` is at a char boundary): on to the next
            // byte that may end the word or start a quote or an escape.
            let stops = [b'\'', b'"', self.escape.unwrap_or(b'"')];
            let Some(at) = scan::find_word_end(&bytes[i..], stops) else {
                break (end_of_text, end_of_text);
            };
            i += at;
            let b = bytes[i];
            if !b.is_ascii() {
                match char_at(text, i) {
                    Some(c) if c.is_whitespace() => break (i, i),
                    c => i += c.map_or(1, char::len_utf8),
                }
            } else if is_ascii_space(b) {
                break (i, i);
            } else if b == b'\'' || b == b'"' {
                // Everything up to the closing quote belongs to the word; in
                // double quotes the escape character escapes the next char.
                quoted = true;
                let escape = if b == b'"' { self.escape } else { None };
                i += 1;
                loop {
                    let found = match escape {
                        Some(e) => scan::find_either(&bytes[i..], b, e),
                        None => scan::find_byte(&bytes[i..], b),
                    };
                    // An unterminated quote runs to the end of the text.
                    let Some(at) = found else {
                        break 'word (end_of_text, end_of_text);
                    };
                    i += at;
                    if bytes[i] == b {
                        i += 1;
                        break;
                    }
                    // An escape at the very end of the line is dropped.
                    if i + 1 == end_of_text {
                        break 'word (i, end_of_text);
                    }
                    i += 1 + char_len_at(text, i + 1);
                }
            } else if Some(b) == self.escape {
                // The escaped char belongs to the word whatever it is; an
                // escape at the very end of the line is dropped.
                if i + 1 == end_of_text {
                    break (i, end_of_text);
                }
                i += 1 + char_len_at(text, i + 1);
            } else {
                // A control character that is not whitespace.
                i += 1;
            }
        };
        self.pos = resume;
        let word = &text[start..end];
        (quoted || !word.is_empty()).then_some(word)
    }
}

/// The outcome of trying to read arguments as a JSON array.
#[derive(Debug, PartialEq)]
pub(crate) enum JsonArgs<'a> {
    /// A JSON array of strings: exec form.
    Strings(Vec<Cow<'a, str>>),
    /// A JSON array holding something else: an error in BuildKit.
    NotStrings,
    /// Not a JSON array at all: shell form.
    NotJson,
}

/// BuildKit's `parseJSON`: the arguments (after leading whitespace) must be
/// one complete JSON array for exec form.
pub(crate) fn parse_json_array(rest: &str) -> JsonArgs<'_> {
    let trimmed = rest.trim_start();
    if !trimmed.starts_with('[') {
        return JsonArgs::NotJson;
    }
    if let Some(list) = simple_string_array(trimmed) {
        return JsonArgs::Strings(list);
    }
    // Anything the fast path does not take (`\u` escapes, control
    // characters, other values, syntax errors) is decided by serde_json.
    if let Ok(list) = serde_json::from_str::<Vec<String>>(trimmed) {
        return JsonArgs::Strings(list.into_iter().map(Cow::Owned).collect());
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) => out.push(Cow::Owned(s)),
                    _ => return JsonArgs::NotStrings,
                }
            }
            JsonArgs::Strings(out)
        }
        _ => JsonArgs::NotJson,
    }
}

/// The common exec form, read without serde: a JSON array of strings that
/// use no `\u` escapes and no control characters. Strings without escapes
/// are borrowed. `None` for anything else; for every input where this
/// returns a list, `serde_json` reads the same list.
fn simple_string_array(text: &str) -> Option<Vec<Cow<'_, str>>> {
    let json_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = text.as_bytes();
    let skip_json_space = |mut i: usize| {
        while i < bytes.len() && json_space(bytes[i]) {
            i += 1;
        }
        i
    };
    if !text.starts_with('[') {
        return None;
    }
    let mut list = Vec::new();
    let mut i = skip_json_space(1);
    if bytes.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            if bytes.get(i) != Some(&b'"') {
                return None;
            }
            let (string, after) = simple_json_string(text, i + 1)?;
            push_exact(&mut list, string);
            i = skip_json_space(after);
            match bytes.get(i) {
                Some(b',') => i = skip_json_space(i + 1),
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_json_space(i) == bytes.len()).then_some(list)
}

/// The JSON string whose contents start at byte `start` (after the opening
/// quote): its value and the offset after the closing quote. `None` for `\u`
/// escapes, control characters and unterminated strings.
fn simple_json_string(text: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let bytes = text.as_bytes();
    let mut decoded: Option<String> = None;
    // Start of the stretch not yet copied into `decoded`.
    let mut copied_to = start;
    let mut i = start;
    loop {
        match *bytes.get(i)? {
            b'"' => {
                let value = match decoded {
                    None => Cow::Borrowed(&text[start..i]),
                    Some(mut s) => {
                        s.push_str(&text[copied_to..i]);
                        Cow::Owned(s)
                    }
                };
                return Some((value, i + 1));
            }
            b'\\' => {
                let unescaped = match *bytes.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    _ => return None,
                };
                let s = decoded.get_or_insert_with(String::new);
                s.push_str(&text[copied_to..i]);
                s.push(unescaped);
                i += 2;
                copied_to = i;
            }
            0x00..=0x1f => return None,
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The char-by-char implementations these helpers replaced (BuildKit's
    /// algorithms written out directly), kept as the reference the faster
    /// ones must agree with.
    mod reference {
        pub fn extract_flags(line: &str) -> (Vec<(String, usize)>, usize) {
            #[derive(PartialEq)]
            enum Phase {
                Spaces,
                Word,
                Quote(char),
            }
            let mut flags = Vec::new();
            let mut phase = Phase::Spaces;
            let mut word = String::new();
            let mut word_start = 0;
            let mut blank_ok = false;
            let mut iter = line.char_indices().peekable();
            while let Some((pos, c)) = iter.next() {
                match phase {
                    Phase::Spaces => {
                        if c.is_whitespace() {
                            continue;
                        }
                        let next_is_dash = iter.peek().is_some_and(|&(_, n)| n == '-');
                        if c != '-' || !next_is_dash {
                            return (flags, pos);
                        }
                        phase = Phase::Word;
                        word_start = pos;
                        word.push(c);
                    }
                    Phase::Word => {
                        if c.is_whitespace() {
                            if word == "--" {
                                return (flags, pos);
                            }
                            if blank_ok || !word.is_empty() {
                                flags.push((std::mem::take(&mut word), word_start));
                            }
                            word.clear();
                            blank_ok = false;
                            phase = Phase::Spaces;
                            continue;
                        }
                        if c == '\'' || c == '"' {
                            phase = Phase::Quote(c);
                            blank_ok = true;
                            continue;
                        }
                        if c == '\\' {
                            match iter.next() {
                                Some((_, escaped)) => word.push(escaped),
                                None => break,
                            }
                            continue;
                        }
                        word.push(c);
                    }
                    Phase::Quote(q) => {
                        if c == q {
                            phase = Phase::Word;
                            continue;
                        }
                        if c == '\\' {
                            match iter.next() {
                                Some((_, escaped)) => word.push(escaped),
                                None => break,
                            }
                            continue;
                        }
                        word.push(c);
                    }
                }
            }
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push((word, word_start));
            }
            (flags, line.len())
        }

        pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
            #[derive(PartialEq)]
            enum Phase {
                Spaces,
                Word,
                Quote(char),
            }
            let mut words = Vec::new();
            let mut phase = Phase::Spaces;
            let mut word = String::new();
            let mut blank_ok = false;
            let mut iter = rest.chars().peekable();
            while let Some(c) = iter.next() {
                if phase == Phase::Spaces {
                    if c.is_whitespace() {
                        continue;
                    }
                    phase = Phase::Word;
                }
                match phase {
                    Phase::Word => {
                        if c.is_whitespace() {
                            phase = Phase::Spaces;
                            if blank_ok || !word.is_empty() {
                                words.push(std::mem::take(&mut word));
                            }
                            blank_ok = false;
                            continue;
                        }
                        if c == '\'' || c == '"' {
                            phase = Phase::Quote(c);
                            blank_ok = true;
                        }
                        if c == escape {
                            // An escape at the very end of the line is dropped.
                            let Some(escaped) = iter.next() else { continue };
                            word.push(c);
                            word.push(escaped);
                            continue;
                        }
                        word.push(c);
                    }
                    Phase::Quote(q) => {
                        if c == q {
                            phase = Phase::Word;
                        }
                        if c == escape && q != '\'' {
                            let Some(escaped) = iter.next() else {
                                phase = Phase::Word;
                                continue;
                            };
                            word.push(c);
                            word.push(escaped);
                            continue;
                        }
                        word.push(c);
                    }
                    Phase::Spaces => {}
                }
            }
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            words
        }
    }

    /// Text made of the pieces that matter to the word splitters.
    fn tricky_text() -> impl Strategy<Value = String> {
        const PIECES: &[&str] = &[
            "a", "b=", "=", "--", "-", "x y", " ", "  ", "\t", "\u{b}", "\u{c}", "\r", "\n",
            "\u{a0}", "\u{2028}", "\u{3000}", "é", "'", "\"", "\\", "`", "$", "[", "]", ",",
            "\u{1}",
        ];
        prop::collection::vec(prop::sample::select(PIECES), 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn flag_words_agree_with_the_reference(text in tricky_text()) {
            let (want, want_rest) = reference::extract_flags(&text);
            let mut got = flag_words(&text);
            let got_flags: Vec<(String, usize)> =
                got.by_ref().map(|(w, o)| (w.into_owned(), o)).collect();
            prop_assert_eq!(got_flags, want);
            prop_assert_eq!(got.args_start(), want_rest);
        }

        #[test]
        fn words_agree_with_the_reference(text in tricky_text()) {
            for escape in ['\\', '`'] {
                let got: Vec<&str> = parse_words(&text, escape).collect();
                prop_assert_eq!(got, reference::parse_words(&text, escape));
            }
        }

        #[test]
        fn trims_agree_with_std(text in tricky_text()) {
            prop_assert_eq!(trim_start(&text), text.trim_start());
            prop_assert_eq!(trim_end(&text), text.trim_end());
            prop_assert_eq!(trim(&text), text.trim());
            let at = text.len() - text.trim_start().len();
            prop_assert_eq!(skip_space(&text, 0), at);
        }

        #[test]
        fn split_whitespace_is_go_regexp_split(text in tricky_text()) {
            // `[\t\v\f\r ]+` as Go's `Regexp.Split` splits.
            let mut want = Vec::new();
            let mut start = 0;
            let mut chars = text.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ') {
                    want.push((start, &text[start..i]));
                    while chars.next_if(|&(_, c)| matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')).is_some() {}
                    start = chars.peek().map_or(text.len(), |&(j, _)| j);
                }
            }
            want.push((start, &text[start..]));
            prop_assert_eq!(split_whitespace(&text).len(), want.len());
            prop_assert_eq!(split_whitespace(&text).collect::<Vec<_>>(), want);
        }

        #[test]
        fn json_fast_path_agrees_with_serde(text in json_like_text()) {
            if let Some(list) = simple_string_array(&text) {
                let serde: Vec<String> = serde_json::from_str(&text).expect("serde reads it too");
                prop_assert_eq!(list, serde);
            }
        }

        #[test]
        fn lists_have_no_spare_room(n in 0usize..12, text in tricky_text()) {
            let mut list = Vec::new();
            for i in 0..n {
                push_exact(&mut list, i);
            }
            prop_assert_eq!(list.capacity(), n);
            prop_assert_eq!(split_whitespace(&text).len(), split_whitespace(&text).count());
        }
    }

    /// Text that is, or nearly is, a JSON array of strings.
    fn json_like_text() -> impl Strategy<Value = String> {
        const PIECES: &[&str] = &[
            "[", "]", "\"", "\"a\"", ",", " ", "\n", "\t", "\\\"", "\\\\", "\\/", "\\n", "\\u0041",
            "\\x", "é", "\u{1}", "1", "null",
        ];
        prop::collection::vec(prop::sample::select(PIECES), 0..12)
            .prop_map(|v| format!("[{}", v.concat()))
    }

    /// The flag words with their offsets, and where the arguments start.
    fn split_flags(line: &str) -> (Vec<(Cow<'_, str>, usize)>, usize) {
        let mut words = flag_words(line);
        let flags = words.by_ref().collect();
        let rest = words.args_start();
        (flags, rest)
    }

    #[test]
    fn flags_are_split_off() {
        let (flags, rest) = split_flags("--from=build --chown=1:1 src dst");
        let words: Vec<_> = flags.iter().map(|(w, _)| w.as_ref()).collect();
        assert_eq!(words, ["--from=build", "--chown=1:1"]);
        assert_eq!(&"--from=build --chown=1:1 src dst"[rest..], "src dst");
        assert_eq!(flags[1].1, 13);
    }

    #[test]
    fn flag_quotes_and_end_marker() {
        let (flags, rest) = split_flags(r#"--mount="type=cache,target=/a b" -- --notaflag x"#);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].0, "--mount=type=cache,target=/a b");
        assert_eq!(
            r#"--mount="type=cache,target=/a b" -- --notaflag x"#[rest..].trim(),
            "--notaflag x"
        );
        let (flags, rest) = split_flags("-x y");
        assert!(flags.is_empty());
        assert_eq!(rest, 0);
        let (flags, rest) = split_flags("--link");
        assert_eq!(flags[0].0, "--link");
        assert_eq!(rest, 6);
    }

    fn words(rest: &str, escape: char) -> Vec<&str> {
        parse_words(rest, escape).collect()
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            words(r#"a="x y" b=\"z c='q r'"#, '\\'),
            [r#"a="x y""#, r#"b=\"z"#, "c='q r'"]
        );
        assert_eq!(words("  ", '\\'), Vec::<&str>::new());
        assert_eq!(words(r#"a="" b"#, '\\'), [r#"a="""#, "b"]);
    }

    #[test]
    fn whitespace_split() {
        let got: Vec<_> = split_whitespace("a  b\tc").map(|(_, w)| w).collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(split_whitespace("a b").nth(1), Some((2, "b")));
        let edges: Vec<_> = split_whitespace(" a ").collect();
        assert_eq!(edges, [(0, ""), (1, "a"), (3, "")]);
        assert_eq!(split_whitespace("").collect::<Vec<_>>(), [(0, "")]);
    }

    #[test]
    fn json_arrays() {
        assert_eq!(
            parse_json_array(r#"["a", "b \"q\""]"#),
            JsonArgs::Strings(vec!["a".into(), "b \"q\"".into()])
        );
        assert_eq!(parse_json_array(" [] "), JsonArgs::Strings(vec![]));
        assert_eq!(parse_json_array(r#"["a", 1]"#), JsonArgs::NotStrings);
        assert_eq!(parse_json_array(r#"["a" "b"]"#), JsonArgs::NotJson);
        assert_eq!(parse_json_array(r#"['a']"#), JsonArgs::NotJson);
        assert_eq!(parse_json_array(r#"["a"] tail"#), JsonArgs::NotJson);
        assert_eq!(parse_json_array("echo [a]"), JsonArgs::NotJson);
    }
}
