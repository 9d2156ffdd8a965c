//! The address health checks are sent from. Backends answer it, so it must be an address
//! that reaches the balancer and not one they hold themselves: DSR backends hold every
//! VIP on their loopback and would answer a check from a VIP to themselves. The kernel's
//! own choice (the source of a connected socket) can be a VIP, since the balancer holds
//! the VIPs too (for the slow path's sockets): IPv6 source selection prefers the address
//! with the longest prefix in common with the destination, counted up to the address's
//! own prefix length, so a /128 VIP on the interface towards the backends beats that
//! interface's /64 address (`ip route get` shows it as `src`).

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    ptr,
};

use thiserror::Error;

/// Why no source address could be chosen.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("finding the source address towards {destination}: {source}")]
    Kernel {
        destination: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("listing this namespace's addresses: {0}")]
    Addresses(#[source] io::Error),
    #[error(
        "no address to send health checks to {destination} from: the kernel picks the VIP \
         {vip}, which the backends hold themselves, and no other address of the family can \
         be used yet (add one to the interface that reaches the backends, or wait for its \
         duplicate address detection)"
    )]
    OnlyVips {
        destination: SocketAddr,
        vip: IpAddr,
    },
}

/// An address of this network namespace, as `getifaddrs` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// The source for health checks to `destination`: the kernel's choice unless it is one of
/// `vips`, else the first of [`candidates`] among this namespace's addresses that can be
/// bound.
///
/// # Errors
///
/// The kernel has no route to `destination`, the addresses cannot be listed, or the
/// kernel picks a VIP and no other address can be bound.
pub fn health_check_source(
    destination: SocketAddr,
    vips: &BTreeSet<IpAddr>,
) -> Result<IpAddr, SourceError> {
    let kernel = kernel_choice(destination).map_err(|source| SourceError::Kernel {
        destination,
        source,
    })?;
    if !vips.contains(&kernel) {
        return Ok(kernel);
    }
    let locals = local_addresses().map_err(SourceError::Addresses)?;
    first_bindable(candidates(destination.ip(), vips, &locals)).ok_or(SourceError::OnlyVips {
        destination,
        vip: kernel,
    })
}

/// The first of `addresses` a UDP socket can be bound to. An IPv6 address still in
/// duplicate address detection is listed by `getifaddrs` but cannot be bound yet.
fn first_bindable(addresses: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
    addresses
        .into_iter()
        .find(|address| UdpSocket::bind(SocketAddr::new(*address, 0)).is_ok())
}

/// The addresses among `locals` that health checks to `destination` may come from, best
/// first: of its family, not a VIP, not loopback, not link-local; those whose subnet
/// holds `destination` (the backends' own network) before the others.
pub fn candidates(
    destination: IpAddr,
    vips: &BTreeSet<IpAddr>,
    locals: &[LocalAddress],
) -> Vec<IpAddr> {
    let (on_link, others): (Vec<&LocalAddress>, Vec<&LocalAddress>) = locals
        .iter()
        .filter(|local| local.address.is_ipv4() == destination.is_ipv4())
        .filter(|local| !vips.contains(&local.address) && usable(local.address))
        .partition(|local| same_subnet(local.address, destination, local.prefix_len));
    on_link
        .into_iter()
        .chain(others)
        .map(|local| local.address)
        .collect()
}

/// Not loopback, not link-local (a link-local source needs a scope the checker's socket
/// does not carry), not unspecified.
fn usable(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified()),
    }
}

fn same_subnet(address: IpAddr, other: IpAddr, prefix_len: u8) -> bool {
    let (left, right, bits) = match (address, other) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            u128::from(a.to_bits()) << 96,
            u128::from(b.to_bits()) << 96,
            32,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let prefix_len = u32::from(prefix_len).min(bits);
    let mask = u128::MAX.checked_shl(128 - prefix_len).unwrap_or(0);
    left & mask == right & mask
}

/// The source address of a UDP socket connected to `destination`.
fn kernel_choice(destination: SocketAddr) -> io::Result<IpAddr> {
    let unspecified: IpAddr = match destination {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let probe = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    probe.connect(destination)?;
    Ok(probe.local_addr()?.ip())
}

/// Every IPv4 and IPv6 address of the calling thread's network namespace.
fn local_addresses() -> io::Result<Vec<LocalAddress>> {
    let mut list: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer; the list is freed below.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*entry };
        // SAFETY: as above; the address and netmask of a node live as long as it.
        if let Some(local) = unsafe { local_address(node) } {
            addresses.push(local);
        }
        entry = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}

