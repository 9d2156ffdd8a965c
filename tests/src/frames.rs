//! Frames the tests send: SIP over UDP or TCP from the lab client to the VIP, as bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sipxdp_common::wire::{build::UdpFrame, checksum, ethernet, ipv4, ipv6};

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
    /// The sender; `None`: the client of the destination's family ([`client_address`]).
    pub source: Option<IpAddr>,
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
            source: None,
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
        source: spec
            .source
            .unwrap_or_else(|| client_address(spec.destination)),
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

/// TCP flags (RFC 9293 §3.1).
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;
/// The IANA protocol number of TCP.
const TCP: u8 = 6;

/// A TCP segment to build, from [`CLIENT_MAC`] to [`BALANCER_MAC`].
#[derive(Clone, Debug)]
pub struct TcpSegment {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub flags: u8,
    /// Header options, a multiple of 4 bytes.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl TcpSegment {
    /// A SYN from `source` to `destination` with a maximum segment size option.
    pub fn syn(source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            source,
            destination,
            flags: TCP_SYN,
            options: vec![2, 4, 0x05, 0xb4],
            payload: Vec::new(),
        }
    }

    /// A data segment of the same connection carrying `payload`.
    pub fn data(source: SocketAddr, destination: SocketAddr, payload: &[u8]) -> Self {
        Self {
            source,
            destination,
            flags: TCP_ACK | TCP_PSH,
            options: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    /// The frame, with correct IPv4 header and TCP checksums.
    ///
    /// # Panics
    ///
    /// When the addresses are of different families.
    pub fn frame(&self) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        let mut segment = vec![0u8; header_len + self.payload.len()];
        segment[0..2].copy_from_slice(&self.source.port().to_be_bytes());
        segment[2..4].copy_from_slice(&self.destination.port().to_be_bytes());
        segment[4..8].copy_from_slice(&0x5349_5000u32.to_be_bytes());
        segment[12] = ((header_len / 4) as u8) << 4;
        segment[13] = self.flags;
        segment[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        segment[20..header_len].copy_from_slice(&self.options);
        segment[header_len..].copy_from_slice(&self.payload);
        let (source, destination, ethertype, mut ip_header) =
            match (self.source.ip(), self.destination.ip()) {
                (IpAddr::V4(source), IpAddr::V4(destination)) => {
                    let mut header = vec![0u8; ipv4::MIN_HEADER_LEN];
                    ipv4::Repr {
                        source: source.octets(),
                        destination: destination.octets(),
                        protocol: TCP,
                        ttl: 64,
                        identification: 0x4242,
                        flags_and_offset: ipv4::DONT_FRAGMENT,
                        options: &[],
                        payload_len: segment.len(),
                    }
                    .emit(&mut header);
                    let (source, destination) = (source.octets(), destination.octets());
                    (
                        source.to_vec(),
                        destination.to_vec(),
                        ethernet::ETHERTYPE_IPV4,
                        header,
                    )
                }
                (IpAddr::V6(source), IpAddr::V6(destination)) => {
                    let mut header = vec![0u8; ipv6::HEADER_LEN];
                    ipv6::Repr {
                        source: source.octets(),
                        destination: destination.octets(),
                        next_header: TCP,
                        hop_limit: 64,
                        payload_len: segment.len(),
                    }
                    .emit(&mut header);
                    let (source, destination) = (source.octets(), destination.octets());
                    (
                        source.to_vec(),
                        destination.to_vec(),
                        ethernet::ETHERTYPE_IPV6,
                        header,
                    )
                }
                _ => panic!("a TCP segment between addresses of one family"),
            };
        // The pseudo-header: addresses, protocol, segment length (RFC 9293 §3.1).
        let mut pseudo = [source.as_slice(), destination.as_slice()].concat();
        pseudo.extend_from_slice(&[0, TCP]);
        pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        let sum = checksum::finish(checksum::sum(checksum::sum(0, &pseudo), &segment));
        segment[16..18].copy_from_slice(&sum.to_be_bytes());

        let ethernet = ethernet::Repr {
            destination: BALANCER_MAC,
            source: CLIENT_MAC,
            vlans: [None, None],
            ethertype,
        };
        let mut frame = vec![0u8; ethernet.header_len()];
        ethernet.emit(&mut frame);
        frame.append(&mut ip_header);
        frame.extend_from_slice(&segment);
        frame
    }
}
