//! Why a backend's next hop could not be found.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use super::NeighborState;

#[derive(Debug, Error)]
pub enum NeighborError {
    /// The kernel has no route (`ENETUNREACH`, `EHOSTUNREACH`, ...).
    #[error("no route to {destination}: {source}")]
    NoRoute {
        destination: IpAddr,
        source: io::Error,
    },
    /// The route is not one a frame can be forwarded on: local, broadcast, blackhole, ...
    #[error("the route to {destination} is a {route_type} route, not a unicast one")]
    UnusableRoute {
        destination: IpAddr,
        route_type: &'static str,
    },
    /// The route leaves through an interface without an Ethernet address (loopback, tun, ...).
    #[error(
        "the route to {destination} leaves through {interface} (index {ifindex}), \
         which has no Ethernet address"
    )]
    NotEthernet {
        destination: IpAddr,
        interface: String,
        ifindex: u32,
    },
    /// The kernel did not learn the next hop's link-layer address in time, or gave up.
    #[error(
        "neighbor {next_hop} on {interface} not resolved within {timeout:?} (state {})",
        state_name(.state)
    )]
    Unresolved {
        next_hop: IpAddr,
        interface: String,
        timeout: Duration,
        /// The entry's last state; `None` if the kernel had no entry at all.
        state: Option<NeighborState>,
    },
    /// Talking to the kernel failed, or it answered something unexpected.
    #[error("netlink: {context}: {source}")]
    Netlink { context: String, source: io::Error },
}

impl NeighborError {
    pub(super) fn netlink(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| NeighborError::Netlink { context, source }
    }
}

fn state_name(state: &Option<NeighborState>) -> String {
    state.map_or_else(|| "no entry".to_owned(), |state| state.to_string())
}
