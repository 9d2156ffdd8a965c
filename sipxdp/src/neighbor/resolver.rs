//! Route, link and neighbour lookups for one destination, and waiting for ARP/ND.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::NeighborError;
use super::socket::{NetlinkSocket, Reply};
use super::wire::{self, Neighbor};

/// A good default for [`Resolver::new`]: the kernel's default ARP/ND resolution gives up after
/// 3 multicast probes one second apart (`mcast_solicit` 3, `retrans_time_ms` 1000), so waiting
/// longer than that rarely helps.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to send a frame for one destination, as the kernel itself would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The interface the kernel routes the destination out of.
    pub ifindex: u32,
    pub interface: String,
    /// That interface's MAC: the Ethernet source of the rewritten frame.
    pub source_mac: [u8; 6],
    /// The destination itself when it is on-link, else the route's gateway.
    pub next_hop: IpAddr,
    /// The next hop's MAC from the neighbour table: the Ethernet destination.
    pub destination_mac: [u8; 6],
}

/// How an XDP program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachment {
    None,
    /// Native XDP, in the driver.
    Driver,
    /// Generic XDP, in the kernel stack (slower; every driver has it).
    Generic,
    /// Offloaded to the NIC.
    Offloaded,
    /// Programs in more than one mode.
    Several,
}

impl XdpAttachment {
    /// A short name, as the configuration spells the modes it can ask for.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Driver => "driver",
            Self::Generic => "skb",
            Self::Offloaded => "offload",
            Self::Several => "multi",
        }
    }
}

impl std::fmt::Display for XdpAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "not attached",
            Self::Driver => "native XDP, in the driver",
            Self::Generic => "generic XDP, in the kernel stack",
            Self::Offloaded => "XDP offloaded to the NIC",
            Self::Several => "XDP in several modes",
        })
    }
}

/// Resolves destinations over a `NETLINK_ROUTE` socket in the network namespace of the thread
/// that created it. Starting resolution of a missing neighbour needs `CAP_NET_ADMIN`.
#[derive(Debug)]
pub struct Resolver {
    socket: NetlinkSocket,
    timeout: Duration,
}

/// The output interface of a route, checked to be Ethernet.
struct Interface {
    ifindex: u32,
    name: String,
    mac: [u8; 6],
}

impl Resolver {
    /// `timeout` bounds how long [`resolve`](Self::resolve) waits for an unresolved neighbour.
    pub fn new(timeout: Duration) -> Result<Self, NeighborError> {
        let socket = NetlinkSocket::open(&[])
            .map_err(NeighborError::netlink("opening a NETLINK_ROUTE socket"))?;
        Ok(Resolver { socket, timeout })
    }

    /// Finds the interface, MACs and next hop for a frame to `destination`: the route
    /// (`ip route get`), the output interface's MAC, and the next hop's MAC from the
    /// neighbour table. If the table has no usable entry, asks the kernel to resolve it and
    /// waits up to the timeout.
    pub fn resolve(&mut self, destination: IpAddr) -> Result<Resolution, NeighborError> {
        let (ifindex, gateway) = self.route(destination)?;
        let interface = self.interface(destination, ifindex)?;
        let next_hop = gateway.unwrap_or(destination);
        let destination_mac = self.neighbor_mac(next_hop, &interface)?;
        Ok(Resolution {
            ifindex: interface.ifindex,
            interface: interface.name,
            source_mac: interface.mac,
            next_hop,
            destination_mac,
        })
    }

    /// The output interface and the gateway (if any) of the route to `destination`.
    fn route(&mut self, destination: IpAddr) -> Result<(u32, Option<IpAddr>), NeighborError> {
        let context = || format!("route lookup for {destination}");
        let payload = match self.socket.request(wire::get_route(destination)) {
            Ok(reply) => expect_message(reply, wire::RTM_NEWROUTE)
                .map_err(NeighborError::netlink(context()))?,
            Err(source) if is_no_route(&source) => {
                return Err(NeighborError::NoRoute {
                    destination,
                    source,
                });
            }
            Err(source) => return Err(NeighborError::netlink(context())(source)),
        };
        let route = wire::parse_route(&payload)
            .map_err(|malformed| NeighborError::netlink(context())(malformed.into()))?;
        if route.route_type != wire::RTN_UNICAST {
            return Err(NeighborError::UnusableRoute {
                destination,
                route_type: wire::route_type_name(route.route_type),
            });
        }
        let ifindex = route
            .output_ifindex
            .ok_or_else(|| invalid("route without an output interface"))
            .map_err(NeighborError::netlink(context()))?;
        Ok((ifindex, route.gateway))
    }

    /// How XDP is attached to interface `ifindex` (`ip link show`'s `xdp`, `xdpgeneric`,
    /// …): with mode "auto" the kernel picks the driver's XDP if it has one.
    pub fn xdp_attachment(&mut self, ifindex: u32) -> Result<XdpAttachment, NeighborError> {
        Ok(match self.link(ifindex)?.xdp_attached {
            None | Some(0) => XdpAttachment::None,
            Some(1) => XdpAttachment::Driver,
            Some(2) => XdpAttachment::Generic,
            Some(3) => XdpAttachment::Offloaded,
            Some(_) => XdpAttachment::Several,
        })
    }

    fn link(&mut self, ifindex: u32) -> Result<wire::Link, NeighborError> {
        let context = || format!("interface {ifindex}");
        let reply = self
            .socket
            .request(wire::get_link(ifindex))
            .and_then(|reply| expect_message(reply, wire::RTM_NEWLINK))
            .map_err(NeighborError::netlink(context()))?;
        wire::parse_link(&reply)
            .map_err(|malformed| NeighborError::netlink(context())(malformed.into()))
    }

