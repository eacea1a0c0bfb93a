//! BuildKit's shell-word lexer: quote removal, escapes, `$var` / `${var…}`
//! expansion and word splitting, with the same meaning as BuildKit's
//! `frontend/dockerfile/shell` package. It is what expands `COPY $SRC /dst`,
//! `ENV b=$a`, `FROM ${BASE}` and friends; RUN/CMD/ENTRYPOINT bodies are
//! not passed through it (the shell in the container expands those).
//!
//! Supported forms: `$name`, `${name}`, `${name:-word}`, `${name-word}`,
//! `${name:+word}`, `${name+word}`, `${name:?msg}`, `${name?msg}`,
//! `${name#pattern}`, `${name##pattern}`, `${name%pattern}`,
//! `${name%%pattern}`, `${name/pattern/repl}`, `${name//pattern/repl}`.
//! Patterns use `*` and `?` (and `\` to quote them), matched by the automaton
//! in `glob`, so expansion is polynomial in the input whatever it holds.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::glob::{CharTest, Program, Token};

/// Nesting limit for `${a:-${b:-…}}`: BuildKit recurses without bound (Go
/// stacks grow); we stop at a depth no real Dockerfile reaches, so that
/// hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 256;

/// Where expansion looks variables up.
pub trait VarLookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl VarLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl VarLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// No variables at all.
pub struct NoVars;

impl VarLookup for NoVars {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// An expansion error; the message matches BuildKit's.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ExpandError {
    pub word: String,
    pub message: String,
}

/// The result of processing one word.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expansion {
    /// The word with quotes removed and variables replaced.
    pub result: String,
    /// The same, split into fields at unquoted whitespace.
    pub words: Vec<String>,
    /// Variables that were referenced and set.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced and not set.
    pub unmatched: BTreeSet<String>,
}

/// The lexer's options (BuildKit's `shell.Lex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset: false,
        }
    }

    /// Expands `word` and splits the result into fields.
    pub fn process(&self, word: &str, vars: &dyn VarLookup) -> Result<Expansion, ExpandError> {
        let mut state = State {
            lexer: *self,
            text: word,
            pos: 0,
            vars,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
            raw_escapes: self.raw_escapes,
        };
        match state.process_until(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: state.matched,
                unmatched: state.unmatched,
            }),
            Err(message) => Err(ExpandError {
                word: word.to_string(),
                message,
            }),
        }
    }

    /// Expands `word` (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, vars: &dyn VarLookup) -> Result<String, ExpandError> {
        self.process(word, vars).map(|e| e.result)
    }

    /// Expands and splits `word` (BuildKit's `ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        vars: &dyn VarLookup,
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, vars).map(|e| e.words)
    }
}

/// Field splitting: unquoted whitespace ends a field; quoted or escaped
/// characters never do. Empty fields are dropped, as BuildKit drops them.
#[derive(Default)]
struct Fields {
    words: Vec<String>,
    current: String,
}

impl Fields {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            self.flush();
        } else {
            self.current.push(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.current.push(c);
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.current.push_str(s);
    }
    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
        }
    }
    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.words
    }
}

