//! Finding `<<WORD` here-document markers in RUN, COPY and ADD lines, with
//! BuildKit's rules: the line is split into shell words (quotes and escapes
//! kept); a word of the form `[fd]<<[-]NAME` starts a heredoc; NAME is
//! unquoted, and if any part of it was quoted the body is not expanded.
//!
//! BuildKit splits with its shell lexer. Lines without `$` and `\` (nearly
//! all) need none of the lexer's work beyond quotes, so they are split here
//! directly, with the same result; the others go through the lexer.

use std::borrow::Cow;

use super::expand::{Lexer, NoVars};
use super::scan;
use super::words::{find_space_or, is_ascii_space, skip_space};

/// A heredoc marker found on an instruction line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker<'a> {
    /// Borrowed from the line unless the lexer had to rewrite it.
    pub name: Cow<'a, str>,
    pub expand: bool,
    pub strip_tabs: bool,
    pub fd: Option<u32>,
}

/// Matches `^(\d*)<<(-?)([^<]*)$` and returns `(fd, strip_tabs, rest)`.
fn split_marker(word: &str) -> Option<(Option<u32>, bool, &str)> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let after = word[digits..].strip_prefix("<<")?;
    let (strip_tabs, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') {
        return None;
    }
    let fd = if digits == 0 {
        None
    } else {
        Some(word[..digits].parse().unwrap_or(u32::MAX))
    };
    Some((fd, strip_tabs, rest))
}

/// The delimiter of a marker when it needs no lexing: a plain word (`EOF`,
/// expanded) or a plain word in one pair of quotes (`"EOF"`, `'EOF'`, not
/// expanded). Plain: no quotes, `$`, `\` or whitespace, which is when the
/// lexer returns the word unchanged.
fn simple_delimiter(rest: &str) -> Option<(&str, bool)> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.contains(|c: char| matches!(c, '\'' | '"' | '$' | '\\') || c.is_whitespace())
    };
    if plain(rest) {
        return Some((rest, true));
    }
    let inner = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))?;
    plain(inner).then_some((inner, false))
}

/// Parses one word as a heredoc marker (BuildKit's `ParseHeredoc`).
/// `Err` means the delimiter itself could not be lexed.
pub(crate) fn parse_marker(word: &str) -> Result<Option<Marker<'_>>, String> {
    let Some((fd, strip_tabs, rest)) = split_marker(word) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    if let Some((name, expand)) = simple_delimiter(rest) {
        return Ok(Some(Marker {
            name: Cow::Borrowed(name),
            expand,
            strip_tabs,
            fd,
        }));
    }
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset = true;
    let mut plain = lexer
        .process_words(rest, &NoVars)
        .map_err(|e| e.to_string())?;
    if plain.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer
        .process_words(rest, &NoVars)
        .map_err(|e| e.to_string())?;
    if raw.len() != plain.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&plain[0]) == quotes(&raw[0]);
    Ok(Some(Marker {
        name: Cow::Owned(plain.swap_remove(0)),
        expand,
        strip_tabs,
        fd,
    }))
}

/// A cheap test that lets most lines skip the lexer: a marker word starts
/// after whitespace with optional digits and `<<`.
fn may_hold_marker(line: &str) -> bool {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(i) = scan::find_byte(&bytes[from..], b'<') {
        let at = from + i;
        if bytes.get(at + 1) != Some(&b'<') {
            from = at + 1;
            continue;
        }
        let mut start = at;
        while start > 0 && bytes[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if line[..start]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace)
        {
            return true;
        }
        from = at + 2;
    }
    false
}

/// The shell words of a line without `$` and `\`, as BuildKit's lexer
/// splits them with raw quotes: words end at unquoted whitespace, and quotes
/// are kept. An unterminated quote is an error for the lexer; here it ends
/// the words with an `Err`.
fn split_quoted_words(line: &str) -> impl Iterator<Item = Result<&str, ()>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = skip_space(line, pos);
        if start == line.len() {
            return None;
        }
        let mut end = start;
        loop {
            end = find_space_or(line, end, [b'\'', b'"', b'"']);
            let Some(&quote) = line.as_bytes().get(end) else {
                break;
            };
            if is_ascii_space(quote) || !(quote == b'\'' || quote == b'"') {
                break;
            }
            // Everything up to the closing quote belongs to the word.
            let Some(close) = line.as_bytes()[end + 1..].iter().position(|&b| b == quote) else {
                pos = line.len();
                return Some(Err(()));
            };
            end += close + 2;
        }
        pos = end;
        Some(Ok(&line[start..end]))
    })
}

