//! Locating the Call-ID of a SIP message (RFC 3261 §7.3, §20.8).
//!
//! The scanner walks the payload a word at a time looking only for line feeds, and looks
//! at the first word of every line it finds: that is enough to recognise the end of the
//! header section, folded lines and the `Call-ID` / `i` header names. Everything is
//! bounded by the constants of a [`ScanLimits`], so the same code passes the BPF verifier
//! with the kernel's limits and parses whole datagrams with the slow path's.
//!
//! Rules (see `SIP-NOTES.md`): header names are case-insensitive and may have blanks
//! before the colon; `i` is the compact form; a line starting with SP or HTAB continues
//! the previous header; the header section ends at the first empty line; CRLF and bare LF
//! both end a line; the value is trimmed of blanks and otherwise taken byte for byte.
//! A message must carry exactly one Call-ID value (two identical headers are accepted).

use crate::{
    hash::xxh64,
    payload::Payload,
    swar::{
        blank_bytes, block_find, bytes_equal, first_bytes, fold_case, highest_marked, lowest_marked,
    },
};

/// The bounds of one scan. Every loop of the scanner runs at most a constant number of
/// times derived from these, which is what lets the verifier accept it.
pub trait ScanLimits {
    /// The header section must end before this payload offset.
    const WINDOW: usize;
    /// Iterations of the main loop: each one moves past a line feed or 32 bytes.
    const STEPS: usize;
    /// Longest run of blanks before or after a Call-ID value, in 8-byte words.
    const BLANK_WORDS: usize;
    /// Longest Call-ID value in bytes.
    const CALL_ID_MAX: usize;
    /// Bytes of a User-Agent value searched for a drop-list pattern (`crate::scanner`).
    const USER_AGENT_MAX: usize;
}

/// What the kernel program scans: a header section that ends in the first 1,536 bytes of
/// the payload (a whole datagram on a 1,500-byte MTU) within 96 steps (a step per line
/// plus one per 32 bytes of line length: about 45 typical header lines), blank runs of up
/// to 16 bytes around the value and Call-IDs of up to 256 bytes.
#[derive(Debug)]
pub enum KernelLimits {}

impl ScanLimits for KernelLimits {
    const WINDOW: usize = 1536;
    const STEPS: usize = 96;
    const BLANK_WORDS: usize = 2;
    const CALL_ID_MAX: usize = 256;
    const USER_AGENT_MAX: usize = 32;
}

/// What the userspace slow path scans: any UDP datagram in full.
#[derive(Debug)]
pub enum MessageLimits {}

impl ScanLimits for MessageLimits {
    const WINDOW: usize = 65_536;
    const STEPS: usize = 65_536;
    const BLANK_WORDS: usize = 65_536 / 8;
    const CALL_ID_MAX: usize = 65_536;
    const USER_AGENT_MAX: usize = 65_536;
}

/// A located Call-ID: where its trimmed value lies in the payload, and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    /// Offset of the first value byte in the payload.
    pub start: usize,
    /// Length of the trimmed value in bytes.
    pub len: usize,
    /// XXH64 of the value with the configured seed.
    pub hash: u64,
}

/// Why a payload has no Call-ID that can steer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Unplaceable {
    /// Not a SIP request or response.
    NotSip = 0,
    /// A keep-alive: at most 8 bytes, all CR or LF (RFC 5626 §4.4.1), or empty.
    KeepAlive = 1,
    /// The header section has no Call-ID header.
    NoCallId = 2,
    /// Two Call-ID headers with different values, or more than two.
    ConflictingCallIds = 3,
    /// The Call-ID header is folded over more than one line.
    FoldedCallId = 4,
    /// The Call-ID header has an empty value.
    EmptyCallId = 5,
    /// The Call-ID value is longer than the scan allows.
    CallIdTooLong = 6,
    /// A run of blanks around the Call-ID is longer than the scan allows.
    LongBlankRun = 7,
    /// The datagram ends before the header section does.
    Truncated = 8,
    /// The header section does not end inside the scanned window.
    BeyondWindow = 9,
}