struct State<'a> {
    lexer: Lexer,
    text: &'a str,
    /// Byte offset of the next char in `text`.
    pos: usize,
    vars: &'a dyn VarLookup,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    depth: usize,
    raw_escapes: bool,
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if let Some(c) = c {
            self.pos += c.len_utf8();
        }
        c
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.vars.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes up to `stop` (consumed) or the end of input.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved_raw = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let outcome = self.process_until_inner(stop);
        self.raw_escapes = saved_raw;
        outcome
    }

    fn process_until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, fields.finish()));
            }
            let quotes = !self.lexer.skip_process_quotes;
            if c == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                fields.add_string(&value);
            } else if quotes && c == '\'' {
                let value = self.process_single_quote()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else if quotes && c == '"' {
                let value = self.process_double_quote()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else {
                self.next();
                if c == self.lexer.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(c);
                        result.push(c);
                    }
                    // An escape at the very end escapes nothing.
                    let Some(escaped) = self.next() else { break };
                    fields.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    fields.add_char(c);
                    result.push(c);
                }
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((result, fields.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        // Everything up to the next single quote is literal; nothing escapes.
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        // Literal except `$`, and the escape character before `"`, `$` or
        // itself; any other escape stays as written.
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    out.push_str(&value);
                }
                Some(_) => {
                    let Some(mut c) = self.next() else { continue };
                    if c == self.lexer.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                                self.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        if self.depth >= MAX_NESTING {
            return Err("variable substitutions nested too deeply".to_string());
        }
        self.depth += 1;
        let outcome = self.process_dollar_inner();
        self.depth -= 1;
        outcome
    }

    fn process_dollar_inner(&mut self) -> Result<String, String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".to_string());
            }
            _ => {}
        }
        let name = self.process_name();
        let Some(mut op) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        let mut op_text = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v,
                    None if self.lexer.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.process_replace(&name),
            ':' => {
                null_is_unset = true;
                match self.next() {
                    Some(c) => {
                        op = c;
                        op_text.push(c);
                    }
                    None => return Err("syntax error: missing '}'".to_string()),
                }
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(format!("unsupported modifier ({op_text}) in substitution")),
        }
        let is_pattern = op == '#' || op == '%';
        if null_is_unset && is_pattern {
            return Err(format!("unsupported modifier ({op_text}) in substitution"));
        }
        let word = match self.process_until(Some('}'), is_pattern) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".to_string());
                }
                return Err(e);
            }
        };
        let value = self.lookup(&name);
        if self.lexer.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{op_text}{word}}}"));
        }
        let empty = value
            .as_deref()
            .is_none_or(|v| null_is_unset && v.is_empty());
        match op {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match value {
                None => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let program = shell_pattern(pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                Ok(if op == '#' {
                    trim_prefix(&program, &value, greedy)
                } else {
                    trim_suffix(&program, &value, greedy)
                })
            }
            _ => Err(format!("unsupported modifier ({op_text}) in substitution")),
        }
    }

    fn process_replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_until(Some('/'), true) {
            Ok((p, _)) => p,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '/' in ${}".to_string());
                }
                return Err(e);
            }
        };
        let replacement = match self.process_until(Some('}'), true) {
            Ok((r, _)) => r,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".to_string());
                }
                return Err(e);
            }
        };
        let value = self.lookup(name);
        let Some(value) = value else {
            if self.lexer.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let program = shell_pattern(&pattern)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        Ok(replace(&program, &value, &replacement, all))
    }
}

/// Compiles a `${var#pattern}` pattern: `*` is any run of characters, `?`
/// any one (neither crosses a newline, as in Go's regexp), `\` quotes `*`,
/// `?` and `\`, and is dropped before `}` and `/`.
fn shell_pattern(pattern: &str) -> Result<Program, String> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => tokens.push(Token::Star(CharTest::AnyButNewline)),
            '?' => tokens.push(Token::One(CharTest::AnyButNewline)),
            '\\' => match chars.peek().copied() {
                Some('}') | Some('/') => {}
                Some(n @ ('*' | '?' | '\\')) => {
                    chars.next();
                    tokens.push(Token::One(CharTest::Lit(n)));
                }
                Some(n) => return Err(format!("invalid escape '\\{n}'")),
                None => return Err("invalid escape '\\' at end of pattern".to_string()),
            },
            other => tokens.push(Token::One(CharTest::Lit(other))),
        }
    }
    Ok(Program::new(tokens))
}

fn trim_prefix(program: &Program, value: &str, longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    match program.prefix_match(&chars, longest) {
        Some(len) => chars[len..].iter().collect(),
        None => value.to_string(),
    }
}

fn trim_suffix(program: &Program, value: &str, longest: bool) -> String {
    // The shortest or longest suffix is the shortest or longest prefix of the
    // reversed value under the reversed pattern.
    let reversed: Vec<char> = value.chars().rev().collect();
    match program.reversed().prefix_match(&reversed, longest) {
        Some(len) => reversed[len..].iter().rev().collect(),
        None => value.to_string(),
    }
}

