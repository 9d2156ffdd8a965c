//! Which addresses a lab may use, and the refusal to build one that clashes with the host.
//!
//! Labs live in their own namespaces, so in principle any address would do. But a packet
//! that escaped to the root namespace must never reach a real network, and a user's machine
//! may itself use the documentation ranges (a VPN, another lab). So labs use only
//! 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, never this project's uplink ranges
//! 192.0.2.0/24 and fd00::/8, and refuse to start when a root-namespace address or route
//! overlaps one of their subnets.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

use crate::cmd::{self, CmdError};
use crate::subnet::Subnet;

/// The only ranges labs may use.
pub const ALLOWED_LAB_RANGES: [Subnet; 3] = [
    Subnet::v4_const([198, 51, 100, 0], 24),
    Subnet::v4_const([203, 0, 113, 0], 24),
    Subnet::v6_const([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
];

/// Ranges that carry real traffic on this project's machines (the uplink): never in a lab.
pub const FORBIDDEN_LAB_RANGES: [Subnet; 2] = [
    Subnet::v4_const([192, 0, 2, 0], 24),
    Subnet::v6_const([0xfd00, 0, 0, 0, 0, 0, 0, 0], 8),
];

#[derive(Debug, Error)]
pub enum AddrPlanError {
    #[error(
        "lab subnet {subnet} lies in {range}, which carries real traffic on this project's \
         machines (uplink); labs must use 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32"
    )]
    Forbidden { subnet: Subnet, range: Subnet },
    #[error(
        "lab subnet {subnet} is outside the lab ranges 198.51.100.0/24, 203.0.113.0/24 and \
         2001:db8::/32"
    )]
    OutsideAllowed { subnet: Subnet },
    #[error(
        "refusing to build the lab: its subnet {subnet} overlaps {entry} in the root network \
         namespace; this machine seems to use that range itself, so remove it or run the \
         lab elsewhere"
    )]
    OverlapsRoot { subnet: Subnet, entry: RootEntry },
    #[error("reading the root namespace's addresses and routes: {0}")]
    Read(#[from] CmdError),
    #[error("parsing the output of `{command}`: {detail}")]
    Parse { command: String, detail: String },
}

/// What a root-namespace entry is, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootEntryKind {
    /// An address configured on interface `ifname`.
    Address { ifname: String },
    /// A route in routing table `table` (`main`, `local`, ...).
    Route { table: String },
}

/// One address or route of the root namespace, as a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootEntry {
    pub subnet: Subnet,
    pub kind: RootEntryKind,
}

impl fmt::Display for RootEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RootEntryKind::Address { ifname } => write!(f, "address {} on {ifname}", self.subnet),
            RootEntryKind::Route { table } => write!(f, "route {} (table {table})", self.subnet),
        }
    }
}

/// The root namespace's addresses and routes (both families, all tables).
#[derive(Clone, Debug, Default)]
pub struct RootNetwork {
    pub entries: Vec<RootEntry>,
}

impl RootNetwork {
    /// Reads `ip -j addr show`, `ip -j route show table all` and
    /// `ip -j -6 route show table all` in the caller's (root) namespace.
    pub fn read() -> Result<RootNetwork, AddrPlanError> {
        let mut entries = Vec::new();
        let addr_args = ["-j", "addr", "show"];
        entries.extend(parse_addresses(&run_json(&addr_args)?)?);
        for args in [
            &["-j", "route", "show", "table", "all"][..],
            &["-j", "-6", "route", "show", "table", "all"][..],
        ] {
            entries.extend(parse_routes(&run_json(args)?)?);
        }
        Ok(RootNetwork { entries })
    }
}

fn run_json(args: &[&str]) -> Result<Value, AddrPlanError> {
    let output = cmd::ip(args)?;
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&output.stdout).map_err(|err| AddrPlanError::Parse {
        command: format!("ip {}", args.join(" ")),
        detail: err.to_string(),
    })
}

