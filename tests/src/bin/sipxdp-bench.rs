//! `sipxdp-bench`: the per-packet cost of the XDP program, measured in the kernel with
//! `BPF_PROG_TEST_RUN` in repeat mode (`cargo xtask bench`).
//!
//! The program is loaded with one VIP (198.51.100.100:5060) over backends on the loopback
//! device, so a steered frame comes back as `XDP_TX`. Every frame is first run once and
//! its action, rewritten MACs and counter are checked: a broken setup fails loudly instead
//! of timing the wrong code path. Then the frames are timed in interleaved rounds (each
//! round times every frame once, so drift hits all of them alike) and the best round of
//! each is reported, as nanoseconds per packet, packets per second on one core and the
//! ratio to the reference: the cheapest XDP program there is, timed in the same run.
//! A second table times the typical INVITE with 2, 100 and 1,000 backends.
//!
//! The kernel reports the mean time of a round in whole nanoseconds, measured around its
//! own loop with the timer stopped while the task is rescheduled.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use sipxdp::dataplane::{Dataplane, LoadOptions};
use sipxdp_common::{
    flood::{FloodConfig, MAX_BURST, MAX_RATE, RateLimit, UserAgentPatterns},
    maps::{DEFAULT_DIALOG_ENTRIES, Settings, VIP_DROP_USER_AGENTS, VIP_NAT, VIP_RATE_LIMIT},
    outcome::{Action, NO_VIP, Reason},
    wire::{build::UdpFrame, ethernet},
};
use sipxdp_tests::{
    e2e,
    fixture::{
        self, TCP_VIP_SLOT, VIP_SLOT, VIP_V6_SLOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
        backend_mac, connection_owner,
    },
    frames::{BALANCER_MAC, CLIENT, CLIENT_V6, FrameSpec, TcpSegment, VIP, VIP_V6, udp_frame},
    reference_xdp::ReferenceXdp,
    routed,
    sipgen::{Call, Rng, find},
    svg_chart::{Panel, bar_panels},
    throughput,
};

const VIP_PORT: u16 = 5060;
const HASH_SEED: u64 = 0x005e_ed0f_ca11;
/// Seed of the synthetic call, so every run times the same bytes.
const CALL_SEED: u64 = 0xbe7c_4a11;
/// The project's target: the typical INVITE costs at most this many times the reference.
const TARGET_RATIO: f64 = 5.0;
/// The project's target: the cost with any backend count is within this fraction of the
/// cheapest.
const FLAT_WITHIN: f64 = 0.10;
/// Backends behind the VIP for the message table.
const FIXTURE_BACKENDS: u32 = fixture::BACKENDS;
/// Backend counts of the scaling table.
const SCALING_BACKENDS: [u32; 3] = [2, 100, 1000];
/// Payload bytes of the typical INVITE (headers and SDP).
const TYPICAL_INVITE_LEN: usize = 900;
/// Bytes of the long header section, blank line included.
const LONG_HEADER_SECTION_LEN: usize = 1400;
/// Targets of IPv6 and NAT: at most this many times the reference.
const EXTENDED_TARGET_RATIO: f64 = 6.0;
/// Target of a full dialog map: a remembered dialog costs at most this fraction more.
const FULL_MAP_WITHIN: f64 = 0.15;
const TYPICAL_INVITE: &str = "typical INVITE + SDP, Call-ID 5th header";
const FULL_DIALOGS_INVITE: &str = "typical INVITE, dialog map full (2^20 calls)";
const IPV6_INVITE: &str = "typical INVITE over IPv6";
const NAT_INVITE: &str = "typical INVITE, NAT to its backend";
const NAT_RETURN: &str = "200 OK from a NAT backend, source to the VIP";
const TCP_ESTABLISHED: &str = "TCP segment of a known connection (the typical INVITE)";
const TCP_SYN: &str = "TCP SYN of a new connection";
const NEW_CALL_INVITE: &str = "typical INVITE of a new call (dialog miss, then insert)";
const FLOOD_INVITE: &str = "typical INVITE, rate limit and 3 User-Agent patterns on";
/// One-run calls per round of a [`Group::SingleRuns`] case.
const SINGLE_RUNS: usize = 20_000;
/// Repeats of the untimed warm-up run of each frame.
const WARM_UP_REPEAT: u32 = 10_000;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Per-packet cost of the sipxdp XDP program (BPF_PROG_TEST_RUN, repeat mode).
#[derive(Debug, Parser)]
#[command(name = "sipxdp-bench")]
struct Args {
    /// Print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
    /// Timed rounds per frame; the best round counts.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Runs of the program per round (one BPF_PROG_TEST_RUN call).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Start no new round once this many seconds of timing have passed (at least one
    /// round always runs).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    budget_secs: u64,
    /// End-to-end benchmark in the daemon lab instead: sipxdp's fast and slow paths,
    /// Kamailio's dispatcher and plain routing as the balancer.
    #[arg(long)]
    e2e: bool,
    /// Where `--e2e` writes its SVG chart.
    #[arg(long, default_value = "docs/benchmarks-e2e.svg")]
    chart: std::path::PathBuf,
}

/// Where a frame should end up, checked once before it is timed.
#[derive(Clone, Debug)]
enum Verdict {
    /// `XDP_TX` to the backend that owns this Call-ID in the published table, counted
    /// under this VIP slot.
    Forwarded { call_id: String, slot: u32 },
    /// `XDP_PASS`, untouched, counted under this VIP slot and reason.
    Passed { slot: u32, reason: Reason },
    /// `XDP_PASS` from the reference program, which counts nothing.
    Reference,
    /// NAT mode: `XDP_REDIRECT` towards the next hop, counted under one of `reasons`.
    Routed { reasons: Vec<Reason> },
    /// `XDP_TX` to the backend that owns the TCP connection from `client` to the TCP VIP
    /// `vip` in the published table.
    Connection { client: SocketAddr, vip: SocketAddr },
}

/// Which table of the report a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    /// One frame each of the kinds of traffic a VIP sees, with [`FIXTURE_BACKENDS`].
    Messages,
    /// Frames that the program changes beyond their MACs (NAT), timed one run per
    /// `BPF_PROG_TEST_RUN` call: repeat mode would run the program again on the frame it
    /// rewrote, which takes another path. Each call starts from a fresh copy of the frame.
    SingleRuns,
    /// The typical INVITE with a given number of backends behind the VIP.
    Backends(u32),
}

