//! Finding `<<WORD` here-document markers in RUN, COPY and ADD lines, with
//! BuildKit's rules: the line is split into shell words (quotes and escapes
//! kept); a word of the form `[fd]<<[-]NAME` starts a heredoc; NAME is
//! unquoted, and if any part of it was quoted the body is not expanded.

use super::expand::{Lexer, NoVars};

/// A heredoc marker found on an instruction line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    pub name: String,
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

/// Parses one word as a heredoc marker (BuildKit's `ParseHeredoc`).
/// `Err` means the delimiter itself could not be lexed.
pub(crate) fn parse_marker(word: &str) -> Result<Option<Marker>, String> {
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
    if raw.len() != plain.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Marker {
        name: plain[0].clone(),
        expand: quotes(&plain[0]) == quotes(&raw[0]),
        strip_tabs,
        fd,
    }))
}

/// A cheap test that lets most lines skip the lexer: a marker word starts
/// after whitespace with optional digits and `<<`.
fn may_hold_marker(line: &str) -> bool {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(i) = line[from..].find("<<") {
        let at = from + i;
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

/// Every heredoc marker on a line, in order.
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<Marker>, String> {
    if !may_hold_marker(line) {
        return Ok(Vec::new());
    }
    let lexer = Lexer {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: true,
        skip_process_quotes: false,
        skip_unset: true,
    };
    // BuildKit ignores lexing errors here: a line it cannot split has no
    // heredocs.
    let Ok(words) = lexer.process_words(line, &NoVars) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for word in words {
        if let Some(marker) = parse_marker(&word)? {
            out.push(marker);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        markers_in_line(line)
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.expand, m.strip_tabs))
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

    #[test]
    fn file_descriptor() {
        let m = markers_in_line("RUN cat 3<<EOF").unwrap();
        assert_eq!(m[0].fd, Some(3));
    }
}