impl Unplaceable {
    /// Every variant, in discriminant order.
    pub const ALL: [Unplaceable; 10] = [
        Self::NotSip,
        Self::KeepAlive,
        Self::NoCallId,
        Self::ConflictingCallIds,
        Self::FoldedCallId,
        Self::EmptyCallId,
        Self::CallIdTooLong,
        Self::LongBlankRun,
        Self::Truncated,
        Self::BeyondWindow,
    ];

    /// A snake_case name, used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotSip => "not_sip",
            Self::KeepAlive => "keep_alive",
            Self::NoCallId => "no_call_id",
            Self::ConflictingCallIds => "conflicting_call_ids",
            Self::FoldedCallId => "folded_call_id",
            Self::EmptyCallId => "empty_call_id",
            Self::CallIdTooLong => "call_id_too_long",
            Self::LongBlankRun => "long_blank_run",
            Self::Truncated => "truncated",
            Self::BeyondWindow => "beyond_window",
        }
    }
}

/// `"sip/2.0 "` as a little-endian word, and the case-folding mask for its letters.
const SIP_VERSION_PREFIX: u64 = u64::from_le_bytes(*b"sip/2.0 ");
const SIP_VERSION_PREFIX_LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
/// `" sip/2.0"`, the end of a request line.
const SIP_VERSION_SUFFIX: u64 = u64::from_le_bytes(*b" sip/2.0");
const SIP_VERSION_SUFFIX_LETTERS: u64 = u64::from_le_bytes([0, 0x20, 0x20, 0x20, 0, 0, 0, 0]);
/// `"call-id"` in the low seven bytes; the folding mask leaves the `-` alone.
const CALL_ID_NAME: u64 = u64::from_le_bytes(*b"call-id\0");
const CALL_ID_NAME_LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0x20, 0, 0x20, 0x20, 0]);
const LOW_SEVEN_BYTES: u64 = 0x00FF_FFFF_FFFF_FFFF;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Finds the Call-ID of the SIP message in `payload` and hashes it with `seed`.
#[inline(always)]
pub fn locate<P: Payload, L: ScanLimits>(payload: &P, seed: u64) -> Result<CallId, Unplaceable> {
    let len = payload.len();
    let first = payload.word(0);
    let line_breaks = bytes_equal(first, b'\r') | bytes_equal(first, b'\n');
    if len <= 8 && line_breaks & first_bytes(len) == first_bytes(len) {
        return Err(Unplaceable::KeepAlive);
    }
    let response = fold_case(first, SIP_VERSION_PREFIX_LETTERS) == SIP_VERSION_PREFIX;
    if !response && !(first as u8).is_ascii_uppercase() {
        return Err(Unplaceable::NotSip);
    }

    // Several paths above reach the loop, each knowing something different about the
    // window and the flags; hiding them lets the verifier check the loop once. The length
    // is read again instead: in the kernel each read is a fresh detached copy (see
    // `Payload::detach`) that the checks above taught nothing, at no store and load.
    let len = payload.len();
    let window = payload.opaque(if len < L::WINDOW { len } else { L::WINDOW });
    let mut scan = Scan::default();
    if response {
        scan.flags |= RESPONSE;
    }
    scan.hide_headers(payload);
    scan.walk::<P, L>(payload, len, window)?;
    // The header section may end in any step; hiding the state lets the verifier check
    // what follows once rather than once per step.
    scan.hide_headers(payload);
    scan.call_id::<P, L>(payload, seed)
}

/// Whether the line ending at the line feed `line_end` ends in `" SIP/2.0"` (before an
/// optional CR), as a request line must.
#[inline(always)]
fn ends_with_sip_version<P: Payload>(payload: &P, line_end: usize) -> bool {
    if line_end < 9 {
        return false;
    }
    let cr = (payload.word(line_end - 8) >> 56) as u8 == b'\r';
    let content_end = line_end - cr as usize;
    content_end >= 9
        && fold_case(payload.word(content_end - 8), SIP_VERSION_SUFFIX_LETTERS)
            == SIP_VERSION_SUFFIX
}

/// What the first 32 bytes of a header line say about it.
enum LineStart {
    /// The empty line that ends the header section.
    EndOfHeaders,
    /// A folded continuation of the previous header.
    Continuation,
    /// A Call-ID header whose colon is at this offset from the line start.
    CallId { colon: usize },
    /// Any other header.
    Other,
    /// A Call-ID name followed by more blanks than fit in the block.
    LongBlankRun,
}

