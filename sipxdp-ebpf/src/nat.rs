//! NAT mode: the destination of a datagram for a VIP becomes its backend's address and
//! port, the source of a datagram from a backend becomes the VIP's, checksums are updated
//! incrementally (RFC 1624), and the kernel's FIB gives the next hop (kernel 4.18).

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_fib_lookup, programs::XdpContext};
use sipxdp_common::{
    maps::{Address, VipKey},
    outcome::Reason,
    wire::checksum::{update_words, words},
};

use crate::{
    maps::{FIB_LOOKUP, TX_PORTS},
    packet::{Frame, Layout},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const FIB_SUCCESS: i64 = 0;
const FIB_NOT_FORWARDED: i64 = 4;
const FIB_NO_NEIGHBOUR: i64 = 7;
/// `struct bpf_fib_lookup` (include/uapi/linux/bpf.h), with its unions spelled out as
/// the fields sipxdp uses: 64 bytes, kept in a per-CPU map rather than on the stack.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FibLookup {
    family: u8,
    l4_protocol: u8,
    source_port: u16,
    destination_port: u16,
    total_length: u16,
    ifindex: u32,
    flow_info: u32,
    source: Address,
    destination: Address,
    vlan_protocol: u16,
    vlan_tci: u16,
    source_mac: [u8; 6],
    destination_mac: [u8; 6],
}

/// Which end of the datagram a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// Where the headers to rewrite are, and whether the frame has a UDP header (a later
/// fragment has not).
#[derive(Clone, Copy)]
pub struct Headers {
    pub layout: Layout,
    pub udp: bool,
}

impl Headers {
    /// Frame offset of the address of `end`.
    fn address(&self, end: End) -> usize {
        match (self.layout.ipv6, end) {
            (false, End::Source) => self.layout.l3 + 12,
            (false, End::Destination) => self.layout.l3 + 16,
            (true, End::Source) => self.layout.l3 + 8,
            (true, End::Destination) => self.layout.l3 + 24,
        }
    }

    /// Frame offset of the UDP port of `end`.
    fn port(&self, end: End) -> usize {
        match end {
            End::Source => self.layout.l4,
            End::Destination => self.layout.l4 + 2,
        }
    }
}

/// The (address, port, UDP) of the datagram's source, as `NAT_RETURNS` keys it.
#[inline(always)]
pub fn source_key(frame: &Frame, layout: Layout, source_port: u16) -> Option<VipKey> {
    let headers = Headers { layout, udp: true };
    let mut key = VipKey {
        port: source_port,
        protocol: sipxdp_common::maps::PROTOCOL_UDP,
        ..VipKey::default()
    };
    if layout.ipv6 {
        key.address = frame.read(headers.address(End::Source))?;
    } else {
        let octets: [u8; 4] = frame.read(headers.address(End::Source))?;
        key.address = sipxdp_common::maps::ipv4_mapped(octets);
    }
    Some(key)
}

/// Rewrites `end` to `address` and `port` and sends the datagram to its next hop.
/// `Err` is the reason to pass it to the stack: rewritten when only the next hop's
/// neighbour entry is missing, so that the stack resolves it and forwards the datagram,
/// untouched otherwise. A datagram whose new route ends at this host (a reply to the
/// daemon's own health check, say) is no NAT traffic: it is passed untouched as
/// `not_vip` when its source was to change, `no_route` when its destination was.
#[inline(always)]
pub fn rewrite_and_route(
    ctx: &XdpContext,
    frame: &Frame,
    headers: &Headers,
    end: End,
    address: &Address,
    port: u16,
) -> Result<u32, Reason> {
    let ttl_at = headers.layout.l3 + if headers.layout.ipv6 { 7 } else { 8 };
    let ttl: u8 = frame.read(ttl_at).ok_or(Reason::Malformed)?;
    if ttl <= 1 {
        return Err(Reason::TtlExceeded);
    }
    let (result, fib) = lookup(ctx, frame, headers.layout, end, address)?;
    match result {
        FIB_SUCCESS => {}
        FIB_NO_NEIGHBOUR => {
            rewrite(frame, headers, end, address, port)?;
            return Err(Reason::NoNeighbour);
        }
        FIB_NOT_FORWARDED if end == End::Source => return Err(Reason::NotVip),
        _ => return Err(Reason::NoRoute),
    }
    // SAFETY: reading a field of the context the kernel passed in.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    let xdp = if fib.ifindex == ingress {
        xdp_action::XDP_TX
    } else {
        TX_PORTS
            .redirect(fib.ifindex, xdp_action::XDP_PASS as u64)
            .map_err(|_| Reason::NoRoute)?
    };
    rewrite(frame, headers, end, address, port)?;
    decrement_ttl(frame, headers.layout)?;
    let (Some(destination), Some(source)) =
        (frame.pointer::<[u8; 6]>(0), frame.pointer::<[u8; 6]>(6))
    else {
        return Err(Reason::Malformed);
    };
    // SAFETY: `pointer` checked both ranges against the frame end.
    unsafe {
        destination.write_unaligned(fib.destination_mac);
        source.write_unaligned(fib.source_mac);
    }
    Ok(xdp)
}

