//! The end-to-end benchmark (`sipxdp-bench --e2e`): the XDP generator in the lab's client
//! sends SIP BYEs to the VIP through five balancers in turn, in the same balancer
//! namespace, to the same backend sinks ([`crate::e2e_lab`]), and
//! [`throughput::loss_free_rate`] finds each one's highest loss-free rate and its CPU
//! time per message:
//!
//! 1. sipxdp's fast path (the real `sipxdp run`, native XDP on veth);
//! 2. sipxdp's slow path alone (every Call-ID after 120 header lines, beyond the kernel's
//!    reach, so the daemon forwards every message);
//! 3. no balancer in XDP: a program on the balancer's link redirects every frame to a
//!    backend picked at random (the ceiling of the XDP path, and the lab's own CPU time);
//! 4. Kamailio's dispatcher (algorithm 0, Call-ID hash, stateless `forward()`), with
//!    sipxdp stopped and detached;
//! 5. no balancer in the stack: the balancer namespace routes the VIP to a backend (the ceiling of the
//!    network stack's path).

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::{
    cpu::Meter,
    e2e_lab::E2eLab,
    kamailio::Kamailio,
    sipgen::{Call, Rng, with_extra_header_lines},
    throughput::{self, Capacity},
    xdp_traffic::Generator,
};

/// Header lines that put a message's Call-ID beyond the kernel's reach.
pub const SLOW_PATH_HEADER_LINES: usize = 120;

/// The balancers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    FastPath,
    SlowPath,
    Kamailio,
    Forwarding,
    XdpForwarding,
}

impl Balancer {
    pub fn label(self) -> String {
        match self {
            Balancer::FastPath => "sipxdp fast path (XDP)".into(),
            Balancer::SlowPath => {
                format!("sipxdp slow path (Call-ID after {SLOW_PATH_HEADER_LINES} lines)")
            }
            Balancer::Kamailio => "Kamailio dispatcher (alg 0, stateless)".into(),
            Balancer::Forwarding => "no balancer (kernel routing)".into(),
            Balancer::XdpForwarding => "no balancer (XDP redirect, random backend)".into(),
        }
    }
}

/// One balancer's figures.
#[derive(Clone, Debug)]
pub struct Measured {
    pub balancer: Balancer,
    pub capacity: Capacity,
    /// The machine CPU per message, µs, of XDP forwarding to the backends without a
    /// balancer's work at the rate of this balancer's CPU burst: the generator's, the
    /// links' and the sinks' share, which depends on the rate (a generator run costs the
    /// same for few frames as for many).
    pub lab_us_per_message: Option<f64>,
}

impl Measured {
    /// The CPU time the machine spent per message at the loss-free rate, in µs, measured
    /// the same way for every balancer: the CPU time of all processes above the idle
    /// baseline (the balancer's, and XDP and the network stack in the softirq of whoever
    /// sent: the generator's and the sinks' work included).
    pub fn machine_us_per_message(&self) -> Option<f64> {
        Some(self.capacity.cpu.as_ref()?.machine_us())
    }

    /// What the balancer adds to the machine's CPU time per message, in µs: its machine
    /// CPU less the lab's share at the same rate.
    pub fn balancer_us_per_message(&self) -> Option<f64> {
        Some(self.machine_us_per_message()? - self.lab_us_per_message?)
    }
}

/// Runs the five measurements on one lab and tears it down.
///
/// # Errors
///
/// A lab, daemon, Kamailio or burst that failed.
pub fn run() -> anyhow::Result<Vec<Measured>> {
    let mut lab = E2eLab::start().context("starting the end-to-end lab")?;
    let call = Call::random(&mut Rng::new(0xe2e0_5eed), 0);
    let bye = call.bye(lab.client_address(), lab.vip());
    let fast = lab.generator(&bye)?;
    let slow = lab.generator(&with_extra_header_lines(&bye, SLOW_PATH_HEADER_LINES))?;
    let mut results = Vec::new();
    let mut measure = |lab: &E2eLab, balancer: Balancer, generator: &Generator, meter: Meter| {
        eprintln!("measuring {} ...", balancer.label());
        let capacity = throughput::loss_free_rate(lab, generator, &meter)
            .with_context(|| format!("measuring {}", balancer.label()))?;
        results.push(Measured {
            balancer,
            capacity,
            lab_us_per_message: None,
        });
        anyhow::Ok(())
    };

    lab.start_sipxdp().context("starting sipxdp")?;
    let sipxdp = Meter {
        group: lab.daemon_pid(),
        program: Some(lab.pin_path().join("program")),
    };
    measure(&lab, Balancer::FastPath, &fast, sipxdp.clone())?;
    measure(&lab, Balancer::SlowPath, &slow, sipxdp)?;
    lab.stop_sipxdp().context("stopping sipxdp")?;

    lab.forward_to_random_backends()?;
    measure(&lab, Balancer::XdpForwarding, &fast, Meter::default())?;

    lab.pass_to_stack()?;
    let backends: Vec<(SocketAddr, u32)> = lab
        .backend_addresses()
        .into_iter()
        .map(|backend| (backend, 1))
        .collect();
    let kamailio = Kamailio::start_dispatcher(
        lab.balancer(),
        lab.directory(),
        lab.vip(),
        lab.front_address(),
        &backends,
    )?;
    let meter = Meter {
        group: kamailio.pid(),
        program: None,
    };
    measure(&lab, Balancer::Kamailio, &fast, meter)?;
    kamailio.stop()?;

    lab.route_vip_to_first_backend()?;
    measure(&lab, Balancer::Forwarding, &fast, Meter::default())?;

    // With the fast path's frames for every balancer: the slow path's 2,000-byte frames
    // do not fit the backends' links whole, which only the daemon fragments.
    eprintln!("measuring the lab's own share ...");
    lab.forward_to_random_backends()?;
    for measured in &mut results {
        if let Some(cpu) = &measured.capacity.cpu {
            let lab_share = throughput::cpu_at(&lab, &fast, &Meter::default(), cpu.burst.rate)
                .context("measuring the lab's own share")?;
            measured.lab_us_per_message = Some(lab_share.machine_us());
        }
    }
    Ok(results)
}
