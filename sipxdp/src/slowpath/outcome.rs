//! What the slow path did with each message and why: every message that reaches it is
//! counted exactly once, under its VIP, one [`Outcome`] and one [`Cause`]; every message
//! it sent is counted once more under its VIP and backend.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use sipxdp_common::outcome::Reason;

/// What happened to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Sent to the backend its Call-ID picks.
    Forwarded,
    /// Without a usable Call-ID, sent to the backend its client's address and port pick.
    Fallback,
    Dropped,
}

impl Outcome {
    /// The metric label value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Fallback => "fallback",
            Self::Dropped => "dropped",
        }
    }
}

/// Why a message got its [`Outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A reason the kernel path counts too: `call_id`, `dialog`, `no_backend`, or why the
    /// message has no usable Call-ID.
    Kernel(Reason),
    /// The queue between receiving and forwarding was full.
    QueueFull,
    /// The VIP socket's receive buffer was full: the kernel dropped the message.
    SocketOverflow,
    /// The message could not be sent to its backend (see the daemon's debug log).
    SendFailed,
}

impl Cause {
    /// The metric label value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel(reason) => reason.name(),
            Self::QueueFull => "queue_full",
            Self::SocketOverflow => "socket_overflow",
            Self::SendFailed => "send_failed",
        }
    }
}

/// What one count is of: a VIP address, an outcome and a cause name.
pub type CountKey = (SocketAddr, Outcome, &'static str);

/// Message counts, shared by the slow path's threads and read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    counts: Arc<Mutex<BTreeMap<CountKey, u64>>>,
    /// Messages sent, by VIP address and backend address.
    sent: Arc<Mutex<BTreeMap<(SocketAddr, SocketAddr), u64>>>,
}

impl Counts {
    pub fn add(&self, vip: SocketAddr, outcome: Outcome, cause: Cause, messages: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((vip, outcome, cause.name())).or_default() += messages;
    }

    /// One message of `vip` sent to `backend`.
    pub fn add_sent(&self, vip: SocketAddr, backend: SocketAddr) {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        *sent.entry((vip, backend)).or_default() += 1;
    }

    /// Every count so far, in messages.
    pub fn snapshot(&self) -> BTreeMap<CountKey, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The messages sent so far, by VIP address and backend address.
    pub fn sent(&self) -> BTreeMap<(SocketAddr, SocketAddr), u64> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
