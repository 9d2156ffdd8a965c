//! Notifications that the kernel's neighbour, link or route tables changed.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::NeighborError;
use super::socket::NetlinkSocket;
use super::wire;

/// A change that may alter a [`Resolution`](super::Resolution). The daemon is expected to
/// re-resolve its backends and compare, not to interpret these in detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An IPv4 or IPv6 neighbour entry was added, changed or deleted.
    Neighbor { address: IpAddr, ifindex: u32 },
    /// An interface was added, changed (address, state, MTU, ...) or deleted.
    Link { ifindex: u32 },
    /// A route was added, changed or deleted. `destination` is the prefix's first address,
    /// `None` for a default route.
    Route {
        destination: Option<IpAddr>,
        ifindex: Option<u32>,
    },
    /// The kernel dropped notifications because they came faster than they were read:
    /// anything may have changed.
    Lost,
}

/// Subscribed to `RTNLGRP_NEIGH`, `RTNLGRP_LINK`, `RTNLGRP_IPV4_ROUTE` and
/// `RTNLGRP_IPV6_ROUTE` in the network namespace of the thread that created it.
///
/// Two kinds of neighbour notification are left out: entries turning INCOMPLETE (resolution
/// started, nothing usable changed yet; the [`Resolver`](super::Resolver)'s own probing causes
/// these) and bridge forwarding-database entries, which share the group but have no IP address.
/// A neighbour that cannot be resolved still ends in a FAILED notification, so a daemon that
/// re-resolves on every change retries such a backend about once per resolution attempt.
///
/// For tokio, wrap it in an [`AsyncWatcher`]; [`AsFd`] is implemented for other event loops.
#[derive(Debug)]
pub struct Watcher {
    socket: NetlinkSocket,
}

impl Watcher {
    pub fn new() -> Result<Self, NeighborError> {
        let groups = [
            wire::RTNLGRP_NEIGH,
            wire::RTNLGRP_LINK,
            wire::RTNLGRP_IPV4_ROUTE,
            wire::RTNLGRP_IPV6_ROUTE,
        ];
        let socket = NetlinkSocket::open(&groups).map_err(NeighborError::netlink(
            "subscribing to rtnetlink notifications",
        ))?;
        Ok(Watcher { socket })
    }

    /// Waits up to `timeout` for a relevant change and returns all changes queued by then;
    /// empty if none came.
    pub fn next_changes(&mut self, timeout: Duration) -> Result<Vec<Change>, NeighborError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let changes = self.pending_changes()?;
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            if !changes.is_empty() || remaining.is_zero() {
                return Ok(changes);
            }
            self.socket
                .wait_readable(remaining)
                .map_err(NeighborError::netlink(
                    "waiting for rtnetlink notifications",
                ))?;
        }
    }

    /// The changes queued now, without blocking.
    pub fn pending_changes(&mut self) -> Result<Vec<Change>, NeighborError> {
        let mut changes = Vec::new();
        loop {
            match self.socket.receive() {
                Ok(Some(datagram)) => decode(datagram, &mut changes),
                Ok(None) => return Ok(changes),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    changes.push(Change::Lost);
                }
                Err(error) => {
                    return Err(NeighborError::netlink("reading rtnetlink notifications")(
                        error,
                    ));
                }
            }
        }
    }
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Appends the relevant changes of one datagram. A malformed message ends the datagram with
/// [`Change::Lost`]: whatever it said, the caller must assume something changed.
fn decode(datagram: &[u8], changes: &mut Vec<Change>) {
    for message in wire::messages(datagram) {
        let Ok(message) = message else {
            changes.push(Change::Lost);
            return;
        };
        let change = match message.kind {
            wire::RTM_NEWNEIGH | wire::RTM_DELNEIGH => {
                wire::parse_neighbor(message.payload).map(|neighbor| {
                    let resolving =
                        message.kind == wire::RTM_NEWNEIGH && neighbor.state.is_incomplete();
                    neighbor
                        .address
                        .filter(|_| !resolving)
                        .map(|address| Change::Neighbor {
                            address,
                            ifindex: neighbor.ifindex,
                        })
                })
            }
            wire::RTM_NEWLINK | wire::RTM_DELLINK => {
                wire::parse_link(message.payload).map(|link| {
                    Some(Change::Link {
                        ifindex: link.ifindex,
                    })
                })
            }
            wire::RTM_NEWROUTE | wire::RTM_DELROUTE => {
                wire::parse_route(message.payload).map(|route| {
                    Some(Change::Route {
                        destination: route.destination,
                        ifindex: route.output_ifindex,
                    })
                })
            }
            _ => Ok(None),
        };
        match change {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            Err(_) => changes.push(Change::Lost),
        }
    }
}

/// A [`Watcher`] driven by tokio's reactor.
#[derive(Debug)]
pub struct AsyncWatcher {
    inner: AsyncFd<Watcher>,
}

