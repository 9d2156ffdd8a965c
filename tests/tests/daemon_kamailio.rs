//! Health checks against real Kamailio backends: the real `sipxdp` binary in the standard
//! lab, each backend a Kamailio answering OPTIONS. A Kamailio that stops is marked down
//! within a few check intervals; its calls move to the others, and no other call moves;
//! started again, it comes back after its first successful check and takes new calls.
//! IPv6 backends are checked from an address of the balancer they answer, and sipp's
//! calls through the IPv6 VIP complete. When the balancer is renumbered, the checks move
//! to its new address; when it has no address to check from, the daemon runs without
//! checks of that family and starts them once an address appears.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_tests::{
    daemon_lab::{DaemonLab, sample},
    require_privileges,
    sipgen::{Call, Rng},
    sipp::StrictUac,
    wait_until,
};

/// The lab's health checks: every 500 ms, down after 2 failures (300 ms timeout), up
/// after 1 success.
const INTERVAL: Duration = Duration::from_millis(500);
const DOWN_AFTER: u32 = 2;

fn calls(seed: u64, count: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| Call::random(&mut rng, 25)).collect()
}

#[test]
fn kamailio_backends_going_down_and_up_move_only_their_calls() {
    if !require_privileges("kamailio_backends_going_down_and_up_move_only_their_calls") {
        return;
    }
    let mut lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5600);
    let vip = lab.vip();
    let ongoing = calls(7, 300);

    let invites: Vec<Vec<u8>> = ongoing
        .iter()
        .map(|call| call.invite(client, vip, 200))
        .collect();
    let before: BTreeMap<String, usize> = lab
        .send_to_kamailio(client, vip, &invites)
        .expect("INVITEs")
        .into_iter()
        .map(|(backend, request)| {
            assert_eq!(request.source, client, "Kamailio sees the client");
            (request.call_id, backend)
        })
        .collect();
    assert_eq!(before.len(), ongoing.len());
    assert!(before.values().any(|&backend| backend == 3));

    // Down within the thresholds: two failed checks, each at most one interval apart,
    // plus one interval of slack for the check already in flight.
    let stopped = Instant::now();
    lab.stop_kamailio(3).expect("stopping Kamailio 3");
    let down = wait_until(stopped + INTERVAL * (DOWN_AFTER + 2), || {
        lab.daemon_log()
            .contains("198.51.100.23:5060 of VIP lab is down")
    });
    assert!(down, "marked down in time:\n{}", lab.daemon_log());

    let byes: Vec<Vec<u8>> = ongoing.iter().map(|call| call.bye(client, vip)).collect();
    let after = lab.send_to_kamailio(client, vip, &byes).expect("BYEs");
    assert_eq!(after.len(), ongoing.len());
    for (backend, request) in &after {
        let was = before[&request.call_id];
        if was == 3 {
            assert_ne!(*backend, 3, "a call of the stopped backend moved");
        } else {
            assert_eq!(
                *backend, was,
                "call {} moved off a healthy backend",
                request.call_id
            );
        }
    }

    // Back after one successful check; new calls reach it again.
    lab.start_kamailio(3).expect("starting Kamailio 3 again");
    let up = wait_until(Instant::now() + INTERVAL * 4, || {
        lab.daemon_log()
            .contains("198.51.100.23:5060 of VIP lab is up")
    });
    assert!(up, "marked up in time:\n{}", lab.daemon_log());
    let fresh: Vec<Vec<u8>> = calls(8, 300)
        .iter()
        .map(|call| call.invite(client, vip, 200))
        .collect();
    let spread = lab
        .send_to_kamailio(client, vip, &fresh)
        .expect("new calls");
    assert!(
        spread.iter().any(|(backend, _)| *backend == 3),
        "backend 3 takes new calls"
    );
}

#[test]
fn sipp_calls_survive_a_kill_and_a_restart_of_the_daemon() {
    let name = "sipp_calls_survive_a_kill_and_a_restart_of_the_daemon";
    if !require_privileges(name) || !sipxdp_tests::require_command(name, "sipp") {
        return;
    }
    let mut lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    let client = lab.lab().client().iface().ipv4();
    // 600 calls at 100 per second (about 6 s), no retransmissions: a lost message fails
    // its call. Bounded: sipp gives up after 60 s.
    let uac = StrictUac {
        calls: 600,
        rate: 100,
        pause: Duration::from_millis(200),
        tcp: false,
        local_port: Some(5620),
        timeout: Duration::from_secs(60),
    };
    let sipp = uac
        .start(
            lab.lab().client().netns(),
            client.into(),
            lab.vip(),
            "restart",
        )
        .expect("sipp");
    let invites = |lab: &DaemonLab| {
        (1..=3)
            .map(|number| lab.kamailio_invites(number))
            .sum::<usize>()
    };
    // The calls flow; kill -9 the daemon in the middle of them ...
    assert!(wait_until(
        Instant::now() + Duration::from_secs(10),
        || invites(&lab) >= 100
    ));
    lab.kill_daemon().expect("kill -9");
    // ... let them flow through the pinned program alone, then start a new daemon.
    let orphaned = invites(&lab);
    assert!(wait_until(
        Instant::now() + Duration::from_secs(10),
        || invites(&lab) >= orphaned + 100
    ));
    lab.restart_daemon().expect("a new daemon");
    let (succeeded, report) = sipp.finish().expect("sipp's end");
    assert!(succeeded, "sipp saw failed calls:\n{report}");
    assert_eq!(
        invites(&lab),
        600,
        "each call's INVITE reached one Kamailio"
    );
}

