//! Types and logic shared by the sipxdp kernel program and its userspace control plane.
//!
//! Everything here is `no_std` and free of panics on any input, so it runs inside the XDP
//! program, in the userspace slow path, in unit tests and under the fuzzer alike.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod callid;
pub mod connection;
#[cfg(any(test, feature = "corpus"))]
pub mod corpus;
pub mod flood;
pub mod hash;
#[cfg(feature = "alloc")]
pub mod maglev;
pub mod maps;
pub mod outcome;
pub mod payload;
pub mod scanner;
pub mod swar;
pub mod wire;
