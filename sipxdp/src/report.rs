//! What the program did, read from its counters, for logs and the demo.

use std::fmt;

use sipxdp_common::outcome::{Action, NO_VIP, Reason};

use crate::{
    dataplane::{Dataplane, DataplaneError},
    plan::{Plan, Slots},
};

/// One non-zero outcome counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The VIP's name, or `None` for traffic not addressed to any VIP.
    pub vip: Option<String>,
    pub action: Action,
    pub reason: Reason,
    pub packets: u64,
    pub bytes: u64,
}

/// One backend's forwarding counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTraffic {
    pub vip: String,
    pub backend: std::net::SocketAddr,
    pub packets: u64,
    pub bytes: u64,
}

/// The counters at one moment, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub backends: Vec<BackendTraffic>,
}

impl Report {
    /// Reads every counter of the VIPs and backends in `plan`, and of traffic for no VIP.
    pub fn read(dataplane: &Dataplane, plan: &Plan, slots: &Slots) -> Result<Self, DataplaneError> {
        let mut report = Report::default();
        let vips = plan
            .vips
            .iter()
            .map(|vip| (vip.entry.slot, Some(vip.name.clone())))
            .chain([(NO_VIP, None)]);
        for (slot, vip) in vips {
            for action in Action::ALL {
                for &reason in Reason::ALL {
                    let counter = dataplane.counter(slot, action, reason)?;
                    if counter.packets > 0 {
                        report.outcomes.push(Outcome {
                            vip: vip.clone(),
                            action,
                            reason,
                            packets: counter.packets,
                            bytes: counter.bytes,
                        });
                    }
                }
            }
        }
        for &slot in plan.backends.keys() {
            let Some(id) = slots.backend_at(slot) else {
                continue;
            };
            let counter = dataplane.backend_counter(slot)?;
            report.backends.push(BackendTraffic {
                vip: id.vip.clone(),
                backend: id.address,
                packets: counter.packets,
                bytes: counter.bytes,
            });
        }
        Ok(report)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:<10} {:<20} {:>12} {:>14}",
            "VIP", "ACTION", "REASON", "PACKETS", "BYTES"
        )?;
        for outcome in &self.outcomes {
            writeln!(
                f,
                "{:<24} {:<10} {:<20} {:>12} {:>14}",
                outcome.vip.as_deref().unwrap_or("(no VIP)"),
                format!("{:?}", outcome.action).to_lowercase(),
                outcome.reason.name(),
                outcome.packets,
                outcome.bytes
            )?;
        }
        writeln!(
            f,
            "{:<24} {:<24} {:>12} {:>14}",
            "VIP", "BACKEND", "PACKETS", "BYTES"
        )?;
        for backend in &self.backends {
            writeln!(
                f,
                "{:<24} {:<24} {:>12} {:>14}",
                backend.vip, backend.backend, backend.packets, backend.bytes
            )?;
        }
        Ok(())
    }
}
