//! Privileged tests of the lab topologies; they skip without root.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::testutil::{assert_no_leftovers, privileged};
use crate::traffic::{UdpReceiver, send_udp_from};
use crate::wait::wait_until;

const SIP: u16 = 5060;

fn secs(n: u64) -> Instant {
    Instant::now() + Duration::from_secs(n)
}

fn payloads(count: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..count).map(|i| format!("datagram {i}").into_bytes())
}

/// Sends `count` datagrams from `from` (in `from_host`) to `to` (received in `to_host`) and
/// checks that all arrive, in order, with `from`'s address as their source.
fn assert_udp_delivery(from_host: &Host, from: IpAddr, to_host: &Host, to: IpAddr, count: usize) {
    let receiver = UdpReceiver::bind(to_host.netns(), SocketAddr::new(to, SIP)).unwrap();
    let sent = send_udp_from(
        from_host.netns(),
        SocketAddr::new(from, 0),
        receiver.local_addr(),
        payloads(count),
    )
    .unwrap();
    assert_eq!(sent.sent, count);
    let got = receiver.collect(count, secs(10)).unwrap();
    assert_eq!(
        got.len(),
        count,
        "{from} -> {to}: only {} arrived",
        got.len()
    );
    for (i, datagram) in got.iter().enumerate() {
        assert_eq!(datagram.peer, sent.local, "source of datagram {i}");
        assert_eq!(datagram.payload, format!("datagram {i}").into_bytes());
    }
}

fn assert_no_default_route(host: &Host) {
    for family in ["-4", "-6"] {
        let routes = host
            .netns()
            .ip(&[family, "route", "show", "default"])
            .unwrap();
        assert!(
            routes.stdout.is_empty(),
            "{family} default route in {}",
            host.role()
        );
    }
}

#[test]
fn standard_lab_delivers_udp_from_client_to_backend() {
    let Some(_serial) = privileged("standard_lab_delivers_udp_from_client_to_backend") else {
        return;
    };
    let lab = Lab::standard(&LabConfig::default()).unwrap();
    let client = lab.client();
    let backend = lab.backend(1).unwrap();
    assert_eq!(backend.role(), "backend-1");
    assert_eq!(backend.iface().ipv4().to_string(), "198.51.100.21");
    assert_eq!(client.iface().ipv4().to_string(), "198.51.100.10");
    for v6 in [false, true] {
        assert_udp_delivery(
            client,
            client.iface().ip(v6),
            backend,
            backend.iface().ip(v6),
            100,
        );
    }
    for host in lab.hosts() {
        assert_no_default_route(host);
        assert_eq!(
            host.netns()
                .sysctl_read("net.ipv4.conf.all.rp_filter")
                .unwrap(),
            "0"
        );
        let name = host.iface().name();
        let key = format!("net.ipv4.conf.{name}.rp_filter");
        assert_eq!(host.netns().sysctl_read(&key).unwrap(), "0", "{key}");
        assert_eq!(host.iface().iface().mac().unwrap(), host.iface().mac());
    }
    assert_eq!(lab.backends().len(), 3);
    assert!(lab.backend(0).is_none() && lab.backend(4).is_none());
    assert_eq!(lab.bridges().len(), 1);
    assert_eq!(lab.veths().len(), 5);
    assert_eq!(lab.namespace_names().len(), 6);
}

#[test]
fn lab_teardown_leaves_nothing_behind_also_after_a_panic() {
    let Some(_serial) = privileged("lab_teardown_leaves_nothing_behind_also_after_a_panic") else {
        return;
    };
    let lab = Lab::standard(&LabConfig::default()).unwrap();
    let names = lab.namespace_names();
    let existing = crate::netns::list_namespaces().unwrap();
    assert!(names.iter().all(|name| existing.contains(name)));
    drop(lab);
    assert_no_leftovers();

    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::routed_nat(&LabConfig::default()).unwrap();
        names = lab.namespace_names();
        panic!("deliberate panic while a lab is alive");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 6);
    assert_no_leftovers();
    // The lock was released during unwinding, so the next lab builds at once.
    drop(Lab::exclusive().unwrap());
}

#[test]
fn a_second_lab_on_the_same_thread_is_an_error_not_a_deadlock() {
    let Some(_serial) = privileged("a_second_lab_on_the_same_thread_is_an_error_not_a_deadlock")
    else {
        return;
    };
    let lock = Lab::exclusive().unwrap();
    assert!(matches!(
        Lab::standard(&LabConfig::default()),
        Err(LabError::AlreadyHeld)
    ));
    drop(lock);
    assert_no_leftovers();
}