/// How the sipxdp program that runs a case is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    backends: u32,
    /// `Settings::dialog_idle_ns`: 0 turns stickiness off.
    dialog_idle_ns: u64,
    /// The VIPs in NAT mode, over the routed namespace's backends.
    nat: bool,
    /// The `DIALOGS` map filled with other calls' dialogs before timing.
    full_dialogs: bool,
    /// TCP VIPs on the UDP VIPs' addresses and port, over the same table.
    tcp: bool,
    /// Flood protection on the IPv4 VIP: a rate limit too high for the timed runs to
    /// reach (so each run pays for its bucket and passes) and the scanners.
    flood: bool,
}

impl Setup {
    /// The daemon's defaults: direct server return, stickiness on with a one-hour idle
    /// timeout.
    const fn with_backends(backends: u32) -> Self {
        Self {
            backends,
            dialog_idle_ns: 3_600_000_000_000,
            nat: false,
            full_dialogs: false,
            tcp: false,
            flood: false,
        }
    }

    fn describe(&self) -> String {
        let stickiness = match self.dialog_idle_ns {
            0 => "stickiness off".to_owned(),
            ns => format!("dialogs idle after {} s", ns / 1_000_000_000),
        };
        let mode = if self.nat { "NAT" } else { "DSR" };
        let full = if self.full_dialogs {
            ", dialog map full"
        } else {
            ""
        };
        let tcp = if self.tcp { ", TCP VIPs" } else { "" };
        let flood = if self.flood { ", flood protection" } else { "" };
        format!(
            "{} backends, {mode}, {stickiness}{full}{tcp}{flood}",
            self.backends
        )
    }
}

/// One frame to time, and the program that runs it.
struct Case {
    group: Group,
    setup: Setup,
    label: &'static str,
    payload_len: usize,
    /// Bytes up to and including the blank line that ends the header section, the part
    /// the scanner walks; `None` for a payload without one.
    header_len: Option<usize>,
    frame: Vec<u8>,
    verdict: Verdict,
    /// Whether this is the typical INVITE the 5x target is stated for.
    typical_invite: bool,
    /// What changes from one single run to the next.
    per_run: PerRun,
}

/// What a [`Group::SingleRuns`] case changes from one run to the next.
enum PerRun {
    /// Nothing: every run gets a fresh copy of the same frame.
    Nothing,
    /// Each run opens a connection of its own with this SYN, from the next client port,
    /// so that every run places a connection the program has not seen.
    Connection(TcpSegment),
    /// Each run sends this payload with the next Call-ID (its first eight characters
    /// replaced by the run's number in hex, at `call_id_at`), so that every run places a
    /// call the program has not seen: a miss in `DIALOGS`, then an insert.
    Call {
        spec: FrameSpec,
        payload: Vec<u8>,
        call_id_at: usize,
    },
}

/// The timings of one case.
struct Timing {
    rounds: Vec<u64>,
}

impl Timing {
    fn best(&self) -> u64 {
        self.rounds.iter().copied().min().unwrap_or(0)
    }

    fn median(&self) -> u64 {
        let mut sorted = self.rounds.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    }
}

/// The programs under test: the reference and one sipxdp program per setup, each with its
/// published Maglev table.
struct Programs {
    reference: ReferenceXdp,
    sipxdp: Vec<(Setup, Dataplane, Vec<u16>)>,
    /// Connections and calls placed so far by cases with a [`PerRun`] that changes.
    opened: Cell<u32>,
}

impl Programs {
    /// Loads the reference and a sipxdp program for every distinct setup of `cases`, as
    /// the daemon loads it (a `DIALOGS` map of the default million entries). Runs in the
    /// routed namespace, for the NAT setups' FIB lookups.
    fn load(cases: &[Case]) -> Result<Self> {
        let reference = ReferenceXdp::load()?;
        let mut sipxdp: Vec<(Setup, Dataplane, Vec<u16>)> = Vec::new();
        for case in cases {
            if sipxdp.iter().any(|(setup, _, _)| *setup == case.setup) {
                continue;
            }
            let setup = case.setup;
            eprintln!("loading the XDP program: {}...", setup.describe());
            let mut dataplane = Dataplane::load(&LoadOptions::default())
                .context("loading the XDP program (is the kernel's BPF support available?)")?;
            let settings = Settings {
                hash_seed: HASH_SEED,
                dialog_idle_ns: setup.dialog_idle_ns,
                nat_returns: u32::from(setup.nat),
                ..Settings::default()
            };
            let mut flags = if setup.nat { VIP_NAT } else { 0 };
            if setup.flood {
                flags |= VIP_RATE_LIMIT | VIP_DROP_USER_AGENTS;
            }
            let table = fixture::configure(&mut dataplane, &settings, flags, setup.backends)?;
            if setup.flood {
                dataplane.set_flood(VIP_SLOT, &bench_flood()?)?;
            }
            if setup.nat {
                routed::prepare_nat(&mut dataplane, false)?;
            }
            if setup.full_dialogs {
                fill_dialogs(&dataplane)?;
            }
            if setup.tcp {
                fixture::add_tcp_vips(&mut dataplane, VIP_PORT, &table)?;
            }
            sipxdp.push((setup, dataplane, table));
        }
        Ok(Self {
            reference,
            sipxdp,
            opened: Cell::new(0),
        })
    }

    /// The sipxdp program of `setup` and its table.
    fn sipxdp(&self, setup: Setup) -> Result<(&Dataplane, &[u16])> {
        self.sipxdp
            .iter()
            .find(|(loaded, _, _)| *loaded == setup)
            .map(|(_, dataplane, table)| (dataplane, table.as_slice()))
            .with_context(|| format!("no program loaded for {}", setup.describe()))
    }

    /// Runs `case` `repeat` times on its program; the kernel's mean ns per run.
    fn time_run(&self, case: &Case, repeat: u32) -> Result<u64> {
        self.time_frame(case, &case.frame, repeat)
    }

    /// Runs `frame` `repeat` times on the program of `case`; the kernel's mean ns per run.
    fn time_frame(&self, case: &Case, frame: &[u8], repeat: u32) -> Result<u64> {
        Ok(match case.verdict {
            Verdict::Reference => self.reference.time_run(frame, repeat)?,
            _ => self.sipxdp(case.setup)?.0.time_run(frame, repeat)?,
        })
    }

    /// The number of the next connection or call a run opens.
    fn next_opened(&self) -> u32 {
        let opened = self.opened.get();
        self.opened.set(opened + 1);
        opened
    }