/// `${var/pattern/repl}` and `${var//pattern/repl}` with Go's
/// `Regexp.ReplaceAllString` rules: leftmost matches, an empty match right
/// after a previous match is not replaced, and `$0`/`$name` in the
/// replacement are template references.
fn replace(program: &Program, value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= chars.len() {
        let Some((start, end)) = program.find_leftmost_longest(&chars, search) else {
            break;
        };
        out.extend(&chars[last_end..start]);
        if end > last_end || start == 0 {
            let matched: String = chars[start..end].iter().collect();
            expand_template(&mut out, replacement, &matched);
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
        if !all {
            break;
        }
    }
    out.extend(&chars[last_end.min(chars.len())..]);
    out
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is a dollar,
/// `$0`/`${0}` the match, any other `$name`/`${name}` empty.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(close)
                    if close > 0 && r[..close].chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    (&r[..close], &r[close + 1..])
                }
                _ => {
                    out.push('$');
                    continue;
                }
            }
        } else {
            let len = rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map_or(rest.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
                continue;
            }
            (&rest[..len], &rest[len..])
        };
        if name == "0" {
            out.push_str(matched);
        }
        rest = after;
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(input: &str, vars: &[(&str, &str)]) -> String {
        Lexer::new('\\').process_word(input, &env(vars)).unwrap()
    }

    fn words(input: &str, vars: &[(&str, &str)]) -> Vec<String> {
        Lexer::new('\\').process_words(input, &env(vars)).unwrap()
    }

    fn fails(input: &str, vars: &[(&str, &str)]) -> String {
        Lexer::new('\\')
            .process_word(input, &env(vars))
            .unwrap_err()
            .message
    }

    #[test]
    fn simple_references() {
        let v = [("a", "1"), ("bc", "x y")];
        assert_eq!(word("$a", &v), "1");
        assert_eq!(word("${a}", &v), "1");
        assert_eq!(word("pre${a}post", &v), "pre1post");
        assert_eq!(word("$a$bc", &v), "1x y");
        assert_eq!(word("$unset", &v), "");
        assert_eq!(word("$", &v), "$");
        assert_eq!(word("a$", &v), "a$");
        assert_eq!(word("$/x", &v), "$/x");
        assert_eq!(word("$1", &v), "");
        assert_eq!(word("$a_b", &v), "");
    }

    #[test]
    fn defaults_and_alternatives() {
        let v = [("set", "v"), ("empty", "")];
        assert_eq!(word("${set:-d}", &v), "v");
        assert_eq!(word("${unset:-d}", &v), "d");
        assert_eq!(word("${empty:-d}", &v), "d");
        assert_eq!(word("${empty-d}", &v), "");
        assert_eq!(word("${unset-d}", &v), "d");
        assert_eq!(word("${set:+alt}", &v), "alt");
        assert_eq!(word("${empty:+alt}", &v), "");
        assert_eq!(word("${empty+alt}", &v), "alt");
        assert_eq!(word("${unset+alt}", &v), "");
        assert_eq!(word("${unset:-${set}x}", &v), "vx");
        assert_eq!(word("${unset:-a b}", &v), "a b");
    }

    #[test]
    fn required_values() {
        let v = [("set", "v"), ("empty", "")];
        assert_eq!(word("${set:?oops}", &v), "v");
        assert_eq!(word("${empty?oops}", &v), "");
        assert_eq!(fails("${unset:?must be set}", &v), "unset: must be set");
        assert_eq!(fails("${unset?}", &v), "unset: is not allowed to be unset");
        assert_eq!(fails("${empty:?}", &v), "empty: is not allowed to be empty");
    }

    #[test]
    fn prefix_and_suffix_removal() {
        let v = [("p", "a/b/c.tar.gz")];
        assert_eq!(word("${p#*/}", &v), "b/c.tar.gz");
        assert_eq!(word("${p##*/}", &v), "c.tar.gz");
        assert_eq!(word("${p%.*}", &v), "a/b/c.tar");
        assert_eq!(word("${p%%.*}", &v), "a/b/c");
        assert_eq!(word("${p#x}", &v), "a/b/c.tar.gz");
        assert_eq!(word("${p%?z}", &v), "a/b/c.tar.");
        assert_eq!(word("${unset#x}", &v), "");
        let star = [("s", "a*b*c")];
        assert_eq!(word("${s#*\\*}", &star), "b*c");
        assert_eq!(
            fails("${p:#x}", &v),
            "unsupported modifier (:#) in substitution"
        );
        assert!(fails("${p#\\x}", &v).contains("invalid escape"));
    }

    #[test]
    fn replacement() {
        let v = [("v", "aXbXc"), ("path", "/usr/local/bin")];
        assert_eq!(word("${v/X/-}", &v), "a-bXc");
        assert_eq!(word("${v//X/-}", &v), "a-b-c");
        // Unlike bash, BuildKit insists on the second slash.
        assert_eq!(fails("${v//X}", &v), "syntax error: missing '/' in ${}");
        assert_eq!(word("${v//X/}", &v), "abc");
        assert_eq!(word("${path//\\//:}", &v), ":usr:local:bin");
        assert_eq!(word("${v/X*/}", &v), "a");
        assert_eq!(word("${v/Y/z}", &v), "aXbXc");
        assert_eq!(word("${unset/a/b}", &v), "");
        assert_eq!(fails("${v/X", &v), "syntax error: missing '/' in ${}");
    }

    #[test]
    fn quoting_and_escapes() {
        let v = [("a", "1")];
        assert_eq!(word("'$a'", &v), "$a");
        assert_eq!(word("\"$a\"", &v), "1");
        assert_eq!(word("\\$a", &v), "$a");
        assert_eq!(word("\"\\$a\"", &v), "$a");
        assert_eq!(word("\"a\\nb\"", &v), "a\\nb");
        assert_eq!(word("\"q\\\"q\"", &v), "q\"q");
        assert_eq!(word("'a'\\''b'", &v), "a'b");
        assert_eq!(word("a\\ b", &v), "a b");
        assert_eq!(word("trailing\\", &v), "trailing");
        let backtick = Lexer::new('`');
        assert_eq!(
            backtick.process_word("C:\\path `$a", &env(&v)).unwrap(),
            "C:\\path $a"
        );
    }

    #[test]
    fn splitting() {
        let v = [("two", "x y"), ("empty", "")];
        assert_eq!(words("a b  c", &v), ["a", "b", "c"]);
        assert_eq!(words("$two z", &v), ["x", "y", "z"]);
        assert_eq!(words("\"$two\" z", &v), ["x y", "z"]);
        assert_eq!(words("'a b' c\\ d", &v), ["a b", "c d"]);
        assert_eq!(words("$empty", &v), Vec::<String>::new());
        assert_eq!(words("pre${two}", &v), ["prex", "y"]);
    }

    #[test]
    fn syntax_errors() {
        let v = [("a", "1")];
        assert_eq!(fails("${", &v), "syntax error: missing '}'");
        assert_eq!(fails("${a", &v), "syntax error: missing '}'");
        assert_eq!(fails("${}", &v), "syntax error: bad substitution");
        assert_eq!(fails("${:a}", &v), "syntax error: bad substitution");
        assert_eq!(fails("${a:-x", &v), "syntax error: missing '}'");
        assert_eq!(
            fails("${a!}", &v),
            "unsupported modifier (!) in substitution"
        );
        assert_eq!(
            fails("${a:x}", &v),
            "unsupported modifier (:x) in substitution"
        );
        assert!(fails("'open", &v).contains("single-quote"));
        assert!(fails("\"open", &v).contains("double-quote"));
    }

    #[test]
    fn matched_and_unmatched_are_reported() {
        let e = Lexer::new('\\')
            .process("$a ${b:-x} ${c}", &env(&[("a", "1")]))
            .unwrap();
        assert!(e.matched.contains("a"));
        assert!(e.unmatched.contains("b"));
        assert!(e.unmatched.contains("c"));
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut lx = Lexer::new('\\');
        lx.skip_unset = true;
        let v = env(&[("a", "1")]);
        assert_eq!(
            lx.process_word("$a $b ${c} ${d:-x}", &v).unwrap(),
            "1 $b ${c} ${d:-x}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "${a:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(fails(&deep, &[]).contains("nested too deeply"));
    }

    #[test]
    fn newline_is_not_matched_by_star() {
        let v = [("m", "a\nb")];
        assert_eq!(word("${m##*}", &v), "\nb");
    }
}
