//! Where to send a frame for a backend, from the kernel's route, link and neighbour tables.
//!
//! In direct-server-return mode the XDP program rewrites a frame's Ethernet destination to
//! the backend's MAC and its source to the egress interface's MAC; in NAT mode it needs the
//! MAC of the gateway in front of a routed backend. The kernel already knows all of this, so
//! [`Resolver`] asks it over rtnetlink, as `ip route get`, `ip link show` and `ip neigh get`
//! would, and makes the kernel resolve (ARP or Neighbour Discovery) a next hop it has not
//! learned yet. [`Watcher`] reports changes to those tables so the daemon can re-resolve.
//!
//! The few messages are encoded and decoded by hand (see `wire`), which keeps the crate's
//! dependencies as they were and tolerates attributes added by newer kernels. Needs
//! Linux 4.20 or later (single-entry `RTM_GETNEIGH`).

mod error;
mod resolver;
mod socket;
mod watcher;
mod wire;

pub use error::NeighborError;
pub use resolver::{DEFAULT_RESOLVE_TIMEOUT, Resolution, Resolver, XdpAttachment};
pub use watcher::{AsyncWatcher, Change, Watcher};
pub use wire::NeighborState;
