//! The standard sipxdp labs: a client, the balancer and N backends, each in its own network
//! namespace, joined by a Linux bridge in a `switch` namespace.
//!
//! * [`Lab::standard`] (direct server return): one L2 segment 198.51.100.0/26 +
//!   2001:db8:1::/64. The balancer owns the VIP on its segment interface (where XDP
//!   attaches); every backend also holds the VIP on `lo` so it accepts the frames the
//!   balancer forwards unchanged and replies to the client directly from the VIP.
//! * [`Lab::routed_nat`]: the client segment as above, plus a backend segment 203.0.113.0/26 +
//!   2001:db8:2::/64 behind the balancer, which forwards between them. Backends do not
//!   hold the VIP.
//!
//! No namespace has a default route. Dropping a [`Lab`] (also while unwinding from a panic)
//! deletes every link and namespace it created. Labs of one process are serialised, see
//! [`LabLock`]; labs of different processes coexist because every host is its own
//! namespace (addresses never meet) and all names carry the pid.
//!
//! | host (namespace role) | IPv4              | IPv6             | MAC               |
//! |-----------------------|-------------------|------------------|-------------------|
//! | client                | 198.51.100.10/26  | 2001:db8:1::10   | 02:53:58:01:00:0a |
//! | balancer              | 198.51.100.2/26   | 2001:db8:1::2    | 02:53:58:01:00:02 |
//! | balancer, NAT back    | 203.0.113.2/26    | 2001:db8:2::2    | 02:53:58:02:00:02 |
//! | backend-N (standard)  | 198.51.100.(20+N) | 2001:db8:1::(20+N) | 02:53:58:01:00:(20+N) |
//! | backend-N (NAT)       | 203.0.113.(20+N)  | 2001:db8:2::(20+N) | 02:53:58:02:00:(20+N) |
//! | VIP (default)         | 198.51.100.100/32 | 2001:db8:1::100/128 | balancer's MAC |
//!
//! IPv6 suffixes repeat the IPv4 digits (`.21` -> `::21`), all /64; MACs end in the IPv4
//! octet in hex. Interface names are generated (`sx<pid36>-<n>a`), see the accessors.
//!
//! **Attaching XDP from the test process:** do it inside
//! [`Netns::enter_thread`](crate::Netns::enter_thread) of the balancer, so interface
//! names and indexes resolve in the lab namespace; a spawned `sipxdp` started with
//! [`Netns::spawn`](crate::Netns::spawn) is inside it already.
//!
//! **VIP resolution:** by default the client gets a permanent neighbour entry (ARP and ND)
//! mapping the VIP to the balancer's MAC. The balancer also answers ARP/ND for the VIP
//! normally, and backends are configured never to answer for it, so real resolution gives
//! the same result (a test checks it with [`LabConfig::static_vip_neighbour`] off). The
//! static entry is the default because it makes the first packet deterministic: it does
//! not wait in the unresolved-neighbour queue, an XDP program that mishandles ARP/ND cannot
//! change where client traffic goes, and a backend's stray ARP can never re-point the VIP.

mod build;
mod lock;
mod plan;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use thiserror::Error;

use crate::addrplan::AddrPlanError;
use crate::link::{Bridge, Iface, LinkError, MacAddr, Veth};
use crate::netns::{Netns, NetnsError};
use crate::subnet::Subnet;

pub use lock::{LOCK_WAIT, LabLock};
pub use plan::MAX_BACKENDS;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("invalid lab configuration: {0}")]
    Config(String),
    #[error(
        "this thread already holds the lab lock (a Lab or Lab::exclusive() guard is alive); \
         labs of one process are serialised, so waiting would deadlock"
    )]
    AlreadyHeld,
    #[error("waited {0:?} for the other lab of this process to be dropped")]
    LockTimeout(Duration),
    #[error("removing stale lab namespaces of crashed runs: {0}")]
    Stale(NetnsError),
    #[error(transparent)]
    AddrPlan(#[from] AddrPlanError),
    #[error("setting up the {role} namespace: {source}")]
    Netns {
        role: String,
        source: Box<NetnsError>,
    },
    #[error("setting up the links of {role}: {source}")]
    Link {
        role: String,
        source: Box<LinkError>,
    },
}

/// Which topology a [`Lab`] has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabKind {
    /// One segment; backends hold the VIP on `lo` (direct server return).
    Standard,
    /// Client and backend segments routed through the balancer.
    RoutedNat,
}

