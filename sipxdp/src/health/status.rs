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
    /// Round-trip times of every final reply.
    pub latencies: LatencyHistogram,
}

/// Upper bounds of the latency buckets, in microseconds: 0.5 ms to 1 s, then +Inf.
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// Counts of round-trip times by bucket, Prometheus-style: `buckets[i]` counts the times
/// of at most `LATENCY_BUCKETS_US[i]` (cumulative), `count` all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Counts one round trip.
    pub fn observe(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS_US) {
            if us <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
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
            latencies: LatencyHistogram::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_count_into_every_bucket_above_them() {
        let mut histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(700));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(2));
        assert_eq!(histogram.buckets, [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(histogram.count, 3);
        assert_eq!(histogram.sum_us, 2_030_700);
    }
}
