//! `.dockerignore` with the semantics of docker's `patternmatcher` and
//! `ignorefile` packages:
//!
//! - lines starting with `#` are comments; blank lines are skipped; each
//!   pattern is trimmed, cleaned like Go's `filepath.Clean` (so `./a` is
//!   `a`, `a/../b` is `b`), and a leading `/` is dropped — patterns are
//!   relative to the context root;
//! - `!pattern` re-includes what earlier patterns excluded; patterns apply
//!   in order and the last one that matches wins;
//! - syntax is Go's `filepath.Match` (`*`, `?`, `[a-z]`, `[^a]`, `\`
//!   escapes) plus `**`, which matches any number of directories;
//! - a path is excluded if it or any of its parent directories matches;
//! - `<Dockerfile>.dockerignore` next to a named Dockerfile takes the place
//!   of the context's `.dockerignore` ([`ignore_file_for`]);
//! - the Dockerfile and `.dockerignore` themselves are still read by the
//!   builder when ignored, but never copied into images
//!   ([`Dockerignore::with_build_files_kept`]).
//!
//! Patterns are compiled to the same automaton the Dockerfile expander
//! uses, so matching is linear in the path for a given pattern.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::glob::{CharTest, Class, Program, Token};

#[derive(Debug, Error)]
pub enum DockerignoreError {
    #[error("{file}: line {line}: syntax error in pattern {pattern:?}")]
    BadPattern {
        file: String,
        line: usize,
        pattern: String,
    },
    #[error("{file}: line {line}: illegal exclusion pattern: \"!\"")]
    LoneExclamation { file: String, line: usize },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum MatchKind {
    Exact,
    /// `dir/**`: anything starting with the text before `**`.
    Prefix(String),
    /// `**/name` and friends: anything ending with the text after `**`.
    Suffix(String),
    Program(Program),
}

/// One cleaned pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// The cleaned pattern without its `!`.
    pub text: String,
    pub exclusion: bool,
    kind: MatchKind,
}

impl Pattern {
    fn compile(text: &str, exclusion: bool) -> Result<Pattern, ()> {
        validate(text)?;
        let mut tokens = Vec::new();
        let mut kind = MatchKindSeed::Exact;
        let mut chars = text.chars().peekable();
        let mut first = true;
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        if kind == MatchKindSeed::Exact {
                            kind = MatchKindSeed::Prefix;
                        } else {
                            tokens.push(Token::Star(CharTest::AnyButNewline));
                            kind = MatchKindSeed::Program;
                        }
                    } else {
                        tokens.push(Token::OptionalDirs);
                        kind = MatchKindSeed::Program;
                    }
                    if first {
                        kind = MatchKindSeed::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star(CharTest::NotSlash));
                    kind = MatchKindSeed::Program;
                }
                '?' => {
                    tokens.push(Token::One(CharTest::NotSlash));
                    kind = MatchKindSeed::Program;
                }
                '\\' => match chars.next() {
                    Some(escaped) => {
                        tokens.push(Token::One(CharTest::Lit(escaped)));
                        kind = MatchKindSeed::Program;
                    }
                    None => tokens.push(Token::One(CharTest::Lit('\\'))),
                },
                '[' => {
                    tokens.push(Token::One(CharTest::Class(parse_class(&mut chars)?)));
                    kind = MatchKindSeed::Program;
                }
                ']' => {
                    tokens.push(Token::One(CharTest::Lit(']')));
                    kind = MatchKindSeed::Program;
                }
                // In the regular expression docker builds, `^` is an anchor.
                '^' => tokens.push(Token::StartOfText),
                other => tokens.push(Token::One(CharTest::Lit(other))),
            }
            first = false;
        }
        let kind = match kind {
            MatchKindSeed::Exact => MatchKind::Exact,
            MatchKindSeed::Prefix => MatchKind::Prefix(text[..text.len() - 2].to_string()),
            MatchKindSeed::Suffix => MatchKind::Suffix(text[2..].to_string()),
            MatchKindSeed::Program => MatchKind::Program(Program::new(tokens)),
        };
        Ok(Pattern {
            text: text.to_string(),
            exclusion,
            kind,
        })
    }

    /// Whether this pattern matches `path` itself (no parent directories).
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Program(p) => p.matches(path),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKindSeed {
    Exact,
    Prefix,
    Suffix,
    Program,
}

