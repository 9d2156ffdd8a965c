//! Test helpers: the backend's side of a probe.

use crate::sip::Message;

/// What a well-behaved backend answers to `request`: a status line, then the
/// request's Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6.2).
pub(super) fn response(request: &[u8], code: u16) -> String {
    let request = Message::parse(request).expect("probes parse");
    let mut text = format!("SIP/2.0 {code} Whatever\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for value in request.headers(name) {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text + "Content-Length: 0\r\n\r\n"
}
