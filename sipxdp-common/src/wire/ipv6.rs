//! IPv6 fixed headers (RFC 8200) and the fragment extension header.

use super::{WireError, read_u16, write_u16};

pub const HEADER_LEN: usize = 40;
pub const FRAGMENT_HEADER_LEN: usize = 8;
pub const NEXT_HEADER_FRAGMENT: u8 = 44;

mod field {
    pub const PAYLOAD_LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SOURCE: core::ops::Range<usize> = 8..24;
    pub const DESTINATION: core::ops::Range<usize> = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of `buffer`, checked to hold a version-6 header and its declared payload.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self { buffer };
        let bytes = packet.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if bytes[0] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        if bytes.len() < HEADER_LEN + packet.payload_len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    pub fn payload_len(&self) -> usize {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LENGTH) as usize
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn source(&self) -> [u8; 16] {
        let mut address = [0; 16];
        address.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        address
    }

    pub fn destination(&self) -> [u8; 16] {
        let mut address = [0; 16];
        address.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        address
    }

    /// The bytes after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }
}

/// An IPv6 fixed header to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub source: [u8; 16],
    pub destination: [u8; 16],
    pub next_header: u8,
    pub hop_limit: u8,
    /// Bytes after the fixed header (extension headers included).
    pub payload_len: usize,
}

impl Repr {
    /// Writes the header at the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        buffer[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        write_u16(buffer, field::PAYLOAD_LENGTH, self.payload_len as u16);
        buffer[field::NEXT_HEADER] = self.next_header;
        buffer[field::HOP_LIMIT] = self.hop_limit;
        buffer[field::SOURCE].copy_from_slice(&self.source);
        buffer[field::DESTINATION].copy_from_slice(&self.destination);
    }
}

/// A fragment header (RFC 8200 4.5) to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentRepr {
    pub next_header: u8,
    /// Offset of this fragment's data in bytes (a multiple of 8).
    pub offset: usize,
    pub more_fragments: bool,
    pub identification: u32,
}

impl FragmentRepr {
    /// Parses the fragment header at the start of `buffer`.
    pub fn parse(buffer: &[u8]) -> Result<Self, WireError> {
        if buffer.len() < FRAGMENT_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let offset_and_flags = read_u16(buffer, 2);
        Ok(Self {
            next_header: buffer[0],
            offset: (offset_and_flags & 0xfff8) as usize,
            more_fragments: offset_and_flags & 1 != 0,
            identification: u32::from_be_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]),
        })
    }

    pub fn emit(&self, buffer: &mut [u8]) {
        buffer[0] = self.next_header;
        buffer[1] = 0;
        write_u16(
            buffer,
            2,
            (self.offset as u16 & 0xfff8) | self.more_fragments as u16,
        );
        buffer[4..8].copy_from_slice(&self.identification.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let repr = Repr {
            source: [
                0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ],
            destination: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            next_header: NEXT_HEADER_FRAGMENT,
            hop_limit: 64,
            payload_len: 8,
        };
        let fragment = FragmentRepr {
            next_header: 17,
            offset: 1448,
            more_fragments: true,
            identification: 0xdead_beef,
        };
        let mut buffer = [0u8; 48];
        repr.emit(&mut buffer);
        fragment.emit(&mut buffer[40..]);
        let packet = Packet::new_checked(&buffer[..]).unwrap();
        assert_eq!(packet.next_header(), NEXT_HEADER_FRAGMENT);
        assert_eq!(packet.destination(), repr.destination);
        assert_eq!(FragmentRepr::parse(packet.payload()).unwrap(), fragment);
    }
}
