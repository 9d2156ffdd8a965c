//! Flood protection, per VIP: a token bucket per source address, and a drop list of
//! User-Agent substrings (see [`crate::scanner`]). Both are off unless the VIP's flags
//! (`VIP_RATE_LIMIT`, `VIP_DROP_USER_AGENTS`) say otherwise, so a VIP without them pays
//! one branch.
//!
//! The bucket arithmetic is integer only (no floats in BPF) and overflow-free: tokens are
//! counted in nano-tokens, so `elapsed_ns * rate` is exactly the nano-tokens `elapsed_ns`
//! earns at `rate` messages per second, with no rounding loss however often it refills.

use crate::maps::Address;

/// One message's worth of nano-tokens.
pub const TOKEN: u64 = 1_000_000_000;
/// Highest `rate_limit` (messages per second per source) and `rate_burst`. With these,
/// `RateLimit::capacity` (burst × 1e9) stays below 2^54 and no sum or product overflows.
pub const MAX_RATE: u64 = 10_000_000;
pub const MAX_BURST: u64 = 10_000_000;
/// Patterns of a VIP's User-Agent drop list, and their longest length in bytes: small and
/// fixed, so the kernel's match loop has constant bounds.
pub const MAX_USER_AGENT_PATTERNS: usize = 8;
pub const MAX_USER_AGENT_PATTERN_LEN: usize = 32;
/// Words of a pattern.
const PATTERN_WORDS: usize = MAX_USER_AGENT_PATTERN_LEN / 8;
/// Entries of the `FLOOD_SOURCES` map unless the loader sets another size.
pub const DEFAULT_FLOOD_SOURCES: u32 = 65_536;

/// A VIP's rate limit, as the kernel applies it (computed by the daemon, so the kernel
/// divides nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RateLimit {
    /// Messages per second: nano-tokens earned per nanosecond.
    pub rate: u64,
    /// The bucket's size in nano-tokens: `rate_burst` × [`TOKEN`].
    pub capacity: u64,
    /// Time after which an empty bucket is full again; elapsed time is capped here
    /// before it is multiplied, which keeps the product below `capacity + rate`.
    pub full_after_ns: u64,
}

impl RateLimit {
    /// `rate` messages per second with bursts of `burst`; `None` for a rate of 0 (off)
    /// or values beyond [`MAX_RATE`] and [`MAX_BURST`].
    pub const fn new(rate: u64, burst: u64) -> Option<Self> {
        if rate == 0 || rate > MAX_RATE || burst == 0 || burst > MAX_BURST {
            return None;
        }
        let capacity = burst * TOKEN;
        Some(Self {
            rate,
            capacity,
            full_after_ns: capacity / rate + 1,
        })
    }
}

/// Key of the `FLOOD_SOURCES` LRU map: one source address on one VIP. Aligned to 8 bytes,
/// like `FragmentKey`, because the kernel builds it on its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct SourceKey {
    /// Source address, IPv4-mapped for IPv4.
    pub source: Address,
    pub vip_slot: u32,
    pub padding: u32,
}

/// Value of the `FLOOD_SOURCES` map: a source's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct TokenBucket {
    /// Nano-tokens left, at most `RateLimit::capacity`.
    pub tokens: u64,
    /// `bpf_ktime_get_coarse_ns` when the bucket was last refilled.
    pub refilled_ns: u64,
}

impl TokenBucket {
    /// The bucket of a source first seen at `now_ns`: full.
    #[inline(always)]
    pub const fn full(limit: &RateLimit, now_ns: u64) -> Self {
        Self {
            tokens: limit.capacity,
            refilled_ns: now_ns,
        }
    }

    /// Refills the bucket for the time since its last refill, then takes one message's
    /// token if there is one. Returns whether the message may pass. A clock that seems to
    /// go back (another CPU refilled with a later coarse time) earns nothing.
    #[inline(always)]
    pub fn admit(&mut self, limit: &RateLimit, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.refilled_ns);
        let elapsed = if elapsed < limit.full_after_ns {
            elapsed
        } else {
            limit.full_after_ns
        };
        let earned = self.tokens + elapsed * limit.rate;
        let tokens = if earned < limit.capacity {
            earned
        } else {
            limit.capacity
        };
        if now_ns > self.refilled_ns {
            self.refilled_ns = now_ns;
        }
        let admitted = tokens >= TOKEN;
        self.tokens = if admitted { tokens - TOKEN } else { tokens };
        admitted
    }
}

