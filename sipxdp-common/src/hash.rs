//! The Call-ID hash: XXH64 (<https://github.com/Cyan4973/xxHash>, `XXH64` in its
//! specification) with a configurable 64-bit seed.
//!
//! XXH64 is a published, seeded 64-bit hash with reference test vectors, and it needs
//! nothing but 64-bit multiplies, shifts and rotations, which BPF has. It is computed from
//! [`Payload`] words so that the kernel hashes the Call-ID in place, without copying it.

use crate::payload::{Payload, SlicePayload};

const PRIME1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
const fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(PRIME2))
        .rotate_left(31)
        .wrapping_mul(PRIME1)
}

#[inline(always)]
const fn merge_round(acc: u64, value: u64) -> u64 {
    (acc ^ round(0, value))
        .wrapping_mul(PRIME1)
        .wrapping_add(PRIME4)
}

#[inline(always)]
const fn avalanche(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME3);
    hash ^ (hash >> 32)
}

/// XXH64 of the `len` payload bytes starting at `start`.
///
/// `max_len` bounds every loop for the verifier (callers pass a constant); a longer `len`
/// is never passed, the result for one would not be XXH64.
#[inline(always)]
pub fn xxh64<P: Payload>(payload: &P, start: usize, len: usize, max_len: usize, seed: u64) -> u64 {
    let end = start + len;
    let mut at = start;
    let mut hash = if len >= 32 {
        let mut v1 = seed.wrapping_add(PRIME1).wrapping_add(PRIME2);
        let mut v2 = seed.wrapping_add(PRIME2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(PRIME1);
        for _ in 0..max_len / 32 {
            if end - at < 32 {
                break;
            }
            v1 = round(v1, payload.word(at));
            v2 = round(v2, payload.word(at + 8));
            v3 = round(v3, payload.word(at + 16));
            v4 = round(v4, payload.word(at + 24));
            at += 32;
        }
        let mut hash = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        hash = merge_round(hash, v1);
        hash = merge_round(hash, v2);
        hash = merge_round(hash, v3);
        merge_round(hash, v4)
    } else {
        seed.wrapping_add(PRIME5)
    };
    hash = hash.wrapping_add(len as u64);
    // Each stage below starts from any of several exits of the one before; hiding the
    // position lets the verifier check each stage once (see `Payload::opaque`).
    at = payload.opaque(at);
    for _ in 0..3 {
        if end - at < 8 {
            break;
        }
        hash ^= round(0, payload.word(at));
        hash = hash
            .rotate_left(27)
            .wrapping_mul(PRIME1)
            .wrapping_add(PRIME4);
        at += 8;
    }
    at = payload.opaque(at);
    if end - at >= 4 {
        hash ^= (payload.word(at) as u32 as u64).wrapping_mul(PRIME1);
        hash = hash
            .rotate_left(23)
            .wrapping_mul(PRIME2)
            .wrapping_add(PRIME3);
        at += 4;
    }
    at = payload.opaque(at);
    for _ in 0..3 {
        if at >= end {
            break;
        }
        hash ^= (payload.byte(at) as u64).wrapping_mul(PRIME5);
        hash = hash.rotate_left(11).wrapping_mul(PRIME1);
        at += 1;
    }
    avalanche(hash)
}

/// XXH64 of a whole byte slice.
pub fn xxh64_bytes(bytes: &[u8], seed: u64) -> u64 {
    xxh64(&SlicePayload(bytes), 0, bytes.len(), bytes.len(), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the xxHash reference implementation (`xxhsum -H64`).
    #[test]
    fn matches_reference_vectors() {
        assert_eq!(xxh64_bytes(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64_bytes(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64_bytes(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxh64_bytes(b"Nobody inspects the spammish repetition", 0),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn hashes_a_window_of_a_larger_payload() {
        let text = b"xxCall-ID: a84b4c76e66710@pc33.example.comyy";
        let payload = SlicePayload(text);
        assert_eq!(
            xxh64(&payload, 11, 31, 256, 7),
            xxh64_bytes(&text[11..42], 7)
        );
    }
}
