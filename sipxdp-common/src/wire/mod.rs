//! Zero-copy views of the headers sipxdp reads and writes, in the style of smoltcp's
//! `wire` layer: a view checks its buffer once in `new_checked` and then reads fields at
//! fixed offsets; a `*Repr` is the parsed, validated meaning of a header and is the only
//! way to emit one. Used by userspace (the slow path builds frames for backends) and by
//! tests; the kernel program reads the same offsets with its own bounds checks.

#[cfg(feature = "alloc")]
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod udp;

/// Why a buffer is not a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or than the length it declares).
    Truncated,
    /// A field has a value the header cannot have.
    Malformed,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Truncated => "truncated header",
            Self::Malformed => "malformed header",
        })
    }
}

impl core::error::Error for WireError {}

#[inline]
fn read_u16(buffer: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buffer[at], buffer[at + 1]])
}

#[inline]
fn write_u16(buffer: &mut [u8], at: usize, value: u16) {
    buffer[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