#[test]
fn ipv6_backends_are_checked_from_an_address_they_answer() {
    let name = "ipv6_backends_are_checked_from_an_address_they_answer";
    if !require_privileges(name) {
        return;
    }
    let lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    // The balancer holds the VIPs too, and IPv6 source selection may pick the VIP for the
    // checks; each backend, holding the VIP itself, would answer such a check to itself.
    // A backend's row in `sipxdp status` shows a latency once a reply arrived.
    let rows: Vec<String> = (1..=3)
        .map(|number| lab.backend_address(number, true).to_string())
        .collect();
    let status = || {
        lab.control(&["status"], None)
            .map_or_else(|error| format!("{error:#}"), |(_, text)| text)
    };
    let answered = |text: &str| {
        rows.iter().all(|row| {
            text.lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first() == Some(&row.as_str()) && words.get(4).is_some_and(|w| *w != "-")
            })
        })
    };
    assert!(
        wait_until(Instant::now() + INTERVAL * 6, || answered(&status())),
        "every IPv6 backend answered a check:\n{}\n{}",
        status(),
        lab.daemon_log()
    );

    let client = SocketAddr::new(IpAddr::V6(lab.lab().client().iface().ipv6()), 5610);
    let vip = lab.vip_v6();
    let invites: Vec<Vec<u8>> = calls(9, 60)
        .iter()
        .map(|call| call.invite(client, vip, 200))
        .collect();
    let received = lab
        .send_to_kamailio(client, vip, &invites)
        .expect("INVITEs through the IPv6 VIP");
    assert_eq!(received.len(), invites.len());
    assert!(received.iter().all(|(_, request)| request.source == client));

    // Whole sipp calls over IPv6 complete: Kamailio answers from the VIP it holds.
    if sipxdp_tests::require_command(name, "sipp") {
        let uac = StrictUac {
            calls: 100,
            rate: 100,
            pause: Duration::from_millis(100),
            tcp: false,
            local_port: Some(5630),
            timeout: Duration::from_secs(30),
        };
        let (succeeded, report) = uac
            .start(lab.lab().client().netns(), client.ip(), vip, "ipv6")
            .expect("sipp")
            .finish()
            .expect("sipp's end");
        assert!(succeeded, "sipp saw failed calls over IPv6:\n{report}");
    }
    assert!(
        !lab.daemon_log().contains("of VIP lab6 is down"),
        "{}",
        lab.daemon_log()
    );
}

#[test]
fn health_checks_move_to_the_balancers_new_address_when_it_is_renumbered() {
    let name = "health_checks_move_to_the_balancers_new_address_when_it_is_renumbered";
    if !require_privileges(name) {
        return;
    }
    let lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    let answered = || answered_checks(&lab, false);
    assert!(
        wait_until(Instant::now() + INTERVAL * 6, || answered()
            .iter()
            .all(|&count| count > 0)),
        "every backend answered a check: {:?}\n{}",
        answered(),
        lab.daemon_log()
    );

    // The balancer's address changes: a second one in the same subnet, promoted when
    // the first is deleted. The first can no longer send, and the backends could no
    // longer reach it.
    let balancer = lab.lab().balancer();
    let (netns, interface) = (balancer.netns(), balancer.iface().name());
    let old = balancer.iface().ipv4();
    let new = std::net::Ipv4Addr::new(198, 51, 100, 3);
    netns
        .sysctl_write(
            &format!("net.ipv4.conf.{interface}.promote_secondaries"),
            "1",
        )
        .expect("promote_secondaries");
    netns
        .ip(&["addr", "add", &format!("{new}/26"), "dev", interface])
        .expect("the new address");
    netns
        .ip(&["addr", "del", &format!("{old}/26"), "dev", interface])
        .expect("the old address removed");
    let moved = format!("health checks from {new}:");
    assert!(
        wait_until(Instant::now() + INTERVAL * 6, || lab
            .daemon_log()
            .contains(&moved)),
        "the daemon moved its checks to {new}:\n{}",
        lab.daemon_log()
    );

    // Checks from the new address are answered, and no backend went down.
    let after_move = answered();
    assert!(
        wait_until(Instant::now() + INTERVAL * 8, || answered()
            .iter()
            .zip(&after_move)
            .all(|(now, then)| *now >= then + 3)),
        "every backend answered three checks from {new}: {after_move:?} then {:?}\n{}",
        answered(),
        lab.daemon_log()
    );
    assert!(
        !lab.daemon_log().contains("is down"),
        "{}",
        lab.daemon_log()
    );
}

