//! Whole frames from their parts, for the slow path and for tests.

extern crate alloc;

use alloc::vec::Vec;
use core::net::IpAddr;

use super::{ethernet, ipv4, ipv6, udp};

/// A UDP datagram in an IPv4 or IPv6 packet in an Ethernet frame.
#[derive(Clone, Debug)]
pub struct UdpFrame<'a> {
    pub ethernet: ethernet::Repr,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    pub payload: &'a [u8],
    pub ttl: u8,
    /// IPv4 identification (and IPv6 fragment identification).
    pub identification: u16,
    /// IPv4 header options (a multiple of 4 bytes).
    pub ipv4_options: &'a [u8],
}

/// Mixed address families in one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixedFamilies;

impl UdpFrame<'_> {
    /// The frame's bytes, with correct IPv4 header and UDP checksums.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MixedFamilies> {
        let udp_len = udp::HEADER_LEN + self.payload.len();
        let (ip_len, ethertype) = match (self.source, self.destination) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (
                ipv4::MIN_HEADER_LEN + self.ipv4_options.len(),
                ethernet::ETHERTYPE_IPV4,
            ),
            (IpAddr::V6(_), IpAddr::V6(_)) => (ipv6::HEADER_LEN, ethernet::ETHERTYPE_IPV6),
            _ => return Err(MixedFamilies),
        };
        let ethernet = ethernet::Repr {
            ethertype,
            ..self.ethernet
        };
        let l3 = ethernet.header_len();
        let mut frame = alloc::vec![0u8; l3 + ip_len + udp_len];
        ethernet.emit(&mut frame);
        let l4 = l3 + ip_len;
        frame[l4 + udp::HEADER_LEN..].copy_from_slice(self.payload);
        let udp = udp::Repr {
            source_port: self.source_port,
            destination_port: self.destination_port,
        };
        match (self.source, self.destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                ipv4::Repr {
                    source: source.octets(),
                    destination: destination.octets(),
                    protocol: udp::PROTOCOL,
                    ttl: self.ttl,
                    identification: self.identification,
                    flags_and_offset: 0,
                    options: self.ipv4_options,
                    payload_len: udp_len,
                }
                .emit(&mut frame[l3..]);
                udp.emit(
                    &mut frame[l4..],
                    self.payload.len(),
                    &source.octets(),
                    &destination.octets(),
                );
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                ipv6::Repr {
                    source: source.octets(),
                    destination: destination.octets(),
                    next_header: udp::PROTOCOL,
                    hop_limit: self.ttl,
                    payload_len: udp_len,
                }
                .emit(&mut frame[l3..]);
                udp.emit(
                    &mut frame[l4..],
                    self.payload.len(),
                    &source.octets(),
                    &destination.octets(),
                );
            }
            _ => return Err(MixedFamilies),
        }
        Ok(frame)
    }
}
