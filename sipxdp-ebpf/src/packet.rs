//! Header parsing: Ethernet with up to two VLAN tags (802.1Q, 802.1ad), IPv4 with options,
//! and UDP. Every read is bounds-checked against the frame end right before it.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use sipxdp_common::{
    maps::{Address, PROTOCOL_UDP, ipv4_mapped},
    outcome::Reason,
};

use crate::barrier::pin;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERNET_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
const IPV4_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
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
    fn read_u16(&self, offset: usize) -> Option<u16> {
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
    /// Frame offset of the first payload byte.
    pub payload: usize,
    /// Payload bytes present in this frame.
    pub payload_len: usize,
    /// The datagram is split into IP fragments.
    pub fragmented: bool,
}

/// What the headers say.
pub enum Packet {
    Udp(Udp),
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
    if ethertype != ETHERTYPE_IPV4 {
        return Err(Reason::NotIp);
    }
    parse_ipv4(frame, l3)
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
    if protocol != PROTOCOL_UDP {
        return Ok(Packet::OtherIp);
    }
    let offset = fragment & IPV4_OFFSET_MASK;
    let fragmented = offset != 0 || fragment & IPV4_MORE_FRAGMENTS != 0;
    if offset != 0 {
        // A later fragment: no UDP header to read.
        return Ok(Packet::Udp(Udp {
            destination: ipv4_mapped(destination),
            destination_port: 0,
            payload: 0,
            payload_len: 0,
            fragmented,
        }));
    }
    let l4 = l3 + header_len;
    let l4_present = total_len - header_len;
    if l4_present < UDP_HEADER {
        return Err(Reason::Malformed);
    }
    let destination_port = frame.read_u16(l4 + 2).ok_or(Reason::Malformed)?;
    let udp_len = frame.read_u16(l4 + 4).ok_or(Reason::Malformed)? as usize;
    if udp_len < UDP_HEADER || (!fragmented && udp_len > l4_present) {
        return Err(Reason::Malformed);
    }
    let payload_len = if fragmented { l4_present } else { udp_len } - UDP_HEADER;
    Ok(Packet::Udp(Udp {
        destination: ipv4_mapped(destination),
        destination_port,
        payload: l4 + UDP_HEADER,
        payload_len,
        fragmented,
    }))
}
