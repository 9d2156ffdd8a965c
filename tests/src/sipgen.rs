//! SIP messages of synthetic calls, for traffic tests and load generation: deterministic
//! (a seed, no OS randomness) and varied (header order, compact forms, Call-ID shapes).

use std::net::SocketAddr;

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

    fn headers(
        &self,
        client: SocketAddr,
        vip: SocketAddr,
        method: &str,
        cseq: u32,
        branch: u64,
    ) -> String {
        let (via, from, to, call_id) = if self.compact {
            ("v", "f", "t", "i")
        } else {
            ("Via", "From", "To", "Call-ID")
        };
        format!(
            "{via}: SIP/2.0/UDP {client};branch=z9hG4bK{branch:x};rport\r\n\
             Max-Forwards: 70\r\n\
             {from}: <sip:alice@client.example.com>;tag={}\r\n\
             {to}: <sip:service@{vip}>{}\r\n\
             {call_id}: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@{client}>\r\n\
             User-Agent: sipxdp-tests\r\n",
            self.from_tag,
            if method == "INVITE" {
                String::new()
            } else {
                format!(";tag={}", self.to_tag)
            },
            self.call_id,
        )
    }

    /// The INVITE, with an SDP body of `body_len` bytes (at least a minimal SDP).
    pub fn invite(&self, client: SocketAddr, vip: SocketAddr, body_len: usize) -> Vec<u8> {
        let mut body = format!(
            "v=0\r\no=alice 2890844526 2890844526 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n",
            ip = client.ip()
        );
        while body.len() < body_len {
            body.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
        }
        let headers = self.headers(client, vip, "INVITE", 1, 1);
        format!(
            "INVITE sip:service@{vip} SIP/2.0\r\n{headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
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
        let headers = self.headers(client, vip, method, cseq, branch);
        format!("{method} sip:service@{vip} SIP/2.0\r\n{headers}Content-Length: 0\r\n\r\n")
            .into_bytes()
    }
}

/// The `200 OK` a SIP stack sends for an `OPTIONS` request (RFC 3261 section 11.2): the
/// request's Via, From, To, Call-ID and CSeq headers copied, no body. `None` for anything
/// else, so a backend can answer health checks and hand every other message on.
pub fn answer_options(request: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(request).ok()?;
    if !text.starts_with("OPTIONS ") {
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
    reply.push_str("Content-Length: 0\r\n\r\n");
    Some(reply.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::answer_options;

    #[test]
    fn options_are_answered_with_their_transaction_headers() {
        let request = b"OPTIONS sip:198.51.100.21:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 198.51.100.2:40000;branch=z9hG4bK-1;rport\r\n\
            From: <sip:sipxdp@198.51.100.2>;tag=a\r\nTo: <sip:198.51.100.21>\r\n\
            Call-ID: ping-1@198.51.100.2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
            Content-Length: 0\r\n\r\n";
        let reply = String::from_utf8(answer_options(request).expect("a reply")).expect("text");
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
    fn other_messages_are_not_answered() {
        assert_eq!(
            answer_options(b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n"),
            None
        );
        assert_eq!(answer_options(&[0xff, 0xfe]), None);
    }
}
