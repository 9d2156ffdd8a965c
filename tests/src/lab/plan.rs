//! The address plan of the standard labs, computed without touching the system.
//!
//! Keeping the plan pure lets unit tests check it (ranges, uniqueness, MACs) without root,
//! and gives the overlap check the exact list of subnets a lab is about to use.
//!
//! Segments: `front` = 198.51.100.0/26 + 2001:db8:1::/64 (client side), `back` =
//! 203.0.113.0/26 + 2001:db8:2::/64 (backend side of the routed NAT lab). A host with last
//! IPv4 octet `n` gets `...::n` in IPv6 written with the same digits (`.21` -> `::21`) and
//! the MAC `02:53:58:SS:00:nn` (`SX` + segment + octet), so packet dumps are easy to read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{LabConfig, LabError, LabKind, Vip};
use crate::link::MacAddr;
use crate::subnet::Subnet;

/// Last octet of the client's addresses.
pub(crate) const CLIENT_OCTET: u8 = 10;
/// Last octet of the balancer's addresses (on every segment).
pub(crate) const BALANCER_OCTET: u8 = 2;
/// Backend N uses octet `BACKEND_BASE + N`.
pub(crate) const BACKEND_BASE: u8 = 20;
/// Backends 1..=MAX_BACKENDS keep their octets inside a /26 (.21 ..= .60).
pub const MAX_BACKENDS: usize = 40;

/// Prefix lengths of every segment.
pub(crate) const SEGMENT_V4_PREFIX: u8 = 26;
pub(crate) const SEGMENT_V6_PREFIX: u8 = 64;

/// One L2 segment (one bridge in the switch namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Bridge name inside the switch namespace.
    pub bridge: &'static str,
    /// Segment number, used in MACs.
    pub id: u8,
    v4_net: Ipv4Addr,
    v6_net: Ipv6Addr,
}

impl Segment {
    pub const fn v4(&self) -> Subnet {
        Subnet::v4_const(self.v4_net.octets(), SEGMENT_V4_PREFIX)
    }

    pub const fn v6(&self) -> Subnet {
        Subnet::v6_const(self.v6_net.segments(), SEGMENT_V6_PREFIX)
    }
}

pub(crate) const FRONT: Segment = Segment {
    bridge: "br0",
    id: 1,
    v4_net: Ipv4Addr::new(198, 51, 100, 0),
    v6_net: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
};

pub(crate) const BACK: Segment = Segment {
    bridge: "br1",
    id: 2,
    v4_net: Ipv4Addr::new(203, 0, 113, 0),
    v6_net: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0),
};

/// The planned addresses of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IfacePlan {
    pub segment: Segment,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub mac: MacAddr,
}

impl IfacePlan {
    fn on(segment: Segment, octet: u8) -> IfacePlan {
        IfacePlan {
            segment,
            v4: Ipv4Addr::from_bits(segment.v4_net.to_bits() | u32::from(octet)),
            v6: Ipv6Addr::from_bits(segment.v6_net.to_bits() | u128::from(same_digits_hex(octet))),
            mac: MacAddr([0x02, 0x53, 0x58, segment.id, 0x00, octet]),
        }
    }
}

/// One planned host: its namespace role and its interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPlan {
    pub role: String,
    pub primary: IfacePlan,
    /// The balancer's interface on the backend segment (routed NAT lab only).
    pub backend_side: Option<IfacePlan>,
}

/// Every address of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub kind: LabKind,
    pub client: HostPlan,
    pub balancer: HostPlan,
    pub backends: Vec<HostPlan>,
    pub vip: Vip,
}

impl Plan {
    pub fn new(kind: LabKind, config: &LabConfig) -> Result<Plan, LabError> {
        if config.backends == 0 || config.backends > MAX_BACKENDS {
            return Err(LabError::Config(format!(
                "{} backends requested; a lab has 1..={MAX_BACKENDS}",
                config.backends
            )));
        }
        let backend_segment = match kind {
            LabKind::Standard => FRONT,
            LabKind::RoutedNat => BACK,
        };
        let host = |role: String, primary, backend_side| HostPlan {
            role,
            primary,
            backend_side,
        };
        let backends = (1..=config.backends)
            .map(|n| {
                // n <= MAX_BACKENDS, so the octet stays <= 60.
                let octet = BACKEND_BASE + n as u8;
                host(
                    format!("backend-{n}"),
                    IfacePlan::on(backend_segment, octet),
                    None,
                )
            })
            .collect();
        let plan = Plan {
            kind,
            client: host(
                "client".to_owned(),
                IfacePlan::on(FRONT, CLIENT_OCTET),
                None,
            ),
            balancer: host(
                "balancer".to_owned(),
                IfacePlan::on(FRONT, BALANCER_OCTET),
                (kind == LabKind::RoutedNat).then(|| IfacePlan::on(BACK, BALANCER_OCTET)),
            ),
            backends,
            vip: Vip {
                v4: config.vip_v4,
                v6: config.vip_v6,
            },
        };
        for iface in plan.ifaces() {
            if iface.v4 == plan.vip.v4 || iface.v6 == plan.vip.v6 {
                return Err(LabError::Config(format!(
                    "VIP {} / {} collides with a host address of the lab",
                    plan.vip.v4, plan.vip.v6
                )));
            }
        }
        Ok(plan)
    }