    /// The frame of the next call: `payload` with the next number in hex as the first
    /// eight characters of its Call-ID.
    fn next_call(&self, spec: &FrameSpec, payload: &[u8], call_id_at: usize) -> Vec<u8> {
        let mut payload = payload.to_vec();
        let number = format!("{:08x}", self.next_opened());
        payload[call_id_at..call_id_at + 8].copy_from_slice(number.as_bytes());
        udp_frame(spec, &payload)
    }

    /// The frame of the next connection `syn` opens: from the client's next port, and
    /// from the next address of its /24 after every 50,000 ports, so that no two runs
    /// share a connection.
    fn next_connection(&self, syn: &TcpSegment) -> Vec<u8> {
        let opened = self.next_opened();
        let mut client = syn.source;
        if let IpAddr::V4(address) = client.ip() {
            let [a, b, c, d] = address.octets();
            client.set_ip(IpAddr::from([
                a,
                b,
                c,
                d.wrapping_add((opened / 50_000) as u8),
            ]));
        }
        client.set_port(10_000 + (opened % 50_000) as u16);
        TcpSegment {
            source: client,
            ..syn.clone()
        }
        .frame()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sipxdp-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    check_privileges()?;
    sipxdp_tests::interrupt::tear_down_on_signal()?;
    if args.e2e {
        return end_to_end(args.markdown, &args.chart);
    }
    // NAT cases need routes and neighbours for the FIB; BPF_PROG_TEST_RUN runs programs in
    // the calling thread's namespace.
    let netns = routed::routed_namespace().context("creating the routed namespace")?;
    netns
        .enter_thread(|| measure_all(args))
        .context("entering the routed namespace")??;
    Ok(())
}

/// The project's targets for the fast path against Kamailio's dispatcher: this many
/// times its loss-free rate ...
const E2E_RATE_TARGET: f64 = 30.0;
/// ... at most 1/this of its CPU time per message.
const E2E_CPU_TARGET: f64 = 50.0;

/// `--e2e`: the five balancers of [`e2e::run`], as a table, the targets and a chart.
fn end_to_end(markdown: bool, chart: &std::path::Path) -> Result<()> {
    let results = e2e::run()?;
    let find = |wanted: e2e::Balancer| results.iter().find(|m| m.balancer == wanted);
    let rate = |measured: &e2e::Measured| {
        let capacity = &measured.capacity;
        match capacity.loss_free {
            Some(rate) if capacity.sender_limited => format!("{rate} (the generator's limit)"),
            Some(rate) => rate.to_string(),
            None => format!("below {}", throughput::RATES[0]),
        }
    };
    let micros = |value: Option<f64>| value.map_or("-".to_owned(), |us| format!("{us:.2}"));
    let rows = results
        .iter()
        .map(|measured| {
            let capacity = &measured.capacity;
            let cpu = capacity.cpu.as_ref();
            let bursts: Vec<String> = capacity
                .bursts
                .iter()
                .chain(cpu.map(|cpu| &cpu.burst))
                .map(|burst| {
                    format!(
                        "{}/s ({:.0}/s sent): {}/{}",
                        burst.rate,
                        burst.achieved_rate(),
                        burst.received,
                        burst.sent
                    )
                })
                .collect();
            let program = micros(cpu.and_then(|cpu| cpu.program_us()));
            vec![
                measured.balancer.label(),
                rate(measured),
                micros(measured.machine_us_per_message()),
                micros(measured.lab_us_per_message),
                micros(measured.balancer_us_per_message()),
                micros(cpu.map(|cpu| cpu.group_us(true))),
                program,
                bursts.join(", "),
            ]
        })
        .collect();
    let table = Table {
        columns: &[
            ("balancer", true),
            ("loss-free msg/s", false),
            ("machine CPU us/msg", false),
            ("lab's share us/msg", false),
            ("balancer CPU us/msg", false),
            ("balancer processes us/msg", false),
            ("XDP program us/msg", false),
            (
                "bursts: rate (sent at): received/sent; last: CPU burst",
                true,
            ),
        ],
        rows,
    };
    println!(
        "\nEnd to end: BYEs (65,536 Call-IDs) from the XDP generator (a thread per CPU) \
         through the balancer namespace to three backends' XDP sinks (veth, native XDP), \
         bursts of 0.5 s at rising rates until one loses a message or the generator falls \
         behind; CPU over a 1 s burst at the loss-free rate. Machine CPU: all processes' \
         CPU time above idle (generator and sinks included); lab's share: the machine CPU of \
         XDP forwarding to the backends without a balancer's work, at the same rate; \
         balancer CPU: the difference:\n"
    );
    if markdown {
        table.print_markdown();
    } else {
        table.print_plain();
    }
    if let (Some(fast), Some(kamailio)) =
        (find(e2e::Balancer::FastPath), find(e2e::Balancer::Kamailio))
    {
        println!();
        if let (Some(ours), Some(theirs)) = (fast.capacity.loss_free, kamailio.capacity.loss_free) {
            let ratio = ours as f64 / theirs as f64;
            let limited = if fast.capacity.sender_limited {
                " (the generator was the limit: a lower bound)"
            } else {
                ""
            };
            println!(
                "- target: fast path >= {E2E_RATE_TARGET}x Kamailio's loss-free rate: {} ({ratio:.1}x){limited}",
                verdict(ratio >= E2E_RATE_TARGET)
            );
        }
        if let (Some(ours), Some(theirs)) = (
            fast.balancer_us_per_message(),
            kamailio.balancer_us_per_message(),
        ) {
            let ratio = theirs / ours.max(f64::MIN_POSITIVE);
            println!(
                "- target: fast path <= 1/{E2E_CPU_TARGET} of Kamailio's CPU time per message \
                 (balancer CPU, measured alike): {} (1/{ratio:.1})",
                verdict(ratio >= E2E_CPU_TARGET)
            );
        }
        if let (Some(ours), Some(theirs)) = (
            fast.machine_us_per_message(),
            kamailio.machine_us_per_message(),
        ) {
            println!(
                "- the same with the machine CPU, the lab's own share included: 1/{:.1}",
                theirs / ours.max(f64::MIN_POSITIVE)
            );
        }
        if let (Some(ours), Some(theirs)) = (
            fast.capacity.cpu.as_ref().and_then(|cpu| cpu.program_us()),
            kamailio.capacity.cpu.as_ref(),
        ) {
            println!(
                "- the XDP program's own run time (kernel BPF statistics) against Kamailio's \
                 processes' time: 1/{:.1}",
                theirs.group_us(true) / ours.max(f64::MIN_POSITIVE)
            );
        }
    }
    let panels = [
        Panel {
            title: "highest loss-free rate, messages/s".into(),
            bars: results
                .iter()
                .map(|m| (m.balancer.label(), m.capacity.loss_free.unwrap_or(0) as f64))
                .collect(),
        },
        Panel {
            title: "balancer CPU time per message, us (all processes' CPU time above idle, less XDP forwarding's at the same rate)".into(),
            bars: results
                .iter()
                .map(|m| {
                    (
                        m.balancer.label(),
                        m.balancer_us_per_message().unwrap_or(0.0).max(0.0),
                    )
                })
                .collect(),
        },
    ];
    std::fs::write(
        chart,
        bar_panels("sipxdp end to end (cargo xtask bench --e2e)", &panels),
    )
    .with_context(|| format!("writing {}", chart.display()))?;
    println!("\nchart: {}", chart.display());
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn measure_all(args: &Args) -> Result<()> {
    let cases = cases()?;
    let programs = Programs::load(&cases)?;
    for case in &cases {
        check_verdict(&programs, case)
            .with_context(|| format!("checking frame `{}` before timing it", case.label))?;
    }
    let verified = programs
        .sipxdp(Setup::with_backends(FIXTURE_BACKENDS))?
        .0
        .verified_instructions()
        .context("reading the program's verifier statistics")?;

    let timings = measure(&programs, &cases, args)?;
    let machine = Machine::read();
    let report = Report {
        cases: &cases,
        timings: &timings,
        verified,
        machine: &machine,
        repeat: args.repeat,
    };
    if args.markdown {
        report.print_markdown();
    } else {
        report.print_plain();
    }
    Ok(())
}

/// BPF_PROG_TEST_RUN of an XDP program needs the program loaded (CAP_BPF and
/// CAP_NET_ADMIN, or CAP_SYS_ADMIN): in practice, root.
fn check_privileges() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "sipxdp-bench must run as root (effective uid is {euid}): loading the XDP program \
             and BPF_PROG_TEST_RUN need CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN); \
             try `sudo -E cargo xtask bench`"
        );
    }
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let caps = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .context("no readable CapEff line in /proc/self/status")?;
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let sys_admin = has(CAP_SYS_ADMIN);
    if !(sys_admin || has(CAP_BPF) && has(CAP_NET_ADMIN)) {
        bail!(
            "running as root but without CAP_BPF + CAP_NET_ADMIN or CAP_SYS_ADMIN \
             (CapEff {caps:#x}); BPF_PROG_TEST_RUN of an XDP program needs them"
        );
    }
    Ok(())
}

