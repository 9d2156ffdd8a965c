//! Dialog stickiness in the XDP program (`BPF_PROG_TEST_RUN`): a call in progress keeps
//! its backend when the table changes, and only new calls follow the new table; a call
//! whose backend left service, was replaced in its slot, or that stayed idle too long is
//! placed by the table again.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_common::{
    maps::{BACKEND_IN_SERVICE, Backend, Settings},
    outcome::{Action, Reason},
};
use sipxdp_tests::{
    fixture::{self, Loaded, MAGLEV_SIZE, VIP_SLOT, XDP_TX, backend_mac, maglev_table, vip_key},
    frames::{BALANCER_MAC, CLIENT, FrameSpec, VIP, udp_frame},
    require_privileges,
    sipgen::{Call, Rng},
};

const SEED: u64 = 0x00d1_a106;
const CALLS: usize = 1_000;
const ONE_HOUR_NS: u64 = 3_600_000_000_000;

/// A program with three backends and stickiness configured by `idle_ns`, and the calls
/// the tests send.
struct Dialogs {
    program: Loaded,
    calls: Vec<Call>,
}

impl Dialogs {
    fn new(idle_ns: u64) -> Self {
        let settings = Settings {
            hash_seed: SEED,
            dialog_idle_ns: idle_ns,
            ..Settings::default()
        };
        let program = Loaded::new(&settings, 0).expect("the fixture");
        let mut rng = Rng::new(11);
        let calls = (0..CALLS).map(|_| Call::random(&mut rng, 10)).collect();
        Self { program, calls }
    }

    fn addresses() -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(IpAddr::V4(CLIENT), 5062),
            SocketAddr::new(IpAddr::V4(VIP), 5060),
        )
    }

    /// Sends `message` and returns the backend slot whose MAC the frame left with.
    fn send(&self, message: &[u8]) -> u32 {
        let output = self
            .program
            .dataplane
            .test_run(&udp_frame(&FrameSpec::default(), message))
            .expect("test run");
        assert_eq!(output.action, XDP_TX);
        assert_eq!(output.frame[6..12], BALANCER_MAC);
        (0..8)
            .find(|&slot| output.frame[..6] == backend_mac(slot))
            .expect("the MAC of a known backend")
    }

    fn invites(&self, calls: &[Call]) -> Vec<u32> {
        let (client, vip) = Self::addresses();
        calls
            .iter()
            .map(|call| self.send(&call.invite(client, vip, 0)))
            .collect()
    }

    fn byes(&self, calls: &[Call]) -> Vec<u32> {
        let (client, vip) = Self::addresses();
        calls
            .iter()
            .map(|call| self.send(&call.bye(client, vip)))
            .collect()
    }

    /// Puts a backend in slot `slot` with `incarnation`, in service or not.
    fn set_backend(&mut self, slot: u32, in_service: bool, incarnation: u16) {
        self.program
            .dataplane
            .set_backend(
                slot,
                &Backend {
                    flags: if in_service { BACKEND_IN_SERVICE } else { 0 },
                    incarnation,
                    ..fixture::loopback_backend(slot)
                },
            )
            .expect("writing a backend");
    }

    /// Publishes a table over `slots` (weight 1 each) and returns it.
    fn publish(&mut self, slots: &[u32]) -> Vec<u16> {
        let members: Vec<(u32, u32)> = slots.iter().map(|&slot| (slot, 1)).collect();
        let table = maglev_table(&members, MAGLEV_SIZE).expect("a table");
        self.program
            .dataplane
            .publish_table(&vip_key(5060), &table)
            .expect("publishing");
        table
    }

    fn counted(&self, reason: Reason) -> u64 {
        self.program.packets(VIP_SLOT, Action::Forwarded, reason)
    }
}

fn table_choice(table: &[u16], call: &Call) -> u32 {
    fixture::owner(table, call.call_id.as_bytes(), SEED)
}

/// How many of `calls`, placed on `backends`, `table` would place elsewhere.
fn moved_by(table: &[u16], calls: &[Call], backends: &[u32]) -> usize {
    calls
        .iter()
        .zip(backends)
        .filter(|(call, backend)| table_choice(table, call) != **backend)
        .count()
}

#[test]
fn calls_in_progress_keep_their_backend_when_one_is_added() {
    if !require_privileges("calls_in_progress_keep_their_backend_when_one_is_added") {
        return;
    }
    let mut dialogs = Dialogs::new(ONE_HOUR_NS);
    let (started, fresh) = dialogs.calls.split_at(CALLS / 2);
    let (started, fresh) = (started.to_vec(), fresh.to_vec());
    let before = dialogs.invites(&started);
    assert_eq!(dialogs.counted(Reason::CallId), started.len() as u64);

    dialogs.set_backend(3, true, 1);
    let table = dialogs.publish(&[0, 1, 2, 3]);
    // Some started calls would move under the new table; none may.
    let would_move = moved_by(&table, &started, &before);
    assert!(would_move > 50, "only {would_move} calls would move");
    assert_eq!(
        dialogs.byes(&started),
        before,
        "no call in progress changes backend"
    );
    assert_eq!(dialogs.counted(Reason::Dialog), started.len() as u64);

    let placed = dialogs.invites(&fresh);
    let expected: Vec<u32> = fresh
        .iter()
        .map(|call| table_choice(&table, call))
        .collect();
    assert_eq!(placed, expected, "new calls follow the new table");
    assert!(placed.contains(&3), "the new backend takes new calls");
}

