//! What is known about one target, and the threshold rules that move it
//! between Up and Down.

use std::time::Duration;

/// Whether a target should receive traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
}

/// A target's health as the prober last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub state: State,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Round-trip time of the last final reply; a timeout leaves it unchanged.
    pub last_latency: Option<Duration>,
    /// Code of the last final reply.
    pub last_reply_code: Option<u16>,
    pub pings_sent: u64,
    pub failures_total: u64,
}

impl TargetStatus {
    /// A freshly configured target: Up, with no history.
    pub(super) fn new() -> Self {
        Self {
            state: State::Up,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_latency: None,
            last_reply_code: None,
            pings_sent: 0,
            failures_total: 0,
        }
    }

    /// Counts a success; true when it brings the target Up.
    pub(super) fn record_success(&mut self, up_after: u32) -> bool {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        let rises = self.state == State::Down && self.consecutive_successes >= up_after;
        if rises {
            self.state = State::Up;
        }
        rises
    }

    /// Counts a failure; true when it takes the target Down.
    pub(super) fn record_failure(&mut self, down_after: u32) -> bool {
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failures_total = self.failures_total.saturating_add(1);
        let falls = self.state == State::Up && self.consecutive_failures >= down_after;
        if falls {
            self.state = State::Down;
        }
        falls
    }
}
