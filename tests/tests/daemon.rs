//! The real `sipxdp` binary: refusing bad configurations before touching anything,
//! balancing real dialogs from a configuration, health checks moving calls off a dead
//! backend, reload on SIGHUP, staying pinned when it stops and `sipxdp detach` leaving
//! nothing attached.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_tests::{
    daemon_lab::{DaemonLab, check_config, counted, forwarded, sample},
    delivery::dialogs_by_backend,
    list_namespaces, require_privileges,
    sipgen::{Call, Rng},
    wait_until,
};

fn calls(seed: u64, count: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| Call::random(&mut rng, 25)).collect()
}

fn client_address(lab: &DaemonLab, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), port)
}

#[test]
fn check_config_reports_every_problem_with_its_location() {
    let (output, path) = check_config(
        "[[interfaces]]\nname = \"lo\"\n[[vips]]\naddress = \"198.51.100.100\"\nport = 70000\n\
         [[vips.backends]]\naddress = \"not-an-address\"\n",
    )
    .expect("checking the file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a broken file is refused");
    let origin = path.display().to_string();
    assert!(
        stderr.contains(&format!("{origin}:5:8")),
        "the port's location in:\n{stderr}"
    );
    assert!(stderr.contains("70000"), "{stderr}");
}

#[test]
fn run_refuses_a_broken_config_and_attaches_nothing() {
    if !require_privileges("run_refuses_a_broken_config_and_attaches_nothing") {
        return;
    }
    let lab = DaemonLab::start(&[1]).expect("the lab");
    // The lab asks for generic XDP; the daemon reports the mode the kernel attached in.
    assert!(
        lab.daemon_log()
            .contains("(generic XDP, in the kernel stack)"),
        "{}",
        lab.daemon_log()
    );
    let mut text = std::fs::read_to_string(lab.config_path()).expect("the config");
    let (status, _) = {
        let mut lab = lab;
        let stopped = lab.stop_daemon().expect("stopping");
        assert!(
            lab.attached().expect("link state"),
            "still attached after SIGTERM"
        );
        lab.detach().expect("sipxdp detach");
        assert!(
            !lab.attached().expect("link state"),
            "detached by sipxdp detach"
        );
        text.push_str("\n[[vips.backends]]\naddress = \"198.51.100.21\"\nweight = -1\n");
        std::fs::write(lab.config_path(), &text).expect("writing");
        let message = lab.refused_run(&[]).expect("sipxdp refuses to run");
        assert!(message.contains("weight"), "{message}");
        assert!(!lab.attached().expect("link state"), "nothing attached");
        stopped
    };
    assert!(
        status.success(),
        "sipxdp exits cleanly on SIGTERM: {status}"
    );
}

