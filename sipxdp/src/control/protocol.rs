//! The control socket's protocol: one request line from the client, then the daemon's
//! answer and the end of the connection. Sans-IO: parsing and printing only, so it is
//! tested (and fuzzed) without sockets.
//!
//! Requests, words separated by blanks:
//!
//! ```text
//! status
//! hash VIP CALL-ID
//! backend drain|enable|disable|remove VIP ADDRESS:PORT
//! backend add VIP ADDRESS:PORT [WEIGHT]
//! reload
//! ```
//!
//! The answer's first line is `ok` or `error: MESSAGE`; the lines after `ok` are the
//! answer itself.

use std::{fmt, net::SocketAddr};

use thiserror::Error;

/// The longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 4096;

/// Why a request line is not a request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("an empty request")]
    Empty,
    #[error("unknown request {0:?}; the requests are status, hash, backend and reload")]
    UnknownRequest(String),
    #[error("`{request}` takes {expected}")]
    Arguments {
        request: &'static str,
        expected: &'static str,
    },
    #[error("unknown backend action {0:?}; the actions are drain, enable, disable, add and remove")]
    UnknownAction(String),
    #[error("{0:?} is not a weight (0 to 4294967295)")]
    Weight(String),
    #[error("{0:?} is not a backend address and port (ADDRESS:PORT, [IPv6]:PORT)")]
    BackendAddress(String),
    #[error("a request longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("a request that is not UTF-8")]
    NotText,
}

/// What an operator can change about a backend at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendAction {
    /// No new calls; calls in progress stay until they end or go idle.
    Drain,
    /// Back to the configured state.
    Enable,
    /// No calls at all: calls in progress move to the other backends.
    Disable,
    /// A new backend with this weight, until the next restart.
    Add { weight: u32 },
    /// Out of the VIP until the next restart: its calls move to the others.
    Remove,
}

impl BackendAction {
    fn name(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Add { .. } => "add",
            Self::Remove => "remove",
        }
    }
}

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// VIPs and backends with their states, weights, health and counters.
    Status,
    /// The backend a Call-ID goes to now.
    Hash { vip: String, call_id: String },
    /// Changes a backend's admin state.
    Backend {
        action: BackendAction,
        vip: String,
        backend: SocketAddr,
    },
    /// Applies the configuration file again.
    Reload,
}

impl Request {
    /// Parses one request line (without its line feed).
    pub fn parse(line: &[u8]) -> Result<Self, ProtocolError> {
        if line.len() > MAX_REQUEST {
            return Err(ProtocolError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotText)?;
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        let Some((&request, arguments)) = words.split_first() else {
            return Err(ProtocolError::Empty);
        };
        match (request, arguments) {
            ("status", []) => Ok(Self::Status),
            ("status", _) => Err(ProtocolError::Arguments {
                request: "status",
                expected: "no arguments",
            }),
            ("reload", []) => Ok(Self::Reload),
            ("reload", _) => Err(ProtocolError::Arguments {
                request: "reload",
                expected: "no arguments",
            }),
            ("hash", [vip, call_id]) => Ok(Self::Hash {
                vip: (*vip).to_owned(),
                call_id: (*call_id).to_owned(),
            }),
            ("hash", _) => Err(ProtocolError::Arguments {
                request: "hash",
                expected: "a VIP name and a Call-ID",
            }),
            ("backend", [action, vip, backend, rest @ ..]) => {
                let action = match (*action, rest) {
                    ("drain", []) => BackendAction::Drain,
                    ("enable", []) => BackendAction::Enable,
                    ("disable", []) => BackendAction::Disable,
                    ("remove", []) => BackendAction::Remove,
                    ("add", []) => BackendAction::Add { weight: 1 },
                    ("add", [weight]) => BackendAction::Add {
                        weight: weight
                            .parse()
                            .map_err(|_| ProtocolError::Weight((*weight).to_owned()))?,
                    },
                    ("drain" | "enable" | "disable" | "remove" | "add", _) => {
                        return Err(ProtocolError::Arguments {
                            request: "backend",
                            expected: "an action, a VIP name and ADDRESS:PORT (and a weight \
                                       for add)",
                        });
                    }
                    (other, _) => return Err(ProtocolError::UnknownAction(other.to_owned())),
                };
                let backend = backend
                    .parse()
                    .map_err(|_| ProtocolError::BackendAddress((*backend).to_owned()))?;
                Ok(Self::Backend {
                    action,
                    vip: (*vip).to_owned(),
                    backend,
                })
            }
            ("backend", _) => Err(ProtocolError::Arguments {
                request: "backend",
                expected: "an action, a VIP name and ADDRESS:PORT",
            }),
            (other, _) => Err(ProtocolError::UnknownRequest(other.to_owned())),
        }
    }
}

impl fmt::Display for Request {
    /// The request line (without its line feed) that [`Request::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status => f.write_str("status"),
            Self::Reload => f.write_str("reload"),
            Self::Hash { vip, call_id } => write!(f, "hash {vip} {call_id}"),
            Self::Backend {
                action,
                vip,
                backend,
            } => match action {
                BackendAction::Add { weight } => write!(f, "backend add {vip} {backend} {weight}"),
                _ => write!(f, "backend {} {vip} {backend}", action.name()),
            },
        }
    }
}

