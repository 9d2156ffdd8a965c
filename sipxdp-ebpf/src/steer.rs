//! From parsed headers to an action: VIP lookup, Call-ID scan or connection hash, Maglev
//! lookup, forwarding.

use aya_ebpf::{
    bindings::xdp_action, btf_maps::LruHashMap, helpers::bpf_ktime_get_coarse_ns,
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use sipxdp_common::{
    callid::{KernelLimits, Unplaceable, locate},
    connection::Connection,
    maps::{
        BACKEND_IN_SERVICE, Backend, FRAGMENTS_NAT_RETURN, FRAGMENTS_TO_STACK, FragmentKey,
        FragmentTarget, MAGLEV_EMPTY, PROTOCOL_TCP, PROTOCOL_UDP, Placement, PlacementKey,
        VIP_DROP_KEEP_ALIVE, VIP_DROP_NOT_SIP, VIP_DROP_USER_AGENTS, VIP_NAT, VIP_PROBES,
        VIP_RATE_LIMIT, VIP_TABLE_ENTRIES, VipConfig, VipKey, table_entry,
    },
    outcome::{Action, NO_VIP, Reason, counter_index},
    payload::Payload as _,
};

use crate::{
    barrier::{detach, pin},
    flood,
    maps::{
        BACKEND_COUNTERS, BACKENDS, CONNECTIONS, COUNTERS, DIALOGS, FRAGMENT_KEY, FRAGMENTS,
        MAGLEV, NAT_RETURNS, SCRATCH, SETTINGS, TX_PORTS, VIPS,
    },
    nat::{self, End, Headers},
    packet::{Fragment, Frame, Layout, Packet, Udp, parse},
    payload::PacketPayload,
};

/// What to do with a frame, and what to count it as.
struct Verdict {
    action: Action,
    reason: Reason,
    /// The XDP return code carrying out `action`.
    xdp: u32,
}

impl Verdict {
    const fn pass(reason: Reason) -> Self {
        Self {
            action: Action::Passed,
            reason,
            xdp: xdp_action::XDP_PASS,
        }
    }

    const fn drop(reason: Reason) -> Self {
        Self {
            action: Action::Dropped,
            reason,
            xdp: xdp_action::XDP_DROP,
        }
    }

    const fn forward(reason: Reason, xdp: u32) -> Self {
        Self {
            action: Action::Forwarded,
            reason,
            xdp,
        }
    }

    /// Whether the frame went on its way rewritten: forwarded, or passed rewritten for
    /// the stack to resolve the next hop's neighbour and forward it. The later fragments
    /// of a first fragment that did must go the same way, or the datagram is lost.
    fn went_on(&self) -> bool {
        matches!(self.action, Action::Forwarded) || matches!(self.reason, Reason::NoNeighbour)
    }
}

/// Decides and carries out what happens to the frame in `ctx`; counts it exactly once.
#[inline(always)]
pub fn steer(ctx: &XdpContext) -> u32 {
    let frame = Frame::new(ctx);
    let frame_len = frame.len();
    let (slot, verdict) = match parse(&frame) {
        Ok(Packet::Udp(udp)) => {
            let key = VipKey {
                address: udp.destination,
                port: udp.destination_port,
                protocol: PROTOCOL_UDP,
                padding: 0,
            };
            match find_vip(&key) {
                Some(vip) => (vip.slot, steer_udp(ctx, &frame, &udp, &vip)),
                None => steer_nat_return(ctx, &frame, &udp)
                    .unwrap_or((NO_VIP, Verdict::pass(Reason::NotVip))),
            }
        }
        Ok(Packet::Tcp(connection)) => {
            let key = VipKey {
                address: connection.destination,
                port: connection.destination_port,
                protocol: PROTOCOL_TCP,
                padding: 0,
            };
            match find_vip(&key) {
                Some(vip) => (vip.slot, steer_tcp(ctx, &frame, &connection, &vip)),
                None => (NO_VIP, Verdict::pass(Reason::NotVip)),
            }
        }
        Ok(Packet::LaterFragment(fragment)) => steer_later_fragment(ctx, &frame, &fragment),
        Ok(Packet::OtherIp) => (NO_VIP, Verdict::pass(Reason::NotVip)),
        Err(reason) => (NO_VIP, Verdict::pass(reason)),
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(slot, verdict.action, verdict.reason))
    {
        // SAFETY: a per-CPU map value; nothing else runs on this CPU meanwhile.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += frame_len as u64;
        }
    }
    verdict.xdp
}

