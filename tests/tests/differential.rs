//! The two paths against each other: random and mutated SIP messages (valid, near-valid
//! and junk) run through the kernel program (`BPF_PROG_TEST_RUN`) and through the
//! userspace code, which must agree on every message:
//!
//! - with the kernel's limits, userspace predicts the kernel's outcome exactly: the same
//!   backend for a forward, the same counted reason for a pass;
//! - the slow path's limits (whole message) place every message the kernel placed on the
//!   same backend, and differ from the kernel only where the kernel's limits stop it.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use sipxdp_common::{
    callid::{KernelLimits, MessageLimits, Unplaceable, locate},
    corpus,
    maps::table_entry,
    outcome::{Action, Reason},
    payload::SlicePayload,
};
use sipxdp_tests::{
    fixture::{self, Loaded, VIP_SLOT, VIP_V6_SLOT, XDP_PASS, XDP_TX, backend_mac},
    frames::{FrameSpec, VIP, VIP_V6, client_address, udp_frame},
    require_privileges,
    sipgen::{Call, Rng},
};

const SEED: u64 = 0xd1ff;
/// Messages per run, and the time they may take: whichever ends first.
const MESSAGES: usize = 200_000;
const BUDGET: Duration = Duration::from_secs(90);
/// A run that the budget cuts shorter than this fails: too little was compared.
const AT_LEAST: usize = 20_000;
/// Payloads stay below this, so that every frame fits a test run's page.
const MAX_PAYLOAD: usize = 1_800;

/// The kernel's reasons that only its limits give: the slow path may place these.
const KERNEL_LIMITS: [Unplaceable; 3] = [
    Unplaceable::BeyondWindow,
    Unplaceable::CallIdTooLong,
    Unplaceable::LongBlankRun,
];

/// The messages mutated: the corpus and generated dialogs.
fn seeds(rng: &mut Rng) -> Vec<Vec<u8>> {
    let client = SocketAddr::new(IpAddr::V4(fixture_client()), 5062);
    let vip = SocketAddr::new(IpAddr::V4(VIP), 5060);
    let mut seeds: Vec<Vec<u8>> = corpus::cases()
        .into_iter()
        .map(|case| case.message)
        .collect();
    for _ in 0..50 {
        let call = Call::random(rng, 30);
        let body = rng.below(600) as usize;
        seeds.extend([
            call.invite(client, vip, body),
            call.ok(client, vip, body),
            call.ack(client, vip),
            call.bye(client, vip),
        ]);
    }
    seeds
}

fn fixture_client() -> std::net::Ipv4Addr {
    match client_address(IpAddr::V4(VIP)) {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => unreachable!("an IPv4 VIP has an IPv4 client"),
    }
}

/// Bytes that make near-valid SIP when inserted.
const FRAGMENTS: [&[u8]; 12] = [
    b"\r\n",
    b"\n",
    b"\r\n ",
    b" ",
    b"\t",
    b":",
    b"Call-ID: x@y\r\n",
    b"i: other\r\n",
    b"call-id:",
    b"\r\n\r\n",
    b"SIP/2.0",
    b"\0",
];

/// One mutation of `seed`, or random junk.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut message = seed.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let at = rng.below(message.len() as u64 + 1) as usize;
        match rng.below(9) {
            0 => {}
            1 if !message.is_empty() => {
                let at = at.min(message.len() - 1);
                message[at] = rng.below(256) as u8;
            }
            2 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len() as u64) as usize];
                message.splice(at..at, fragment.iter().copied());
            }
            3 => message.truncate(at),
            4 => {
                for byte in message.iter_mut().skip(at).take(40) {
                    if byte.is_ascii_alphabetic() && rng.below(2) == 0 {
                        *byte ^= 0x20;
                    }
                }
            }
            5 => {
                let end = (at + rng.below(64) as usize).min(message.len());
                message.drain(at..end);
            }
            6 => {
                let len = rng.below(200) as usize;
                message = (0..len).map(|_| rng.below(256) as u8).collect();
            }
            7 => {
                // Long runs: blanks, header lines, Call-ID values.
                let byte = b" a\t"[rng.below(3) as usize];
                let len = rng.below(400) as usize;
                message.splice(at..at, std::iter::repeat_n(byte, len));
            }
            _ => {
                let lines = rng.below(120) as usize;
                let start = message
                    .windows(2)
                    .position(|pair| pair == b"\r\n")
                    .map_or(0, |end| end + 2);
                let extra: Vec<u8> = (0..lines)
                    .flat_map(|n| format!("X-{n}: v\r\n").into_bytes())
                    .collect();
                message.splice(start..start, extra);
            }
        }
    }
    message.truncate(MAX_PAYLOAD);
    message
}