/// Classifies a header line from the block that starts it. The name, the blanks after it
/// and the colon of a Call-ID header must lie within these 32 bytes.
#[inline(always)]
fn classify_line(block: &[u64; 4]) -> LineStart {
    let [first, ..] = *block;
    let first_byte = first as u8;
    // Most lines start with a name that is neither `Call-ID` nor `i`: settled by the first
    // byte alone, before the tests below.
    if first_byte > b' ' && first_byte | 0x20 != b'c' && first_byte | 0x20 != b'i' {
        return LineStart::Other;
    }
    let second_byte = (first >> 8) as u8;
    if first_byte == b'\n' || (first_byte == b'\r' && second_byte == b'\n') {
        return LineStart::EndOfHeaders;
    }
    if first_byte == b' ' || first_byte == b'\t' {
        return LineStart::Continuation;
    }
    let name_len = if fold_case(first, CALL_ID_NAME_LETTERS) & LOW_SEVEN_BYTES == CALL_ID_NAME {
        7
    } else if first_byte | 0x20 == b'i' {
        1
    } else {
        return LineStart::Other;
    };
    match first_non_blank(block, name_len) {
        Some((colon, b':')) => LineStart::CallId { colon },
        Some(_) => LineStart::Other,
        None => LineStart::LongBlankRun,
    }
}

/// The offset and value of the first byte of `block` at or after `from` (below 8) that is
/// not SP or HTAB.
#[inline(always)]
fn first_non_blank(block: &[u64; 4], from: usize) -> Option<(usize, u8)> {
    let [a, b, c, d] = *block;
    let others = |word: u64| !blank_bytes(word) & HIGH_BITS;
    let first = others(a) & !first_bytes(from);
    let (word, marks, word_start) = if first != 0 {
        (a, first, 0)
    } else if others(b) != 0 {
        (b, others(b), 8)
    } else if others(c) != 0 {
        (c, others(c), 16)
    } else if others(d) != 0 {
        (d, others(d), 24)
    } else {
        return None;
    };
    let index = lowest_marked(marks);
    Some((word_start + index, (word >> (8 * index)) as u8))
}

/// `Scan::flags` bits.
const IN_START_LINE: usize = 1;
const PREVIOUS_IS_CALL_ID: usize = 4;
const FOLDED: usize = 8;
const AWAITING_LINE_END: usize = 16;
/// The start line is a status line (a response), so it needs no check at its end.
const RESPONSE: usize = 2;
/// The scan position is the start of a header line (the step before found a line feed).
const LINE_START: usize = 32;
/// `Scan::flags` holds the number of Call-ID headers seen (up to 3) from this bit on.
const COUNT_SHIFT: usize = 6;

/// The state carried from one step of the scan to the next.
struct Scan {
    /// Where the next step looks for a line feed.
    position: usize,
    /// The flag bits above, and the Call-ID count.
    flags: usize,
    /// For the first two Call-ID headers: the offset just past the colon and the offset of
    /// the line feed, 16 bits each.
    spans: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            position: 0,
            flags: IN_START_LINE,
            spans: 0,
        }
    }
}

impl Scan {
    fn count(&self) -> usize {
        self.flags >> COUNT_SHIFT
    }

    /// A Call-ID header line starts; its value starts at `after_colon`.
    #[inline(always)]
    fn call_id_header(&mut self, after_colon: usize) {
        let count = self.count();
        let slot = if count == 0 { 0 } else { 32 };
        if count < 2 {
            self.spans |= (after_colon & 0xffff) << slot;
        }
        self.flags = (self.flags & ((1 << COUNT_SHIFT) - 1))
            | PREVIOUS_IS_CALL_ID
            | AWAITING_LINE_END
            | (if count < 3 { count + 1 } else { 3 }) << COUNT_SHIFT;
    }

    /// The current line ends with the line feed at `line_end`.
    #[inline(always)]
    fn line_end(&mut self, line_end: usize) {
        if self.flags & AWAITING_LINE_END != 0 {
            let slot = if self.count() == 1 { 16 } else { 48 };
            if self.count() <= 2 {
                self.spans |= (line_end & 0xffff) << slot;
            }
            self.flags &= !AWAITING_LINE_END;
        }
    }