/// Reads a bracket expression after its `[`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Class, ()> {
    let mut negated = false;
    if chars.peek() == Some(&'^') {
        chars.next();
        negated = true;
    }
    let mut ranges = Vec::new();
    loop {
        let lo = match chars.next() {
            None => return Err(()),
            Some(']') if !ranges.is_empty() => break,
            Some('\\') => chars.next().ok_or(())?,
            Some(c) => c,
        };
        let mut hi = lo;
        if chars.peek() == Some(&'-') {
            chars.next();
            hi = match chars.next() {
                None => return Err(()),
                Some('\\') => chars.next().ok_or(())?,
                Some(c) => c,
            };
        }
        ranges.push((lo, hi));
    }
    Ok(Class { negated, ranges })
}

/// Go's `filepath.Match` syntax check: brackets closed and not empty, ranges
/// with both ends, no trailing `\`.
fn validate(pattern: &str) -> Result<(), ()> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next().ok_or(())?;
            }
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut items = 0;
                loop {
                    let c = chars.next().ok_or(())?;
                    if c == ']' && items > 0 {
                        break;
                    }
                    let lo = match c {
                        '-' | ']' => return Err(()),
                        '\\' => chars.next().ok_or(())?,
                        c => c,
                    };
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        let hi = match chars.next().ok_or(())? {
                            '-' | ']' => return Err(()),
                            '\\' => chars.next().ok_or(())?,
                            c => c,
                        };
                        if hi < lo {
                            return Err(());
                        }
                    }
                    items += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

/// docker's `ignorefile.ReadAll`: the pattern lines of a `.dockerignore`,
/// normalised, each with its line number.
pub fn read_patterns(contents: &str) -> Vec<(usize, String)> {
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    let mut out = Vec::new();
    for (index, line) in contents.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1
                && let Some(rest) = cleaned.strip_prefix('/')
            {
                cleaned = rest.to_string();
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        out.push((index + 1, cleaned));
    }
    out
}

impl Dockerignore {
    /// Parses the contents of a `.dockerignore`; `file` names it in errors.
    pub fn parse(contents: &str, file: &str) -> Result<Dockerignore, DockerignoreError> {
        Self::from_numbered(read_patterns(contents), file)
    }

