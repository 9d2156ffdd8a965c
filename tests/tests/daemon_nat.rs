//! The real `sipxdp` binary in NAT mode over veth: backends on their own routed segment
//! behind the balancer, listening on another port than the VIP's. Real UDP SIP dialogs
//! from the client reach one backend each, which sees the client's address, and the
//! backends' answers reach the client from the VIP, also when both are IP-fragmented.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use sipxdp_tests::{
    UdpReceiver,
    daemon_lab::{DaemonLab, Mode, counted, forwarded},
    delivery::call_id,
    require_privileges,
    sipgen::{Call, Rng},
};

const CALLS: usize = 100;
/// An SDP body that makes an INVITE and its answer about three 1,500-byte IP packets.
const LARGE_BODY: usize = 4000;

#[test]
fn nat_dialogs_reach_one_backend_and_are_answered_from_the_vip() {
    if !require_privileges("nat_dialogs_reach_one_backend_and_are_answered_from_the_vip") {
        return;
    }
    let mut lab = DaemonLab::start_in(Mode::Nat, &[1, 1, 1]).expect("the lab");
    let mut rng = Rng::new(0x4a7);
    for (vip, port) in [(lab.vip(), 5300), (lab.vip_v6(), 5301)] {
        let v6 = vip.is_ipv6();
        let client = SocketAddr::new(lab.lab().client().iface().ip(v6), port);
        let phone = UdpReceiver::bind(lab.lab().client().netns(), client).expect("a phone");
        let calls: Vec<Call> = (0..CALLS).map(|_| Call::random(&mut rng, 20)).collect();
        let mut backend_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for request in [
            |call: &Call, client, vip| call.invite(client, vip, 300),
            // Fragmented both ways: the backend's answer carries as large an SDP body.
            |call: &Call, client, vip| call.invite(client, vip, LARGE_BODY),
            |call: &Call, client, vip| call.bye(client, vip),
        ] {
            for call in &calls {
                phone
                    .send_to(&request(call, client, vip), vip)
                    .expect("sending");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let received = lab.collect(v6, CALLS, deadline).expect("collecting");
            assert_eq!(received.len(), CALLS, "{vip}: {}", lab.daemon_log());
            for message in &received {
                assert_eq!(message.peer, client, "{vip}: backends see the client");
                backend_of
                    .entry(message.call_id.clone())
                    .or_default()
                    .insert(message.backend);
            }
            let answers = phone.collect(CALLS, deadline).expect("answers");
            assert_eq!(answers.len(), CALLS, "{vip}: every request answered");
            for answer in &answers {
                assert_eq!(answer.peer, vip, "{vip}: answers come from the VIP");
                assert!(answer.payload.starts_with(b"SIP/2.0 200 OK\r\n"));
                assert!(backend_of.contains_key(&call_id(&answer.payload)));
            }
        }
        assert_eq!(backend_of.len(), CALLS);
        for (call_id, backends) in &backend_of {
            assert_eq!(backends.len(), 1, "{vip}: call {call_id} on {backends:?}");
        }
        let used: BTreeSet<usize> = backend_of.values().flatten().copied().collect();
        assert_eq!(used.len(), 3, "{vip}: every backend takes calls");
    }
    let (status, counters) = lab.stop_daemon().expect("stopping");
    assert!(status.success(), "{status}");
    for name in ["lab", "lab6"] {
        assert_eq!(forwarded(&counters, name), 3 * CALLS as u64, "{counters}");
        // Answers to a client the balancer has no neighbour entry for yet go through
        // its stack, rewritten, which resolves the neighbour; all others leave in XDP.
        let in_xdp = counted(&counters, name, "forwarded", "nat_return").unwrap_or(0);
        let by_stack = counted(&counters, name, "passed", "no_neighbour").unwrap_or(0);
        assert_eq!(in_xdp + by_stack, 3 * CALLS as u64, "{counters}");
        assert!(by_stack <= 2, "{counters}");
        // At least two later fragments of each large INVITE and of each answer.
        let later = counted(&counters, name, "forwarded", "fragment").unwrap_or(0);
        assert!(later >= 4 * CALLS as u64, "{counters}");
    }
}
