//! "Did you mean …?" suggestions for misspelt flags, instructions, stage
//! names and build arguments.

/// The closest candidate to `typed`, if it is close enough to be a plausible
/// typo (an edit distance of at most 2, and less than the word's length, so
/// that `--x` does not suggest `--from`).
pub(crate) fn closest<'a, I>(typed: &str, candidates: I, case_sensitive: bool) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    // Long words are never typos of our short keywords; skipping them keeps
    // the quadratic distance computation bounded on hostile input.
    if typed.is_empty() || typed.len() > 64 {
        return None;
    }
    let norm = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let typed_norm = norm(typed);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate.len() > 64 {
            continue;
        }
        let dist = levenshtein(&typed_norm, &norm(candidate));
        if dist == 0 {
            continue;
        }
        if dist <= 2 && dist < typed.chars().count() && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, candidate));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Edit distance (insertions, deletions, substitutions) between two strings,
/// counted in chars.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(levenshtein("chwon", "chown"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_close_words_only() {
        let flags = ["chown", "chmod", "from", "link"];
        assert_eq!(closest("chwon", flags, true).as_deref(), Some("chown"));
        assert_eq!(closest("frm", flags, true).as_deref(), Some("from"));
        assert_eq!(closest("x", flags, true), None);
        assert_eq!(closest("platform", flags, true), None);
        assert_eq!(
            closest("COPPY", ["copy", "cmd"], false).as_deref(),
            Some("copy")
        );
    }
}
