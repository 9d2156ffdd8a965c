//! The metrics endpoint of the real `sipxdp` binary, scraped by a real Prometheus server
//! in the balancer's namespace: after a known stream of dialogs, Prometheus reports per
//! backend exactly the packets each backend received; a stopped backend's up gauge flips
//! to 0; and the text passes `promtool check metrics`.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sipxdp_tests::{
    daemon_lab::DaemonLab,
    require_command, require_privileges,
    sipgen::{Call, Rng},
    wait_until,
};

#[test]
fn prometheus_scrapes_counts_that_match_what_backends_received() {
    let name = "prometheus_scrapes_counts_that_match_what_backends_received";
    if !require_privileges(name)
        || !require_command(name, "prometheus")
        || !require_command(name, "promtool")
    {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let prometheus = lab.start_prometheus().expect("prometheus");
    let client = SocketAddr::new(IpAddr::V4(lab.lab().client().iface().ipv4()), 5700);
    let mut rng = Rng::new(9);
    let calls: Vec<Call> = (0..500).map(|_| Call::random(&mut rng, 20)).collect();
    let received = lab.send_dialogs(client, &calls).expect("dialogs");
    let mut per_backend: BTreeMap<String, f64> = BTreeMap::new();
    for message in &received {
        let address = lab.backend_address(message.backend, false);
        *per_backend.entry(address.to_string()).or_default() += 1.0;
    }

    // Prometheus's own view, once it has scraped after the stream.
    let query = "sipxdp_backend_packets_total{vip=\"lab\"}";
    let mut seen = BTreeMap::new();
    let matched = wait_until(Instant::now() + Duration::from_secs(20), || {
        seen = lab
            .query(&prometheus, query)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(labels, value)| Some((labels["backend"].as_str()?.to_owned(), value)))
            .collect();
        seen == per_backend
    });
    assert!(
        matched,
        "Prometheus saw {seen:?}, the backends got {per_backend:?}"
    );

    // Every backend's health checks were timed.
    let timed = lab
        .query(
            &prometheus,
            "sipxdp_health_check_latency_seconds_count{vip=\"lab\"}",
        )
        .expect("a query");
    assert_eq!(timed.len(), 3, "{timed:?}");
    assert!(timed.iter().all(|(_, count)| *count > 0.0), "{timed:?}");

    // The program's mode as the kernel attached it: the lab asks for generic XDP.
    let attached = lab
        .query(&prometheus, "sipxdp_program_info")
        .expect("a query");
    assert!(!attached.is_empty());
    assert!(
        attached
            .iter()
            .all(|(labels, _)| labels["mode"] == "skb" && labels["requested"] == "skb"),
        "{attached:?}"
    );

    // promtool accepts the text.
    let text = lab.scrape().expect("the metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let checked = promtool.wait_with_output().expect("promtool's verdict");
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A stopped backend's up gauge flips to 0 in Prometheus.
    let third = lab.backend_address(3, false).to_string();
    let query = format!("sipxdp_backend_up{{vip=\"lab\",backend=\"{third}\"}}");
    let up = |lab: &DaemonLab, value: f64| {
        lab.query(&prometheus, &query)
            .is_ok_and(|series| series.first().is_some_and(|(_, seen)| *seen == value))
    };
    assert!(up(&lab, 1.0), "backend 3 is up before it stops");
    lab.stop_backend(3);
    let flipped = wait_until(Instant::now() + Duration::from_secs(20), || up(&lab, 0.0));
    assert!(
        flipped,
        "backend 3's up gauge flipped to 0:\n{}",
        lab.daemon_log()
    );
}
