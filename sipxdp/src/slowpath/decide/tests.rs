use std::collections::HashMap;

use super::*;
use crate::{
    daemon::kernel_settings,
    lookup::backend_for,
    plan::{BackendId, Health, plan},
    test_support::reachable,
};

const VIP: &str = "198.51.100.100:5060";

/// Dialogs in memory, as the kernel's map would hold them.
#[derive(Default)]
struct Memory(HashMap<PlacementKey, Placement>);

impl DialogStore for Memory {
    fn get(&mut self, key: &PlacementKey) -> Option<Placement> {
        self.0.get(key).copied()
    }

    fn put(&mut self, key: &PlacementKey, dialog: &Placement) {
        self.0.insert(*key, *dialog);
    }
}

struct Setup {
    config: Config,
    slots: Slots,
    plan: Plan,
    view: View,
}

/// Three backends on one VIP with `policies` (lines of the `[[vips]]` table), every
/// backend up except those in `down`.
fn setup(policies: &str, down: &[&str]) -> Setup {
    let text = format!(
        "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"edge\"\n\
         address = \"198.51.100.100\"\ntable_size = 251\n{policies}\n\
         [[vips.backends]]\naddress = \"198.51.100.21\"\n\
         [[vips.backends]]\naddress = \"198.51.100.22\"\n\
         [[vips.backends]]\naddress = \"198.51.100.23\"\n"
    );
    let config = crate::config::parse(&text, "test.toml", &crate::test_support::Machine)
        .expect("a valid configuration");
    let mut slots = Slots::default();
    let plan = planned(&config, &mut slots, down);
    let view = View::new(&config, &kernel_settings(&config), &plan, &slots);
    Setup {
        config,
        slots,
        plan,
        view,
    }
}

fn planned(config: &Config, slots: &mut Slots, down: &[&str]) -> Plan {
    plan(config, slots, |id: &BackendId| {
        reachable(if down.contains(&id.address.to_string().as_str()) {
            Health::Down
        } else {
            Health::Up
        })
    })
    .expect("a plan")
}

fn vip() -> SocketAddr {
    VIP.parse().expect("an address")
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::new("203.0.113.7".parse().expect("an address"), port)
}

fn message(call_id: &str, padding: usize) -> Vec<u8> {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5062\r\n\
         X-Padding: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\r\n",
        "p".repeat(padding)
    )
    .into_bytes()
}

fn address_of(setup: &Setup, decision: Decision) -> SocketAddr {
    match decision {
        Decision::Forward { backend, .. } => {
            setup.slots.backend_at(backend).expect("a backend").address
        }
        Decision::Drop(cause) => panic!("dropped for {cause:?}"),
    }
}

#[test]
fn call_ids_go_where_the_kernel_sends_them_then_stick() {
    let setup = setup("", &[]);
    let mut dialogs = Memory::default();
    for n in 0..100 {
        let call_id = format!("call-{n}@203.0.113.7");
        // Beyond the kernel's window: the whole message is searched.
        let invite = message(&call_id, 3000);
        let expected = backend_for(&setup.plan, &setup.slots, "edge", call_id.as_bytes(), 0)
            .expect("a backend")
            .address;
        let first = decide(
            &setup.view,
            vip(),
            &invite,
            client(5062),
            &mut dialogs,
            1_000,
        );
        assert_eq!(address_of(&setup, first), expected);
        assert!(matches!(
            first,
            Decision::Forward {
                outcome: Outcome::Forwarded,
                cause: Cause::Kernel(Reason::CallId),
                ..
            }
        ));
        let again = decide(
            &setup.view,
            vip(),
            &invite,
            client(5062),
            &mut dialogs,
            2_000,
        );
        assert_eq!(address_of(&setup, again), expected);
        assert!(matches!(
            again,
            Decision::Forward {
                cause: Cause::Kernel(Reason::Dialog),
                ..
            }
        ));
    }
}

