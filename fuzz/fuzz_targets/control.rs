//! The control socket's protocol on arbitrary bytes: never a panic; a request that
//! parses is written back as a line that parses to the same request; any answer bytes
//! decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipxdp::control::protocol::{Request, decode_answer};

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = Request::parse(line) {
        assert_eq!(Request::parse(request.to_string().as_bytes()), Ok(request));
    }
    let _ = decode_answer(line);
});