    /// Walks the header lines of a payload of `len` bytes up to the end of the header
    /// section, which must start before `window`.
    ///
    /// Each step reads one block, at `position`. When the step before found a line feed,
    /// the block starts a header line and is classified first; then it is searched for the
    /// next line feed. The line after the last step's line feed is classified after the
    /// loop, so that the loop's exit test stays its last instruction: kernel 6.1 rejects a
    /// loop whose back edge is a fall-through, which an exit test in the middle of the loop
    /// lets LLVM produce.
    #[inline(always)]
    fn walk<P: Payload, L: ScanLimits>(
        &mut self,
        payload: &P,
        len: usize,
        window: usize,
    ) -> Result<(), Unplaceable> {
        for _ in 0..L::STEPS {
            let position = self.position;
            let block = payload.block(position);
            if self.line_start(&block, position)? {
                return Ok(());
            }
            // Compared on a detached copy: what the comparison teaches the verifier about
            // `window` must not outlive this step.
            if position >= payload.detach(window) {
                return Err(if len <= window {
                    Unplaceable::Truncated
                } else {
                    Unplaceable::BeyondWindow
                });
            }
            let Some(offset) = block_find(&block, b'\n') else {
                // Hidden: clearing the bit tells the verifier the flags on this path, and
                // it would check the next step once for this path and once for the others.
                self.flags = payload.opaque(self.flags & !LINE_START);
                self.position = payload.detach(position + 32);
                continue;
            };
            // Hidden: the verifier need not know which word of the block the line feed was
            // in.
            let line_end = payload.opaque(position + offset);
            if self.flags & IN_START_LINE != 0 {
                if self.flags & RESPONSE == 0 && !ends_with_sip_version(payload, line_end) {
                    return Err(Unplaceable::NotSip);
                }
                self.flags &= !IN_START_LINE;
            }
            self.line_end(line_end);
            self.flags |= LINE_START;
            self.position = payload.detach(line_end + 1);
            self.hide_headers(payload);
        }
        let position = self.position;
        if self.line_start(&payload.block(position), position)? {
            return Ok(());
        }
        Err(Unplaceable::BeyondWindow)
    }

    /// Takes in the header line that starts at `position` with `block`, if the step before
    /// found the line feed in front of it (`LINE_START`). True when that line is the empty
    /// one that ends the header section.
    #[inline(always)]
    fn line_start(&mut self, block: &[u64; 4], position: usize) -> Result<bool, Unplaceable> {
        if self.flags & LINE_START != 0 {
            match classify_line(block) {
                LineStart::EndOfHeaders => return Ok(true),
                LineStart::Continuation => {
                    if self.flags & PREVIOUS_IS_CALL_ID != 0 {
                        self.flags |= FOLDED;
                    }
                }
                LineStart::Other => self.flags &= !PREVIOUS_IS_CALL_ID,
                LineStart::CallId { colon } => self.call_id_header(position + colon + 1),
                LineStart::LongBlankRun => return Err(Unplaceable::LongBlankRun),
            }
        }
        Ok(false)
    }

    /// Passes what the scan knows about the header lines through [`Payload::opaque`].
    #[inline(always)]
    fn hide_headers<P: Payload>(&mut self, payload: &P) {
        self.flags = payload.opaque(self.flags);
        self.spans = payload.opaque(self.spans);
    }

    /// The Call-ID of a complete header section.
    #[inline(always)]
    fn call_id<P: Payload, L: ScanLimits>(
        &self,
        payload: &P,
        seed: u64,
    ) -> Result<CallId, Unplaceable> {
        if self.flags & FOLDED != 0 {
            return Err(Unplaceable::FoldedCallId);
        }
        let span = |shift: usize| {
            (
                (self.spans >> shift) & 0xffff,
                (self.spans >> (shift + 16)) & 0xffff,
            )
        };
        let first = match self.count() {
            0 => return Err(Unplaceable::NoCallId),
            1 | 2 => value::<P, L>(payload, span(0), seed)?,
            _ => return Err(Unplaceable::ConflictingCallIds),
        };
        if self.count() == 2 {
            match value::<P, L>(payload, span(32), seed) {
                Ok(second) if second.len == first.len && second.hash == first.hash => {}
                _ => return Err(Unplaceable::ConflictingCallIds),
            }
        }
        Ok(first)
    }
}