#[test]
fn a_dialog_whose_backend_went_down_is_placed_again() {
    let mut setup = setup("", &[]);
    let mut dialogs = Memory::default();
    // A call whose backend is about to go down.
    let (call_id, owner) = (0..)
        .map(|n| format!("down-{n}"))
        .map(|call_id| {
            let owner = backend_for(&setup.plan, &setup.slots, "edge", call_id.as_bytes(), 0)
                .expect("a backend")
                .address;
            (call_id, owner)
        })
        .find(|(_, owner)| owner.to_string() == "198.51.100.21:5060")
        .expect("some call lands on the first backend");
    let invite = message(&call_id, 0);
    let placed = decide(&setup.view, vip(), &invite, client(1), &mut dialogs, 1);
    assert_eq!(address_of(&setup, placed), owner);

    let plan = planned(&setup.config, &mut setup.slots, &["198.51.100.21:5060"]);
    let view = View::new(
        &setup.config,
        &kernel_settings(&setup.config),
        &plan,
        &setup.slots,
    );
    let moved = decide(&view, vip(), &invite, client(1), &mut dialogs, 2);
    assert_ne!(address_of(&setup, moved), owner);
    assert!(matches!(
        moved,
        Decision::Forward {
            cause: Cause::Kernel(Reason::CallId),
            ..
        }
    ));
}

#[test]
fn a_stale_dialog_follows_the_table() {
    let setup = setup("", &[]);
    let mut dialogs = Memory::default();
    let invite = message("stale@203.0.113.7", 0);
    decide(&setup.view, vip(), &invite, client(1), &mut dialogs, 0);
    let idle = setup.view.dialog_idle_ns;
    let later = decide(
        &setup.view,
        vip(),
        &invite,
        client(1),
        &mut dialogs,
        idle + 1,
    );
    assert!(matches!(
        later,
        Decision::Forward {
            cause: Cause::Kernel(Reason::CallId),
            ..
        }
    ));
}

