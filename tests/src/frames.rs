//! Frames the tests send: SIP over UDP from the lab client to the VIP, as bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sipxdp_common::wire::{build::UdpFrame, ethernet};

/// MAC of the client in frames built here.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x01, 0x00, 0x0a];
/// MAC of the balancer in frames built here.
pub const BALANCER_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x01, 0x00, 0x02];
/// The IPv4 VIP of the frames built here.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
/// The client address of the frames built here.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The IPv6 VIP of the frames built here.
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
/// The IPv6 client address of the frames built here.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);

/// What to vary in a test frame; `Default` is a plain IPv4 datagram to `VIP:5060`.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub vlans: [Option<u16>; 2],
    pub destination: IpAddr,
    pub destination_port: u16,
    pub ipv4_options: Vec<u8>,
    /// IPv4 identification, or the IPv6 fragment header's when fragmented.
    pub identification: u16,
}

impl Default for FrameSpec {
    fn default() -> Self {
        Self {
            vlans: [None, None],
            destination: IpAddr::V4(VIP),
            destination_port: 5060,
            ipv4_options: Vec::new(),
            identification: 0x4242,
        }
    }
}

/// The client address of the family of `destination`.
pub fn client_address(destination: IpAddr) -> IpAddr {
    match destination {
        IpAddr::V4(_) => IpAddr::V4(CLIENT),
        IpAddr::V6(_) => IpAddr::V6(CLIENT_V6),
    }
}

fn udp_datagram<'a>(spec: &'a FrameSpec, payload: &'a [u8]) -> UdpFrame<'a> {
    UdpFrame {
        ethernet: ethernet::Repr {
            destination: BALANCER_MAC,
            source: CLIENT_MAC,
            vlans: spec.vlans,
            ethertype: 0,
        },
        source: client_address(spec.destination),
        destination: spec.destination,
        source_port: 5062,
        destination_port: spec.destination_port,
        payload,
        ttl: 64,
        identification: spec.identification,
        ipv4_options: &spec.ipv4_options,
    }
}

/// A frame from the client's port 5062 carrying `payload`.
pub fn udp_frame(spec: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    udp_datagram(spec, payload)
        .to_bytes()
        .expect("a datagram of one family that fits in an IP packet")
}

/// The frames of the same datagram as IP fragments of at most `mtu` bytes, in order.
pub fn udp_fragments(spec: &FrameSpec, payload: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    udp_datagram(spec, payload)
        .fragments(mtu)
        .expect("a datagram of one family that fits in an IP packet")
}
