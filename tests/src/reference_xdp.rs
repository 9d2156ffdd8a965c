//! The reference program of the benchmarks: the cheapest XDP program there is
//! (`r0 = XDP_PASS; exit`), loaded straight through the `bpf(2)` system call.
//!
//! Timing it with `BPF_PROG_TEST_RUN` in the same run as sipxdp's program gives what the
//! kernel's test harness itself costs per packet, so sipxdp's cost can be stated as a ratio
//! to "doing nothing" that does not depend on the machine. It is assembled here rather
//! than shipped in the product's object file because nothing but the benchmark runs it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const XDP_PASS: i32 = 2;

/// `bpf_attr` is a union of at most 160 bytes in the kernels this targets; the kernel
/// accepts a larger, zero-filled buffer.
const ATTR_SIZE: usize = 160;

/// Errors of loading or running the reference program.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceXdpError {
    /// `BPF_PROG_LOAD` failed.
    #[error("loading the reference XDP program (BPF_PROG_LOAD)")]
    Load(#[source] io::Error),
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("running the reference XDP program (BPF_PROG_TEST_RUN)")]
    TestRun(#[source] io::Error),
    /// The program returned something other than `XDP_PASS`.
    #[error("the reference XDP program returned {0}, not XDP_PASS")]
    UnexpectedAction(u32),
}

/// A loaded `return XDP_PASS;` program.
#[derive(Debug)]
pub struct ReferenceXdp {
    fd: OwnedFd,
}

/// Writes `value` into `attr` at byte `offset`, in native byte order.
fn put(attr: &mut [u8; ATTR_SIZE], offset: usize, value: &[u8]) {
    attr[offset..offset + value.len()].copy_from_slice(value);
}

/// Calls `bpf(cmd, attr)`.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a writable buffer of ATTR_SIZE bytes whose pointers, set by the
    // callers, point to memory that outlives the call.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

impl ReferenceXdp {
    /// Loads the program. Needs what loading any XDP program needs (CAP_BPF +
    /// CAP_NET_ADMIN, or CAP_SYS_ADMIN).
    pub fn load() -> Result<Self, ReferenceXdpError> {
        // `mov64 r0, XDP_PASS` (opcode 0xb7, imm in bytes 4..8), then `exit` (0x95).
        let mut instructions = [0u8; 16];
        instructions[0] = 0xb7;
        instructions[4..8].copy_from_slice(&XDP_PASS.to_le_bytes());
        instructions[8] = 0x95;
        let license = c"GPL";
        let mut attr = [0u8; ATTR_SIZE];
        put(&mut attr, 0, &BPF_PROG_TYPE_XDP.to_ne_bytes());
        put(&mut attr, 4, &2u32.to_ne_bytes());
        put(&mut attr, 8, &(instructions.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 48, b"sipxdp_ref_pass\0");
        let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(ReferenceXdpError::Load)?;
        // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { fd })
    }

    /// Runs the program `repeat` times on `frame` and returns the kernel's mean time per
    /// run in nanoseconds.
    pub fn time_run(&self, frame: &[u8], repeat: u32) -> Result<u64, ReferenceXdpError> {
        let mut attr = [0u8; ATTR_SIZE];
        put(&mut attr, 0, &(self.fd.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 8, &(frame.len() as u32).to_ne_bytes());
        put(&mut attr, 16, &(frame.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 32, &repeat.to_ne_bytes());
        bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(ReferenceXdpError::TestRun)?;
        let word = |offset: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&attr[offset..offset + 4]);
            u32::from_ne_bytes(bytes)
        };
        let action = word(4);
        if action != XDP_PASS as u32 {
            return Err(ReferenceXdpError::UnexpectedAction(action));
        }
        Ok(u64::from(word(36)))
    }
}
