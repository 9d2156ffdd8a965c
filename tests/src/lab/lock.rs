//! The process-wide lab lock.
//!
//! As far as the network goes, two labs could coexist in one process: every host is a
//! namespace of its own, so equal addresses in different labs never meet (the test
//! `same_addresses_in_two_namespace_sets_are_isolated` in `netns.rs` sends traffic in two
//! such worlds at once and sees none cross over). What labs would share is everything that
//! is not per network namespace: bpffs pins under /sys/fs/bpf, global kernel state such as
//! the number of attached XDP programs, and the CPU that performance tests measure. So labs
//! of one process are serialised: each builder holds this lock for the lab's lifetime, and
//! tests that need the same exclusivity without a lab take it with
//! [`crate::Lab::exclusive`]. Labs of different processes (cargo runs each integration test
//! file as its own process) are not serialised; their namespace and interface names carry
//! the pid, so they never collide.

use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::LabError;

/// How long a builder waits for another lab of this process to be dropped.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// The thread that acquired the lock, if it is held.
static OWNER: Mutex<Option<ThreadId>> = Mutex::new(None);
static RELEASED: Condvar = Condvar::new();

/// Holds the process-wide lab lock until dropped.
#[derive(Debug)]
pub struct LabLock {
    _private: (),
}

impl LabLock {
    /// Waits (at most [`LOCK_WAIT`]) until no other lab lock is held, then takes it. Fails
    /// at once if the calling thread already holds it, which would otherwise deadlock.
    pub(crate) fn acquire() -> Result<LabLock, LabError> {
        let me = std::thread::current().id();
        let deadline = Instant::now() + LOCK_WAIT;
        let mut owner = OWNER.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match *owner {
                None => {
                    *owner = Some(me);
                    return Ok(LabLock { _private: () });
                }
                Some(holder) if holder == me => return Err(LabError::AlreadyHeld),
                Some(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(LabError::LockTimeout(LOCK_WAIT));
                    }
                    owner = RELEASED
                        .wait_timeout(owner, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        *OWNER.lock().unwrap_or_else(PoisonError::into_inner) = None;
        RELEASED.notify_all();
    }
}
