//! The sipxdp control plane: loads the XDP program, fills its maps, and runs the daemon.
pub mod dataplane;
