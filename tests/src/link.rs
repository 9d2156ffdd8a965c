//! Links inside lab namespaces: veth pairs, bridges, and their addresses, MACs and routes.
//!
//! Veth pairs are created with both ends directly in their target namespaces
//! (`ip link add A netns X type veth peer name B netns Y`), so no lab interface ever appears
//! in the root namespace, not even for a moment. Deleting a namespace deletes its veth ends
//! (and thereby their peers); the guards here additionally delete their links on drop so
//! teardown is synchronous instead of waiting for the kernel's asynchronous namespace cleanup.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use serde_json::Value;
use thiserror::Error;

use crate::cmd::{self, CmdError};
use crate::names;
use crate::netns::{NETNS_RUN_DIR, Netns};
use crate::subnet::Subnet;
use crate::wait::wait_until;

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("invalid interface name `{name}` (1-15 bytes, no '/', ':' or spaces)")]
    InvalidName { name: String },
    #[error("creating veth {name_a} (netns {netns_a}) <-> {name_b} (netns {netns_b}): {source}")]
    CreateVeth {
        name_a: String,
        netns_a: String,
        name_b: String,
        netns_b: String,
        source: Box<CmdError>,
    },
    #[error("creating bridge {name} in netns {netns}: {source}")]
    CreateBridge {
        name: String,
        netns: String,
        source: Box<CmdError>,
    },
    #[error(
        "cannot attach {port} (netns {port_netns}) to bridge {bridge} in netns {bridge_netns}: different namespaces"
    )]
    ForeignPort {
        port: String,
        port_netns: String,
        bridge: String,
        bridge_netns: String,
    },
    #[error("{what} on {iface} (netns {netns}): {source}")]
    Command {
        what: String,
        iface: String,
        netns: String,
        source: Box<CmdError>,
    },
    #[error("reading {what} of {iface} (netns {netns}): unexpected `ip -j` output: {detail}")]
    Parse {
        what: String,
        iface: String,
        netns: String,
        detail: String,
    },
    #[error(
        "{iface} (netns {netns}) did not become {what} before the deadline (last seen: {last})"
    )]
    Timeout {
        what: String,
        iface: String,
        netns: String,
        last: String,
    },
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .ok_or_else(|| format!("MAC address `{text}` has fewer than 6 bytes"))?;
            *byte = u8::from_str_radix(part, 16)
                .map_err(|err| format!("MAC address `{text}`: {err}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("MAC address `{text}` has more than 6 bytes"));
        }
        Ok(MacAddr(bytes))
    }
}

/// A neighbour (ARP/ND) entry as `ip -j neigh` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The link-layer address; `None` while unresolved (INCOMPLETE, FAILED).
    pub mac: Option<MacAddr>,
    /// NUD states such as `REACHABLE`, `STALE`, `PERMANENT`, `FAILED`.
    pub states: Vec<String>,
}

/// An interface in a namespace, named by (namespace, interface name). Cheap to clone; it
/// does not own the link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Iface {
    netns: String,
    name: String,
}

