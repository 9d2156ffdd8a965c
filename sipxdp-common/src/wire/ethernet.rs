//! Ethernet II frames with up to two VLAN tags (802.1Q, 802.1ad).

use super::{WireError, read_u16, write_u16};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

mod field {
    pub const DESTINATION: core::ops::Range<usize> = 0..6;
    pub const SOURCE: core::ops::Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
}

/// A view of an Ethernet frame.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view of `buffer`, checked to hold the Ethernet header and any VLAN tags.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self { buffer };
        frame.payload_offset()?;
        Ok(frame)
    }

    pub fn destination(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        mac
    }

    pub fn source(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        mac
    }

    /// VLAN IDs of the tags, outermost first.
    pub fn vlans(&self) -> ([Option<u16>; 2], u16) {
        let buffer = self.buffer.as_ref();
        let mut ids = [None, None];
        let mut ethertype = read_u16(buffer, field::ETHERTYPE);
        let mut at = HEADER_LEN;
        for id in &mut ids {
            if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                break;
            }
            *id = Some(read_u16(buffer, at) & 0x0fff);
            ethertype = read_u16(buffer, at + 2);
            at += VLAN_TAG_LEN;
        }
        (ids, ethertype)
    }

    /// The ethertype after any VLAN tags.
    pub fn ethertype(&self) -> u16 {
        self.vlans().1
    }

    fn payload_offset(&self) -> Result<usize, WireError> {
        let buffer = self.buffer.as_ref();
        if buffer.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut ethertype = read_u16(buffer, field::ETHERTYPE);
        let mut at = HEADER_LEN;
        for _ in 0..2 {
            if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                break;
            }
            if buffer.len() < at + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            ethertype = read_u16(buffer, at + 2);
            at += VLAN_TAG_LEN;
        }
        Ok(at)
    }

    /// The bytes after the headers.
    pub fn payload(&self) -> &[u8] {
        let at = self.payload_offset().unwrap_or(HEADER_LEN);
        &self.buffer.as_ref()[at..]
    }
}

/// An Ethernet header to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub destination: [u8; 6],
    pub source: [u8; 6],
    /// VLAN IDs, outermost first: the outer one as 802.1ad when there are two.
    pub vlans: [Option<u16>; 2],
    pub ethertype: u16,
}

impl Repr {
    /// Bytes of the header with its tags.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.vlans.iter().flatten().count() * VLAN_TAG_LEN
    }

    /// Writes the header at the start of `buffer` (which must hold `header_len()` bytes).
    pub fn emit(&self, buffer: &mut [u8]) {
        buffer[field::DESTINATION].copy_from_slice(&self.destination);
        buffer[field::SOURCE].copy_from_slice(&self.source);
        let tags = self.vlans.iter().flatten().count();
        let mut at = field::ETHERTYPE;
        for (index, id) in self.vlans.iter().flatten().enumerate() {
            let tpid = if index == 0 && tags == 2 {
                ETHERTYPE_QINQ
            } else {
                ETHERTYPE_VLAN
            };
            write_u16(buffer, at, tpid);
            write_u16(buffer, at + 2, id & 0x0fff);
            at += VLAN_TAG_LEN;
        }
        write_u16(buffer, at, self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_two_tags() {
        let repr = Repr {
            destination: [2, 0, 0, 0, 0, 1],
            source: [2, 0, 0, 0, 0, 2],
            vlans: [Some(100), Some(200)],
            ethertype: ETHERTYPE_IPV4,
        };
        let mut buffer = [0u8; 22 + 2];
        repr.emit(&mut buffer);
        let frame = Frame::new_checked(&buffer[..]).unwrap();
        assert_eq!(frame.destination(), repr.destination);
        assert_eq!(frame.source(), repr.source);
        assert_eq!(frame.vlans(), ([Some(100), Some(200)], ETHERTYPE_IPV4));
        assert_eq!(frame.payload().len(), 2);
        assert_eq!(&buffer[12..14], &ETHERTYPE_QINQ.to_be_bytes());
    }

    #[test]
    fn rejects_short_frames() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13][..]).unwrap_err(),
            WireError::Truncated
        );
        let mut tagged = [0u8; 16];
        tagged[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(
            Frame::new_checked(&tagged[..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