#[test]
fn ipv6_checks_start_once_the_balancer_has_an_address_to_send_them_from() {
    let name = "ipv6_checks_start_once_the_balancer_has_an_address_to_send_them_from";
    if !require_privileges(name) {
        return;
    }
    let mut lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    lab.stop_daemon().expect("the first daemon stops");
    // Without its IPv6 address the balancer's only global IPv6 address is the VIP, which
    // the backends hold themselves: there is nothing to check them from.
    let balancer = lab.lab().balancer();
    let interface = balancer.iface().name().to_owned();
    let address = format!("{}/64", balancer.iface().ipv6());
    let subnet = balancer.iface().ipv6_subnet().to_string();
    let ip = |lab: &DaemonLab, args: &[&str]| lab.lab().balancer().netns().ip(args);
    ip(&lab, &["addr", "del", &address, "dev", &interface]).expect("the IPv6 address removed");
    // The backends stay on the link.
    ip(&lab, &["-6", "route", "add", &subnet, "dev", &interface]).expect("the on-link route");
    lab.restart_daemon()
        .expect("the daemon starts without IPv6 checks");
    let unchecked = "no health checks of the IPv6 backends";
    assert!(
        wait_until(Instant::now() + INTERVAL * 6, || lab
            .daemon_log()
            .contains(unchecked)),
        "{}",
        lab.daemon_log()
    );
    // The metrics say so: the IPv4 backends are checked, the IPv6 ones are not.
    let metrics = lab.scrape().expect("the metrics");
    for v6 in [false, true] {
        for number in 1..=3 {
            let backend = lab.backend_address(number, v6);
            let vip = if v6 { "lab6" } else { "lab" };
            let series = format!("sipxdp_backend_checked{{backend=\"{backend}\",vip=\"{vip}\"}} ");
            let expected = if v6 { "0" } else { "1" };
            assert!(
                metrics.contains(&format!("{series}{expected}")),
                "{series}{expected}\n{metrics}"
            );
        }
    }
    let client = SocketAddr::new(IpAddr::V6(lab.lab().client().iface().ipv6()), 5640);
    let invites: Vec<Vec<u8>> = calls(11, 30)
        .iter()
        .map(|call| call.invite(client, lab.vip_v6(), 200))
        .collect();
    let received = lab
        .send_to_kamailio(client, lab.vip_v6(), &invites)
        .expect("INVITEs through the IPv6 VIP, to unchecked backends");
    assert_eq!(received.len(), invites.len());

    ip(&lab, &["addr", "add", &address, "dev", &interface, "nodad"])
        .expect("the IPv6 address back");
    let answered = || answered_checks(&lab, true);
    assert!(
        wait_until(Instant::now() + INTERVAL * 8, || answered()
            .iter()
            .all(|&count| count > 0)),
        "every IPv6 backend answered a check once the address was back:\n{}",
        lab.daemon_log()
    );
    let metrics = lab.scrape().expect("the metrics");
    let still_unchecked = metrics
        .lines()
        .filter(|line| line.starts_with("sipxdp_backend_checked{") && line.ends_with(" 0"))
        .count();
    assert_eq!(
        still_unchecked, 0,
        "every backend is checked now:\n{metrics}"
    );
    assert!(
        !lab.daemon_log().contains("is down"),
        "{}",
        lab.daemon_log()
    );
}

/// The checks each backend of the IPv4 VIP (`lab`) or the IPv6 one (`lab6`) answered:
/// the counts of their latency histograms.
fn answered_checks(lab: &DaemonLab, v6: bool) -> Vec<u64> {
    let metrics = lab.scrape().unwrap_or_default();
    let vip = if v6 { "lab6" } else { "lab" };
    (1..=3)
        .map(|number| {
            let backend = lab.backend_address(number, v6);
            let series = format!(
                "sipxdp_health_check_latency_seconds_count{{backend=\"{backend}\",vip=\"{vip}\"}}"
            );
            sample(&metrics, &series)
        })
        .collect()
}