/// A disagreement, described for the failure message.
fn describe(message: &[u8], what: String) -> String {
    format!("{what}\n  message: {:?}", String::from_utf8_lossy(message))
}

#[test]
fn the_kernel_and_userspace_agree_on_every_message() {
    if !require_privileges("the_kernel_and_userspace_agree_on_every_message") {
        return;
    }
    let program = Loaded::new(&fixture::stateless(SEED), 0).expect("the fixture");
    let mut rng = Rng::new(SEED);
    let seeds = seeds(&mut rng);
    let started = Instant::now();
    let mut compared = 0;
    let mut disagreements = Vec::new();
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    while compared < MESSAGES && started.elapsed() < BUDGET && disagreements.len() < 5 {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let message = mutate(seed, &mut rng);
        let v6 = rng.below(4) == 0;
        let (destination, slot) = if v6 {
            (IpAddr::V6(VIP_V6), VIP_V6_SLOT)
        } else {
            (IpAddr::V4(VIP), VIP_SLOT)
        };
        let spec = FrameSpec {
            destination,
            ..FrameSpec::default()
        };
        let frame = udp_frame(&spec, &message);
        let payload = SlicePayload(&message);
        let kernel_view = locate::<_, KernelLimits>(&payload, SEED);
        let whole_view = locate::<_, MessageLimits>(&payload, SEED);
        let passed_as = kernel_view.err().map(Reason::from);
        let before = passed_as.map(|reason| program.packets(slot, Action::Passed, reason));
        let output = program.dataplane.test_run(&frame).expect("test run");
        compared += 1;
        *outcomes
            .entry(passed_as.map_or("forwarded", Reason::name).to_owned())
            .or_default() += 1;
        let problem = match (kernel_view, output.action) {
            (Ok(found), XDP_TX) => {
                let owner = u32::from(program.table[table_entry(found.hash, fixture::MAGLEV_SIZE)]);
                let to = &output.frame[..6];
                if to != backend_mac(owner) {
                    Some(format!(
                        "the kernel sent it to {to:02x?}, userspace says slot {owner}"
                    ))
                } else if whole_view.map(|whole| whole.hash) != Ok(found.hash) {
                    Some(format!(
                        "the slow path's limits give {whole_view:?}, the kernel's {found:?}"
                    ))
                } else {
                    None
                }
            }
            (Err(reason), XDP_PASS) => {
                let counted = program.packets(slot, Action::Passed, Reason::from(reason));
                let slow_path_may_place = KERNEL_LIMITS.contains(&reason);
                if Some(counted) != before.map(|count| count + 1) {
                    Some(format!(
                        "userspace says {reason:?}; the kernel counted something else"
                    ))
                } else if whole_view.is_ok() && !slow_path_may_place {
                    Some(format!(
                        "the kernel passed it as {reason:?}, the slow path places it"
                    ))
                } else if let Err(whole) = whole_view
                    && whole != reason
                    && !slow_path_may_place
                {
                    Some(format!(
                        "the kernel passed it as {reason:?}, the slow path says {whole:?}"
                    ))
                } else {
                    None
                }
            }
            (view, action) => Some(format!(
                "userspace says {view:?}, the kernel returned {action}"
            )),
        };
        if let Some(problem) = problem {
            disagreements.push(describe(&message, problem));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(
        compared >= AT_LEAST,
        "only {compared} messages compared within {BUDGET:?}"
    );
    println!(
        "{compared} messages compared in {:.1} s: {outcomes:?}",
        started.elapsed().as_secs_f64()
    );
    // The generator must keep reaching the interesting outcomes, or the run proves little.
    for outcome in [
        "forwarded",
        "not_sip",
        "no_call_id",
        "conflicting_call_ids",
        "truncated",
        "beyond_window",
    ] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) >= 100,
            "{outcome} was rare: {outcomes:?}"
        );
    }
}
