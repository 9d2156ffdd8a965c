//! Flood protection with the real binary: while sipp makes calls through the VIP to the
//! Kamailio backends, a second address of the client's namespace floods the VIP, first
//! with a scanner's User-Agent, then (after a reload that adds a rate limit) with ordinary
//! requests far above the limit. No call of sipp fails, the scanner flood reaches no
//! Kamailio, the rate flood reaches them only within its bucket, and the daemon's metrics
//! count both floods as dropped under their reasons.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_tests::{
    daemon_lab::{DaemonLab, sample},
    require_command, require_privileges,
    sipp::StrictUac,
    wait_until,
};

/// The flooder's address: in the lab's client subnet, unused by the lab.
const FLOODER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const FLOODER_PORT: u16 = 5990;
/// Datagrams of each flood, their pace, and the time each may take at most. Paced, at
/// more than 80 times sipp's rate: unpaced, the sender's own namespace and the shared
/// 2-core machine drop datagrams of any source (sipp's too) before XDP sees them, which
/// tests the machine rather than the balancer.
const FLOOD: u64 = 100_000;
const FLOOD_PER_SECOND: u64 = 25_000;
const FLOOD_TIME: Duration = Duration::from_secs(30);
const SCANNERS: &str = "drop_user_agents = [\"friendly-scanner\", \"sipvicious\", \"sipcli\"]\n";
/// sipp sends about 300 messages a second from its one address, far below this.
const RATE: u64 = 2_000;
const BURST: u64 = 4_000;

