//! The real `sipxdp` binary with IPv4 and IPv6 VIPs over veth: INVITEs of 3,000 to 8,000
//! bytes, which the client's IP layer splits into fragments, each reach one backend,
//! where they reassemble byte for byte, with the client's address.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use sipxdp_tests::{
    daemon_lab::{DaemonLab, counted},
    require_privileges,
    sipgen::{Call, Rng},
};

const CALLS: usize = 60;

#[test]
fn large_invites_are_fragmented_and_reassembled_at_one_backend() {
    if !require_privileges("large_invites_are_fragmented_and_reassembled_at_one_backend") {
        return;
    }
    let mut lab = DaemonLab::start(&[1, 1, 1]).expect("the lab");
    let mut rng = Rng::new(0xf4a9);
    for (vip, port) in [(lab.vip(), 5200), (lab.vip_v6(), 5201)] {
        let client = SocketAddr::new(lab.lab().client().iface().ip(vip.is_ipv6()), port);
        let calls: Vec<Call> = (0..CALLS).map(|_| Call::random(&mut rng, 20)).collect();
        let mut sent: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut messages = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            // 3,000 to 8,000 bytes of SDP: three to six fragments each.
            let invite = call.invite(client, vip, 3_000 + index * 5_000 / CALLS);
            let bye = call.bye(client, vip);
            sent.entry(call.call_id.clone())
                .or_default()
                .extend([invite.clone(), bye.clone()]);
            messages.extend([invite, bye]);
        }
        let received = lab.send(client, vip, &messages).expect("delivery");
        let mut backends: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for message in &received {
            assert_eq!(message.peer, client, "backends see the client");
            let expected = sent.get(&message.call_id).expect("a Call-ID that was sent");
            assert!(
                expected.contains(&message.payload),
                "{vip}: a message of {} arrived altered ({} bytes)",
                message.call_id,
                message.payload.len()
            );
            backends
                .entry(message.call_id.as_str())
                .or_default()
                .insert(message.backend);
        }
        assert_eq!(received.len(), messages.len());
        for (call_id, on) in &backends {
            assert_eq!(on.len(), 1, "{vip}: call {call_id} reached backends {on:?}");
        }
        let used: BTreeSet<usize> = backends.values().flatten().copied().collect();
        assert_eq!(used.len(), 3, "{vip}: the calls spread over every backend");
    }
    let (status, counters) = lab.stop_daemon().expect("stopping");
    assert!(status.success(), "{status}");
    for name in ["lab", "lab6"] {
        // Every INVITE was fragmented: its first fragment placed by Call-ID, the later
        // ones following it, none left to the stack.
        let later = counted(&counters, name, "forwarded", "fragment").unwrap_or(0);
        assert!(
            later >= 2 * CALLS as u64,
            "{name}: {later} later fragments\n{counters}"
        );
    }
    let unplaced = counters.lines().any(|line| {
        line.starts_with("(no VIP)") && line.split_whitespace().any(|word| word == "ip_fragment")
    });
    assert!(!unplaced, "fragments left to the stack:\n{counters}");
}
