//! The highest message rate a path through the daemon lab delivers without loss: paced
//! bursts at rising rates, each bounded in messages and time, until one loses a message.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::daemon_lab::DaemonLab;

/// The rates tried, in messages per second.
pub const RATES: [u64; 10] = [
    2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 60_000, 80_000, 120_000,
];

/// Each burst lasts about this long ...
const BURST: Duration = Duration::from_millis(500);
/// ... and sends at most this many messages.
const MAX_BURST_MESSAGES: usize = 60_000;
/// How long after a burst its last messages may still arrive.
const DRAIN: Duration = Duration::from_secs(2);

/// One burst: its rate, how many messages were sent and how many arrived.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    pub rate: u64,
    pub sent: usize,
    pub received: usize,
}

/// What [`loss_free_rate`] found.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// The highest rate whose burst arrived whole; `None` if even the lowest lost some.
    pub loss_free: Option<u64>,
    pub bursts: Vec<Burst>,
}

/// Sends bursts of `message(n)` (message `n` of the run) from `client` to `vip` at each
/// of [`RATES`] in turn, stopping after the first burst that loses a message.
///
/// # Errors
///
/// Opening the client's socket, sending, or collecting at the backends failed.
pub fn loss_free_rate(
    lab: &DaemonLab,
    client: SocketAddr,
    vip: SocketAddr,
    message: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Capacity> {
    let socket = lab
        .lab()
        .client()
        .netns()
        .udp_socket(client)
        .context("the client's socket")?;
    let mut next = 0;
    let mut capacity = Capacity {
        loss_free: None,
        bursts: Vec::new(),
    };
    for rate in RATES {
        let count = ((rate as f64 * BURST.as_secs_f64()) as usize).min(MAX_BURST_MESSAGES);
        let messages: Vec<Vec<u8>> = (next..next + count).map(&message).collect();
        next += count;
        let start = Instant::now();
        for (index, payload) in messages.iter().enumerate() {
            // Paced: message `index` leaves no earlier than its slot in the burst.
            let slot = start + Duration::from_secs_f64(index as f64 / rate as f64);
            let ahead = slot.saturating_duration_since(Instant::now());
            if ahead > Duration::from_micros(200) {
                std::thread::sleep(ahead);
            }
            let sent = socket.send_to(payload, vip).context("sending")?;
            ensure!(sent == payload.len(), "a short send");
        }
        let received = lab
            .collect(vip.is_ipv6(), count, Instant::now() + DRAIN)
            .context("collecting at the backends")?
            .len();
        capacity.bursts.push(Burst {
            rate,
            sent: count,
            received,
        });
        if received < count {
            break;
        }
        capacity.loss_free = Some(rate);
    }
    Ok(capacity)
}
