//! IPv4/IPv6 prefixes (`198.51.100.0/26`, `2001:db8:1::/64`) and their overlap arithmetic.
//!
//! The lab refuses to start when its subnets overlap anything configured in the root
//! namespace; that check needs exact prefix arithmetic on both families, which is small
//! enough to keep here instead of pulling in a crate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// A malformed or impossible prefix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubnetError {
    #[error("parsing subnet `{text}`: {reason}")]
    Parse { text: String, reason: String },
    #[error("prefix length /{prefix} is too long for {addr}")]
    PrefixTooLong { addr: IpAddr, prefix: u8 },
}

/// An IP prefix; the address is stored with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// The prefix `addr/prefix`, with the host bits of `addr` cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, SubnetError> {
        let width = width(addr);
        if prefix > width {
            return Err(SubnetError::PrefixTooLong { addr, prefix });
        }
        let bits = to_bits(addr) & mask(prefix, width);
        Ok(Subnet {
            network: from_bits(addr, bits),
            prefix,
        })
    }

    /// A compile-time IPv4 prefix; `octets` must already be the network address.
    pub const fn v4_const(octets: [u8; 4], prefix: u8) -> Self {
        let [a, b, c, d] = octets;
        Subnet {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    /// A compile-time IPv6 prefix; `segments` must already be the network address.
    pub const fn v6_const(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Subnet {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// The single-address prefix (/32 or /128) holding `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Subnet {
            network: addr,
            prefix: width(addr),
        }
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// True when `addr` lies inside this prefix (never across address families).
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4() && {
            let mask = mask(self.prefix, width(addr));
            to_bits(addr) & mask == to_bits(self.network)
        }
    }

    /// True when every address of `other` lies inside this prefix.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }

    /// True when the two prefixes share at least one address (one contains the other).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains_subnet(other) || other.contains_subnet(self)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses `ADDR/PREFIX`, or a bare `ADDR` as a host prefix (as `ip -j route` prints host
/// routes).
impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse_error = |reason: String| SubnetError::Parse {
            text: text.to_owned(),
            reason,
        };
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|err| parse_error(format!("address: {err}")))?;
        match prefix_text {
            None => Ok(Subnet::host(addr)),
            Some(prefix) => {
                let prefix: u8 = prefix
                    .parse()
                    .map_err(|err| parse_error(format!("prefix length: {err}")))?;
                Subnet::new(addr, prefix)
            }
        }
    }
}

fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// Rebuilds an address of the same family as `like` from its bits.
fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        // Only ever called with bits that came from an IPv4 address, so they fit.
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}

/// The netmask of `prefix` leading ones within an address of `width` bits
/// (`prefix <= width`).
fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_clears_host_bits() {
        assert_eq!(s("198.51.100.10/26").to_string(), "198.51.100.0/26");
        assert_eq!(s("2001:db8:1::10/64").to_string(), "2001:db8:1::/64");
        assert_eq!(s("198.51.100.10").to_string(), "198.51.100.10/32");
        assert_eq!(s("::1").to_string(), "::1/128");
        assert_eq!(s("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(s("::/0").to_string(), "::/0");
        assert_eq!(s("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(s("10.255.2.3/1").to_string(), "0.0.0.0/1");
    }

    #[test]
    fn rejects_garbage() {
        assert!("198.51.100.0/33".parse::<Subnet>().is_err());
        assert!("2001:db8::/129".parse::<Subnet>().is_err());
        assert!("default".parse::<Subnet>().is_err());
        assert!("1.2.3.4/x".parse::<Subnet>().is_err());
    }

    #[test]
    fn containment_and_overlap() {
        let lab = s("198.51.100.0/26");
        assert!(lab.contains("198.51.100.63".parse().unwrap()));
        assert!(!lab.contains("198.51.100.64".parse().unwrap()));
        assert!(!lab.contains("2001:db8::1".parse().unwrap()));
        assert!(s("198.51.100.0/24").contains_subnet(&lab));
        assert!(!lab.contains_subnet(&s("198.51.100.0/24")));
        assert!(lab.overlaps(&s("198.51.100.0/24")));
        assert!(lab.overlaps(&s("198.51.100.5")));
        assert!(!lab.overlaps(&s("198.51.100.64/26")));
        assert!(s("0.0.0.0/0").overlaps(&lab));
        assert!(!s("::/0").overlaps(&lab));
        assert!(s("2001:db8::/32").overlaps(&s("2001:db8:1::/64")));
        assert!(!s("2001:db8:1::/64").overlaps(&s("2001:db8:2::/64")));
    }

    #[test]
    fn const_constructors_match_parsing() {
        assert_eq!(Subnet::v4_const([203, 0, 113, 0], 24), s("203.0.113.0/24"));
        assert_eq!(
            Subnet::v6_const([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
            s("2001:db8::/32")
        );
    }
}
