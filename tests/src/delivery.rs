//! Delivering SIP messages through a lab and telling which backend got what.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::ensure;
use sipxdp_common::{
    callid::{MessageLimits, locate},
    payload::SlicePayload,
};

use crate::{Netns, UdpReceiver, send_udp_from};

/// Messages in flight at once: few enough that no queue along the way overflows, so a
/// missing datagram is the balancer's fault, not the harness's.
pub const WINDOW: usize = 200;

/// Sends `messages` from `client` (in `client_netns`) to `vip` in windows of [`WINDOW`],
/// each window after the previous one arrived, and returns what `receivers` got (backend
/// numbers count from 1 in `receivers` order).
///
/// # Errors
///
/// A send failure, or a window that did not arrive whole within 10 s.
pub fn deliver_windowed(
    client_netns: &Netns,
    receivers: &[&UdpReceiver],
    client: SocketAddr,
    vip: SocketAddr,
    messages: &[Vec<u8>],
) -> anyhow::Result<Vec<Received>> {
    let mut got = Vec::new();
    for window in messages.chunks(WINDOW) {
        let sent = send_udp_from(client_netns, client, vip, window)?.sent;
        ensure!(
            sent == window.len(),
            "the client sent {sent} of {}",
            window.len()
        );
        let expected = got.len() + sent;
        let deadline = Instant::now() + Duration::from_secs(10);
        got.extend(collect(receivers, sent, deadline)?);
        ensure!(
            got.len() == expected,
            "{} of {expected} messages arrived",
            got.len()
        );
    }
    Ok(got)
}

/// What `receivers` get until `expected` datagrams arrived or `deadline` passed (backend
/// numbers count from 1 in `receivers` order).
///
/// # Errors
///
/// A receiver that failed.
pub fn collect(
    receivers: &[&UdpReceiver],
    expected: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Received>> {
    let mut got = Vec::new();
    while got.len() < expected && Instant::now() < deadline {
        for (index, receiver) in receivers.iter().enumerate() {
            let short = Instant::now() + Duration::from_millis(5);
            for datagram in receiver.collect(expected - got.len(), short.min(deadline))? {
                got.push(Received {
                    backend: index + 1,
                    peer: datagram.peer,
                    call_id: call_id(&datagram.payload),
                    payload: datagram.payload,
                });
            }
        }
    }
    Ok(got)
}

/// One datagram a backend received: the backend's number (from 1), the client address
/// it saw, the message's Call-ID and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub backend: usize,
    pub peer: SocketAddr,
    pub call_id: String,
    pub payload: Vec<u8>,
}

/// The Call-ID of a message the generator wrote.
pub fn call_id(message: &[u8]) -> String {
    match locate::<_, MessageLimits>(&SlicePayload(message), 0) {
        Ok(found) => {
            String::from_utf8_lossy(&message[found.start..found.start + found.len]).into_owned()
        }
        Err(reason) => format!("(no Call-ID: {reason:?})"),
    }
}

/// Per call, the set of backends its messages reached, and per backend the calls it got.
pub fn dialogs_by_backend(
    received: &[Received],
) -> (BTreeMap<&str, BTreeSet<usize>>, BTreeMap<usize, usize>) {
    let mut backends_of: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for message in received {
        backends_of
            .entry(&message.call_id)
            .or_default()
            .insert(message.backend);
    }
    let mut calls_of = BTreeMap::new();
    for backends in backends_of.values() {
        for backend in backends {
            *calls_of.entry(*backend).or_default() += 1;
        }
    }
    (backends_of, calls_of)
}