    /// Every interface of every host.
    pub fn ifaces(&self) -> impl Iterator<Item = &IfacePlan> {
        std::iter::once(&self.client)
            .chain(std::iter::once(&self.balancer))
            .chain(&self.backends)
            .flat_map(|host| std::iter::once(&host.primary).chain(&host.backend_side))
    }

    /// The subnets this lab puts addresses or routes in, for the root overlap check.
    pub fn subnets(&self) -> Vec<Subnet> {
        let mut subnets = vec![FRONT.v4(), FRONT.v6()];
        if self.kind == LabKind::RoutedNat {
            subnets.extend([BACK.v4(), BACK.v6()]);
        }
        subnets.push(Subnet::host(IpAddr::V4(self.vip.v4)));
        subnets.push(Subnet::host(IpAddr::V6(self.vip.v6)));
        subnets
    }
}

/// `n` written in decimal and read back as hex, so IPv6 suffixes mirror IPv4 octets.
fn same_digits_hex(n: u8) -> u16 {
    let (hundreds, tens, ones) = (
        u16::from(n / 100),
        u16::from(n / 10 % 10),
        u16::from(n % 10),
    );
    hundreds * 0x100 + tens * 0x10 + ones
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrplan::{AddrPlanError, check_lab_subnets};
    use std::collections::HashSet;

    #[test]
    fn standard_plan_matches_the_documented_addresses() {
        let plan = Plan::new(LabKind::Standard, &LabConfig::default()).unwrap();
        assert_eq!(plan.client.primary.v4.to_string(), "198.51.100.10");
        assert_eq!(plan.client.primary.v6.to_string(), "2001:db8:1::10");
        assert_eq!(plan.client.primary.mac.to_string(), "02:53:58:01:00:0a");
        assert_eq!(plan.balancer.primary.v4.to_string(), "198.51.100.2");
        assert_eq!(plan.balancer.primary.v6.to_string(), "2001:db8:1::2");
        assert!(plan.balancer.backend_side.is_none());
        let backends: Vec<String> = plan
            .backends
            .iter()
            .map(|b| format!("{} {} {}", b.role, b.primary.v4, b.primary.v6))
            .collect();
        assert_eq!(
            backends,
            [
                "backend-1 198.51.100.21 2001:db8:1::21",
                "backend-2 198.51.100.22 2001:db8:1::22",
                "backend-3 198.51.100.23 2001:db8:1::23",
            ]
        );
        assert_eq!(plan.vip.v4.to_string(), "198.51.100.100");
        assert_eq!(plan.vip.v6.to_string(), "2001:db8:1::100");
        check_lab_subnets(&plan.subnets(), &[]).unwrap();
    }

    #[test]
    fn nat_plan_puts_backends_behind_the_balancer() {
        let config = LabConfig {
            backends: 2,
            ..LabConfig::default()
        };
        let plan = Plan::new(LabKind::RoutedNat, &config).unwrap();
        let back = plan.balancer.backend_side.unwrap();
        assert_eq!(back.v4.to_string(), "203.0.113.2");
        assert_eq!(back.v6.to_string(), "2001:db8:2::2");
        assert_eq!(plan.backends[1].primary.v4.to_string(), "203.0.113.22");
        assert_eq!(
            plan.backends[1].primary.mac.to_string(),
            "02:53:58:02:00:16"
        );
        assert_eq!(plan.subnets().len(), 6);
        check_lab_subnets(&plan.subnets(), &[]).unwrap();
    }

    #[test]
    fn addresses_and_macs_are_unique_and_inside_their_segment() {
        let config = LabConfig {
            backends: MAX_BACKENDS,
            ..LabConfig::default()
        };
        for kind in [LabKind::Standard, LabKind::RoutedNat] {
            let plan = Plan::new(kind, &config).unwrap();
            let mut seen = HashSet::new();
            for iface in plan.ifaces() {
                assert!(iface.segment.v4().contains(iface.v4.into()), "{iface:?}");
                assert!(iface.segment.v6().contains(iface.v6.into()), "{iface:?}");
                assert!(seen.insert(iface.v4.to_string()));
                assert!(seen.insert(iface.v6.to_string()));
                assert!(seen.insert(iface.mac.to_string()));
            }
        }
    }

    #[test]
    fn rejects_bad_configs() {
        for backends in [0, MAX_BACKENDS + 1] {
            let config = LabConfig {
                backends,
                ..LabConfig::default()
            };
            assert!(Plan::new(LabKind::Standard, &config).is_err());
        }
        let clash = LabConfig {
            vip_v4: "198.51.100.21".parse().unwrap(),
            ..LabConfig::default()
        };
        assert!(Plan::new(LabKind::Standard, &clash).is_err());
    }

    #[test]
    fn a_vip_in_the_uplink_range_is_refused_by_the_overlap_check() {
        let config = LabConfig {
            vip_v4: "192.0.2.100".parse().unwrap(),
            vip_v6: "fd00::100".parse().unwrap(),
            ..LabConfig::default()
        };
        let plan = Plan::new(LabKind::Standard, &config).unwrap();
        let err = check_lab_subnets(&plan.subnets(), &[]).unwrap_err();
        assert!(matches!(err, AddrPlanError::Forbidden { .. }), "{err}");
    }

    #[test]
    fn same_digits() {
        assert_eq!(same_digits_hex(2), 0x2);
        assert_eq!(same_digits_hex(21), 0x21);
        assert_eq!(same_digits_hex(100), 0x100);
        assert_eq!(same_digits_hex(255), 0x255);
    }
}