/// The configuration of the VIP `key`, if there is one.
#[inline(always)]
fn find_vip(key: &VipKey) -> Option<VipConfig> {
    let home = key.home();
    for probe in 0..VIP_PROBES {
        let entry = VIPS.get((home + probe) & (VIP_TABLE_ENTRIES - 1))?;
        if entry.key.matches(key) {
            return Some(entry.config);
        }
        if entry.key.protocol == 0 {
            return None;
        }
    }
    None
}

/// Steers a datagram sent to a UDP VIP.
#[inline(always)]
fn steer_udp(ctx: &XdpContext, frame: &Frame, udp: &Udp, vip: &VipConfig) -> Verdict {
    // The flood flags are tested on a detached copy: a test of `vip.flags` itself would
    // teach the verifier a bit of it, and the Call-ID scan would be verified once per
    // combination of the flood flags instead of once.
    let flood_flags = detach((vip.flags & (VIP_RATE_LIMIT | VIP_DROP_USER_AGENTS)) as usize);
    // Before the payload is read: a flood's excess costs a map lookup, not a scan.
    if flood_flags & VIP_RATE_LIMIT as usize != 0 && !flood::admit(frame, udp, vip) {
        return Verdict::drop(Reason::RateLimited);
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Verdict::pass(Reason::Malformed);
    };
    let Some(payload) = PacketPayload::new(
        frame.data,
        frame.end,
        udp.payload,
        udp.payload_len,
        scratch as *mut u64,
    ) else {
        return Verdict::pass(Reason::Malformed);
    };
    let carried = Carried::decode(payload.opaque(Carried::encode(udp) as usize) as u64);
    let (seed, dialog_idle_ns) = SETTINGS.get(0).map_or((0, 0), |settings| {
        (settings.hash_seed, settings.dialog_idle_ns)
    });
    let call_id = match locate::<_, KernelLimits>(&payload, seed) {
        Ok(call_id) => call_id,
        Err(Unplaceable::KeepAlive) if vip.flags & VIP_DROP_KEEP_ALIVE != 0 => {
            return Verdict::drop(Reason::KeepAlive);
        }
        Err(Unplaceable::NotSip) if vip.flags & VIP_DROP_NOT_SIP != 0 => {
            return Verdict::drop(Reason::NotSip);
        }
        // A first fragment holds only part of the datagram; the stack reassembles it.
        Err(Unplaceable::Truncated) if carried.fragment.is_some() => {
            return Verdict::pass(Reason::IpFragment);
        }
        Err(reason) => return Verdict::pass(reason.into()),
    };
    // After the Call-ID scan, on placeable messages only: the scanner's exits then meet
    // the short placement code, not the scan, which the verifier would check once per
    // exit. What is passed reaches the slow path, which drops scanners itself.
    if flood_flags & VIP_DROP_USER_AGENTS as usize != 0
        && flood::from_scanner(ctx, udp, scratch as *mut u64, vip)
    {
        return Verdict::drop(Reason::Scanner);
    }
    let placed = if dialog_idle_ns == 0 {
        from_table(vip, call_id.hash).map(|(slot, backend)| (slot, backend, Reason::CallId))
    } else {
        sticky(&DIALOGS, &DIALOG_REASONS, vip, call_id.hash, dialog_idle_ns)
    };
    let (backend_slot, backend, reason) = match placed {
        Ok(placed) => placed,
        Err(reason) => return Verdict::pass(reason),
    };
    debug!(
        ctx,
        "call-id hash {:x} backend slot {}", call_id.hash, backend_slot
    );
    // The frame as the verifier saw it before the scan knows how many header bytes it
    // checked, which differs by family and tags; a fresh view knows nothing, so that every
    // path reaches the scan in the same state and the scan is verified once.
    let frame = Frame::new(ctx);
    let nat = (vip.flags & VIP_NAT != 0).then_some(Headers {
        layout: carried.layout,
        udp: true,
    });
    let first_fragment = carried.fragment.and_then(|identification| {
        fragment_key(
            &frame,
            &Fragment {
                l3: carried.layout.l3,
                ipv6: carried.layout.ipv6,
                identification,
            },
        )
    });
    if let Some(key) = first_fragment
        && let Some(target) = FRAGMENTS.get_ptr(key)
        // SAFETY: a pointer to a map value the lookup returned, valid for this run.
        && unsafe { (*target).backend_slot } == FRAGMENTS_TO_STACK
    {
        return Verdict::pass(Reason::IpFragment);
    }
    let verdict = send(ctx, &frame, backend_slot, &backend, reason, nat.as_ref());
    if let Some(key) = first_fragment
        && verdict.went_on()
    {
        let target = FragmentTarget {
            vip_slot: vip.slot,
            backend_slot,
            vip_flags: vip.flags,
            ..FragmentTarget::default()
        };
        // A failed insert only sends the later fragments to the stack.
        let _ = FRAGMENTS.insert(key, &target, 0);
    }
    verdict
}

