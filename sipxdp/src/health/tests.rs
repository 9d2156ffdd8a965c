//! Prober tests: every rule driven by hand-fed time and datagrams.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{
    DownReason, DuplicateTargetId, Event, Prober, Settings, State, Target, Transmit,
    testing::response,
};
use crate::sip::{BRANCH_MAGIC_COOKIE, Message, StartLine};

const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);

fn settings(down_after: u32, up_after: u32) -> Settings {
    Settings {
        interval: INTERVAL,
        timeout: TIMEOUT,
        down_after,
        up_after,
        alive_codes: vec![(200, 299)],
    }
}

fn address(host: u8) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, host], 5060))
}

fn target(id: u32, host: u8) -> Target {
    Target {
        id,
        address: address(host),
    }
}

/// A prober with one target (id 1 at 203.0.113.10), and the start time.
fn single(down_after: u32, up_after: u32) -> (Prober, Instant) {
    let now = Instant::now();
    let mut prober = Prober::new(settings(down_after, up_after), address(1), 7).unwrap();
    prober.set_targets(now, vec![target(1, 10)]).unwrap();
    (prober, now)
}

fn ping(prober: &mut Prober, now: Instant) -> Transmit {
    let transmit = prober.poll_transmit(now).expect("a ping is due");
    assert_eq!(
        prober.poll_transmit(now),
        None,
        "one ping per target at a time"
    );
    transmit
}

fn answer(prober: &mut Prober, now: Instant, ping: &Transmit, code: u16) {
    let reply = response(&ping.payload, code);
    prober.handle_datagram(now, ping.destination, reply.as_bytes());
}

fn events(prober: &mut Prober) -> Vec<Event> {
    std::iter::from_fn(|| prober.poll_event()).collect()
}

/// Pings round after round at `start + k * INTERVAL`, letting each time out.
fn time_out_rounds(prober: &mut Prober, start: Instant, rounds: std::ops::Range<u32>) {
    for round in rounds {
        let sent = start + INTERVAL * round;
        ping(prober, sent);
        prober.handle_timeout(sent + TIMEOUT);
    }
}

#[test]
fn first_ping_is_immediate_and_well_formed() {
    let (mut prober, now) = single(3, 2);
    assert_eq!(prober.poll_timeout(), Some(now));
    let transmit = ping(&mut prober, now);
    assert_eq!(transmit.destination, address(10));
    let message = Message::parse(&transmit.payload).unwrap();
    assert!(matches!(
        message.start_line(),
        StartLine::Request {
            method: "OPTIONS",
            uri: "sip:203.0.113.10:5060",
            ..
        }
    ));
    assert!(
        message
            .via_branch()
            .unwrap()
            .starts_with(BRANCH_MAGIC_COOKIE)
    );
    assert!(message.header("Via").unwrap().contains("203.0.113.1:5060"));
    assert_eq!(message.cseq(), Some((1, "OPTIONS")));
    assert_eq!(prober.poll_timeout(), Some(now + TIMEOUT));
    assert_eq!(prober.status(1).unwrap().pings_sent, 1);

    prober.handle_timeout(now + TIMEOUT - Duration::from_millis(1));
    assert_eq!(prober.status(1).unwrap().consecutive_failures, 0);
    prober.handle_timeout(now + TIMEOUT);
    assert_eq!(prober.status(1).unwrap().consecutive_failures, 1);
    assert_eq!(prober.poll_timeout(), Some(now + INTERVAL));
    assert_eq!(
        prober.poll_transmit(now + INTERVAL - Duration::from_millis(1)),
        None
    );
}

#[test]
fn goes_down_after_exactly_down_after_timeouts() {
    let (mut prober, start) = single(3, 2);
    time_out_rounds(&mut prober, start, 0..2);
    assert_eq!(events(&mut prober), []);
    assert_eq!(prober.status(1).unwrap().state, State::Up);

    time_out_rounds(&mut prober, start, 2..3);
    assert_eq!(
        events(&mut prober),
        [Event::Down {
            id: 1,
            reason: DownReason::Timeout
        }]
    );
    let status = prober.status(1).unwrap();
    assert_eq!(status.state, State::Down);
    assert_eq!(status.consecutive_failures, 3);
    assert_eq!(status.failures_total, 3);
    assert_eq!(status.pings_sent, 3);

    time_out_rounds(&mut prober, start, 3..4);
    assert_eq!(events(&mut prober), [], "Down is reported once");
}