/// The frames to time, the reference first.
fn cases() -> Result<Vec<Case>> {
    let mut rng = Rng::new(CALL_SEED);
    let call = Call::random(&mut rng, 0);
    let call_id = call.call_id.as_str();
    let client = SocketAddr::new(IpAddr::V4(CLIENT), 5062);
    let vip = SocketAddr::new(IpAddr::V4(VIP), VIP_PORT);

    // The typical INVITE: 900 bytes, the Call-ID 5th of 12 headers, then the SDP.
    let invite = sized(TYPICAL_INVITE_LEN, |body| call.invite(client, vip, body))?;
    let call_id_at = find(&invite, b"\r\nCall-ID: ")
        .map(|at| at + b"\r\nCall-ID: ".len())
        .context("the generated INVITE has no `Call-ID:` header")?;
    ensure!(
        call_id.len() >= 8,
        "the generated Call-ID is shorter than a run number"
    );
    let ok = call.ok(client, vip, 300);
    let client_v6 = SocketAddr::new(IpAddr::V6(CLIENT_V6), 5062);
    let vip_v6 = SocketAddr::new(IpAddr::V6(VIP_V6), VIP_PORT);
    let invite_v6 = sized(TYPICAL_INVITE_LEN, |body| {
        call.invite(client_v6, vip_v6, body)
    })?;
    let from_backend = UdpFrame {
        ethernet: ethernet::Repr {
            destination: routed::BACK_MAC,
            source: routed::NEXT_HOP_MAC,
            vlans: [None, None],
            ethertype: 0,
        },
        source: routed::backend_address(0, false),
        destination: client.ip(),
        source_port: routed::BACKEND_PORT,
        destination_port: client.port(),
        payload: &ok,
        ttl: 64,
        identification: 0x4242,
        ipv4_options: &[],
    }
    .to_bytes()
    .map_err(|error| anyhow::anyhow!("building the backend's 200 OK: {error:?}"))?;
    let compact = Call {
        compact: true,
        ..call.clone()
    }
    .invite(client, vip, 300);
    let bye = call.bye(client, vip);
    let long_headers = long_header_section(call_id, client, vip)?;
    let no_call_id = without_header(&invite, b"Call-ID:")?;
    // An RTP packet (12-byte header, 160 bytes of G.711) sent to the SIP port by mistake.
    let mut rtp = vec![
        0x80, 0x00, 0x1f, 0x40, 0, 0, 0x0f, 0xa0, 0x5e, 0xed, 0x00, 0x01,
    ];
    rtp.extend(std::iter::repeat_n(0xd5, 160));

    let not_vip = FrameSpec {
        destination: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 101)),
        ..FrameSpec::default()
    };
    let to_vip = FrameSpec::default();
    let case = |group, label, spec: &FrameSpec, payload: &[u8], verdict| Case {
        group,
        setup: match group {
            Group::Messages | Group::SingleRuns => Setup::with_backends(FIXTURE_BACKENDS),
            Group::Backends(count) => Setup::with_backends(count),
        },
        label,
        payload_len: payload.len(),
        header_len: find(payload, b"\r\n\r\n").map(|end| end + 4),
        frame: udp_frame(spec, payload),
        verdict,
        typical_invite: false,
        per_run: PerRun::Nothing,
    };
    let forwarded = || Verdict::Forwarded {
        call_id: call_id.to_owned(),
        slot: VIP_SLOT,
    };
    let passed = |slot, reason| Verdict::Passed { slot, reason };
    let messages = Group::Messages;
    let nat = Setup {
        nat: true,
        ..Setup::with_backends(FIXTURE_BACKENDS)
    };
    let tcp = Setup {
        tcp: true,
        ..Setup::with_backends(FIXTURE_BACKENDS)
    };
    // The TCP VIP shares the UDP VIP's address and port. The known connection comes from
    // the client's port 5062; the new ones from ports 10,000 and up.
    let tcp_vip = SocketAddr::new(IpAddr::V4(VIP), VIP_PORT);
    let to_tcp_vip = Verdict::Connection {
        client,
        vip: tcp_vip,
    };
    let syn = TcpSegment::syn(client, tcp_vip);
    let mut cases = vec![
        case(
            messages,
            "reference: `return XDP_PASS` on the INVITE",
            &to_vip,
            &invite,
            Verdict::Reference,
        ),
        case(
            messages,
            "INVITE to 198.51.100.101, not a VIP",
            &not_vip,
            &invite,
            passed(NO_VIP, Reason::NotVip),
        ),
        case(
            messages,
            "CRLF keep-alive",
            &to_vip,
            b"\r\n\r\n",
            passed(VIP_SLOT, Reason::KeepAlive),
        ),
        case(
            messages,
            "non-SIP datagram (RTP)",
            &to_vip,
            &rtp,
            passed(VIP_SLOT, Reason::NotSip),
        ),
        Case {
            typical_invite: true,
            ..case(messages, TYPICAL_INVITE, &to_vip, &invite, forwarded())
        },
        case(messages, "200 OK + SDP", &to_vip, &ok, forwarded()),
        case(
            messages,
            "INVITE in compact form (i:, v:, f:, ...)",
            &to_vip,
            &compact,
            forwarded(),
        ),
        case(messages, "BYE", &to_vip, &bye, forwarded()),
        case(
            messages,
            "1,400-byte header section, Call-ID last",
            &to_vip,
            &long_headers,
            forwarded(),
        ),
        case(
            messages,
            "INVITE without Call-ID",
            &to_vip,
            &no_call_id,
            passed(VIP_SLOT, Reason::NoCallId),
        ),
        Case {
            setup: Setup {
                dialog_idle_ns: 0,
                ..Setup::with_backends(FIXTURE_BACKENDS)
            },
            ..case(
                messages,
                "typical INVITE, stickiness off",
                &to_vip,
                &invite,
                forwarded(),
            )
        },
        Case {
            setup: Setup {
                full_dialogs: true,
                ..Setup::with_backends(FIXTURE_BACKENDS)
            },
            ..case(messages, FULL_DIALOGS_INVITE, &to_vip, &invite, forwarded())
        },
        Case {
            setup: Setup {
                flood: true,
                ..Setup::with_backends(FIXTURE_BACKENDS)
            },
            ..case(messages, FLOOD_INVITE, &to_vip, &invite, forwarded())
        },
        case(
            messages,
            IPV6_INVITE,
            &FrameSpec {
                destination: IpAddr::V6(VIP_V6),
                ..FrameSpec::default()
            },
            &invite_v6,
            Verdict::Forwarded {
                call_id: call_id.to_owned(),
                slot: VIP_V6_SLOT,
            },
        ),
        Case {
            setup: tcp,
            header_len: None,
            frame: TcpSegment::data(client, tcp_vip, &invite).frame(),
            ..case(
                messages,
                TCP_ESTABLISHED,
                &to_vip,
                &invite,
                to_tcp_vip.clone(),
            )
        },
        case(
            Group::SingleRuns,
            "reference: `return XDP_PASS` on the INVITE",
            &to_vip,
            &invite,
            Verdict::Reference,
        ),
        case(
            Group::SingleRuns,
            "typical INVITE, direct server return",
            &to_vip,
            &invite,
            forwarded(),
        ),
        Case {
            per_run: PerRun::Call {
                spec: to_vip.clone(),
                payload: invite.clone(),
                call_id_at,
            },
            ..case(
                Group::SingleRuns,
                NEW_CALL_INVITE,
                &to_vip,
                &invite,
                forwarded(),
            )
        },
        Case {
            setup: nat,
            ..case(
                Group::SingleRuns,
                NAT_INVITE,
                &to_vip,
                &invite,
                Verdict::Routed {
                    reasons: vec![Reason::CallId, Reason::Dialog],
                },
            )
        },
        Case {
            setup: nat,
            payload_len: ok.len(),
            header_len: find(&ok, b"\r\n\r\n").map(|end| end + 4),
            frame: from_backend,
            ..case(
                Group::SingleRuns,
                NAT_RETURN,
                &to_vip,
                &ok,
                Verdict::Routed {
                    reasons: vec![Reason::NatReturn],
                },
            )
        },
        Case {
            setup: tcp,
            header_len: None,
            frame: syn.frame(),
            per_run: PerRun::Connection(syn),
            ..case(Group::SingleRuns, TCP_SYN, &to_vip, b"", to_tcp_vip)
        },
    ];
    for backends in SCALING_BACKENDS {
        cases.push(case(
            Group::Backends(backends),
            "typical INVITE",
            &to_vip,
            &invite,
            forwarded(),
        ));
    }
    Ok(cases)
}