/// Steers a segment sent to a TCP VIP: the connection as a whole goes to one backend, by
/// direct server return whatever the VIP's flags (the daemon refuses NAT for TCP VIPs:
/// the NAT rewrite and its return path update UDP checksums and know UDP backends only).
#[inline(always)]
fn steer_tcp(ctx: &XdpContext, frame: &Frame, connection: &Connection, vip: &VipConfig) -> Verdict {
    let (seed, idle_ns) = SETTINGS.get(0).map_or((0, 0), |settings| {
        (settings.hash_seed, settings.connection_idle_ns)
    });
    let hash = connection.hash(seed);
    match sticky(&CONNECTIONS, &CONNECTION_REASONS, vip, hash, idle_ns) {
        Ok((slot, backend, reason)) => send(ctx, frame, slot, &backend, reason, None),
        Err(reason) => Verdict::pass(reason),
    }
}

/// The `FRAGMENTS` key of `fragment`'s datagram, built in per-CPU map memory.
#[inline(always)]
fn fragment_key<'a>(frame: &Frame, fragment: &Fragment) -> Option<&'a FragmentKey> {
    let key = FRAGMENT_KEY.get_ptr_mut(0)?;
    // SAFETY: a per-CPU map value; nothing else runs on this CPU meanwhile, and it stays
    // valid for the rest of the program run.
    let key = unsafe { &mut *key };
    fragment.write_key(frame, key)?;
    Some(key)
}

/// A later fragment goes where the first fragment of its datagram went, if that backend
/// is still in service; otherwise, or when the first fragment was not placed, to the
/// stack. One that arrives before its first fragment also marks the datagram
/// `FRAGMENTS_TO_STACK`, so that the first fragment follows it and the stack can
/// reassemble the whole datagram. Returns the VIP slot to count it under.
#[inline(always)]
fn steer_later_fragment(ctx: &XdpContext, frame: &Frame, fragment: &Fragment) -> (u32, Verdict) {
    let Some(key) = fragment_key(frame, fragment) else {
        return (NO_VIP, Verdict::pass(Reason::IpFragment));
    };
    let Some(target) = FRAGMENTS.get_ptr(key) else {
        let to_stack = FragmentTarget {
            vip_slot: NO_VIP,
            backend_slot: FRAGMENTS_TO_STACK,
            ..FragmentTarget::default()
        };
        // A failed insert only lets a first fragment still to come be steered alone.
        let _ = FRAGMENTS.insert(key, &to_stack, 0);
        return (NO_VIP, Verdict::pass(Reason::IpFragment));
    };
    // SAFETY: a pointer to a map value the lookup returned, valid for this program run.
    let target = unsafe { *target };
    let layout = Layout {
        l3: fragment.l3,
        l4: 0,
        ipv6: fragment.ipv6,
    };
    if target.backend_slot == FRAGMENTS_NAT_RETURN {
        let headers = Headers { layout, udp: false };
        let verdict =
            match nat::rewrite_and_route(ctx, frame, &headers, End::Source, &target.vip_address, 0)
            {
                Ok(xdp) => Verdict::forward(Reason::Fragment, xdp),
                Err(reason) => Verdict::pass(reason),
            };
        return (target.vip_slot, verdict);
    }
    let backend = match BACKENDS.get(target.backend_slot) {
        Some(backend) if backend.flags & BACKEND_IN_SERVICE != 0 => *backend,
        _ => return (target.vip_slot, Verdict::pass(Reason::IpFragment)),
    };
    let nat = (target.vip_flags & VIP_NAT != 0).then_some(Headers { layout, udp: false });
    let verdict = send(
        ctx,
        frame,
        target.backend_slot,
        &backend,
        Reason::Fragment,
        nat.as_ref(),
    );
    (target.vip_slot, verdict)
}

