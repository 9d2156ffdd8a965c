//! Flood protection of a UDP VIP: the per-source token bucket, checked before the payload
//! is read at all, and the User-Agent drop list. Both only for VIPs whose flags ask.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use sipxdp_common::{
    callid::KernelLimits,
    flood::{SourceKey, TokenBucket},
    maps::VipConfig,
    scanner::is_scanner,
};

use crate::{
    maps::{FLOOD, FLOOD_SOURCES},
    nat,
    packet::{Frame, Udp},
    payload::PacketPayload,
};

/// Whether the VIP's rate limit lets the datagram's source send it now. Fails open: a
/// source whose address cannot be read or a bucket that cannot be stored lets it pass.
/// Two CPUs refilling one bucket at once may each admit a message: a flood is still cut
/// to a few times the rate, and no lock is taken per packet.
#[inline(always)]
pub fn admit(frame: &Frame, udp: &Udp, vip: &VipConfig) -> bool {
    let (Some(config), Some(source)) = (
        FLOOD.get(vip.slot),
        nat::source_key(frame, udp.layout, udp.source_port),
    ) else {
        return true;
    };
    let key = SourceKey {
        source: source.address,
        vip_slot: vip.slot,
        padding: 0,
    };
    // The coarse clock moves once per tick; the bucket keeps the nano-tokens of every
    // tick, so nothing is lost to its granularity.
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match FLOOD_SOURCES.get_ptr_mut(&key) {
        // SAFETY: a pointer to a map value the lookup returned; values of an LRU map stay
        // valid for the rest of the program run.
        Some(bucket) => unsafe { (*bucket).admit(&config.rate_limit, now) },
        None => {
            let mut bucket = TokenBucket::full(&config.rate_limit, now);
            let admitted = bucket.admit(&config.rate_limit, now);
            // A full map evicts its least recently used source; a failed insert only
            // gives this source a full bucket again next time.
            let _ = FLOOD_SOURCES.insert(&key, &bucket, 0);
            admitted
        }
    }
}

/// Whether the message's User-Agent is on the VIP's drop list. It reads the payload
/// through a fresh view of the frame: the Call-ID scan leaves the verifier knowing
/// different things about the old one on each of its exits, and the User-Agent scan
/// would be verified once per exit.
#[inline(always)]
pub fn from_scanner(ctx: &XdpContext, udp: &Udp, scratch: *mut u64, vip: &VipConfig) -> bool {
    let frame = Frame::new(ctx);
    let Some(payload) =
        PacketPayload::new(frame.data, frame.end, udp.payload, udp.payload_len, scratch)
    else {
        return false;
    };
    FLOOD
        .get(vip.slot)
        .is_some_and(|config| is_scanner::<_, KernelLimits>(&payload, &config.user_agents))
}
