//! Guards for processes started inside lab namespaces.
//!
//! A test that panics must not leave a sipp, kamailio or sipxdp behind, so every spawned
//! process is owned by a [`ChildGuard`] that kills and reaps it on drop. The child leads a
//! process group of its own, so forking servers (kamailio starts many workers) die as a whole.

use std::io;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::wait::wait_until;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("checking on {process}: {source}")]
    Wait { process: String, source: io::Error },
    #[error("signalling {process}: {source}")]
    Signal { process: String, source: io::Error },
}

/// A running child process (and its process group) that is killed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    description: String,
}

impl ChildGuard {
    /// Takes ownership of `child`, which must lead its own process group.
    pub(crate) fn new(child: Child, description: String) -> Self {
        ChildGuard { child, description }
    }

    /// The child's pid (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line and namespace, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The underlying child, e.g. to take its piped stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        self.child.try_wait().map_err(|source| ProcessError::Wait {
            process: self.description.clone(),
            source,
        })
    }

    /// Waits until the child exits or `deadline` passes; `None` means still running.
    pub fn wait_until_exit(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<ExitStatus>, ProcessError> {
        let mut status = None;
        let mut error = None;
        wait_until(deadline, || match self.child.try_wait() {
            Ok(Some(exit)) => {
                status = Some(exit);
                true
            }
            Ok(None) => false,
            Err(err) => {
                error = Some(err);
                true
            }
        });
        match error {
            Some(source) => Err(ProcessError::Wait {
                process: self.description.clone(),
                source,
            }),
            None => Ok(status),
        }
    }

    /// Asks the process group to stop with SIGTERM (so e.g. sipxdp can detach cleanly),
    /// waits up to `grace`, then SIGKILLs the group. Returns the child's exit status.
    pub fn terminate(mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        if self.try_wait()?.is_none() {
            self.signal_group(libc::SIGTERM)?;
            if self.wait_until_exit(Instant::now() + grace)?.is_none() {
                self.signal_group(libc::SIGKILL)?;
            }
        }
        self.child.wait().map_err(|source| ProcessError::Wait {
            process: self.description.clone(),
            source,
        })
    }

    /// Sends `signal` to the child's process group; a group that is already gone is fine.
    fn signal_group(&self, signal: libc::c_int) -> Result<(), ProcessError> {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return Ok(());
        };
        // SAFETY: kill() on our own child's process group (the child is not reaped yet, so
        // the id cannot have been reused).
        if unsafe { libc::kill(-pgid, signal) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(ProcessError::Signal {
                process: self.description.clone(),
                source: err,
            })
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Err(err) = self.signal_group(libc::SIGKILL) {
            eprintln!("sipxdp-tests: {err}");
        }
        if let Err(err) = self.child.wait() {
            eprintln!("sipxdp-tests: reaping {}: {err}", self.description);
        }
    }
}
