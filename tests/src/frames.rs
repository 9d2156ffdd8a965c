//! Frames the tests send: SIP over UDP from the lab client to the VIP, as bytes.

use std::net::{IpAddr, Ipv4Addr};

use sipxdp_common::wire::{build::UdpFrame, ethernet};

/// MAC of the client in frames built here.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x01, 0x00, 0x0a];
/// MAC of the balancer in frames built here.
pub const BALANCER_MAC: [u8; 6] = [0x02, 0x53, 0x58, 0x01, 0x00, 0x02];
/// The IPv4 VIP of the frames built here.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
/// The client address of the frames built here.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// What to vary in a test frame; `Default` is a plain IPv4 datagram to `VIP:5060`.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub vlans: [Option<u16>; 2],
    pub destination: IpAddr,
    pub destination_port: u16,
    pub ipv4_options: Vec<u8>,
}

impl Default for FrameSpec {
    fn default() -> Self {
        Self {
            vlans: [None, None],
            destination: IpAddr::V4(VIP),
            destination_port: 5060,
            ipv4_options: Vec::new(),
        }
    }
}

/// A frame from the client's port 5062 carrying `payload`.
pub fn udp_frame(spec: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    let source = match spec.destination {
        IpAddr::V4(_) => IpAddr::V4(CLIENT),
        IpAddr::V6(_) => IpAddr::V6("2001:db8:1::10".parse().expect("a valid address")),
    };
    UdpFrame {
        ethernet: ethernet::Repr {
            destination: BALANCER_MAC,
            source: CLIENT_MAC,
            vlans: spec.vlans,
            ethertype: 0,
        },
        source,
        destination: spec.destination,
        source_port: 5062,
        destination_port: spec.destination_port,
        payload,
        ttl: 64,
        identification: 0x4242,
        ipv4_options: &spec.ipv4_options,
    }
    .to_bytes()
    .expect("both addresses of one family")
}