/// The virtual service addresses the balancer owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vip {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Number of backends, 1..=[`MAX_BACKENDS`] (default 3).
    pub backends: usize,
    /// IPv4 VIP (default 198.51.100.100).
    pub vip_v4: Ipv4Addr,
    /// IPv6 VIP (default 2001:db8:1::100).
    pub vip_v6: Ipv6Addr,
    /// Install permanent neighbour entries VIP -> balancer MAC on the client (default true);
    /// with false the client resolves the VIP by ARP/ND.
    pub static_vip_neighbour: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            backends: 3,
            vip_v4: Ipv4Addr::new(198, 51, 100, 100),
            vip_v6: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100),
            static_vip_neighbour: true,
        }
    }
}

/// One interface of a lab host with its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIface {
    iface: Iface,
    mac: MacAddr,
    ipv4: Ipv4Addr,
    ipv4_subnet: Subnet,
    ipv6: Ipv6Addr,
    ipv6_subnet: Subnet,
}

impl HostIface {
    pub fn iface(&self) -> &Iface {
        &self.iface
    }

    /// Interface name inside the host's namespace.
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The on-link IPv4 subnet of the segment (e.g. 198.51.100.0/26).
    pub fn ipv4_subnet(&self) -> Subnet {
        self.ipv4_subnet
    }

    /// The on-link IPv6 subnet of the segment (e.g. 2001:db8:1::/64).
    pub fn ipv6_subnet(&self) -> Subnet {
        self.ipv6_subnet
    }

    /// The IPv4 or IPv6 address.
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.ipv6)
        } else {
            IpAddr::V4(self.ipv4)
        }
    }
}

/// A lab host: its namespace and interfaces.
#[derive(Debug)]
pub struct Host {
    netns: Netns,
    iface: HostIface,
    backend_side: Option<HostIface>,
}

impl Host {
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `client`, `balancer`, `backend-N`.
    pub fn role(&self) -> &str {
        self.netns.role()
    }

    /// The interface on the client segment (for backends of the NAT lab: the backend
    /// segment). For the balancer this is where the XDP program attaches.
    pub fn iface(&self) -> &HostIface {
        &self.iface
    }

    /// The balancer's interface on the backend segment (routed NAT lab only).
    pub fn backend_side(&self) -> Option<&HostIface> {
        self.backend_side.as_ref()
    }
}

/// A complete lab; dropping it tears everything down.
#[derive(Debug)]
pub struct Lab {
    // Fields drop in declaration order: links first (synchronous removal while every
    // namespace still exists), then the hosts' namespaces, the switch, and the lock last so
    // the next lab cannot start before this one is gone.
    veths: Vec<Veth>,
    bridges: Vec<Bridge>,
    client: Host,
    balancer: Host,
    backends: Vec<Host>,
    switch: Netns,
    kind: LabKind,
    vip: Vip,
    _lock: LabLock,
}

impl Lab {
    /// Builds the direct-server-return lab (see the module docs).
    pub fn standard(config: &LabConfig) -> Result<Lab, LabError> {
        build::build(LabKind::Standard, config)
    }

    /// Builds the routed NAT lab (see the module docs).
    pub fn routed_nat(config: &LabConfig) -> Result<Lab, LabError> {
        build::build(LabKind::RoutedNat, config)
    }

    /// Takes the process-wide lab lock without building a lab (see [`LabLock`]).
    pub fn exclusive() -> Result<LabLock, LabError> {
        LabLock::acquire()
    }

    pub fn kind(&self) -> LabKind {
        self.kind
    }

    pub fn client(&self) -> &Host {
        &self.client
    }

    pub fn balancer(&self) -> &Host {
        &self.balancer
    }

    pub fn backends(&self) -> &[Host] {
        &self.backends
    }

    /// Backend `n`, counting from 1 like the namespace roles (`backend-1` is `backend(1)`).
    pub fn backend(&self, n: usize) -> Option<&Host> {
        n.checked_sub(1).and_then(|index| self.backends.get(index))
    }

    /// The namespace holding the bridges.
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The bridges: `br0` (client segment) and, in the NAT lab, `br1` (backend segment).
    pub fn bridges(&self) -> &[Bridge] {
        &self.bridges
    }

    /// Every veth pair: end `a` in a host, end `b` a port of a bridge in the switch.
    pub fn veths(&self) -> &[Veth] {
        &self.veths
    }

    pub fn vip(&self) -> Vip {
        self.vip
    }

    /// Every host: client, balancer, backends.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.client, &self.balancer]
            .into_iter()
            .chain(&self.backends)
    }

    /// Names of every namespace of the lab, switch included.
    pub fn namespace_names(&self) -> Vec<String> {
        self.hosts()
            .map(|host| host.netns.name().to_owned())
            .chain(std::iter::once(self.switch.name().to_owned()))
            .collect()
    }
}
