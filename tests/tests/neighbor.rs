//! The neighbour resolver and watcher against real kernel tables: lab namespaces, real
//! routes, real ARP and Neighbour Discovery between veth-connected hosts.
//!
//! Each resolver or watcher is created inside the namespace whose tables it should read
//! (`Netns::enter_thread`), as its netlink socket stays in the namespace it was opened in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use sipxdp::neighbor::{
    Change, DEFAULT_RESOLVE_TIMEOUT, NeighborError, Resolution, Resolver, Watcher,
};
use sipxdp_tests::{Host, HostIface, Lab, LabConfig, MacAddr, require_privileges};

/// Short enough to keep the tests quick, long enough that a loaded machine still answers an
/// ARP/ND request sent on a veth in time when someone does answer.
const SHORT_TIMEOUT: Duration = Duration::from_millis(500);

/// On the standard lab's segment 198.51.100.0/26 + 2001:db8:1::/64, used by no host.
const UNUSED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
const UNUSED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x50);

/// Documentation addresses the standard lab has no route to (and no default route exists).
const UNROUTED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
const UNROUTED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x77);

fn ip(v6: bool, v4: Ipv4Addr, v6_address: Ipv6Addr) -> IpAddr {
    if v6 {
        IpAddr::V6(v6_address)
    } else {
        IpAddr::V4(v4)
    }
}

/// Resolves `destinations` with one resolver in `host`'s namespace.
fn resolve_in(
    host: &Host,
    timeout: Duration,
    destinations: &[IpAddr],
) -> Vec<Result<Resolution, NeighborError>> {
    host.netns()
        .enter_thread(|| {
            let mut resolver = Resolver::new(timeout).expect("a resolver");
            destinations
                .iter()
                .map(|&destination| resolver.resolve(destination))
                .collect()
        })
        .expect("entering the namespace")
}

fn resolve_one(host: &Host, destination: IpAddr) -> Result<Resolution, NeighborError> {
    resolve_in(host, DEFAULT_RESOLVE_TIMEOUT, &[destination])
        .pop()
        .expect("one result")
}

/// What the resolution must be for frames leaving through `out` to `next_hop`, owned by the
/// host with MAC `next_hop_mac`.
fn expected(out: &HostIface, next_hop: IpAddr, next_hop_mac: MacAddr) -> Resolution {
    Resolution {
        ifindex: out.iface().ifindex().expect("an ifindex"),
        interface: out.name().to_owned(),
        source_mac: out.mac().0,
        next_hop,
        destination_mac: next_hop_mac.0,
    }
}

/// Empties the whole neighbour table of `host` (both families) and checks that the kernel no
/// longer knows a link-layer address for any of `addresses` on `out`, so the resolver has
/// to make it resolve them.
fn flush_neighbours(host: &Host, out: &HostIface, addresses: &[IpAddr]) {
    host.netns()
        .run(&["ip", "neigh", "flush", "all"])
        .expect("flushing the neighbour table");
    for &address in addresses {
        let entry = out.iface().neighbour(address).expect("reading an entry");
        assert!(
            entry.as_ref().is_none_or(|entry| entry.mac.is_none()),
            "{address} still resolved after the flush: {entry:?}"
        );
    }
}

/// The balancer resolves every backend of the standard lab over its one segment, from an
/// empty neighbour table (real ARP or ND), and then again from the table.
fn resolves_on_link_backends(v6: bool) {
    let lab = Lab::standard(&LabConfig::default()).expect("the lab");
    let balancer = lab.balancer();
    let out = balancer.iface();
    let backends: Vec<IpAddr> = lab.backends().iter().map(|b| b.iface().ip(v6)).collect();
    flush_neighbours(balancer, out, &backends);

    let started = Instant::now();
    let first = resolve_in(balancer, DEFAULT_RESOLVE_TIMEOUT, &backends);
    let elapsed = started.elapsed();
    let again = resolve_in(balancer, DEFAULT_RESOLVE_TIMEOUT, &backends);
    for ((backend, first), again) in lab.backends().iter().zip(first).zip(again) {
        let address = backend.iface().ip(v6);
        let want = expected(out, address, backend.iface().mac());
        assert_eq!(first.expect("resolving from an empty table"), want);
        assert_eq!(again.expect("resolving from the table"), want);
        // The kernel learned the entry itself; the resolver only asked it to.
        let entry = out.iface().neighbour(address).unwrap().expect("an entry");
        assert_eq!(entry.mac, Some(backend.iface().mac()), "{entry:?}");
    }
    assert!(
        elapsed < DEFAULT_RESOLVE_TIMEOUT,
        "resolution waited for the answers, not for the timeout: {elapsed:?}"
    );
}

#[test]
fn resolves_ipv4_backends_on_link_from_an_empty_table() {
    if !require_privileges("resolves_ipv4_backends_on_link_from_an_empty_table") {
        return;
    }
    resolves_on_link_backends(false);
}