/// The offset of the first byte at or after `at` that is not SP or HTAB.
#[inline(always)]
fn skip_blanks<P: Payload, L: ScanLimits>(payload: &P, at: usize) -> Result<usize, Unplaceable> {
    let mut word_start = at;
    for _ in 0..L::BLANK_WORDS {
        let others = !blank_bytes(payload.word(word_start)) & HIGH_BITS;
        if others != 0 {
            return Ok(word_start + lowest_marked(others));
        }
        word_start += 8;
    }
    Err(Unplaceable::LongBlankRun)
}

/// The offset just past the last byte before `end` that is not SP, HTAB or CR, or `floor`
/// if there is none at or after `floor`.
#[inline(always)]
fn trim_end<P: Payload, L: ScanLimits>(
    payload: &P,
    floor: usize,
    end: usize,
) -> Result<usize, Unplaceable> {
    let mut word_end = end;
    for _ in 0..L::BLANK_WORDS {
        if word_end <= floor {
            return Ok(floor);
        }
        let word_start = word_end.saturating_sub(8);
        let word = payload.word(word_start);
        let trailing = blank_bytes(word) | bytes_equal(word, b'\r');
        let others = !trailing & first_bytes(word_end - word_start);
        if others != 0 {
            let last = word_start + highest_marked(others) + 1;
            return Ok(if last > floor { last } else { floor });
        }
        word_end = word_start;
    }
    Err(Unplaceable::LongBlankRun)
}

/// The trimmed, hashed value of the Call-ID header whose colon ends at `after_colon` and
/// whose line feed is at `line_end`.
#[inline(always)]
fn value<P: Payload, L: ScanLimits>(
    payload: &P,
    (after_colon, line_end): (usize, usize),
    seed: u64,
) -> Result<CallId, Unplaceable> {
    // Each bounded loop below leaves through one of several exits; hiding the result
    // lets the verifier check the code after it once (see `Payload::opaque`).
    let start = payload.opaque(skip_blanks::<P, L>(payload, after_colon)?);
    if start >= line_end {
        return Err(Unplaceable::EmptyCallId);
    }
    let end = payload.opaque(trim_end::<P, L>(payload, start, line_end)?);
    let len = end - start;
    if len == 0 {
        return Err(Unplaceable::EmptyCallId);
    }
    if len > L::CALL_ID_MAX {
        return Err(Unplaceable::CallIdTooLong);
    }
    Ok(CallId {
        start,
        len,
        hash: xxh64(payload, start, len, L::CALL_ID_MAX, seed),
    })
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;
    use crate::{
        corpus::{Expected, cases},
        payload::SlicePayload,
    };

    fn outcome<L: ScanLimits>(message: &[u8]) -> Expected {
        match locate::<_, L>(&SlicePayload(message), 99) {
            Ok(call_id) => {
                let value = &message[call_id.start..call_id.start + call_id.len];
                assert_eq!(call_id.hash, xxhash_rust::xxh64::xxh64(value, 99));
                Expected::CallId(value.to_vec())
            }
            Err(reason) => Expected::Unplaceable(reason),
        }
    }

    #[test]
    fn corpus_with_kernel_limits() {
        for case in cases() {
            assert_eq!(
                outcome::<KernelLimits>(&case.message),
                case.kernel,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn corpus_with_message_limits() {
        for case in cases() {
            assert_eq!(
                outcome::<MessageLimits>(&case.message),
                case.message_limits,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn every_prefix_of_a_message_is_handled() {
        let message = &cases()[0].message;
        for len in 0..message.len() {
            let _ = outcome::<KernelLimits>(&message[..len]);
            let _ = outcome::<MessageLimits>(&message[..len]);
        }
    }

    #[test]
    fn reason_names_are_unique_and_ordered() {
        for (index, reason) in Unplaceable::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
            assert!(!reason.name().is_empty(), "{}", format!("{reason:?}"));
        }
    }
}
