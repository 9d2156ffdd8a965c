//! What the data path did with a packet and why: the index space of the per-CPU counters.
//!
//! The kernel program counts every packet exactly once, under one [`Action`] and one
//! [`Reason`], in the counter slot of the VIP it was sent to (or of [`NO_VIP`]). Userspace
//! sums the per-CPU values at scrape time. Numbers are part of the map layout: append new
//! reasons at the end, never renumber.

use crate::callid::Unplaceable;

/// What happened to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Action {
    /// Sent to a backend from XDP.
    Forwarded = 0,
    /// Handed to the kernel stack (and from there to the slow path).
    Passed = 1,
    /// Dropped in XDP.
    Dropped = 2,
}

impl Action {
    /// Every action, in number order.
    pub const ALL: [Action; 3] = [Self::Forwarded, Self::Passed, Self::Dropped];

    /// The metric label value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Passed => "passed",
            Self::Dropped => "dropped",
        }
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $value:literal => $name:literal,)*) => {
        /// Why a packet got its [`Action`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Reason {
            $($(#[$doc])* $variant = $value,)*
        }

        impl Reason {
            /// Every reason, in number order.
            pub const ALL: &'static [Reason] = &[$(Self::$variant,)*];

            /// The metric label value.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

reasons! {
    /// Steered by the Maglev entry of its Call-ID's hash: the first message of a dialog,
    /// or any message when dialog stickiness is off.
    CallId = 0 => "call_id",
    /// Not an IPv4 or IPv6 packet.
    NotIp = 1 => "not_ip",
    /// Not addressed to a configured VIP.
    NotVip = 2 => "not_vip",
    /// Headers that contradict each other or the frame length.
    Malformed = 3 => "malformed",
    /// An IP fragment the kernel path cannot place: a later fragment whose first one was
    /// not seen (or not placed), or a first fragment that ends inside the header section.
    IpFragment = 4 => "ip_fragment",
    /// Not a SIP request or response.
    NotSip = 5 => "not_sip",
    /// A keep-alive (CRLF) datagram.
    KeepAlive = 6 => "keep_alive",
    /// No Call-ID header.
    NoCallId = 7 => "no_call_id",
    /// Two Call-ID headers that differ, or more than two.
    ConflictingCallIds = 8 => "conflicting_call_ids",
    /// A Call-ID folded over several lines.
    FoldedCallId = 9 => "folded_call_id",
    /// A Call-ID header with an empty value.
    EmptyCallId = 10 => "empty_call_id",
    /// A Call-ID longer than the kernel hashes.
    CallIdTooLong = 11 => "call_id_too_long",
    /// A run of blanks around the Call-ID longer than the kernel skips.
    LongBlankRun = 12 => "long_blank_run",
    /// The datagram ends inside its header section.
    Truncated = 13 => "truncated",
    /// The header section does not end inside the kernel's scan window.
    BeyondWindow = 14 => "beyond_window",
    /// The VIP has no usable backend.
    NoBackend = 15 => "no_backend",
    /// The backend's interface cannot be redirected to (not in the program's port map).
    NoRoute = 16 => "no_route",
    /// Steered to the backend remembered for its dialog (`DIALOGS`).
    Dialog = 17 => "dialog",
    /// A later fragment, sent where the first fragment of its datagram went.
    Fragment = 18 => "fragment",
    /// An IPv6 packet with an extension header other than a fragment header.
    Ipv6Extension = 19 => "ipv6_extension",
    /// From a NAT backend to a client: the source rewritten to the VIP and routed.
    NatReturn = 20 => "nat_return",
    /// NAT mode: the kernel has no neighbour entry for the next hop yet. The packet is
    /// passed rewritten, so the stack resolves the neighbour and forwards it.
    NoNeighbour = 21 => "no_neighbour",
    /// NAT mode: the TTL or hop limit ran out; the stack answers with ICMP.
    TtlExceeded = 22 => "ttl_exceeded",
    /// A TCP segment placed by the Maglev entry of its connection's hash: the first
    /// segment of the connection seen, or one whose remembered backend cannot keep it.
    TcpConnection = 23 => "tcp_connection",
    /// A TCP segment sent to the backend remembered for its connection (`CONNECTIONS`).
    TcpEstablished = 24 => "tcp_established",
    /// Over its VIP's per-source rate limit (`rate_limit`, `rate_burst`): dropped in XDP.
    RateLimited = 25 => "rate_limited",
    /// A User-Agent on its VIP's drop list (`drop_user_agents`): dropped.
    Scanner = 26 => "scanner",
}

impl From<Unplaceable> for Reason {
    fn from(reason: Unplaceable) -> Self {
        match reason {
            Unplaceable::NotSip => Self::NotSip,
            Unplaceable::KeepAlive => Self::KeepAlive,
            Unplaceable::NoCallId => Self::NoCallId,
            Unplaceable::ConflictingCallIds => Self::ConflictingCallIds,
            Unplaceable::FoldedCallId => Self::FoldedCallId,
            Unplaceable::EmptyCallId => Self::EmptyCallId,
            Unplaceable::CallIdTooLong => Self::CallIdTooLong,
            Unplaceable::LongBlankRun => Self::LongBlankRun,
            Unplaceable::Truncated => Self::Truncated,
            Unplaceable::BeyondWindow => Self::BeyondWindow,
        }
    }
}

/// Room for reasons in the counter layout; `Reason::ALL.len()` may grow up to this.
pub const REASON_SLOTS: u32 = 32;

/// Counter slots per VIP: one per (action, reason).
pub const OUTCOMES_PER_VIP: u32 = 3 * REASON_SLOTS;

/// The counter slot of traffic that matched no VIP.
pub const NO_VIP: u32 = crate::maps::MAX_VIPS;

/// The index of a counter in the per-CPU counter array.
#[inline(always)]
pub const fn counter_index(vip_slot: u32, action: Action, reason: Reason) -> u32 {
    vip_slot * OUTCOMES_PER_VIP + action as u32 * REASON_SLOTS + reason as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_and_are_numbered_in_order() {
        assert!(Reason::ALL.len() as u32 <= REASON_SLOTS);
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
    }

    #[test]
    fn counter_indices_are_distinct_and_in_range() {
        let mut seen = [false; ((crate::maps::MAX_VIPS + 1) * OUTCOMES_PER_VIP) as usize];
        for slot in [0, 1, NO_VIP] {
            for action in Action::ALL {
                for reason in Reason::ALL {
                    let index = counter_index(slot, action, *reason) as usize;
                    assert!(!seen[index]);
                    seen[index] = true;
                }
            }
        }
    }
}
