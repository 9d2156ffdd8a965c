//! The OPTIONS request sipxdp sends to probe a backend.

use std::{fmt::Write as _, net::SocketAddr};

/// Prefix of every RFC 3261 branch (§8.1.1.7): it tells the receiver the branch
/// alone identifies the transaction.
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// An out-of-dialog OPTIONS request over UDP.
///
/// The identifiers are written verbatim: they must consist of RFC 3261 token
/// characters (`call_id` may hold one `@`). The prober derives them from hex
/// counters, which always qualifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsRequest {
    /// Who is asked: the Request-URI and To.
    pub target: SocketAddr,
    /// Where replies must come back: the Via sent-by and From.
    pub local: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    /// The unique part of the Via branch; [`BRANCH_MAGIC_COOKIE`] is prepended.
    pub branch: String,
    /// The From tag.
    pub tag: String,
}

impl OptionsRequest {
    /// The request as sent on the wire.
    ///
    /// `rport` (RFC 3581) makes a backend answer the address the request came
    /// from, so replies still reach us through NAT.
    pub fn to_bytes(&self) -> Vec<u8> {
        let target = host_port(self.target);
        let local = host_port(self.local);
        let mut text = String::with_capacity(384);
        // Writing to a String cannot fail; the results carry no information.
        let _ = write!(
            text,
            "OPTIONS sip:{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={BRANCH_MAGIC_COOKIE}{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sipxdp@{local}>;tag={tag}\r\n\
             To: <sip:{target}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} OPTIONS\r\n\
             User-Agent: sipxdp\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\
             \r\n",
            branch = self.branch,
            tag = self.tag,
            call_id = self.call_id,
            cseq = self.cseq,
        );
        text.into_bytes()
    }
}

/// `host:port` as a SIP URI or Via wants it: IPv6 in brackets, and without the
/// zone index `SocketAddr`'s `Display` would add, which SIP cannot express.
fn host_port(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Message, StartLine};

    fn request(target: &str, local: &str) -> OptionsRequest {
        OptionsRequest {
            target: target.parse().unwrap(),
            local: local.parse().unwrap(),
            call_id: "abc123@sipxdp".into(),
            cseq: 7,
            branch: "0f1e2d".into(),
            tag: "77aa".into(),
        }
    }

    #[test]
    fn ipv4_request_is_exactly_as_specified() {
        let bytes = request("203.0.113.10:5060", "203.0.113.1:5070").to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "OPTIONS sip:203.0.113.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 203.0.113.1:5070;branch=z9hG4bK0f1e2d;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sipxdp@203.0.113.1:5070>;tag=77aa\r\n\
             To: <sip:203.0.113.10:5060>\r\n\
             Call-ID: abc123@sipxdp\r\n\
             CSeq: 7 OPTIONS\r\n\
             User-Agent: sipxdp\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\
             \r\n"
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_without_zone() {
        let mut options = request("[2001:db8::10]:5060", "[fe80::1]:5070");
        if let SocketAddr::V6(local) = &mut options.local {
            local.set_scope_id(3);
        }
        let bytes = options.to_bytes();
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(
            *message.start_line(),
            StartLine::Request {
                method: "OPTIONS",
                uri: "sip:[2001:db8::10]:5060",
                version: "SIP/2.0"
            }
        );
        assert_eq!(
            message.header("Via"),
            Some("SIP/2.0/UDP [fe80::1]:5070;branch=z9hG4bK0f1e2d;rport")
        );
    }

    #[test]
    fn request_parses_back() {
        let bytes = request("203.0.113.10:5060", "203.0.113.1:5070").to_bytes();
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.call_id(), Some("abc123@sipxdp"));
        assert_eq!(message.cseq(), Some((7, "OPTIONS")));
        assert_eq!(message.via_branch(), Some("z9hG4bK0f1e2d"));
        assert_eq!(message.header("Max-Forwards"), Some("70"));
        assert!(message.body().is_empty());
    }
}
