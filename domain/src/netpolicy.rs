//! Which network destinations the server may fetch from on a tenant's behalf. Pure rules over
//! addresses; the fetcher resolves names and applies them to every address and every redirect hop.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::DomainError;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid("cidr", format!("{s:?} is not an address or CIDR network"));
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A host in an allow or deny list: a DNS name (exact, case-insensitive; `*.example.com` for
/// subdomains) or an address/network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    Name(String),
    Network(Cidr),
}

impl FromStr for HostRule {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        if let Ok(c) = s.parse::<Cidr>() {
            return Ok(HostRule::Network(c));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').enumerate().all(|(i, label)| {
                (i == 0 && label == "*")
                    || (!label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            });
        if ok {
            Ok(HostRule::Name(name))
        } else {
            Err(DomainError::invalid(
                "host",
                format!("{s:?} is not a host name, address or CIDR network"),
            ))
        }
    }
}

impl HostRule {
    /// Does the rule cover this host name (lowercase, no trailing dot)?
    pub fn matches_name(&self, host: &str) -> bool {
        match self {
            HostRule::Name(n) => match n.strip_prefix("*.") {
                Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
                None => n == host,
            },
            HostRule::Network(_) => false,
        }
    }

    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            HostRule::Network(c) => c.contains(canonical(ip)),
            HostRule::Name(_) => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address for every purpose here.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why an address is not a public unicast destination, or `None` when it is. Embedded IPv4
/// addresses (mapped, compatible, NAT64, 6to4) are judged as the IPv4 address they carry.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let in_net = |net: [u8; 4], prefix: u32| {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified / this-network address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address (RFC 1918)")
    } else if ip.is_link_local() {
        Some("link-local address (includes cloud metadata endpoints)")
    } else if in_net([100, 64, 0, 0], 10) {
        Some("carrier-grade NAT address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if ip.is_broadcast() {
        Some("broadcast address")
    } else if ip.is_documentation() {
        Some("documentation address")
    } else if in_net([192, 0, 0, 0], 24) {
        Some("IETF protocol assignment")
    } else if in_net([192, 88, 99, 0], 24) {
        Some("6to4 relay anycast address")
    } else if in_net([198, 18, 0, 0], 15) {
        Some("benchmarking address")
    } else if o[0] >= 240 {
        Some("reserved address")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // Forms that carry an IPv4 address are judged by the address they carry first: a private
    // IPv4 address must not be reachable by spelling it in IPv6.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    if ip.is_unspecified() {
        return Some("unspecified address");
    }
    if ip.is_loopback() {
        return Some("loopback address");
    }
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
    if seg[..6] == [0; 6] {
        return v4_reason(embedded_v4(seg[6], seg[7])).or(Some("IPv4-compatible address"));
    }
    // IPv4-translated (SIIT, RFC 2765) ::ffff:0:a.b.c.d: only meaningful inside a translator's
    // network, so refused whatever it carries (the reason names the embedded address's kind)
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return v4_reason(embedded_v4(seg[6], seg[7])).or(Some("IPv4-translated (SIIT) address"));
    }
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address in the low 32 bits
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded_v4(seg[6], seg[7]));
    }
    // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): the translator is inside the operator's network
    // and the IPv4 address may sit at any RFC 6052 offset, so the whole block is refused.
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64 address");
    }
    // Any other address in 64:ff9b::/32 is not assigned for translation
    if seg[..2] == [0x64, 0xff9b] {
        return Some("reserved NAT64 address");
    }
    // 6to4 2002:V4ADDR::/48
    if seg[0] == 0x2002 {
        return v4_reason(embedded_v4(seg[1], seg[2]));
    }
    // ISATAP interface identifiers (RFC 5214) carry an IPv4 address after 0000:5efe / 0200:5efe
    if seg[4] & 0xfcff == 0
        && seg[5] == 0x5efe
        && let Some(reason) = v4_reason(embedded_v4(seg[6], seg[7]))
    {
        return Some(reason);
    }
    if ip.is_multicast() {
        Some("multicast address")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("unique-local address")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("link-local address")
    } else if seg[0] & 0xffc0 == 0xfec0 {
        Some("site-local address")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        Some("documentation address")
    } else if seg[0] & 0xfff0 == 0x3ff0 {
        // 3fff::/20 (RFC 9637)
        Some("documentation address")
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo carries the server's and the (obfuscated) client's IPv4 addresses
        Some("Teredo tunnel address")
    } else if seg[0] == 0x2001 && seg[1] < 0x200 {
        // 2001::/23 IETF protocol assignments: benchmarking, ORCHID, AMT, AS112, ...
        Some("IETF protocol assignment")
    } else if seg[..4] == [0x100, 0, 0, 0] {
        Some("discard-only address")
    } else if seg[..4] == [0x100, 0, 0, 1] {
        // 100:0:0:1::/64 dummy prefix (RFC 9780)
        Some("dummy address")
    } else if seg[0] == 0x5f00 {
        // 5f00::/16 SRv6 segment identifiers (RFC 9602)
        Some("SRv6 segment identifier")
    } else if seg[0] & 0xe000 != 0x2000 {
        // outside 2000::/3, the only block IANA allocates for global unicast
        Some("reserved address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "127.255.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001::1",
            "100::1",
            "100:0:0:1::1",
            // IPv4-translated (SIIT) ::ffff:0:0/96
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:0:0",
            "::ffff:0:808:808",
            // local-use NAT64 64:ff9b:1::/48, whatever it embeds
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:7f00:1::",
            "64:ff9b:2::808:808",
            // NAT64 well-known prefix with non-public IPv4
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::c0a8:1",
            // 6to4 of private/link-local/CGNAT
            "2002:a00:1::1",
            "2002:a9fe:a9fe::",
            "2002:6440:1::",
            // ISATAP with private IPv4
            "2606:4700::5efe:a00:1",
            "2606:4700::200:5efe:7f00:1",
            "2606:4700::5efe:a9fe:a9fe",
            // IPv4-compatible
            "::a9fe:a9fe",
            "::1.2.3.4",
            // other special-purpose blocks
            "3fff::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "5f00::1",
            "4000::1",
            "::2",
            "192.88.99.1",
        ] {
            assert!(non_public_reason(ip(bad)).is_some(), "{bad} should be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700::5efe:808:808",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(non_public_reason(ip(good)), None, "{good} should be allowed");
        }
    }

    #[test]
    fn cidrs_and_rules() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.9.9.9")));
        assert!(!c.contains(ip("11.0.0.0")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let r: HostRule = "127.0.0.1".parse().unwrap();
        assert!(r.matches_ip(ip("127.0.0.1")));
        assert!(r.matches_ip(ip("::ffff:127.0.0.1")));
        let r: HostRule = "*.Example.com.".parse().unwrap();
        assert!(r.matches_name("a.example.com"));
        assert!(!r.matches_name("example.com"));
        assert!(!r.matches_name("badexample.com"));
        let exact: HostRule = "mirror.example.org".parse().unwrap();
        assert!(exact.matches_name("mirror.example.org"));
        assert!("bad host!".parse::<HostRule>().is_err());
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
    }
}
