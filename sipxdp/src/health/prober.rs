//! The sans-IO prober: decides when to ping whom, matches replies, and turns
//! outcomes into Up/Down events. Time only enters through the `now` arguments.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::{
    settings::{Settings, SettingsError},
    status::TargetStatus,
};
use crate::sip::{BRANCH_MAGIC_COOKIE, Message, OptionsRequest, StartLine};

/// A new target set named the same id twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("target id {0} appears more than once")]
pub struct DuplicateTargetId(pub u32);

/// A backend to probe. The id is the caller's (the backend's index in the
/// configuration); events and statuses refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub id: u32,
    pub address: SocketAddr,
}

/// A datagram the caller must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// Why a target was taken Down: the failure that crossed the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// No final reply within the timeout.
    Timeout,
    /// A final reply whose code is not among the alive codes.
    Reply { code: u16 },
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("no final reply within the timeout"),
            Self::Reply { code } => write!(f, "final reply {code}, not one of reply_codes"),
        }
    }
}

/// A change of a target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Up { id: u32 },
    Down { id: u32, reason: DownReason },
}

/// The ping a target is waiting on.
#[derive(Debug)]
struct Ping {
    call_id: String,
    /// The branch without the magic cookie, as handed to [`OptionsRequest`].
    branch: String,
    sent: Instant,
}

#[derive(Debug)]
struct Entry {
    address: SocketAddr,
    status: TargetStatus,
    next_ping: Instant,
    outstanding: Option<Ping>,
}

impl Entry {
    /// Whether `reply`, received from `from`, answers this entry's ping.
    fn awaits(&self, from: SocketAddr, reply: &Reply<'_>) -> bool {
        self.outstanding.as_ref().is_some_and(|ping| {
            same_endpoint(self.address, from)
                && ping.call_id == reply.call_id
                && ping.branch == reply.branch
        })
    }
}

/// What identifies the ping a response answers, and how it answers.
struct Reply<'a> {
    code: u16,
    call_id: &'a str,
    /// Without the magic cookie; responses lacking it cannot be ours.
    branch: &'a str,
}

impl<'a> Reply<'a> {
    fn of(message: &'a Message<'_>) -> Option<Self> {
        let StartLine::Response { code, .. } = *message.start_line() else {
            return None;
        };
        Some(Self {
            code,
            call_id: message.call_id()?,
            branch: message.via_branch()?.strip_prefix(BRANCH_MAGIC_COOKIE)?,
        })
    }
}

/// SIP OPTIONS health checks for a set of targets, in the manner of Kamailio's
/// dispatcher: ping every `interval`, count a reply with an alive code as
/// success and anything else (or silence) as failure, and change state after
/// `down_after` / `up_after` consecutive outcomes.
#[derive(Debug)]
pub struct Prober {
    settings: Settings,
    /// Our socket's address: written into Via and From so replies find us.
    local: SocketAddr,
    seed: u64,
    /// Pings built so far; with `seed`, makes each ping's identifiers.
    pings: u64,
    /// Ordered by id so that ties, and therefore output, are deterministic.
    targets: BTreeMap<u32, Entry>,
    events: VecDeque<Event>,
    ignored_replies: u64,
}

