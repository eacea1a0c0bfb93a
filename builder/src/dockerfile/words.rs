//! The word-level helpers of BuildKit's line parser: splitting flags off an
//! instruction, splitting ENV/LABEL/ARG words with quotes preserved, the
//! `[\t\v\f\r ]+` split used by FROM/EXPOSE/COPY, and the JSON-array test
//! that decides between exec and shell form. Offsets are byte offsets into
//! the string given, so the caller can turn them into positions.

/// BuildKit's `reWhitespace`: tab, vertical tab, form feed, CR and space.
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits at runs of [`is_split_space`]; each word with its byte offset.
/// Leading or trailing separators produce an empty first or last word, as
/// Go's `Regexp.Split` does.
pub(crate) fn split_whitespace(text: &str) -> Vec<(usize, &str)> {
    // The separators are ASCII, and UTF-8 never uses ASCII bytes inside a
    // multi-byte char, so a byte scan finds the same boundaries.
    let is_space = |b: u8| matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ');
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if is_space(bytes[i]) {
            out.push((start, &text[start..i]));
            while i < bytes.len() && is_space(bytes[i]) {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    out.push((start, &text[start..]));
    out
}

/// Splits `text` into the command word and the rest, at the first run of
/// [`is_split_space`]: `(command, rest_offset)`.
pub(crate) fn split_command_word(text: &str) -> (&str, Option<usize>) {
    match text.char_indices().find(|&(_, c)| is_split_space(c)) {
        None => (text, None),
        Some((i, _)) => {
            let rest = text[i..]
                .char_indices()
                .find(|&(_, c)| !is_split_space(c))
                .map_or(text.len(), |(j, _)| i + j);
            (&text[..i], Some(rest))
        }
    }
}

/// A flag word as split off the line: `--name=value` with quotes removed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawFlag {
    pub word: String,
    pub offset: usize,
}

/// BuildKit's `extractBuilderFlags`: leading words that start with `--` are
/// flags (quotes removed, `\` escapes applied); a lone `--` ends them. Returns
/// the flags and the byte offset where the arguments begin.
pub(crate) fn extract_flags(line: &str) -> (Vec<RawFlag>, usize) {
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
                        flags.push(RawFlag {
                            word: std::mem::take(&mut word),
                            offset: word_start,
                        });
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
        flags.push(RawFlag {
            word,
            offset: word_start,
        });
    }
    (flags, line.len())
}

/// BuildKit's `parseWords` (ENV, LABEL, ARG): words split at unquoted
/// whitespace, with quotes and escapes kept as written for the expander.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
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

/// The outcome of trying to read arguments as a JSON array.
#[derive(Debug, PartialEq)]
pub(crate) enum JsonArgs {
    /// A JSON array of strings: exec form.
    Strings(Vec<String>),
    /// A JSON array holding something else: an error in BuildKit.
    NotStrings,
    /// Not a JSON array at all: shell form.
    NotJson,
}

/// BuildKit's `parseJSON`: the arguments (after leading whitespace) must be
/// one complete JSON array for exec form.
pub(crate) fn parse_json_array(rest: &str) -> JsonArgs {
    let trimmed = rest.trim_start();
    if !trimmed.starts_with('[') {
        return JsonArgs::NotJson;
    }
    // The common case, an array of strings, without building a tree.
    if let Ok(list) = serde_json::from_str::<Vec<String>>(trimmed) {
        return JsonArgs::Strings(list);
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonArgs::NotStrings,
                }
            }
            JsonArgs::Strings(out)
        }
        _ => JsonArgs::NotJson,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_split_off() {
        let (flags, rest) = extract_flags("--from=build --chown=1:1 src dst");
        let words: Vec<_> = flags.iter().map(|f| f.word.as_str()).collect();
        assert_eq!(words, ["--from=build", "--chown=1:1"]);
        assert_eq!(&"--from=build --chown=1:1 src dst"[rest..], "src dst");
        assert_eq!(flags[1].offset, 13);
    }

    #[test]
    fn flag_quotes_and_end_marker() {
        let (flags, rest) = extract_flags(r#"--mount="type=cache,target=/a b" -- --notaflag x"#);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].word, "--mount=type=cache,target=/a b");
        assert_eq!(
            r#"--mount="type=cache,target=/a b" -- --notaflag x"#[rest..].trim(),
            "--notaflag x"
        );
        let (flags, rest) = extract_flags("-x y");
        assert!(flags.is_empty());
        assert_eq!(rest, 0);
        let (flags, rest) = extract_flags("--link");
        assert_eq!(flags[0].word, "--link");
        assert_eq!(rest, 6);
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="x y" b=\"z c='q r'"#, '\\'),
            [r#"a="x y""#, r#"b=\"z"#, "c='q r'"]
        );
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
        assert_eq!(parse_words(r#"a="" b"#, '\\'), [r#"a="""#, "b"]);
    }

    #[test]
    fn whitespace_split() {
        let got: Vec<_> = split_whitespace("a  b\tc")
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(split_whitespace("a b")[1].0, 2);
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
