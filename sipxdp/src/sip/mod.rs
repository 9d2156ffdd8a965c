//! SIP messages (RFC 3261): a zero-copy parser and the one request sipxdp sends.
//!
//! The XDP fast path never parses SIP; user space does, for health-check replies
//! now and for the slow path later. Everything here is pure: bytes in, values out,
//! and any input, however malformed, yields an error rather than a panic, because
//! every byte we parse comes from the network.

mod message;
mod names;
mod options;
mod parse;

pub use message::{Header, Message, ParseError, StartLine};
pub use names::canonical_name;
pub use options::{BRANCH_MAGIC_COOKIE, OptionsRequest};

#[cfg(test)]
mod tests;
