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
