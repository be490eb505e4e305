//! IAM wildcard globs: `*` matches any sequence (including the empty one),
//! `?` matches exactly one character. Everything else is literal.
//!
//! Besides plain matching, blast-radius computation needs to reason about
//! requests that are themselves patterns, so this module also answers
//! "does glob A cover every string of glob B" ([`covers`]) and "do globs A and
//! B share a string" ([`overlaps`]). All three run in O(n*m) time.

use std::borrow::Cow;

/// One symbol of a glob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
}

/// Lowercases when comparing case-insensitively. Whole-string lowering (not
/// per char) keeps multi-char lowercase expansions consistent on both sides.
fn fold(s: &str, ci: bool) -> Cow<'_, str> {
    if ci {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Parses a glob into tokens (no normalisation).
pub(crate) fn tokenize(s: &str, ci: bool) -> Vec<Tok> {
    fold(s, ci)
        .chars()
        .map(|c| match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        })
        .collect()
}

/// Rewrites every run of wildcards into `?`…`?` followed by at most one `*`.
/// The language is unchanged (a run means "at least k characters", or
/// "exactly k" without a star), but canonical runs let [`covers`] see that
/// e.g. `*?` covers `?*`.
pub(crate) fn normalize(toks: &[Tok]) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if let Tok::Lit(c) = toks[i] {
            out.push(Tok::Lit(c));
            i += 1;
            continue;
        }
        let (mut ones, mut star) = (0usize, false);
        while let Some(&t) = toks.get(i) {
            match t {
                Tok::One => ones += 1,
                Tok::Star => star = true,
                Tok::Lit(_) => break,
            }
            i += 1;
        }
        out.extend(std::iter::repeat_n(Tok::One, ones));
        if star {
            out.push(Tok::Star);
        }
    }
    out
}

/// Whether a single non-star pattern token absorbs a single subject token.
/// `?` absorbs a literal or another `?`, never a `*` (a `*` may stand for zero
/// or several characters).
fn absorbs(pat: Tok, subject: Tok) -> bool {
    match (pat, subject) {
        (Tok::Lit(a), Tok::Lit(b)) => a == b,
        (Tok::One, Tok::Lit(_) | Tok::One) => true,
        _ => false,
    }
}

