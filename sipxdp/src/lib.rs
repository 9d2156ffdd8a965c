//! The sipxdp control plane: loads the XDP program, fills its maps, and runs the daemon.
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod lookup;
pub mod metrics;
pub mod neighbor;
pub mod plan;
pub mod report;
pub mod sip;
pub mod slowpath;
pub mod top;

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
