//! SIP over TCP end to end: the real `sipxdp` binary balances a TCP VIP in XDP by direct
//! server return to Kamailio backends that hold the VIP on their loopback. sipp places its
//! calls over TCP with one connection per call; every call completes, and every
//! connection stays on one backend, as Kamailio's own log of each request's source shows.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use sipxdp_tests::{
    daemon_lab::{DaemonLab, counted},
    require_command, require_privileges,
    sipp::StrictUac,
};

const CALLS: usize = 200;

#[test]
fn sipp_calls_over_tcp_each_stay_on_one_backend() {
    let name = "sipp_calls_over_tcp_each_stay_on_one_backend";
    if !require_privileges(name) || !require_command(name, "sipp") {
        return;
    }
    let mut lab = DaemonLab::start_with_kamailio_and_tcp(&[1, 1, 1]).expect("the lab");
    let client = lab.lab().client().iface().ipv4();
    // 200 calls at 50 per second, each on a TCP connection of its own (`-t tn`), a lost
    // message fails its call. Bounded: sipp gives up after 60 s.
    let uac = StrictUac {
        calls: CALLS as u32,
        rate: 50,
        pause: Duration::from_millis(100),
        tcp: true,
        local_port: None,
        timeout: Duration::from_secs(60),
    };
    let sipp = uac
        .start(lab.lab().client().netns(), client.into(), lab.vip(), "tcp")
        .expect("sipp");
    let (succeeded, report) = sipp.finish().expect("sipp's end");
    assert!(
        succeeded,
        "sipp saw failed calls:\n{report}\nsipxdp logged:\n{}",
        lab.daemon_log()
    );

    // Where each connection's requests went, by the client's end of it.
    let mut connections: BTreeMap<SocketAddr, Vec<(usize, String)>> = BTreeMap::new();
    for (backend, request) in lab.kamailio_requests() {
        assert_eq!(request.source.ip(), client, "Kamailio sees the client");
        connections
            .entry(request.source)
            .or_default()
            .push((backend, request.method));
    }
    assert_eq!(connections.len(), CALLS, "one connection per call");
    for (source, requests) in &connections {
        let methods: Vec<&str> = requests.iter().map(|(_, method)| method.as_str()).collect();
        assert_eq!(methods, ["INVITE", "ACK", "BYE"], "the call of {source}");
        let backends: BTreeSet<usize> = requests.iter().map(|(backend, _)| *backend).collect();
        assert_eq!(
            backends.len(),
            1,
            "connection {source} reached {backends:?}"
        );
    }
    let used: BTreeSet<usize> = connections
        .values()
        .flat_map(|requests| requests.iter().map(|(backend, _)| *backend))
        .collect();
    assert!(used.len() > 1, "connections reached only backends {used:?}");

    // The kernel placed each connection once and followed it from then on.
    let (_, counters) = lab.stop_daemon().expect("stopping sipxdp");
    let placed = counted(&counters, "lab-tcp", "forwarded", "tcp_connection").unwrap_or(0);
    let followed = counted(&counters, "lab-tcp", "forwarded", "tcp_established").unwrap_or(0);
    assert!(
        placed >= CALLS as u64,
        "{placed} segments placed by the table:\n{counters}"
    );
    assert!(
        followed > placed,
        "{followed} segments followed their connection:\n{counters}"
    );
}