/// A datagram from a NAT backend's SIP address: its source becomes the VIP's, so that the
/// client sees the VIP answer. `None` when no VIP is in NAT mode or the source is not a
/// NAT backend. A first fragment leaves a `FRAGMENTS_NAT_RETURN` entry, so that the
/// datagram's later fragments get the same source (`steer_later_fragment`).
#[inline(always)]
fn steer_nat_return(ctx: &XdpContext, frame: &Frame, udp: &Udp) -> Option<(u32, Verdict)> {
    if SETTINGS.get(0)?.nat_returns == 0 {
        return None;
    }
    let key = nat::source_key(frame, udp.layout, udp.source_port)?;
    // SAFETY: the value is copied out at once.
    let nat_return = unsafe { *NAT_RETURNS.get(&key)? };
    // Before the rewrite: the later fragments still carry the backend's source.
    let first_fragment = udp
        .first_fragment
        .as_ref()
        .and_then(|fragment| fragment_key(frame, fragment));
    let headers = Headers {
        layout: udp.layout,
        udp: true,
    };
    let verdict = match nat::rewrite_and_route(
        ctx,
        frame,
        &headers,
        End::Source,
        &nat_return.vip_address,
        nat_return.vip_port,
    ) {
        Ok(xdp) => Verdict::forward(Reason::NatReturn, xdp),
        // For this host: no NAT traffic after all.
        Err(Reason::NotVip) => return None,
        Err(reason) => Verdict::pass(reason),
    };
    if let Some(key) = first_fragment
        && verdict.went_on()
    {
        let target = FragmentTarget {
            vip_slot: nat_return.vip_slot,
            backend_slot: FRAGMENTS_NAT_RETURN,
            vip_address: nat_return.vip_address,
            ..FragmentTarget::default()
        };
        // A failed insert only sends the later fragments to the stack untouched.
        let _ = FRAGMENTS.insert(key, &target, 0);
    }
    Some((nat_return.vip_slot, verdict))
}

/// What `steer_udp` needs from the parse after the Call-ID scan, carried across it as one
/// number hidden from the verifier (see `Payload::opaque`): as separate fields, every
/// combination of family, VLAN tags, IPv4 options and fragment position reaches the scan
/// with different known values, and the verifier would check the scan once for each.
struct Carried {
    layout: Layout,
    /// The IP identification of a first fragment.
    fragment: Option<u32>,
}

impl Carried {
    const FRAGMENT: u64 = 1 << 63;
    const IPV6: u64 = 1 << 62;

    #[inline(always)]
    fn encode(udp: &Udp) -> u64 {
        let layout = udp.layout;
        let fragment = match &udp.first_fragment {
            Some(fragment) => Self::FRAGMENT | fragment.identification as u64,
            None => 0,
        };
        fragment
            | if layout.ipv6 { Self::IPV6 } else { 0 }
            | ((layout.l3 as u64 & 0xff) << 32)
            | ((layout.l4 as u64 & 0xff) << 40)
    }

    /// The headers lie within the first 128 bytes, so 8 bits each are enough, and the
    /// small bound lets the verifier accept reads at offsets from them.
    #[inline(always)]
    fn decode(token: u64) -> Self {
        Self {
            layout: Layout {
                l3: ((token >> 32) & 0xff) as usize,
                l4: ((token >> 40) & 0xff) as usize,
                ipv6: token & Self::IPV6 != 0,
            },
            fragment: (token & Self::FRAGMENT != 0).then_some(token as u32),
        }
    }
}

/// Forwards the frame to `backend`, by NAT through `nat`'s headers or by direct server
/// return, and counts it for the backend; `reason` is what the forward is counted as.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    frame: &Frame,
    slot: u32,
    backend: &Backend,
    reason: Reason,
    nat: Option<&Headers>,
) -> Verdict {
    let sent = match nat {
        Some(headers) => nat::rewrite_and_route(
            ctx,
            frame,
            headers,
            End::Destination,
            &backend.address,
            backend.port,
        ),
        None => forward(ctx, frame, backend),
    };
    let xdp = match sent {
        Ok(xdp) => xdp,
        Err(reason) => return Verdict::pass(reason),
    };
    if let Some(counter) = BACKEND_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU map value; nothing else runs on this CPU meanwhile.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += frame.len() as u64;
        }
    }
    Verdict::forward(reason, xdp)
}

/// The backend the VIP's live Maglev table gives a hash (a Call-ID's or a TCP
/// connection's), if it may take new calls or connections.
#[inline(always)]
fn from_table(vip: &VipConfig, hash: u64) -> Result<(u32, Backend), Reason> {
    if vip.table_size == 0 {
        return Err(Reason::NoBackend);
    }
    // Pinned, so that LLVM bounds-checks this very value rather than folding the check
    // into the multiply-and-shift that computes it, which the verifier cannot follow.
    let entry = pin(table_entry(hash, vip.table_size));
    let table = MAGLEV.get(vip.table_index()).ok_or(Reason::NoBackend)?;
    let slot = match table.get(entry) {
        Some(&slot) if slot != MAGLEV_EMPTY => slot as u32,
        _ => return Err(Reason::NoBackend),
    };
    let backend = *BACKENDS.get(slot).ok_or(Reason::NoBackend)?;
    if backend.flags & BACKEND_IN_SERVICE == 0 {
        return Err(Reason::NoBackend);
    }
    Ok((slot, backend))
}

