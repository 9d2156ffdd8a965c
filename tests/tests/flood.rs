//! Flood protection in the XDP program (`BPF_PROG_TEST_RUN`): a source over its VIP's rate
//! is dropped after its burst while other sources pass, and earns messages back as the
//! clock moves; messages whose User-Agent is on the VIP's drop list are dropped wherever
//! the header is and whatever its case, ordinary ones are forwarded; with the VIP's flags
//! off, a filled `FLOOD` entry changes nothing.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_common::{
    flood::{FloodConfig, RateLimit, UserAgentPatterns},
    maps::{VIP_DROP_USER_AGENTS, VIP_RATE_LIMIT},
    outcome::{Action, Reason},
};
use sipxdp_tests::{
    fixture::{self, Loaded, VIP_SLOT, VIP_V6_SLOT, XDP_DROP, XDP_TX},
    frames::{CLIENT, CLIENT_V6, FrameSpec, VIP, VIP_V6, udp_frame},
    require_privileges,
    sipgen::{Call, Rng},
    wait_until,
};

const SEED: u64 = 0xf100d;
/// The flood protection of both fixture VIPs: one message per second per source after a
/// burst of 20, and the scanners of the issue.
const RATE: u64 = 1;
const BURST: u64 = 20;

fn flood_config() -> FloodConfig {
    FloodConfig {
        rate_limit: RateLimit::new(RATE, BURST).expect("a valid limit"),
        user_agents: UserAgentPatterns::new([
            b"friendly-scanner".as_slice(),
            b"sipvicious",
            b"sipcli",
        ])
        .expect("valid patterns"),
    }
}

/// The fixture with `flags` on both VIPs and [`flood_config`] in their `FLOOD` entries.
fn program(flags: u32) -> Loaded {
    let mut loaded = Loaded::new(&fixture::stateless(SEED), flags).expect("the fixture");
    for slot in [VIP_SLOT, VIP_V6_SLOT] {
        loaded
            .dataplane
            .set_flood(slot, &flood_config())
            .expect("writing FLOOD");
    }
    loaded
}

/// An INVITE of a fresh call to the VIP of `source`'s family, from `source`.
fn invite_from(source: IpAddr, user_agent_line: Option<&str>) -> Vec<u8> {
    let (destination, client) = match source {
        IpAddr::V4(_) => (IpAddr::V4(VIP), IpAddr::V4(CLIENT)),
        IpAddr::V6(_) => (IpAddr::V6(VIP_V6), IpAddr::V6(CLIENT_V6)),
    };
    let call = Call::random(&mut Rng::new(u64::from(source.is_ipv6())), 0);
    let mut message = call.invite(
        SocketAddr::new(client, 5062),
        SocketAddr::new(destination, 5060),
        100,
    );
    if let Some(line) = user_agent_line {
        message = with_user_agent_line(&message, line);
    }
    udp_frame(
        &FrameSpec {
            source: Some(source),
            destination,
            ..FrameSpec::default()
        },
        &message,
    )
}

/// `message` with its `User-Agent: sipxdp-tests` line replaced by `line`, which may also
/// be placed elsewhere: `line` is inserted right after the start line when it starts with
/// `^`, else where the old line was.
fn with_user_agent_line(message: &[u8], line: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).expect("a generated message is text");
    let without = text.replacen("User-Agent: sipxdp-tests\r\n", "", 1);
    assert_ne!(without, text, "the generated message has its User-Agent");
    match line.strip_prefix('^') {
        Some(first) => {
            let start_line_end = without.find("\r\n").expect("a start line") + 2;
            format!(
                "{}{first}\r\n{}",
                &without[..start_line_end],
                &without[start_line_end..]
            )
        }
        None => text.replacen("User-Agent: sipxdp-tests\r\n", &format!("{line}\r\n"), 1),
    }
    .into_bytes()
}

fn action(loaded: &Loaded, frame: &[u8]) -> u32 {
    loaded.dataplane.test_run(frame).expect("a test run").action
}

#[test]
fn a_source_over_its_rate_is_dropped_after_its_burst_while_another_passes() {
    if !require_privileges("a_source_over_its_rate_is_dropped_after_its_burst_while_another_passes")
    {
        return;
    }
    let loaded = program(VIP_RATE_LIMIT);
    let sources = [
        (
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 31)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 32)),
            VIP_SLOT,
        ),
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x31)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x32)),
            VIP_V6_SLOT,
        ),
    ];
    for (flooder, other, slot) in sources {
        let flood = invite_from(flooder, None);
        let actions: Vec<u32> = (0..BURST + 30).map(|_| action(&loaded, &flood)).collect();
        // At one message per second, the burst's runs take far less than the second that
        // would earn one more.
        let forwarded = actions.iter().filter(|&&a| a == XDP_TX).count() as u64;
        assert_eq!(forwarded, BURST, "{flooder}: {actions:?}");
        assert!(
            actions[..BURST as usize].iter().all(|&a| a == XDP_TX),
            "{flooder}: the burst comes first: {actions:?}"
        );
        assert_eq!(
            loaded.packets(slot, Action::Dropped, Reason::RateLimited),
            30
        );
        let legitimate = invite_from(other, None);
        for _ in 0..BURST {
            assert_eq!(
                action(&loaded, &legitimate),
                XDP_TX,
                "{other} has a bucket of its own"
            );
        }
        assert_eq!(
            loaded.packets(slot, Action::Dropped, Reason::RateLimited),
            30
        );
    }
}

