//! Which backend a Call-ID goes to: the kernel's choice, computed in userspace.
//!
//! The same hash (`sipxdp_common::hash`, seeded with `daemon.hash_seed`), the same table
//! (`plan`) and the same table indexing (`sipxdp_common::maps::table_entry`) as the XDP
//! program, so an operator can ask where a call lands before or after sending it.

use sipxdp_common::hash::xxh64_bytes;

use crate::{
    config::{Protocol, VipConfig},
    plan::{BackendId, Plan, Slots, table_slot},
};

/// `Err` with the reason for a TCP VIP: it places each connection by its addresses and
/// ports, so a Call-ID does not say where a message to it goes.
pub fn placed_by_call_id(vip: &VipConfig) -> Result<(), String> {
    match vip.protocol {
        Protocol::Udp => Ok(()),
        Protocol::Tcp => Err(format!(
            "VIP {} is a TCP VIP: it places each connection by its addresses and ports, \
             not calls by their Call-ID",
            vip.name
        )),
    }
}

/// The backend of VIP `vip_name` that a message with Call-ID `call_id` is steered to under
/// `plan`, or `None` when the VIP is unknown or has no backend in service. `call_id` is
/// the header's value; blanks around it are ignored as the kernel ignores them.
pub fn backend_for<'a>(
    plan: &Plan,
    slots: &'a Slots,
    vip_name: &str,
    call_id: &[u8],
    seed: u64,
) -> Option<&'a BackendId> {
    backend_by_hash(
        plan,
        slots,
        vip_name,
        xxh64_bytes(call_id.trim_ascii(), seed),
    )
}

/// The backend of VIP `vip_name` whose table entry `hash` (a Call-ID's hash) selects
/// under `plan`, as in [`backend_for`].
pub fn backend_by_hash<'a>(
    plan: &Plan,
    slots: &'a Slots,
    vip_name: &str,
    hash: u64,
) -> Option<&'a BackendId> {
    let vip = plan.vips.iter().find(|vip| vip.name == vip_name)?;
    slots.backend_at(table_slot(&vip.table, hash)?)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use sipxdp_common::{
        callid::{MessageLimits, locate},
        payload::SlicePayload,
    };

    use super::*;
    use crate::{
        plan::{Health, plan},
        test_support::reachable,
    };

    fn test_plan(slots: &mut Slots) -> Plan {
        let text = "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"edge\"\n\
                    address = \"198.51.100.100\"\ntable_size = 251\n\
                    [[vips.backends]]\naddress = \"198.51.100.21\"\n\
                    [[vips.backends]]\naddress = \"198.51.100.22\"\n\
                    [[vips.backends]]\naddress = \"198.51.100.23\"\n";
        let config = crate::config::parse(text, "test.toml", &crate::test_support::Machine)
            .expect("a valid configuration");
        plan(&config, slots, |_| reachable(Health::Up)).expect("a plan")
    }

    #[test]
    fn the_hash_of_a_located_call_id_equals_the_hash_of_its_value() {
        let message = b"BYE sip:bob@example.com SIP/2.0\r\nCall-ID:  a84b4c76e66710@pc33 \r\n\r\n";
        let located = locate::<_, MessageLimits>(&SlicePayload(message), 7).expect("found");
        assert_eq!(located.hash, xxh64_bytes(b"a84b4c76e66710@pc33", 7));
    }

    #[test]
    fn every_backend_gets_calls_and_blanks_do_not_matter() {
        let mut slots = Slots::default();
        let plan = test_plan(&mut slots);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..300 {
            let call_id = format!("call-{n}@client.example.com");
            let backend =
                backend_for(&plan, &slots, "edge", call_id.as_bytes(), 0).expect("a backend");
            let padded = format!(" \t{call_id} ");
            assert_eq!(
                backend_for(&plan, &slots, "edge", padded.as_bytes(), 0),
                Some(backend)
            );
            seen.insert(backend.address);
        }
        let expected: std::collections::BTreeSet<SocketAddr> = [21, 22, 23]
            .into_iter()
            .map(|host| {
                format!("198.51.100.{host}:5060")
                    .parse()
                    .expect("an address")
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn only_udp_vips_place_calls_by_call_id() {
        let text = "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"trunk\"\n\
                    address = \"198.51.100.100\"\nprotocol = \"tcp\"\n\
                    [[vips.backends]]\naddress = \"198.51.100.21\"\n";
        let config = crate::config::parse(text, "test.toml", &crate::test_support::Machine)
            .expect("a valid configuration");
        let error = placed_by_call_id(&config.vips[0]).expect_err("a TCP VIP");
        assert!(error.starts_with("VIP trunk is a TCP VIP"), "{error}");
        let udp = VipConfig {
            protocol: Protocol::Udp,
            ..config.vips[0].clone()
        };
        assert_eq!(placed_by_call_id(&udp), Ok(()));
    }

    #[test]
    fn an_unknown_vip_has_no_backend() {
        let mut slots = Slots::default();
        let plan = test_plan(&mut slots);
        assert_eq!(backend_for(&plan, &slots, "core", b"x", 0), None);
    }
}
