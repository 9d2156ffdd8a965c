//! The few rtnetlink messages the resolver and the watcher need, encoded and decoded by hand.
//!
//! Four requests (route, link and neighbour "get", neighbour "use") and three notification
//! kinds, of which only a handful of fields matter. A decoder that reads just those fields and
//! skips every other attribute cannot be broken by attributes that newer kernels add, and it
//! needs no dependency beyond `libc`. Layouts follow the kernel's UAPI headers
//! (`linux/netlink.h`, `linux/rtnetlink.h`, `linux/neighbour.h`, `linux/if_link.h`); every
//! field is in host byte order.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// linux/netlink.h
/// Message type of an error or, with code 0, of an acknowledgement.
pub(super) const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_CREATE: u16 = 0x400;
/// `sizeof(struct nlmsghdr)`.
const HEADER_LEN: usize = 16;
/// Messages and attributes start on 4-byte boundaries (`NLMSG_ALIGNTO`, `RTA_ALIGNTO`).
const ALIGN: usize = 4;
/// `sizeof(struct rtattr)` / `sizeof(struct nlattr)`.
const ATTRIBUTE_HEADER_LEN: usize = 4;
/// The two top bits of an attribute type are flags (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const ATTRIBUTE_TYPE_MASK: u16 = 0x3fff;

// linux/rtnetlink.h: message types.
pub(super) const RTM_NEWLINK: u16 = 16;
pub(super) const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
pub(super) const RTM_NEWNEIGH: u16 = 28;
pub(super) const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;

// linux/rtnetlink.h: multicast groups (`enum rtnetlink_groups`).
pub(super) const RTNLGRP_LINK: u32 = 1;
pub(super) const RTNLGRP_NEIGH: u32 = 3;
pub(super) const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub(super) const RTNLGRP_IPV6_ROUTE: u32 = 11;

// linux/rtnetlink.h: route attributes and types.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
/// A gateway of another address family (`struct rtvia`), e.g. IPv4 via an IPv6 next hop.
const RTA_VIA: u16 = 18;
pub(super) const RTN_UNICAST: u8 = 1;

/// The name `ip route` uses for a route type (`RTN_*`).
pub(super) fn route_type_name(route_type: u8) -> &'static str {
    match route_type {
        0 => "unspecified",
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        11 => "xresolve",
        _ => "unknown",
    }
}

// linux/if_link.h: link attributes.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;

// linux/neighbour.h: neighbour attributes, flags and states.
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// "Use" the entry as if a packet needed it: create it if missing and start resolution.
const NTF_USE: u8 = 0x01;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_REACHABLE: u16 = 0x02;
const NUD_STALE: u16 = 0x04;
const NUD_DELAY: u16 = 0x08;
const NUD_PROBE: u16 = 0x10;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Netlink data that does not have the layout the kernel documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed(pub(super) &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed netlink message: {}", self.0)
    }
}

impl From<Malformed> for std::io::Error {
    fn from(malformed: Malformed) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, malformed.to_string())
    }
}

/// The state bits of a kernel neighbour entry (`NUD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborState(pub(super) u16);

impl NeighborState {
    /// States in which the entry holds a link-layer address the kernel itself would send to.
    /// INCOMPLETE (still resolving) and FAILED (gave up) hold none; NONE is a bare entry.
    const USABLE: u16 =
        NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

    pub(super) fn is_usable(self) -> bool {
        self.0 & Self::USABLE != 0
    }

    pub(super) fn is_failed(self) -> bool {
        self.0 & NUD_FAILED != 0
    }

    pub(super) fn is_incomplete(self) -> bool {
        self.0 == NUD_INCOMPLETE
    }
}

impl fmt::Display for NeighborState {
    /// Names as `ip neigh` prints them, joined by `|` if several bits are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u16, &str); 8] = [
            (NUD_INCOMPLETE, "INCOMPLETE"),
            (NUD_REACHABLE, "REACHABLE"),
            (NUD_STALE, "STALE"),
            (NUD_DELAY, "DELAY"),
            (NUD_PROBE, "PROBE"),
            (NUD_FAILED, "FAILED"),
            (NUD_NOARP, "NOARP"),
            (NUD_PERMANENT, "PERMANENT"),
        ];
        if self.0 == 0 {
            return f.write_str("NONE");
        }
        let mut separator = "";
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{separator}{name}")?;
                separator = "|";
            }
        }
        let unknown = self.0 & !NAMES.iter().fold(0, |all, (bit, _)| all | bit);
        if unknown != 0 {
            write!(f, "{separator}{unknown:#x}")?;
        }
        Ok(())
    }
}

/// One request message. The socket stamps the sequence number when it sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    bytes: Vec<u8>,
}

