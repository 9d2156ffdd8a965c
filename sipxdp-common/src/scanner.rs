//! SIP scanners by their User-Agent: whether a message's `User-Agent` header value holds
//! one of a VIP's drop-list patterns (ASCII case-insensitive substrings).
//!
//! A walk of its own rather than a part of the Call-ID scan: the Call-ID scan is every
//! VIP's hot path, and this one runs only for VIPs with a drop list, so those without one
//! pay nothing. It walks header lines as `callid::locate` does, within the same
//! [`ScanLimits`], and looks at the first `User-Agent` header only (the name in any case;
//! it has no compact form), on its first line (a folded continuation is not read), in
//! its first `USER_AGENT_MAX` bytes.

use crate::{
    callid::ScanLimits,
    flood::{MAX_USER_AGENT_PATTERNS, UserAgentPattern, UserAgentPatterns, is_zero},
    payload::Payload,
    swar::{block_find, fold_case},
};

/// `"user-age"` and `"nt"` as little-endian words, and the case-folding masks for them.
const NAME_HEAD: u64 = u64::from_le_bytes(*b"user-age");
const NAME_HEAD_LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0x20, 0, 0x20, 0x20, 0x20]);
const NAME_TAIL: u64 = u64::from_le_bytes(*b"nt\0\0\0\0\0\0");
const NAME_TAIL_LETTERS: u64 = 0x2020;
const NAME_LEN: usize = 10;

/// Whether the message in `payload` has a `User-Agent` value that holds one of
/// `patterns`. A message that is not SIP, or whose header section does not end within
/// the limits, is judged on the header lines that were read.
#[inline(always)]
pub fn is_scanner<P: Payload, L: ScanLimits>(payload: &P, patterns: &UserAgentPatterns) -> bool {
    if patterns.count == 0 {
        return false;
    }
    // The walk may find the header in any step; hiding where lets the verifier check the
    // value search once rather than once per step.
    match payload.opaque(user_agent_name_end::<P, L>(payload)) {
        NOT_FOUND => false,
        after_name => value_holds::<P, L>(payload, after_name, patterns),
    }
}

/// What [`user_agent_name_end`] returns for a header section without a User-Agent.
const NOT_FOUND: usize = usize::MAX;

/// The offset just past the name of the first `User-Agent` header, or [`NOT_FOUND`].
#[inline(always)]
fn user_agent_name_end<P: Payload, L: ScanLimits>(payload: &P) -> usize {
    let len = payload.len();
    let window = payload.opaque(if len < L::WINDOW { len } else { L::WINDOW });
    let mut position = payload.opaque(0);
    for _ in 0..L::STEPS {
        if position >= payload.detach(window) {
            break;
        }
        let Some(offset) = block_find(&payload.block(position), b'\n') else {
            position = payload.detach(position + 32);
            continue;
        };
        let line_start = payload.opaque(position + offset + 1);
        let [first, second, ..] = payload.block(line_start);
        if first as u8 == b'\n' || first as u16 == u16::from_le_bytes(*b"\r\n") {
            break;
        }
        if fold_case(first, NAME_HEAD_LETTERS) == NAME_HEAD
            && fold_case(second, NAME_TAIL_LETTERS) & 0xffff == NAME_TAIL
        {
            return line_start + NAME_LEN;
        }
        position = payload.detach(line_start);
    }
    NOT_FOUND
}

/// Whether the header value after the name ending at `after_name` holds a pattern. Blanks
/// and the colon stay part of the searched bytes: no pattern matches across them wrongly,
/// as a pattern holds no line break, and a name followed by anything but blanks and a
/// colon (`User-Agents:`) is not this header.
#[inline(always)]
fn value_holds<P: Payload, L: ScanLimits>(
    payload: &P,
    after_name: usize,
    patterns: &UserAgentPatterns,
) -> bool {
    let Some(start) = colon_end(payload, after_name) else {
        return false;
    };
    let start = payload.opaque(start);
    let end = payload.opaque(line_end::<P, L>(payload, start));
    // Branch-free per pattern (see `is_zero`), and the state hidden at the end of every
    // offset, so the verifier checks each offset along one path.
    let mut found = 0;
    for offset in 0..L::USER_AGENT_MAX {
        let at = payload.detach(start + offset);
        if at >= end {
            break;
        }
        let first = payload.word(at);
        let mut candidates = 0;
        for index in 0..MAX_USER_AGENT_PATTERNS {
            candidates |= is_zero(pattern(payload, patterns, index).first_difference(first));
        }
        // Hidden, so that LLVM computes it rather than branching per pattern.
        if payload.opaque(candidates as usize) != 0 {
            let block = payload.block(at);
            for index in 0..MAX_USER_AGENT_PATTERNS {
                let pattern = pattern(payload, patterns, index);
                // A pattern that would reach past the value's end does not count.
                let beyond = end.wrapping_sub(at + pattern.len as usize) >> (usize::BITS - 1);
                found |= is_zero(pattern.difference(block) | beyond as u64);
            }
        }
        found = payload.opaque(found as usize) as u64;
        if found != 0 {
            break;
        }
    }
    payload.opaque(found as usize) != 0
}