/// Rewrites `end` of the frame to `address` and `port`, by family.
#[inline(always)]
fn rewrite(
    frame: &Frame,
    headers: &Headers,
    end: End,
    address: &Address,
    port: u16,
) -> Result<(), Reason> {
    if headers.layout.ipv6 {
        rewrite_ipv6(frame, headers, end, address, port)
    } else {
        rewrite_ipv4(frame, headers, end, address, port)
    }
}

/// Asks the FIB for the next hop of the datagram as it will be once `end` is `address`
/// (kernel 4.18), before anything in the frame changes. Returns the helper's result and
/// the answer, in per-CPU map memory.
#[inline(always)]
fn lookup<'a>(
    ctx: &XdpContext,
    frame: &Frame,
    layout: Layout,
    end: End,
    address: &Address,
) -> Result<(i64, &'a FibLookup), Reason> {
    let fib = FIB_LOOKUP.get_ptr_mut(0).ok_or(Reason::NoRoute)?;
    // SAFETY: a per-CPU map value; nothing else runs on this CPU meanwhile.
    let fib = unsafe { &mut *fib };
    // SAFETY: reading a field of the context the kernel passed in.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    *fib = FibLookup {
        family: if layout.ipv6 { AF_INET6 } else { AF_INET },
        l4_protocol: sipxdp_common::maps::PROTOCOL_UDP,
        source_port: 0,
        destination_port: 0,
        total_length: 0,
        ifindex: ingress,
        flow_info: 0,
        source: [0; 16],
        destination: [0; 16],
        vlan_protocol: 0,
        vlan_tci: 0,
        source_mac: [0; 6],
        destination_mac: [0; 6],
    };
    if layout.ipv6 {
        fib.source = frame.read(layout.l3 + 8).ok_or(Reason::Malformed)?;
        fib.destination = frame.read(layout.l3 + 24).ok_or(Reason::Malformed)?;
        fib.total_length = frame.read_u16(layout.l3 + 4).ok_or(Reason::Malformed)? + 40;
        match end {
            End::Source => fib.source = *address,
            End::Destination => fib.destination = *address,
        }
    } else {
        let source: [u8; 4] = frame.read(layout.l3 + 12).ok_or(Reason::Malformed)?;
        let destination: [u8; 4] = frame.read(layout.l3 + 16).ok_or(Reason::Malformed)?;
        fib.source[..4].copy_from_slice(&source);
        fib.destination[..4].copy_from_slice(&destination);
        let new = [address[12], address[13], address[14], address[15]];
        match end {
            End::Source => fib.source[..4].copy_from_slice(&new),
            End::Destination => fib.destination[..4].copy_from_slice(&new),
        }
        fib.total_length = frame.read_u16(layout.l3 + 2).ok_or(Reason::Malformed)?;
    }
    // SAFETY: `fib` points to a 64-byte map value laid out as `struct bpf_fib_lookup`.
    let result = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            (fib as *mut FibLookup).cast(),
            core::mem::size_of::<FibLookup>() as i32,
            0,
        )
    };
    Ok((result, fib))
}

/// The 16-byte address field at `at` becomes `address`; the UDP checksum (mandatory in
/// IPv6) follows.
#[inline(always)]
fn rewrite_ipv6(
    frame: &Frame,
    headers: &Headers,
    end: End,
    address: &Address,
    port: u16,
) -> Result<(), Reason> {
    let field = frame
        .pointer::<Address>(headers.address(end))
        .ok_or(Reason::Malformed)?;
    // SAFETY: `pointer` checked the range against the frame end.
    let old = unsafe { field.read_unaligned() };
    // SAFETY: as above.
    unsafe { field.write_unaligned(*address) };
    if headers.udp {
        update_udp(
            frame,
            headers,
            end,
            &words::<16, 8>(&old),
            &words::<16, 8>(address),
            port,
        )?;
    }
    Ok(())
}