/// The flood protection of [`Setup::flood`]: at the highest rate and burst, a round of
/// repeats stays within the bucket (10 million a second earns more than the runs use).
fn bench_flood() -> Result<FloodConfig> {
    Ok(FloodConfig {
        rate_limit: RateLimit::new(MAX_RATE, MAX_BURST).context("the highest rate limit")?,
        user_agents: UserAgentPatterns::new([
            b"friendly-scanner".as_slice(),
            b"sipvicious",
            b"sipcli",
        ])
        .context("the scanners' patterns")?,
    })
}

/// The message `build` makes with a body that brings it to `len` bytes, or as close below
/// as the body can get.
fn sized(len: usize, build: impl Fn(usize) -> Vec<u8>) -> Result<Vec<u8>> {
    let mut body = len;
    let mut message = build(body);
    // Each retry shrinks the body by the excess: the headers' length, then what the
    // Content-Length value and the cut of the last body line add.
    while message.len() > len && body > 0 {
        body = body.saturating_sub(message.len() - len);
        message = build(body);
    }
    ensure!(
        message.len() <= len,
        "a bare message of {} bytes is longer than {len}",
        message.len()
    );
    Ok(message)
}

/// An INVITE without a body (a delayed offer) whose header section, blank line included,
/// is [`LONG_HEADER_SECTION_LEN`] bytes, with the Call-ID as its last header: it crossed
/// three proxies (three Vias and Record-Routes) and carries the usual capability and
/// identity headers. The scanner walks all of it to reach the Call-ID.
fn long_header_section(call_id: &str, client: SocketAddr, vip: SocketAddr) -> Result<Vec<u8>> {
    let client_ip = client.ip();
    let headers = [
        "Via: SIP/2.0/UDP 203.0.113.3:5060;branch=z9hG4bK3a8f1c0e9d7b;rport".to_owned(),
        "Via: SIP/2.0/UDP 203.0.113.2:5060;branch=z9hG4bK77d2e41bc09a;rport=5060".to_owned(),
        format!(
            "Via: SIP/2.0/UDP {client};branch=z9hG4bK1f0c2b6a8e;rport=5062;received={client_ip}"
        ),
        "Record-Route: <sip:203.0.113.3;lr;ftag=4fa21c9e;did=a51.b2c1>".to_owned(),
        "Record-Route: <sip:203.0.113.2;lr;ftag=4fa21c9e;nat=yes>".to_owned(),
        "Record-Route: <sip:198.51.100.1;lr;r2=on;ftag=4fa21c9e>".to_owned(),
        "Max-Forwards: 67".to_owned(),
        "From: \"Alice Example\" <sip:alice@client.example.com>;tag=4fa21c9e".to_owned(),
        format!("To: <sip:service@{vip}>"),
        "CSeq: 1 INVITE".to_owned(),
        format!(
            "Contact: <sip:alice@{client};transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0253580100aa>\""
        ),
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, REFER, NOTIFY, INFO, MESSAGE"
            .to_owned(),
        "Supported: replaces, timer, 100rel, path, gruu, outbound".to_owned(),
        "Session-Expires: 1800;refresher=uac".to_owned(),
        "Min-SE: 90".to_owned(),
        "Accept: application/sdp, application/dtmf-relay, multipart/mixed".to_owned(),
        "P-Asserted-Identity: \"Alice Example\" <sip:+15550100@client.example.com;user=phone>"
            .to_owned(),
        "P-Charging-Vector: icid-value=AyretyU0dm+6O2IrT5tAFrbHLso=;orig-ioi=client.example.com"
            .to_owned(),
        "History-Info: <sip:service@client.example.com?Reason=SIP%3Bcause%3D302>;index=1"
            .to_owned(),
        "Privacy: none".to_owned(),
        "User-Agent: sipxdp-bench softphone 1.0 (long header section worst case)".to_owned(),
        "Content-Length: 0".to_owned(),
    ];
    let mut message = format!("INVITE sip:service@{vip} SIP/2.0\r\n");
    for header in &headers {
        message.push_str(header);
        message.push_str("\r\n");
    }
    let call_id_line = format!("Call-ID: {call_id}\r\n\r\n");
    // A Subject header takes up what is left, so the section has exactly the length wanted.
    let subject = "Subject: ";
    let filler = LONG_HEADER_SECTION_LEN
        .checked_sub(message.len() + call_id_line.len() + subject.len() + 2)
        .context("the long header section's fixed headers are already too long")?;
    message.push_str(subject);
    message.extend(std::iter::repeat_n('x', filler));
    message.push_str("\r\n");
    message.push_str(&call_id_line);
    Ok(message.into_bytes())
}

