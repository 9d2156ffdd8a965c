//! `[[vips]]` and their `[[vips.backends]]`: the checks that keep the kernel's tables
//! consistent (no two VIPs or backends with one key, within the kernel's limits) and that
//! every VIP can actually place calls.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::{IpAddr, SocketAddr},
    ops::Range,
};

use sipxdp_common::{
    maglev::{
        DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE, MIN_ENTRIES_PER_BACKEND, MIN_TABLE_SIZE, is_prime,
    },
    maps::{MAX_BACKENDS, MAX_VIPS},
};
use toml::Spanned;

use super::{
    fields::{self, duplicate},
    flood,
    model::{
        AdminState, BackendConfig, ForwardingMode, Policy, Protocol, UnplaceablePolicy, VipConfig,
    },
    parse::{RawBackend, RawVip},
    problems::Problems,
};

/// The SIP port (RFC 3261, section 19.1.2).
const DEFAULT_PORT: u16 = 5060;

const PORT: (i64, i64) = (1, u16::MAX as i64);
const WEIGHT: (i64, i64) = (0, u32::MAX as i64);
const DEFAULT_WEIGHT: u32 = 1;

const PROTOCOLS: &[(&str, Protocol)] = &[("udp", Protocol::Udp), ("tcp", Protocol::Tcp)];
const MODES: &[(&str, ForwardingMode)] =
    &[("dsr", ForwardingMode::Dsr), ("nat", ForwardingMode::Nat)];
const POLICIES: &[(&str, Policy)] = &[("pass", Policy::Pass), ("drop", Policy::Drop)];
const UNPLACEABLE: &[(&str, UnplaceablePolicy)] = &[
    ("drop", UnplaceablePolicy::Drop),
    ("fallback", UnplaceablePolicy::Fallback),
];
const STATES: &[(&str, AdminState)] = &[
    (AdminState::Active.name(), AdminState::Active),
    (AdminState::Draining.name(), AdminState::Draining),
    (AdminState::Disabled.name(), AdminState::Disabled),
];

/// Checks every VIP and the relations between them. Returns the VIPs whose address could
/// be parsed; the result is meaningful only if no problem was recorded.
pub(super) fn vips(raw: &[Spanned<RawVip>], problems: &mut Problems) -> Vec<VipConfig> {
    let mut seen = Seen::default();
    let mut backend_count = 0;
    let mut vips = Vec::new();
    for (index, raw_vip) in raw.iter().enumerate() {
        if index == MAX_VIPS as usize {
            problems.at(
                raw_vip.span(),
                format!("too many VIPs: the kernel's tables hold at most {MAX_VIPS}"),
            );
        }
        count_backends(raw_vip.get_ref(), &mut backend_count, problems);
        if let Some(vip) = vip(raw_vip, problems) {
            seen.check(&vip, raw_vip, problems);
            vips.push(vip);
        }
    }
    vips
}

/// The VIPs seen so far, by key and by name, with where each was defined.
#[derive(Default)]
struct Seen {
    keys: HashMap<(SocketAddr, Protocol), Range<usize>>,
    names: HashMap<String, Range<usize>>,
}

impl Seen {
    /// Records `vip`, reporting it if its address, port and protocol or its name repeat
    /// those of an earlier VIP.
    fn check(&mut self, vip: &VipConfig, raw_vip: &Spanned<RawVip>, problems: &mut Problems) {
        let raw = raw_vip.get_ref();
        let key = (SocketAddr::new(vip.address, vip.port), vip.protocol);
        if let Some(first) = self.keys.get(&key) {
            let what = format_args!("VIP {}/{}", key.0, key.1);
            duplicate(problems, raw.address.span(), what, first);
            // A repeated VIP with a default name repeats the name too: one problem says it.
            return;
        }
        self.keys.insert(key, raw.address.span());
        let name_span = raw.name.as_ref().map_or(raw_vip.span(), Spanned::span);
        match self.names.entry(vip.name.clone()) {
            Entry::Occupied(first) => {
                let what = format_args!("VIP name {:?}", vip.name);
                duplicate(problems, name_span, what, first.get());
            }
            Entry::Vacant(vacant) => {
                vacant.insert(name_span);
            }
        }
    }
}