#[test]
fn a_draining_backend_keeps_its_calls_and_takes_no_new_ones() {
    if !require_privileges("a_draining_backend_keeps_its_calls_and_takes_no_new_ones") {
        return;
    }
    let mut dialogs = Dialogs::new(ONE_HOUR_NS);
    let (started, fresh) = dialogs.calls.split_at(CALLS / 2);
    let (started, fresh) = (started.to_vec(), fresh.to_vec());
    let before = dialogs.invites(&started);
    assert!(before.contains(&1));
    // Draining: out of the table, still in service.
    dialogs.publish(&[0, 2]);
    assert_eq!(dialogs.byes(&started), before);
    assert!(!dialogs.invites(&fresh).contains(&1));
}

#[test]
fn calls_are_placed_again_when_their_backend_cannot_keep_them() {
    if !require_privileges("calls_are_placed_again_when_their_backend_cannot_keep_them") {
        return;
    }
    let mut dialogs = Dialogs::new(ONE_HOUR_NS);
    let calls = dialogs.calls.clone();
    let before = dialogs.invites(&calls);
    let on = |slot: u32| -> Vec<Call> {
        calls
            .iter()
            .zip(&before)
            .filter(|(_, placed)| **placed == slot)
            .map(|(call, _)| call.clone())
            .collect()
    };
    let (on_one, on_two) = (on(1), on(2));
    assert!(!on_one.is_empty() && !on_two.is_empty());

    // Slot 1 goes down; slot 2 is handed to another backend (a new incarnation).
    dialogs.set_backend(1, false, 0);
    dialogs.set_backend(2, true, 1);
    let table = dialogs.publish(&[0, 2]);
    let replaced = on_one.iter().chain(&on_two).cloned().collect::<Vec<_>>();
    let expected: Vec<u32> = replaced
        .iter()
        .map(|call| table_choice(&table, call))
        .collect();
    let placed_by_table_before = dialogs.counted(Reason::CallId);
    assert_eq!(dialogs.byes(&replaced), expected);
    assert_eq!(
        dialogs.counted(Reason::CallId),
        placed_by_table_before + replaced.len() as u64,
        "each was placed by the table, not by its dialog"
    );
    assert!(!expected.contains(&1));
}

#[test]
fn idle_calls_and_stickiness_off_follow_the_table() {
    if !require_privileges("idle_calls_and_stickiness_off_follow_the_table") {
        return;
    }
    // The program reads the coarse monotonic clock, which moves once per timer tick (1 to
    // 10 ms), so the idle timeout is 20 ms and the calls wait 100 ms: there is no event to
    // wait for, only time to pass. 0 turns stickiness off.
    for (idle_ns, pause) in [
        (20_000_000, Duration::from_millis(100)),
        (0, Duration::ZERO),
    ] {
        let mut dialogs = Dialogs::new(idle_ns);
        let calls = dialogs.calls.clone();
        dialogs.invites(&calls);
        dialogs.set_backend(3, true, 1);
        let table = dialogs.publish(&[0, 1, 2, 3]);
        std::thread::sleep(pause);
        let expected: Vec<u32> = calls
            .iter()
            .map(|call| table_choice(&table, call))
            .collect();
        assert_eq!(dialogs.byes(&calls), expected, "idle {idle_ns} ns");
        assert_eq!(dialogs.counted(Reason::Dialog), 0, "idle {idle_ns} ns");
    }
}

#[test]
fn calls_that_keep_sending_outlive_the_idle_timeout() {
    if !require_privileges("calls_that_keep_sending_outlive_the_idle_timeout") {
        return;
    }
    // The program refreshes a remembered call once per 1/64 of the idle timeout, not on
    // every message. Calls that send every 200 ms for three times their 1 s timeout must
    // stay where they are, although the new table moves some of them. Time has to pass
    // here; there is no event to wait for. The margin (800 ms between two messages of a
    // call before it would expire) absorbs a loaded machine's scheduling delays.
    let idle = Duration::from_secs(1);
    let mut dialogs = Dialogs::new(idle.as_nanos() as u64);
    let calls = dialogs.calls.clone();
    let placed = dialogs.invites(&calls);
    dialogs.set_backend(3, true, 1);
    let table = dialogs.publish(&[0, 1, 2, 3]);
    let moved = moved_by(&table, &calls, &placed);
    assert!(moved > 0, "the new table moves some calls");
    let start = Instant::now();
    while start.elapsed() < 3 * idle {
        std::thread::sleep(idle / 5);
        assert_eq!(dialogs.byes(&calls), placed, "after {:?}", start.elapsed());
    }
}