/// `message` with the header line starting with `name` removed.
fn without_header(message: &[u8], name: &[u8]) -> Result<Vec<u8>> {
    let mut needle = b"\r\n".to_vec();
    needle.extend_from_slice(name);
    let start = find(message, &needle).context("the message lacks the header to remove")? + 2;
    let length = find(&message[start..], b"\r\n").context("an unterminated header line")? + 2;
    let mut out = message[..start].to_vec();
    out.extend_from_slice(&message[start + length..]);
    Ok(out)
}

fn action_name(action: u32) -> String {
    match action {
        XDP_DROP => "XDP_DROP".to_owned(),
        XDP_PASS => "XDP_PASS".to_owned(),
        XDP_TX => "XDP_TX".to_owned(),
        XDP_REDIRECT => "XDP_REDIRECT".to_owned(),
        other => format!("XDP action {other}"),
    }
}

fn verdict_name(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Forwarded { .. } => "XDP_TX".to_owned(),
        Verdict::Passed { reason, .. } => format!("XDP_PASS ({})", reason.name()),
        Verdict::Reference => "XDP_PASS".to_owned(),
        Verdict::Routed { .. } => "XDP_REDIRECT".to_owned(),
        Verdict::Connection { .. } => "XDP_TX".to_owned(),
    }
}

/// Runs `case` once and checks the action, the frame and the counter it bumps.
/// Fills the program's `DIALOGS` map to its default size with calls of its own, each
/// remembered by running a BYE through the program once.
fn fill_dialogs(dataplane: &Dataplane) -> Result<()> {
    eprintln!("filling the dialog map with {DEFAULT_DIALOG_ENTRIES} calls...");
    let client = SocketAddr::new(IpAddr::V4(CLIENT), 5062);
    let vip = SocketAddr::new(IpAddr::V4(VIP), VIP_PORT);
    let mut rng = Rng::new(CALL_SEED ^ 1);
    for _ in 0..DEFAULT_DIALOG_ENTRIES {
        let bye = Call::random(&mut rng, 0).bye(client, vip);
        let output = dataplane.test_run(&udp_frame(&FrameSpec::default(), &bye))?;
        ensure!(output.action == XDP_TX, "a filling BYE was not forwarded");
    }
    Ok(())
}

