//! The map writes that take the program from one [`Plan`] to the next, in an order that
//! leaves every packet between two of them a sound state to be placed by.
//!
//! The program reads several maps per packet, and a plan change is many writes. The
//! order keeps two promises at every step:
//! - a Maglev table names only backends in service: a backend enters service before the
//!   table that names it is published, and leaves it only after a table without it is
//!   (otherwise a new call, or a remembered call re-picked because its backend went
//!   down, would find the old table's backend out of service and go to the slow path);
//! - a NAT backend's answers are rewritten to the VIP from its first call on: its
//!   `NAT_RETURNS` entry is written before the table that sends it calls, and removed
//!   only after the last table that did is gone.

use sipxdp_common::{
    flood::FloodConfig as FloodEntry,
    maps::{BACKEND_IN_SERVICE, Backend, NatReturn, VipConfig as VipMapEntry, VipKey},
};

use super::Plan;

/// One write to the program's maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapWrite<'a> {
    /// `BACKENDS[slot]`; a freed slot gets the default entry (out of service).
    Backend {
        slot: u32,
        entry: Backend,
    },
    /// `FLOOD[slot]` of a VIP.
    Flood {
        slot: u32,
        entry: &'a FloodEntry,
    },
    /// A VIP's entry (without its table).
    Vip {
        key: &'a VipKey,
        entry: &'a VipMapEntry,
    },
    /// A VIP's Maglev table, published atomically.
    Table {
        key: &'a VipKey,
        table: &'a [u16],
    },
    RemoveVip {
        key: &'a VipKey,
    },
    /// A NAT backend's return entry, or its removal (`None`).
    NatReturn {
        key: &'a VipKey,
        entry: Option<&'a NatReturn>,
    },
}

/// The writes that turn maps holding `previous` into maps holding `next`, in order.
pub fn ordered<'a>(previous: &'a Plan, next: &'a Plan) -> Vec<MapWrite<'a>> {
    let mut writes = Vec::new();
    for (key, entry) in &next.nat_returns {
        if previous.nat_returns.get(key) != Some(entry) {
            writes.push(MapWrite::NatReturn {
                key,
                entry: Some(entry),
            });
        }
    }
    // The backends whose entry changes, those that are (or stay) in service or the others.
    let changed_backends = |in_service: bool| {
        next.backends
            .iter()
            .filter(|(slot, entry)| previous.backends.get(slot) != Some(entry))
            .filter(move |(_, entry)| (entry.flags & BACKEND_IN_SERVICE != 0) == in_service)
            .map(|(&slot, &entry)| MapWrite::Backend { slot, entry })
    };
    writes.extend(changed_backends(true));
    for vip in &next.vips {
        let before = previous.vips.iter().find(|old| old.key == vip.key);
        // Before the entry: its flags may turn the protection on.
        if before.map(|old| &old.flood) != Some(&vip.flood) {
            writes.push(MapWrite::Flood {
                slot: vip.entry.slot,
                entry: &vip.flood,
            });
        }
        if before.map(|old| &old.entry) != Some(&vip.entry) {
            writes.push(MapWrite::Vip {
                key: &vip.key,
                entry: &vip.entry,
            });
        }
        if before.map(|old| &old.table) != Some(&vip.table) {
            writes.push(MapWrite::Table {
                key: &vip.key,
                table: &vip.table,
            });
        }
    }
    for old in &previous.vips {
        if !next.vips.iter().any(|vip| vip.key == old.key) {
            writes.push(MapWrite::RemoveVip { key: &old.key });
        }
    }
    writes.extend(changed_backends(false));
    for &slot in previous.backends.keys() {
        if !next.backends.contains_key(&slot) {
            writes.push(MapWrite::Backend {
                slot,
                entry: Backend::default(),
            });
        }
    }
    for key in previous.nat_returns.keys() {
        if !next.nat_returns.contains_key(key) {
            writes.push(MapWrite::NatReturn { key, entry: None });
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::parse,
        plan::{BackendId, Health, Slots, plan},
        test_support::{Machine, reachable},
    };

    /// A VIP in `mode` over backends .21, .22 and .23, where `down` is down.
    fn plan_with(slots: &mut Slots, mode: &str, down: Option<&str>) -> Plan {
        let mut text = format!(
            "[[interfaces]]\nname = \"eth0\"\n[[vips]]\nname = \"v\"\nmode = \"{mode}\"\n\
             address = \"198.51.100.100\"\ntable_size = 101\n"
        );
        for host in [21, 22, 23] {
            text.push_str(&format!(
                "[[vips.backends]]\naddress = \"203.0.113.{host}\"\n"
            ));
        }
        let config = parse(&text, "test.toml", &Machine).expect("a valid configuration");
        let health = |id: &BackendId| {
            let down = down.is_some_and(|down| id.address.ip().to_string() == down);
            reachable(if down { Health::Down } else { Health::Up })
        };
        plan(&config, slots, health).expect("a plan")
    }

    /// Where in `writes` the first write matching `wanted` is.
    fn position(writes: &[MapWrite], wanted: impl Fn(&MapWrite) -> bool) -> usize {
        writes
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("no such write in {writes:#?}"))
    }

    fn table(write: &MapWrite) -> bool {
        matches!(write, MapWrite::Table { .. })
    }

    fn backend(slot: u32) -> impl Fn(&MapWrite) -> bool {
        move |write| matches!(write, MapWrite::Backend { slot: written, .. } if *written == slot)
    }

    #[test]
    fn a_backend_leaves_service_after_the_table_without_it() {
        let mut slots = Slots::default();
        let up = plan_with(&mut slots, "dsr", None);
        let down = plan_with(&mut slots, "dsr", Some("203.0.113.23"));
        let writes = ordered(&up, &down);
        assert_eq!(writes.len(), 2, "{writes:#?}");
        assert!(position(&writes, table) < position(&writes, backend(2)));
    }

    #[test]
    fn a_backend_enters_service_before_the_table_with_it() {
        let mut slots = Slots::default();
        let down = plan_with(&mut slots, "dsr", Some("203.0.113.23"));
        let up = plan_with(&mut slots, "dsr", None);
        let writes = ordered(&down, &up);
        assert_eq!(writes.len(), 2, "{writes:#?}");
        assert!(position(&writes, backend(2)) < position(&writes, table));
    }

    #[test]
    fn nat_answers_are_rewritten_for_as_long_as_a_table_sends_calls() {
        let mut slots = Slots::default();
        let (none, nat) = (Plan::default(), plan_with(&mut slots, "nat", None));
        let writes = ordered(&none, &nat);
        let nat_return = |write: &MapWrite| matches!(write, MapWrite::NatReturn { .. });
        assert!(position(&writes, nat_return) < position(&writes, table));
        assert!(position(&writes, backend(0)) < position(&writes, table));

        let writes = ordered(&nat, &none);
        let removed = |write: &MapWrite| matches!(write, MapWrite::NatReturn { entry: None, .. });
        let vip_removed = |write: &MapWrite| matches!(write, MapWrite::RemoveVip { .. });
        assert!(position(&writes, vip_removed) < position(&writes, removed));
        assert!(position(&writes, vip_removed) < position(&writes, backend(0)));
    }

    #[test]
    fn equal_plans_need_no_writes() {
        let mut slots = Slots::default();
        let plan = plan_with(&mut slots, "nat", Some("203.0.113.22"));
        assert_eq!(ordered(&plan, &plan), []);
    }
}
