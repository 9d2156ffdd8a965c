//! The TCP connection hash: which Maglev entry a TCP connection is placed by.
//!
//! A TCP connection is balanced as a whole, so its hash covers what names it: XXH64 (see
//! [`crate::hash`]), seeded like the Call-ID hash, of 36 bytes: the source address and the
//! destination address (16 bytes each, IPv4 mapped to IPv6), then the source port and the
//! destination port (2 bytes each, big-endian as on the wire). The same code runs in the
//! kernel, in the daemon and in the tests.

use crate::{hash::xxh64, maps::Address, payload::Payload};

/// Bytes of the hashed form of a connection.
const HASHED_LEN: usize = 36;

/// One direction of a TCP connection, as its segments carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The client's address, IPv4-mapped for IPv4.
    pub source: Address,
    /// The VIP.
    pub destination: Address,
    pub source_port: u16,
    pub destination_port: u16,
}

impl Connection {
    /// XXH64 of the connection's 36 bytes (see the module), seeded with `seed`.
    #[inline(always)]
    pub fn hash(&self, seed: u64) -> u64 {
        let ports = [
            self.source_port.to_be_bytes(),
            self.destination_port.to_be_bytes(),
        ];
        let words = Words([
            half(&self.source, 0),
            half(&self.source, 8),
            half(&self.destination, 0),
            half(&self.destination, 8),
            u32::from_le_bytes([ports[0][0], ports[0][1], ports[1][0], ports[1][1]]) as u64,
        ]);
        xxh64(&words, 0, HASHED_LEN, HASHED_LEN, seed)
    }
}

/// Bytes `at..at + 8` of `address` as a little-endian word.
#[inline(always)]
fn half(address: &Address, at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = address.get(at + index).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

/// The hashed form as little-endian words, zero past [`HASHED_LEN`]: a byte array on the
/// program's stack could be read with misaligned 8-byte loads, which the verifier
/// refuses, whereas whole words are aligned. The hash reads it at multiples of 4 only.
struct Words([u64; 5]);

impl Payload for Words {
    #[inline(always)]
    fn len(&self) -> usize {
        HASHED_LEN
    }

    #[inline(always)]
    fn word(&self, at: usize) -> u64 {
        let word = |index: usize| self.0.get(index).copied().unwrap_or(0);
        let shift = (at % 8) as u32 * 8;
        let low = word(at / 8) >> shift;
        // `checked_shl` is `None` for a shift of 64: an aligned read takes nothing from
        // the next word.
        let high = word(at / 8 + 1).checked_shl(64 - shift).unwrap_or(0);
        low | high
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::ipv4_mapped;

    fn connection() -> Connection {
        Connection {
            source: ipv4_mapped([198, 51, 100, 10]),
            destination: ipv4_mapped([198, 51, 100, 100]),
            source_port: 40_000,
            destination_port: 5060,
        }
    }

    /// The documented 36 bytes, hashed by another crate's XXH64.
    fn reference(connection: &Connection, seed: u64) -> u64 {
        let mut bytes = [0u8; HASHED_LEN];
        bytes[..16].copy_from_slice(&connection.source);
        bytes[16..32].copy_from_slice(&connection.destination);
        bytes[32..34].copy_from_slice(&connection.source_port.to_be_bytes());
        bytes[34..].copy_from_slice(&connection.destination_port.to_be_bytes());
        xxhash_rust::xxh64::xxh64(&bytes, seed)
    }

    #[test]
    fn hashes_the_documented_bytes() {
        let mut connection = connection();
        for seed in [0, 7, u64::MAX] {
            assert_eq!(connection.hash(seed), reference(&connection, seed));
        }
        connection.source = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        connection.destination = [0xfe; 16];
        connection.source_port = 1;
        connection.destination_port = 0xffff;
        assert_eq!(connection.hash(3), reference(&connection, 3));
    }

    #[test]
    fn every_field_counts() {
        let base = connection();
        let hash = base.hash(0);
        let variants = [
            Connection {
                source_port: 40_001,
                ..base
            },
            Connection {
                destination_port: 5061,
                ..base
            },
            Connection {
                source: ipv4_mapped([198, 51, 100, 11]),
                ..base
            },
            Connection {
                destination: ipv4_mapped([198, 51, 100, 101]),
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(0), hash, "{variant:?}");
        }
    }

    #[test]
    fn unaligned_words_read_across_word_boundaries() {
        let words = Words([
            u64::from_le_bytes(*b"01234567"),
            u64::from_le_bytes(*b"89abcdef"),
            0,
            0,
            0,
        ]);
        assert_eq!(words.word(4), u64::from_le_bytes(*b"456789ab"));
        assert_eq!(words.word(8), u64::from_le_bytes(*b"89abcdef"));
        assert_eq!(words.word(40), 0);
    }
}