/// A `MESSAGE` (which Kamailio logs, unlike OPTIONS) with `user_agent`, numbered `n`.
fn message(n: u64, vip: SocketAddr, user_agent: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:service@{vip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {FLOODER}:{FLOODER_PORT};branch=z9hG4bK-flood-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@{FLOODER}>;tag=flood{n}\r\n\
         To: <sip:service@{vip}>\r\n\
         Call-ID: flood-{n}@{FLOODER}\r\n\
         CSeq: 1 MESSAGE\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends [`FLOOD`] messages from the flooder's address, for at most [`FLOOD_TIME`].
/// Returns how many were sent.
fn flood(lab: &DaemonLab, user_agent: &str) -> u64 {
    let socket = lab
        .lab()
        .client()
        .netns()
        .udp_socket(SocketAddr::new(IpAddr::V4(FLOODER), FLOODER_PORT))
        .expect("the flooder's socket");
    let vip = lab.vip();
    let deadline = Instant::now() + FLOOD_TIME;
    let mut sent = 0;
    let started = Instant::now();
    while sent < FLOOD && Instant::now() < deadline {
        // A full socket buffer only delays the next datagram.
        if socket.send_to(&message(sent, vip, user_agent), vip).is_ok() {
            sent += 1;
        }
        if sent % 250 == 0 {
            let due = started + Duration::from_micros(sent * 1_000_000 / FLOOD_PER_SECOND);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    sent
}

/// `sipxdp_packets_total` of the VIP `lab` dropped for `reason`, from the metrics text.
fn dropped(metrics: &str, reason: &str) -> u64 {
    sample(
        metrics,
        &format!("sipxdp_packets_total{{action=\"dropped\",reason=\"{reason}\",vip=\"lab\"}} "),
    )
}

/// Requests from the flooder that reached a Kamailio.
fn flood_received(lab: &DaemonLab) -> u64 {
    lab.kamailio_requests()
        .iter()
        .filter(|(_, request)| request.source.ip() == IpAddr::V4(FLOODER))
        .count() as u64
}

fn reload_with(lab: &mut DaemonLab, options: &str, reloads: usize) {
    lab.set_vip_options(options);
    lab.write_config(&[1, 1, 1]).expect("the configuration");
    lab.reload().expect("SIGHUP");
    let reloaded = wait_until(Instant::now() + Duration::from_secs(10), || {
        lab.daemon_log().matches("reloaded").count() >= reloads
    });
    assert!(reloaded, "reload logged:\n{}", lab.daemon_log());
}

#[test]
fn sipp_calls_survive_a_scanner_flood_and_a_flood_above_the_rate_limit() {
    let name = "sipp_calls_survive_a_scanner_flood_and_a_flood_above_the_rate_limit";
    if !require_privileges(name) || !require_command(name, "sipp") {
        return;
    }
    let mut lab = DaemonLab::start_with_kamailio(&[1, 1, 1]).expect("the lab");
    reload_with(&mut lab, SCANNERS, 1);
    let client = lab.lab().client();
    let subnet = client.iface().ipv4_subnet();
    client
        .netns()
        .ip(&[
            "addr",
            "add",
            &format!("{FLOODER}/{}", subnet.prefix()),
            "dev",
            client.iface().name(),
        ])
        .expect("the flooder's address");

    // 1,500 calls at 100 per second (about 15 s, across both floods), no
    // retransmissions: a lost message fails its call. Bounded: sipp gives up after 90 s.
    let uac = StrictUac {
        calls: 1500,
        rate: 100,
        pause: Duration::from_millis(200),
        tcp: false,
        local_port: Some(5620),
        timeout: Duration::from_secs(90),
    };
    let sipp = uac
        .start(
            client.netns(),
            client.iface().ipv4().into(),
            lab.vip(),
            "flood",
        )
        .expect("sipp");
    let invites = |lab: &DaemonLab| (1..=3).map(|n| lab.kamailio_invites(n)).sum::<usize>();
    assert!(
        wait_until(Instant::now() + Duration::from_secs(10), || invites(&lab)
            >= 100),
        "sipp's calls flow"
    );

    // A scanner: every message dropped in XDP, none reaches a Kamailio.
    let sent = flood(&lab, "friendly-scanner");
    assert_eq!(
        sent, FLOOD,
        "the scanner flood was sent within {FLOOD_TIME:?}"
    );
    let counted = wait_until(Instant::now() + Duration::from_secs(5), || {
        lab.scrape()
            .is_ok_and(|metrics| dropped(&metrics, "scanner") >= FLOOD * 95 / 100)
    });
    let metrics = lab.scrape().expect("the metrics");
    assert!(
        counted,
        "scanner drops counted: {}",
        dropped(&metrics, "scanner")
    );
    assert!(dropped(&metrics, "scanner") <= FLOOD);
    assert_eq!(
        flood_received(&lab),
        0,
        "a scanner's message reached a Kamailio"
    );

    // Ordinary messages far above the rate: beyond the burst and what the rate earns
    // while the flood lasts, dropped in XDP.
    reload_with(
        &mut lab,
        &format!("{SCANNERS}rate_limit = {RATE}\nrate_burst = {BURST}\n"),
        2,
    );
    let started = Instant::now();
    let sent = flood(&lab, "flood-test/1.0");
    let lasted = started.elapsed().as_secs() + 1;
    assert_eq!(sent, FLOOD, "the rate flood was sent within {FLOOD_TIME:?}");
    let allowed = BURST + RATE * lasted;
    let counted = wait_until(Instant::now() + Duration::from_secs(5), || {
        lab.scrape()
            .is_ok_and(|metrics| dropped(&metrics, "rate_limited") >= (FLOOD - allowed) * 95 / 100)
    });
    let metrics = lab.scrape().expect("the metrics");
    assert!(
        counted,
        "rate_limited drops counted: {} of {FLOOD} sent in {lasted} s",
        dropped(&metrics, "rate_limited")
    );
    let received = flood_received(&lab);
    assert!(
        received > 0 && received <= allowed,
        "{received} flood messages reached Kamailio; the bucket allows {allowed}"
    );

    let (succeeded, report) = sipp.finish().expect("sipp's end");
    assert!(succeeded, "sipp saw failed calls:\n{report}");
    assert_eq!(
        invites(&lab),
        1500,
        "each call's INVITE reached one Kamailio"
    );
    let metrics = lab.scrape().expect("the metrics");
    assert_eq!(dropped(&metrics, "not_sip"), 0);
}
