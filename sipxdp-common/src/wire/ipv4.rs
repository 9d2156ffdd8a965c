//! IPv4 headers (RFC 791), options included.

use super::{WireError, checksum, read_u16, write_u16};

pub const MIN_HEADER_LEN: usize = 20;
/// "More fragments" flag and fragment offset mask of the flags/offset field.
pub const MORE_FRAGMENTS: u16 = 0x2000;
pub const DONT_FRAGMENT: u16 = 0x4000;
pub const OFFSET_MASK: u16 = 0x1fff;

mod field {
    pub const VERSION_AND_LENGTH: usize = 0;
    pub const TOTAL_LENGTH: usize = 2;
    pub const IDENTIFICATION: usize = 4;
    pub const FLAGS_AND_OFFSET: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SOURCE: core::ops::Range<usize> = 12..16;
    pub const DESTINATION: core::ops::Range<usize> = 16..20;
}

/// A view of an IPv4 packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of `buffer`, checked to hold a version-4 header and the total length it
    /// declares (trailing bytes, e.g. Ethernet padding, are allowed).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self { buffer };
        let bytes = packet.buffer.as_ref();
        if bytes.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if bytes[0] >> 4 != 4 || packet.header_len() < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = packet.total_len();
        if total < packet.header_len() {
            return Err(WireError::Malformed);
        }
        if bytes.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VERSION_AND_LENGTH] & 0x0f) as usize) * 4
    }

    pub fn total_len(&self) -> usize {
        read_u16(self.buffer.as_ref(), field::TOTAL_LENGTH) as usize
    }

    pub fn identification(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENTIFICATION)
    }

    pub fn flags_and_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS_AND_OFFSET)
    }

    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> usize {
        ((self.flags_and_offset() & OFFSET_MASK) as usize) * 8
    }

    pub fn more_fragments(&self) -> bool {
        self.flags_and_offset() & MORE_FRAGMENTS != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn source(&self) -> [u8; 4] {
        let mut address = [0; 4];
        address.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        address
    }

    pub fn destination(&self) -> [u8; 4] {
        let mut address = [0; 4];
        address.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        address
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(0, &self.buffer.as_ref()[..self.header_len()]) as u64)
            == 0xffff
    }

    /// The bytes between the header and the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

/// An IPv4 header to emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub source: [u8; 4],
    pub destination: [u8; 4],
    pub protocol: u8,
    pub ttl: u8,
    pub identification: u16,
    /// Flags and fragment offset (in 8-byte units), as on the wire.
    pub flags_and_offset: u16,
    /// Options, a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
    /// Bytes after the header.
    pub payload_len: usize,
}

impl Repr<'_> {
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Writes the header, with its checksum, at the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let header_len = self.header_len();
        buffer[field::VERSION_AND_LENGTH] = 0x40 | (header_len / 4) as u8;
        buffer[1] = 0;
        write_u16(
            buffer,
            field::TOTAL_LENGTH,
            (header_len + self.payload_len) as u16,
        );
        write_u16(buffer, field::IDENTIFICATION, self.identification);
        write_u16(buffer, field::FLAGS_AND_OFFSET, self.flags_and_offset);
        buffer[field::TTL] = self.ttl;
        buffer[field::PROTOCOL] = self.protocol;
        write_u16(buffer, field::CHECKSUM, 0);
        buffer[field::SOURCE].copy_from_slice(&self.source);
        buffer[field::DESTINATION].copy_from_slice(&self.destination);
        buffer[MIN_HEADER_LEN..header_len].copy_from_slice(self.options);
        let sum = checksum::finish(checksum::sum(0, &buffer[..header_len]));
        write_u16(buffer, field::CHECKSUM, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_and_parses_with_options() {
        let repr = Repr {
            source: [198, 51, 100, 10],
            destination: [198, 51, 100, 100],
            protocol: 17,
            ttl: 64,
            identification: 0x1234,
            flags_and_offset: MORE_FRAGMENTS | 3,
            options: &[1, 1, 1, 0],
            payload_len: 4,
        };
        let mut buffer = [0u8; 28];
        repr.emit(&mut buffer);
        let packet = Packet::new_checked(&buffer[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.total_len(), 28);
        assert!(packet.verify_checksum());
        assert!(packet.more_fragments());
        assert_eq!(packet.fragment_offset(), 24);
        assert_eq!(packet.destination(), [198, 51, 100, 100]);
        assert_eq!(packet.payload().len(), 4);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Packet::new_checked(&[0x45u8; 10][..]).unwrap_err(),
            WireError::Truncated
        );
        let mut header = [0u8; 20];
        header[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&header[..]).unwrap_err(),
            WireError::Malformed
        );
        header[0] = 0x45;
        header[3] = 30;
        assert_eq!(
            Packet::new_checked(&header[..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
