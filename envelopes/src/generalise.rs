//! The structural closure rule: values that share structure become one pattern.
//!
//! A value has a *variable tail* when it ends in an identifier-like segment: a UUID
//! (`8-4-4-4-12` hex), a run of decimal digits, or a run of at least 8 hex digits containing a
//! digit, right after a separator (`/ : _ - . = @ #`) that itself follows some fixed text. Two or
//! more distinct values of one group (same MCP server, same index, same mechanism) with the same
//! fixed prefix become one `structural` entry `prefix*` (matched with
//! `firebreak_containment::matching::glob`); every other value stays `literal`. A single value
//! never generalises: one id is no evidence of a family.

use std::collections::{BTreeMap, BTreeSet};

use firebreak_containment::envelope::Closure;

const SEPARATORS: &[u8] = b"/:_-.=@#";

/// Occurrences of one value (or one pattern): how often, and in which sessions.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub count: u64,
    /// Session indices (into the learner's session table).
    pub sessions: BTreeSet<usize>,
}

impl Stats {
    pub fn record(&mut self, session: usize) {
        self.count += 1;
        self.sessions.insert(session);
    }

    fn absorb(&mut self, other: &Stats) {
        self.count += other.count;
        self.sessions.extend(other.sessions.iter().copied());
    }
}

/// One entry after the closure rule.
#[derive(Debug, Clone)]
pub struct Generalised<G> {
    pub group: G,
    pub value: String,
    pub closure: Closure,
    pub stats: Stats,
}

/// Where the fixed prefix of `value` ends, if its tail is an identifier.
pub fn fixed_prefix(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    let tail_start = uuid_tail(bytes).or_else(|| id_tail(bytes))?;
    let prefix = &value[..tail_start];
    let sep = *prefix.as_bytes().last()?;
    let meaningful = prefix.bytes().any(|b| !SEPARATORS.contains(&b));
    (SEPARATORS.contains(&sep) && meaningful).then_some(prefix)
}

fn uuid_tail(bytes: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let start = bytes.len().checked_sub(36)?;
    let mut i = start;
    for (n, len) in GROUPS.iter().enumerate() {
        if !bytes[i..i + len].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        i += len;
        if n < 4 {
            if bytes[i] != b'-' {
                return None;
            }
            i += 1;
        }
    }
    Some(start)
}

fn id_tail(bytes: &[u8]) -> Option<usize> {
    let digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > 0 && digits < bytes.len() {
        let before = bytes[bytes.len() - digits - 1];
        if SEPARATORS.contains(&before) {
            return Some(bytes.len() - digits);
        }
    }
    let hex = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    let tail = &bytes[bytes.len() - hex..];
    (hex >= 8 && hex < bytes.len() && tail.iter().any(u8::is_ascii_digit))
        .then(|| bytes.len() - hex)
}

/// Applies the closure rule to `(group, value) → stats`, returning entries sorted by group then
/// value.
pub fn generalise<G: Ord + Clone>(values: &BTreeMap<(G, String), Stats>) -> Vec<Generalised<G>> {
    let mut families: BTreeMap<(G, &str), Vec<(&str, &Stats)>> = BTreeMap::new();
    let mut out = Vec::new();
    for ((group, value), stats) in values {
        match fixed_prefix(value) {
            Some(prefix) => families
                .entry((group.clone(), prefix))
                .or_default()
                .push((value, stats)),
            None => out.push(literal(group, value, stats)),
        }
    }
    for ((group, prefix), members) in families {
        if let [(value, stats)] = members.as_slice() {
            out.push(literal(&group, value, stats));
            continue;
        }
        let mut merged = Stats::default();
        for (_, stats) in &members {
            merged.absorb(stats);
        }
        out.push(Generalised {
            group,
            value: format!("{prefix}*"),
            closure: Closure::Structural,
            stats: merged,
        });
    }
    out.sort_by(|a, b| (&a.group, &a.value).cmp(&(&b.group, &b.value)));
    out
}

fn literal<G: Clone>(group: &G, value: &str, stats: &Stats) -> Generalised<G> {
    Generalised {
        group: group.clone(),
        value: value.to_string(),
        closure: Closure::Literal,
        stats: stats.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firebreak_containment::matching;
    use proptest::prelude::*;

    #[test]
    fn identifier_tails_are_recognised() {
        assert_eq!(fixed_prefix("tickets/4711"), Some("tickets/"));
        assert_eq!(fixed_prefix("get_invoice_17"), Some("get_invoice_"));
        assert_eq!(
            fixed_prefix("doc-0f8fad5b-d9cb-469f-a165-70867728950e"),
            Some("doc-")
        );
        assert_eq!(fixed_prefix("blob:deadbeef01"), Some("blob:"));
        assert_eq!(
            fixed_prefix("worker2"),
            None,
            "no separator before the digits"
        );
        assert_eq!(fixed_prefix("4711"), None, "no fixed text");
        assert_eq!(fixed_prefix("/4711"), None, "only a separator as prefix");
        assert_eq!(fixed_prefix("search_docs"), None);
        assert_eq!(fixed_prefix("kb-facade"), None, "hex word without a digit");
    }

    fn stats(sessions: &[usize]) -> Stats {
        Stats {
            count: sessions.len() as u64,
            sessions: sessions.iter().copied().collect(),
        }
    }

    #[test]
    fn two_ids_with_one_prefix_become_a_pattern_one_stays_literal() {
        let mut values = BTreeMap::new();
        values.insert(("kb".to_string(), "tickets/1".to_string()), stats(&[0, 1]));
        values.insert(("kb".to_string(), "tickets/2".to_string()), stats(&[1, 2]));
        values.insert(("kb".to_string(), "wiki/7".to_string()), stats(&[0]));
        values.insert(("other".to_string(), "tickets/3".to_string()), stats(&[3]));
        let out = generalise(&values);
        let found: Vec<(&str, &str, Closure, u64, usize)> = out
            .iter()
            .map(|g| {
                (
                    g.group.as_str(),
                    g.value.as_str(),
                    g.closure,
                    g.stats.count,
                    g.stats.sessions.len(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("kb", "tickets/*", Closure::Structural, 4, 3),
                ("kb", "wiki/7", Closure::Literal, 1, 1),
                ("other", "tickets/3", Closure::Literal, 1, 1),
            ]
        );
    }

    proptest! {
        /// Every value seen is inside the entry it was folded into, and counts are preserved.
        #[test]
        fn generalised_entries_cover_their_members(
            values in prop::collection::btree_set("[a-c]{1,3}[/_-][0-9]{1,3}|[a-c]{1,4}", 1..12)
        ) {
            let map: BTreeMap<((), String), Stats> =
                values.iter().map(|v| (((), v.clone()), stats(&[0]))).collect();
            let out = generalise(&map);
            let total: u64 = out.iter().map(|g| g.stats.count).sum();
            prop_assert_eq!(total, values.len() as u64);
            for v in &values {
                prop_assert!(out.iter().any(|g| match g.closure {
                    Closure::Structural => matching::glob(&g.value, v),
                    _ => &g.value == v,
                }), "{} not covered by {:?}", v, out);
            }
        }
    }
}