#[test]
fn an_exhausted_source_earns_messages_back_as_the_clock_moves() {
    if !require_privileges("an_exhausted_source_earns_messages_back_as_the_clock_moves") {
        return;
    }
    let loaded = program(VIP_RATE_LIMIT);
    let frame = invite_from(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 33)), None);
    while action(&loaded, &frame) == XDP_TX {}
    let exhausted = Instant::now();
    // One message a second: the next comes within a second and a clock tick, not at once.
    let earned = wait_until(exhausted + Duration::from_secs(3), || {
        action(&loaded, &frame) == XDP_TX
    });
    assert!(earned, "no message earned within 3 s at 1 per second");
    assert!(
        exhausted.elapsed() >= Duration::from_millis(900),
        "earned after only {:?}",
        exhausted.elapsed()
    );
    assert_eq!(action(&loaded, &frame), XDP_DROP, "only one was earned");
}

#[test]
fn scanner_user_agents_are_dropped_in_any_case_and_position() {
    if !require_privileges("scanner_user_agents_are_dropped_in_any_case_and_position") {
        return;
    }
    let loaded = program(VIP_DROP_USER_AGENTS);
    let scanners = [
        "User-Agent: friendly-scanner",
        "user-agent:friendly-scanner",
        "USER-AGENT :  SIPVicious 0.3.4",
        "User-Agent: pplsip sipcli/v1.8",
        "^User-Agent: Friendly-Scanner",
        "^user-agent:\tsipvicious",
    ];
    let sources = [IpAddr::V4(CLIENT), IpAddr::V6(CLIENT_V6)];
    for (index, line) in scanners.iter().enumerate() {
        for source in sources {
            assert_eq!(
                action(&loaded, &invite_from(source, Some(line))),
                XDP_DROP,
                "{line:?} from {source}"
            );
        }
        let counted = index as u64 + 1;
        assert_eq!(
            loaded.packets(VIP_SLOT, Action::Dropped, Reason::Scanner),
            counted
        );
        assert_eq!(
            loaded.packets(VIP_V6_SLOT, Action::Dropped, Reason::Scanner),
            counted
        );
    }
    let ordinary = [
        None,
        Some("User-Agent: Kamailio (5.6.3 (x86_64/linux))"),
        Some("Server: friendly-scanner"),
        Some("X-User-Agent: sipvicious"),
        Some("^Subject: sipcli"),
    ];
    for line in ordinary {
        for source in sources {
            assert_eq!(
                action(&loaded, &invite_from(source, line)),
                XDP_TX,
                "{line:?} from {source}"
            );
        }
    }
    assert_eq!(
        loaded.packets(VIP_SLOT, Action::Forwarded, Reason::CallId),
        ordinary.len() as u64
    );
}

#[test]
fn with_the_flags_off_a_filled_flood_entry_changes_nothing() {
    if !require_privileges("with_the_flags_off_a_filled_flood_entry_changes_nothing") {
        return;
    }
    let loaded = program(0);
    let scanner = invite_from(IpAddr::V4(CLIENT), Some("User-Agent: friendly-scanner"));
    for _ in 0..BURST * 3 {
        assert_eq!(action(&loaded, &scanner), XDP_TX);
    }
    assert_eq!(
        loaded.packets(VIP_SLOT, Action::Forwarded, Reason::CallId),
        BURST * 3
    );
    for reason in [Reason::RateLimited, Reason::Scanner] {
        assert_eq!(loaded.packets(VIP_SLOT, Action::Dropped, reason), 0);
    }
}

#[test]
fn both_protections_together_count_each_drop_once() {
    if !require_privileges("both_protections_together_count_each_drop_once") {
        return;
    }
    let loaded = program(VIP_RATE_LIMIT | VIP_DROP_USER_AGENTS);
    let scanner = invite_from(IpAddr::V4(CLIENT), Some("User-Agent: sipcli/v1.8"));
    let actions: Vec<u32> = (0..BURST + 10).map(|_| action(&loaded, &scanner)).collect();
    assert!(actions.iter().all(|&a| a == XDP_DROP), "{actions:?}");
    // The bucket is checked first, so the burst's worth is dropped as scanners and the
    // excess as over the rate, without reading the payload.
    assert_eq!(
        loaded.packets(VIP_SLOT, Action::Dropped, Reason::Scanner),
        BURST
    );
    assert_eq!(
        loaded.packets(VIP_SLOT, Action::Dropped, Reason::RateLimited),
        10
    );
}
