//! SIP messages of synthetic calls, for traffic tests and load generation: deterministic
//! (a seed, no OS randomness) and varied (header order, compact forms, Call-ID shapes).

use std::net::{IpAddr, SocketAddr};

/// A small deterministic generator (splitmix64), so a test run is reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound` (not perfectly uniform; fine for tests).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// One call's identity and how its messages are written.
#[derive(Clone, Debug)]
pub struct Call {
    pub call_id: String,
    /// Use the compact header forms (`i:`, `v:`, `f:`, `t:`).
    pub compact: bool,
    pub from_tag: String,
    pub to_tag: String,
}

impl Call {
    /// A call with a random Call-ID of a realistic shape.
    pub fn random(rng: &mut Rng, compact_share_percent: u64) -> Self {
        let call_id = match rng.below(3) {
            0 => format!("{:016x}@client.example.com", rng.next_u64()),
            1 => format!("{}-{}@198.51.100.10", rng.below(1_000_000), rng.next_u64()),
            _ => format!("{:x}{:x}", rng.next_u64(), rng.next_u64()),
        };
        Self {
            call_id,
            compact: rng.below(100) < compact_share_percent,
            from_tag: format!("{:x}", rng.next_u64() >> 16),
            to_tag: format!("{:x}", rng.next_u64() >> 16),
        }
    }

    /// Header names in the form this call uses: `(full, compact)` picked by `compact`.
    fn name(&self, full: &'static str, compact: &'static str) -> &'static str {
        if self.compact { compact } else { full }
    }

    /// The header section of a message of this call without its Content-Length: the Via,
    /// the dialog headers (Call-ID 5th, as most user agents put it), CSeq and Contact. The
    /// To tag is there once the dialog exists (`confirmed`).
    fn headers(
        &self,
        client: SocketAddr,
        vip: SocketAddr,
        cseq: (u32, &str),
        branch: u64,
        confirmed: bool,
    ) -> String {
        let (cseq, method) = cseq;
        format!(
            "{via}: SIP/2.0/UDP {client};branch=z9hG4bK{branch:x};rport\r\n\
             Max-Forwards: 70\r\n\
             {from}: <sip:alice@client.example.com>;tag={from_tag}\r\n\
             {to}: <sip:service@{vip}>{to_tag}\r\n\
             {call_id}: {value}\r\n\
             CSeq: {cseq} {method}\r\n\
             {contact}: <sip:alice@{client}>\r\n\
             User-Agent: sipxdp-tests\r\n",
            via = self.name("Via", "v"),
            from = self.name("From", "f"),
            to = self.name("To", "t"),
            call_id = self.name("Call-ID", "i"),
            contact = self.name("Contact", "m"),
            from_tag = self.from_tag,
            to_tag = if confirmed {
                format!(";tag={}", self.to_tag)
            } else {
                String::new()
            },
            value = self.call_id,
        )
    }

    /// `start_line`, `headers` and an SDP body of at least `body_len` bytes.
    fn with_sdp(&self, start_line: &str, headers: &str, ip: IpAddr, body_len: usize) -> Vec<u8> {
        let mut body = format!(
            "v=0\r\no=alice 2890844526 2890844526 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        // Attribute lines of up to 46 bytes; the last one is cut so that the body ends at
        // `body_len` (it can overshoot by at most 13 bytes, the shortest such line).
        const PADDING: &str = "a=x-padding:0123456789abcdef0123456789abcdef";
        while body.len() < body_len {
            let value = (body_len - body.len())
                .saturating_sub(2)
                .clamp(12, PADDING.len());
            body.push_str(&PADDING[..value]);
            body.push_str("\r\n");
        }
        format!(
            "{start_line}\r\n{headers}{}: application/sdp\r\n{}: {}\r\n\r\n{body}",
            self.name("Content-Type", "c"),
            self.name("Content-Length", "l"),
            body.len()
        )
        .into_bytes()
    }

    /// The INVITE, with an SDP body of `body_len` bytes (at least a minimal SDP).
    pub fn invite(&self, client: SocketAddr, vip: SocketAddr, body_len: usize) -> Vec<u8> {
        let headers = self.headers(client, vip, (1, "INVITE"), 1, false);
        self.with_sdp(
            &format!("INVITE sip:service@{vip} SIP/2.0"),
            &headers,
            client.ip(),
            body_len,
        )
    }

    /// The `200 OK` answering the INVITE, with an SDP body of `body_len` bytes.
    pub fn ok(&self, client: SocketAddr, vip: SocketAddr, body_len: usize) -> Vec<u8> {
        let headers = self.headers(client, vip, (1, "INVITE"), 1, true);
        self.with_sdp("SIP/2.0 200 OK", &headers, vip.ip(), body_len)
    }

    /// The ACK to a 200 OK.
    pub fn ack(&self, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
        self.request("ACK", 1, 2, client, vip)
    }

    /// The BYE ending the call.
    pub fn bye(&self, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
        self.request("BYE", 2, 3, client, vip)
    }

    fn request(
        &self,
        method: &str,
        cseq: u32,
        branch: u64,
        client: SocketAddr,
        vip: SocketAddr,
    ) -> Vec<u8> {
        let headers = self.headers(client, vip, (cseq, method), branch, true);
        format!(
            "{method} sip:service@{vip} SIP/2.0\r\n{headers}{}: 0\r\n\r\n",
            self.name("Content-Length", "l")
        )
        .into_bytes()
    }
}

