//! The highest message rate a balancer in the end-to-end lab delivers without loss:
//! paced bursts from the XDP generator at rising rates, each bounded in messages and
//! time, until one loses a message; with the CPU time each burst cost.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::{
    cpu::{Meter, ProgramStats, Reading, Spent},
    e2e_lab::{E2eLab, cpus},
    netns::Netns,
    wait_until,
    xdp_traffic::Generator,
};

/// The rates tried, in messages per second: steps of 1.5x and 1.33x, so the loss-free
/// rate found is within a third of the true one.
pub const RATES: [u64; 20] = [
    5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 40_000, 60_000, 80_000, 120_000, 160_000,
    240_000, 320_000, 480_000, 640_000, 960_000, 1_280_000, 1_920_000, 2_560_000, 3_840_000,
];

/// Each burst lasts about this long ...
const BURST: Duration = Duration::from_millis(500);
/// ... and sends at most this many messages.
const MAX_BURST_MESSAGES: usize = 2_000_000;
/// The generator sends a slot's worth of messages at a time (one run costs about 75 µs
/// besides its frames), slot `n` from the sending thread of CPU `n` modulo the CPUs.
const SLOT: Duration = Duration::from_millis(1);
/// A burst that cannot be sent within this time (a sender slower than the rate) stops.
const SEND_LIMIT: Duration = Duration::from_secs(2);
/// How long after a burst its last messages may still arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the CPU burst and its idle baseline last (at most [`MAX_BURST_MESSAGES`]).
const CPU_BURST: Duration = Duration::from_secs(1);

/// One burst: its rate, how many messages were sent (and how long that took) and arrived,
/// and the CPU time spent from its first message until the last arrived (or the drain
/// time ended).
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    pub rate: u64,
    pub sent: usize,
    pub sending: Duration,
    pub received: usize,
    pub spent: Spent,
}

impl Burst {
    /// The rate the sender achieved: below the asked rate when the sender was the limit.
    pub fn achieved_rate(&self) -> f64 {
        self.sent as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    /// Whether every one of `asked` messages was sent and arrived.
    pub fn whole(&self, asked: usize) -> bool {
        self.sent == asked && self.received == self.sent
    }

    /// Whether the sender kept (within 5%) to the asked rate.
    pub fn on_pace(&self) -> bool {
        self.achieved_rate() >= 0.95 * self.rate as f64
    }
}

/// What [`loss_free_rate`] found.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// The highest rate, as sent, of a burst that arrived whole; `None` if even the
    /// lowest lost some.
    pub loss_free: Option<u64>,
    /// Whether the sender, not the path, ended the search: it could not keep to the next
    /// rate, and the path lost nothing of what it sent.
    pub sender_limited: bool,
    pub bursts: Vec<Burst>,
    /// A longer burst at the loss-free rate for the CPU figures, after an idle baseline of
    /// the same length.
    pub cpu: Option<CpuBurst>,
}

/// The CPU measurement of [`Capacity::cpu`].
#[derive(Clone, Copy, Debug)]
pub struct CpuBurst {
    pub burst: Burst,
    pub idle: Spent,
    /// A second burst at the same rate with BPF statistics on, when the meter names a
    /// program: they cost every XDP program run on the machine two clock reads, so the
    /// first burst runs without them.
    pub with_statistics: Option<Burst>,
}

impl CpuBurst {
    /// All processes' CPU time above the idle baseline, per message, in µs.
    pub fn machine_us(&self) -> f64 {
        let idle_rate = self.idle.tasks / self.idle.seconds.max(1e-9);
        let busy = self.burst.spent.tasks - idle_rate * self.burst.spent.seconds;
        busy.max(0.0) * self.per_message()
    }

    /// The balancer process group's user (+ system if `system`) time per message, µs.
    pub fn group_us(&self, system: bool) -> f64 {
        let spent = &self.burst.spent;
        (spent.group_user + if system { spent.group_system } else { 0.0 }) * self.per_message()
    }

    /// The XDP program's run time per message, µs (all its runs over the messages that
    /// arrived), if it was measured.
    pub fn program_us(&self) -> Option<f64> {
        let burst = self.with_statistics.as_ref()?;
        Some(burst.spent.program * 1e6 / burst.received.max(1) as f64)
    }

    fn per_message(&self) -> f64 {
        1e6 / self.burst.received.max(1) as f64
    }
}

