//! Whether a concrete value is inside an envelope entry: the wildcard forms envelope values use.
//!
//! Pure functions, no allocation on the hot paths but path splitting, no regex:
//! - [`glob`]: `*` matches any run of characters (also empty); everything else is literal.
//! - [`path`]: Kubescape path patterns. Segments split on `/`; a segment `⋯` (U+22EF, what
//!   Kubescape writes for a dynamic segment) matches exactly one non-empty segment; a segment `*`
//!   matches zero or more segments, except as the last segment of an absolute pattern where it
//!   needs at least one (`/etc/*` does not admit `/etc`, as in Kubescape's `CompareDynamic`); a
//!   bare `*` pattern admits every path; `*` inside a segment (`lib*.so`) globs within that
//!   segment. Trailing slashes are ignored on both sides.
//! - [`dns`]: case-insensitive, one trailing dot ignored on either side (Kubescape writes
//!   `fusioncore.ai.`). Label by label: `*` inside a label matches characters of that label only,
//!   so `*.example.com` admits `a.example.com` but neither `example.com` nor `a.b.example.com`
//!   (Cilium's `matchPattern`); a leftmost label `**` matches one or more labels; a bare `*`
//!   admits every name.
//! - [`Cidr`]: an IPv4 or IPv6 prefix (`10.0.0.0/8`, `2001:db8::/32`, a bare address is a host
//!   prefix). Host bits set in the pattern are ignored. IPv4-mapped IPv6 addresses compare as
//!   IPv4.
//! - [`destination`]: a network destination pattern is an address/CIDR when it parses as one,
//!   else a DNS pattern.
//!
//! Entry-level helpers ([`tool`], [`context`], [`delegation`], [`network`], [`process`]) apply an
//! entry's closure: `literal` entries match exactly; `structural` entries are patterns in the
//! forms above; `distribution` entries describe a rate or range of an otherwise exact value, so
//! membership is exact for them too.

use std::net::IpAddr;

use crate::envelope::{
    Closure, ContextUse, DelegationEdge, NetworkDestination, Observed, ProcessUse, ToolUse,
};

/// What Kubescape writes for one dynamic path segment.
pub const DYNAMIC_SEGMENT: &str = "\u{22ef}";

/// `*` matches any run of characters (including none); every other character is literal.
pub fn glob(pattern: &str, value: &str) -> bool {
    glob_bytes(pattern.as_bytes(), value.as_bytes())
}