/// What a backend's SIP stack does with a datagram: the reply to send back to its
/// sender, if any, and whether the datagram is handed on to the test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub reply: Option<Vec<u8>>,
    pub keep: bool,
}

/// The `200 OK` to `request` (RFC 3261 §8.2.6): its Via, From, To, Call-ID and CSeq
/// headers copied. An INVITE's body comes back as the answer's (an SDP answer as large as
/// the offer, so a large offer gets a large answer); other answers have none. `None` for
/// what is not a request.
fn ok_to(request: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(request).ok()?;
    if text.starts_with("SIP/2.0 ") {
        return None;
    }
    let mut reply = String::from("SIP/2.0 200 OK\r\n");
    let copied = [
        "via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:",
    ];
    for line in text.lines().skip(1).take_while(|line| !line.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if copied.iter().any(|name| lower.starts_with(name)) {
            reply.push_str(line.trim_end_matches('\r'));
            reply.push_str("\r\n");
        }
    }
    let body = match text.split_once("\r\n\r\n") {
        Some((_, body)) if text.starts_with("INVITE ") && !body.is_empty() => body,
        _ => "",
    };
    if !body.is_empty() {
        reply.push_str("Content-Type: application/sdp\r\n");
    }
    reply.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Some(reply.into_bytes())
}

/// A backend that answers health checks: `OPTIONS` gets its `200 OK` (RFC 3261 §11.2)
/// and is not handed on; everything else is handed on unanswered.
pub fn answer_options(request: &[u8]) -> Answer {
    if request.starts_with(b"OPTIONS ") {
        Answer {
            reply: ok_to(request),
            keep: false,
        }
    } else {
        Answer {
            reply: None,
            keep: true,
        }
    }
}

