//! A parsed SIP message that borrows from the datagram it came from.

use std::borrow::Cow;

use thiserror::Error;

use super::{names::same_name, parse};

/// Why a datagram is not a SIP message.
///
/// The variants name the part that failed but never echo the input: it is
/// untrusted and may end up in logs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("the header section does not end with an empty line")]
    UnterminatedHeaders,
    #[error("the header section is not UTF-8")]
    NotUtf8,
    #[error("malformed start line")]
    InvalidStartLine,
    #[error("malformed header field on line {line}")]
    InvalidHeader { line: usize },
    #[error("a folded line on line {line} continues no header field")]
    OrphanContinuation { line: usize },
    #[error("malformed or conflicting Content-Length")]
    InvalidContentLength,
    #[error("Content-Length is {declared} but only {available} body bytes follow")]
    BodyTruncated { declared: usize, available: usize },
}

/// The first line of a message: what distinguishes a request from a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        version: &'a str,
        /// Always within 100..=699: the classes RFC 3261 defines.
        code: u16,
        reason: &'a str,
    },
}

/// One header field as it appeared, name unnormalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name as written (possibly a compact form such as `v`).
    pub name: &'a str,
    /// The value without surrounding whitespace. Borrowed unless the field was
    /// folded over several lines, which forces a copy to join them.
    pub value: Cow<'a, str>,
}

/// A SIP request or response, parsed from one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub(super) start: StartLine<'a>,
    pub(super) fields: Vec<Header<'a>>,
    pub(super) body: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses a message received as one datagram (UDP framing).
    ///
    /// A missing Content-Length means the body is the rest of the datagram; a
    /// present one is honoured, and bytes beyond it are dropped as RFC 3261
    /// §18.3 prescribes for datagrams.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ParseError> {
        parse::message(datagram)
    }

    /// The request or status line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// All header fields in the order they appeared.
    pub fn fields(&self) -> &[Header<'a>] {
        &self.fields
    }

    /// The body, exactly Content-Length bytes when that header is present.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The status code if this is a response.
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The value of the first field named `name` (case-insensitive; compact
    /// forms match their full names either way round).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|field| same_name(field.name, name))
            .map(|field| field.value.as_ref())
    }

    /// The values of every field named `name`, in order. Comma-separated lists
    /// inside one field are not split.
    pub fn headers<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> {
        self.fields
            .iter()
            .filter(move |field| same_name(field.name, name))
            .map(|field| field.value.as_ref())
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// The CSeq sequence number and method, if present and well-formed.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        self.header("CSeq").and_then(parse::cseq)
    }

    /// The `branch` parameter of the topmost Via: the transaction a response
    /// belongs to (RFC 3261 §17.1.3).
    pub fn via_branch(&self) -> Option<&str> {
        self.header("Via").and_then(parse::via_branch)
    }
}
