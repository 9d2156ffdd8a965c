//! Polling with a deadline.
//!
//! Network state in a lab settles asynchronously (carrier, bridge port states, neighbour
//! resolution, processes dying after SIGKILL). A fixed sleep is either too short on a loaded
//! CI machine or wastes time everywhere else, so every wait in this crate polls the actual
//! condition until it holds or a deadline passes.

use std::time::{Duration, Instant};

/// The longest pause between two polls; short enough that a settled condition is noticed
/// quickly, long enough not to spin a core.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `condition` until it returns true (→ `true`) or `deadline` passes (→ `false`).
///
/// The condition is always evaluated at least once, and once more at the deadline, so a
/// condition that already holds never fails because of a short deadline.
pub fn wait_until(deadline: Instant, mut condition: impl FnMut() -> bool) -> bool {
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_true_once_condition_holds() {
        let mut calls = 0;
        let ok = wait_until(Instant::now() + Duration::from_secs(5), || {
            calls += 1;
            calls >= 3
        });
        assert!(ok);
        assert_eq!(calls, 3);
    }

    #[test]
    fn returns_false_after_deadline_and_checks_at_least_once() {
        let mut calls = 0;
        let ok = wait_until(Instant::now(), || {
            calls += 1;
            false
        });
        assert!(!ok);
        assert!(calls >= 1);
    }
}
