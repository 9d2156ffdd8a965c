//! Header parsing: Ethernet with up to two VLAN tags (802.1Q, 802.1ad), IPv4 with options
//! or IPv6 with at most a fragment header, and UDP or TCP. Every read is bounds-checked
//! against the frame end right before it.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use sipxdp_common::{
    connection::Connection,
    maps::{Address, FragmentKey, PROTOCOL_TCP, PROTOCOL_UDP, ipv4_mapped},
    outcome::Reason,
};

use crate::barrier::pin;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERNET_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const IPV4_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
/// A TCP header without options (RFC 9293 §3.1); its data offset says how long it is.
const TCP_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const IPV6_FRAGMENT_HEADER: usize = 8;
/// IPv6 next-header values of the extension headers (RFC 8200 §4, RFC 7045).
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTHENTICATION: u8 = 51;
const IPV6_DESTINATION_OPTIONS: u8 = 60;
const IPV6_MOBILITY: u8 = 135;
const IPV6_HOST_IDENTITY: u8 = 139;
const IPV6_SHIM6: u8 = 140;
/// The fragment header's offset (13 bits, in 8-byte units, shifted left by 3) and its
/// "more fragments" flag.
const IPV6_OFFSET_MASK: u16 = 0xfff8;
const IPV6_MORE_FRAGMENTS: u16 = 0x0001;
/// IPv4 flags and fragment offset: "more fragments" and the offset bits.
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// The frame being processed.
pub struct Frame {
    /// Address of its first byte.
    pub data: usize,
    /// Address just past its last byte.
    pub end: usize,
}

impl Frame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            data: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// The frame length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.data
    }

    /// Reads a `T` at `offset`, or `None` if the frame is shorter.
    #[inline(always)]
    pub fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = pin(self.data + offset);
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: checked against the frame end just above.
        Some(unsafe { (at as *const T).read_unaligned() })
    }

    #[inline(always)]
    pub fn read_u16(&self, offset: usize) -> Option<u16> {
        self.read::<u16>(offset).map(u16::from_be)
    }

    /// A pointer to the `T` at `offset`, for rewriting it, or `None` if the frame is
    /// shorter.
    #[inline(always)]
    pub fn pointer<T>(&self, offset: usize) -> Option<*mut T> {
        let at = pin(self.data + offset);
        if at + size_of::<T>() > self.end {
            return None;
        }
        Some(at as *mut T)
    }
}

/// A UDP datagram (or the first fragment of one) as far as steering needs it.
pub struct Udp {
    pub destination: Address,
    pub destination_port: u16,
    pub source_port: u16,
    /// Where the headers are, for rewriting them in NAT mode.
    pub layout: Layout,
    /// Frame offset of the first payload byte.
    pub payload: usize,
    /// Payload bytes present in this frame.
    pub payload_len: usize,
    /// Set when this is the first fragment of a fragmented datagram: where the key of
    /// its later fragments can be read.
    pub first_fragment: Option<Fragment>,
}

/// Where a datagram's IP and UDP headers start in the frame: both lie within the first
/// 128 bytes (at most 22 bytes of Ethernet, 60 of IPv4 or 48 of IPv6 headers).
#[derive(Clone, Copy)]
pub struct Layout {
    pub l3: usize,
    /// Frame offset of the UDP header; meaningless in a later fragment, which has none.
    pub l4: usize,
    pub ipv6: bool,
}

/// Where a fragment's datagram key lies in the frame. The key itself (40 bytes) is built
/// only when needed, in map memory: the program's 512-byte stack has no room for it
/// beside everything else.
#[derive(Clone, Copy)]
pub struct Fragment {
    /// Frame offset of the IP header.
    pub l3: usize,
    pub ipv6: bool,
    pub identification: u32,
}

impl Fragment {
    /// Fills `key` with the datagram's addresses and identification; `None` if the frame
    /// is too short (never, after `parse`).
    #[inline(always)]
    pub fn write_key(&self, frame: &Frame, key: &mut FragmentKey) -> Option<()> {
        if self.ipv6 {
            key.source = frame.read(self.l3 + 8)?;
            key.destination = frame.read(self.l3 + 24)?;
        } else {
            key.source = ipv4_mapped(frame.read(self.l3 + 12)?);
            key.destination = ipv4_mapped(frame.read(self.l3 + 16)?);
        }
        key.identification = self.identification;
        key.padding = 0;
        Some(())
    }
}

