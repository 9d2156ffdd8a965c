//! SIP over TCP in the XDP program (`BPF_PROG_TEST_RUN`): a connection's first segment goes
//! where the Maglev entry of its connection hash says, computed here with another crate's
//! XXH64 over the documented bytes; every later segment follows the connection even after
//! the table changes, while new connections follow the new table; what cannot be a
//! segment to a TCP VIP is passed untouched with its reason.

use std::net::{IpAddr, SocketAddr};

use sipxdp_common::{
    maps::{BACKEND_IN_SERVICE, Backend, PlacementKey, Settings},
    outcome::{Action, NO_VIP, Reason},
};
use sipxdp_tests::{
    fixture::{
        self, Loaded, MAGLEV_SIZE, TCP_VIP_SLOT, TCP_VIP_V6_SLOT, XDP_PASS, XDP_TX, backend_mac,
        connection_owner, maglev_table, tcp_vip_key,
    },
    frames::{BALANCER_MAC, CLIENT, CLIENT_V6, TcpSegment, VIP, VIP_V6},
    require_privileges,
};

const SEED: u64 = 0x0007_c9c0;
const ONE_HOUR_NS: u64 = 3_600_000_000_000;
/// The TCP VIPs' port; the fixture's UDP VIPs are on 5060.
const TCP_PORT: u16 = 5061;
const CONNECTIONS: usize = 600;

/// The fixture program with a TCP VIP per family over its three backends.
struct Tcp {
    program: Loaded,
}

/// The TCP VIP of one family: its address and slot.
#[derive(Clone, Copy)]
struct Family {
    vip: SocketAddr,
    slot: u32,
    client: IpAddr,
}

const FAMILIES: [Family; 2] = [
    Family {
        vip: SocketAddr::new(IpAddr::V4(VIP), TCP_PORT),
        slot: TCP_VIP_SLOT,
        client: IpAddr::V4(CLIENT),
    },
    Family {
        vip: SocketAddr::new(IpAddr::V6(VIP_V6), TCP_PORT),
        slot: TCP_VIP_V6_SLOT,
        client: IpAddr::V6(CLIENT_V6),
    },
];

impl Family {
    /// The client ends of `count` connections: ports counting up from 20,000, and
    /// every third connection from another address of the client's network.
    fn clients(&self, count: usize, first: u16) -> Vec<SocketAddr> {
        (0..count)
            .map(|index| {
                let address = match (self.client, index % 3) {
                    (address, 0) => address,
                    (IpAddr::V4(v4), _) => {
                        let [a, b, c, _] = v4.octets();
                        IpAddr::from([a, b, c, 50 + (index % 3) as u8])
                    }
                    (IpAddr::V6(v6), _) => {
                        let mut segments = v6.segments();
                        segments[7] = 0x50 + (index % 3) as u16;
                        IpAddr::from(segments)
                    }
                };
                SocketAddr::new(address, first + index as u16)
            })
            .collect()
    }
}

impl Tcp {
    fn new() -> Self {
        let settings = Settings {
            hash_seed: SEED,
            connection_idle_ns: ONE_HOUR_NS,
            ..Settings::default()
        };
        let mut program = Loaded::new(&settings, 0).expect("the fixture");
        fixture::add_tcp_vips(&mut program.dataplane, TCP_PORT, &program.table)
            .expect("the TCP VIPs");
        Self { program }
    }

    /// Runs `segment` through the program and returns the backend slot it left for,
    /// checking that only the MACs changed.
    fn send(&self, segment: &TcpSegment) -> u32 {
        let frame = segment.frame();
        let output = self.program.dataplane.test_run(&frame).expect("test run");
        assert_eq!(output.action, XDP_TX, "{segment:?}");
        assert_eq!(output.frame[6..12], BALANCER_MAC);
        assert_eq!(output.frame[12..], frame[12..], "only the MACs change");
        (0..8)
            .find(|&slot| output.frame[..6] == backend_mac(slot))
            .expect("the MAC of a known backend")
    }

    fn syns(&self, family: &Family, clients: &[SocketAddr]) -> Vec<u32> {
        clients
            .iter()
            .map(|&client| self.send(&TcpSegment::syn(client, family.vip)))
            .collect()
    }

    fn data(&self, family: &Family, clients: &[SocketAddr]) -> Vec<u32> {
        clients
            .iter()
            .map(|&client| {
                self.send(&TcpSegment::data(
                    client,
                    family.vip,
                    b"OPTIONS sip:vip SIP/2.0\r\n",
                ))
            })
            .collect()
    }