/// Extracts every configured address (as its prefix, e.g. 192.0.2.2/24 -> 192.0.2.0/24)
/// from `ip -j addr show` output.
pub fn parse_addresses(json: &Value) -> Result<Vec<RootEntry>, AddrPlanError> {
    let parse_error = |detail: String| AddrPlanError::Parse {
        command: "ip -j addr show".to_owned(),
        detail,
    };
    let links = json
        .as_array()
        .ok_or_else(|| parse_error(format!("expected an array, got {json}")))?;
    let mut entries = Vec::new();
    for link in links {
        let ifname = link.get("ifname").and_then(Value::as_str).unwrap_or("?");
        for info in link
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(local), Some(prefix)) = (
                info.get("local").and_then(Value::as_str),
                info.get("prefixlen").and_then(Value::as_u64),
            ) else {
                return Err(parse_error(format!(
                    "address without local/prefixlen: {info}"
                )));
            };
            let subnet: Subnet = format!("{local}/{prefix}")
                .parse()
                .map_err(|err| parse_error(format!("{err}")))?;
            entries.push(RootEntry {
                subnet,
                kind: RootEntryKind::Address {
                    ifname: ifname.to_owned(),
                },
            });
        }
    }
    Ok(entries)
}

/// Extracts every route destination from `ip -j route show table all` output. Default
/// routes are skipped: every networked machine has one and it says nothing about which
/// ranges the machine uses (and labs, having no default route, never follow it).
pub fn parse_routes(json: &Value) -> Result<Vec<RootEntry>, AddrPlanError> {
    let parse_error = |detail: String| AddrPlanError::Parse {
        command: "ip -j route show table all".to_owned(),
        detail,
    };
    let routes = json
        .as_array()
        .ok_or_else(|| parse_error(format!("expected an array, got {json}")))?;
    let mut entries = Vec::new();
    for route in routes {
        let dst = route
            .get("dst")
            .and_then(Value::as_str)
            .ok_or_else(|| parse_error(format!("route without dst: {route}")))?;
        if dst == "default" {
            continue;
        }
        let subnet: Subnet = dst.parse().map_err(|err| parse_error(format!("{err}")))?;
        let table = route.get("table").and_then(Value::as_str).unwrap_or("main");
        entries.push(RootEntry {
            subnet,
            kind: RootEntryKind::Route {
                table: table.to_owned(),
            },
        });
    }
    Ok(entries)
}