/// Classic wildcard DP where the subject is a token sequence: a pattern `*`
/// absorbs any run of subject tokens (wildcards included), other pattern
/// tokens absorb one subject token via [`absorbs`]. Two rows, O(n*m).
fn accepts(pat: &[Tok], subject: &[Tok]) -> bool {
    let m = subject.len();
    // prev[j]: pat[..i] accepts subject[..j].
    let mut prev = vec![false; m + 1];
    prev[0] = true;
    let mut cur = vec![false; m + 1];
    for &p in pat {
        if p == Tok::Star {
            cur[0] = prev[0];
            for j in 1..=m {
                cur[j] = prev[j] || cur[j - 1];
            }
        } else {
            cur[0] = false;
            for j in 1..=m {
                cur[j] = prev[j - 1] && absorbs(p, subject[j - 1]);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// `text` (taken literally: `*` and `?` in it are ordinary characters) matches
/// glob `pattern`.
pub fn matches(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let pat = tokenize(pattern, case_insensitive);
    let subject: Vec<Tok> = fold(text, case_insensitive).chars().map(Tok::Lit).collect();
    accepts(&pat, &subject)
}

/// Every concrete string matched by glob `request` is matched by glob
/// `pattern`.
///
/// Sound but not complete: `true` is always right; a `false` can be wrong only
/// when inclusion needs reasoning across several wildcards at once (exact glob
/// inclusion with `?` is coNP-hard, so no O(n*m) algorithm is complete). For
/// a literal `request` it is exactly [`matches`].
pub fn covers(pattern: &str, request: &str, ci: bool) -> bool {
    covers_toks(&tokenize(pattern, ci), &tokenize(request, ci))
}

pub(crate) fn covers_toks(pattern: &[Tok], request: &[Tok]) -> bool {
    // Exact shortcuts for the shapes IAM policies are mostly made of.
    if all_literal(pattern) {
        return pattern == request;
    }
    if let Some(prefix) = literal_then_star(pattern) {
        return request.starts_with(prefix);
    }
    accepts(&normalize(pattern), &normalize(request))
}

fn all_literal(t: &[Tok]) -> bool {
    t.iter().all(|x| matches!(x, Tok::Lit(_)))
}

/// Some concrete string matches both globs. Exact.
pub fn overlaps(a: &str, b: &str, ci: bool) -> bool {
    overlaps_toks(&tokenize(a, ci), &tokenize(b, ci))
}

/// Reachability in the product of the two globs' automata. State (i, j) means
/// `a[..i]` and `b[..j]` have generated the same string; every move increases
/// i or j, so one row-major sweep settles everything.
pub(crate) fn overlaps_toks(a: &[Tok], b: &[Tok]) -> bool {
    // Most pairs (two ARNs of different services or buckets) differ in a literal prefix or
    // suffix: settle those without the table.
    if literal_edges_differ(a.iter(), b.iter())
        || literal_edges_differ(a.iter().rev(), b.iter().rev())
    {
        return false;
    }
    // Exact names (an action, a table ARN) against themselves are the common case.
    if all_literal(a) && all_literal(b) {
        return a == b;
    }
    // IAM patterns are mostly `literal*` (`s3:Get*`, `arn:aws:s3:::*`): decided in one pass.
    if let Some(prefix) = literal_then_star(a) {
        return prefix_overlaps(prefix, b);
    }
    if let Some(prefix) = literal_then_star(b) {
        return prefix_overlaps(prefix, a);
    }
    let (n, m) = (a.len(), b.len());
    // Two rolling rows: every move goes right in this row or into the next one.
    let mut row = vec![false; m + 1];
    let mut next = vec![false; m + 1];
    row[0] = true;
    for i in 0..=n {
        let ta = a.get(i).copied();
        for j in 0..=m {
            if !row[j] {
                continue;
            }
            let tb = b.get(j).copied();
            // A star may generate nothing.
            if ta == Some(Tok::Star) {
                next[j] = true;
            }
            if tb == Some(Tok::Star) && j < m {
                row[j + 1] = true;
            }
            // Both sides generate one common character; a star stays put.
            if let (Some(x), Some(y)) = (ta, tb) {
                let compatible = match (x, y) {
                    (Tok::Lit(c), Tok::Lit(d)) => c == d,
                    _ => true,
                };
                if compatible {
                    match (x == Tok::Star, y == Tok::Star) {
                        (true, true) => {}
                        (true, false) => row[j + 1] = true,
                        (false, true) => next[j] = true,
                        (false, false) => next[j + 1] = true,
                    }
                }
            }
        }
        if i == n {
            return row[m];
        }
        std::mem::swap(&mut row, &mut next);
        next.iter_mut().for_each(|c| *c = false);
    }
    false
}

/// `Some(prefix)` when `t` is literal characters followed by one trailing `*`.
fn literal_then_star(t: &[Tok]) -> Option<&[Tok]> {
    let (last, prefix) = t.split_last()?;
    (*last == Tok::Star && all_literal(prefix)).then_some(prefix)
}

/// Whether `prefix*` and `other` share a string: `other` must agree with the prefix until it
/// ends it (a `*` in `other` can produce the rest of the prefix); the trailing `*` takes the rest.
fn prefix_overlaps(prefix: &[Tok], other: &[Tok]) -> bool {
    for (i, p) in prefix.iter().enumerate() {
        match other.get(i) {
            None => return false,
            Some(Tok::Star) => return true,
            Some(Tok::One) => {}
            Some(lit) => {
                if lit != p {
                    return false;
                }
            }
        }
    }
    true
}

/// Whether the literal runs at one end of `a` and `b` disagree before either reaches a wildcard
/// (then no string matches both).
fn literal_edges_differ<'t>(
    a: impl Iterator<Item = &'t Tok>,
    b: impl Iterator<Item = &'t Tok>,
) -> bool {
    for (x, y) in a.zip(b) {
        match (x, y) {
            (Tok::Lit(c), Tok::Lit(d)) if c != d => return true,
            (Tok::Lit(_), Tok::Lit(_)) => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference matcher: plain backtracking, fine for tiny inputs.
    fn naive(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|k| naive(rest, &t[k..])),
            Some(('?', rest)) => !t.is_empty() && naive(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && naive(rest, &t[1..]),
        }
    }

    fn naive_str(p: &str, t: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let t: Vec<char> = t.chars().collect();
        naive(&p, &t)
    }

    /// All strings over {a, b} of length <= max_len.
    fn texts(max_len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for s in &frontier {
                for c in ['a', 'b'] {
                    next.push(format!("{s}{c}"));
                }
            }
            all.extend(next.iter().cloned());
            frontier = next;
        }
        all
    }

    #[test]
    fn matches_basics() {
        assert!(matches("s3:Get*", "s3:GetObject", false));
        assert!(matches("*", "", false));
        assert!(matches("a?c", "abc", false));
        assert!(!matches("a?c", "ac", false));
        assert!(!matches("s3:get*", "s3:GetObject", false));
        assert!(matches("s3:get*", "s3:GetObject", true));
        // Wildcards in the text are literal characters.
        assert!(!matches("ab", "a*", false));
        assert!(matches("a?", "a*", false));
    }

    #[test]
    fn covers_basics() {
        assert!(covers("s3:*", "s3:Get*", false));
        assert!(covers("s3:Get*", "s3:GetObject", false));
        assert!(!covers("s3:GetObject", "s3:Get*", false));
        assert!(!covers("s3:Get?", "s3:Get*", false));
        assert!(covers("*?", "?*", false));
        assert!(covers("?*", "*?", false));
        assert!(covers(
            "arn:aws:s3:::partner-payouts/*",
            "arn:aws:s3:::partner-payouts/2024/*",
            false
        ));
        assert!(!covers(
            "arn:aws:s3:::Reports/*",
            "arn:aws:s3:::reports/*",
            false
        ));
        assert!(covers("S3:GET*", "s3:get?bject", true));
    }

    #[test]
    fn overlaps_basics() {
        assert!(overlaps("s3:Get*", "*Object", false));
        assert!(overlaps("a*", "*b", false));
        assert!(!overlaps("a*", "b*", false));
        assert!(!overlaps("a?", "a", false));
        assert!(overlaps("S3:*", "s3:PutObject", true));
        assert!(!overlaps("S3:*", "s3:PutObject", false));
    }

    #[test]
    fn long_inputs_are_fast() {
        // Pathological for backtracking matchers; quadratic here.
        let pat = "*a".repeat(500) + "b";
        let text = "a".repeat(2000);
        assert!(!matches(&pat, &text, false));
        assert!(!covers(&pat, &text, false));
        assert!(overlaps(&pat, &text.replace('a', "?"), false));
    }

    fn glob() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just('*'), Just('?')],
            0..5,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn matches_agrees_with_reference(p in glob(), t in "[ab]{0,6}") {
            prop_assert_eq!(matches(&p, &t, false), naive_str(&p, &t));
        }

        #[test]
        fn covers_literal_is_matches(p in glob(), t in "[ab]{0,6}") {
            prop_assert_eq!(covers(&p, &t, false), matches(&p, &t, false));
        }

        #[test]
        fn covers_is_sound(p in glob(), r in glob()) {
            if covers(&p, &r, false) {
                for t in texts(6) {
                    if naive_str(&r, &t) {
                        prop_assert!(naive_str(&p, &t), "{p} covers {r} but not {t}");
                    }
                }
            }
        }

        #[test]
        fn covers_is_reflexive(p in glob()) {
            prop_assert!(covers(&p, &p, false));
        }

        #[test]
        fn overlaps_is_exact(a in glob(), b in glob()) {
            // A shortest witness has at most len(a) + len(b) <= 8 characters,
            // and any alphabet with two letters suffices.
            let witness = texts(8).into_iter().find(|t| naive_str(&a, t) && naive_str(&b, t));
            prop_assert_eq!(overlaps(&a, &b, false), witness.is_some(), "witness {:?}", witness);
        }

        #[test]
        fn overlaps_is_symmetric(a in glob(), b in glob()) {
            prop_assert_eq!(overlaps(&a, &b, false), overlaps(&b, &a, false));
        }
    }
}