/// One User-Agent pattern, prepared so the kernel compares a word at a time: a value byte
/// `b` matches pattern byte `p` when `(b | fold) & care == p`, with `fold` 0x20 where `p`
/// is a letter (ASCII case-insensitive) and `care` 0xff within the pattern's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct UserAgentPattern {
    /// The pattern, lower-cased, zero past its length.
    pub value: [u64; PATTERN_WORDS],
    pub fold: [u64; PATTERN_WORDS],
    pub care: [u64; PATTERN_WORDS],
    /// Its length in bytes (1..=32).
    pub len: u64,
}

impl UserAgentPattern {
    /// The pattern for `text`; `None` when it is empty, longer than
    /// [`MAX_USER_AGENT_PATTERN_LEN`] or holds a byte that cannot be in a header value
    /// (a control character such as CR or LF).
    pub fn new(text: &[u8]) -> Option<Self> {
        if text.is_empty()
            || text.len() > MAX_USER_AGENT_PATTERN_LEN
            || text
                .iter()
                .any(|&byte| byte < 0x20 && byte != b'\t' || byte == 0x7f)
        {
            return None;
        }
        let mut pattern = Self {
            len: text.len() as u64,
            ..Self::default()
        };
        for (index, &byte) in text.iter().enumerate() {
            let (word, shift) = (index / 8, 8 * (index % 8));
            let fold = if byte.is_ascii_alphabetic() { 0x20 } else { 0 };
            pattern.value[word] |= u64::from(byte | fold) << shift;
            pattern.fold[word] |= u64::from(fold) << shift;
            pattern.care[word] |= 0xff << shift;
        }
        Some(pattern)
    }

    /// Never matches: the slots of a drop list past its patterns hold this, so that the
    /// kernel compares all slots without a branch on the count.
    pub const NONE: Self = Self {
        value: [1, 0, 0, 0],
        fold: [0; PATTERN_WORDS],
        care: [0; PATTERN_WORDS],
        len: 0,
    };

    /// Zero when `word`, the first 8 of some bytes, could start this pattern.
    #[inline(always)]
    pub fn first_difference(&self, word: u64) -> u64 {
        ((word | self.fold[0]) & self.care[0]) ^ self.value[0]
    }

    /// Zero when the 32 bytes of `block` start with this pattern.
    #[inline(always)]
    pub fn difference(&self, block: [u64; PATTERN_WORDS]) -> u64 {
        // Word by word in registers: a loop over an array here puts the block on the
        // kernel program's 512-byte stack.
        let [a, b, c, d] = block;
        let differ = |word: u64, index: usize| {
            ((word | self.fold[index]) & self.care[index]) ^ self.value[index]
        };
        differ(a, 0) | differ(b, 1) | differ(c, 2) | differ(d, 3)
    }
}

/// 1 when `value` is zero, else 0, without a branch: BPF has no conditional move, so a
/// comparison would fork the verifier's paths once per pattern.
#[inline(always)]
pub const fn is_zero(value: u64) -> u64 {
    ((value | value.wrapping_neg()) >> 63) ^ 1
}

/// A VIP's User-Agent drop list: the first `count` patterns, then
/// [`UserAgentPattern::NONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct UserAgentPatterns {
    pub count: u64,
    pub patterns: [UserAgentPattern; MAX_USER_AGENT_PATTERNS],
}

impl Default for UserAgentPatterns {
    fn default() -> Self {
        Self {
            count: 0,
            patterns: [UserAgentPattern::NONE; MAX_USER_AGENT_PATTERNS],
        }
    }
}

impl UserAgentPatterns {
    /// The drop list of `texts`; `None` if there are more than
    /// [`MAX_USER_AGENT_PATTERNS`] or one is not a valid pattern.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut list = Self::default();
        for text in texts {
            let slot = list.patterns.get_mut(list.count as usize)?;
            *slot = UserAgentPattern::new(text)?;
            list.count += 1;
        }
        Some(list)
    }
}