#[test]
fn resolves_ipv6_backends_on_link_from_an_empty_table() {
    if !require_privileges("resolves_ipv6_backends_on_link_from_an_empty_table") {
        return;
    }
    resolves_on_link_backends(true);
}

#[test]
fn unroutable_local_and_silent_destinations_are_clear_errors() {
    if !require_privileges("unroutable_local_and_silent_destinations_are_clear_errors") {
        return;
    }
    let lab = Lab::standard(&LabConfig::default()).expect("the lab");
    let balancer = lab.balancer();
    let out = balancer.iface();
    for v6 in [false, true] {
        let unrouted = ip(v6, UNROUTED_V4, UNROUTED_V6);
        let own = out.ip(v6);
        let silent = ip(v6, UNUSED_V4, UNUSED_V6);
        flush_neighbours(balancer, out, &[silent]);

        let started = Instant::now();
        let results = resolve_in(balancer, SHORT_TIMEOUT, &[unrouted, own, silent]);
        let elapsed = started.elapsed();
        let [unrouted_result, own_result, silent_result] =
            <[_; 3]>::try_from(results).expect("three results");

        match unrouted_result {
            Err(NeighborError::NoRoute {
                destination,
                ref source,
            }) => {
                assert_eq!(destination, unrouted);
                assert_eq!(source.raw_os_error(), Some(libc::ENETUNREACH), "{source}");
                let message = unrouted_result.as_ref().unwrap_err().to_string();
                assert!(
                    message.starts_with(&format!("no route to {unrouted}: ")),
                    "{message}"
                );
            }
            other => panic!("{unrouted}: expected NoRoute, got {other:?}"),
        }
        match own_result {
            Err(NeighborError::UnusableRoute {
                destination,
                route_type,
            }) => {
                assert_eq!((destination, route_type), (own, "local"));
            }
            other => panic!("{own}: expected a local route, got {other:?}"),
        }
        match silent_result {
            Err(
                ref error @ NeighborError::Unresolved {
                    next_hop,
                    ref interface,
                    timeout,
                    state,
                },
            ) => {
                assert_eq!(next_hop, silent);
                assert_eq!(interface, out.name());
                assert_eq!(timeout, SHORT_TIMEOUT);
                // Still probing when we give up (the kernel gives up after ~3 s).
                assert_eq!(
                    state.map(|state| state.to_string()).as_deref(),
                    Some("INCOMPLETE")
                );
                assert_eq!(
                    error.to_string(),
                    format!(
                        "neighbor {silent} on {} not resolved within 500ms (state INCOMPLETE)",
                        out.name()
                    )
                );
            }
            other => panic!("{silent}: expected Unresolved, got {other:?}"),
        }
        // Only the silent address waits: for the timeout, not until the kernel gives up.
        assert!(
            elapsed >= SHORT_TIMEOUT && elapsed < SHORT_TIMEOUT + Duration::from_secs(1),
            "{elapsed:?}"
        );
    }
}

#[test]
fn an_address_that_starts_answering_resolves_on_the_next_attempt() {
    if !require_privileges("an_address_that_starts_answering_resolves_on_the_next_attempt") {
        return;
    }
    let lab = Lab::standard(&LabConfig::default()).expect("the lab");
    let balancer = lab.balancer();
    let backend = lab.backend(1).expect("backend 1");
    for v6 in [false, true] {
        let address = ip(v6, UNUSED_V4, UNUSED_V6);
        flush_neighbours(balancer, balancer.iface(), &[address]);
        let error = resolve_in(balancer, SHORT_TIMEOUT, &[address])
            .pop()
            .unwrap()
            .expect_err("nobody answers yet");
        assert!(matches!(error, NeighborError::Unresolved { .. }), "{error}");
        // The entry the failed attempt left behind (INCOMPLETE, later FAILED) must not stop
        // the next attempt from resolving once the address is there.
        let prefix = if v6 { 64 } else { 26 };
        backend
            .iface()
            .iface()
            .add_address(address, prefix)
            .expect("adding the address to backend 1");
        assert_eq!(
            resolve_one(balancer, address).expect("resolving after the address appeared"),
            expected(balancer.iface(), address, backend.iface().mac())
        );
    }
}

