//! SIP messages that exercise the traps of Call-ID location (see `SIP-NOTES.md` and
//! RFC 4475), with the outcome expected from the kernel's and the slow path's limits.
//!
//! Shared by the unit tests here, the kernel program's `BPF_PROG_TEST_RUN` tests, the
//! differential tests and the fuzzer's seed corpus.

extern crate alloc;

use alloc::{format, string::String, vec::Vec};

use crate::callid::Unplaceable;

/// What locating the Call-ID of a message should give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The trimmed Call-ID value.
    CallId(Vec<u8>),
    /// No steerable Call-ID, for this reason.
    Unplaceable(Unplaceable),
}

/// One corpus message.
#[derive(Clone, Debug)]
pub struct Case {
    /// A short name, after the RFC 4475 test it imitates where there is one.
    pub name: &'static str,
    /// The UDP payload.
    pub message: Vec<u8>,
    /// The outcome with the kernel's limits.
    pub kernel: Expected,
    /// The outcome with the slow path's limits.
    pub message_limits: Expected,
}

const CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.example.com";

fn invite(headers_before: &str, call_id_line: &str, headers_after: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n{headers_before}{call_id_line}{headers_after}\r\n{body}"
    )
    .into_bytes()
}

const VIA: &str = "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n";
const AFTER: &str = "CSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\nContent-Length: 142\r\n";
const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\nc=IN IP4 pc33.atlanta.example.com\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn found(value: &str) -> Expected {
    Expected::CallId(value.as_bytes().to_vec())
}

fn both(name: &'static str, message: Vec<u8>, expected: Expected) -> Case {
    Case {
        name,
        message,
        kernel: expected.clone(),
        message_limits: expected,
    }
}