fn check_verdict(programs: &Programs, case: &Case) -> Result<()> {
    let (slot, action, reasons) = match &case.verdict {
        // Placed by the table, or by the dialog an earlier frame of the call started.
        Verdict::Forwarded { slot, .. } => (
            *slot,
            Action::Forwarded,
            vec![Reason::CallId, Reason::Dialog],
        ),
        Verdict::Passed { slot, reason } => (*slot, Action::Passed, vec![*reason]),
        Verdict::Routed { reasons } => (VIP_SLOT, Action::Forwarded, reasons.clone()),
        // Placed by the table, or by the connection an earlier frame opened.
        Verdict::Connection { .. } => (
            TCP_VIP_SLOT,
            Action::Forwarded,
            vec![Reason::TcpConnection, Reason::TcpEstablished],
        ),
        // The reference program checks its own action on every run.
        Verdict::Reference => return programs.time_run(case, 1).map(drop),
    };
    let (dataplane, table) = programs.sipxdp(case.setup)?;
    let packets = || -> Result<u64> {
        let mut total = 0;
        for reason in &reasons {
            total += dataplane
                .counter(slot, action, *reason)
                .context("reading the counters")?
                .packets;
        }
        Ok(total)
    };
    let before = packets()?;
    let output = dataplane
        .test_run(&case.frame)
        .context("BPF_PROG_TEST_RUN of the frame")?;
    match &case.verdict {
        Verdict::Forwarded { call_id, .. } => {
            ensure!(
                output.action == XDP_TX,
                "expected XDP_TX (forwarded to a backend), got {}; the VIP, backends or \
                 Call-ID scan are not what this benchmark assumes",
                action_name(output.action)
            );
            let backend = fixture::owner(table, call_id.as_bytes(), HASH_SEED);
            ensure!(
                output.frame == with_backend_macs(&case.frame, backend),
                "the forwarded frame is not the input with the MACs of backend {backend} \
                 (the owner of Call-ID {call_id:?})"
            );
        }
        Verdict::Connection { client, vip } => {
            ensure!(
                output.action == XDP_TX,
                "expected XDP_TX (forwarded to a backend), got {}; the TCP VIP or backends \
                 are not what this benchmark assumes",
                action_name(output.action)
            );
            let backend = connection_owner(table, *client, *vip, HASH_SEED);
            ensure!(
                output.frame == with_backend_macs(&case.frame, backend),
                "the forwarded frame is not the input with the MACs of backend {backend} \
                 (the owner of the connection from {client})"
            );
        }
        Verdict::Routed { .. } => {
            ensure!(
                output.action == XDP_REDIRECT,
                "expected XDP_REDIRECT (routed by NAT), got {}; is the routed namespace set up?",
                action_name(output.action)
            );
        }
        Verdict::Passed { .. } | Verdict::Reference => {
            ensure!(
                output.action == XDP_PASS,
                "expected {}, got {}",
                verdict_name(&case.verdict),
                action_name(output.action)
            );
            ensure!(
                output.frame == case.frame,
                "a passed frame must be untouched"
            );
        }
    }
    let after = packets()?;
    let names: Vec<&str> = reasons.iter().map(|reason| reason.name()).collect();
    ensure!(
        after == before + 1,
        "expected one packet counted as {} / {} in slot {slot}, the counter went from \
         {before} to {after}",
        action.name(),
        names.join(" or ")
    );
    Ok(())
}

/// `frame` as the program forwards it to `backend`: with the backend's and the balancer's
/// MACs.
fn with_backend_macs(frame: &[u8], backend: u32) -> Vec<u8> {
    let mut expected = frame.to_vec();
    expected[..6].copy_from_slice(&backend_mac(backend));
    expected[6..12].copy_from_slice(&BALANCER_MAC);
    expected
}

/// The median of [`SINGLE_RUNS`] one-run timings of `case`, each on a fresh copy of its
/// frame (or of a new connection's SYN). A single run's time includes the kernel's clock
/// reads around it, which the reference row pays too.
fn median_single_run(programs: &Programs, case: &Case) -> Result<u64> {
    let mut times = (0..SINGLE_RUNS)
        .map(|_| match &case.per_run {
            PerRun::Nothing => programs.time_run(case, 1),
            PerRun::Connection(syn) => programs.time_frame(case, &programs.next_connection(syn), 1),
            PerRun::Call {
                spec,
                payload,
                call_id_at,
            } => programs.time_frame(case, &programs.next_call(spec, payload, *call_id_at), 1),
        })
        .collect::<Result<Vec<u64>>>()?;
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// Times every case in interleaved rounds until `rounds` are done or the budget is spent.
fn measure(programs: &Programs, cases: &[Case], args: &Args) -> Result<Vec<Timing>> {
    for case in cases {
        programs
            .time_run(case, WARM_UP_REPEAT)
            .with_context(|| format!("warming up with `{}`", case.label))?;
    }
    let budget = Duration::from_secs(args.budget_secs);
    let start = Instant::now();
    let mut timings: Vec<Timing> = cases
        .iter()
        .map(|_| Timing { rounds: Vec::new() })
        .collect();
    for round in 1..=args.rounds {
        if round > 1 && start.elapsed() >= budget {
            eprintln!(
                "time budget of {}s spent: stopping after {} of {} rounds",
                args.budget_secs,
                round - 1,
                args.rounds
            );
            break;
        }
        eprint!("round {round}/{}:", args.rounds);
        for (case, timing) in cases.iter().zip(&mut timings) {
            let ns = if case.group == Group::SingleRuns {
                median_single_run(programs, case)
            } else {
                programs.time_run(case, args.repeat)
            }
            .with_context(|| format!("timing `{}`", case.label))?;
            ensure!(
                ns > 0,
                "the kernel reported 0 ns per run for `{}`; use a larger --repeat",
                case.label
            );
            eprint!(" {ns}");
            timing.rounds.push(ns);
        }
        eprintln!(" ns");
    }
    Ok(timings)
}

/// Where the figures were taken.
struct Machine {
    cpu: String,
    cpus: usize,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Self { cpu, cpus, kernel }
    }
}

/// A table of figures, printed aligned or as Markdown.
struct Table {
    /// Column titles, and whether the column is text (left-aligned).
    columns: &'static [(&'static str, bool)],
    rows: Vec<Vec<String>>,
}

impl Table {
    fn print_plain(&self) {
        let mut widths: Vec<usize> = self.columns.iter().map(|(title, _)| title.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (index, cell) in cells.iter().enumerate() {
                let width = widths[index];
                if index > 0 {
                    out.push_str("  ");
                }
                if self.columns[index].1 {
                    out.push_str(&format!("{cell:<width$}"));
                } else {
                    out.push_str(&format!("{cell:>width$}"));
                }
            }
            out.trim_end().to_owned()
        };
        let titles: Vec<String> = self.columns.iter().map(|(t, _)| (*t).to_owned()).collect();
        println!("{}", line(&titles));
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        println!("{}", "-".repeat(total));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }

    fn print_markdown(&self) {
        let titles: Vec<&str> = self.columns.iter().map(|(title, _)| *title).collect();
        println!("| {} |", titles.join(" | "));
        let align: Vec<&str> = self
            .columns
            .iter()
            .map(|(_, text)| if *text { ":--" } else { "--:" })
            .collect();
        println!("|{}|", align.join("|"));
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
    }
}

struct Report<'a> {
    cases: &'a [Case],
    timings: &'a [Timing],
    verified: Option<u32>,
    machine: &'a Machine,
    repeat: u32,
}