impl Prober {
    /// A prober with no targets.
    ///
    /// `local` is the address replies must reach. `seed` makes identifiers
    /// differ between runs (pass something like the start time); the prober
    /// itself draws no randomness, so equal inputs give equal outputs.
    pub fn new(settings: Settings, local: SocketAddr, seed: u64) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self {
            settings,
            local,
            seed,
            pings: 0,
            targets: BTreeMap::new(),
            events: VecDeque::new(),
            ignored_replies: 0,
        })
    }

    /// Replaces the set of targets.
    ///
    /// A target whose id and address are unchanged keeps its state, counters
    /// and any ping in flight. Every other target starts fresh and Up, as in
    /// Kamailio: a newly configured backend takes traffic at once and is taken
    /// out after `down_after` failures, rather than waiting for `up_after`
    /// successes. No events are emitted for this; the caller knows the new set
    /// and can read kept targets' states with [`Prober::status`].
    ///
    /// New targets' first pings are spread evenly over one interval, the first
    /// one immediately, so a large reload does not send a burst.
    pub fn set_targets(
        &mut self,
        now: Instant,
        targets: Vec<Target>,
    ) -> Result<(), DuplicateTargetId> {
        let mut seen = BTreeSet::new();
        if let Some(duplicate) = targets.iter().find(|target| !seen.insert(target.id)) {
            return Err(DuplicateTargetId(duplicate.id));
        }
        let mut old = std::mem::take(&mut self.targets);
        let mut fresh = Vec::new();
        for target in targets {
            match old.remove(&target.id) {
                Some(entry) if entry.address == target.address => {
                    self.targets.insert(target.id, entry);
                }
                _ => fresh.push(target),
            }
        }
        let count = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
        for (index, target) in (0..count).zip(fresh) {
            let offset = self
                .settings
                .interval
                .checked_mul(index)
                .map_or(Duration::ZERO, |spread| spread / count);
            let entry = Entry {
                address: target.address,
                status: TargetStatus::new(),
                next_ping: now + offset,
                outstanding: None,
            };
            self.targets.insert(target.id, entry);
        }
        Ok(())
    }

    /// Moves the prober to a new socket address, when the daemon rebinds it.
    ///
    /// A reply to a ping in flight would go to the old address and never arrive, so
    /// such a ping is forgotten, neither a success nor a failure, and its target is
    /// pinged again at once from the new address.
    pub fn set_local(&mut self, now: Instant, local: SocketAddr) {
        self.local = local;
        for entry in self.targets.values_mut() {
            if entry.outstanding.take().is_some() {
                entry.next_ping = now;
            }
        }
    }

    /// The next ping due at `now`, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.expire(now);
        let (_, entry) = self
            .targets
            .iter_mut()
            .filter(|(_, entry)| entry.outstanding.is_none() && entry.next_ping <= now)
            .min_by_key(|(_, entry)| entry.next_ping)?;
        let token = identifier(self.seed, self.pings);
        self.pings = self.pings.wrapping_add(1);
        let request = OptionsRequest {
            target: entry.address,
            local: self.local,
            call_id: format!("{token:016x}@sipxdp"),
            // Each ping is a new Call-ID, hence a new CSeq space.
            cseq: 1,
            branch: format!("{token:016x}"),
            tag: format!("{:08x}", token >> 32),
        };
        let payload = request.to_bytes();
        entry.outstanding = Some(Ping {
            call_id: request.call_id,
            branch: request.branch,
            sent: now,
        });
        // Keep the phase (no drift from late polling); after a long stall,
        // resume from now instead of firing the missed pings in a burst.
        let next = entry.next_ping + self.settings.interval;
        entry.next_ping = if next > now {
            next
        } else {
            now + self.settings.interval
        };
        entry.status.pings_sent = entry.status.pings_sent.saturating_add(1);
        Some(Transmit {
            destination: entry.address,
            payload,
        })
    }

    /// Handles a datagram received on the probing socket.
    ///
    /// Only a response from the pinged address carrying the ping's Call-ID and
    /// Via branch counts; anything else, including a reply to a ping that has
    /// already timed out, is ignored and counted in [`Prober::ignored_replies`].
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.expire(now);
        let message = Message::parse(payload).ok();
        let awaited = message.as_ref().and_then(Reply::of).and_then(|reply| {
            self.targets
                .iter_mut()
                .find(|(_, entry)| entry.awaits(from, &reply))
                .map(|(&id, entry)| (id, entry, reply.code))
        });
        let Some((id, entry, code)) = awaited else {
            self.ignored_replies = self.ignored_replies.saturating_add(1);
            return;
        };
        if code < 200 {
            // Provisional: the final reply is still to come, within the same timeout.
            return;
        }
        let ping = entry.outstanding.take();
        entry.status.last_latency = ping.map(|ping| now.saturating_duration_since(ping.sent));
        if let Some(latency) = entry.status.last_latency {
            entry.status.latencies.observe(latency);
        }
        entry.status.last_reply_code = Some(code);
        if self.settings.is_alive(code) {
            if entry.status.record_success(self.settings.up_after) {
                self.events.push_back(Event::Up { id });
            }
        } else if entry.status.record_failure(self.settings.down_after) {
            self.events.push_back(Event::Down {
                id,
                reason: DownReason::Reply { code },
            });
        }
    }

    /// When [`Prober::handle_timeout`] (and then [`Prober::poll_transmit`])
    /// should next be called; `None` without targets.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets
            .values()
            .map(|entry| match &entry.outstanding {
                Some(ping) => ping.sent + self.settings.timeout,
                None => entry.next_ping,
            })
            .min()
    }

    /// Expires pings whose timeout has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// The next state change, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The status of the target with this id.
    pub fn status(&self, id: u32) -> Option<&TargetStatus> {
        self.targets.get(&id).map(|entry| &entry.status)
    }

    /// Every target and its status, by id.
    pub fn statuses(&self) -> impl Iterator<Item = (Target, &TargetStatus)> {
        self.targets.iter().map(|(&id, entry)| {
            let target = Target {
                id,
                address: entry.address,
            };
            (target, &entry.status)
        })
    }

    /// Datagrams that matched no outstanding ping: garbage, strays, late replies.
    pub fn ignored_replies(&self) -> u64 {
        self.ignored_replies
    }

    /// Counts every ping whose timeout has passed as a failure.
    fn expire(&mut self, now: Instant) {
        let timeout = self.settings.timeout;
        for (&id, entry) in &mut self.targets {
            if entry
                .outstanding
                .as_ref()
                .is_none_or(|ping| now < ping.sent + timeout)
            {
                continue;
            }
            entry.outstanding = None;
            if entry.status.record_failure(self.settings.down_after) {
                self.events.push_back(Event::Down {
                    id,
                    reason: DownReason::Timeout,
                });
            }
        }
    }
}

/// Whether a reply's source is the pinged address. A dual-stack socket reports
/// IPv4 peers as IPv4-mapped IPv6, so both sides are compared canonically.
fn same_endpoint(target: SocketAddr, from: SocketAddr) -> bool {
    target.port() == from.port() && target.ip().to_canonical() == from.ip().to_canonical()
}

/// The identifier of ping number `counter`: the SplitMix64 finalizer over a
/// seeded Weyl sequence. Both steps are bijections, so identifiers never repeat
/// within a run, yet consecutive ones look unrelated. (Not a secret: SplitMix64
/// is no cipher, and matching also checks the source address.)
fn identifier(seed: u64, counter: u64) -> u64 {
    let mut z = seed.wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
