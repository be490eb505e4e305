//! The breached destination as the kernel hook matches it (an address and an optional port), and
//! how blocking it affects each destination the envelope's `network` dimension permits.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use firebreak_containment::envelope::NetworkDestination;
use serde::{Deserialize, Serialize};

use crate::EgressError;

/// One destination to deny: an IPv4 or IPv6 address, one port or every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub ip: IpAddr,
    /// `None`: every port.
    pub port: Option<u16>,
}

impl Destination {
    /// Parses an alert's `destination` and `port`. The hook sees addresses, not names: a host
    /// name is refused, so a block never silently misses.
    pub fn parse(value: &str, port: Option<u16>) -> Result<Destination, EgressError> {
        let bad = |reason: &str| EgressError::Destination {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = value.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(trimmed);
        let ip: IpAddr = bare.parse().map_err(|_| {
            bad("expected an IPv4 or IPv6 address such as 203.0.113.7 or 2001:db8::7 (the kernel hook matches addresses; resolve host names before alerting)")
        })?;
        let ip = ip.to_canonical();
        if ip.is_unspecified() {
            return Err(bad(
                "the unspecified address is not a destination; send the address the agent connected to",
            ));
        }
        if port == Some(0) {
            return Err(EgressError::Destination {
                value: value.to_string(),
                reason: "parameter.port 0 is not a destination port; omit port (null) to block every port".into(),
            });
        }
        Ok(Destination { ip, port })
    }

    /// The address as the hook sees it: IPv6, IPv4 as `::ffff:a.b.c.d`.
    pub fn mapped(&self) -> Ipv6Addr {
        mapped(self.ip)
    }

    /// Whether denying this destination stops `entry` (an envelope destination).
    pub fn effect_on(&self, entry: &NetworkDestination) -> Effect {
        if let (Some(blocked), Some(used)) = (self.port, entry.port) {
            if blocked != used {
                return Effect::Kept;
            }
        }
        match EntryAddress::parse(&entry.destination) {
            EntryAddress::Ip(ip) if mapped(ip) == self.mapped() => Effect::Broken,
            EntryAddress::Net(net, len) if contains(net, len, self.ip) => Effect::Broken,
            EntryAddress::Ip(_) | EntryAddress::Net(..) => Effect::Kept,
            EntryAddress::Name => Effect::Undetermined,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ip, Some(p)) => write!(f, "{ip}:{p}"),
            (ip, None) => write!(f, "{ip} (every port)"),
        }
    }
}

/// What denying a destination does to one permitted envelope destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Broken,
    Kept,
    /// A host name: whether it resolves to the denied address is not known without DNS.
    Undetermined,
}

/// An envelope destination in human form, e.g. `api.stripe.com:443`.
pub fn describe(entry: &NetworkDestination) -> String {
    match entry.port {
        Some(p) => format!("{}:{p}", entry.destination),
        None => format!("{} (any port)", entry.destination),
    }
}

enum EntryAddress {
    Ip(IpAddr),
    Net(IpAddr, u8),
    Name,
}

impl EntryAddress {
    /// Envelope destinations are addresses, CIDR blocks (`10.0.0.0/8`) or host names.
    fn parse(value: &str) -> EntryAddress {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return EntryAddress::Ip(ip.to_canonical());
        }
        if let Some((net, len)) = value.split_once('/') {
            if let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u8>()) {
                let max = if net.is_ipv4() { 32 } else { 128 };
                if len <= max {
                    return EntryAddress::Net(net, len);
                }
            }
        }
        EntryAddress::Name
    }
}

fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    // Compare in the mapped IPv6 space so an IPv4 block and an IPv4 address line up.
    let len = if net.is_ipv4() { len + 96 } else { len };
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(mapped(net)) & mask == u128::from(mapped(ip)) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(destination: &str, port: Option<u16>) -> NetworkDestination {
        NetworkDestination {
            destination: destination.into(),
            port,
        }
    }

    #[test]
    fn addresses_parse_and_names_are_refused_with_the_reason() {
        let d = Destination::parse("203.0.113.7", Some(443)).expect("v4");
        assert_eq!(d.to_string(), "203.0.113.7:443");
        let d = Destination::parse("[2001:db8::7]", None).expect("bracketed v6");
        assert_eq!(d.to_string(), "2001:db8::7 (every port)");
        let d = Destination::parse("::ffff:10.0.0.1", Some(80)).expect("mapped");
        assert_eq!(d.ip, "10.0.0.1".parse::<IpAddr>().expect("ip"));
        for bad in [
            "evil.example.com",
            "10.0.0.0/8",
            "",
            "0.0.0.0",
            "1.2.3.4:80",
        ] {
            let e = Destination::parse(bad, None).expect_err(bad);
            assert!(e.to_string().contains("parameter.destination"), "{e}");
        }
        let e = Destination::parse("10.0.0.1", Some(0)).expect_err("port 0");
        assert!(e.to_string().contains("omit port"), "{e}");
    }

    #[test]
    fn effect_follows_address_port_cidr_and_names() {
        let d = Destination::parse("10.1.2.3", Some(443)).expect("valid");
        assert_eq!(d.effect_on(&entry("10.1.2.3", Some(443))), Effect::Broken);
        assert_eq!(d.effect_on(&entry("10.1.2.3", None)), Effect::Broken);
        assert_eq!(d.effect_on(&entry("10.1.2.3", Some(80))), Effect::Kept);
        assert_eq!(d.effect_on(&entry("10.1.2.4", Some(443))), Effect::Kept);
        assert_eq!(d.effect_on(&entry("10.0.0.0/8", Some(443))), Effect::Broken);
        assert_eq!(d.effect_on(&entry("10.2.0.0/16", None)), Effect::Kept);
        assert_eq!(d.effect_on(&entry("::ffff:10.1.2.3", None)), Effect::Broken);
        assert_eq!(
            d.effect_on(&entry("api.example.com", Some(443))),
            Effect::Undetermined
        );
        assert_eq!(
            d.effect_on(&entry("api.example.com", Some(80))),
            Effect::Kept
        );
        let every_port = Destination::parse("2001:db8::1", None).expect("valid");
        assert_eq!(
            every_port.effect_on(&entry("2001:db8::/32", Some(22))),
            Effect::Broken
        );
        assert_eq!(
            every_port.effect_on(&entry("0.0.0.0/0", None)),
            Effect::Kept
        );
    }
}