/// A backend that also takes calls: `OPTIONS` as in [`answer_options`]; `INVITE` and
/// `BYE` get a `200 OK` and are handed on; anything else is handed on unanswered.
pub fn answer_calls(request: &[u8]) -> Answer {
    if request.starts_with(b"INVITE ") || request.starts_with(b"BYE ") {
        Answer {
            reply: ok_to(request),
            keep: true,
        }
    } else {
        answer_options(request)
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `message` with `count` short header lines (`X-Hop: N`) right after its start-line:
/// with enough of them, its Call-ID lies beyond what the kernel searches.
pub fn with_extra_header_lines(message: &[u8], count: usize) -> Vec<u8> {
    let end = find(message, b"\r\n").map_or(message.len(), |at| at + 2);
    let mut out = message[..end].to_vec();
    for n in 0..count {
        out.extend_from_slice(format!("X-Hop: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(&message[end..]);
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use sipxdp_common::{
        callid::{MessageLimits, locate},
        payload::SlicePayload,
    };

    use super::{Answer, Call, Rng, answer_calls, answer_options};

    #[test]
    fn every_message_of_a_call_carries_its_call_id_and_declared_length() {
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)), 5062);
        let vip = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100)), 5060);
        let mut rng = Rng::new(7);
        for compact in [false, true] {
            let call = Call {
                compact,
                ..Call::random(&mut rng, 0)
            };
            for body_len in [0, 100, 431, 600] {
                let messages = [
                    call.invite(client, vip, body_len),
                    call.ok(client, vip, body_len),
                    call.ack(client, vip),
                    call.bye(client, vip),
                ];
                for message in messages {
                    let text = String::from_utf8(message.clone()).expect("text");
                    let found = locate::<_, MessageLimits>(&SlicePayload(&message), 0)
                        .unwrap_or_else(|reason| panic!("{reason:?} in {text}"));
                    assert_eq!(
                        &message[found.start..found.start + found.len],
                        call.call_id.as_bytes()
                    );
                    assert_eq!(text.contains("\r\ni: "), compact, "{text}");
                    let (head, body) = text.split_once("\r\n\r\n").expect("a header section");
                    let length = if compact {
                        "\r\nl: "
                    } else {
                        "\r\nContent-Length: "
                    };
                    let declared = head
                        .split_once(length)
                        .and_then(|(_, rest)| rest.split("\r\n").next())
                        .and_then(|value| value.parse::<usize>().ok())
                        .unwrap_or_else(|| panic!("no Content-Length in {text}"));
                    assert_eq!(declared, body.len(), "{text}");
                    if !body.is_empty() {
                        // Bodies above the minimal SDP end within one short line of the size
                        // asked for.
                        assert!(body.len() >= body_len, "{text}");
                        if body_len > 300 {
                            assert!(body.len() <= body_len + 13, "{text}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn options_are_answered_with_their_transaction_headers() {
        let request = b"OPTIONS sip:198.51.100.21:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 198.51.100.2:40000;branch=z9hG4bK-1;rport\r\n\
            From: <sip:sipxdp@198.51.100.2>;tag=a\r\nTo: <sip:198.51.100.21>\r\n\
            Call-ID: ping-1@198.51.100.2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
            Content-Length: 0\r\n\r\n";
        let answer = answer_options(request);
        assert!(!answer.keep, "health checks are not handed on");
        let reply = String::from_utf8(answer.reply.expect("a reply")).expect("text");
        assert!(reply.starts_with("SIP/2.0 200 OK\r\n"));
        for header in [
            "Via: SIP/2.0/UDP",
            "From: <sip:sipxdp",
            "To: <sip",
            "Call-ID: ping-1",
            "CSeq: 1 OPTIONS",
        ] {
            assert!(reply.contains(header), "{header} in {reply}");
        }
        assert!(!reply.contains("Max-Forwards"));
        assert!(reply.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn other_messages_are_handed_on_and_calls_answered() {
        let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n";
        let kept = Answer {
            reply: None,
            keep: true,
        };
        assert_eq!(answer_options(invite), kept);
        assert_eq!(answer_options(&[0xff, 0xfe]), kept);
        assert_eq!(
            answer_calls(b"ACK sip:bob@example.com SIP/2.0\r\n\r\n"),
            kept
        );
        let answer = answer_calls(invite);
        assert!(answer.keep);
        let reply = String::from_utf8(answer.reply.expect("a reply")).expect("text");
        assert!(reply.starts_with("SIP/2.0 200 OK\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"));
        assert!(reply.ends_with("Content-Length: 0\r\n\r\n"), "{reply}");
        let offer = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: c2\r\n\
            Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=x\r\n";
        let reply = answer_calls(offer).reply.expect("a reply");
        assert!(
            reply.ends_with(b"Content-Length: 10\r\n\r\nv=0\r\no=x\r\n"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let response = answer_calls(b"SIP/2.0 180 Ringing\r\n\r\n");
        assert_eq!(response, kept, "responses are not answered");
    }
}