impl Report<'_> {
    /// The best time of the reference program in `group`.
    fn reference(&self, group: Group) -> u64 {
        self.measured()
            .find(|(case, _)| case.group == group && matches!(case.verdict, Verdict::Reference))
            .map_or(0, |(_, timing)| timing.best())
    }

    /// The best time of the case labelled `label` in `group`, and its ratio to the group's
    /// reference.
    fn figure(&self, group: Group, label: &str) -> Option<(u64, f64)> {
        self.measured()
            .find(|(case, _)| case.group == group && case.label == label)
            .map(|(_, timing)| {
                let best = timing.best();
                (best, ratio(best, self.reference(group)))
            })
    }

    fn measured(&self) -> impl Iterator<Item = (&Case, &Timing)> {
        self.cases.iter().zip(self.timings)
    }

    /// The cases of `group`, one row each.
    fn frames(&self, group: Group) -> Table {
        let reference = self.reference(group);
        let rows = self
            .measured()
            .filter(|(case, _)| case.group == group)
            .enumerate()
            .map(|(index, (case, timing))| {
                let best = timing.best();
                vec![
                    (index + 1).to_string(),
                    case.label.to_owned(),
                    case.payload_len.to_string(),
                    case.header_len
                        .map_or_else(|| "-".to_owned(), |len| len.to_string()),
                    verdict_name(&case.verdict),
                    best.to_string(),
                    timing.median().to_string(),
                    format!("{:.2}", 1_000.0 / best as f64),
                    format!("{:.1}", ratio(best, reference)),
                ]
            })
            .collect();
        Table {
            columns: &[
                ("#", false),
                ("frame", true),
                ("payload B", false),
                ("headers B", false),
                ("verdict", true),
                ("best ns/pkt", false),
                ("median ns", false),
                ("Mpps/core", false),
                ("x reference", false),
            ],
            rows,
        }
    }

    /// The typical INVITE with each backend count.
    fn scaling(&self) -> Vec<(u32, &Timing)> {
        self.measured()
            .filter_map(|(case, timing)| match case.group {
                Group::Backends(count) => Some((count, timing)),
                Group::Messages | Group::SingleRuns => None,
            })
            .collect()
    }

    fn backends(&self) -> Table {
        let reference = self.reference(Group::Messages);
        let rows = self
            .scaling()
            .into_iter()
            .map(|(count, timing)| {
                vec![
                    count.to_string(),
                    timing.best().to_string(),
                    timing.median().to_string(),
                    format!("{:.1}", ratio(timing.best(), reference)),
                ]
            })
            .collect();
        Table {
            columns: &[
                ("backends", false),
                ("best ns/pkt", false),
                ("median ns", false),
                ("x reference", false),
            ],
            rows,
        }
    }

    fn context_lines(&self) -> Vec<String> {
        let verified = self
            .verified
            .map_or_else(|| "not reported".to_owned(), |count| count.to_string());
        let rounds = self.timings.first().map_or(0, |timing| timing.rounds.len());
        vec![
            format!(
                "machine: {} ({} CPUs), kernel {}",
                self.machine.cpu, self.machine.cpus, self.machine.kernel
            ),
            format!(
                "method: BPF_PROG_TEST_RUN, best of {rounds} rounds of {} repeats per frame",
                self.repeat
            ),
            format!("verifier: {verified} instructions processed (limit 1,000,000)"),
        ]
    }

    /// The two targets and whether this run met them.
    fn targets(&self) -> Vec<String> {
        let met = |yes: bool| if yes { "met" } else { "NOT met" };
        let mut lines = Vec::new();
        if let Some((_, timing)) = self.measured().find(|(case, _)| case.typical_invite) {
            let invite = ratio(timing.best(), self.reference(Group::Messages));
            lines.push(format!(
                "target: the typical INVITE costs at most {TARGET_RATIO:.0}x the reference \
                 program: {} ({invite:.1}x)",
                met(invite <= TARGET_RATIO)
            ));
        }
        for (group, label) in [
            (Group::Messages, IPV6_INVITE),
            (Group::SingleRuns, NAT_INVITE),
            (Group::SingleRuns, NAT_RETURN),
            (Group::SingleRuns, NEW_CALL_INVITE),
        ] {
            if let Some((_, times)) = self.figure(group, label) {
                lines.push(format!(
                    "target: {label} costs at most {EXTENDED_TARGET_RATIO:.0}x the reference \
                     program: {} ({times:.1}x)",
                    met(times <= EXTENDED_TARGET_RATIO)
                ));
            }
        }
        if let (Some((empty, _)), Some((full, _))) = (
            self.figure(Group::Messages, TYPICAL_INVITE),
            self.figure(Group::Messages, FULL_DIALOGS_INVITE),
        ) {
            let above = ratio(full, empty) - 1.0;
            lines.push(format!(
                "target: a remembered dialog costs the same within {:.0}% with the dialog map \
                 full: {} ({:+.1}%)",
                FULL_MAP_WITHIN * 100.0,
                met(above <= FULL_MAP_WITHIN),
                above * 100.0
            ));
        }
        let scaling = self.scaling();
        let best = |pick: fn(u64, u64) -> u64| {
            scaling
                .iter()
                .map(|(_, timing)| timing.best())
                .reduce(pick)
                .unwrap_or(0)
        };
        let (fastest, slowest) = (best(u64::min), best(u64::max));
        if fastest > 0 {
            let spread = ratio(slowest, fastest) - 1.0;
            lines.push(format!(
                "target: flat within {:.0}% from {} to {} backends: {} (slowest {:.1}% above \
                 fastest)",
                FLAT_WITHIN * 100.0,
                SCALING_BACKENDS[0],
                SCALING_BACKENDS[SCALING_BACKENDS.len() - 1],
                met(spread <= FLAT_WITHIN),
                spread * 100.0
            ));
        }
        lines
    }

    fn print_plain(&self) {
        for line in self.context_lines() {
            println!("{line}");
        }
        println!();
        self.frames(Group::Messages).print_plain();
        println!();
        println!("Frames the program rewrites, one run per call (median of {SINGLE_RUNS}):");
        self.frames(Group::SingleRuns).print_plain();
        println!();
        self.backends().print_plain();
        println!();
        for line in self.targets() {
            println!("{line}");
        }
    }

    fn print_markdown(&self) {
        for line in self.context_lines() {
            println!("- {line}");
        }
        println!();
        self.frames(Group::Messages).print_markdown();
        println!();
        println!("Frames the program rewrites, one run per call (median of {SINGLE_RUNS}):");
        println!();
        self.frames(Group::SingleRuns).print_markdown();
        println!();
        self.backends().print_markdown();
        println!();
        for line in self.targets() {
            println!("- {line}");
        }
    }
}

fn ratio(ns: u64, reference: u64) -> f64 {
    if reference == 0 {
        0.0
    } else {
        ns as f64 / reference as f64
    }
}