/// Sends bursts from `generator` to the lab's balancer at each of [`RATES`] in turn,
/// stopping after the first burst that loses a message or cannot be sent at its rate,
/// then measures the CPU time `meter` names over a longer burst at the loss-free rate
/// ([`cpu_at`]).
///
/// # Errors
///
/// Sending, reading the clocks or the sinks failed.
pub fn loss_free_rate(
    lab: &E2eLab,
    generator: &Generator,
    meter: &Meter,
) -> anyhow::Result<Capacity> {
    let mut capacity = Capacity {
        loss_free: None,
        sender_limited: false,
        bursts: Vec::new(),
        cpu: None,
    };
    let mut cpu_rate = None;
    for rate in RATES {
        let (burst, asked) = burst(lab, generator, meter, rate, BURST)?;
        capacity.bursts.push(burst);
        let lossless = burst.received == burst.sent;
        if lossless {
            // As sent: a sender that fell behind offered less than the asked rate.
            let sent_at = (burst.achieved_rate() as u64).min(rate);
            capacity.loss_free = Some(capacity.loss_free.unwrap_or(0).max(sent_at));
            cpu_rate = Some(rate);
        }
        if !lossless || !burst.whole(asked) || !burst.on_pace() {
            capacity.sender_limited = lossless;
            break;
        }
    }
    if let Some(rate) = cpu_rate {
        capacity.cpu = Some(cpu_at(lab, generator, meter, rate)?);
    }
    Ok(capacity)
}

/// The CPU time `meter` names over a [`CPU_BURST`] at `rate`, after an idle baseline of
/// the same length; with a second burst with BPF statistics on when it names a program.
///
/// # Errors
///
/// Sending, reading the clocks or the sinks failed.
pub fn cpu_at(
    lab: &E2eLab,
    generator: &Generator,
    meter: &Meter,
    rate: u64,
) -> anyhow::Result<CpuBurst> {
    let idle_start = Reading::now(meter)?;
    std::thread::sleep(CPU_BURST);
    let idle = idle_start.until(&Reading::now(meter)?);
    let (measured, _) = burst(lab, generator, meter, rate, CPU_BURST)?;
    let with_statistics = match meter.program {
        Some(_) => {
            let _statistics = ProgramStats::enable()?;
            Some(burst(lab, generator, meter, rate, CPU_BURST)?.0)
        }
        None => None,
    };
    Ok(CpuBurst {
        burst: measured,
        idle,
        with_statistics,
    })
}

/// One burst of `rate` messages a second for `duration` (at most [`MAX_BURST_MESSAGES`]),
/// with the CPU time `meter` names from its start until its last message arrived or
/// [`DRAIN`] passed; and how many messages it asked for.
fn burst(
    lab: &E2eLab,
    generator: &Generator,
    meter: &Meter,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<(Burst, usize)> {
    let count = ((rate as f64 * duration.as_secs_f64()) as usize).min(MAX_BURST_MESSAGES);
    let ifindex = lab.client_ifindex();
    let before = Reading::now(meter)?;
    let received_before = lab.received()?;
    let sent =
        send_paced(lab.client(), generator, ifindex, count, rate).context("sending a burst")?;
    let sending = before.at.elapsed();
    let mut received = 0;
    wait_until(Instant::now() + DRAIN, || {
        received = lab
            .received()
            .map_or(received, |now| (now - received_before) as usize);
        received >= sent
    });
    let spent = before.until(&Reading::now(meter)?);
    ensure!(
        received <= sent,
        "more arrived than was sent: a stray sender?"
    );
    let burst = Burst {
        rate,
        sent,
        sending,
        received,
        spent,
    };
    Ok((burst, count))
}

/// Sends `count` frames from `generator` out of `ifindex` (in `netns`) at `rate` a
/// second: slot `n` holds frames `n * per_slot ..` and is sent no earlier than its time,
/// by a thread pinned to CPU `n % cpus`, which sends into the receive queue of the same
/// number on the other end (one queue per CPU, see [`crate::e2e_lab`]). Senders stop
/// early once [`SEND_LIMIT`] has passed. Returns how many were sent.
fn send_paced(
    netns: &Netns,
    generator: &Generator,
    ifindex: u32,
    count: usize,
    rate: u64,
) -> anyhow::Result<usize> {
    let per_slot = ((rate as f64 * SLOT.as_secs_f64()).ceil() as usize).max(1);
    let slots = count.div_ceil(per_slot);
    let cpus = cpus() as usize;
    let start = Instant::now();
    let sender = |cpu: usize| -> anyhow::Result<usize> {
        pin_to_cpu(cpu)?;
        let mut sent = 0;
        for slot in (cpu..slots).step_by(cpus) {
            if start.elapsed() >= SEND_LIMIT {
                break;
            }
            let from = slot * per_slot;
            let due = start + Duration::from_secs_f64(from as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let frames = per_slot.min(count - from);
            generator.send(ifindex, frames as u32)?;
            sent += frames;
        }
        Ok(sent)
    };
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..cpus)
            .map(|cpu| scope.spawn(move || netns.enter_thread(|| sender(cpu))))
            .collect();
        let mut sent = 0;
        for handle in senders {
            match handle.join() {
                Ok(result) => sent += result??,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(sent)
    })
}

/// Keeps the calling thread on CPU `cpu`.
fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for a CPU
    // number below CPU_SETSIZE, and sched_setaffinity reads it.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    ensure!(
        result == 0,
        "pinning a sender to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
