//! Word-level access to a UDP payload, shared by the kernel program and userspace.

/// Read access to the payload of one UDP datagram, eight bytes at a time.
///
/// The kernel program implements this over packet memory with bounds checks the verifier
/// accepts; userspace implements it over a byte slice. Both return the same words, so the
/// scanning code built on top behaves identically in both places.
pub trait Payload {
    /// The payload length in bytes: the UDP length minus its header, never the Ethernet
    /// padding behind it.
    fn len(&self) -> usize;

    /// True when the payload has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eight bytes starting at `at` as a little-endian word; bytes at or past `len()`
    /// read as zero.
    fn word(&self, at: usize) -> u64;

    /// The 32 bytes starting at `at` as four words, zero past `len()`.
    #[inline(always)]
    fn block(&self, at: usize) -> [u64; 4] {
        [
            self.word(at),
            self.word(at + 8),
            self.word(at + 16),
            self.word(at + 24),
        ]
    }

    /// The byte at `at`, or zero past `len()`.
    #[inline(always)]
    fn byte(&self, at: usize) -> u8 {
        self.word(at) as u8
    }

    /// Returns `value` unchanged, in a way the BPF verifier cannot see through.
    ///
    /// The scanner passes the state it carries from one loop iteration to the next through
    /// here. In the kernel this is a store to and a load from a per-CPU map, after which the
    /// verifier only knows "some number": every path through an iteration then reaches the
    /// next one in the same verifier state, so it checks each iteration once instead of
    /// every combination of paths. Userspace has nothing to hide and returns `value`.
    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        value
    }

    /// Returns `value` (below 16,384) unchanged. The kernel computes it with an instruction
    /// the verifier cannot relate to `value`, so it knows only "a 14-bit number": cheaper
    /// than [`Payload::opaque`] for a position every path of a loop iteration recomputes.
    #[inline(always)]
    fn detach(&self, value: usize) -> usize {
        value
    }
}

/// A [`Payload`] over a byte slice.
#[derive(Clone, Copy, Debug)]
pub struct SlicePayload<'a>(pub &'a [u8]);

impl Payload for SlicePayload<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn word(&self, at: usize) -> u64 {
        let mut bytes = [0u8; 8];
        if let Some(tail) = self.0.get(at..) {
            let count = if tail.len() < 8 { tail.len() } else { 8 };
            let (dst, _) = bytes.split_at_mut(count);
            let (src, _) = tail.split_at(count);
            dst.copy_from_slice(src);
        }
        u64::from_le_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_words_are_zero_padded() {
        let payload = SlicePayload(b"0123456789");
        assert_eq!(payload.word(0), u64::from_le_bytes(*b"01234567"));
        assert_eq!(payload.word(6), u64::from_le_bytes(*b"6789\0\0\0\0"));
        assert_eq!(payload.word(10), 0);
        assert_eq!(payload.word(usize::MAX), 0);
        assert_eq!(payload.byte(9), b'9');
        assert_eq!(
            payload.block(8),
            [u64::from_le_bytes(*b"89\0\0\0\0\0\0"), 0, 0, 0]
        );
    }
}
