//! Real forwarding through veth pairs: a client namespace sends SIP dialogs to the VIP,
//! the XDP program on the balancer's interface steers them, and backend namespaces holding
//! the VIP on their loopback receive them (direct server return).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use sipxdp::dataplane::Dataplane;
use sipxdp::dataplane::XdpMode;
use sipxdp_common::{
    maps::{BACKEND_IN_SERVICE, Backend, PROTOCOL_UDP, VipConfig, VipKey, ipv4_mapped},
    outcome::{Action, NO_VIP, Reason},
};
use sipxdp_tests::{
    Lab, LabConfig, UdpReceiver,
    delivery::{Received, deliver_windowed},
    fixture, require_privileges,
    sipgen::{Call, Rng},
};

const SIP_PORT: u16 = 5060;

/// The program attached to the balancer of `lab`, steering the IPv4 VIP over the given
/// backends (1-based lab backend numbers) with the given weights.
struct Balancer {
    dataplane: Dataplane,
    key: VipKey,
}

impl Balancer {
    fn attach(lab: &Lab, mode: XdpMode) -> Self {
        let balancer = lab.balancer();
        let interface = balancer.iface().name().to_owned();
        let source_mac = balancer.iface().mac().0;
        let ifindex = balancer
            .iface()
            .iface()
            .ifindex()
            .expect("the balancer's ifindex");
        let backends: Vec<[u8; 6]> = lab
            .backends()
            .iter()
            .map(|host| host.iface().mac().0)
            .collect();
        let key = VipKey {
            address: ipv4_mapped(lab.vip().v4.octets()),
            port: SIP_PORT,
            protocol: PROTOCOL_UDP,
            padding: 0,
        };
        let dataplane = balancer
            .netns()
            .enter_thread(move || {
                let mut dataplane =
                    Dataplane::load(&fixture::load_options()).expect("loading the program");
                dataplane
                    .set_settings(&fixture::stateless(7))
                    .expect("settings");
                for (slot, mac) in backends.iter().enumerate() {
                    dataplane
                        .set_backend(
                            slot as u32,
                            &Backend {
                                destination_mac: *mac,
                                source_mac,
                                ifindex,
                                flags: BACKEND_IN_SERVICE,
                                ..Backend::default()
                            },
                        )
                        .expect("a backend");
                }
                dataplane
                    .set_vip(&key, &VipConfig::default())
                    .expect("the VIP");
                dataplane.attach(&interface, mode, None).expect("attaching");
                dataplane
            })
            .expect("in the balancer's namespace");
        Self { dataplane, key }
    }

    /// Every non-zero outcome counter of the VIP, for failure messages.
    fn outcomes(&self) -> String {
        let mut outcomes = Vec::new();
        for action in Action::ALL {
            for &reason in Reason::ALL {
                for slot in [0, NO_VIP] {
                    let packets = self
                        .dataplane
                        .counter(slot, action, reason)
                        .expect("a counter")
                        .packets;
                    if packets > 0 {
                        outcomes.push(format!("{action:?}/{reason:?}@{slot}: {packets}"));
                    }
                }
            }
        }
        outcomes.join(", ")
    }

    /// Publishes a table over `(backend number, weight)`.
    fn steer_to(&mut self, members: &[(usize, u32)]) {
        let slots: Vec<(u32, u32)> = members
            .iter()
            .map(|&(number, weight)| (number as u32 - 1, weight))
            .collect();
        let table = fixture::maglev_table(&slots, fixture::MAGLEV_SIZE).expect("a table");
        self.dataplane
            .publish_table(&self.key, &table)
            .expect("publishing");
    }
}

/// Sends `messages` from `client` to `vip` and returns what the backends received; on a
/// shortfall, fails with what the balancer counted.
fn deliver(
    lab: &Lab,
    balancer: &Balancer,
    receivers: &[UdpReceiver],
    client: SocketAddr,
    vip: SocketAddr,
    messages: &[Vec<u8>],
) -> Vec<Received> {
    let receivers: Vec<&UdpReceiver> = receivers.iter().collect();
    deliver_windowed(lab.client().netns(), &receivers, client, vip, messages)
        .unwrap_or_else(|error| panic!("{error:#}; the balancer counted {}", balancer.outcomes()))
}

