//! The end-to-end benchmark (`sipxdp-bench --e2e`): the daemon lab's client sends SIP
//! BYEs to the VIP through four balancers in turn, in the same balancer namespace, with
//! the same sender and the same backend receivers, and [`throughput::loss_free_rate`]
//! finds each one's highest loss-free rate and its CPU time per message:
//!
//! 1. sipxdp's fast path (the real `sipxdp run`, generic XDP on veth);
//! 2. sipxdp's slow path alone (every Call-ID after 120 header lines, beyond the kernel's
//!    reach, so the daemon forwards every message);
//! 3. Kamailio's dispatcher (algorithm 0, Call-ID hash, stateless `forward()`), with
//!    sipxdp stopped and detached;
//! 4. no balancer: the balancer namespace routes the VIP to a backend (the ceiling).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, ensure};

use crate::{
    cpu::{Meter, ProgramStats},
    daemon_lab::{DaemonLab, SIP_PORT},
    kamailio::Kamailio,
    sipgen::{Call, Rng, with_extra_header_lines},
    throughput::{self, Capacity},
};

/// Header lines that put a message's Call-ID beyond the kernel's reach.
pub const SLOW_PATH_HEADER_LINES: usize = 120;
/// The client's port.
const CLIENT_PORT: u16 = 5500;

/// The balancers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    FastPath,
    SlowPath,
    Kamailio,
    Forwarding,
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
        }
    }
}

/// One balancer's figures.
#[derive(Clone, Debug)]
pub struct Measured {
    pub balancer: Balancer,
    pub capacity: Capacity,
}

impl Measured {
    /// The balancer's CPU time per message at its loss-free rate, in µs: for Kamailio its
    /// processes' user + system time; for the kernel paths the kernel time of all CPUs
    /// above the idle baseline (XDP and forwarding run in softirq and in the sender's
    /// system calls, which cannot be told apart), plus the daemon's user time.
    pub fn balancer_us_per_message(&self) -> Option<f64> {
        let cpu = self.capacity.cpu.as_ref()?;
        Some(match self.balancer {
            Balancer::Kamailio => cpu.group_us(true),
            _ => cpu.kernel_us() + cpu.group_us(false),
        })
    }
}

/// Runs the four measurements on one lab and tears it down.
///
/// # Errors
///
/// A lab, daemon, Kamailio or burst that failed.
pub fn run() -> anyhow::Result<Vec<Measured>> {
    let mut lab = DaemonLab::start(&[1, 1, 1]).context("starting the daemon lab")?;
    let vip = lab.vip();
    let client = SocketAddr::new(lab.lab().client().iface().ip(false), CLIENT_PORT);
    let mut rng = Rng::new(0xe2e0_5eed);
    let calls: Vec<Call> = (0..4096).map(|_| Call::random(&mut rng, 20)).collect();
    let bye = |n: usize| calls[n % calls.len()].bye(client, vip);
    let mut results = Vec::new();
    let mut measure = |lab: &DaemonLab,
                       balancer: Balancer,
                       meter: Meter,
                       message: &dyn Fn(usize) -> Vec<u8>|
     -> anyhow::Result<()> {
        eprintln!("measuring {} ...", balancer.label());
        let capacity = throughput::loss_free_rate(lab, client, vip, &meter, message)
            .with_context(|| format!("measuring {}", balancer.label()))?;
        results.push(Measured { balancer, capacity });
        Ok(())
    };

    let sipxdp = Meter {
        group: lab.daemon_pid(),
        program: Some(lab.pin_path().join("program")),
    };
    let stats = ProgramStats::enable()?;
    measure(&lab, Balancer::FastPath, sipxdp.clone(), &bye)?;
    measure(&lab, Balancer::SlowPath, sipxdp, &|n| {
        with_extra_header_lines(&bye(n), SLOW_PATH_HEADER_LINES)
    })?;
    drop(stats);

    lab.stop_daemon().context("stopping sipxdp")?;
    lab.detach().context("detaching sipxdp")?;
    ensure!(!lab.attached()?, "sipxdp is still attached");
    let balancer = lab.lab().balancer();
    let backends: Vec<(SocketAddr, u32)> = lab
        .lab()
        .backends()
        .iter()
        .map(|backend| (SocketAddr::new(backend.iface().ip(false), SIP_PORT), 1))
        .collect();
    let kamailio = Kamailio::start_dispatcher(
        balancer.netns(),
        lab.directory(),
        vip,
        balancer.iface().ip(false),
        &backends,
    )?;
    let meter = Meter {
        group: kamailio.pid(),
        program: None,
    };
    measure(&lab, Balancer::Kamailio, meter, &bye)?;
    kamailio.stop()?;

    route_vip_to_first_backend(&lab)?;
    measure(&lab, Balancer::Forwarding, Meter::default(), &bye)?;
    Ok(results)
}

/// Turns the balancer namespace into a plain router for the VIP: it no longer holds the
/// VIP, forwards, sends no ICMP redirects (the next hop is on the same segment as the
/// client) and routes the VIP to the first backend, which holds it on `lo`. One route, not
/// a multipath one: the sender is one flow, which a multipath route keeps on one path.
fn route_vip_to_first_backend(lab: &DaemonLab) -> anyhow::Result<()> {
    let balancer = lab.lab().balancer();
    let netns = balancer.netns();
    let interface = balancer.iface().name();
    let vip = lab.vip().ip();
    let first = lab.lab().backends()[0].iface().ip(false);
    netns.run(&["ip", "addr", "del", &format!("{vip}/32"), "dev", interface])?;
    netns.sysctl_write("net.ipv4.ip_forward", "1")?;
    for scope in ["all", interface] {
        netns.sysctl_write(&format!("net.ipv4.conf.{scope}.send_redirects"), "0")?;
    }
    netns.run(&[
        "ip",
        "route",
        "replace",
        &format!("{vip}/32"),
        "via",
        &first.to_string(),
    ])?;
    ensure!(matches!(vip, IpAddr::V4(_)), "the benchmark's VIP is IPv4");
    Ok(())
}