    /// Puts a backend in slot `slot` with `incarnation`, in service or not.
    fn set_backend(&mut self, slot: u32, in_service: bool, incarnation: u16) {
        let backend = Backend {
            flags: if in_service { BACKEND_IN_SERVICE } else { 0 },
            incarnation,
            ..fixture::loopback_backend(slot)
        };
        self.program
            .dataplane
            .set_backend(slot, &backend)
            .expect("writing a backend");
    }

    /// Publishes a table over `slots` (weight 1 each) for both TCP VIPs and returns it.
    fn publish(&mut self, slots: &[u32]) -> Vec<u16> {
        let members: Vec<(u32, u32)> = slots.iter().map(|&slot| (slot, 1)).collect();
        let table = maglev_table(&members, MAGLEV_SIZE).expect("a table");
        for family in FAMILIES {
            self.program
                .dataplane
                .publish_table(&tcp_vip_key(family.vip.ip(), TCP_PORT), &table)
                .expect("publishing");
        }
        table
    }

    fn counted(&self, family: &Family, reason: Reason) -> u64 {
        self.program.packets(family.slot, Action::Forwarded, reason)
    }

    /// Sends `frame` and checks that it is passed untouched, counted under `reason` for
    /// the VIP slot `slot`.
    fn assert_passed(&self, frame: &[u8], slot: u32, reason: Reason) {
        let before = self.program.packets(slot, Action::Passed, reason);
        let output = self.program.dataplane.test_run(frame).expect("test run");
        assert_eq!(output.action, XDP_PASS, "{reason:?}");
        assert_eq!(output.frame, frame, "a passed frame stays untouched");
        assert_eq!(
            self.program.packets(slot, Action::Passed, reason),
            before + 1,
            "counted as {reason:?}"
        );
    }
}

fn table_choices(table: &[u16], family: &Family, clients: &[SocketAddr]) -> Vec<u32> {
    clients
        .iter()
        .map(|&client| connection_owner(table, client, family.vip, SEED))
        .collect()
}

#[test]
fn a_syn_goes_to_the_backend_of_its_connection_hash() {
    if !require_privileges("a_syn_goes_to_the_backend_of_its_connection_hash") {
        return;
    }
    let tcp = Tcp::new();
    for family in FAMILIES {
        let clients = family.clients(CONNECTIONS, 20_000);
        let placed = tcp.syns(&family, &clients);
        assert_eq!(placed, table_choices(&tcp.program.table, &family, &clients));
        for slot in 0..fixture::BACKENDS {
            assert!(placed.contains(&slot), "backend {slot} takes connections");
        }
        assert_eq!(
            tcp.counted(&family, Reason::TcpConnection),
            CONNECTIONS as u64
        );
        // The program remembers each connection under its hash, computed here by the
        // shared code, which the placement above checked against the reference.
        let client = clients[0];
        let connection = sipxdp_common::connection::Connection {
            source: sipxdp::plan::address_bytes(client.ip()),
            destination: sipxdp::plan::address_bytes(family.vip.ip()),
            source_port: client.port(),
            destination_port: family.vip.port(),
        };
        let remembered = tcp
            .program
            .dataplane
            .connection(&PlacementKey {
                hash: connection.hash(SEED),
                vip_slot: family.slot,
                padding: 0,
            })
            .expect("reading CONNECTIONS")
            .expect("the connection is remembered");
        assert_eq!(remembered.backend_slot, placed[0]);
    }
}

#[test]
fn connections_keep_their_backend_when_one_is_added() {
    if !require_privileges("connections_keep_their_backend_when_one_is_added") {
        return;
    }
    let mut tcp = Tcp::new();
    let before: Vec<(Vec<SocketAddr>, Vec<u32>)> = FAMILIES
        .iter()
        .map(|family| {
            let clients = family.clients(CONNECTIONS, 20_000);
            let placed = tcp.syns(family, &clients);
            (clients, placed)
        })
        .collect();

    tcp.set_backend(3, true, 1);
    let table = tcp.publish(&[0, 1, 2, 3]);
    for (family, (clients, placed)) in FAMILIES.iter().zip(&before) {
        let would_move = table_choices(&table, family, clients)
            .iter()
            .zip(placed)
            .filter(|(now, then)| now != then)
            .count();
        assert!(would_move > 50, "only {would_move} connections would move");
        assert_eq!(
            &tcp.data(family, clients),
            placed,
            "no connection changes backend"
        );
        assert_eq!(
            tcp.counted(family, Reason::TcpEstablished),
            CONNECTIONS as u64
        );

        let fresh = family.clients(CONNECTIONS, 40_000);
        let placed = tcp.syns(family, &fresh);
        assert_eq!(
            placed,
            table_choices(&table, family, &fresh),
            "new connections follow the new table"
        );
        assert!(placed.contains(&3), "the new backend takes new connections");
    }
}