    fn interface(&mut self, destination: IpAddr, ifindex: u32) -> Result<Interface, NeighborError> {
        let context = || format!("interface {ifindex}");
        let link = self.link(ifindex)?;
        let name = link
            .name
            .ok_or_else(|| invalid("link without a name"))
            .map_err(NeighborError::netlink(context()))?;
        let mac = link
            .address
            .and_then(|address| <[u8; 6]>::try_from(address).ok())
            .filter(|_| link.link_type == libc::ARPHRD_ETHER);
        match mac {
            Some(mac) => Ok(Interface { ifindex, name, mac }),
            None => Err(NeighborError::NotEthernet {
                destination,
                interface: name,
                ifindex,
            }),
        }
    }

    /// The next hop's MAC, starting resolution and waiting for it if needed.
    ///
    /// Resolution is started with `RTM_NEWNEIGH` and `NTF_USE`, the netlink form of
    /// `ip neigh replace ADDR dev IF use`: the kernel creates the entry if it is missing and
    /// runs `neigh_event_send` on it exactly as if a packet were waiting, so it sends its own
    /// ARP request or Neighbour Solicitation with its usual source address, retries and
    /// FAILED handling, for IPv4 and IPv6 alike. Nothing else is sent: no datagram to the next
    /// hop, no raw socket. (`nud probe` cannot do this: the kernel rejects a PROBE state
    /// without a link-layer address for an entry that has none.)
    fn neighbor_mac(
        &mut self,
        next_hop: IpAddr,
        interface: &Interface,
    ) -> Result<[u8; 6], NeighborError> {
        let ifindex = interface.ifindex;
        let context = || format!("neighbor {next_hop} on {}", interface.name);
        let entry = self.neighbor(next_hop, ifindex, &context)?;
        if let Some(mac) = entry.as_ref().and_then(usable_mac) {
            return Ok(mac);
        }
        // Join the neighbour group before starting resolution, so that no update can come
        // between the trigger and the wait unseen. Updates only wake us: the table is the truth.
        let mut updates = NetlinkSocket::open(&[wire::RTNLGRP_NEIGH])
            .map_err(NeighborError::netlink(context()))?;
        let deadline = Instant::now() + self.timeout;
        self.socket
            .request(wire::use_neighbor(next_hop, ifindex))
            .and_then(expect_ack)
            .map_err(NeighborError::netlink(format!(
                "starting resolution of {}",
                context()
            )))?;
        loop {
            let entry = self.neighbor(next_hop, ifindex, &context)?;
            let state = entry.as_ref().map(|entry| entry.state);
            if let Some(mac) = entry.as_ref().and_then(usable_mac) {
                return Ok(mac);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            // FAILED after our trigger means the kernel has run out of probes.
            if remaining.is_zero() || state.is_some_and(|state| state.is_failed()) {
                return Err(NeighborError::Unresolved {
                    next_hop,
                    interface: interface.name.clone(),
                    timeout: self.timeout,
                    state,
                });
            }
            if updates
                .wait_readable(remaining)
                .map_err(NeighborError::netlink(context()))?
            {
                discard_pending(&mut updates).map_err(NeighborError::netlink(context()))?;
            }
        }
    }

    /// The neighbour table's entry for `address` on `ifindex`, if there is one.
    fn neighbor(
        &mut self,
        address: IpAddr,
        ifindex: u32,
        context: &dyn Fn() -> String,
    ) -> Result<Option<Neighbor>, NeighborError> {
        let payload = match self.socket.request(wire::get_neighbor(address, ifindex)) {
            Ok(reply) => expect_message(reply, wire::RTM_NEWNEIGH)
                .map_err(NeighborError::netlink(context()))?,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(error) => return Err(NeighborError::netlink(context())(error)),
        };
        wire::parse_neighbor(&payload)
            .map(Some)
            .map_err(|malformed| NeighborError::netlink(context())(malformed.into()))
    }
}

fn usable_mac(entry: &Neighbor) -> Option<[u8; 6]> {
    if !entry.state.is_usable() {
        return None;
    }
    let address = entry.link_address.as_deref()?;
    <[u8; 6]>::try_from(address).ok()
}

/// Empties a notification socket. An overrun (`ENOBUFS`) only means updates were lost, and
/// the caller re-reads the table anyway.
fn discard_pending(socket: &mut NetlinkSocket) -> io::Result<()> {
    loop {
        match socket.receive() {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(error) => return Err(error),
        }
    }
}

/// Errors with which the kernel answers a route lookup that has no usable route: no route at
/// all, or an unreachable or prohibit route. A blackhole route is answered with `EINVAL` (both
/// families, seen on 6.18), which stays a plain netlink error since it also means a bad request.
fn is_no_route(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES)
    )
}

fn expect_message(reply: Reply, expected: u16) -> io::Result<Vec<u8>> {
    match reply {
        Reply::Message { kind, payload } if kind == expected => Ok(payload),
        Reply::Message { kind, .. } => Err(invalid(&format!(
            "reply of message type {kind}, expected {expected}"
        ))),
        Reply::Ack => Err(invalid("acknowledgement instead of a reply")),
    }
}

fn expect_ack(reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Ack => Ok(()),
        Reply::Message { kind, .. } => Err(invalid(&format!(
            "reply of message type {kind} instead of an acknowledgement"
        ))),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
