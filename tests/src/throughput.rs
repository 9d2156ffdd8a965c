//! The highest message rate a path through the daemon lab delivers without loss: paced
//! bursts at rising rates from one `sendmmsg` sender, each bounded in messages and time,
//! until one loses a message; with the CPU time each burst cost.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{
    blast::send_paced,
    cpu::{Reading, Spent},
    daemon_lab::DaemonLab,
};

/// The rates tried, in messages per second.
pub const RATES: [u64; 12] = [
    5_000, 10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 120_000, 160_000, 240_000, 320_000,
    480_000,
];

/// Each burst lasts about this long ...
const BURST: Duration = Duration::from_millis(500);
/// ... and sends at most this many messages (the backends' receivers keep every one).
const MAX_BURST_MESSAGES: usize = 160_000;
/// A burst that cannot be sent within this time (a sender slower than the rate) stops.
const SEND_LIMIT: Duration = Duration::from_secs(2);
/// How long after a burst its last messages may still arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the idle baseline of the kernel's CPU time is measured.
const IDLE: Duration = Duration::from_secs(1);

/// One burst: its rate, how many messages were sent and arrived, and the CPU time spent
/// from its first message until the last arrived (or the drain time ended).
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    pub rate: u64,
    pub sent: usize,
    pub received: usize,
    pub spent: Spent,
}

/// What [`loss_free_rate`] found.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// The highest rate whose burst arrived whole; `None` if even the lowest lost some.
    pub loss_free: Option<u64>,
    pub bursts: Vec<Burst>,
    /// Kernel CPU seconds per second of all CPUs while nothing was sent.
    pub idle_kernel_per_second: f64,
}

impl Capacity {
    /// The burst at the loss-free rate.
    pub fn loss_free_burst(&self) -> Option<&Burst> {
        let rate = self.loss_free?;
        self.bursts.iter().find(|burst| burst.rate == rate)
    }

    /// The kernel CPU time of `burst` above the idle baseline, per message, in µs.
    pub fn kernel_us_per_message(&self, burst: &Burst) -> f64 {
        let busy = burst.spent.kernel - self.idle_kernel_per_second * burst.spent.seconds;
        1e6 * busy.max(0.0) / burst.received.max(1) as f64
    }
}

/// Sends bursts of `message(n)` (message `n` of the run) from `client` to `vip` at each
/// of [`RATES`] in turn, stopping after the first burst that loses a message, and reads
/// the CPU clocks around each burst, with those of process group `balancer` if given.
///
/// # Errors
///
/// Opening the client's socket, sending, reading the clocks or collecting at the backends
/// failed.
pub fn loss_free_rate(
    lab: &DaemonLab,
    client: SocketAddr,
    vip: SocketAddr,
    balancer: Option<u32>,
    message: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Capacity> {
    let socket = lab
        .lab()
        .client()
        .netns()
        .udp_socket(client)
        .context("the client's socket")?;
    socket
        .connect(vip)
        .context("connecting the client's socket")?;
    // Distinct messages to cycle through: enough Call-IDs to spread over the backends.
    let messages: Vec<Vec<u8>> = (0..4096).map(&message).collect();
    let idle_start = Reading::now(None)?;
    std::thread::sleep(IDLE);
    let idle = idle_start.until(&Reading::now(None)?);
    let mut capacity = Capacity {
        loss_free: None,
        bursts: Vec::new(),
        idle_kernel_per_second: idle.kernel / idle.seconds,
    };
    let mut next = 0;
    for rate in RATES {
        let count = ((rate as f64 * BURST.as_secs_f64()) as usize).min(MAX_BURST_MESSAGES);
        let before = Reading::now(balancer)?;
        let sent = send_paced(&socket, &messages, next, count, rate, SEND_LIMIT)
            .context("sending a burst")?;
        next += sent;
        let received = lab
            .collect(vip.is_ipv6(), sent, Instant::now() + DRAIN)
            .context("collecting at the backends")?
            .len();
        let spent = before.until(&Reading::now(balancer)?);
        ensure!(
            received <= sent,
            "more arrived than was sent: a stray sender?"
        );
        capacity.bursts.push(Burst {
            rate,
            sent,
            received,
            spent,
        });
        if sent < count || received < sent {
            break;
        }
        capacity.loss_free = Some(rate);
    }
    Ok(capacity)
}