#[test]
fn unplaceable_messages_are_dropped_by_default() {
    let setup = setup("", &[]);
    let mut dialogs = Memory::default();
    let cases: [(&[u8], Reason); 4] = [
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n",
            Reason::NoCallId,
        ),
        (
            b"BYE sip:a@b SIP/2.0\r\nCall-ID: one\r\ni: two\r\n\r\n",
            Reason::ConflictingCallIds,
        ),
        (
            b"BYE sip:a@b SIP/2.0\r\nCall-ID: one\r\nCSeq: 2 B",
            Reason::Truncated,
        ),
        (
            b"INVITE sip:a@b SIP/2.0\r\nCall-ID:\r\n\r\n",
            Reason::EmptyCallId,
        ),
    ];
    for (message, reason) in cases {
        assert_eq!(
            decide(&setup.view, vip(), message, client(1), &mut dialogs, 0),
            Decision::Drop(Cause::Kernel(reason)),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn the_fallback_is_picked_by_the_client_address_and_port() {
    let setup = setup("unplaceable = \"fallback\"", &[]);
    let mut dialogs = Memory::default();
    let no_call_id = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let mut seen = std::collections::BTreeSet::new();
    for port in 1000..1100 {
        let decision = decide(
            &setup.view,
            vip(),
            no_call_id,
            client(port),
            &mut dialogs,
            0,
        );
        assert!(matches!(
            decision,
            Decision::Forward {
                outcome: Outcome::Fallback,
                cause: Cause::Kernel(Reason::NoCallId),
                ..
            }
        ));
        let again = decide(
            &setup.view,
            vip(),
            no_call_id,
            client(port),
            &mut dialogs,
            0,
        );
        assert_eq!(again, decision, "one client, one fallback");
        seen.insert(address_of(&setup, decision));
    }
    assert_eq!(seen.len(), 3, "clients spread over every backend");
    assert!(dialogs.0.is_empty(), "no dialog without a Call-ID");
}

#[test]
fn keep_alives_and_non_sip_follow_the_vip_policies() {
    let passing = setup("", &[]);
    let dropping = setup("keep_alive = \"drop\"\nnon_sip = \"drop\"", &[]);
    let mut dialogs = Memory::default();
    for (payload, reason) in [
        (&b"\r\n\r\n"[..], Reason::KeepAlive),
        (&[0x80, 0x00, 0x12, 0x34, 0xff, 0xfe][..], Reason::NotSip),
    ] {
        assert!(matches!(
            decide(&passing.view, vip(), payload, client(9), &mut dialogs, 0),
            Decision::Forward { outcome: Outcome::Fallback, cause: Cause::Kernel(r), .. } if r == reason
        ));
        assert_eq!(
            decide(&dropping.view, vip(), payload, client(9), &mut dialogs, 0),
            Decision::Drop(Cause::Kernel(reason))
        );
    }
}

#[test]
fn without_backends_or_vip_messages_are_dropped() {
    let all_down = [
        "198.51.100.21:5060",
        "198.51.100.22:5060",
        "198.51.100.23:5060",
    ];
    let setup = setup("unplaceable = \"fallback\"", &all_down);
    let mut dialogs = Memory::default();
    let invite = message("nobody@203.0.113.7", 0);
    assert_eq!(
        decide(&setup.view, vip(), &invite, client(1), &mut dialogs, 0),
        Decision::Drop(Cause::Kernel(Reason::NoBackend))
    );
    let other: SocketAddr = "198.51.100.101:5060".parse().expect("an address");
    assert_eq!(
        decide(&setup.view, other, &invite, client(1), &mut dialogs, 0),
        Decision::Drop(Cause::Kernel(Reason::NotVip))
    );
}

#[test]
fn addresses_round_trip() {
    for text in ["198.51.100.7", "2001:db8::7"] {
        let address: IpAddr = text.parse().expect("an address");
        assert_eq!(ip_address(address_bytes(address)), address);
    }
}

#[test]
fn scanners_are_dropped_wherever_their_user_agent_hides() {
    let guarded = setup(
        "unplaceable = \"fallback\"\ndrop_user_agents = [\"friendly-scanner\", \"sipcli\"]",
        &[],
    );
    let mut dialogs = Memory::default();
    let with_user_agent = |padding: usize, user_agent: &str, call_id: bool| {
        let call_id = if call_id {
            "Call-ID: scan@203.0.113.7\r\n"
        } else {
            ""
        };
        format!(
            "OPTIONS sip:100@198.51.100.100 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5062\r\n\
             X-Padding: {}\r\n{call_id}User-Agent: {user_agent}\r\n\r\n",
            "p".repeat(padding)
        )
        .into_bytes()
    };
    // Beyond the kernel's window, after a long value start, without a Call-ID (which the
    // fallback policy would otherwise forward): all dropped, counted as scanners.
    for message in [
        with_user_agent(3_000, "friendly-scanner", true),
        with_user_agent(0, &format!("{} sipcli/1.8", "x".repeat(300)), true),
        with_user_agent(0, "SIPCLI", false),
    ] {
        assert_eq!(
            decide(&guarded.view, vip(), &message, client(1), &mut dialogs, 0),
            Decision::Drop(Cause::Kernel(Reason::Scanner))
        );
    }
    let ordinary = with_user_agent(3_000, "Kamailio", true);
    assert!(matches!(
        decide(&guarded.view, vip(), &ordinary, client(1), &mut dialogs, 0),
        Decision::Forward { .. }
    ));
    // Without a drop list, the same scanner is placed like any message.
    let open = setup("", &[]);
    assert!(matches!(
        decide(
            &open.view,
            vip(),
            &with_user_agent(0, "friendly-scanner", true),
            client(1),
            &mut dialogs,
            0
        ),
        Decision::Forward { .. }
    ));
}