/// The daemon's answer: its text, or why the request failed.
pub type Answer = Result<String, String>;

/// The bytes of `answer` on the wire.
pub fn encode_answer(answer: &Answer) -> String {
    match answer {
        Ok(text) if text.is_empty() => "ok\n".to_owned(),
        Ok(text) => format!("ok\n{}\n", text.trim_end()),
        Err(message) => format!("error: {message}\n"),
    }
}

/// The answer in `bytes`, as [`encode_answer`] wrote it.
pub fn decode_answer(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    match text.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.trim_end().to_owned()),
        _ if text.trim_end() == "ok" => Ok(String::new()),
        _ => match text.strip_prefix("error: ") {
            Some(message) => Err(message.trim_end().to_owned()),
            None => Err(format!("an answer the protocol does not know: {text:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::Status,
            Request::Reload,
            Request::Hash {
                vip: "sip".into(),
                call_id: "a84b4c76e66710@pc33.example.com".into(),
            },
            Request::Backend {
                action: BackendAction::Drain,
                vip: "sip".into(),
                backend: "198.51.100.21:5060".parse().unwrap(),
            },
            Request::Backend {
                action: BackendAction::Disable,
                vip: "sip6".into(),
                backend: "[2001:db8:2::21]:5080".parse().unwrap(),
            },
            Request::Backend {
                action: BackendAction::Add { weight: 3 },
                vip: "sip".into(),
                backend: "198.51.100.24:5060".parse().unwrap(),
            },
            Request::Backend {
                action: BackendAction::Remove,
                vip: "sip".into(),
                backend: "198.51.100.24:5060".parse().unwrap(),
            },
        ];
        for request in requests {
            let line = request.to_string();
            assert_eq!(Request::parse(line.as_bytes()), Ok(request), "{line}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(Request::parse(b"  "), Err(ProtocolError::Empty));
        assert_eq!(
            Request::parse(b"restart"),
            Err(ProtocolError::UnknownRequest("restart".into()))
        );
        assert!(matches!(
            Request::parse(b"hash sip"),
            Err(ProtocolError::Arguments { .. })
        ));
        assert_eq!(
            Request::parse(b"backend pause sip 198.51.100.21:5060"),
            Err(ProtocolError::UnknownAction("pause".into()))
        );
        assert_eq!(
            Request::parse(b"backend drain sip 198.51.100.21"),
            Err(ProtocolError::BackendAddress("198.51.100.21".into()))
        );
        assert_eq!(
            Request::parse(b"backend add sip 198.51.100.24:5060 heavy"),
            Err(ProtocolError::Weight("heavy".into()))
        );
        assert!(matches!(
            Request::parse(b"backend drain sip 198.51.100.24:5060 2"),
            Err(ProtocolError::Arguments { .. })
        ));
        assert_eq!(Request::parse(&[0xff]), Err(ProtocolError::NotText));
        assert_eq!(
            Request::parse(&[b'a'; MAX_REQUEST + 1]),
            Err(ProtocolError::TooLong)
        );
    }

    #[test]
    fn answers_round_trip() {
        for answer in [
            Ok(String::new()),
            Ok("one\ntwo".to_owned()),
            Err("no VIP named \"x\"".to_owned()),
        ] {
            assert_eq!(decode_answer(encode_answer(&answer).as_bytes()), answer);
        }
        assert!(decode_answer(b"garbage").is_err());
    }
}
