//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// The one's-complement sum of `data` as 16-bit big-endian words, added to `initial`,
/// not yet folded or complemented.
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut total = initial as u64;
    let (pairs, rest) = data.as_chunks::<2>();
    for pair in pairs {
        total += u16::from_be_bytes(*pair) as u64;
    }
    if let [last] = rest {
        total += (*last as u64) << 8;
    }
    fold(total)
}

/// Folds carries back into 16 bits (kept in a `u32`).
pub fn fold(mut total: u64) -> u32 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u32
}

/// The checksum field value for a one's-complement sum.
pub fn finish(total: u32) -> u16 {
    !(fold(total as u64) as u16)
}

/// The new checksum after 16-bit words `old` changed to `new` (RFC 1624 equation 3:
/// HC' = ~(~HC + ~m + m')).
pub fn update(checksum: u16, old: &[u16], new: &[u16]) -> u16 {
    let mut total = !checksum as u64;
    for word in old {
        total += !*word as u64 & 0xffff;
    }
    for word in new {
        total += *word as u64;
    }
    !(fold(total) as u16)
}

/// [`update`] for a fixed number of words, without a loop whose length depends on the
/// data: what the kernel program uses, since the verifier must see every loop end. Up to
/// 16 words, two folds always suffice.
#[inline(always)]
pub fn update_words<const N: usize>(checksum: u16, old: &[u16; N], new: &[u16; N]) -> u16 {
    let mut total = !checksum as u32;
    for index in 0..N {
        total += (!old[index]) as u32 + new[index] as u32;
    }
    total = (total & 0xffff) + (total >> 16);
    total = (total & 0xffff) + (total >> 16);
    !(total as u16)
}

/// The big-endian 16-bit words of `bytes`.
#[inline(always)]
pub fn words<const N: usize, const W: usize>(bytes: &[u8; N]) -> [u16; W] {
    let mut words = [0u16; W];
    for (index, word) in words.iter_mut().enumerate() {
        *word = u16::from_be_bytes([bytes[2 * index], bytes[2 * index + 1]]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(0, &data), 0xddf2);
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let mut data = [
            0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0, 198, 51, 100, 10,
            198, 51, 100, 100,
        ];
        let before = finish(sum(0, &data));
        let old = [
            u16::from_be_bytes([198, 51]),
            u16::from_be_bytes([100, 100]),
        ];
        data[16..20].copy_from_slice(&[203, 0, 113, 21]);
        let new = [u16::from_be_bytes([203, 0]), u16::from_be_bytes([113, 21])];
        assert_eq!(update(before, &old, &new), finish(sum(0, &data)));
    }

    #[test]
    fn fixed_size_update_matches_the_general_one() {
        let mut seed = 0x1234_5678_u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) as u16
        };
        for _ in 0..10_000 {
            let checksum = next();
            // Nine words: more than the eight of an IPv6 address, the most the kernel passes.
            let old: [u16; 9] = core::array::from_fn(|_| next());
            let new: [u16; 9] = core::array::from_fn(|_| next());
            assert_eq!(
                update_words(checksum, &old, &new),
                update(checksum, &old, &new)
            );
        }
        assert_eq!(words::<4, 2>(&[198, 51, 100, 10]), [0xc633, 0x640a]);
    }
}