#[test]
fn routed_backends_resolve_to_the_gateway() {
    if !require_privileges("routed_backends_resolve_to_the_gateway") {
        return;
    }
    let lab = Lab::routed_nat(&LabConfig::default()).expect("the lab");
    let client = lab.client();
    let balancer = lab.balancer();
    let front = balancer.iface();
    let back = balancer
        .backend_side()
        .expect("the balancer's backend side");
    for v6 in [false, true] {
        for backend in lab.backends() {
            let address = backend.iface().ip(v6);
            // The client reaches the backend segment via the balancer's front address.
            flush_neighbours(client, client.iface(), &[front.ip(v6)]);
            assert_eq!(
                resolve_one(client, address).expect("resolving from the client"),
                expected(client.iface(), front.ip(v6), front.mac()),
                "{address} from the client"
            );
            // The balancer has the backend on-link, on its other interface.
            flush_neighbours(balancer, back, &[address]);
            assert_eq!(
                resolve_one(balancer, address).expect("resolving from the balancer"),
                expected(back, address, backend.iface().mac()),
                "{address} from the balancer"
            );
            // And the way back: the backend reaches the client via the balancer's back side.
            let to_client = client.iface().ip(v6);
            flush_neighbours(backend, backend.iface(), &[back.ip(v6)]);
            assert_eq!(
                resolve_one(backend, to_client).expect("resolving from a backend"),
                expected(backend.iface(), back.ip(v6), back.mac()),
                "{to_client} from {}",
                backend.role()
            );
        }
    }
}

/// Waits until `watcher` reports a change that `wanted` accepts, without sleeping: each
/// `next_changes` blocks on the socket until something arrives or the deadline passes.
fn wait_for_change(watcher: &mut Watcher, what: &str, wanted: impl Fn(&Change) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "no change for {what} within 5 s; saw {seen:?}"
        );
        let changes = watcher.next_changes(remaining).expect("reading changes");
        if changes.iter().any(&wanted) {
            return;
        }
        seen.extend(changes);
    }
}

#[test]
fn watcher_reports_neighbour_link_and_route_changes() {
    if !require_privileges("watcher_reports_neighbour_link_and_route_changes") {
        return;
    }
    let lab = Lab::standard(&LabConfig::default()).expect("the lab");
    let balancer = lab.balancer();
    let out = balancer.iface();
    let name = out.name();
    let ifindex = out.iface().ifindex().expect("an ifindex");
    let backend = lab.backend(1).expect("backend 1").iface();
    let netns = balancer.netns();
    let run = |args: &[&str]| {
        let argv: Vec<&str> = ["ip"].into_iter().chain(args.iter().copied()).collect();
        netns.run(&argv).expect("an ip command");
    };
    netns
        .enter_thread(|| {
            let mut watcher = Watcher::new().expect("a watcher");
            let mut resolver = Resolver::new(DEFAULT_RESOLVE_TIMEOUT).expect("a resolver");
            // Whatever the lab's set-up left queued.
            watcher.pending_changes().expect("draining");

            for v6 in [false, true] {
                let address = backend.ip(v6);
                let text = address.to_string();
                for mac in ["02:53:58:01:00:ee", "02:53:58:01:00:ef"] {
                    run(&[
                        "neigh",
                        "replace",
                        &text,
                        "lladdr",
                        mac,
                        "dev",
                        name,
                        "nud",
                        "permanent",
                    ]);
                    wait_for_change(&mut watcher, &format!("{text} -> {mac}"), |change| {
                        *change == Change::Neighbor { address, ifindex }
                    });
                    // What the resolver reads is what was just written.
                    let resolution = resolver.resolve(address).expect("resolving");
                    assert_eq!(
                        resolution.destination_mac,
                        mac.parse::<MacAddr>().unwrap().0
                    );
                }
                run(&["neigh", "del", &text, "dev", name]);
                wait_for_change(&mut watcher, &format!("deleting {text}"), |change| {
                    *change == Change::Neighbor { address, ifindex }
                });
                // Resolution the resolver starts ends in a change too (the entry becoming
                // REACHABLE), so a daemon re-resolving on changes sees it complete.
                let resolution = resolver.resolve(address).expect("resolving by ARP/ND");
                assert_eq!(resolution.destination_mac, backend.mac().0);
                wait_for_change(&mut watcher, &format!("resolving {text}"), |change| {
                    *change == Change::Neighbor { address, ifindex }
                });
            }

            run(&["link", "set", "dev", name, "mtu", "1400"]);
            wait_for_change(&mut watcher, "an MTU change", |change| {
                *change == Change::Link { ifindex }
            });

            run(&[
                "route",
                "add",
                "203.0.113.0/26",
                "via",
                "198.51.100.21",
                "dev",
                name,
            ]);
            wait_for_change(&mut watcher, "a new route", |change| {
                *change
                    == Change::Route {
                        destination: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0))),
                        ifindex: Some(ifindex),
                    }
            });
            // The new route is used at once: a routed address resolves to the gateway.
            let routed = resolver
                .resolve(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)))
                .expect("resolving via the new route");
            assert_eq!(routed.next_hop, backend.ip(false));
            assert_eq!(routed.destination_mac, backend.mac().0);

            // No notification was dropped along the way.
            let quiet = watcher.next_changes(Duration::from_millis(100)).unwrap();
            assert!(
                quiet.iter().all(|change| !matches!(change, Change::Lost)),
                "{quiet:?}"
            );
        })
        .expect("entering the balancer's namespace");
}
