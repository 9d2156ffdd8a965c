//! The demo's main job as a test: sipp calls through the real `sipxdp run` to three
//! Kamailio backends weighted 1:2:1. Every call completes, every call's requests reach
//! exactly one Kamailio (by Kamailio's own log of Call-IDs), and the calls are spread by
//! weight within ±10% of each backend's share.

use sipxdp_tests::{daemon_lab::DaemonLab, require_command, require_privileges};

const WEIGHTS: [u32; 3] = [1, 2, 1];
/// Enough calls for the shares to hold: the smallest share (25%) has a standard deviation
/// of about 0.8 points over 3,000 random Call-IDs, a third of the 2.5 points allowed. The
/// Call-IDs are fixed (`N-TAG@client`) and the hash seed is the default, so a run places
/// the same calls every time.
const CALLS: u32 = 3_000;
/// 10 s of calls.
const RATE: u32 = 300;

#[test]
fn sipp_calls_complete_stay_on_one_kamailio_and_follow_the_weights() {
    let name = "sipp_calls_complete_stay_on_one_kamailio_and_follow_the_weights";
    if !require_privileges(name) || !require_command(name, "sipp") {
        return;
    }
    let lab = DaemonLab::start_with_kamailio(&WEIGHTS).expect("the lab");
    let sipp = lab.start_sipp("weights", CALLS, RATE).expect("sipp");
    let (report, spread) = lab.finish_sipp("weights", sipp).expect("sipp's report");

    assert_eq!(
        (report.created, report.successful, report.failed),
        (u64::from(CALLS), u64::from(CALLS), 0),
        "every call completes"
    );
    assert_eq!(spread.calls, CALLS as usize, "Kamailio logged every call");
    assert!(
        spread.requests >= 3 * CALLS as usize,
        "Kamailio logged INVITE, ACK and BYE of every call: {} requests",
        spread.requests
    );
    assert!(
        spread.split.is_empty(),
        "calls split across backends: {:?}",
        &spread.split[..spread.split.len().min(5)]
    );
    let total: u32 = WEIGHTS.iter().sum();
    for (number, weight) in (1..).zip(WEIGHTS) {
        let share = spread.calls_of.get(&number).copied().unwrap_or(0) as f64 / f64::from(CALLS);
        let expected = f64::from(weight) / f64::from(total);
        assert!(
            (share - expected).abs() <= 0.1 * expected,
            "backend {number} took {:.1}% of the calls, weight share {:.1}% (±10%)",
            100.0 * share,
            100.0 * expected
        );
    }
}