#[test]
fn comes_up_after_exactly_up_after_successes() {
    let (mut prober, start) = single(1, 2);
    time_out_rounds(&mut prober, start, 0..1);
    assert_eq!(events(&mut prober).len(), 1);

    let first = start + INTERVAL;
    let transmit = ping(&mut prober, first);
    answer(
        &mut prober,
        first + Duration::from_millis(5),
        &transmit,
        200,
    );
    assert_eq!(events(&mut prober), []);
    assert_eq!(prober.status(1).unwrap().state, State::Down);
    assert_eq!(prober.status(1).unwrap().consecutive_successes, 1);

    let second = start + INTERVAL * 2;
    let transmit = ping(&mut prober, second);
    answer(
        &mut prober,
        second + Duration::from_millis(5),
        &transmit,
        200,
    );
    assert_eq!(events(&mut prober), [Event::Up { id: 1 }]);
    let status = prober.status(1).unwrap();
    assert_eq!((status.state, status.consecutive_failures), (State::Up, 0));
    assert_eq!(status.failures_total, 1);
}

#[test]
fn a_reply_outside_the_alive_codes_is_a_failure() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    answer(&mut prober, now + Duration::from_millis(30), &transmit, 503);
    assert_eq!(
        events(&mut prober),
        [Event::Down {
            id: 1,
            reason: DownReason::Reply { code: 503 }
        }]
    );
    let status = prober.status(1).unwrap();
    assert_eq!(status.last_reply_code, Some(503));
    assert_eq!(status.last_latency, Some(Duration::from_millis(30)));
    assert_eq!(prober.ignored_replies(), 0);
}

#[test]
fn provisional_replies_keep_the_ping_waiting() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    answer(&mut prober, now + Duration::from_millis(10), &transmit, 100);
    answer(&mut prober, now + Duration::from_millis(20), &transmit, 180);
    let status = prober.status(1).unwrap();
    assert_eq!(
        (status.consecutive_successes, status.consecutive_failures),
        (0, 0)
    );
    assert_eq!(status.last_reply_code, None);
    assert_eq!(prober.poll_timeout(), Some(now + TIMEOUT), "same deadline");

    answer(&mut prober, now + Duration::from_millis(40), &transmit, 200);
    let status = prober.status(1).unwrap();
    assert_eq!(status.consecutive_successes, 1);
    assert_eq!(status.last_reply_code, Some(200));
    assert_eq!(status.last_latency, Some(Duration::from_millis(40)));
    assert_eq!((events(&mut prober), prober.ignored_replies()), (vec![], 0));
}

#[test]
fn with_the_catch_all_range_any_final_reply_is_alive() {
    let start = Instant::now();
    let catch_all = Settings {
        alive_codes: vec![(100, 699)],
        ..settings(1, 1)
    };
    let mut prober = Prober::new(catch_all, address(1), 7).unwrap();
    prober.set_targets(start, vec![target(1, 10)]).unwrap();
    for (round, code) in (0..).zip([100, 503, 180, 404]) {
        let sent = start + INTERVAL * round;
        let transmit = ping(&mut prober, sent);
        answer(
            &mut prober,
            sent + Duration::from_millis(1),
            &transmit,
            code,
        );
        prober.handle_timeout(sent + TIMEOUT);
    }
    let status = prober.status(1).unwrap();
    // The 1xx replies decided nothing: their pings timed out.
    assert_eq!(status.failures_total, 2);
    assert_eq!(status.last_reply_code, Some(404));
    assert_eq!(status.consecutive_successes, 1);
}

#[test]
fn provisional_reply_then_silence_is_a_timeout() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    answer(&mut prober, now + Duration::from_millis(10), &transmit, 183);
    prober.handle_timeout(now + TIMEOUT);
    assert_eq!(
        events(&mut prober),
        [Event::Down {
            id: 1,
            reason: DownReason::Timeout
        }]
    );
}

#[test]
fn unmatched_replies_are_ignored_and_counted() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    let good = response(&transmit.payload, 200);
    let message = Message::parse(&transmit.payload).unwrap();
    let call_id = message.call_id().unwrap().to_owned();
    let branch = message.via_branch().unwrap().to_owned();
    let branch_suffix = branch.strip_prefix(BRANCH_MAGIC_COOKIE).unwrap().to_owned();

    let strays: Vec<(SocketAddr, Vec<u8>)> = vec![
        (
            address(10),
            good.replace(&call_id, "other@sipxdp").into_bytes(),
        ),
        (
            address(10),
            good.replace(&branch, "z9hG4bKother").into_bytes(),
        ),
        (
            address(10),
            good.replace(&branch, &branch_suffix).into_bytes(),
        ),
        (address(11), good.clone().into_bytes()),
        (
            SocketAddr::from(([203, 0, 113, 10], 5061)),
            good.clone().into_bytes(),
        ),
        (address(10), transmit.payload.clone()),
        (address(10), b"\x00\xffgarbage".to_vec()),
        (address(10), good.as_bytes()[..good.len() / 2].to_vec()),
    ];
    for (from, payload) in &strays {
        prober.handle_datagram(now + Duration::from_millis(1), *from, payload);
    }
    assert_eq!(prober.ignored_replies(), strays.len() as u64);
    assert_eq!(prober.status(1).unwrap().last_reply_code, None);

    prober.handle_datagram(now + Duration::from_millis(2), address(10), good.as_bytes());
    assert_eq!(prober.status(1).unwrap().consecutive_successes, 1);
    prober.handle_datagram(now + Duration::from_millis(3), address(10), good.as_bytes());
    assert_eq!(
        prober.ignored_replies(),
        strays.len() as u64 + 1,
        "a retransmitted reply matches nothing"
    );
}