/// The IPv4 address of `end` becomes the last four bytes of the IPv4-mapped `address`;
/// the header checksum and the UDP checksum (when the sender set one) follow.
#[inline(always)]
fn rewrite_ipv4(
    frame: &Frame,
    headers: &Headers,
    end: End,
    address: &Address,
    port: u16,
) -> Result<(), Reason> {
    let field = frame
        .pointer::<[u8; 4]>(headers.address(end))
        .ok_or(Reason::Malformed)?;
    let checksum = frame
        .pointer::<[u8; 2]>(headers.layout.l3 + 10)
        .ok_or(Reason::Malformed)?;
    let new = [address[12], address[13], address[14], address[15]];
    // SAFETY: `pointer` checked the range against the frame end.
    let old = unsafe { field.read_unaligned() };
    let old_words = words::<4, 2>(&old);
    let new_words = words::<4, 2>(&new);
    // SAFETY: as above.
    unsafe { field.write_unaligned(new) };
    adjust_checksum(checksum, &old_words, &new_words);
    if headers.udp {
        update_udp(frame, headers, end, &old_words, &new_words, port)?;
    }
    Ok(())
}

/// The UDP port of `end` becomes `port`, and the UDP checksum follows the port and the
/// pseudo-header's address change (`old` to `new`). An IPv4 checksum of zero means "none"
/// and stays zero; a computed zero is sent as all ones (RFC 768).
#[inline(always)]
fn update_udp<const W: usize>(
    frame: &Frame,
    headers: &Headers,
    end: End,
    old: &[u16; W],
    new: &[u16; W],
    port: u16,
) -> Result<(), Reason> {
    let port_field = frame
        .pointer::<[u8; 2]>(headers.port(end))
        .ok_or(Reason::Malformed)?;
    let checksum = frame
        .pointer::<[u8; 2]>(headers.layout.l4 + 6)
        .ok_or(Reason::Malformed)?;
    // SAFETY: `pointer` checked both ranges against the frame end.
    unsafe {
        let old_port = u16::from_be_bytes(port_field.read_unaligned());
        port_field.write_unaligned(port.to_be_bytes());
        let current = u16::from_be_bytes(checksum.read_unaligned());
        if current == 0 && !headers.layout.ipv6 {
            return Ok(());
        }
        let updated = update_words(current, old, new);
        let updated = update_words(updated, &[old_port], &[port]);
        let updated = if updated == 0 { 0xffff } else { updated };
        checksum.write_unaligned(updated.to_be_bytes());
    }
    Ok(())
}

/// One hop less; the IPv4 header checksum follows (the TTL shares a word with the
/// protocol).
#[inline(always)]
fn decrement_ttl(frame: &Frame, layout: Layout) -> Result<(), Reason> {
    if layout.ipv6 {
        let hop_limit = frame
            .pointer::<u8>(layout.l3 + 7)
            .ok_or(Reason::Malformed)?;
        // SAFETY: `pointer` checked the range against the frame end.
        unsafe { *hop_limit = (*hop_limit).saturating_sub(1) };
        return Ok(());
    }
    let ttl_and_protocol = frame
        .pointer::<[u8; 2]>(layout.l3 + 8)
        .ok_or(Reason::Malformed)?;
    let checksum = frame
        .pointer::<[u8; 2]>(layout.l3 + 10)
        .ok_or(Reason::Malformed)?;
    // SAFETY: `pointer` checked the range against the frame end.
    let old = unsafe { ttl_and_protocol.read_unaligned() };
    let new = [old[0].saturating_sub(1), old[1]];
    // SAFETY: as above.
    unsafe { ttl_and_protocol.write_unaligned(new) };
    adjust_checksum(
        checksum,
        &[u16::from_be_bytes(old)],
        &[u16::from_be_bytes(new)],
    );
    Ok(())
}

/// The IPv4 header checksum at `field` after its words `old` became `new`.
#[inline(always)]
fn adjust_checksum<const W: usize>(field: *mut [u8; 2], old: &[u16; W], new: &[u16; W]) {
    // SAFETY: the callers got `field` from `Frame::pointer`, which checked its range.
    unsafe {
        let current = u16::from_be_bytes(field.read_unaligned());
        field.write_unaligned(update_words(current, old, new).to_be_bytes());
    }
}
