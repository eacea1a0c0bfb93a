//! A small automaton for the wildcard patterns that Dockerfiles and
//! `.dockerignore` files use. BuildKit and docker translate these patterns to
//! Go regular expressions; we compile them to the same token sequence and run
//! it as a set-of-states simulation, so that matching costs at most
//! O(text length × pattern length) whatever the pattern — no backtracking.
//!
//! Go's `.` does not match a newline while negated classes do; the tests keep
//! us faithful to that.

/// One character test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CharTest {
    Lit(char),
    /// Go's `.`: anything but a newline.
    AnyButNewline,
    /// `[^/]`: anything but a slash (newlines included).
    NotSlash,
    Class(Class),
}

/// A bracket expression: `[a-z]`, `[^abc]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Class {
    pub negated: bool,
    pub ranges: Vec<(char, char)>,
}

impl CharTest {
    fn matches(&self, c: char) -> bool {
        match self {
            CharTest::Lit(l) => *l == c,
            CharTest::AnyButNewline => c != '\n',
            CharTest::NotSlash => c != '/',
            CharTest::Class(class) => {
                let inside = class.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                inside != class.negated
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// Exactly one character passing the test.
    One(CharTest),
    /// Zero or more characters passing the test.
    Star(CharTest),
    /// `(.*/)?`: nothing, or any run of characters ending in a slash.
    OptionalDirs,
    /// `^` in the middle of a pattern: only matches at the start of the text.
    StartOfText,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Program {
    pub tokens: Vec<Token>,
}

/// The live states of a simulation: `0..=n` are positions in the token list
/// (`n` accepts); `n + 1 + i` is "inside the `.*` of the OptionalDirs at i".
struct States {
    live: Vec<bool>,
    next: Vec<bool>,
}

impl Program {
    pub fn new(tokens: Vec<Token>) -> Self {
        Program { tokens }
    }

    /// The program matching the reversed language, used to find shortest or
    /// longest suffixes by scanning the reversed text.
    pub fn reversed(&self) -> Program {
        let mut tokens = self.tokens.clone();
        tokens.reverse();
        Program { tokens }
    }

    fn accept(&self) -> usize {
        self.tokens.len()
    }

    fn new_states(&self) -> States {
        let size = 2 * self.tokens.len() + 1;
        States {
            live: vec![false; size],
            next: vec![false; size],
        }
    }

    /// Follows the epsilon edges; they all point forward, so one ascending
    /// pass reaches the closure.
    fn close(&self, set: &mut [bool], at_start: bool) {
        for i in 0..self.tokens.len() {
            if !set[i] {
                continue;
            }
            match &self.tokens[i] {
                Token::Star(_) | Token::OptionalDirs => set[i + 1] = true,
                Token::StartOfText if at_start => set[i + 1] = true,
                _ => {}
            }
        }
    }

    fn step(&self, states: &mut States, c: char) -> bool {
        let n = self.tokens.len();
        states.next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for i in 0..n {
            let inner = n + 1 + i;
            let at_token = states.live[i];
            let in_dirs = states.live[inner];
            if !at_token && !in_dirs {
                continue;
            }
            match &self.tokens[i] {
                Token::One(test) if at_token && test.matches(c) => {
                    states.next[i + 1] = true;
                    any = true;
                }
                Token::Star(test) if at_token && test.matches(c) => {
                    states.next[i] = true;
                    any = true;
                }
                Token::OptionalDirs => {
                    if c != '\n' {
                        states.next[inner] = true;
                        any = true;
                    }
                    if c == '/' {
                        states.next[i + 1] = true;
                    }
                }
                _ => {}
            }
        }
        std::mem::swap(&mut states.live, &mut states.next);
        self.close(&mut states.live, false);
        any || states.live[n]
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let mut states = self.new_states();
        states.live[0] = true;
        self.close(&mut states.live, true);
        for c in text.chars() {
            if !self.step(&mut states, c) && !states.live.iter().any(|&s| s) {
                return false;
            }
        }
        states.live[self.accept()]
    }

    /// Every `end` such that `text[start..end]` matches, scanning forward from
    /// `start`; calls `found` for each in increasing order.
    fn match_ends_from(&self, text: &[char], start: usize, mut found: impl FnMut(usize)) {
        let mut states = self.new_states();
        states.live[0] = true;
        self.close(&mut states.live, start == 0);
        if states.live[self.accept()] {
            found(start);
        }
        for (offset, &c) in text[start..].iter().enumerate() {
            self.step(&mut states, c);
            if states.live[self.accept()] {
                found(start + offset + 1);
            }
            if !states.live.iter().any(|&s| s) {
                return;
            }
        }
    }

    /// The shortest (`longest == false`) or longest prefix of `text` that
    /// matches, as a length in chars.
    pub fn prefix_match(&self, text: &[char], longest: bool) -> Option<usize> {
        let mut best = None;
        self.match_ends_from(text, 0, |end| {
            if best.is_none() || longest {
                best = Some(end);
            }
        });
        best
    }

    /// The leftmost match at or after `from`, extended as far as it goes (Go's
    /// leftmost-first search with greedy stars): `(start, end)` in chars.
    ///
    /// One pass over the text: every live state carries the earliest start
    /// that reaches it (a later start in the same state can match nothing
    /// the earlier one cannot), a new start is seeded at each position until
    /// a match is found, and the pass ends when no thread can still improve
    /// on the best match.
    pub fn find_leftmost_longest(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        let n = self.tokens.len();
        let mut live: Vec<Option<usize>> = vec![None; 2 * n + 1];
        let mut next: Vec<Option<usize>> = vec![None; 2 * n + 1];
        let mut best: Option<(usize, usize)> = None;
        let mut pos = from;
        loop {
            if best.is_none() {
                keep_min(&mut live[0], pos);
            }
            for i in 0..n {
                let Some(start) = live[i] else { continue };
                match &self.tokens[i] {
                    Token::Star(_) | Token::OptionalDirs => keep_min(&mut live[i + 1], start),
                    Token::StartOfText if pos == 0 => keep_min(&mut live[i + 1], start),
                    _ => {}
                }
            }
            if let Some(start) = live[n] {
                best = match best {
                    Some((b, _)) if b < start => best,
                    _ => Some((start, pos)),
                };
            }
            if let Some((b, _)) = best {
                for slot in live.iter_mut() {
                    if slot.is_some_and(|s| s > b) {
                        *slot = None;
                    }
                }
                if live.iter().all(Option::is_none) {
                    break;
                }
            }
            if pos >= text.len() {
                break;
            }
            let c = text[pos];
            next.iter_mut().for_each(|s| *s = None);
            for i in 0..n {
                let inner = n + 1 + i;
                match &self.tokens[i] {
                    Token::One(test) => {
                        if let Some(start) = live[i]
                            && test.matches(c)
                        {
                            keep_min(&mut next[i + 1], start);
                        }
                    }
                    Token::Star(test) => {
                        if let Some(start) = live[i]
                            && test.matches(c)
                        {
                            keep_min(&mut next[i], start);
                        }
                    }
                    Token::OptionalDirs => {
                        for start in [live[i], live[inner]].into_iter().flatten() {
                            if c != '\n' {
                                keep_min(&mut next[inner], start);
                            }
                            if c == '/' {
                                keep_min(&mut next[i + 1], start);
                            }
                        }
                    }
                    Token::StartOfText => {}
                }
            }
            std::mem::swap(&mut live, &mut next);
            pos += 1;
        }
        best
    }
}

fn keep_min(slot: &mut Option<usize>, start: usize) {
    if slot.is_none_or(|s| start < s) {
        *slot = Some(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Vec<Token> {
        s.chars().map(|c| Token::One(CharTest::Lit(c))).collect()
    }

    #[test]
    fn literal_and_stars() {
        let mut toks = lit("a");
        toks.push(Token::Star(CharTest::NotSlash));
        toks.extend(lit(".go"));
        let p = Program::new(toks);
        assert!(p.matches("a.go"));
        assert!(p.matches("abc.go"));
        assert!(!p.matches("a/b.go"));
        assert!(!p.matches("a.got"));
    }

    #[test]
    fn optional_dirs() {
        let mut toks = vec![Token::OptionalDirs];
        toks.extend(lit("x"));
        let p = Program::new(toks);
        assert!(p.matches("x"));
        assert!(p.matches("a/x"));
        assert!(p.matches("a/b/c/x"));
        assert!(p.matches("/x"));
        assert!(!p.matches("ax"));
    }

    #[test]
    fn prefixes() {
        // "*/" against "a/b/c"
        let mut toks = vec![Token::Star(CharTest::AnyButNewline)];
        toks.extend(lit("/"));
        let p = Program::new(toks);
        let text: Vec<char> = "a/b/c".chars().collect();
        assert_eq!(p.prefix_match(&text, false), Some(2));
        assert_eq!(p.prefix_match(&text, true), Some(4));
        let none: Vec<char> = "abc".chars().collect();
        assert_eq!(p.prefix_match(&none, false), None);
    }

    #[test]
    fn leftmost_longest() {
        let mut toks = lit("b");
        toks.push(Token::Star(CharTest::AnyButNewline));
        toks.extend(lit("d"));
        let p = Program::new(toks);
        let text: Vec<char> = "abcdbd".chars().collect();
        assert_eq!(p.find_leftmost_longest(&text, 0), Some((1, 6)));
        assert_eq!(p.find_leftmost_longest(&text, 2), Some((4, 6)));
    }

    #[test]
    fn dot_stops_at_newline() {
        let p = Program::new(vec![Token::Star(CharTest::AnyButNewline)]);
        let text: Vec<char> = "ab\ncd".chars().collect();
        assert_eq!(p.prefix_match(&text, true), Some(2));
    }

    #[test]
    fn classes() {
        let class = Class {
            negated: false,
            ranges: vec![('a', 'c'), ('x', 'x')],
        };
        let p = Program::new(vec![Token::One(CharTest::Class(class))]);
        assert!(p.matches("b"));
        assert!(p.matches("x"));
        assert!(!p.matches("d"));
        let neg = Class {
            negated: true,
            ranges: vec![('a', 'a')],
        };
        let p = Program::new(vec![Token::One(CharTest::Class(neg))]);
        assert!(p.matches("/"));
        assert!(!p.matches("a"));
    }

    #[test]
    fn start_of_text() {
        let mut toks = vec![Token::StartOfText];
        toks.extend(lit("a"));
        let p = Program::new(toks.clone());
        assert!(p.matches("a"));
        let mut mid = lit("a");
        mid.extend(toks);
        assert!(!Program::new(mid).matches("aa"));
    }
}