#[test]
fn ipv4_mapped_source_matches_an_ipv4_target() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    let mapped: SocketAddr = "[::ffff:203.0.113.10]:5060".parse().unwrap();
    let reply = response(&transmit.payload, 200);
    prober.handle_datagram(now, mapped, reply.as_bytes());
    assert_eq!(prober.status(1).unwrap().consecutive_successes, 1);
}

#[test]
fn a_late_reply_does_not_count_as_success() {
    let (mut prober, now) = single(1, 1);
    let transmit = ping(&mut prober, now);
    // No handle_timeout call in between: the reply itself reveals the expiry.
    answer(&mut prober, now + TIMEOUT, &transmit, 200);
    let status = prober.status(1).unwrap();
    assert_eq!(status.consecutive_successes, 0);
    assert_eq!(status.failures_total, 1);
    assert_eq!(status.last_reply_code, None);
    assert_eq!(prober.ignored_replies(), 1);
    assert_eq!(
        events(&mut prober),
        [Event::Down {
            id: 1,
            reason: DownReason::Timeout
        }]
    );
}

#[test]
fn set_targets_keeps_unchanged_targets_and_resets_the_rest() {
    let now = Instant::now();
    let mut prober = Prober::new(settings(1, 1), address(1), 7).unwrap();
    prober
        .set_targets(now, vec![target(1, 10), target(2, 20), target(3, 30)])
        .unwrap();
    // Ping everyone once and let all time out: all three go Down.
    let mut pinged = 0;
    for step in 0..3 {
        let at = now + INTERVAL * step / 3;
        while prober.poll_transmit(at).is_some() {
            pinged += 1;
        }
        prober.handle_timeout(at + TIMEOUT);
    }
    assert_eq!(pinged, 3);
    assert_eq!(events(&mut prober).len(), 3);

    // Target 1 has a ping in flight across the reload.
    let reload = now + INTERVAL;
    let in_flight = ping(&mut prober, reload);
    assert_eq!(in_flight.destination, address(10));
    let kept_status = prober.status(1).unwrap().clone();
    prober
        .set_targets(reload, vec![target(1, 10), target(2, 21), target(4, 40)])
        .unwrap();

    assert_eq!(prober.status(1), Some(&kept_status), "unchanged: kept");
    let moved = prober.status(2).unwrap();
    assert_eq!(
        (moved.state, moved.pings_sent),
        (State::Up, 0),
        "moved: fresh"
    );
    assert_eq!(prober.status(3), None, "removed");
    assert_eq!(prober.status(4).unwrap().state, State::Up, "new: starts Up");
    assert_eq!(events(&mut prober), [], "a reload emits no events");
    let ids: Vec<u32> = prober.statuses().map(|(target, _)| target.id).collect();
    assert_eq!(ids, [1, 2, 4]);

    answer(
        &mut prober,
        reload + Duration::from_millis(1),
        &in_flight,
        200,
    );
    assert_eq!(
        events(&mut prober),
        [Event::Up { id: 1 }],
        "in-flight ping kept"
    );

    assert_eq!(
        prober.set_targets(reload, vec![target(5, 50), target(5, 51)]),
        Err(DuplicateTargetId(5))
    );
    assert_eq!(
        prober.statuses().count(),
        3,
        "a refused set changes nothing"
    );
}