/// Every heredoc marker on a line, in order.
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<Marker<'_>>, String> {
    if !may_hold_marker(line) {
        return Ok(Vec::new());
    }
    if !line.bytes().any(|b| b == b'$' || b == b'\\') {
        // BuildKit ignores lexing errors here: a line it cannot split has no
        // heredocs. Only the last word can be unterminated, so a line is
        // known to split before its markers are parsed.
        if split_quoted_words(line).any(|word| word.is_err()) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for word in split_quoted_words(line).flatten() {
            if let Some(marker) = parse_marker(word)? {
                out.push(marker);
            }
        }
        return Ok(out);
    }
    let Some(words) = lexed_words(line) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for word in &words {
        if let Some(marker) = parse_marker(word)? {
            out.push(Marker {
                name: Cow::Owned(marker.name.into_owned()),
                expand: marker.expand,
                strip_tabs: marker.strip_tabs,
                fd: marker.fd,
            });
        }
    }
    Ok(out)
}

/// The line split by BuildKit's lexer with raw quotes and escapes, or
/// `None` if it cannot be lexed.
fn lexed_words(line: &str) -> Option<Vec<String>> {
    let lexer = Lexer {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: true,
        skip_process_quotes: false,
        skip_unset: true,
    };
    lexer.process_words(line, &NoVars).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        markers_in_line(line)
            .unwrap()
            .into_iter()
            .map(|m| (m.name.into_owned(), m.expand, m.strip_tabs))
            .collect()
    }

    #[test]
    fn finds_markers() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(names("RUN python3 <<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(names("RUN <<-EOT"), [("EOT".into(), true, true)]);
        assert_eq!(
            names("RUN <<FILE1 cat > file1 && <<FILE2 cat > file2"),
            [("FILE1".into(), true, false), ("FILE2".into(), true, false)]
        );
        assert_eq!(names("COPY <<EOF /dst"), [("EOF".into(), true, false)]);
    }

    #[test]
    fn quoted_delimiters_do_not_expand() {
        assert_eq!(names(r#"RUN <<"EOF""#), [("EOF".into(), false, false)]);
        assert_eq!(names("RUN <<'EOF'"), [("EOF".into(), false, false)]);
        assert_eq!(names("RUN <<E\"O\"F"), [("EOF".into(), false, false)]);
    }

    #[test]
    fn not_markers() {
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN cat<<EOF").is_empty());
        assert!(names("RUN echo a << b").is_empty());
        assert!(names("RUN echo <<").is_empty());
        assert!(names("RUN 'unterminated <<EOF").is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Lines without `$` and `\` are split without the lexer: the same
        /// words, and an error where the lexer has one.
        #[test]
        fn quoted_split_agrees_with_the_lexer(
            pieces in proptest::collection::vec(
                proptest::sample::select(&[
                    "a", "<<", "<<-", "3", "EOF", "'", "\"", " ", "\t", "\u{a0}", "\u{2028}", "é", "-", "x y",
                ][..]),
                0..16,
            )
        ) {
            let line = pieces.concat();
            let fast: Result<Vec<&str>, ()> = split_quoted_words(&line).collect();
            let lexed = lexed_words(&line);
            proptest::prop_assert_eq!(fast.ok().map(|w| w.iter().map(|s| s.to_string()).collect()), lexed);
            if let Some(words) = lexed_words(&line) {
                for word in &words {
                    // The delimiter shortcut gives what the lexer gives.
                    let direct = parse_marker(word);
                    let lexer_only = parse_marker_with_lexer(word);
                    proptest::prop_assert_eq!(
                        direct.map(|m| m.map(|m| (m.name.into_owned(), m.expand, m.strip_tabs, m.fd))),
                        lexer_only
                    );
                }
            }
        }
    }

    /// [`parse_marker`] without its shortcut for plain delimiters.
    #[allow(clippy::type_complexity)]
    fn parse_marker_with_lexer(
        word: &str,
    ) -> Result<Option<(String, bool, bool, Option<u32>)>, String> {
        let Some((fd, strip_tabs, rest)) = split_marker(word) else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Ok(None);
        }
        let mut lexer = Lexer::new('\\');
        lexer.skip_unset = true;
        let plain = lexer
            .process_words(rest, &NoVars)
            .map_err(|e| e.to_string())?;
        if plain.len() != 1 {
            return Ok(None);
        }
        lexer.raw_quotes = true;
        let raw = lexer
            .process_words(rest, &NoVars)
            .map_err(|e| e.to_string())?;
        let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
        Ok(Some((
            plain[0].clone(),
            quotes(&plain[0]) == quotes(&raw[0]),
            strip_tabs,
            fd,
        )))
    }

    #[test]
    fn file_descriptor() {
        let m = markers_in_line("RUN cat 3<<EOF").unwrap();
        assert_eq!(m[0].fd, Some(3));
    }
}
