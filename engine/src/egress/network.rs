//! Which addresses a job's request may connect to, whatever its host name
//! resolves to: the public internet, plus the ranges the operator names.
//!
//! Loopback, private (RFC 1918, IPv6 unique-local), link-local (with the
//! cloud metadata address `169.254.169.254`), shared (RFC 6598), multicast,
//! broadcast, unspecified, documentation and other reserved addresses are
//! refused unless the operator's configuration
//! (`wasmjob serve --egress-allow-net 127.0.0.0/8`) names a range holding
//! them. A tenant cannot widen this: its allow-list names hosts, and the
//! address a name resolves to is checked here, after resolution, on the
//! address actually connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The operator's exceptions to the refused ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    allowed: Vec<IpNet>,
}

impl Networks {
    /// Parses CIDR ranges (`10.1.0.0/16`) or single addresses (`127.0.0.1`).
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Networks, String> {
        let allowed = ranges
            .iter()
            .map(|r| {
                let r = r.as_ref().trim();
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{r}` is not an address or a CIDR range"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Networks { allowed })
    }

    /// Whether a request may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        !is_reserved(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4 address written in IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Whether `ip` is anything but a public unicast address.
fn is_reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_reserved_v4(v4),
        IpAddr::V6(v6) => is_reserved_v6(v6),
    }
}

fn is_reserved_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_reserved_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64: may reach private IPv4
        || first == 0x2002 // 6to4: may reach private IPv4
        || ip.to_ipv4().is_some() // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_refused_by_default() {
        let none = Networks::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:db8::1",
        ] {
            assert!(!none.permits(ip(refused)), "{refused} was permitted");
        }
        for public in ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(none.permits(ip(public)), "{public} was refused");
        }
    }

    #[test]
    fn the_operator_may_allow_a_range_explicitly() {
        let nets = Networks::parse(&["127.0.0.0/8", "::1", "10.1.0.0/16"]).unwrap();
        assert!(nets.permits(ip("127.0.0.1")));
        assert!(nets.permits(ip("::ffff:127.0.0.1")));
        assert!(nets.permits(ip("::1")));
        assert!(nets.permits(ip("10.1.2.3")));
        assert!(!nets.permits(ip("10.2.0.1")));
        assert!(!nets.permits(ip("169.254.169.254")));
        assert!(Networks::parse(&["not-a-net"]).is_err());
        assert!(Networks::parse(&["10.0.0.0/33"]).is_err());
    }
}
