//! Whole frames from their parts, for the slow path and for tests: one frame, or the IP
//! fragments of a datagram too large for the link.

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
    /// IPv4 identification, and the IPv6 fragment header's identification when the
    /// datagram is fragmented.
    pub identification: u16,
    /// IPv4 header options (a multiple of 4 bytes).
    pub ipv4_options: &'a [u8],
}

/// Why a frame cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// Source and destination are of different address families.
    MixedFamilies,
    /// The MTU leaves no room for eight bytes of data after the IP headers.
    MtuTooSmall,
    /// The datagram is longer than an IP packet can be.
    TooLong,
}

/// The IP header of one packet of the datagram: which bytes of the UDP datagram it
/// carries, and whether more follow.
#[derive(Clone, Copy)]
struct Piece {
    offset: usize,
    len: usize,
    more_fragments: bool,
}

impl UdpFrame<'_> {
    /// The frame's bytes, with correct IPv4 header and UDP checksums.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BuildError> {
        let datagram = self.datagram()?;
        self.packet(&datagram, None)
    }

    /// The datagram as IP fragments (RFC 791 §2.3, RFC 8200 §4.5) that fit `mtu` bytes of
    /// IP packet, in order; one unfragmented frame when it fits.
    pub fn fragments(&self, mtu: usize) -> Result<Vec<Vec<u8>>, BuildError> {
        let datagram = self.datagram()?;
        let whole = self.ip_header_len(false) + datagram.len();
        if whole <= mtu {
            return Ok(alloc::vec![self.packet(&datagram, None)?]);
        }
        // Fragment data comes in multiples of 8 bytes, except in the last fragment.
        let room = mtu.saturating_sub(self.ip_header_len(true)) / 8 * 8;
        if room == 0 {
            return Err(BuildError::MtuTooSmall);
        }
        let mut fragments = Vec::new();
        let mut offset = 0;
        while offset < datagram.len() {
            let len = room.min(datagram.len() - offset);
            let piece = Piece {
                offset,
                len,
                more_fragments: offset + len < datagram.len(),
            };
            fragments.push(self.packet(&datagram, Some(piece))?);
            offset += len;
        }
        Ok(fragments)
    }

    /// The UDP header with its checksum, then the payload.
    fn datagram(&self) -> Result<Vec<u8>, BuildError> {
        let (source, destination) = self.addresses()?;
        if udp::HEADER_LEN + self.payload.len() > usize::from(u16::MAX) {
            return Err(BuildError::TooLong);
        }
        let mut datagram = alloc::vec![0u8; udp::HEADER_LEN + self.payload.len()];
        datagram[udp::HEADER_LEN..].copy_from_slice(self.payload);
        udp::Repr {
            source_port: self.source_port,
            destination_port: self.destination_port,
        }
        .emit(&mut datagram, self.payload.len(), &source, &destination);
        Ok(datagram)
    }

    /// Source and destination as byte strings of one family.
    fn addresses(&self) -> Result<(Vec<u8>, Vec<u8>), BuildError> {
        match (self.source, self.destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                Ok((source.octets().to_vec(), destination.octets().to_vec()))
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                Ok((source.octets().to_vec(), destination.octets().to_vec()))
            }
            _ => Err(BuildError::MixedFamilies),
        }
    }

    /// Bytes of the IP headers of one packet, fragment header included for IPv6.
    fn ip_header_len(&self, fragment: bool) -> usize {
        match self.destination {
            IpAddr::V4(_) => ipv4::MIN_HEADER_LEN + self.ipv4_options.len(),
            IpAddr::V6(_) if fragment => ipv6::HEADER_LEN + ipv6::FRAGMENT_HEADER_LEN,
            IpAddr::V6(_) => ipv6::HEADER_LEN,
        }
    }

    /// One frame carrying `piece` of `datagram`, or all of it when `piece` is `None`.
    fn packet(&self, datagram: &[u8], piece: Option<Piece>) -> Result<Vec<u8>, BuildError> {
        let Piece {
            offset,
            len,
            more_fragments,
        } = piece.unwrap_or(Piece {
            offset: 0,
            len: datagram.len(),
            more_fragments: false,
        });
        let ethertype = match self.destination {
            IpAddr::V4(_) => ethernet::ETHERTYPE_IPV4,
            IpAddr::V6(_) => ethernet::ETHERTYPE_IPV6,
        };
        let ethernet = ethernet::Repr {
            ethertype,
            ..self.ethernet
        };
        let l3 = ethernet.header_len();
        let ip_len = self.ip_header_len(piece.is_some());
        let mut frame = alloc::vec![0u8; l3 + ip_len + len];
        ethernet.emit(&mut frame);
        frame[l3 + ip_len..].copy_from_slice(&datagram[offset..offset + len]);
        match (self.source, self.destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                let flags = if more_fragments {
                    ipv4::MORE_FRAGMENTS
                } else {
                    0
                };
                ipv4::Repr {
                    source: source.octets(),
                    destination: destination.octets(),
                    protocol: udp::PROTOCOL,
                    ttl: self.ttl,
                    identification: self.identification,
                    flags_and_offset: flags | (offset / 8) as u16,
                    options: self.ipv4_options,
                    payload_len: len,
                }
                .emit(&mut frame[l3..]);
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                let extension = if piece.is_some() {
                    ipv6::FRAGMENT_HEADER_LEN
                } else {
                    0
                };
                ipv6::Repr {
                    source: source.octets(),
                    destination: destination.octets(),
                    next_header: if piece.is_some() {
                        ipv6::NEXT_HEADER_FRAGMENT
                    } else {
                        udp::PROTOCOL
                    },
                    hop_limit: self.ttl,
                    payload_len: extension + len,
                }
                .emit(&mut frame[l3..]);
                if piece.is_some() {
                    ipv6::FragmentRepr {
                        next_header: udp::PROTOCOL,
                        offset,
                        more_fragments,
                        identification: u32::from(self.identification),
                    }
                    .emit(&mut frame[l3 + ipv6::HEADER_LEN..]);
                }
            }
            _ => return Err(BuildError::MixedFamilies),
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn frame(source: IpAddr, destination: IpAddr, payload: &[u8]) -> UdpFrame<'_> {
        UdpFrame {
            ethernet: ethernet::Repr {
                destination: [2, 0, 0, 0, 0, 2],
                source: [2, 0, 0, 0, 0, 1],
                vlans: [None, None],
                ethertype: 0,
            },
            source,
            destination,
            source_port: 5062,
            destination_port: 5060,
            payload,
            ttl: 64,
            identification: 0x4242,
            ipv4_options: &[],
        }
    }

    /// The UDP datagram the fragments carry, put back together from their offsets.
    fn reassemble_ipv4(fragments: &[Vec<u8>]) -> Vec<u8> {
        let mut datagram = Vec::new();
        for (index, bytes) in fragments.iter().enumerate() {
            let packet = ipv4::Packet::new_checked(&bytes[14..]).unwrap();
            assert!(packet.verify_checksum());
            assert_eq!(packet.identification(), 0x4242);
            assert_eq!(packet.fragment_offset(), datagram.len());
            assert_eq!(packet.more_fragments(), index + 1 < fragments.len());
            datagram.extend_from_slice(packet.payload());
        }
        datagram
    }

    #[test]
    fn ipv4_fragments_carry_the_datagram_in_order() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let v4 = |last| IpAddr::V4(Ipv4Addr::new(198, 51, 100, last));
        let built = frame(v4(10), v4(100), &payload);
        let fragments = built.fragments(1500).unwrap();
        assert_eq!(fragments.len(), 4);
        assert!(fragments.iter().all(|f| f.len() - 14 <= 1500));
        let whole = built.to_bytes().unwrap();
        assert_eq!(reassemble_ipv4(&fragments), whole[14 + 20..]);
        // A datagram that fits stays whole.
        assert_eq!(
            frame(v4(10), v4(100), b"x").fragments(1500).unwrap().len(),
            1
        );
        assert_eq!(built.fragments(27), Err(BuildError::MtuTooSmall));
    }

    #[test]
    fn ipv6_fragments_have_a_fragment_header() {
        let payload = [7u8; 3000];
        let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last));
        let built = frame(v6(0x10), v6(0x100), &payload);
        let fragments = built.fragments(1280).unwrap();
        assert_eq!(fragments.len(), 3);
        let mut datagram = Vec::new();
        for (index, bytes) in fragments.iter().enumerate() {
            let packet = ipv6::Packet::new_checked(&bytes[14..]).unwrap();
            assert_eq!(packet.next_header(), ipv6::NEXT_HEADER_FRAGMENT);
            assert!(bytes.len() - 14 <= 1280);
            let header = ipv6::FragmentRepr::parse(packet.payload()).unwrap();
            assert_eq!(header.offset, datagram.len());
            assert_eq!(header.more_fragments, index + 1 < fragments.len());
            assert_eq!(header.identification, 0x4242);
            datagram.extend_from_slice(&packet.payload()[ipv6::FRAGMENT_HEADER_LEN..]);
        }
        assert_eq!(datagram, built.to_bytes().unwrap()[14 + 40..]);
    }
}