/// Counts the backends of all VIPs so far, reporting the first beyond the kernel's slots.
fn count_backends(raw: &RawVip, count: &mut usize, problems: &mut Problems) {
    for backend in raw.backends.iter().flat_map(|list| list.get_ref()) {
        *count += 1;
        if *count == MAX_BACKENDS as usize + 1 {
            problems.at(
                backend.span(),
                format!(
                    "too many backends: the kernel's tables hold at most {MAX_BACKENDS} \
                     for all VIPs together"
                ),
            );
        }
    }
}

/// What a backend is checked against. A VIP value that is bad (and already reported) is
/// `None` or `false`, so that it causes no further problem with the backends.
struct Vip<'a> {
    /// The VIP's name, or its address as written, for messages.
    label: &'a str,
    address: Option<IpAddr>,
    port: Option<u16>,
    /// The VIP is in DSR mode.
    dsr: bool,
}

/// One VIP; `None` if its address is unusable.
fn vip(raw_vip: &Spanned<RawVip>, problems: &mut Problems) -> Option<VipConfig> {
    let raw = raw_vip.get_ref();
    let address = fields::unicast_address(problems, &raw.address, "VIP address");
    let port = fields::integer(problems, raw.port.as_ref(), "port", PORT, DEFAULT_PORT);
    let protocol = fields::keyword(
        problems,
        raw.protocol.as_ref(),
        "protocol",
        PROTOCOLS,
        Protocol::Udp,
    );
    let mode = fields::keyword(
        problems,
        raw.mode.as_ref(),
        "mode",
        MODES,
        ForwardingMode::Dsr,
    );
    let name = match &raw.name {
        Some(name) => {
            if name.get_ref().trim().is_empty() {
                problems.at(name.span(), "VIP name must not be empty");
            }
            Some(name.get_ref().clone())
        }
        None => address.map(|address| format!("{}/{protocol}", SocketAddr::new(address, port))),
    };
    // A bad value was replaced by the default, which differs from what was written.
    let port_is_good = raw
        .port
        .as_ref()
        .is_none_or(|raw| *raw.get_ref() == i64::from(port));
    let mode_is_good = raw.mode.as_ref().is_none_or(|raw| {
        MODES
            .iter()
            .any(|(name, known)| name == raw.get_ref() && *known == mode)
    });
    let context = Vip {
        label: name.as_deref().unwrap_or(raw.address.get_ref()),
        address,
        port: port_is_good.then_some(port),
        dsr: mode_is_good && mode == ForwardingMode::Dsr,
    };
    let backends = backends(raw_vip, &context, problems);
    let weighted = backends.iter().filter(|backend| backend.weight > 0).count();
    let all_parsed = raw.backends.as_ref().map(|list| list.get_ref().len()) == Some(backends.len());
    let can_take_calls =
        |backend: &BackendConfig| backend.weight > 0 && backend.state == AdminState::Active;
    if all_parsed && !backends.is_empty() && !backends.iter().any(can_take_calls) {
        problems.at(
            raw_vip.span(),
            format!(
                "VIP {} has no backend that can take calls: each has weight 0 or is \
                 draining or disabled",
                context.label
            ),
        );
    }
    let table_size = table_size(raw_vip, weighted, problems);
    let keep_alive = fields::keyword(
        problems,
        raw.keep_alive.as_ref(),
        "keep_alive",
        POLICIES,
        Policy::Pass,
    );
    let non_sip = fields::keyword(
        problems,
        raw.non_sip.as_ref(),
        "non_sip",
        POLICIES,
        Policy::Pass,
    );
    let unplaceable = fields::keyword(
        problems,
        raw.unplaceable.as_ref(),
        "unplaceable",
        UNPLACEABLE,
        UnplaceablePolicy::Drop,
    );
    let flood = flood::vip(raw, protocol, problems);
    Some(VipConfig {
        name: name?,
        address: address?,
        port,
        protocol,
        mode,
        keep_alive,
        non_sip,
        unplaceable,
        table_size,
        flood,
        backends,
    })
}