/// What a [`sticky`] placement is counted as: placed by the table, or kept where it was.
struct StickyReasons {
    placed: Reason,
    kept: Reason,
}

const DIALOG_REASONS: StickyReasons = StickyReasons {
    placed: Reason::CallId,
    kept: Reason::Dialog,
};

const CONNECTION_REASONS: StickyReasons = StickyReasons {
    placed: Reason::TcpConnection,
    kept: Reason::TcpEstablished,
};

/// Stickiness, for dialogs (`DIALOGS`) and TCP connections (`CONNECTIONS`) alike: the
/// backend remembered for this hash while it is fresh and its backend is still in service
/// (a draining backend is: it left the table, not service) in the same incarnation;
/// otherwise the table's choice, remembered from now on. Returns the reason to count.
#[inline(always)]
fn sticky<const ENTRIES: usize>(
    placements: &LruHashMap<PlacementKey, Placement, ENTRIES>,
    reasons: &StickyReasons,
    vip: &VipConfig,
    hash: u64,
    idle_ns: u64,
) -> Result<(u32, Backend, Reason), Reason> {
    // The coarse clock (kernel 5.11) moves once per timer tick, plenty for an idle timeout
    // of minutes, and costs a fraction of the precise one.
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let key = PlacementKey {
        hash,
        vip_slot: vip.slot,
        padding: 0,
    };
    let remembered = placements.get_ptr_mut(&key);
    if let Some(placement) = remembered {
        // SAFETY: a pointer to a map value the lookup returned; values of an LRU map stay
        // valid for the rest of the program run.
        let known = unsafe { *placement };
        let idle = now.wrapping_sub(known.last_seen_ns);
        if idle <= idle_ns
            && let Some(backend) = BACKENDS.get(known.backend_slot)
            && backend.flags & BACKEND_IN_SERVICE != 0
            && u32::from(backend.incarnation) == known.backend_incarnation
        {
            // Refreshed once per 1/64 of the idle timeout, not per message: a write to
            // an entry that messages on other CPUs read moves its cache line between
            // CPUs, which costs more than the rest of the lookup. An entry can thus
            // expire up to 1/64 of the timeout early.
            if idle > idle_ns >> 6 {
                // SAFETY: as above. Another CPU may refresh the same entry at once;
                // either time will do.
                unsafe { (*placement).last_seen_ns = now };
            }
            return Ok((known.backend_slot, *backend, reasons.kept));
        }
    }
    let (slot, backend) = from_table(vip, hash)?;
    let placed = Placement {
        last_seen_ns: now,
        backend_slot: slot,
        backend_incarnation: u32::from(backend.incarnation),
    };
    match remembered {
        // SAFETY: as above.
        Some(placement) => unsafe { *placement = placed },
        // A full map evicts its least recently used entry; a failed insert only means
        // the next packet is placed by the table again.
        None => {
            let _ = placements.insert(&key, &placed, 0);
        }
    }
    Ok((slot, backend, reasons.placed))
}

/// Direct server return: only the Ethernet addresses change; the backend holds the VIP on
/// its loopback and answers the client directly. Returns the XDP code that sends the
/// frame: `XDP_TX` back out of the ingress interface, else a redirect through `TX_PORTS`.
#[inline(always)]
fn forward(ctx: &XdpContext, frame: &Frame, backend: &Backend) -> Result<u32, Reason> {
    let (Some(destination), Some(source)) =
        (frame.pointer::<[u8; 6]>(0), frame.pointer::<[u8; 6]>(6))
    else {
        return Err(Reason::Malformed);
    };
    // SAFETY: reading a field of the context the kernel passed in.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    let xdp = if backend.ifindex == ingress {
        xdp_action::XDP_TX
    } else {
        // Before the frame changes: a frame that is passed on must leave untouched.
        TX_PORTS
            .redirect(backend.ifindex, xdp_action::XDP_PASS as u64)
            .map_err(|_| Reason::NoRoute)?
    };
    // SAFETY: `pointer` checked both ranges against the frame end.
    unsafe {
        destination.write_unaligned(backend.destination_mac);
        source.write_unaligned(backend.source_mac);
    }
    Ok(xdp)
}
