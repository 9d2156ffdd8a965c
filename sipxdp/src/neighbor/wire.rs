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
/// Nested: the link's XDP attachment (kernel 4.12 and later report its mode).
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;

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

/// Attributes as (type without flag bits, payload). An attribute that runs past the end of
/// the message, or claims to be shorter than its own header, is malformed and ends the
/// iteration: skipping it quietly could lose a field that changes the answer (a route's
/// gateway would turn into "on-link"), so the caller must treat the whole message as bad.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let parsed = split_attribute(data);
        data = match parsed {
            Ok((_, _, rest)) => rest,
            Err(_) => &[],
        };
        Some(parsed.map(|(kind, payload, _)| (kind, payload)))
    })
}

fn split_attribute(data: &[u8]) -> Result<(u16, &[u8], &[u8]), Malformed> {
    let header = data
        .get(..ATTRIBUTE_HEADER_LEN)
        .ok_or(Malformed("attribute header cut short"))?;
    let len = usize::from(u16_at(header, 0));
    let payload = data
        .get(ATTRIBUTE_HEADER_LEN..len)
        .ok_or(Malformed("attribute length outside the message"))?;
    let kind = u16_at(header, 2) & ATTRIBUTE_TYPE_MASK;
    // The last attribute's padding may be left out; the next one starts after it.
    let rest = data.get(align(len)..).unwrap_or(&[]);
    Ok((kind, payload, rest))
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
    for attribute in attributes(&payload[RTMSG_LEN..]) {
        let (kind, value) = attribute?;
        match kind {
            RTA_DST => route.destination = ip_address(family, value)?,
            RTA_OIF => route.output_ifindex = Some(u32_value(value)?),
            RTA_GATEWAY => route.gateway = ip_address(family, value)?,
            RTA_VIA => route.gateway = via_address(value)?,
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
    /// `XDP_ATTACHED_*` of `IFLA_XDP`: 0 none, 1 driver, 2 generic, 3 offloaded, 4 several.
    pub(super) xdp_attached: Option<u8>,
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
        xdp_attached: None,
    };
    for attribute in attributes(&payload[IFINFOMSG_LEN..]) {
        let (kind, value) = attribute?;
        match kind {
            IFLA_ADDRESS => link.address = Some(value.to_vec()),
            IFLA_IFNAME => link.name = c_string(value),
            IFLA_XDP => {
                for nested in attributes(value) {
                    if let (IFLA_XDP_ATTACHED, [mode, ..]) = nested? {
                        link.xdp_attached = Some(*mode);
                    }
                }
            }
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
    for attribute in attributes(&payload[NDMSG_LEN..]) {
        let (kind, value) = attribute?;
        match kind {
            NDA_DST => neighbor.address = ip_address(family, value)?,
            NDA_LLADDR => neighbor.link_address = Some(value.to_vec()),
            _ => {}
        }
    }
    Ok(neighbor)
}

/// The address of an `AF_INET`/`AF_INET6` attribute; `None` for other families (bridge
/// forwarding-database entries share the neighbour messages). A length that does not match
/// the family is malformed, not absent: an unreadable gateway must not look like no gateway.
fn ip_address(family: u8, value: &[u8]) -> Result<Option<IpAddr>, Malformed> {
    const WRONG_LENGTH: Malformed = Malformed("address attribute of the wrong length");
    match family {
        AF_INET => <[u8; 4]>::try_from(value)
            .map(|octets| Some(IpAddr::V4(Ipv4Addr::from(octets))))
            .map_err(|_| WRONG_LENGTH),
        AF_INET6 => <[u8; 16]>::try_from(value)
            .map(|octets| Some(IpAddr::V6(Ipv6Addr::from(octets))))
            .map_err(|_| WRONG_LENGTH),
        _ => Ok(None),
    }
}

/// struct rtvia: family (u16), then the address. The family must be IPv4 or IPv6: a
/// gateway that cannot be read must not look like no gateway.
fn via_address(value: &[u8]) -> Result<Option<IpAddr>, Malformed> {
    let family = value
        .get(..2)
        .ok_or(Malformed("via attribute shorter than its family"))?;
    match u8::try_from(u16_at(family, 0)) {
        Ok(family @ (AF_INET | AF_INET6)) => ip_address(family, &value[2..]),
        _ => Err(Malformed(
            "via attribute of a family other than IPv4 or IPv6",
        )),
    }
}

fn u32_value(value: &[u8]) -> Result<u32, Malformed> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_ne_bytes)
        .map_err(|_| Malformed("32-bit attribute of the wrong length"))
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

#[cfg(test)]
mod tests {
    //! Byte-exact checks against messages laid out by hand from the UAPI headers. Every
    //! integer is written with `to_ne_bytes` because netlink is in host byte order; the
    //! layouts (field order, sizes, padding, lengths) are what the tests pin down.

    use super::*;

    const SEQUENCE: u32 = 0x0102_0304;

    fn u16s(value: u16) -> [u8; 2] {
        value.to_ne_bytes()
    }

    fn u32s(value: u32) -> [u8; 4] {
        value.to_ne_bytes()
    }

    /// struct nlmsghdr: len, type, flags, seq, pid (0).
    fn header(len: u32, kind: u16, flags: u16, sequence: u32) -> Vec<u8> {
        [
            &u32s(len)[..],
            &u16s(kind),
            &u16s(flags),
            &u32s(sequence),
            &u32s(0),
        ]
        .concat()
    }

    /// An attribute with its padding, laid out by hand.
    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = [&u16s(4 + payload.len() as u16)[..], &u16s(kind), payload].concat();
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        bytes
    }

    /// A whole message: header with the right length, then the body.
    fn message(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = header(16 + body.len() as u32, kind, 0, sequence);
        bytes.extend_from_slice(body);
        bytes
    }

    const V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
    const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x21);

    // ---- requests ----

    #[test]
    fn route_request_ipv4() {
        let mut request = get_route(IpAddr::V4(V4));
        let expected = [
            header(36, 26, 0x01, SEQUENCE),
            // rtmsg: AF_INET, dst_len 32, src_len, tos, table, protocol, scope, type, flags.
            vec![2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // RTA_DST: len 8, type 1, the address.
            [&u16s(8)[..], &u16s(1), &[198, 51, 100, 21]].concat(),
        ]
        .concat();
        assert_eq!(request.stamp(SEQUENCE), expected);
    }

    #[test]
    fn route_request_ipv6() {
        let mut request = get_route(IpAddr::V6(V6));
        let expected = [
            header(48, 26, 0x01, SEQUENCE),
            vec![10, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [&u16s(20)[..], &u16s(1), &V6.octets()].concat(),
        ]
        .concat();
        assert_eq!(request.stamp(SEQUENCE), expected);
    }

    #[test]
    fn link_request() {
        let mut request = get_link(7);
        let expected = [
            header(32, 18, 0x01, SEQUENCE),
            // ifinfomsg: family, pad, type (u16), index (i32), flags, change.
            [&[0, 0][..], &u16s(0), &u32s(7), &u32s(0), &u32s(0)].concat(),
        ]
        .concat();
        assert_eq!(request.stamp(SEQUENCE), expected);
    }

    #[test]
    fn neighbor_get_request() {
        let mut request = get_neighbor(IpAddr::V4(V4), 3);
        let expected = [
            header(36, 30, 0x01, SEQUENCE),
            // ndmsg: family, pad1, pad2 (u16), ifindex, state (u16), flags, type.
            [&[2, 0][..], &u16s(0), &u32s(3), &u16s(0), &[0, 0]].concat(),
            [&u16s(8)[..], &u16s(1), &[198, 51, 100, 21]].concat(),
        ]
        .concat();
        assert_eq!(request.stamp(SEQUENCE), expected);
    }

    #[test]
    fn neighbor_use_request() {
        let mut request = use_neighbor(IpAddr::V6(V6), 0x0102_0304);
        let expected = [
            // NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE.
            header(48, 28, 0x405, SEQUENCE),
            // NTF_USE in ndm_flags; the state is left 0 (ignored with NTF_USE).
            [
                &[10, 0][..],
                &u16s(0),
                &u32s(0x0102_0304),
                &u16s(0),
                &[0x01, 0],
            ]
            .concat(),
            [&u16s(20)[..], &u16s(1), &V6.octets()].concat(),
        ]
        .concat();
        assert_eq!(request.stamp(SEQUENCE), expected);
    }

    #[test]
    fn stamping_again_only_changes_the_sequence() {
        let mut request = get_route(IpAddr::V4(V4));
        let first = request.stamp(1).to_vec();
        let second = request.stamp(2).to_vec();
        assert_eq!(first[8..12], u32s(1));
        assert_eq!(second[8..12], u32s(2));
        assert_eq!(first[..8], second[..8]);
        assert_eq!(first[12..], second[12..]);
    }

    #[test]
    fn requests_are_aligned_and_decode_as_messages() {
        for mut request in [
            get_route(IpAddr::V4(V4)),
            get_route(IpAddr::V6(V6)),
            get_link(1),
            get_neighbor(IpAddr::V6(V6), 2),
            use_neighbor(IpAddr::V4(V4), 2),
        ] {
            let bytes = request.stamp(9).to_vec();
            assert_eq!(bytes.len() % 4, 0);
            let parsed: Vec<_> = messages(&bytes).collect();
            assert_eq!(parsed.len(), 1);
            let message = parsed[0].unwrap();
            assert_eq!(message.sequence, 9);
            assert_eq!(message.payload.len(), bytes.len() - 16);
        }
    }

    // ---- messages and errors ----

    #[test]
    fn several_messages_in_one_datagram() {
        let mut datagram = message(RTM_NEWLINK, 5, &[1, 2, 3]);
        datagram.push(0); // padding to the next message
        datagram.extend(message(NLMSG_ERROR, 6, &u32s(0)));
        let parsed: Vec<_> = messages(&datagram).map(Result::unwrap).collect();
        assert_eq!(
            parsed,
            [
                Message {
                    kind: RTM_NEWLINK,
                    sequence: 5,
                    payload: &[1, 2, 3],
                },
                Message {
                    kind: NLMSG_ERROR,
                    sequence: 6,
                    payload: &u32s(0),
                },
            ]
        );
    }

    #[test]
    fn error_codes() {
        // nlmsgerr: error (i32), then the offending request's header.
        let error = [&(-libc::ENOENT).to_ne_bytes()[..], &header(36, 30, 1, 1)].concat();
        assert_eq!(error_code(&error), Ok(-libc::ENOENT));
        assert_eq!(error_code(&u32s(0)), Ok(0));
        assert!(error_code(&[0, 0, 0]).is_err());
        assert!(error_code(&[]).is_err());
    }

    #[test]
    fn bad_message_lengths_are_errors() {
        let valid = message(RTM_NEWROUTE, 1, &[0; 12]);
        for len in [0u32, 1, 15, 29, u32::MAX] {
            let mut datagram = valid.clone();
            datagram[..4].copy_from_slice(&u32s(len));
            let parsed: Vec<_> = messages(&datagram).collect();
            assert_eq!(
                parsed,
                [Err(Malformed("message length outside the datagram"))],
                "nlmsg_len {len}"
            );
        }
        // A good message followed by a bad one: the good one, then the error, then nothing.
        let mut datagram = valid.clone();
        datagram.extend_from_slice(&[0; 7]);
        let parsed: Vec<_> = messages(&datagram).collect();
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].is_ok());
        assert_eq!(
            parsed[1],
            Err(Malformed("datagram shorter than a message header"))
        );
    }

    #[test]
    fn every_truncation_of_a_datagram_is_an_error() {
        let first = route_reply_v4();
        let datagram = [&first[..], &link_reply()].concat();
        // Cutting exactly after the first message leaves a whole, valid datagram.
        for cut in (1..datagram.len()).filter(|&cut| cut != first.len()) {
            let parsed: Vec<_> = messages(&datagram[..cut]).collect();
            assert!(
                parsed.last().is_some_and(Result::is_err),
                "cut at {cut}: {parsed:?}"
            );
        }
        assert!(messages(&datagram).all(|message| message.is_ok()));
        assert_eq!(messages(&[]).count(), 0);
    }

    // ---- routes ----

    /// `ip route get 198.51.100.21` through a gateway, as a 6.x kernel answers it, with
    /// attributes the decoder does not know (table, prefsrc, uid, cacheinfo) around the ones
    /// it needs.
    fn route_body_v4() -> Vec<u8> {
        [
            // rtmsg: AF_INET, /32, src_len 0, tos 0, RT_TABLE_MAIN, RTPROT_UNSPEC,
            // RT_SCOPE_UNIVERSE, RTN_UNICAST, flags RTM_F_CLONED (0x200).
            [&[2, 32, 0, 0, 254, 0, 0, 1][..], &u32s(0x200)].concat(),
            attribute(15, &u32s(254)),           // RTA_TABLE
            attribute(1, &[198, 51, 100, 21]),   // RTA_DST
            attribute(4, &u32s(3)),              // RTA_OIF
            attribute(7, &[198, 51, 100, 2]),    // RTA_PREFSRC
            attribute(5, &[198, 51, 100, 1]),    // RTA_GATEWAY
            attribute(25, &u32s(0)),             // RTA_UID
            attribute(12, &[0xaa; 20]),          // RTA_CACHEINFO
            attribute(0x3fff, &[1, 2, 3]),       // from some future kernel, padded
            attribute(0x8000 | 0x1234, &[0; 8]), // unknown, NLA_F_NESTED
        ]
        .concat()
    }

    fn route_reply_v4() -> Vec<u8> {
        message(RTM_NEWROUTE, 1, &route_body_v4())
    }

    #[test]
    fn route_reply_with_unknown_attributes() {
        let datagram = route_reply_v4();
        let message = messages(&datagram).next().unwrap().unwrap();
        assert_eq!(message.kind, RTM_NEWROUTE);
        assert_eq!(
            parse_route(message.payload),
            Ok(Route {
                route_type: RTN_UNICAST,
                destination: Some(IpAddr::V4(V4)),
                output_ifindex: Some(3),
                gateway: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
            })
        );
    }

    #[test]
    fn on_link_ipv6_route() {
        let body = [
            [&[10, 128, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat(),
            attribute(1, &V6.octets()),
            attribute(4, &u32s(9)),
            attribute(6, &u32s(1024)), // RTA_PRIORITY
        ]
        .concat();
        assert_eq!(
            parse_route(&body),
            Ok(Route {
                route_type: RTN_UNICAST,
                destination: Some(IpAddr::V6(V6)),
                output_ifindex: Some(9),
                gateway: None,
            })
        );
    }

    #[test]
    fn ipv4_route_via_an_ipv6_gateway() {
        let gateway = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let via = [&u16s(10)[..], &gateway.octets()].concat();
        let body = [
            [&[2, 32, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat(),
            attribute(4, &u32s(2)),
            attribute(18, &via), // RTA_VIA
        ]
        .concat();
        let route = parse_route(&body).unwrap();
        assert_eq!(route.gateway, Some(IpAddr::V6(gateway)));
    }

    #[test]
    fn flag_bits_of_an_attribute_type_are_ignored() {
        let body = [
            [&[2, 32, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat(),
            attribute(0x4000 | 4, &u32s(6)), // RTA_OIF with NLA_F_NET_BYTEORDER
        ]
        .concat();
        assert_eq!(parse_route(&body).unwrap().output_ifindex, Some(6));
    }

    #[test]
    fn unusable_route_types_are_reported_as_such() {
        for (route_type, name) in [(2, "local"), (6, "blackhole"), (7, "unreachable")] {
            let body = [&[2, 32, 0, 0, 254, 0, 0, route_type][..], &u32s(0)].concat();
            let route = parse_route(&body).unwrap();
            assert_eq!(route.route_type, route_type);
            assert_eq!(route_type_name(route.route_type), name);
            assert_eq!(route.output_ifindex, None);
        }
        assert_eq!(route_type_name(1), "unicast");
        assert_eq!(route_type_name(200), "unknown");
    }

    #[test]
    fn garbled_route_attributes_are_errors() {
        let rtmsg = [&[2, 32, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat();
        let cases: [(&str, Vec<u8>); 7] = [
            ("short gateway", attribute(5, &[198, 51, 100])),
            ("IPv6-sized gateway", attribute(5, &V6.octets())),
            ("short output interface", attribute(4, &[1, 0])),
            ("via without a family", attribute(18, &[10])),
            (
                "via of an unknown family",
                attribute(18, &[&u16s(28)[..], &[1; 4]].concat()),
            ),
            (
                "attribute shorter than its header",
                [&u16s(2)[..], &u16s(4)].concat(),
            ),
            (
                "attribute past the end",
                [&u16s(12)[..], &u16s(5), &[1, 2, 3, 4]].concat(),
            ),
        ];
        for (what, attributes) in cases {
            let body = [&rtmsg[..], &attributes].concat();
            assert!(
                parse_route(&body).is_err(),
                "{what}: {:?}",
                parse_route(&body)
            );
        }
    }

    #[test]
    fn a_garbled_attribute_after_the_gateway_still_fails_the_route() {
        // Stopping quietly at the bad attribute would keep the fields read so far; the
        // message as a whole is unreadable, so the answer must be an error.
        let body = [
            [&[2, 32, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat(),
            attribute(4, &u32s(3)),
            [&u16s(200)[..], &u16s(5), &[198, 51, 100, 1]].concat(),
        ]
        .concat();
        assert_eq!(
            parse_route(&body),
            Err(Malformed("attribute length outside the message"))
        );
    }

    #[test]
    fn short_route_header_is_an_error() {
        for len in 0..12 {
            assert_eq!(
                parse_route(&[1; 12][..len]),
                Err(Malformed("route message shorter than struct rtmsg"))
            );
        }
        // A header without attributes is a route without fields, not an error.
        let body = [&[2, 0, 0, 0, 254, 0, 0, 1][..], &u32s(0)].concat();
        assert_eq!(
            parse_route(&body),
            Ok(Route {
                route_type: 1,
                destination: None,
                output_ifindex: None,
                gateway: None,
            })
        );
    }

    // ---- links ----

    fn link_body() -> Vec<u8> {
        [
            // ifinfomsg: AF_UNSPEC, pad, ARPHRD_ETHER, index 3, IFF_UP|..., change.
            [&[0, 0][..], &u16s(1), &u32s(3), &u32s(0x1043), &u32s(0)].concat(),
            attribute(3, b"sx1a-0a\0"),                     // IFLA_IFNAME
            attribute(13, &u32s(1000)),                     // IFLA_TXQLEN
            attribute(4, &u32s(1500)),                      // IFLA_MTU
            attribute(1, &[2, 0x53, 0x58, 1, 0, 2]),        // IFLA_ADDRESS
            attribute(2, &[0xff; 6]),                       // IFLA_BROADCAST
            attribute(0x8000 | 26, &attribute(2, &[0; 4])), // IFLA_AF_SPEC, nested
            attribute(0x8000 | 43, &attribute(2, &[2, 0, 0, 0])), // IFLA_XDP: generic
            attribute(0x7fff & 0x3fff, &[]),                // unknown and empty
        ]
        .concat()
    }

    fn link_reply() -> Vec<u8> {
        message(RTM_NEWLINK, 2, &link_body())
    }

    #[test]
    fn link_reply_with_unknown_attributes() {
        assert_eq!(
            parse_link(&link_body()),
            Ok(Link {
                ifindex: 3,
                link_type: 1,
                name: Some("sx1a-0a".to_owned()),
                address: Some(vec![2, 0x53, 0x58, 1, 0, 2]),
                xdp_attached: Some(2),
            })
        );
    }

    #[test]
    fn link_without_address_or_with_odd_name() {
        let body = [
            [&[0, 0][..], &u16s(772), &u32s(1), &u32s(0), &u32s(0)].concat(), // loopback
            attribute(3, b"lo"),                                              // no NUL
        ]
        .concat();
        let link = parse_link(&body).unwrap();
        assert_eq!(link.name.as_deref(), Some("lo"));
        assert_eq!((link.link_type, link.address), (772, None));

        let body = [
            [&[0, 0][..], &u16s(1), &u32s(1), &u32s(0), &u32s(0)].concat(),
            attribute(3, &[0xff, 0xfe, 0]),
        ]
        .concat();
        assert_eq!(parse_link(&body).unwrap().name, None);
    }

    #[test]
    fn garbled_link_messages_are_errors() {
        assert!(parse_link(&[0; 15]).is_err());
        let body = [&link_body()[..], &[8, 0, 1]].concat(); // a cut-off attribute header
        assert_eq!(
            parse_link(&body),
            Err(Malformed("attribute header cut short"))
        );
    }

    // ---- neighbours ----

    fn neighbor_body(family: u8, state: u16, attributes: &[Vec<u8>]) -> Vec<u8> {
        [
            [&[family, 0][..], &u16s(0), &u32s(4), &u16s(state), &[0, 1]].concat(),
            attributes.concat(),
        ]
        .concat()
    }

    #[test]
    fn neighbor_reply_with_unknown_attributes() {
        let body = neighbor_body(
            2,
            NUD_REACHABLE,
            &[
                attribute(1, &[198, 51, 100, 21]),          // NDA_DST
                attribute(2, &[2, 0x53, 0x58, 1, 0, 0x15]), // NDA_LLADDR
                attribute(4, &u32s(2)),                     // NDA_PROBES
                attribute(3, &[0; 16]),                     // NDA_CACHEINFO
                attribute(0x2222, &[9; 5]),                 // unknown
            ],
        );
        let datagram = message(RTM_NEWNEIGH, 7, &body);
        let message = messages(&datagram).next().unwrap().unwrap();
        assert_eq!(
            parse_neighbor(message.payload),
            Ok(Neighbor {
                ifindex: 4,
                state: NeighborState(NUD_REACHABLE),
                address: Some(IpAddr::V4(V4)),
                link_address: Some(vec![2, 0x53, 0x58, 1, 0, 0x15]),
            })
        );
    }

    #[test]
    fn incomplete_ipv6_neighbor_has_no_link_address() {
        let body = neighbor_body(10, NUD_INCOMPLETE, &[attribute(1, &V6.octets())]);
        let neighbor = parse_neighbor(&body).unwrap();
        assert_eq!(neighbor.address, Some(IpAddr::V6(V6)));
        assert_eq!(neighbor.link_address, None);
        assert!(neighbor.state.is_incomplete());
        assert!(!neighbor.state.is_usable());
    }

    #[test]
    fn bridge_database_entries_have_no_ip_address() {
        // AF_BRIDGE (7): NDA_DST of a VXLAN entry is the remote tunnel end, not a neighbour.
        let body = neighbor_body(
            7,
            NUD_NOARP,
            &[
                attribute(2, &[2, 0, 0, 0, 0, 1]),
                attribute(1, &[198, 51, 100, 9]),
            ],
        );
        let neighbor = parse_neighbor(&body).unwrap();
        assert_eq!(neighbor.address, None);
    }

    #[test]
    fn garbled_neighbor_messages_are_errors() {
        assert_eq!(
            parse_neighbor(&[2; 11]),
            Err(Malformed("neighbour message shorter than struct ndmsg"))
        );
        let body = neighbor_body(2, NUD_STALE, &[attribute(1, &V6.octets())]);
        assert!(parse_neighbor(&body).is_err(), "IPv6-sized IPv4 address");
        let body = neighbor_body(10, NUD_STALE, &[[&u16s(0)[..], &u16s(1)].concat()]);
        assert!(parse_neighbor(&body).is_err(), "zero-length attribute");
    }

    #[test]
    fn no_panic_on_any_truncation_or_garbling() {
        // Every prefix and every single-byte corruption of the three kinds of reply: the
        // decoders answer, with a value or an error, and never panic or loop.
        let bodies = [
            route_body_v4(),
            link_body(),
            neighbor_body(
                10,
                NUD_STALE,
                &[attribute(1, &V6.octets()), attribute(2, &[1; 6])],
            ),
        ];
        let decode = |data: &[u8]| {
            let _ = parse_route(data);
            let _ = parse_link(data);
            let _ = parse_neighbor(data);
            for message in messages(data).flatten() {
                let _ = parse_route(message.payload);
                let _ = parse_link(message.payload);
                let _ = parse_neighbor(message.payload);
                let _ = error_code(message.payload);
            }
        };
        for body in &bodies {
            let datagram = message(RTM_NEWROUTE, 1, body);
            for cut in 0..=datagram.len() {
                decode(&datagram[..cut]);
                decode(&body[..cut.min(body.len())]);
            }
            for index in 0..datagram.len() {
                for value in [0x00, 0x01, 0x03, 0x7f, 0x80, 0xff] {
                    let mut garbled = datagram.clone();
                    garbled[index] = value;
                    decode(&garbled);
                }
            }
        }
        // Pseudo-random datagrams (xorshift, fixed seed: reproducible).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 4 && next() % 2 == 0 {
                // A plausible length, so that decoding gets past the header more often.
                let claimed = (next() as usize % (len + 1)) as u32;
                data[..4].copy_from_slice(&u32s(claimed));
            }
            decode(&data);
        }
    }

    // ---- neighbour states ----

    #[test]
    fn usable_states() {
        for state in [
            NUD_REACHABLE,
            NUD_STALE,
            NUD_DELAY,
            NUD_PROBE,
            NUD_PERMANENT,
            NUD_NOARP,
        ] {
            let state = NeighborState(state);
            assert!(state.is_usable(), "{state}");
            assert!(!state.is_failed() && !state.is_incomplete(), "{state}");
        }
        for state in [0, NUD_INCOMPLETE, NUD_FAILED] {
            assert!(
                !NeighborState(state).is_usable(),
                "{}",
                NeighborState(state)
            );
        }
        assert!(NeighborState(NUD_FAILED).is_failed());
        assert!(NeighborState(NUD_INCOMPLETE).is_incomplete());
        // INCOMPLETE means "only resolving"; with any other bit it is not that state.
        assert!(!NeighborState(NUD_INCOMPLETE | NUD_FAILED).is_incomplete());
        assert!(!NeighborState(0).is_incomplete() && !NeighborState(0).is_failed());
    }

    #[test]
    fn state_names_match_ip_neigh() {
        let name = |state| NeighborState(state).to_string();
        assert_eq!(name(0), "NONE");
        assert_eq!(name(0x01), "INCOMPLETE");
        assert_eq!(name(0x02), "REACHABLE");
        assert_eq!(name(0x04), "STALE");
        assert_eq!(name(0x08), "DELAY");
        assert_eq!(name(0x10), "PROBE");
        assert_eq!(name(0x20), "FAILED");
        assert_eq!(name(0x40), "NOARP");
        assert_eq!(name(0x80), "PERMANENT");
        assert_eq!(name(0x82), "REACHABLE|PERMANENT");
        assert_eq!(name(0x102), "REACHABLE|0x100");
        assert_eq!(name(0x8000), "0x8000");
    }

    #[test]
    fn malformed_becomes_invalid_data() {
        let error = std::io::Error::from(Malformed("something"));
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "malformed netlink message: something");
    }
}