    /// Compiles patterns already normalised (docker's `patternmatcher.New`).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Dockerignore, DockerignoreError> {
        let numbered = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.as_ref().to_string()))
            .collect();
        Self::from_numbered(numbered, "patterns")
    }

    fn from_numbered(
        patterns: Vec<(usize, String)>,
        file: &str,
    ) -> Result<Dockerignore, DockerignoreError> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for (line, raw) in patterns {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean_path(trimmed);
            let (exclusion, text) = match cleaned.strip_prefix('!') {
                Some("") => {
                    return Err(DockerignoreError::LoneExclamation {
                        file: file.to_string(),
                        line,
                    });
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            let pattern =
                Pattern::compile(&text, exclusion).map_err(|()| DockerignoreError::BadPattern {
                    file: file.to_string(),
                    line,
                    pattern: raw.clone(),
                })?;
            compiled.push(pattern);
        }
        Ok(Dockerignore { patterns: compiled })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is an exception (`!…`); a walker can then not
    /// skip an excluded directory wholesale.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether the context path (slash-separated, relative to the context
    /// root) is excluded: docker's `MatchesOrParentMatches`. The context
    /// root itself is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let file = clean_path(path.trim_start_matches('/'));
        if file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&file);
            if !hit {
                let mut prefix = String::new();
                for (i, dir) in parents.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if pattern.matches(&prefix) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// The matcher the builder reads the context with: docker's
    /// `TrimBuildFilesFromExcludes`, which re-includes `.dockerignore` and
    /// the Dockerfile (path relative to the context) when patterns exclude
    /// them. COPY and ADD must still use the original matcher, so that an
    /// ignored Dockerfile is not copied into the image.
    pub fn with_build_files_kept(&self, dockerfile: &str) -> Dockerignore {
        let mut kept = self.clone();
        for name in [".dockerignore", dockerfile] {
            let name = clean_path(name);
            if self.is_excluded(&name)
                && let Ok(p) = Pattern::compile(&name, true)
            {
                kept.patterns.push(p);
            }
        }
        kept
    }
}

/// Which ignore file applies: `<Dockerfile>.dockerignore` beside the
/// Dockerfile if it exists, else `.dockerignore` at the context root (if
/// that exists).
pub fn ignore_file_for(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    if let Some(df) = dockerfile {
        let df = if df.is_absolute() {
            df.to_path_buf()
        } else {
            context.join(df)
        };
        if let Some(name) = df.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            let candidate = df.with_file_name(specific);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let default = context.join(".dockerignore");
    default.is_file().then_some(default)
}

/// Loads the ignore file that applies to a build (or an empty matcher).
pub fn load(context: &Path, dockerfile: Option<&Path>) -> Result<Dockerignore, DockerignoreError> {
    let Some(path) = ignore_file_for(context, dockerfile) else {
        return Ok(Dockerignore::default());
    };
    let bytes = std::fs::read(&path).map_err(|source| DockerignoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Dockerignore::parse(
        &String::from_utf8_lossy(&bytes),
        &path.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(lines: &str) -> Dockerignore {
        Dockerignore::parse(lines, ".dockerignore").unwrap()
    }

    #[test]
    fn reads_like_docker() {
        let got: Vec<String> = read_patterns(
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n ./x/../y\n",
        )
        .into_iter()
        .map(|(_, p)| p)
        .collect();
        assert_eq!(
            got,
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "!",
                "!",
                "y"
            ]
        );
        assert!(matches!(
            Dockerignore::parse("!\n", "x"),
            Err(DockerignoreError::LoneExclamation { line: 1, .. })
        ));
    }

    #[test]
    fn comments_need_a_hash_in_column_one() {
        let d = ignore(" #notacomment\n#comment");
        assert!(d.is_excluded("#notacomment"));
        assert!(!d.is_excluded("comment"));
    }

    #[test]
    fn clean() {
        assert_eq!(clean_path("./a/b/../c/"), "a/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("a/.."), ".");
    }

    #[test]
    fn globs() {
        let d = ignore("*.md\n!README.md\ntemp?\nbuild/\n**/*.o\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(!d.is_excluded("docs/x.md"), "* does not cross directories");
        assert!(d.is_excluded("temp1"));
        assert!(!d.is_excluded("temp12"));
        assert!(d.is_excluded("build"));
        assert!(d.is_excluded("build/out/bin"), "parent directory matches");
        assert!(d.is_excluded("a/b/c.o"));
        assert!(d.is_excluded("c.o"));
        assert!(!d.is_excluded("src/main.rs"));
    }

    #[test]
    fn double_star_forms() {
        let d = ignore("**/node_modules");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("a/b/node_modules/x/y"));
        let d = ignore("logs/**");
        assert!(d.is_excluded("logs/a/b"));
        assert!(!d.is_excluded("logs"));
        let d = ignore("**");
        assert!(d.is_excluded("anything/at/all"));
        let d = ignore("a/**/b");
        assert!(d.is_excluded("a/b"));
        assert!(d.is_excluded("a/x/y/b"));
        assert!(!d.is_excluded("a/xb"));
    }

    #[test]
    fn exceptions_in_order() {
        let d = ignore("*\n!src\nsrc/secret.txt\n");
        assert!(d.is_excluded("Makefile"));
        assert!(!d.is_excluded("src/main.go"));
        assert!(d.is_excluded("src/secret.txt"));
        let d = ignore("!keep\n*");
        assert!(d.is_excluded("keep"), "later patterns win");
    }

    #[test]
    fn classes_and_escapes() {
        let d = ignore("file[0-9].txt\n[^a]x\n\\*star");
        assert!(d.is_excluded("file7.txt"));
        assert!(!d.is_excluded("filex.txt"));
        assert!(d.is_excluded("bx"));
        assert!(!d.is_excluded("ax"));
        assert!(d.is_excluded("*star"));
        assert!(!d.is_excluded("xstar"));
        assert!(matches!(
            Dockerignore::parse("a[", "f"),
            Err(DockerignoreError::BadPattern { .. })
        ));
        assert!(Dockerignore::parse("[]", "f").is_err());
        assert!(Dockerignore::parse("a\\", "f").is_err());
    }

    #[test]
    fn leading_slash_and_dot() {
        let d = ignore("/secret\n./tmp/*.log");
        assert!(d.is_excluded("secret"));
        assert!(d.is_excluded("/secret"));
        assert!(d.is_excluded("tmp/a.log"));
        assert!(d.is_excluded("./tmp/a.log"));
        assert!(!d.is_excluded("."));
    }

    #[test]
    fn build_files_are_kept_for_reading() {
        let d = ignore("*\n");
        assert!(d.is_excluded("Dockerfile"));
        let kept = d.with_build_files_kept("Dockerfile");
        assert!(!kept.is_excluded("Dockerfile"));
        assert!(!kept.is_excluded(".dockerignore"));
        assert!(kept.is_excluded("src"));
    }

    #[test]
    fn named_dockerfile_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::create_dir(dir.path().join("build")).unwrap();
        std::fs::write(dir.path().join("build/app.Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(dir.path().join("build/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let d = load(dir.path(), Some(Path::new("build/app.Dockerfile"))).unwrap();
        assert!(d.is_excluded("b") && !d.is_excluded("a"));
        let d = load(dir.path(), Some(Path::new("Dockerfile"))).unwrap();
        assert!(d.is_excluded("a") && !d.is_excluded("b"));
        let d = load(dir.path(), None).unwrap();
        assert!(d.is_excluded("a"));
    }
}
