//! Lab harness for sipxdp: network namespaces, veth links, bridges and traffic helpers that
//! integration tests and the lab/demo binary use to build a private, throw-away network.
//!
//! Why a harness: the balancer is an XDP program, so the only honest end-to-end test is real
//! packets crossing real interfaces. Everything here lives in network namespaces of its own
//! (never the root namespace, never a default route), uses only the documentation ranges
//! 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, and is removed by guards on drop, also
//! when a test panics. See [`lab::Lab`] for the standard topologies.
//!
//! Privileged tests call [`require_privileges`] first so they skip cleanly when not root
//! (and fail instead when `SIPXDP_REQUIRE_PRIVILEGES=1`, as in CI).

pub mod addrplan;
mod cmd;
pub mod cpu;
pub mod daemon_lab;
pub mod delivery;
pub mod e2e;
pub mod e2e_lab;
pub mod fixture;
pub mod frames;
pub mod inject;
pub mod interrupt;
pub mod kamailio;
pub mod lab;
pub mod link;
pub mod names;
pub mod netns;
pub mod privileges;
pub mod process;
pub mod prometheus;
pub mod raw_bpf;
pub mod reference_xdp;
pub mod routed;
pub mod sipgen;
pub mod sipp;
pub mod subnet;
pub mod svg_chart;
#[cfg(test)]
mod testutil;
pub mod throughput;
pub mod traffic;
pub mod wait;
pub mod xdp_traffic;

pub use addrplan::{AddrPlanError, RootNetwork, check_lab_subnets};
pub use cmd::CmdError;
pub use lab::{Host, HostIface, Lab, LabConfig, LabError, LabKind, LabLock, Vip};
pub use link::{Bridge, Iface, LinkError, MacAddr, Neighbour, Veth};
pub use netns::{Netns, NetnsError, list_namespaces, remove_stale_namespaces};
pub use privileges::{require_command, require_privileges};
pub use process::{ChildGuard, ProcessError};
pub use subnet::{Subnet, SubnetError};
pub use traffic::{Datagram, SendSummary, TrafficError, UdpReceiver, send_udp_from};
pub use wait::wait_until;