/// The Maglev table size: a prime in the kernel's range with room for
/// `MIN_ENTRIES_PER_BACKEND` entries per backend of non-zero weight. Backends that are
/// draining or disabled count too, as they may come back at run time without a reload.
fn table_size(raw_vip: &Spanned<RawVip>, weighted: usize, problems: &mut Problems) -> u32 {
    let (size, span) = match &raw_vip.get_ref().table_size {
        Some(size) => (*size.get_ref(), size.span()),
        None => (i64::from(DEFAULT_TABLE_SIZE), raw_vip.span()),
    };
    let Some(size) = u32::try_from(size)
        .ok()
        .filter(|size| (MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(size))
    else {
        problems.at(
            span,
            format!("table_size must be between {MIN_TABLE_SIZE} and {MAX_TABLE_SIZE}, not {size}"),
        );
        return DEFAULT_TABLE_SIZE;
    };
    if !is_prime(size) {
        let below = (MIN_TABLE_SIZE..size).rev().find(|&n| is_prime(n));
        let above = (size..=MAX_TABLE_SIZE).find(|&n| is_prime(n));
        let nearby: Vec<String> = below
            .into_iter()
            .chain(above)
            .map(|n| n.to_string())
            .collect();
        problems.at(
            span.clone(),
            format!(
                "table_size {size} is not prime, as Maglev needs; primes nearby: {}",
                nearby.join(", ")
            ),
        );
    }
    let needed = weighted as u64 * u64::from(MIN_ENTRIES_PER_BACKEND);
    if u64::from(size) < needed {
        problems.at(
            span,
            format!(
                "table_size {size} is too small for {weighted} backends of non-zero weight: \
                 Maglev needs {MIN_ENTRIES_PER_BACKEND} entries per backend, at least {needed}"
            ),
        );
    }
    size
}

/// The backends of one VIP: at least one, each once. Returns those whose address could be
/// parsed.
fn backends(raw_vip: &Spanned<RawVip>, vip: &Vip, problems: &mut Problems) -> Vec<BackendConfig> {
    let none = format!(
        "VIP {} has no backends: add at least one [[vips.backends]]",
        vip.label
    );
    let Some(list) = &raw_vip.get_ref().backends else {
        problems.at(raw_vip.span(), none);
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        problems.at(list.span(), none);
    }
    let mut seen = HashMap::new();
    list.get_ref()
        .iter()
        .filter_map(|raw| backend(raw.get_ref(), vip, &mut seen, problems))
        .collect()
}

/// One backend; `None` if its address is unusable.
fn backend(
    raw: &RawBackend,
    vip: &Vip,
    seen: &mut HashMap<SocketAddr, Range<usize>>,
    problems: &mut Problems,
) -> Option<BackendConfig> {
    let address = fields::unicast_address(problems, &raw.address, "backend address");
    if let (Some(backend), Some(vip_address)) = (address, vip.address)
        && backend.is_ipv4() != vip_address.is_ipv4()
    {
        problems.at(
            raw.address.span(),
            format!(
                "backend {backend} is {} but VIP {} is {}: a VIP forwards within its \
                 address family",
                family(backend),
                vip.label,
                family(vip_address)
            ),
        );
    }
    let vip_port = vip.port.unwrap_or(DEFAULT_PORT);
    let port = fields::integer(problems, raw.port.as_ref(), "port", PORT, vip_port);
    if let Some(raw_port) = &raw.port
        && vip.dsr
        && vip.port.is_some_and(|expected| expected != port)
    {
        problems.at(
            raw_port.span(),
            format!(
                "backend port {port} differs from the VIP's port {vip_port}: in DSR mode only \
                 Ethernet addresses change, so a backend must listen on the VIP's port \
                 (or the VIP must use mode = \"nat\")"
            ),
        );
    }
    let weight = fields::integer(
        problems,
        raw.weight.as_ref(),
        "weight",
        WEIGHT,
        DEFAULT_WEIGHT,
    );
    let mac = raw.mac.as_ref().and_then(|mac| fields::mac(problems, mac));
    let state = fields::keyword(
        problems,
        raw.state.as_ref(),
        "state",
        STATES,
        AdminState::Active,
    );
    let address = address?;
    let key = SocketAddr::new(address, port);
    match seen.entry(key) {
        Entry::Occupied(first) => {
            duplicate(
                problems,
                raw.address.span(),
                format_args!("backend {key}"),
                first.get(),
            );
        }
        Entry::Vacant(vacant) => {
            vacant.insert(raw.address.span());
        }
    }
    Some(BackendConfig {
        address,
        port,
        weight,
        mac,
        state,
    })
}

fn family(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}
