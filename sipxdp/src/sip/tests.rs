//! Parser tests: RFC 3261 examples, the leniencies we allow, and hostile input.

use std::borrow::Cow;

use super::{Message, ParseError, StartLine};

/// RFC 3261 §24.2 F1 (Alice's INVITE), with its SDP body.
fn rfc_invite() -> Vec<u8> {
    let sdp = "v=0\r\n\
               o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\n\
               s=-\r\n\
               c=IN IP4 pc33.atlanta.com\r\n\
               t=0 0\r\n\
               m=audio 49172 RTP/AVP 0\r\n\
               a=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.com>\r\n\
         From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:alice@pc33.atlanta.com>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// RFC 3261 §7 / §24.2 F9: a 200 OK that crossed two proxies.
const RFC_OK: &str = "SIP/2.0 200 OK\r\n\
    Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=203.0.113.3\r\n\
    Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1;received=203.0.113.2\r\n\
    Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=203.0.113.1\r\n\
    To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
    From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
    CSeq: 314159 INVITE\r\n\
    Contact: <sip:bob@203.0.113.4>\r\n\
    Content-Type: application/sdp\r\n\
    Content-Length: 0\r\n\
    \r\n";

#[test]
fn rfc_invite_parses() {
    let bytes = rfc_invite();
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        *message.start_line(),
        StartLine::Request {
            method: "INVITE",
            uri: "sip:bob@biloxi.com",
            version: "SIP/2.0"
        }
    );
    assert_eq!(message.status_code(), None);
    assert_eq!(message.fields().len(), 9);
    assert_eq!(message.fields()[1].name, "Max-Forwards");
    assert_eq!(message.call_id(), Some("a84b4c76e66710"));
    assert_eq!(message.cseq(), Some((314159, "INVITE")));
    assert_eq!(message.via_branch(), Some("z9hG4bKnashds8"));
    assert_eq!(
        message.header("from"),
        Some("Alice <sip:alice@atlanta.com>;tag=1928301774")
    );
    assert!(message.body().starts_with(b"v=0\r\n"));
    assert!(message.body().ends_with(b"PCMU/8000\r\n"));
}

#[test]
fn rfc_response_parses_with_top_via_first() {
    let message = Message::parse(RFC_OK.as_bytes()).unwrap();
    assert_eq!(
        *message.start_line(),
        StartLine::Response {
            version: "SIP/2.0",
            code: 200,
            reason: "OK"
        }
    );
    assert_eq!(message.status_code(), Some(200));
    assert_eq!(message.headers("Via").count(), 3);
    assert_eq!(message.via_branch(), Some("z9hG4bKnashds8"));
    assert_eq!(message.call_id(), Some("a84b4c76e66710@pc33.atlanta.com"));
    assert!(message.body().is_empty());
}

#[test]
fn compact_and_mixed_case_names_are_found() {
    let text = "SIP/2.0 486 Busy Here\r\n\
                v: SIP/2.0/UDP 10.0.0.1:5060;BRANCH=z9hG4bKcompact\r\n\
                i: compact-id\r\n\
                cSeQ:   9   OPTIONS  \r\n\
                VIA : SIP/2.0/UDP 10.0.0.2\r\n\
                l: 0\r\n\
                \r\n";
    let message = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(message.call_id(), Some("compact-id"));
    assert_eq!(message.header("I"), Some("compact-id"));
    assert_eq!(message.header("CALL-ID"), Some("compact-id"));
    assert_eq!(message.cseq(), Some((9, "OPTIONS")));
    assert_eq!(message.via_branch(), Some("z9hG4bKcompact"));
    assert_eq!(message.headers("v").count(), 2);
    assert_eq!(message.fields()[0].name, "v");
    assert_eq!(message.header("Content-Length"), Some("0"));
}

#[test]
fn folded_lines_join_with_one_space() {
    // RFC 3261 §7.3.1's own example.
    let text = "OPTIONS sip:a@b SIP/2.0\r\n\
                Subject:            I know you're there,\r\n               pull up a chair!\r\n\
                Call-ID: x\r\n\
                Empty:\r\n\tnow filled \r\n \r\n\
                \r\n";
    let message = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(
        message.header("s"),
        Some("I know you're there, pull up a chair!")
    );
    assert!(matches!(message.fields()[0].value, Cow::Owned(_)));
    assert!(matches!(message.fields()[1].value, Cow::Borrowed("x")));
    assert_eq!(message.header("Empty"), Some("now filled"));
}

#[test]
fn bare_line_feeds_are_accepted() {
    let text = "\r\n\nSIP/2.0 200 OK\nCall-ID: lf\nVia: SIP/2.0/UDP h;branch=z9hG4bKlf\n\nbody";
    let message = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(message.call_id(), Some("lf"));
    assert_eq!(message.via_branch(), Some("z9hG4bKlf"));
    assert_eq!(message.body(), b"body");
}

#[test]
fn status_line_leniencies() {
    let message = Message::parse(b"sip/2.0 100\r\n\r\n").unwrap();
    assert_eq!(
        *message.start_line(),
        StartLine::Response {
            version: "sip/2.0",
            code: 100,
            reason: ""
        }
    );
    let message = Message::parse("SIP/2.0 200 Très bien\r\n\r\n".as_bytes()).unwrap();
    assert_eq!(message.status_code(), Some(200));
}

