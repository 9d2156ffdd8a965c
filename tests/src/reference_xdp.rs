//! The reference program of the benchmarks: the cheapest XDP program there is
//! (`r0 = XDP_PASS; exit`).
//!
//! Timing it with `BPF_PROG_TEST_RUN` in the same run as sipxdp's program gives what the
//! kernel's test harness itself costs per packet, so sipxdp's cost can be stated as a ratio
//! to "doing nothing" that does not depend on the machine. It is assembled here rather
//! than shipped in the product's object file because nothing but the benchmarks run it.

use std::os::fd::OwnedFd;

use crate::raw_bpf::{self, Asm, BpfError, XDP_PASS};

/// Errors of loading or running the reference program.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceXdpError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// The program returned something other than `XDP_PASS`.
    #[error("the reference XDP program returned {0}, not XDP_PASS")]
    UnexpectedAction(u32),
}

/// A loaded `return XDP_PASS;` program.
#[derive(Debug)]
pub struct ReferenceXdp {
    fd: OwnedFd,
}

impl ReferenceXdp {
    /// Loads the program. Needs what loading any XDP program needs (CAP_BPF +
    /// CAP_NET_ADMIN, or CAP_SYS_ADMIN).
    pub fn load() -> Result<Self, ReferenceXdpError> {
        let program = Asm::default().ret(XDP_PASS).finish();
        Ok(Self {
            fd: raw_bpf::load_xdp("sipxdp_ref_pass", &program)?,
        })
    }

    /// The loaded program.
    pub fn program(&self) -> &OwnedFd {
        &self.fd
    }

    /// Runs the program `repeat` times on `frame` and returns the kernel's mean time per
    /// run in nanoseconds.
    pub fn time_run(&self, frame: &[u8], repeat: u32) -> Result<u64, ReferenceXdpError> {
        let run = raw_bpf::test_run(&self.fd, frame, repeat)?;
        if run.action != XDP_PASS as u32 {
            return Err(ReferenceXdpError::UnexpectedAction(run.action));
        }
        Ok(u64::from(run.duration_ns))
    }
}