/// One receiver on `vip` in every backend's namespace.
fn receivers_on_backends(lab: &Lab, vip: SocketAddr) -> Vec<UdpReceiver> {
    lab.backends()
        .iter()
        .map(|backend| UdpReceiver::bind(backend.netns(), vip).expect("a receiver"))
        .collect()
}

#[test]
fn dialogs_stick_to_one_backend_and_spread_by_weight() {
    if !require_privileges("dialogs_stick_to_one_backend_and_spread_by_weight") {
        return;
    }
    let lab = Lab::standard(&LabConfig::default()).expect("the lab");
    let vip = SocketAddr::new(IpAddr::V4(lab.vip().v4), SIP_PORT);
    let receivers = receivers_on_backends(&lab, vip);
    let mut balancer = Balancer::attach(&lab, XdpMode::Skb);
    let weights = [(1, 1), (2, 2), (3, 1)];
    balancer.steer_to(&weights);

    const DIALOGS: usize = 10_000;
    const PORTS: u16 = 4;
    let mut rng = Rng::new(0x5ca1ab1e);
    let calls: Vec<Call> = (0..DIALOGS).map(|_| Call::random(&mut rng, 25)).collect();
    let client_ip = IpAddr::V4(lab.client().iface().ipv4());
    let mut received = Vec::new();
    for port in 0..PORTS {
        let client = SocketAddr::new(client_ip, 5100 + port);
        let messages: Vec<Vec<u8>> = calls
            .iter()
            .skip(port as usize)
            .step_by(PORTS as usize)
            .flat_map(|call| {
                [
                    call.invite(client, vip, 200),
                    call.ack(client, vip),
                    call.bye(client, vip),
                ]
            })
            .collect();
        received.extend(deliver(&lab, &balancer, &receivers, client, vip, &messages));
    }
    let sent = 3 * DIALOGS;
    assert_eq!(received.len(), sent);

    let mut backends_of: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut messages_of: BTreeMap<&str, usize> = BTreeMap::new();
    for Received {
        backend,
        peer,
        call_id,
        ..
    } in &received
    {
        assert_eq!(peer.ip(), client_ip, "backends see the client's address");
        assert!(
            (5100..5100 + PORTS).contains(&peer.port()),
            "and its port: {peer}"
        );
        backends_of.entry(call_id).or_default().insert(*backend);
        *messages_of.entry(call_id).or_default() += 1;
    }
    assert_eq!(backends_of.len(), DIALOGS);
    for (call_id, backends) in &backends_of {
        assert_eq!(backends.len(), 1, "dialog {call_id} reached {backends:?}");
        assert_eq!(messages_of[call_id], 3);
    }
    let total_weight: u32 = weights.iter().map(|(_, weight)| weight).sum();
    for &(number, weight) in &weights {
        let dialogs = backends_of
            .values()
            .filter(|backends| backends.contains(&number))
            .count();
        let expected = DIALOGS as f64 * weight as f64 / total_weight as f64;
        let deviation = (dialogs as f64 - expected).abs() / expected;
        println!("backend {number} (weight {weight}): {dialogs} dialogs, expected {expected:.0}");
        assert!(
            deviation <= 0.10,
            "backend {number} got {dialogs}, expected {expected:.0}"
        );
    }
    let forwarded = balancer
        .dataplane
        .counter(0, Action::Forwarded, Reason::CallId)
        .expect("counter")
        .packets;
    assert_eq!(
        forwarded, sent as u64,
        "every message forwarded in XDP and counted once"
    );
}