/// Checks that every subnet a lab `wanted` lies inside the lab ranges, outside the
/// forbidden uplink ranges, and overlaps no address or route of the root namespace
/// (`root`; prefix-length-0 entries, i.e. default routes, are ignored). Pure, so it can be
/// tested without privileges.
pub fn check_lab_subnets(wanted: &[Subnet], root: &[RootEntry]) -> Result<(), AddrPlanError> {
    for &subnet in wanted {
        if let Some(&range) = FORBIDDEN_LAB_RANGES
            .iter()
            .find(|range| range.overlaps(&subnet))
        {
            return Err(AddrPlanError::Forbidden { subnet, range });
        }
        if !ALLOWED_LAB_RANGES
            .iter()
            .any(|range| range.contains_subnet(&subnet))
        {
            return Err(AddrPlanError::OutsideAllowed { subnet });
        }
        if let Some(entry) = root
            .iter()
            .find(|entry| entry.subnet.prefix() > 0 && entry.subnet.overlaps(&subnet))
        {
            return Err(AddrPlanError::OverlapsRoot {
                subnet,
                entry: entry.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    /// The root namespace of this project's machines, as `ip -j` printed it.
    fn machine_root() -> Vec<RootEntry> {
        let addrs: Value = serde_json::from_str(
            r#"[{"ifindex":1,"ifname":"lo","addr_info":[
                  {"family":"inet","local":"127.0.0.1","prefixlen":8},
                  {"family":"inet6","local":"::1","prefixlen":128}]},
                {"ifindex":2,"ifname":"ifb0","addr_info":[]},
                {"ifindex":4,"ifname":"eth0","addr_info":[
                  {"family":"inet","local":"192.0.2.2","prefixlen":24},
                  {"family":"inet6","local":"fd00::2","prefixlen":64,"nodad":true},
                  {"family":"inet6","local":"fe80::fc:ff:fe00:1","prefixlen":64}]}]"#,
        )
        .unwrap();
        let routes: Value = serde_json::from_str(
            r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
                {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link"},
                {"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local"},
                {"type":"local","dst":"192.0.2.2","dev":"eth0","table":"local"},
                {"type":"broadcast","dst":"192.0.2.255","dev":"eth0","table":"local"},
                {"dst":"fd00::/64","dev":"eth0","metric":256},
                {"dst":"default","gateway":"fd00::1","dev":"eth0","metric":1024},
                {"type":"multicast","dst":"ff00::/8","dev":"eth0","table":"local"}]"#,
        )
        .unwrap();
        let mut entries = parse_addresses(&addrs).unwrap();
        entries.extend(parse_routes(&routes).unwrap());
        entries
    }

    fn standard_lab() -> Vec<Subnet> {
        vec![
            s("198.51.100.0/26"),
            s("198.51.100.100/32"),
            s("2001:db8:1::/64"),
            s("203.0.113.0/26"),
            s("2001:db8:2::/64"),
        ]
    }

    #[test]
    fn parses_addresses_and_routes_but_not_default_routes() {
        let root = machine_root();
        let subnets: Vec<String> = root.iter().map(|e| e.subnet.to_string()).collect();
        assert!(subnets.contains(&"192.0.2.0/24".to_owned()));
        assert!(subnets.contains(&"fd00::/64".to_owned()));
        assert!(subnets.contains(&"192.0.2.2/32".to_owned()));
        assert!(subnets.contains(&"ff00::/8".to_owned()));
        assert!(!root.iter().any(|e| e.subnet.prefix() == 0));
        assert_eq!(root.len(), 5 + 6);
    }

    #[test]
    fn lab_ranges_pass_on_this_projects_machines() {
        check_lab_subnets(&standard_lab(), &machine_root()).unwrap();
    }

    #[test]
    fn rejects_the_uplink_ranges_even_when_asked_for() {
        for wanted in [
            "192.0.2.0/24",
            "192.0.2.128/25",
            "192.0.0.0/16",
            "fd00::/64",
            "fd12::/16",
        ] {
            let err = check_lab_subnets(&[s(wanted)], &[]).unwrap_err();
            assert!(
                matches!(err, AddrPlanError::Forbidden { .. }),
                "{wanted}: {err}"
            );
            assert!(err.to_string().contains("uplink"), "{err}");
        }
    }

    #[test]
    fn rejects_subnets_outside_the_lab_ranges() {
        for wanted in ["10.0.0.0/8", "198.51.0.0/16", "2001:db9::/64", "2001::/16"] {
            let err = check_lab_subnets(&[s(wanted)], &[]).unwrap_err();
            assert!(
                matches!(err, AddrPlanError::OutsideAllowed { .. }),
                "{wanted}: {err}"
            );
        }
    }

    #[test]
    fn refuses_when_root_uses_a_lab_range() {
        let mut root = machine_root();
        root.push(RootEntry {
            subnet: s("198.51.100.0/24"),
            kind: RootEntryKind::Address {
                ifname: "wg0".to_owned(),
            },
        });
        let err = check_lab_subnets(&standard_lab(), &root).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AddrPlanError::OverlapsRoot { .. }), "{text}");
        assert!(
            text.contains("wg0") && text.contains("198.51.100.0/26"),
            "{text}"
        );

        let route = RootEntry {
            subnet: s("2001:db8:2::/48"),
            kind: RootEntryKind::Route {
                table: "main".to_owned(),
            },
        };
        let err = check_lab_subnets(&standard_lab(), &[route]).unwrap_err();
        assert!(err.to_string().contains("route 2001:db8:2::/48"), "{err}");
    }

    #[test]
    fn a_single_host_address_in_root_is_enough_to_refuse() {
        let host = RootEntry {
            subnet: s("198.51.100.100/32"),
            kind: RootEntryKind::Route {
                table: "local".to_owned(),
            },
        };
        assert!(check_lab_subnets(&[s("198.51.100.100/32")], std::slice::from_ref(&host)).is_err());
        assert!(check_lab_subnets(&[s("198.51.100.0/26")], &[host]).is_ok());
    }

    #[test]
    fn explicit_zero_prefix_routes_are_ignored_like_default() {
        let any = RootEntry {
            subnet: s("0.0.0.0/0"),
            kind: RootEntryKind::Route {
                table: "main".to_owned(),
            },
        };
        check_lab_subnets(&standard_lab(), &[any]).unwrap();
    }
}