#[test]
fn connections_are_placed_again_when_their_backend_cannot_keep_them() {
    if !require_privileges("connections_are_placed_again_when_their_backend_cannot_keep_them") {
        return;
    }
    let mut tcp = Tcp::new();
    let family = FAMILIES[0];
    let clients = family.clients(CONNECTIONS, 20_000);
    let before = tcp.syns(&family, &clients);
    // Slot 1 goes down; slot 2 is handed to another backend (a new incarnation).
    tcp.set_backend(1, false, 0);
    tcp.set_backend(2, true, 1);
    let table = tcp.publish(&[0, 2]);
    let moved: Vec<SocketAddr> = clients
        .iter()
        .zip(&before)
        .filter(|(_, slot)| **slot != 0)
        .map(|(client, _)| *client)
        .collect();
    let kept: Vec<SocketAddr> = clients
        .iter()
        .zip(&before)
        .filter(|(_, slot)| **slot == 0)
        .map(|(client, _)| *client)
        .collect();
    assert!(!moved.is_empty() && !kept.is_empty());
    let placed_before = tcp.counted(&family, Reason::TcpConnection);
    let expected = table_choices(&table, &family, &moved);
    assert_eq!(tcp.data(&family, &moved), expected);
    assert!(!expected.contains(&1));
    assert_eq!(
        tcp.counted(&family, Reason::TcpConnection),
        placed_before + moved.len() as u64,
        "each was placed by the table, not by its connection"
    );
    assert_eq!(tcp.data(&family, &kept), vec![0; kept.len()]);
}

#[test]
fn tcp_to_a_udp_vip_port_is_not_for_a_vip() {
    if !require_privileges("tcp_to_a_udp_vip_port_is_not_for_a_vip") {
        return;
    }
    let tcp = Tcp::new();
    for family in FAMILIES {
        let udp_vip = SocketAddr::new(family.vip.ip(), 5060);
        let client = SocketAddr::new(family.client, 20_000);
        tcp.assert_passed(
            &TcpSegment::syn(client, udp_vip).frame(),
            NO_VIP,
            Reason::NotVip,
        );
    }
}

#[test]
fn malformed_tcp_headers_are_passed() {
    if !require_privileges("malformed_tcp_headers_are_passed") {
        return;
    }
    let tcp = Tcp::new();
    for family in FAMILIES {
        let client = SocketAddr::new(family.client, 20_000);
        let syn = TcpSegment::syn(client, family.vip).frame();
        let l4 = if family.vip.is_ipv4() {
            14 + 20
        } else {
            14 + 40
        };
        let with_offset = |words: u8| {
            let mut frame = syn.clone();
            frame[l4 + 12] = words << 4;
            frame
        };
        // A data offset below the fixed header, and one beyond the segment (24 bytes).
        tcp.assert_passed(&with_offset(4), NO_VIP, Reason::Malformed);
        tcp.assert_passed(&with_offset(7), NO_VIP, Reason::Malformed);
        // An IP packet whose payload is too short for a TCP header, though the frame
        // holds one.
        let mut short = syn.clone();
        if family.vip.is_ipv4() {
            short[16..18].copy_from_slice(&(20u16 + 19).to_be_bytes());
        } else {
            short[18..20].copy_from_slice(&19u16.to_be_bytes());
        }
        tcp.assert_passed(&short, NO_VIP, Reason::Malformed);
        // A frame cut inside the TCP header.
        tcp.assert_passed(&syn[..l4 + 10], NO_VIP, Reason::Malformed);
        // Unchanged, its data offset (6 words, the options end the segment) is accepted.
        assert_eq!(tcp.send(&TcpSegment::syn(client, family.vip)), {
            connection_owner(&tcp.program.table, client, family.vip, SEED)
        });
    }
    // A fragmented TCP segment goes to the stack, which reassembles it.
    let client = SocketAddr::new(IpAddr::V4(CLIENT), 20_000);
    let mut fragment = TcpSegment::syn(client, FAMILIES[0].vip).frame();
    fragment[20] = 0x20;
    tcp.assert_passed(&fragment, NO_VIP, Reason::IpFragment);
}
