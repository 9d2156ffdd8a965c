//! Types and logic shared by the sipxdp kernel program and its userspace control plane.
//!
//! Everything here is `no_std` and free of panics on any input, so it runs inside the XDP
//! program, in the userspace slow path, in unit tests and under the fuzzer alike.
#![no_std]

pub mod callid;
#[cfg(any(test, feature = "corpus"))]
pub mod corpus;
pub mod hash;
pub mod payload;
pub mod swar;