/// The address of one `getifaddrs` node, if it is IPv4 or IPv6.
///
/// # Safety
///
/// `node` must be a node of a list from `getifaddrs` that has not been freed.
unsafe fn local_address(node: &libc::ifaddrs) -> Option<LocalAddress> {
    if node.ifa_addr.is_null() {
        return None;
    }
    // SAFETY: the caller's promise: socket addresses of the family `sa_family` names.
    unsafe {
        let (address, prefix_len) = match i32::from((*node.ifa_addr).sa_family) {
            libc::AF_INET => {
                let address = *node.ifa_addr.cast::<libc::sockaddr_in>();
                let mask = (!node.ifa_netmask.is_null()).then(|| {
                    (*node.ifa_netmask.cast::<libc::sockaddr_in>())
                        .sin_addr
                        .s_addr
                });
                (
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr))),
                    mask.map_or(32, |mask| mask.count_ones() as u8),
                )
            }
            libc::AF_INET6 => {
                let address = *node.ifa_addr.cast::<libc::sockaddr_in6>();
                let mask = (!node.ifa_netmask.is_null()).then(|| {
                    (*node.ifa_netmask.cast::<libc::sockaddr_in6>())
                        .sin6_addr
                        .s6_addr
                });
                (
                    IpAddr::V6(Ipv6Addr::from(address.sin6_addr.s6_addr)),
                    mask.map_or(128, |mask| {
                        mask.iter().map(|byte| byte.count_ones()).sum::<u32>() as u8
                    }),
                )
            }
            _ => return None,
        };
        Some(LocalAddress {
            address,
            prefix_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn local(address: &str, prefix_len: u8) -> LocalAddress {
        LocalAddress {
            address: ip(address),
            prefix_len,
        }
    }

    fn vips(addresses: &[&str]) -> BTreeSet<IpAddr> {
        addresses.iter().map(|address| ip(address)).collect()
    }

    #[test]
    fn addresses_on_the_backends_subnet_come_first_and_vips_never() {
        let locals = [
            local("::1", 128),
            local("2001:db8:1::100", 128),
            local("fe80::1", 64),
            local("2001:db8:9::1", 64),
            local("2001:db8:1::2", 64),
            local("198.51.100.2", 24),
        ];
        let backend = ip("2001:db8:1::21");
        let vips = vips(&["2001:db8:1::100"]);
        assert_eq!(
            candidates(backend, &vips, &locals),
            [ip("2001:db8:1::2"), ip("2001:db8:9::1")]
        );
        // A routed backend: no subnet holds it; any usable address will do.
        let routed = ip("2001:db8:2::22");
        assert_eq!(
            candidates(routed, &vips, &locals),
            [ip("2001:db8:9::1"), ip("2001:db8:1::2")]
        );
        let v4 = ip("198.51.100.21");
        assert_eq!(candidates(v4, &vips, &locals), [ip("198.51.100.2")]);
    }

    #[test]
    fn vips_loopback_and_link_local_addresses_are_never_picked() {
        let locals = [
            local("127.0.0.1", 8),
            local("198.51.100.100", 32),
            local("169.254.0.7", 16),
        ];
        let backend = ip("198.51.100.21");
        assert!(candidates(backend, &vips(&["198.51.100.100"]), &locals).is_empty());
    }

    #[test]
    fn an_address_that_cannot_be_bound_is_passed_over() {
        // 203.0.113.77 is no address of this machine: binding it fails as binding a
        // tentative IPv6 address does.
        let addresses = [ip("203.0.113.77"), ip("127.0.0.1")];
        assert_eq!(first_bindable(addresses), Some(ip("127.0.0.1")));
        assert_eq!(first_bindable([ip("203.0.113.77")]), None);
    }

    #[test]
    fn subnets_compare_only_their_prefix() {
        let address = ip("198.51.100.130");
        assert!(same_subnet(address, ip("198.51.100.200"), 25));
        assert!(!same_subnet(address, ip("198.51.100.2"), 25));
        assert!(same_subnet(address, ip("203.0.113.1"), 0));
        assert!(!same_subnet(address, ip("2001:db8::1"), 0));
    }

    #[test]
    fn this_namespace_lists_its_loopback_address() {
        let locals = local_addresses().expect("getifaddrs");
        assert!(
            locals
                .iter()
                .any(|local| local.address == IpAddr::V4(Ipv4Addr::LOCALHOST)
                    && local.prefix_len == 8),
            "{locals:?}"
        );
    }
}
