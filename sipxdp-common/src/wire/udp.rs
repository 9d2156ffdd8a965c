//! UDP headers (RFC 768) with the checksum over the IPv4 or IPv6 pseudo-header.

use super::{WireError, checksum, read_u16, write_u16};

pub const HEADER_LEN: usize = 8;
pub const PROTOCOL: u8 = 17;

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// A view of `buffer`, checked to hold the header and the length it declares.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let datagram = Self { buffer };
        let bytes = datagram.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = datagram.len();
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if bytes.len() < len {
            return Err(WireError::Truncated);
        }
        Ok(datagram)
    }

    pub fn source_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 0)
    }

    pub fn destination_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 2)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        read_u16(self.buffer.as_ref(), 4) as usize
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }

    /// Whether the checksum is right for these pseudo-header addresses (a zero checksum
    /// means "none" in IPv4, never valid in IPv6).
    pub fn verify_checksum(&self, source: &[u8], destination: &[u8]) -> bool {
        if self.checksum() == 0 {
            return source.len() == 4;
        }
        let total = pseudo_header_sum(source, destination, self.len());
        checksum::fold(checksum::sum(total, &self.buffer.as_ref()[..self.len()]) as u64) == 0xffff
    }
}

fn pseudo_header_sum(source: &[u8], destination: &[u8], len: usize) -> u32 {
    let total = checksum::sum(0, source);
    let total = checksum::sum(total, destination);
    checksum::fold(total as u64 + PROTOCOL as u64 + len as u64)
}

/// A UDP header to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub source_port: u16,
    pub destination_port: u16,
}

impl Repr {
    /// Writes the header for `payload` (already in `buffer[HEADER_LEN..]`) and its checksum
    /// over the pseudo-header of `source` and `destination` (4 or 16 bytes each).
    pub fn emit(&self, buffer: &mut [u8], payload_len: usize, source: &[u8], destination: &[u8]) {
        let len = HEADER_LEN + payload_len;
        write_u16(buffer, 0, self.source_port);
        write_u16(buffer, 2, self.destination_port);
        write_u16(buffer, 4, len as u16);
        write_u16(buffer, 6, 0);
        let total = pseudo_header_sum(source, destination, len);
        let sum = checksum::finish(checksum::sum(total, &buffer[..len]));
        // An all-zero result is sent as all ones (RFC 768).
        write_u16(buffer, 6, if sum == 0 { 0xffff } else { sum });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_round_trips_for_both_families() {
        for (source, destination) in [
            (&[198u8, 51, 100, 10][..], &[198u8, 51, 100, 100][..]),
            (
                &[0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
                &[0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2][..],
            ),
        ] {
            let mut buffer = [0u8; 13];
            buffer[HEADER_LEN..].copy_from_slice(b"hello");
            Repr {
                source_port: 5060,
                destination_port: 5060,
            }
            .emit(&mut buffer, 5, source, destination);
            let datagram = Datagram::new_checked(&buffer[..]).unwrap();
            assert!(datagram.verify_checksum(source, destination));
            assert_eq!(datagram.payload(), b"hello");
            buffer[9] ^= 1;
            assert!(
                !Datagram::new_checked(&buffer[..])
                    .unwrap()
                    .verify_checksum(source, destination)
            );
        }
    }
}