#[test]
fn via_branch_takes_first_via_parm_and_respects_quotes() {
    let text = "SIP/2.0 200 OK\r\n\
                Via: SIP/2.0/UDP a;x=\"1,2;branch=fake\\\"\";branch=z9hG4bKgood, SIP/2.0/UDP b;branch=z9hG4bKsecond\r\n\
                \r\n";
    let message = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(message.via_branch(), Some("z9hG4bKgood"));

    let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b;branch=z9hG4bKb\r\n\r\n";
    let message = Message::parse(text.as_bytes()).unwrap();
    assert_eq!(message.via_branch(), None, "branch of a lower via-parm");

    let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=;rport\r\n\r\n";
    assert_eq!(Message::parse(text.as_bytes()).unwrap().via_branch(), None);
}

#[test]
fn malformed_cseq_is_none() {
    for cseq in [
        "",
        "OPTIONS",
        "1",
        "x OPTIONS",
        "99999999999 OPTIONS",
        "1 OPT IONS",
    ] {
        let text = format!("SIP/2.0 200 OK\r\nCSeq: {cseq}\r\n\r\n");
        let message = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(message.cseq(), None, "{cseq:?}");
    }
}

#[test]
fn content_length_frames_the_body() {
    let message = Message::parse(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabcdef").unwrap();
    assert_eq!(message.body(), b"abc");
    let message = Message::parse(b"SIP/2.0 200 OK\r\n\r\nabc\xffdef").unwrap();
    assert_eq!(
        message.body(),
        b"abc\xffdef",
        "no Content-Length: rest of datagram"
    );
    assert_eq!(
        Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
        Err(ParseError::BodyTruncated {
            declared: 9,
            available: 3
        })
    );
    for bad in ["-1", "x", "1 2", "", "99999999999999999999999"] {
        let text = format!("SIP/2.0 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert_eq!(
            Message::parse(text.as_bytes()),
            Err(ParseError::InvalidContentLength),
            "{bad:?}"
        );
    }
    assert_eq!(
        Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\nab"),
        Err(ParseError::InvalidContentLength)
    );
    assert!(Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 2\r\nl: 2\r\n\r\nab").is_ok());
}

#[test]
fn malformed_messages_are_errors() {
    let cases: [(&[u8], ParseError); 13] = [
        (b"", ParseError::Empty),
        (b"\r\n\r\n", ParseError::Empty),
        (
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\n",
            ParseError::UnterminatedHeaders,
        ),
        (b"SIP/2.0 200 OK", ParseError::UnterminatedHeaders),
        (
            b"SIP/2.0 200 OK\r\nCall-ID: \xff\r\n\r\n",
            ParseError::NotUtf8,
        ),
        (b"SIP/2.0 099 Low\r\n\r\n", ParseError::InvalidStartLine),
        (b"SIP/2.0 700 High\r\n\r\n", ParseError::InvalidStartLine),
        (b"SIP/2.0 2000 OK\r\n\r\n", ParseError::InvalidStartLine),
        (b"HTTP/1.1 200 OK\r\n\r\n", ParseError::InvalidStartLine),
        (
            b"OPTIONS sip:a SIP/2.0 extra\r\n\r\n",
            ParseError::InvalidStartLine,
        ),
        (
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\nno colon here\r\n\r\n",
            ParseError::InvalidHeader { line: 3 },
        ),
        (
            b"SIP/2.0 200 OK\r\n folded: first\r\n\r\n",
            ParseError::OrphanContinuation { line: 2 },
        ),
        (
            b"SIP/2.0 200 OK\r\nCall-ID: a\rInjected: b\r\n\r\n",
            ParseError::InvalidHeader { line: 2 },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            Message::parse(input),
            Err(expected),
            "{}",
            input.escape_ascii()
        );
    }
}

#[test]
fn every_prefix_of_a_message_is_handled() {
    let bytes = rfc_invite();
    let header_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for length in 0..bytes.len() {
        let result = Message::parse(&bytes[..length]);
        if length < header_end {
            assert!(result.is_err(), "prefix of {length} bytes parsed");
        } else {
            assert_eq!(
                result,
                Err(ParseError::BodyTruncated {
                    declared: bytes.len() - header_end,
                    available: length - header_end
                })
            );
        }
    }
    assert!(Message::parse(&bytes).is_ok());
}

/// xorshift64: reproducible noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut state = 0x9E37_79B9_7F4A_7C15;
    // Bytes from SIP's own alphabet reach deeper into the grammar than uniform noise.
    let alphabet = b"SIP/2.0 OPTIONS sip:@;,=\"\\:\r\n\t 0123456789vilzZ\xc3\xa9\xff";
    for _ in 0..20_000 {
        let length = (noise(&mut state) % 300) as usize;
        let uniform = noise(&mut state).is_multiple_of(2);
        let input: Vec<u8> = (0..length)
            .map(|_| {
                let n = noise(&mut state);
                if uniform {
                    n as u8
                } else {
                    alphabet[(n % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        exercise(&input);
    }
    let valid = RFC_OK.as_bytes();
    for _ in 0..20_000 {
        let mut input = valid.to_vec();
        for _ in 0..(noise(&mut state) % 4 + 1) {
            let at = (noise(&mut state) % input.len() as u64) as usize;
            input[at] = alphabet[(noise(&mut state) % alphabet.len() as u64) as usize];
        }
        exercise(&input);
    }
}

/// Parses and, on success, runs every accessor.
fn exercise(input: &[u8]) {
    if let Ok(message) = Message::parse(input) {
        let _ = (message.call_id(), message.cseq(), message.via_branch());
        let _ = (message.status_code(), message.body(), message.header("l"));
    }
}