#[test]
fn the_daemon_balances_dialogs_and_follows_health_and_reloads() {
    if !require_privileges("the_daemon_balances_dialogs_and_follows_health_and_reloads") {
        return;
    }
    let weights = [1, 2, 1];
    let mut lab = DaemonLab::start(&weights).expect("the lab");

    // 1. Every dialog stays on one backend, shares follow the weights.
    let dialogs = calls(1, 4_000);
    let received = lab
        .send_dialogs(client_address(&lab, 5100), &dialogs)
        .expect("the dialogs arrive");
    let client = client_address(&lab, 5100);
    assert!(received.iter().all(|message| message.peer == client));
    let (backends_of, calls_of) = dialogs_by_backend(&received);
    assert_eq!(backends_of.len(), dialogs.len());
    assert!(backends_of.values().all(|set| set.len() == 1));
    for (number, weight) in (1..).zip(weights) {
        let expected = dialogs.len() as f64 * f64::from(weight) / 4.0;
        let got = calls_of.get(&number).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() / expected <= 0.10,
            "backend {number}: {got} calls, expected {expected}"
        );
    }

    // 2. A backend that stops answering health checks leaves the table: after it is
    //    marked down, every new call lands on the others.
    lab.stop_backend(3);
    let marked_down = wait_until(Instant::now() + Duration::from_secs(10), || {
        lab.daemon_log()
            .contains("198.51.100.23:5060 of VIP lab is down")
    });
    assert!(marked_down, "backend 3 marked down:\n{}", lab.daemon_log());
    let after = lab
        .send_dialogs(client_address(&lab, 5101), &calls(2, 1_000))
        .expect("calls reach the live backends");
    assert!(after.iter().all(|message| message.backend <= 2));

    // 3. A reload with a new weight moves calls between the remaining backends.
    lab.write_config(&[1, 0, 1]).expect("a new config");
    lab.reload().expect("SIGHUP");
    let reloaded = wait_until(Instant::now() + Duration::from_secs(10), || {
        lab.daemon_log().contains("reloaded")
    });
    assert!(reloaded, "reload logged:\n{}", lab.daemon_log());
    let weighted = lab
        .send_dialogs(client_address(&lab, 5102), &calls(3, 1_000))
        .expect("calls after the reload");
    assert!(
        weighted.iter().all(|message| message.backend == 1),
        "weight 0 takes no new calls and backend 3 is down"
    );

    // 4. SIGTERM prints counters that match what was sent, exactly, and leaves the
    //    program pinned; `sipxdp detach` removes it.
    let (status, counters) = lab.stop_daemon().expect("stopping");
    assert!(status.success(), "{status}");
    assert!(lab.attached().expect("link state"), "pinned after SIGTERM");
    let detached = lab.detach().expect("sipxdp detach");
    assert!(detached.contains("detached from"), "{detached}");
    assert!(
        !lab.attached().expect("link state"),
        "nothing left attached"
    );
    assert!(!lab.pin_path().exists(), "no pins left");
    let sent = received.len() + after.len() + weighted.len();
    assert_eq!(forwarded(&counters, "lab"), sent as u64, "{counters}");
    assert_eq!(counted(&counters, "lab", "passed", "no_backend"), None);

    // 5. Tearing the lab down leaves no namespace behind.
    let names = lab.lab().namespace_names();
    drop(lab);
    let left: Vec<String> = list_namespaces()
        .expect("listing namespaces")
        .into_iter()
        .filter(|name| names.contains(name))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn a_vip_removed_while_no_daemon_ran_is_no_longer_balanced() {
    if !require_privileges("a_vip_removed_while_no_daemon_ran_is_no_longer_balanced") {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let (status, _) = lab.stop_daemon().expect("stopping");
    assert!(status.success(), "{status}");
    // The pinned program keeps balancing both VIPs while no daemon runs. The next daemon
    // starts from a configuration without lab6: it must take lab6 out of the maps.
    let text = std::fs::read_to_string(lab.config_path()).expect("the config");
    let kept: Vec<&str> = text
        .split("\n[[vips]]\n")
        .filter(|section| !section.starts_with("name = \"lab6\""))
        .collect();
    assert_eq!(kept.len(), 2, "the header and lab");
    // Without health checks, whose answers would be counted as traffic to no VIP too.
    let config = kept
        .join("\n[[vips]]\n")
        .replace("[health_check]\n", "[health_check]\nenabled = false\n");
    std::fs::write(lab.config_path(), config).expect("writing");
    lab.restart_daemon().expect("a new daemon");

    const NOT_VIP: &str = "sipxdp_packets_total{action=\"passed\",reason=\"not_vip\",vip=\"none\"}";
    const FORWARDED: &str = "sipxdp_packets_total{action=\"forwarded\"";
    let before = lab.scrape().expect("metrics");
    let client = SocketAddr::new(IpAddr::V6(lab.lab().client().iface().ipv6()), 5420);
    let byes: Vec<Vec<u8>> = calls(4, 50)
        .iter()
        .map(|call| call.bye(client, lab.vip_v6()))
        .collect();
    sipxdp_tests::send_udp_from(lab.lab().client().netns(), client, lab.vip_v6(), &byes)
        .expect("sending");
    let mut after = String::new();
    let passed = wait_until(Instant::now() + Duration::from_secs(10), || {
        after = lab.scrape().unwrap_or_default();
        sample(&after, NOT_VIP) >= sample(&before, NOT_VIP) + byes.len() as u64
    });
    assert!(passed, "the former VIP's datagrams are no VIP's:\n{after}");
    assert_eq!(
        sample(&after, FORWARDED),
        sample(&before, FORWARDED),
        "nothing was forwarded:\n{after}"
    );
}