/// Greedy matching with backtracking to the last `*`: linear in practice, O(n·m) worst case.
fn glob_bytes(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            resume = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((star, matched)) = resume {
            p = star + 1;
            v = matched + 1;
            resume = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Splits on `/`, dropping trailing empty segments so `/etc/` equals `/etc`.
fn segments(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = path.split('/').collect();
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// Kubescape path pattern matching (see the module docs).
pub fn path(pattern: &str, value: &str) -> bool {
    if pattern.is_empty() || value.is_empty() {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    let pat = segments(pattern);
    let val = segments(value);
    let last = pat.len() - 1;
    // reach[j]: the first i pattern segments can consume the first j value segments.
    let mut reach = vec![false; val.len() + 1];
    reach[0] = true;
    for (i, seg) in pat.iter().enumerate() {
        let mut next = vec![false; val.len() + 1];
        if *seg == "*" {
            // Zero or more segments; a trailing `*` of an absolute pattern needs at least one.
            let min = usize::from(i == last && pattern.starts_with('/'));
            let mut any = false;
            for j in 0..=val.len() {
                if j >= min && reach[j - min] {
                    any = true;
                }
                next[j] = any;
            }
        } else {
            for j in 0..val.len() {
                if reach[j] && segment(seg, val[j]) {
                    next[j + 1] = true;
                }
            }
        }
        reach = next;
    }
    reach[val.len()]
}

fn segment(pattern: &str, value: &str) -> bool {
    if pattern == DYNAMIC_SEGMENT {
        !value.is_empty()
    } else {
        glob(pattern, value)
    }
}

/// DNS name pattern matching (see the module docs).
pub fn dns(pattern: &str, name: &str) -> bool {
    let pattern = normalise_dns(pattern);
    let name = normalise_dns(name);
    if pattern.is_empty() || name.is_empty() {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    let pat: Vec<&str> = pattern.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    if pat[0] == "**" {
        let rest = &pat[1..];
        return labels.len() > rest.len()
            && labels_match(rest, &labels[labels.len() - rest.len()..]);
    }
    pat.len() == labels.len() && labels_match(&pat, &labels)
}

fn labels_match(pattern: &[&str], labels: &[&str]) -> bool {
    pattern
        .iter()
        .zip(labels)
        .all(|(p, l)| !l.is_empty() && glob(p, l))
}

fn normalise_dns(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// An address prefix, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/len` or a bare address (a host prefix); `None` when it is neither.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let network = parse_ip(addr)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse::<u8>().ok().filter(|p| *p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_eq(u32::from(net).into(), u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_eq(u128::from(net), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(net: u128, addr: u128, prefix: u8, bits: u32) -> bool {
    let host_bits = bits - u32::from(prefix);
    if host_bits >= bits {
        return true;
    }
    (net >> host_bits) == (addr >> host_bits)
}

/// An address, with IPv6 optionally in brackets; IPv4-mapped IPv6 becomes IPv4.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

/// A network destination: an address/CIDR pattern admits addresses in it; any other pattern is a
/// DNS pattern and admits names.
pub fn destination(pattern: &str, value: &str) -> bool {
    match Cidr::parse(pattern) {
        Some(cidr) => parse_ip(value).is_some_and(|a| cidr.contains(a)),
        None => parse_ip(value).is_none() && dns(pattern, value),
    }
}

/// Applies an entry's closure to one string: exact, or `pattern_match` for structural entries.
fn by_closure(
    closure: Closure,
    pattern: &str,
    value: &str,
    pattern_match: fn(&str, &str) -> bool,
) -> bool {
    match closure {
        Closure::Literal | Closure::Distribution => pattern == value,
        Closure::Structural => pattern_match(pattern, value),
    }
}

/// The tool call `tool` on `server` is inside this entry.
pub fn tool(entry: &Observed<ToolUse>, server: &str, tool: &str) -> bool {
    by_closure(entry.closure, &entry.value.server, server, glob)
        && by_closure(entry.closure, &entry.value.tool, tool, glob)
}

/// A retrieval from `index` (of `source`, when known) is inside this entry. An entry without a
/// source admits every source of its index; an entry with one admits only that source, so a
/// retrieval without a source (the whole index) is inside only a source-less entry.
pub fn context(entry: &Observed<ContextUse>, index: &str, source: Option<&str>) -> bool {
    by_closure(entry.closure, &entry.value.index, index, glob)
        && match (&entry.value.source, source) {
            (None, _) => true,
            (Some(pattern), Some(value)) => by_closure(entry.closure, pattern, value, glob),
            (Some(_), None) => false,
        }
}

/// A delegation to agent `to` is inside this entry (whatever the mechanism).
pub fn delegation(entry: &Observed<DelegationEdge>, to: &str) -> bool {
    by_closure(entry.closure, &entry.value.to, to, glob)
}

/// Egress to `destination` (on `port`, when known) is inside this entry. An entry without a port
/// admits every port; an entry with one admits only that port.
pub fn network(entry: &Observed<NetworkDestination>, destination: &str, port: Option<u16>) -> bool {
    let dest = match entry.closure {
        Closure::Structural => self::destination(&entry.value.destination, destination),
        // Literal still tolerates the trailing-dot and case spellings of one DNS name, and the
        // bracketed or IPv4-mapped spellings of one address.
        Closure::Literal | Closure::Distribution => {
            same_destination(&entry.value.destination, destination)
        }
    };
    dest && entry.value.port.is_none_or(|p| port == Some(p))
}

fn same_destination(a: &str, b: &str) -> bool {
    match (parse_ip(a), parse_ip(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => normalise_dns(a) == normalise_dns(b),
        _ => false,
    }
}

/// A process behaviour is inside this entry when every field the entry names matches the
/// corresponding observed field (`exec` and `path` as paths, `syscall` exactly).
pub fn process(
    entry: &Observed<ProcessUse>,
    exec: Option<&str>,
    file: Option<&str>,
    syscall: Option<&str>,
) -> bool {
    let field =
        |pattern: &Option<String>, value: Option<&str>, matcher: fn(&str, &str) -> bool| match (
            pattern, value,
        ) {
            (None, _) => true,
            (Some(p), Some(v)) => by_closure(entry.closure, p, v, matcher),
            (Some(_), None) => false,
        };
    let named =
        entry.value.exec.is_some() || entry.value.path.is_some() || entry.value.syscall.is_some();
    named
        && field(&entry.value.exec, exec, path)
        && field(&entry.value.path, file, path)
        && field(&entry.value.syscall, syscall, |p, v| p == v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_star_spans_any_run() {
        assert!(glob("get_invoice_*", "get_invoice_17"));
        assert!(glob("get_invoice_*", "get_invoice_"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn dynamic_segment_is_exactly_one_segment() {
        let p = "/proc/\u{22ef}/task/1/fd";
        assert!(path(p, "/proc/4711/task/1/fd"));
        assert!(!path(p, "/proc/task/1/fd"));
        assert!(!path(p, "/proc/1/2/task/1/fd"));
        assert!(!path("/proc/\u{22ef}/maps", "/proc//maps"));
    }

    #[test]
    fn star_segment_spans_segments_but_trailing_needs_one() {
        assert!(path("/etc/*", "/etc/ssl/certs/ca.pem"));
        assert!(path("/etc/*", "/etc/passwd"));
        assert!(!path("/etc/*", "/etc"));
        assert!(!path("/etc/*", "/etc/"));
        assert!(path("/a/*/d", "/a/d"));
        assert!(path("/a/*/d", "/a/b/c/d"));
        assert!(path("*", "/"));
        assert!(path("/usr/lib/lib*.so.*", "/usr/lib/libssl.so.3"));
        assert!(!path("/usr/lib/lib*.so.*", "/usr/lib/x/libssl.so.3"));
        assert!(path("/etc/hosts/", "/etc/hosts"));
        assert!(!path("", "/"));
    }

    #[test]
    fn dns_patterns_follow_labels_and_ignore_trailing_dot_and_case() {
        assert!(dns("fusioncore.ai.", "fusioncore.ai"));
        assert!(dns("fusioncore.ai", "FusionCore.AI."));
        assert!(dns("*.example.com", "api.example.com."));
        assert!(!dns("*.example.com", "example.com"));
        assert!(!dns("*.example.com", "a.b.example.com"));
        assert!(dns("**.example.com", "a.b.example.com"));
        assert!(!dns("**.example.com", "example.com"));
        assert!(dns("api-*.example.com", "api-eu.example.com"));
        assert!(dns("*", "anything.at.all"));
        assert!(!dns("example.com", "example.com.evil"));
    }

    #[test]
    fn cidrs_cover_v4_v6_and_mapped_addresses() {
        let net = Cidr::parse("10.245.0.0/16").expect("cidr");
        assert!(net.contains("10.245.0.1".parse().expect("ip")));
        assert!(!net.contains("10.246.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.245.3.4".parse().expect("ip")));
        let v6 = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(v6.contains("2001:db8:1::7".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("cidr")
            .contains("8.8.8.8".parse().expect("ip")));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("10.0.0.0/"), None);
        assert_eq!(Cidr::parse("example.com"), None);
    }

    #[test]
    fn destination_dispatches_on_the_pattern_form() {
        assert!(destination("162.0.217.171", "162.0.217.171"));
        assert!(destination("162.0.0.0/8", "162.0.217.171"));
        assert!(destination("::1", "[::1]"));
        assert!(!destination("162.0.0.0/8", "fusioncore.ai"));
        assert!(destination(
            "*.ks-services.co.",
            "version-check.ks-services.co"
        ));
        assert!(!destination("*.ks-services.co", "35.186.253.219"));
    }

    fn observed<T>(value: T, closure: Closure) -> Observed<T> {
        Observed {
            value,
            closure,
            count: 1,
            sessions: 1,
        }
    }

    #[test]
    fn literal_entries_match_exactly_and_structural_ones_as_patterns() {
        let lit = observed(
            ToolUse {
                server: "payments-mcp".into(),
                tool: "get_invoice_*".into(),
            },
            Closure::Literal,
        );
        assert!(!tool(&lit, "payments-mcp", "get_invoice_17"));
        assert!(tool(&lit, "payments-mcp", "get_invoice_*"));
        let structural = observed(lit.value.clone(), Closure::Structural);
        assert!(tool(&structural, "payments-mcp", "get_invoice_17"));
        assert!(!tool(&structural, "other-mcp", "get_invoice_17"));
    }

    #[test]
    fn context_entries_without_source_cover_the_whole_index() {
        let whole = observed(
            ContextUse {
                index: "kb".into(),
                source: None,
            },
            Closure::Literal,
        );
        assert!(context(&whole, "kb", Some("doc-1")));
        assert!(context(&whole, "kb", None));
        let one = observed(
            ContextUse {
                index: "kb".into(),
                source: Some("tickets/*".into()),
            },
            Closure::Structural,
        );
        assert!(context(&one, "kb", Some("tickets/4711")));
        assert!(!context(&one, "kb", None));
        assert!(!context(&one, "kb", Some("wiki/1")));
    }

    #[test]
    fn network_entries_check_port_only_when_they_name_one() {
        let entry = observed(
            NetworkDestination {
                destination: "fusioncore.ai.".into(),
                port: Some(80),
            },
            Closure::Literal,
        );
        assert!(network(&entry, "fusioncore.ai", Some(80)));
        assert!(!network(&entry, "fusioncore.ai", Some(443)));
        assert!(!network(&entry, "fusioncore.ai", None));
        let any_port = observed(
            NetworkDestination {
                destination: "10.0.0.0/8".into(),
                port: None,
            },
            Closure::Structural,
        );
        assert!(network(&any_port, "10.1.2.3", Some(5432)));
        assert!(!network(&any_port, "11.1.2.3", Some(5432)));
    }

    #[test]
    fn process_entries_match_the_fields_they_name() {
        let open = observed(
            ProcessUse {
                exec: None,
                path: Some("/proc/\u{22ef}/maps".into()),
                syscall: None,
            },
            Closure::Structural,
        );
        assert!(process(&open, None, Some("/proc/12/maps"), None));
        assert!(!process(&open, Some("/bin/sh"), None, None));
        let sys = observed(
            ProcessUse {
                exec: None,
                path: None,
                syscall: Some("openat".into()),
            },
            Closure::Literal,
        );
        assert!(process(&sys, None, None, Some("openat")));
        assert!(!process(&sys, None, None, Some("ptrace")));
        let empty = observed(
            ProcessUse {
                exec: None,
                path: None,
                syscall: None,
            },
            Closure::Literal,
        );
        assert!(!process(&empty, Some("/bin/sh"), None, None));
    }

    /// Reference glob: plain recursion, obviously right, exponential (small inputs only).
    fn glob_reference(p: &[u8], v: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'*', rest)) => (0..=v.len()).any(|i| glob_reference(rest, &v[i..])),
            Some((c, rest)) => v.first() == Some(c) && glob_reference(rest, &v[1..]),
        }
    }

    /// Reference path matcher: recursion over segments, Kubescape's rules.
    fn path_reference(p: &[&str], v: &[&str], anchored: bool) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((&"*", rest)) => {
                let min = usize::from(rest.is_empty() && anchored);
                (min..=v.len()).any(|i| path_reference(rest, &v[i..], anchored))
            }
            Some((seg, rest)) => {
                !v.is_empty() && segment(seg, v[0]) && path_reference(rest, &v[1..], anchored)
            }
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_reference(p in "[ab*]{0,7}", v in "[ab]{0,7}") {
            prop_assert_eq!(glob(&p, &v), glob_reference(p.as_bytes(), v.as_bytes()));
        }

        #[test]
        fn path_agrees_with_reference(
            p in prop::collection::vec(prop_oneof!["a", "b", "\u{22ef}", "\\*", "a\\*"], 1..5),
            v in prop::collection::vec(prop_oneof!["a", "b", "ab"], 0..6),
        ) {
            let pattern = format!("/{}", p.join("/"));
            let value = format!("/{}", v.join("/"));
            let pat = segments(&pattern);
            let val = segments(&value);
            prop_assert_eq!(path(&pattern, &value), path_reference(&pat, &val, true));
        }

        #[test]
        fn a_literal_path_matches_itself(v in "(/[a-z0-9._-]{1,8}){1,6}") {
            prop_assert!(path(&v, &v));
        }

        #[test]
        fn cidr_contains_exactly_the_addresses_sharing_its_prefix(net in any::<u32>(), addr in any::<u32>(), len in 0u8..=32) {
            let cidr = Cidr::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(net))).expect("valid");
            let shift = 32 - u32::from(len);
            let same = len == 0 || (net >> shift) == (addr >> shift);
            prop_assert_eq!(cidr.contains(IpAddr::from(std::net::Ipv4Addr::from(addr))), same);
        }

        #[test]
        fn cidr_v6_contains_its_own_network(net in any::<u128>(), len in 0u8..=128) {
            let text = format!("{}/{len}", std::net::Ipv6Addr::from(net));
            let cidr = Cidr::parse(&text).expect("valid");
            prop_assert!(cidr.contains(IpAddr::from(std::net::Ipv6Addr::from(net))));
        }

        #[test]
        fn dns_name_matches_itself_in_any_spelling(labels in prop::collection::vec("[a-z0-9-]{1,10}", 1..5), dot in any::<bool>()) {
            let name = labels.join(".");
            let spelled = if dot { format!("{}.", name.to_uppercase()) } else { name.clone() };
            prop_assert!(dns(&name, &spelled));
            let any_depth = format!("**.{name}");
            let one_level = format!("*.{name}");
            let sub = format!("x.{name}");
            prop_assert!(dns(&any_depth, &sub));
            prop_assert!(!dns(&one_level, &name));
        }

        #[test]
        fn matchers_never_panic(p in "\\PC{0,24}", v in "\\PC{0,24}") {
            let _ = glob(&p, &v);
            let _ = path(&p, &v);
            let _ = dns(&p, &v);
            let _ = destination(&p, &v);
        }
    }
}