/// Value of the `FLOOD` array, one per VIP slot, written by the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FloodConfig {
    /// Applied when the VIP has `VIP_RATE_LIMIT`.
    pub rate_limit: RateLimit,
    /// Applied when the VIP has `VIP_DROP_USER_AGENTS`.
    pub user_agents: UserAgentPatterns,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, integers and byte arrays only, no implicit padding.
    unsafe impl aya::Pod for super::SourceKey {}
    unsafe impl aya::Pod for super::TokenBucket {}
    unsafe impl aya::Pod for super::FloodConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SourceKey>(), 24);
        assert_eq!(size_of::<TokenBucket>(), 16);
        assert_eq!(size_of::<UserAgentPattern>(), 13 * 8);
        assert_eq!(size_of::<FloodConfig>(), 24 + 8 + 8 * 13 * 8);
    }

    fn admitted(bucket: &mut TokenBucket, limit: &RateLimit, now: u64, tries: u32) -> u32 {
        (0..tries).filter(|_| bucket.admit(limit, now)).count() as u32
    }

    #[test]
    fn a_burst_passes_then_the_rate() {
        let limit = RateLimit::new(200, 400).unwrap();
        let start = 5 * SECOND;
        let mut bucket = TokenBucket::full(&limit, start);
        assert_eq!(admitted(&mut bucket, &limit, start, 1000), 400);
        // 4 ms (one coarse tick at HZ=250) earns 0.8 of a message: none yet, but kept.
        assert_eq!(admitted(&mut bucket, &limit, start + 4_000_000, 10), 0);
        assert_eq!(admitted(&mut bucket, &limit, start + 5_000_000, 10), 1);
        // Half a second earns 100, from the last refill on.
        assert_eq!(
            admitted(&mut bucket, &limit, start + 505_000_000, 1000),
            100
        );
    }

    #[test]
    fn frequent_refills_lose_nothing() {
        let limit = RateLimit::new(3, 3).unwrap();
        let mut bucket = TokenBucket::full(&limit, 0);
        assert_eq!(admitted(&mut bucket, &limit, 0, 10), 3);
        // A refill every millisecond for 10 s: exactly 30 messages earned.
        let passed: u32 = (1..=10_000)
            .map(|ms| admitted(&mut bucket, &limit, ms * 1_000_000, 1))
            .sum();
        assert_eq!(passed, 30);
    }

    #[test]
    fn long_idle_fills_to_burst_without_overflow() {
        for (rate, burst) in [(1, 1), (1, MAX_BURST), (MAX_RATE, MAX_BURST), (MAX_RATE, 1)] {
            let limit = RateLimit::new(rate, burst).unwrap();
            let mut bucket = TokenBucket {
                tokens: 0,
                refilled_ns: 0,
            };
            assert_eq!(
                admitted(&mut bucket, &limit, u64::MAX, burst as u32 + 5),
                burst as u32
            );
        }
    }

    #[test]
    fn a_clock_going_back_earns_nothing() {
        let limit = RateLimit::new(10, 10).unwrap();
        let mut bucket = TokenBucket::full(&limit, 10 * SECOND);
        assert_eq!(admitted(&mut bucket, &limit, 10 * SECOND, 20), 10);
        assert_eq!(admitted(&mut bucket, &limit, 9 * SECOND, 5), 0);
        assert_eq!(bucket.refilled_ns, 10 * SECOND);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert_eq!(RateLimit::new(0, 10), None);
        assert_eq!(RateLimit::new(MAX_RATE + 1, MAX_BURST), None);
        assert_eq!(RateLimit::new(1, MAX_BURST + 1), None);
        assert_eq!(RateLimit::new(10, 0), None);
    }

    #[test]
    fn patterns_are_checked() {
        assert!(UserAgentPattern::new(b"").is_none());
        assert!(UserAgentPattern::new(&[b'a'; 33]).is_none());
        assert!(UserAgentPattern::new(b"a\r\nb").is_none());
        assert!(UserAgentPattern::new(&[b'a'; 32]).is_some());
        let nine: [&[u8]; 9] = [b"a"; 9];
        assert!(UserAgentPatterns::new(nine).is_none());
        assert_eq!(UserAgentPatterns::new([b"x".as_slice()]).unwrap().count, 1);
    }
}