/// Pattern `index` of `patterns`, read where it is used: with the index detached, LLVM
/// cannot hoist the patterns' 8 × 13 words out of the loop over offsets, which would
/// spill them onto the kernel program's 512-byte stack.
#[inline(always)]
fn pattern<'a, P: Payload>(
    payload: &P,
    patterns: &'a UserAgentPatterns,
    index: usize,
) -> &'a UserAgentPattern {
    &patterns.patterns[payload.detach(index) % MAX_USER_AGENT_PATTERNS]
}

/// The offset just past the colon that follows the header name at `after_name` after
/// blanks, if it is within the next 8 bytes.
#[inline(always)]
fn colon_end<P: Payload>(payload: &P, after_name: usize) -> Option<usize> {
    let word = payload.word(after_name);
    for index in 0..8 {
        match (word >> (8 * index)) as u8 {
            b' ' | b'\t' => {}
            b':' => return Some(after_name + index + 1),
            _ => return None,
        }
    }
    None
}

/// The offset of the line feed that ends the line holding `start`, or `start` plus
/// `USER_AGENT_MAX` (or the payload end) if that comes first.
#[inline(always)]
fn line_end<P: Payload, L: ScanLimits>(payload: &P, start: usize) -> usize {
    let len = payload.len();
    let limit = start + L::USER_AGENT_MAX;
    let limit = if limit < len { limit } else { len };
    let mut position = start;
    for _ in 0..L::USER_AGENT_MAX.div_ceil(32) {
        if position >= limit {
            break;
        }
        if let Some(offset) = block_find(&payload.block(position), b'\n') {
            let found = position + offset;
            return if found < limit { found } else { limit };
        }
        position = payload.detach(position + 32);
    }
    limit
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::{format, vec::Vec};

    use super::*;
    use crate::{
        callid::{KernelLimits, MessageLimits},
        payload::SlicePayload,
    };

    fn drop_list() -> UserAgentPatterns {
        UserAgentPatterns::new([b"friendly-scanner".as_slice(), b"sipvicious", b"sipcli"]).unwrap()
    }

    fn message(headers: &str) -> Vec<u8> {
        [
            "OPTIONS sip:100@198.51.100.10 SIP/2.0\r\n",
            "Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-1\r\n",
            headers,
            "Call-ID: 1@203.0.113.9\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat()
        .into_bytes()
    }

    fn both(headers: &str) -> bool {
        let message = message(headers);
        let payload = SlicePayload(&message);
        let kernel = is_scanner::<_, KernelLimits>(&payload, &drop_list());
        let userspace = is_scanner::<_, MessageLimits>(&payload, &drop_list());
        assert_eq!(kernel, userspace, "{headers}");
        kernel
    }

    #[test]
    fn scanner_user_agents_in_any_case_and_position() {
        assert!(both("User-Agent: friendly-scanner\r\n"));
        assert!(both("user-agent:friendly-scanner\r\n"));
        assert!(both("USER-AGENT  :  SIPVicious 0.3\r\n"));
        assert!(both("User-Agent: pplsip sipcli/v1.8\r\n"));
        assert!(both(
            "From: <sip:a@b>\r\nUser-Agent: x/sipcli\r\nTo: <sip:c@d>\r\n"
        ));
        assert!(both("User-Agent: Friendly-Scanner\n"));
    }

    #[test]
    fn ordinary_user_agents_and_other_headers_pass() {
        assert!(!both("User-Agent: Kamailio (5.6.3 (x86_64/linux))\r\n"));
        assert!(!both("User-Agent: sipp\r\n"));
        assert!(!both("Server: friendly-scanner\r\n"));
        assert!(!both("X-User-Agent: friendly-scanner\r\n"));
        assert!(!both("User-Agents: friendly-scanner\r\n"));
        assert!(!both("Subject: sipvicious\r\n"));
        assert!(!both(""));
        // Split across a folded line: only the first line of the value is read.
        assert!(!both("User-Agent: friendly-\r\n scanner\r\n"));
    }

    #[test]
    fn a_match_must_lie_within_the_value() {
        // "sipcli" would only be found by reading into the next line.
        assert!(!both("User-Agent: sip\r\ncli: 1\r\n"));
    }

    #[test]
    fn only_the_header_section_counts() {
        let mut message = message("");
        message.extend_from_slice(b"User-Agent: friendly-scanner\r\n");
        let payload = SlicePayload(&message);
        assert!(!is_scanner::<_, KernelLimits>(&payload, &drop_list()));
    }

    #[test]
    fn a_long_value_is_matched_within_the_kernel_window_only() {
        let padding = "x".repeat(200);
        let headers = format!("User-Agent: {padding} sipcli\r\n");
        let message = message(&headers);
        let payload = SlicePayload(&message);
        assert!(!is_scanner::<_, KernelLimits>(&payload, &drop_list()));
        assert!(is_scanner::<_, MessageLimits>(&payload, &drop_list()));
    }

    #[test]
    fn an_empty_drop_list_matches_nothing() {
        let message = message("User-Agent: friendly-scanner\r\n");
        let none = UserAgentPatterns::default();
        assert!(!is_scanner::<_, MessageLimits>(
            &SlicePayload(&message),
            &none
        ));
    }
}