#[test]
fn a_new_local_address_forgets_the_ping_in_flight_and_pings_again_from_it() {
    let (mut prober, now) = single(1, 1);
    let old = ping(&mut prober, now);
    let moved = now + Duration::from_millis(5);
    prober.set_local(moved, address(2));
    // The old ping's timeout passes: forgotten, so no failure and no event.
    prober.handle_timeout(now + TIMEOUT);
    let status = prober.status(1).unwrap();
    assert_eq!((status.consecutive_failures, status.failures_total), (0, 0));
    assert_eq!(events(&mut prober), []);
    // Its reply, were it to arrive, answers nothing.
    answer(&mut prober, moved, &old, 200);
    assert_eq!(prober.ignored_replies(), 1);

    let again = ping(&mut prober, moved);
    let message = Message::parse(&again.payload).unwrap();
    assert!(message.header("Via").unwrap().contains("203.0.113.2:5060"));
    answer(&mut prober, moved + Duration::from_millis(1), &again, 200);
    assert_eq!(prober.status(1).unwrap().last_reply_code, Some(200));
    // Only the ping in flight is repeated: the next one keeps the interval.
    assert_eq!(prober.poll_timeout(), Some(moved + INTERVAL));
}

#[test]
fn several_targets_interleave() {
    let start = Instant::now();
    // A timeout long enough for all three pings to be in flight at once.
    let long_timeout = Settings {
        timeout: INTERVAL * 8 / 10,
        ..settings(1, 1)
    };
    let mut prober = Prober::new(long_timeout, address(1), 7).unwrap();
    prober
        .set_targets(start, vec![target(1, 10), target(2, 20), target(3, 30)])
        .unwrap();
    // First pings are spread over one interval, the first immediately.
    let third = INTERVAL / 3;
    let first = ping(&mut prober, start);
    assert_eq!(prober.poll_timeout(), Some(start + third));
    assert_eq!(
        prober.poll_transmit(start + third - Duration::from_nanos(1)),
        None
    );
    let second = ping(&mut prober, start + third);
    let last = ping(&mut prober, start + third * 2);
    let destinations = [&first, &second, &last].map(|t| t.destination);
    assert_eq!(destinations, [address(10), address(20), address(30)]);

    // Replies arrive out of order, each matched to its own target.
    let at = start + third * 2 + Duration::from_millis(5);
    answer(&mut prober, at, &last, 200);
    answer(&mut prober, at, &second, 503);
    answer(&mut prober, at, &first, 204);
    assert_eq!(
        events(&mut prober),
        [Event::Down {
            id: 2,
            reason: DownReason::Reply { code: 503 }
        }]
    );
    let codes: Vec<_> = prober
        .statuses()
        .map(|(_, status)| status.last_reply_code)
        .collect();
    assert_eq!(codes, [Some(204), Some(503), Some(200)]);
    assert_eq!(prober.ignored_replies(), 0);
    // Each keeps its own phase.
    assert_eq!(prober.poll_timeout(), Some(start + INTERVAL));
    assert_eq!(ping(&mut prober, start + INTERVAL).destination, address(10));
    assert_eq!(prober.poll_timeout(), Some(start + INTERVAL + third));
}

#[test]
fn a_stalled_caller_gets_one_ping_not_a_burst() {
    let (mut prober, start) = single(10, 1);
    ping(&mut prober, start);
    let late = start + INTERVAL * 5 + Duration::from_secs(1);
    ping(&mut prober, late);
    prober.handle_timeout(late + TIMEOUT);
    assert_eq!(prober.poll_timeout(), Some(late + INTERVAL));
    assert_eq!(prober.status(1).unwrap().pings_sent, 2);
}

#[test]
fn identifiers_are_unique_and_deterministic() {
    let run = |seed| {
        let start = Instant::now();
        let mut prober = Prober::new(settings(100, 1), address(1), seed).unwrap();
        prober.set_targets(start, vec![target(1, 10)]).unwrap();
        (0..200)
            .map(|round| {
                let transmit = ping(&mut prober, start + INTERVAL * round);
                prober.handle_timeout(start + INTERVAL * round + TIMEOUT);
                transmit.payload
            })
            .collect::<Vec<_>>()
    };
    let payloads = run(42);
    assert_eq!(payloads, run(42));
    assert_ne!(payloads, run(43));
    let mut call_ids = BTreeSet::new();
    let mut branches = BTreeSet::new();
    for payload in &payloads {
        let message = Message::parse(payload).unwrap();
        call_ids.insert(message.call_id().unwrap().to_owned());
        branches.insert(message.via_branch().unwrap().to_owned());
    }
    assert_eq!(call_ids.len(), payloads.len());
    assert_eq!(branches.len(), payloads.len());
}

#[test]
fn no_targets_no_timeout() {
    let mut prober = Prober::new(settings(1, 1), address(1), 0).unwrap();
    let now = Instant::now();
    assert_eq!(prober.poll_timeout(), None);
    assert_eq!(prober.poll_transmit(now), None);
    prober.handle_datagram(now, address(10), b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(prober.ignored_replies(), 1);
}