impl Iface {
    /// Refers to an existing interface `name` in `netns` (e.g. `lo`).
    pub fn new(netns: &Netns, name: &str) -> Result<Iface, LinkError> {
        if !names::is_valid_ifname(name) {
            return Err(LinkError::InvalidName {
                name: name.to_owned(),
            });
        }
        Ok(Iface {
            netns: netns.name().to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the namespace holding the interface.
    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    pub fn set_up(&self) -> Result<(), LinkError> {
        self.ip("setting link up", &["link", "set", "dev", &self.name, "up"])
    }

    pub fn set_down(&self) -> Result<(), LinkError> {
        self.ip(
            "setting link down",
            &["link", "set", "dev", &self.name, "down"],
        )
    }

    pub fn set_mac(&self, mac: MacAddr) -> Result<(), LinkError> {
        let mac = mac.to_string();
        self.ip(
            &format!("setting MAC {mac}"),
            &["link", "set", "dev", &self.name, "address", &mac],
        )
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<(), LinkError> {
        let mtu = mtu.to_string();
        self.ip(
            &format!("setting MTU {mtu}"),
            &["link", "set", "dev", &self.name, "mtu", &mtu],
        )
    }

    /// Adds `addr/prefix`. IPv6 addresses are added with `nodad` so they are usable at once
    /// instead of tentative for a second of duplicate address detection.
    pub fn add_address(&self, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let cidr = format!("{addr}/{prefix}");
        let mut args = vec!["addr", "add", &cidr, "dev", &self.name];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&format!("adding address {cidr}"), &args)
    }

    pub fn del_address(&self, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let cidr = format!("{addr}/{prefix}");
        self.ip(
            &format!("deleting address {cidr}"),
            &["addr", "del", &cidr, "dev", &self.name],
        )
    }

    /// Adds a route to `dst` out of this interface, via `gateway` or on-link without one.
    pub fn add_route(&self, dst: Subnet, gateway: Option<IpAddr>) -> Result<(), LinkError> {
        let dst_text = dst.to_string();
        let gateway_text = gateway.map(|gw| gw.to_string());
        let mut args = vec!["route", "add", &dst_text];
        if let Some(gateway) = &gateway_text {
            args.extend(["via", gateway]);
        }
        args.extend(["dev", &self.name]);
        self.ip(&format!("adding route to {dst_text}"), &args)
    }

    /// Installs (or replaces) a permanent neighbour entry `ip` -> `mac`.
    pub fn set_neighbour(&self, ip: IpAddr, mac: MacAddr) -> Result<(), LinkError> {
        let (ip, mac) = (ip.to_string(), mac.to_string());
        self.ip(
            &format!("setting neighbour {ip} -> {mac}"),
            &[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                &self.name,
                "nud",
                "permanent",
            ],
        )
    }

    /// Removes the neighbour entry for `ip`, if any.
    pub fn flush_neighbour(&self, ip: IpAddr) -> Result<(), LinkError> {
        let ip = ip.to_string();
        self.ip(
            &format!("flushing neighbour {ip}"),
            &["neigh", "flush", "to", &ip, "dev", &self.name],
        )
    }

    /// The neighbour entry for `ip` on this interface, if the kernel has one.
    pub fn neighbour(&self, ip: IpAddr) -> Result<Option<Neighbour>, LinkError> {
        let ip_text = ip.to_string();
        let what = format!("neighbour {ip_text}");
        let json = self.ip_json(
            &what,
            &["-j", "neigh", "show", "to", &ip_text, "dev", &self.name],
        )?;
        let Some(entry) = json.as_array().and_then(|entries| entries.first()) else {
            return Ok(None);
        };
        let mac = match entry.get("lladdr").and_then(Value::as_str) {
            Some(text) => Some(
                text.parse()
                    .map_err(|detail| self.parse_error(&what, detail))?,
            ),
            None => None,
        };
        let states = entry
            .get("state")
            .and_then(Value::as_array)
            .map(|states| {
                states
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Neighbour { mac, states }))
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> Result<MacAddr, LinkError> {
        let text = self.link_field("address")?;
        text.as_str()
            .ok_or_else(|| self.parse_error("MAC", format!("address is {text}")))?
            .parse()
            .map_err(|detail| self.parse_error("MAC", detail))
    }

    /// The interface index inside its namespace (what XDP attaches to).
    pub fn ifindex(&self) -> Result<u32, LinkError> {
        let value = self.link_field("ifindex")?;
        value
            .as_u64()
            .and_then(|index| u32::try_from(index).ok())
            .ok_or_else(|| self.parse_error("ifindex", format!("ifindex is {value}")))
    }

    /// The operational state (`UP`, `DOWN`, `LOWERLAYERDOWN`, ...).
    pub fn oper_state(&self) -> Result<String, LinkError> {
        let value = self.link_field("operstate")?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.parse_error("operstate", format!("operstate is {value}")))
    }

    /// Waits until the interface is operationally up (carrier on both veth ends).
    pub fn wait_oper_up(&self, deadline: Instant) -> Result<(), LinkError> {
        let mut last = String::from("never read");
        let up = wait_until(deadline, || match self.oper_state() {
            Ok(state) => {
                let up = state == "UP";
                last = state;
                up
            }
            Err(err) => {
                last = err.to_string();
                false
            }
        });
        if up {
            Ok(())
        } else {
            Err(self.timeout("operationally UP", last))
        }
    }

    /// `ip -j -d link show dev NAME`, the single object inside.
    fn details(&self) -> Result<Value, LinkError> {
        let json = self.ip_json(
            "link details",
            &["-j", "-d", "link", "show", "dev", &self.name],
        )?;
        json.as_array()
            .and_then(|links| links.first())
            .cloned()
            .ok_or_else(|| self.parse_error("link details", format!("no link in {json}")))
    }

    fn link_field(&self, field: &str) -> Result<Value, LinkError> {
        let details = self.details()?;
        details
            .get(field)
            .cloned()
            .ok_or_else(|| self.parse_error(field, format!("no `{field}` in {details}")))
    }

    fn ip(&self, what: &str, args: &[&str]) -> Result<(), LinkError> {
        cmd::ip_in(&self.netns, args)
            .map(drop)
            .map_err(|source| self.command_error(what, source))
    }

    fn ip_json(&self, what: &str, args: &[&str]) -> Result<Value, LinkError> {
        let output =
            cmd::ip_in(&self.netns, args).map_err(|source| self.command_error(what, source))?;
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            // `ip -j` prints nothing at all for some empty results.
            return Ok(Value::Array(Vec::new()));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|err| self.parse_error(what, err.to_string()))
    }

    fn command_error(&self, what: &str, source: CmdError) -> LinkError {
        LinkError::Command {
            what: what.to_owned(),
            iface: self.name.clone(),
            netns: self.netns.clone(),
            source: Box::new(source),
        }
    }

    fn parse_error(&self, what: &str, detail: String) -> LinkError {
        LinkError::Parse {
            what: what.to_owned(),
            iface: self.name.clone(),
            netns: self.netns.clone(),
            detail,
        }
    }

    fn timeout(&self, what: &str, last: String) -> LinkError {
        LinkError::Timeout {
            what: what.to_owned(),
            iface: self.name.clone(),
            netns: self.netns.clone(),
            last,
        }
    }

    /// Deletes the link if its namespace still exists; used by the guards' `Drop`.
    fn delete_quietly(&self) {
        if !Path::new(NETNS_RUN_DIR).join(&self.netns).exists() {
            return;
        }
        match cmd::ip_in(&self.netns, &["link", "del", "dev", &self.name]) {
            Ok(_) => {}
            // Already gone, e.g. deleted together with its veth peer.
            Err(err)
                if err
                    .stderr()
                    .is_some_and(|e| e.contains("Cannot find device")) => {}
            Err(err) => eprintln!("sipxdp-tests: tearing down {}: {err}", self.name),
        }
    }
}

/// A veth pair between two namespaces; dropping it deletes the pair.
#[derive(Debug)]
pub struct Veth {
    a: Iface,
    b: Iface,
}

impl Veth {
    /// Creates a veth pair with end `a` in `netns_a` and end `b` in `netns_b`. Names default
    /// to fresh unique ones (`sx<pid36>-<n>a` / `...b`); both ends start down.
    pub fn new(
        netns_a: &Netns,
        netns_b: &Netns,
        name_a: Option<&str>,
        name_b: Option<&str>,
    ) -> Result<Veth, LinkError> {
        Self::create(netns_a, netns_b, name_a, name_b, 1)
    }

    /// A veth pair with fresh names and `queues` transmit and receive queues at each end:
    /// with native XDP, each queue has a NAPI context of its own, and a CPU sends into
    /// the peer's queue of its number (modulo the count), so CPUs do not share a queue.
    pub fn with_queues(netns_a: &Netns, netns_b: &Netns, queues: u32) -> Result<Veth, LinkError> {
        Self::create(netns_a, netns_b, None, None, queues)
    }

    fn create(
        netns_a: &Netns,
        netns_b: &Netns,
        name_a: Option<&str>,
        name_b: Option<&str>,
        queues: u32,
    ) -> Result<Veth, LinkError> {
        let name_a = name_a.map_or_else(|| names::ifname('a'), str::to_owned);
        let name_b = name_b.map_or_else(|| names::ifname('b'), str::to_owned);
        let a = Iface::new(netns_a, &name_a)?;
        let b = Iface::new(netns_b, &name_b)?;
        let queues = queues.to_string();
        cmd::ip(&[
            "link",
            "add",
            &a.name,
            "netns",
            &a.netns,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "type",
            "veth",
            "peer",
            "name",
            &b.name,
            "netns",
            &b.netns,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
        ])
        .map_err(|source| LinkError::CreateVeth {
            name_a: a.name.clone(),
            netns_a: a.netns.clone(),
            name_b: b.name.clone(),
            netns_b: b.netns.clone(),
            source: Box::new(source),
        })?;
        Ok(Veth { a, b })
    }

    /// The end in the first namespace.
    pub fn a(&self) -> &Iface {
        &self.a
    }

    /// The end in the second namespace.
    pub fn b(&self) -> &Iface {
        &self.b
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; try the other end if the first namespace is gone.
        if Path::new(NETNS_RUN_DIR).join(&self.a.netns).exists() {
            self.a.delete_quietly();
        } else {
            self.b.delete_quietly();
        }
    }
}

/// A Linux bridge acting as a dumb L2 switch: no STP, no forward delay, no multicast
/// snooping, so ports forward as soon as they are up and ND/ARP multicast always floods.
#[derive(Debug)]
pub struct Bridge {
    iface: Iface,
}

impl Bridge {
    /// Creates and brings up bridge `name` in `netns`.
    pub fn new(netns: &Netns, name: &str) -> Result<Bridge, LinkError> {
        let iface = Iface::new(netns, name)?;
        cmd::ip_in(
            netns.name(),
            &[
                "link",
                "add",
                name,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )
        .map_err(|source| LinkError::CreateBridge {
            name: name.to_owned(),
            netns: netns.name().to_owned(),
            source: Box::new(source),
        })?;
        let bridge = Bridge { iface };
        bridge.iface.set_up()?;
        Ok(bridge)
    }

    /// The bridge device itself.
    pub fn iface(&self) -> &Iface {
        &self.iface
    }

    /// Enslaves `port` (which must live in the bridge's namespace) and brings it up.
    pub fn attach(&self, port: &Iface) -> Result<(), LinkError> {
        if port.netns != self.iface.netns {
            return Err(LinkError::ForeignPort {
                port: port.name.clone(),
                port_netns: port.netns.clone(),
                bridge: self.iface.name.clone(),
                bridge_netns: self.iface.netns.clone(),
            });
        }
        port.ip(
            &format!("attaching to bridge {}", self.iface.name),
            &["link", "set", "dev", &port.name, "master", &self.iface.name],
        )?;
        port.set_up()
    }

    /// Waits until the bridge forwards on `port` (STP state `forwarding`).
    pub fn wait_forwarding(&self, port: &Iface, deadline: Instant) -> Result<(), LinkError> {
        let mut last = String::from("never read");
        let forwarding = wait_until(deadline, || match port.details() {
            Ok(details) => {
                let state = details
                    .pointer("/linkinfo/info_slave_data/state")
                    .and_then(Value::as_str)
                    .unwrap_or("not a bridge port")
                    .to_owned();
                let forwarding = state == "forwarding";
                last = state;
                forwarding
            }
            Err(err) => {
                last = err.to_string();
                false
            }
        });
        if forwarding {
            Ok(())
        } else {
            Err(port.timeout(&format!("forwarding on bridge {}", self.iface.name), last))
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.iface.delete_quietly();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac: MacAddr = "02:53:58:01:00:0a".parse().unwrap();
        assert_eq!(mac, MacAddr([0x02, 0x53, 0x58, 0x01, 0x00, 0x0a]));
        assert_eq!(mac.to_string(), "02:53:58:01:00:0a");
        assert!("02:53:58:01:00".parse::<MacAddr>().is_err());
        assert!("02:53:58:01:00:0a:ff".parse::<MacAddr>().is_err());
        assert!("02:53:58:01:00:zz".parse::<MacAddr>().is_err());
    }
}