impl AsyncWatcher {
    /// Registers `watcher` with the current tokio runtime (which must have IO enabled).
    pub fn new(watcher: Watcher) -> Result<Self, NeighborError> {
        // SAFETY: the watcher owns its descriptor (an `OwnedFd` that is never replaced), so
        // it stays open and the same for as long as the `AsyncFd` holds the watcher.
        let inner = unsafe { AsyncFd::register_with_interest(watcher, Interest::READABLE) }
            .map_err(|error| {
                NeighborError::netlink("registering with the tokio reactor")(error.into())
            })?;
        Ok(AsyncWatcher { inner })
    }

    /// Waits for relevant changes and returns all that are queued.
    pub async fn changes(&mut self) -> Result<Vec<Change>, NeighborError> {
        loop {
            let mut guard = self
                .inner
                .readable_mut()
                .await
                .map_err(NeighborError::netlink(
                    "waiting for rtnetlink notifications",
                ))?;
            // `pending_changes` reads until the socket would block, which is when tokio
            // must be told to wait for the next readiness event.
            let changes = guard.get_inner_mut().pending_changes()?;
            guard.clear_ready();
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    /// A netlink message laid out by hand: nlmsghdr, then `body`.
    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = 16 + body.len() as u32;
        let mut bytes = [
            &len.to_ne_bytes()[..],
            &kind.to_ne_bytes(),
            &0u16.to_ne_bytes(),
            &0u32.to_ne_bytes(),
            &0u32.to_ne_bytes(),
        ]
        .concat();
        bytes.extend_from_slice(body);
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        bytes
    }

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len() as u16;
        let mut bytes = [&len.to_ne_bytes()[..], &kind.to_ne_bytes(), payload].concat();
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        bytes
    }

    /// ndmsg with NDA_DST (and NDA_LLADDR unless INCOMPLETE).
    fn neighbor(family: u8, state: u16, ifindex: u32, address: &[u8]) -> Vec<u8> {
        let mut body = [
            &[family, 0, 0, 0][..],
            &ifindex.to_ne_bytes(),
            &state.to_ne_bytes(),
            &[0, 1],
        ]
        .concat();
        body.extend(attribute(1, address));
        if state != 0x01 {
            body.extend(attribute(2, &[2, 0, 0, 0, 0, 1]));
        }
        body
    }

    fn decoded(datagram: &[u8]) -> Vec<Change> {
        let mut changes = Vec::new();
        decode(datagram, &mut changes);
        changes
    }

    const V4: [u8; 4] = [198, 51, 100, 21];

    /// An `ifinfomsg` of interface 5.
    fn link() -> Vec<u8> {
        [
            &[0, 0][..],
            &1u16.to_ne_bytes(),
            &5u32.to_ne_bytes(),
            &[0; 8],
        ]
        .concat()
    }

    #[test]
    fn neighbor_link_and_route_changes() {
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x21);
        // A default route (no RTA_DST) out of interface 5.
        let route = [
            &[10, 0, 0, 0, 254, 3, 0, 1][..],
            &0u32.to_ne_bytes(),
            &attribute(4, &5u32.to_ne_bytes()),
        ]
        .concat();
        let datagram = [
            message(wire::RTM_NEWNEIGH, &neighbor(2, 0x02, 4, &V4)),
            message(wire::RTM_DELNEIGH, &neighbor(10, 0x20, 4, &v6.octets())),
            message(wire::RTM_DELLINK, &link()),
            message(wire::RTM_NEWROUTE, &route),
            message(wire::NLMSG_ERROR, &0u32.to_ne_bytes()), // not a change
        ]
        .concat();
        assert_eq!(
            decoded(&datagram),
            [
                Change::Neighbor {
                    address: IpAddr::V4(Ipv4Addr::from(V4)),
                    ifindex: 4,
                },
                Change::Neighbor {
                    address: IpAddr::V6(v6),
                    ifindex: 4,
                },
                Change::Link { ifindex: 5 },
                Change::Route {
                    destination: None,
                    ifindex: Some(5),
                },
            ]
        );
    }

    #[test]
    fn resolution_starting_and_bridge_entries_are_not_changes() {
        let datagram = [
            message(wire::RTM_NEWNEIGH, &neighbor(2, 0x01, 4, &V4)),
            message(wire::RTM_NEWNEIGH, &neighbor(7, 0x40, 4, &V4)),
        ]
        .concat();
        assert_eq!(decoded(&datagram), []);
        // An INCOMPLETE entry that is deleted was given up on: that is a change.
        let deleted = message(wire::RTM_DELNEIGH, &neighbor(2, 0x01, 4, &V4));
        assert_eq!(decoded(&deleted).len(), 1);
    }

    #[test]
    fn malformed_messages_are_lost_changes() {
        // A neighbour with a 3-byte IPv4 address, then a message whose length overruns.
        let garbled = message(wire::RTM_NEWNEIGH, &neighbor(2, 0x02, 4, &V4[..3]));
        let mut overrun = message(wire::RTM_NEWLINK, &[0; 16]);
        overrun[..4].copy_from_slice(&64u32.to_ne_bytes());
        let datagram = [garbled, message(wire::RTM_NEWLINK, &link()), overrun].concat();
        assert_eq!(
            decoded(&datagram),
            [Change::Lost, Change::Link { ifindex: 5 }, Change::Lost]
        );
    }
}
