//! The sipxdp control plane: loads the XDP program, fills its maps, and runs the daemon.
pub mod config;
pub mod dataplane;
pub mod health;
pub mod neighbor;
pub mod plan;
pub mod sip;
