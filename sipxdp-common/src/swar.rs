//! Word-at-a-time byte tests ("SIMD within a register").
//!
//! The kernel program cannot afford a branch per byte, and BPF has no count-trailing-zeros
//! instruction, so these helpers work on little-endian `u64` words and mark matching bytes
//! with their high bit. Every function is exact (no false positives), branch-free and
//! `const`, so the kernel, the userspace slow path and the tests compute the same thing.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// A mask with `0x80` in every byte of `word` that is zero and `0x00` in all others.
#[inline(always)]
pub const fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW_SEVEN).wrapping_add(LOW_SEVEN)) | word | LOW_SEVEN)
}

/// A mask with `0x80` in every byte of `word` equal to `byte`.
#[inline(always)]
pub const fn bytes_equal(word: u64, byte: u8) -> u64 {
    zero_bytes(word ^ ONES.wrapping_mul(byte as u64))
}

/// A mask with `0x80` in every SP or HTAB byte of `word`.
#[inline(always)]
pub const fn blank_bytes(word: u64) -> u64 {
    bytes_equal(word, b' ') | bytes_equal(word, b'\t')
}

/// The index (0..8) of the lowest marked byte of a non-zero mask.
///
/// Isolating the lowest set bit leaves the lowest marker, `>> 7` turns it into `1 << 8k`, and the
/// multiplication moves the constant's byte `7 - k` (which holds `k`) into the top byte.
#[inline(always)]
pub const fn lowest_marked(mask: u64) -> usize {
    let lowest = mask.isolate_lowest_one();
    (((lowest >> 7).wrapping_mul(0x0001_0203_0405_0607) >> 56) & 7) as usize
}

/// The index (0..8) of the highest marked byte of a non-zero mask.
#[inline(always)]
pub const fn highest_marked(mask: u64) -> usize {
    let mut index = 0;
    let mut rest = mask;
    if rest >> 32 != 0 {
        index += 4;
        rest >>= 32;
    }
    if rest >> 16 != 0 {
        index += 2;
        rest >>= 16;
    }
    if rest >> 8 != 0 {
        index += 1;
    }
    index
}

/// A mask whose lowest marked byte is the first byte of `word` equal to `byte`; zero if
/// there is none. Cheaper than [`bytes_equal`]: the borrow trick used here can also mark
/// bytes above a true match, never below one.
#[inline(always)]
const fn first_equal_marks(word: u64, byte: u8) -> u64 {
    let difference = word ^ ONES.wrapping_mul(byte as u64);
    difference.wrapping_sub(ONES) & !difference & HIGH_BITS
}

/// The offset (0..32) of the first byte of the four words equal to `byte`.
#[inline(always)]
pub const fn block_find(block: &[u64; 4], byte: u8) -> Option<usize> {
    let [a, b, c, d] = *block;
    let (a, b, c, d) = (
        first_equal_marks(a, byte),
        first_equal_marks(b, byte),
        first_equal_marks(c, byte),
        first_equal_marks(d, byte),
    );
    if a | b | c | d == 0 {
        return None;
    }
    let (marks, offset) = if a != 0 {
        (a, 0)
    } else if b != 0 {
        (b, 8)
    } else if c != 0 {
        (c, 16)
    } else {
        (d, 24)
    };
    Some(offset + lowest_marked(marks))
}

/// A mask of the marker bits of the first `count` bytes (`count` clamped to 8).
#[inline(always)]
pub const fn first_bytes(count: usize) -> u64 {
    if count >= 8 {
        HIGH_BITS
    } else {
        HIGH_BITS & ((1u64 << (count * 8)) - 1)
    }
}

/// Keeps the first `count` bytes of `word` and zeroes the rest (`count` clamped to 8).
#[inline(always)]
pub const fn keep_bytes(word: u64, count: usize) -> u64 {
    if count >= 8 {
        word
    } else {
        word & ((1u64 << (count * 8)) - 1)
    }
}

/// `word` with ASCII letters at the positions marked by `letters` (0x20 per byte) folded to
/// lower case. Only positions known to hold letters in the pattern may be marked, because
/// OR-ing 0x20 maps other bytes onto letters too.
#[inline(always)]
pub const fn fold_case(word: u64, letters: u64) -> u64 {
    word | letters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(bytes: &[u8]) -> u64 {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(buf)
    }

    #[test]
    fn marks_exactly_the_equal_bytes() {
        for probe in 0..=255u8 {
            for position in 0..8 {
                let mut bytes = [probe.wrapping_add(1); 8];
                bytes[position] = probe;
                let mask = bytes_equal(u64::from_le_bytes(bytes), probe);
                assert_eq!(
                    mask,
                    0x80u64 << (position * 8),
                    "byte {probe:#x} at {position}"
                );
            }
        }
        // A zero byte right below a one byte is the classic false positive of the cheap test.
        assert_eq!(
            zero_bytes(word(&[0, 1, 0, 1, 0, 1, 0, 1])),
            0x0080_0080_0080_0080
        );
    }

    #[test]
    fn finds_lowest_and_highest_marks() {
        for low in 0..8 {
            for high in low..8 {
                let mask = (0x80u64 << (low * 8)) | (0x80u64 << (high * 8));
                assert_eq!(lowest_marked(mask), low);
                assert_eq!(highest_marked(mask), high);
            }
        }
    }

    #[test]
    fn finds_bytes_in_blocks() {
        let block = [
            word(b"abcdefgh"),
            word(b"ijklmnop"),
            word(b"qrs\nuvwx"),
            word(b"\n"),
        ];
        assert_eq!(block_find(&block, b'\n'), Some(19));
        assert_eq!(block_find(&block, b'a'), Some(0));
        assert_eq!(block_find(&block, b'p'), Some(15));
        assert_eq!(block_find(&block, b'z'), None);
        // The byte right above a true match is where the cheap test errs: 0x0b ^ 0x0a is 1.
        let tricky = [word(&[10, 11, 10, 11, 10, 11, 10, 11]), 0, 0, 0];
        assert_eq!(block_find(&tricky, 11), Some(1));
        assert_eq!(block_find(&tricky, 10), Some(0));
        for position in 0..32 {
            for filler in [0u8, 1, 9, 11, 0x8b, 0xff] {
                let mut bytes = [filler; 32];
                bytes[position] = 10;
                for (later, byte) in bytes.iter_mut().enumerate().skip(position + 1) {
                    *byte = if later % 3 == 0 { 10 } else { filler };
                }
                let block = [0, 1, 2, 3].map(|i| word(&bytes[i * 8..i * 8 + 8]));
                let expected = if filler == 10 {
                    Some(0)
                } else {
                    Some(position)
                };
                assert_eq!(block_find(&block, 10), expected, "{bytes:?}");
            }
        }
    }

    #[test]
    fn blanks_and_prefixes() {
        assert_eq!(blank_bytes(word(b"a \tb")), 0x0000_0000_0080_8000);
        assert_eq!(first_bytes(0), 0);
        assert_eq!(first_bytes(3), 0x0080_8080);
        assert_eq!(keep_bytes(word(b"abcdefgh"), 2), word(b"ab"));
        assert_eq!(fold_case(word(b"CaLl"), 0x2020_2020), word(b"call"));
    }
}