/// Without static entries the client resolves the VIP by ARP/ND to the balancer; a DSR
/// reply from a backend does not re-point it; and no backend answers for the VIP even when
/// the balancer does not own it.
#[test]
fn client_resolves_vip_to_balancer_and_backends_never_answer_for_it() {
    let Some(_serial) =
        privileged("client_resolves_vip_to_balancer_and_backends_never_answer_for_it")
    else {
        return;
    };
    let config = LabConfig {
        static_vip_neighbour: false,
        ..LabConfig::default()
    };
    let lab = Lab::standard(&config).unwrap();
    let (client, balancer) = (lab.client(), lab.balancer());
    let client_if = client.iface().iface();
    let vips = [IpAddr::V4(lab.vip().v4), IpAddr::V6(lab.vip().v6)];
    for vip in vips {
        assert_eq!(
            client_if.neighbour(vip).unwrap(),
            None,
            "no static entry for {vip}"
        );
        assert_udp_delivery(client, client.iface().ip(vip.is_ipv6()), balancer, vip, 5);
        let entry = client_if.neighbour(vip).unwrap().unwrap();
        assert_eq!(entry.mac, Some(balancer.iface().mac()), "{vip}: {entry:?}");

        // A backend replies from the VIP straight to the client (DSR) ...
        let backend = lab.backend(2).unwrap();
        let to_client = SocketAddr::new(client.iface().ip(vip.is_ipv6()), SIP);
        let receiver = UdpReceiver::bind(client.netns(), to_client).unwrap();
        send_udp_from(
            backend.netns(),
            SocketAddr::new(vip, SIP),
            to_client,
            payloads(3),
        )
        .unwrap();
        let got = receiver.collect(3, secs(10)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.peer == SocketAddr::new(vip, SIP)));
        // ... and the client still sends VIP traffic to the balancer.
        let entry = client_if.neighbour(vip).unwrap().unwrap();
        assert_eq!(
            entry.mac,
            Some(balancer.iface().mac()),
            "{vip} after DSR: {entry:?}"
        );
    }

    // Take the VIP away from the balancer: nobody may answer for it any more.
    for vip in vips {
        let prefix = crate::subnet::Subnet::host(vip).prefix();
        balancer.iface().iface().del_address(vip, prefix).unwrap();
        client_if.flush_neighbour(vip).unwrap();
        let to = SocketAddr::new(vip, SIP);
        let from = SocketAddr::new(client.iface().ip(vip.is_ipv6()), 0);
        send_udp_from(client.netns(), from, to, payloads(1)).unwrap();
    }
    for vip in vips {
        let mut last = None;
        let failed = wait_until(secs(15), || {
            last = client_if.neighbour(vip).unwrap();
            last.as_ref()
                .is_some_and(|entry| entry.states.iter().any(|state| state == "FAILED"))
        });
        assert!(failed, "someone answered for {vip}: {last:?}");
        assert_eq!(last.and_then(|entry| entry.mac), None);
    }
}

#[test]
fn static_vip_neighbour_points_at_the_balancer() {
    let Some(_serial) = privileged("static_vip_neighbour_points_at_the_balancer") else {
        return;
    };
    let lab = Lab::standard(&LabConfig::default()).unwrap();
    let client_if = lab.client().iface().iface();
    for vip in [IpAddr::V4(lab.vip().v4), IpAddr::V6(lab.vip().v6)] {
        let entry = client_if.neighbour(vip).unwrap().unwrap();
        assert_eq!(entry.mac, Some(lab.balancer().iface().mac()));
        assert!(
            entry.states.iter().any(|state| state == "PERMANENT"),
            "{entry:?}"
        );
    }
    for backend in lab.backends() {
        let ns = backend.netns();
        assert_eq!(ns.sysctl_read("net.ipv4.conf.all.arp_ignore").unwrap(), "1");
        assert_eq!(
            ns.sysctl_read("net.ipv4.conf.all.arp_announce").unwrap(),
            "2"
        );
        let lo = ns.ip(&["-j", "addr", "show", "dev", "lo"]).unwrap();
        let lo = String::from_utf8_lossy(&lo.stdout);
        assert!(
            lo.contains("198.51.100.100") && lo.contains("2001:db8:1::100"),
            "{lo}"
        );
    }
}

#[test]
fn routed_nat_lab_forwards_between_segments_without_default_routes() {
    let Some(_serial) =
        privileged("routed_nat_lab_forwards_between_segments_without_default_routes")
    else {
        return;
    };
    let config = LabConfig {
        backends: 2,
        ..LabConfig::default()
    };
    let lab = Lab::routed_nat(&config).unwrap();
    assert_eq!(lab.kind(), LabKind::RoutedNat);
    let (client, balancer) = (lab.client(), lab.balancer());
    let back = balancer.backend_side().unwrap();
    assert_eq!(back.ipv4().to_string(), "203.0.113.2");
    let backend = lab.backend(2).unwrap();
    assert_eq!(backend.iface().ipv4().to_string(), "203.0.113.22");
    assert_eq!(backend.iface().ipv6().to_string(), "2001:db8:2::22");
    for v6 in [false, true] {
        assert_udp_delivery(
            client,
            client.iface().ip(v6),
            backend,
            backend.iface().ip(v6),
            50,
        );
        assert_udp_delivery(
            backend,
            backend.iface().ip(v6),
            client,
            client.iface().ip(v6),
            50,
        );
    }
    assert_eq!(
        balancer.netns().sysctl_read("net.ipv4.ip_forward").unwrap(),
        "1"
    );
    for host in lab.hosts() {
        assert_no_default_route(host);
    }
    assert_eq!(lab.bridges().len(), 2);
}