impl Request {
    fn new(kind: u16, flags: u16, family_header: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0; 4]); // nlmsg_len, set by `push`
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]); // nlmsg_seq (see `stamp`), nlmsg_pid 0: the kernel
        let mut request = Request { bytes };
        request.push(family_header);
        request
    }

    fn attribute(mut self, kind: u16, payload: &[u8]) -> Self {
        // Attribute lengths are u16; every payload here is an address (at most 16 bytes).
        let len = (ATTRIBUTE_HEADER_LEN + payload.len()) as u16;
        self.push(&[len.to_ne_bytes(), kind.to_ne_bytes()].concat());
        self.push(payload);
        self
    }

    /// Appends `data` padded to the alignment and updates `nlmsg_len`.
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.bytes.resize(align(self.bytes.len()), 0);
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sets the sequence number and returns the bytes to send.
    pub(super) fn stamp(&mut self, sequence: u32) -> &[u8] {
        self.bytes[8..12].copy_from_slice(&sequence.to_ne_bytes());
        &self.bytes
    }
}

/// `ip route get DESTINATION`: the kernel's forwarding decision for one address.
pub(super) fn get_route(destination: IpAddr) -> Request {
    let (family, address) = address_bytes(destination);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    let host_prefix = (address.len() * 8) as u8;
    let rtmsg = [family, host_prefix, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    Request::new(RTM_GETROUTE, 0, &rtmsg).attribute(RTA_DST, &address)
}

/// `ip link show` of one interface, by index.
pub(super) fn get_link(ifindex: u32) -> Request {
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags (u32), change (u32).
    let mut ifinfomsg = [0u8; 16];
    ifinfomsg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    Request::new(RTM_GETLINK, 0, &ifinfomsg)
}

/// `ip neigh get ADDRESS dev IFINDEX` (a single-entry get; Linux 4.20 and later).
pub(super) fn get_neighbor(address: IpAddr, ifindex: u32) -> Request {
    let (family, bytes) = address_bytes(address);
    Request::new(RTM_GETNEIGH, 0, &ndmsg(family, ifindex, 0)).attribute(NDA_DST, &bytes)
}

/// `ip neigh replace ADDRESS dev IFINDEX use`: creates the entry if it is missing and starts
/// resolution as if a packet were waiting for it, without sending any packet ourselves.
/// The state field is ignored for `NTF_USE` (an existing entry keeps its state).
pub(super) fn use_neighbor(address: IpAddr, ifindex: u32) -> Request {
    let (family, bytes) = address_bytes(address);
    Request::new(
        RTM_NEWNEIGH,
        NLM_F_ACK | NLM_F_CREATE,
        &ndmsg(family, ifindex, NTF_USE),
    )
    .attribute(NDA_DST, &bytes)
}

/// struct ndmsg: family, pad1, pad2 (u16), ifindex (i32), state (u16), flags, type.
fn ndmsg(family: u8, ifindex: u32, flags: u8) -> [u8; 12] {
    let mut ndmsg = [0u8; 12];
    ndmsg[0] = family;
    ndmsg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    ndmsg[10] = flags;
    ndmsg
}

fn address_bytes(address: IpAddr) -> (u8, Vec<u8>) {
    match address {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
    }
}

fn align(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// One message of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Message<'a> {
    pub(super) kind: u16,
    pub(super) sequence: u32,
    pub(super) payload: &'a [u8],
}

/// The messages of one datagram (the kernel may pack several into one).
pub(super) fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// Iterator over [`messages`]; after a malformed header it yields that error and stops.
pub(super) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = split_message(self.rest);
        self.rest = match parsed {
            Ok((_, rest)) => rest,
            Err(_) => &[],
        };
        Some(parsed.map(|(message, _)| message))
    }
}

fn split_message(data: &[u8]) -> Result<(Message<'_>, &[u8]), Malformed> {
    let header = data
        .get(..HEADER_LEN)
        .ok_or(Malformed("datagram shorter than a message header"))?;
    let len = u32_at(header, 0) as usize;
    if len < HEADER_LEN || len > data.len() {
        return Err(Malformed("message length outside the datagram"));
    }
    let message = Message {
        kind: u16_at(header, 4),
        sequence: u32_at(header, 8),
        payload: &data[HEADER_LEN..len],
    };
    let rest = data.get(align(len)..).unwrap_or(&[]);
    Ok((message, rest))
}

/// The error code of an `NLMSG_ERROR` payload: 0 for an acknowledgement, else `-errno`.
pub(super) fn error_code(payload: &[u8]) -> Result<i32, Malformed> {
    payload
        .get(..4)
        .map(|code| i32::from_ne_bytes([code[0], code[1], code[2], code[3]]))
        .ok_or(Malformed("error message without a code"))
}