/// What the headers say.
pub enum Packet {
    Udp(Udp),
    /// A TCP segment in an unfragmented IP packet: the connection it belongs to.
    Tcp(Connection),
    /// A later fragment of a UDP datagram: no UDP header, only the datagram's key.
    LaterFragment(Fragment),
    /// IP, but neither UDP nor a fragment of it.
    OtherIp,
}

/// Parses the frame's headers; the error is the reason to pass it on untouched.
#[inline(always)]
pub fn parse(frame: &Frame) -> Result<Packet, Reason> {
    let mut ethertype = frame.read_u16(12).ok_or(Reason::Malformed)?;
    let mut l3 = ETHERNET_HEADER;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = frame.read_u16(l3 + 2).ok_or(Reason::Malformed)?;
        l3 += VLAN_TAG;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, l3),
        ETHERTYPE_IPV6 => parse_ipv6(frame, l3),
        _ => Err(Reason::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4(frame: &Frame, l3: usize) -> Result<Packet, Reason> {
    let version_and_length: u8 = frame.read(l3).ok_or(Reason::Malformed)?;
    let header_len = ((version_and_length & 0x0f) as usize) * 4;
    if version_and_length >> 4 != 4 || header_len < IPV4_MIN_HEADER {
        return Err(Reason::Malformed);
    }
    let total_len = frame.read_u16(l3 + 2).ok_or(Reason::Malformed)? as usize;
    if total_len < header_len || l3 + total_len > frame.len() {
        return Err(Reason::Malformed);
    }
    let fragment = frame.read_u16(l3 + 6).ok_or(Reason::Malformed)?;
    let protocol: u8 = frame.read(l3 + 9).ok_or(Reason::Malformed)?;
    let destination: [u8; 4] = frame.read(l3 + 16).ok_or(Reason::Malformed)?;
    let l4 = l3 + header_len;
    let l4_present = total_len - header_len;
    if protocol == PROTOCOL_TCP {
        // TCP avoids fragmentation (path MTU discovery); the stack reassembles the rare
        // fragmented segment.
        if fragment & (IPV4_MORE_FRAGMENTS | IPV4_OFFSET_MASK) != 0 {
            return Err(Reason::IpFragment);
        }
        let source: [u8; 4] = frame.read(l3 + 12).ok_or(Reason::Malformed)?;
        return parse_tcp(
            frame,
            l4,
            l4_present,
            ipv4_mapped(source),
            ipv4_mapped(destination),
        );
    }
    if protocol != PROTOCOL_UDP {
        return Ok(Packet::OtherIp);
    }
    if fragment & (IPV4_MORE_FRAGMENTS | IPV4_OFFSET_MASK) == 0 {
        return parse_udp(
            frame,
            layout(l3, l4, false),
            l4_present,
            ipv4_mapped(destination),
            None,
        );
    }
    let key = Fragment {
        l3,
        ipv6: false,
        identification: frame.read_u16(l3 + 4).ok_or(Reason::Malformed)? as u32,
    };
    if fragment & IPV4_OFFSET_MASK != 0 {
        return Ok(Packet::LaterFragment(key));
    }
    parse_udp(
        frame,
        layout(l3, l4, false),
        l4_present,
        ipv4_mapped(destination),
        Some(key),
    )
}

/// IPv6 (RFC 8200): the fixed header, then TCP, or UDP directly or after a fragment
/// header. Other extension headers are left to the stack: walking a chain of them costs
/// verifier budget for traffic SIP peers do not send.
#[inline(always)]
fn parse_ipv6(frame: &Frame, l3: usize) -> Result<Packet, Reason> {
    let version: u8 = frame.read(l3).ok_or(Reason::Malformed)?;
    if version >> 4 != 6 {
        return Err(Reason::Malformed);
    }
    let payload_len = frame.read_u16(l3 + 4).ok_or(Reason::Malformed)? as usize;
    if l3 + IPV6_HEADER + payload_len > frame.len() {
        return Err(Reason::Malformed);
    }
    let next_header: u8 = frame.read(l3 + 6).ok_or(Reason::Malformed)?;
    let destination: Address = frame.read(l3 + 24).ok_or(Reason::Malformed)?;
    let l4 = l3 + IPV6_HEADER;
    match next_header {
        PROTOCOL_UDP => parse_udp(frame, layout(l3, l4, true), payload_len, destination, None),
        PROTOCOL_TCP => {
            let source: Address = frame.read(l3 + 8).ok_or(Reason::Malformed)?;
            parse_tcp(frame, l4, payload_len, source, destination)
        }
        IPV6_FRAGMENT => {
            if payload_len < IPV6_FRAGMENT_HEADER {
                return Err(Reason::Malformed);
            }
            let inner: u8 = frame.read(l4).ok_or(Reason::Malformed)?;
            let offset_and_flags = frame.read_u16(l4 + 2).ok_or(Reason::Malformed)?;
            let identification = frame
                .read::<u32>(l4 + 4)
                .map(u32::from_be)
                .ok_or(Reason::Malformed)?;
            if inner == PROTOCOL_TCP {
                return Err(Reason::IpFragment);
            }
            if inner != PROTOCOL_UDP {
                return Ok(Packet::OtherIp);
            }
            let key = Fragment {
                l3,
                ipv6: true,
                identification,
            };
            if offset_and_flags & IPV6_OFFSET_MASK != 0 {
                return Ok(Packet::LaterFragment(key));
            }
            // Offset 0 without "more fragments" is an atomic fragment: a whole datagram.
            let more_fragments = offset_and_flags & IPV6_MORE_FRAGMENTS != 0;
            parse_udp(
                frame,
                layout(l3, l4 + IPV6_FRAGMENT_HEADER, true),
                payload_len - IPV6_FRAGMENT_HEADER,
                destination,
                more_fragments.then_some(key),
            )
        }
        IPV6_HOP_BY_HOP
        | IPV6_ROUTING
        | IPV6_DESTINATION_OPTIONS
        | IPV6_AUTHENTICATION
        | IPV6_MOBILITY
        | IPV6_HOST_IDENTITY
        | IPV6_SHIM6 => Err(Reason::Ipv6Extension),
        _ => Ok(Packet::OtherIp),
    }
}

#[inline(always)]
fn layout(l3: usize, l4: usize, ipv6: bool) -> Layout {
    Layout { l3, l4, ipv6 }
}

/// The UDP header at `layout.l4`, with `l4_present` bytes of the IP payload in the frame.
#[inline(always)]
fn parse_udp(
    frame: &Frame,
    layout: Layout,
    l4_present: usize,
    destination: Address,
    first_fragment: Option<Fragment>,
) -> Result<Packet, Reason> {
    if l4_present < UDP_HEADER {
        return Err(Reason::Malformed);
    }
    let l4 = layout.l4;
    let source_port = frame.read_u16(l4).ok_or(Reason::Malformed)?;
    let destination_port = frame.read_u16(l4 + 2).ok_or(Reason::Malformed)?;
    let udp_len = frame.read_u16(l4 + 4).ok_or(Reason::Malformed)? as usize;
    let fragmented = first_fragment.is_some();
    if udp_len < UDP_HEADER || (!fragmented && udp_len > l4_present) {
        return Err(Reason::Malformed);
    }
    // A first fragment carries only part of the datagram: what is present is scanned.
    let payload_len = if fragmented { l4_present } else { udp_len } - UDP_HEADER;
    Ok(Packet::Udp(Udp {
        destination,
        destination_port,
        source_port,
        layout,
        payload: l4 + UDP_HEADER,
        payload_len,
        first_fragment,
    }))
}

/// The TCP header at frame offset `l4`, with `l4_present` bytes of the IP payload in the
/// frame: its data offset must cover at least the fixed header and at most the segment.
#[inline(always)]
fn parse_tcp(
    frame: &Frame,
    l4: usize,
    l4_present: usize,
    source: Address,
    destination: Address,
) -> Result<Packet, Reason> {
    if l4_present < TCP_MIN_HEADER {
        return Err(Reason::Malformed);
    }
    let source_port = frame.read_u16(l4).ok_or(Reason::Malformed)?;
    let destination_port = frame.read_u16(l4 + 2).ok_or(Reason::Malformed)?;
    let data_offset: u8 = frame.read(l4 + 12).ok_or(Reason::Malformed)?;
    let header_len = (data_offset >> 4) as usize * 4;
    if header_len < TCP_MIN_HEADER || header_len > l4_present {
        return Err(Reason::Malformed);
    }
    Ok(Packet::Tcp(Connection {
        source,
        destination,
        source_port,
        destination_port,
    }))
}