#[test]
fn changing_the_backend_set_moves_only_the_share_that_must_move() {
    if !require_privileges("changing_the_backend_set_moves_only_the_share_that_must_move") {
        return;
    }
    let lab = Lab::standard(&LabConfig {
        backends: 4,
        ..LabConfig::default()
    })
    .expect("the lab");
    // Native XDP on a veth transmits into its peer's NAPI instance, which exists only
    // while the peer has an XDP program too: give the switch's end a program without VIPs,
    // which passes everything.
    let switch_end = lab
        .veths()
        .iter()
        .find(|veth| veth.a().name() == lab.balancer().iface().name())
        .expect("the balancer's veth")
        .b()
        .name()
        .to_owned();
    // The client's veth leaves the UDP checksum to "hardware" (CHECKSUM_PARTIAL); native
    // XDP loses that mark, and the backends would see a half-computed checksum. A real
    // NIC puts the full checksum on the wire, so compute it in software as one would.
    let client = lab.client();
    client
        .netns()
        .run(&["ethtool", "-K", client.iface().name(), "tx", "off"])
        .expect("checksums in software on the client");
    let _peer_program = lab
        .switch()
        .enter_thread(move || {
            let mut dataplane = Dataplane::load(&fixture::load_options()).expect("loading");
            dataplane
                .attach(&switch_end, XdpMode::Driver, None)
                .expect("attaching to the switch's end");
            dataplane
        })
        .expect("in the switch's namespace");
    let vip = SocketAddr::new(IpAddr::V4(lab.vip().v4), SIP_PORT);
    let receivers = receivers_on_backends(&lab, vip);
    let mut balancer = Balancer::attach(&lab, XdpMode::Driver);
    let client = SocketAddr::new(IpAddr::V4(lab.client().iface().ipv4()), 5200);
    let mut rng = Rng::new(42);
    let calls: Vec<Call> = (0..3_000).map(|_| Call::random(&mut rng, 25)).collect();

    let mut route = |members: &[(usize, u32)]| -> BTreeMap<String, usize> {
        balancer.steer_to(members);
        let messages: Vec<Vec<u8>> = calls.iter().map(|call| call.bye(client, vip)).collect();
        deliver(&lab, &balancer, &receivers, client, vip, &messages)
            .into_iter()
            .map(|message| (message.call_id, message.backend))
            .collect()
    };
    let three = route(&[(1, 1), (2, 1), (3, 1)]);
    let four = route(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
    let back_to_three = route(&[(1, 1), (2, 1), (3, 1)]);
    let without_two = route(&[(1, 1), (3, 1)]);

    let moved = |from: &BTreeMap<String, usize>, to: &BTreeMap<String, usize>| {
        from.iter()
            .filter(|(call_id, backend)| to[*call_id] != **backend)
            .count() as f64
            / from.len() as f64
    };
    // Adding a fourth backend moves about a quarter of the calls, all of them to it.
    let added = moved(&three, &four);
    println!("adding a backend moved {:.1}% of calls", added * 100.0);
    assert!((0.20..=0.30).contains(&added), "{added}");
    // Maglev trades a little extra movement for even spread: almost every moved call went
    // to the new backend.
    let moved_elsewhere = three
        .iter()
        .filter(|(call_id, backend)| four[*call_id] != **backend && four[*call_id] != 4)
        .count() as f64
        / three.len() as f64;
    println!(
        "adding a backend moved {:.1}% of calls between the old backends",
        moved_elsewhere * 100.0
    );
    assert!(moved_elsewhere <= 0.02, "{moved_elsewhere}");
    assert_eq!(
        three, back_to_three,
        "removing it again restores every call"
    );
    // Removing one of three moves its third, and nothing else.
    let removed = moved(&three, &without_two);
    println!("removing a backend moved {:.1}% of calls", removed * 100.0);
    assert!((0.28..=0.39).contains(&removed), "{removed}");
    let others_moved = three
        .iter()
        .filter(|(call_id, backend)| **backend != 2 && without_two[*call_id] != **backend)
        .count() as f64
        / three.len() as f64;
    println!(
        "removing a backend moved {:.1}% of the other backends' calls",
        others_moved * 100.0
    );
    assert!(
        others_moved <= 0.02,
        "{others_moved} of the calls on the remaining backends moved"
    );
}