/// Every corpus case.
pub fn cases() -> Vec<Case> {
    use Unplaceable::*;
    let call_id_line = format!("Call-ID: {CALL_ID}\r\n");
    let long_value: String = (0..120).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let too_long_value: String = (0..300).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let padding = |lines: usize| -> String {
        (0..lines)
            .map(|i| format!("X-Padding-{i:02}: {}\r\n", "p".repeat(30)))
            .collect()
    };
    let many_short_lines: String = (0..150).map(|i| format!("X{i}: v\r\n")).collect();
    let mut cases = Vec::from([
        both("invite", invite(VIA, &call_id_line, AFTER, SDP), found(CALL_ID)),
        both(
            "response",
            format!(
                "SIP/2.0 200 OK\r\n{VIA}{call_id_line}CSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            found(CALL_ID),
        ),
        both(
            "response_lower_case_version",
            format!("sip/2.0 180 Ringing\r\ni:{CALL_ID}\r\n\r\n").into_bytes(),
            found(CALL_ID),
        ),
        both(
            "esc01_compact_lower",
            invite(VIA, &format!("i: {CALL_ID}\r\n"), AFTER, SDP),
            found(CALL_ID),
        ),
        both(
            "compact_upper",
            invite(VIA, &format!("I:{CALL_ID}\r\n"), AFTER, SDP),
            found(CALL_ID),
        ),
        both(
            "wsinv_mixed_case_blanks_folding",
            invite(
                "Via  : SIP/2.0/UDP pc33.atlanta.example.com\r\n    ;branch=z9hG4bKkdjuw\r\n\
                 sUbJeCt :\r\n   a folded\r\n\tsubject\r\n",
                "cAll-iD \t :\t 0ha0isndaksdjweiafasdk3@pc33.atlanta.example.com  \r\n",
                "tO: <sip:bob@biloxi.example.com>\r\n",
                "",
            ),
            found("0ha0isndaksdjweiafasdk3@pc33.atlanta.example.com"),
        ),
        both(
            "intmeth_punctuation",
            invite(
                VIA,
                "call-id: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n",
                AFTER,
                SDP,
            ),
            found("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"),
        ),
        both(
            "longreq_long_call_id_deep",
            invite(
                &format!("{VIA}{}", padding(15)),
                &format!("Call-ID: {long_value}\r\n"),
                AFTER,
                "",
            ),
            found(&long_value),
        ),
        Case {
            name: "call_id_too_long_for_kernel",
            message: invite(VIA, &format!("Call-ID: {too_long_value}\r\n"), AFTER, ""),
            kernel: Expected::Unplaceable(CallIdTooLong),
            message_limits: found(&too_long_value),
        },
        both(
            "dblreq_second_message_after_body",
            {
                let mut message = invite(VIA, &call_id_line, "Content-Length: 0\r\n", "");
                message.extend_from_slice(
                    b"INVITE sip:joe@example.com SIP/2.0\r\nCall-ID: different@example.com\r\n\r\n",
                );
                message
            },
            found(CALL_ID),
        ),
        both(
            "transports_many_blanks_after_colon",
            invite(VIA, &format!("Call-ID:          {CALL_ID}\r\n"), AFTER, SDP),
            found(CALL_ID),
        ),
        both(
            "blanks_before_colon",
            invite(VIA, &format!("Call-ID \t : {CALL_ID}\r\n"), AFTER, SDP),
            found(CALL_ID),
        ),
        both(
            "trailing_blanks",
            invite(VIA, &format!("Call-ID: {CALL_ID} \t \r\n"), AFTER, SDP),
            found(CALL_ID),
        ),
        both(
            "insuf_no_call_id",
            invite(VIA, "", AFTER, SDP),
            Expected::Unplaceable(NoCallId),
        ),
        both(
            "multi01_two_call_ids",
            invite(VIA, &call_id_line, "Call-ID: other@example.com\r\n", SDP),
            Expected::Unplaceable(ConflictingCallIds),
        ),
        both(
            "two_identical_call_ids",
            invite(VIA, &call_id_line, &format!("i:{CALL_ID}\r\n"), SDP),
            found(CALL_ID),
        ),
        both(
            "three_identical_call_ids",
            invite(&call_id_line, &call_id_line, &call_id_line, ""),
            Expected::Unplaceable(ConflictingCallIds),
        ),
        both(
            "call_id_first_header",
            invite("", &call_id_line, &format!("{VIA}{AFTER}"), SDP),
            found(CALL_ID),
        ),
        both(
            "call_id_last_header",
            invite(&format!("{VIA}{AFTER}"), &call_id_line, "", SDP),
            found(CALL_ID),
        ),
        both(
            "call_id_last_line_of_datagram",
            invite(VIA, &call_id_line, "", ""),
            found(CALL_ID),
        ),
        Case {
            name: "call_id_beyond_window",
            message: invite(
                &format!("{VIA}{}", padding(40)),
                &call_id_line,
                AFTER,
                "",
            ),
            kernel: Expected::Unplaceable(BeyondWindow),
            message_limits: found(CALL_ID),
        },
        Case {
            name: "too_many_lines_for_kernel",
            message: invite(&many_short_lines, &call_id_line, "", ""),
            kernel: Expected::Unplaceable(BeyondWindow),
            message_limits: found(CALL_ID),
        },
        both(
            "cut_inside_call_id",
            {
                let mut message = invite(VIA, &call_id_line, AFTER, "");
                let cut = message.len() - AFTER.len() - 12;
                message.truncate(cut);
                message
            },
            Expected::Unplaceable(Truncated),
        ),
        both(
            "cut_inside_start_line",
            b"INVITE sip:bob@biloxi.example.com SIP/2".to_vec(),
            Expected::Unplaceable(Truncated),
        ),
        both(
            "empty_value",
            invite(VIA, "Call-ID:\r\n", AFTER, SDP),
            Expected::Unplaceable(EmptyCallId),
        ),
        both(
            "blank_value",
            invite(VIA, "Call-ID:    \r\n", AFTER, SDP),
            Expected::Unplaceable(EmptyCallId),
        ),
        Case {
            name: "long_blank_run_after_colon",
            message: invite(VIA, &format!("Call-ID:{}{CALL_ID}\r\n", " ".repeat(40)), AFTER, ""),
            kernel: Expected::Unplaceable(LongBlankRun),
            message_limits: found(CALL_ID),
        },
        both(
            "folded_call_id",
            invite(VIA, "Call-ID: abc\r\n  def@example.com\r\n", AFTER, SDP),
            Expected::Unplaceable(FoldedCallId),
        ),
        both(
            "call_id_on_continuation_line",
            invite(VIA, "Subject: x\r\n Call-ID: fake@example.com\r\n", AFTER, SDP),
            Expected::Unplaceable(NoCallId),
        ),
        both(
            "names_that_only_start_like_call_id",
            invite(
                VIA,
                "i-foo: one\r\nIn-Reply-To: two\r\nCall-IDx: three\r\nCall-ID-Info: four\r\n",
                &call_id_line,
                SDP,
            ),
            found(CALL_ID),
        ),
        both(
            "bare_line_feeds",
            format!(
                "BYE sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\ni: {CALL_ID}\nCSeq: 2 BYE\n\n"
            )
            .into_bytes(),
            found(CALL_ID),
        ),
        both(
            "body_contains_call_id",
            invite(VIA, "", AFTER, "v=0\r\nCall-ID: in-the-body@example.com\r\n"),
            Expected::Unplaceable(NoCallId),
        ),
        both(
            "request_line_without_version",
            b"INVITE sip:bob@biloxi.example.com HTTP/1.1\r\nCall-ID: x\r\n\r\n".to_vec(),
            Expected::Unplaceable(NotSip),
        ),
        both("http", b"HTTP/1.1 200 OK\r\nCall-ID: x\r\n\r\n".to_vec(), Expected::Unplaceable(NotSip)),
        both(
            "binary_junk",
            (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
            Expected::Unplaceable(NotSip),
        ),
        both("keep_alive_crlf", b"\r\n".to_vec(), Expected::Unplaceable(KeepAlive)),
        both("keep_alive_double_crlf", b"\r\n\r\n".to_vec(), Expected::Unplaceable(KeepAlive)),
        both("keep_alive_empty", Vec::new(), Expected::Unplaceable(KeepAlive)),
        both("short_junk", b"abc".to_vec(), Expected::Unplaceable(NotSip)),
    ]);
    cases.sort_by_key(|case| case.name);
    cases
}