/// Attributes as (type without flag bits, payload). Stops at the first truncated attribute:
/// everything before it is still usable.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let header = data.get(..ATTRIBUTE_HEADER_LEN)?;
        let len = usize::from(u16_at(header, 0));
        let payload = data.get(ATTRIBUTE_HEADER_LEN..len)?;
        let kind = u16_at(header, 2) & ATTRIBUTE_TYPE_MASK;
        data = data.get(align(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The fields of an `RTM_NEWROUTE`/`RTM_DELROUTE` message that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Route {
    /// `RTN_*`: unicast, local, blackhole, unreachable, ...
    pub(super) route_type: u8,
    pub(super) destination: Option<IpAddr>,
    pub(super) output_ifindex: Option<u32>,
    pub(super) gateway: Option<IpAddr>,
}

pub(super) fn parse_route(payload: &[u8]) -> Result<Route, Malformed> {
    const RTMSG_LEN: usize = 12;
    let header = payload
        .get(..RTMSG_LEN)
        .ok_or(Malformed("route message shorter than struct rtmsg"))?;
    let family = header[0];
    let mut route = Route {
        route_type: header[7],
        destination: None,
        output_ifindex: None,
        gateway: None,
    };
    for (kind, value) in attributes(&payload[RTMSG_LEN..]) {
        match kind {
            RTA_DST => route.destination = ip_address(family, value),
            RTA_OIF => route.output_ifindex = u32_value(value),
            RTA_GATEWAY => route.gateway = ip_address(family, value),
            RTA_VIA => route.gateway = via_address(value),
            _ => {}
        }
    }
    Ok(route)
}

/// The fields of an `RTM_NEWLINK`/`RTM_DELLINK` message that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub(super) ifindex: u32,
    /// `ARPHRD_*`: Ethernet, loopback, tunnel, ...
    pub(super) link_type: u16,
    pub(super) name: Option<String>,
    pub(super) address: Option<Vec<u8>>,
}

pub(super) fn parse_link(payload: &[u8]) -> Result<Link, Malformed> {
    const IFINFOMSG_LEN: usize = 16;
    let header = payload
        .get(..IFINFOMSG_LEN)
        .ok_or(Malformed("link message shorter than struct ifinfomsg"))?;
    let mut link = Link {
        ifindex: u32_at(header, 4),
        link_type: u16_at(header, 2),
        name: None,
        address: None,
    };
    for (kind, value) in attributes(&payload[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_ADDRESS => link.address = Some(value.to_vec()),
            IFLA_IFNAME => link.name = c_string(value),
            _ => {}
        }
    }
    Ok(link)
}

/// The fields of an `RTM_NEWNEIGH`/`RTM_DELNEIGH` message that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Neighbor {
    pub(super) ifindex: u32,
    pub(super) state: NeighborState,
    pub(super) address: Option<IpAddr>,
    pub(super) link_address: Option<Vec<u8>>,
}

pub(super) fn parse_neighbor(payload: &[u8]) -> Result<Neighbor, Malformed> {
    const NDMSG_LEN: usize = 12;
    let header = payload
        .get(..NDMSG_LEN)
        .ok_or(Malformed("neighbour message shorter than struct ndmsg"))?;
    let family = header[0];
    let mut neighbor = Neighbor {
        ifindex: u32_at(header, 4),
        state: NeighborState(u16_at(header, 8)),
        address: None,
        link_address: None,
    };
    for (kind, value) in attributes(&payload[NDMSG_LEN..]) {
        match kind {
            NDA_DST => neighbor.address = ip_address(family, value),
            NDA_LLADDR => neighbor.link_address = Some(value.to_vec()),
            _ => {}
        }
    }
    Ok(neighbor)
}

fn ip_address(family: u8, value: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => <[u8; 4]>::try_from(value)
            .ok()
            .map(|octets| IpAddr::V4(Ipv4Addr::from(octets))),
        AF_INET6 => <[u8; 16]>::try_from(value)
            .ok()
            .map(|octets| IpAddr::V6(Ipv6Addr::from(octets))),
        _ => None,
    }
}

/// struct rtvia: family (u16), then the address.
fn via_address(value: &[u8]) -> Option<IpAddr> {
    let family = u8::try_from(u16::from_ne_bytes(value.get(..2)?.try_into().ok()?)).ok()?;
    ip_address(family, value.get(2..)?)
}

fn u32_value(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_ne_bytes)
}

fn c_string(value: &[u8]) -> Option<String> {
    let bytes = value.split(|&byte| byte == 0).next()?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Reads a u16 from a slice whose length the caller has checked.
fn u16_at(data: &[u8], offset: usize) -> u16 {
    u16::from_ne_bytes([data[offset], data[offset + 1]])
}

/// Reads a u32 from a slice whose length the caller has checked.
fn u32_at(data: &[u8], offset: usize) -> u32 {
    u32::from_ne_bytes([
        data[offset],
        data[offset + 1],
        data[offset + 2],
        data[offset + 3],
    ])
}
