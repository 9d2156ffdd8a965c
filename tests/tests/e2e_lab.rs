//! The end-to-end benchmark's lab carries what it measures: the XDP generator's messages
//! go through `sipxdp run` in native mode on veth (a devmap redirect to each backend's
//! link) and every one reaches the backends' sinks, spread by Call-ID. A lab that lost
//! or misrouted traffic would make every figure of `sipxdp-bench --e2e` wrong.

use std::time::{Duration, Instant};

use sipxdp_tests::{
    e2e_lab::{BACKENDS, E2eLab},
    require_privileges,
    sipgen::{Call, Rng},
    wait::wait_until,
};

const MESSAGES: u32 = 30_000;

#[test]
fn generated_messages_all_reach_the_backends_spread_by_call_id() {
    if !require_privileges("generated_messages_all_reach_the_backends_spread_by_call_id") {
        return;
    }
    let mut lab = E2eLab::start().unwrap();
    lab.start_sipxdp().unwrap();
    let bye = Call::random(&mut Rng::new(7), 0).bye(lab.client_address(), lab.vip());
    let generator = lab.generator(&bye).unwrap();
    let ifindex = lab.client_ifindex();
    lab.client()
        .enter_thread(|| generator.send(ifindex, MESSAGES))
        .unwrap()
        .unwrap();
    let arrived = wait_until(Instant::now() + Duration::from_secs(10), || {
        lab.received().unwrap() >= u64::from(MESSAGES)
    });
    assert!(arrived, "{} of {MESSAGES} arrived", lab.received().unwrap());
    assert_eq!(lab.received().unwrap(), u64::from(MESSAGES));
    // Random Call-IDs and equal weights: a third each, within ±10% of it.
    let share = f64::from(MESSAGES) / BACKENDS as f64;
    for number in 0..BACKENDS {
        let got = lab.received_by(number).unwrap() as f64;
        assert!(
            (got - share).abs() <= 0.1 * share,
            "backend {number} got {got} of {MESSAGES}"
        );
    }
    lab.stop_sipxdp().unwrap();
}
