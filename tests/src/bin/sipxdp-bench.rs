//! `sipxdp-bench`: the per-packet cost of the XDP program, measured in the kernel with
//! `BPF_PROG_TEST_RUN` in repeat mode (`cargo xtask bench`).
//!
//! The program is loaded with one VIP (198.51.100.100:5060) over three backends on the
//! loopback device, so a steered frame comes back as `XDP_TX`. Every frame is first run
//! once and its action, rewritten MACs and counter are checked: a broken setup fails
//! loudly instead of timing the wrong code path. Then the frames are timed in interleaved
//! rounds (each round times every frame once, so drift hits all of them alike) and the
//! best round of each is reported, as nanoseconds per packet, packets per second on one
//! core and the ratio to the floor: a frame that is not for any VIP.
//!
//! The kernel reports the mean time of a round in whole nanoseconds, measured around its
//! own loop with the timer stopped while the task is rescheduled.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use sipxdp::dataplane::{Dataplane, LoadOptions};
use sipxdp_common::{
    hash::xxh64_bytes,
    maps::table_entry,
    outcome::{Action, NO_VIP, Reason},
};
use sipxdp_tests::{
    fixture::{self, VIP_SLOT, backend_mac},
    frames::{BALANCER_MAC, CLIENT, FrameSpec, VIP, udp_frame},
    sipgen::{Call, Rng},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const VIP_PORT: u16 = 5060;
const HASH_SEED: u64 = 0x005e_ed0f_ca11;
/// Seed of the synthetic call, so every run times the same bytes.
const CALL_SEED: u64 = 0xbe7c_4a11;
/// The project's target: a SIP message costs at most this many times the floor.
const TARGET_RATIO: f64 = 5.0;
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
    /// End-to-end benchmark against Kamailio's dispatcher (not implemented yet).
    #[arg(long)]
    e2e: bool,
}

/// Where a frame should end up, checked once before it is timed.
#[derive(Clone, Debug)]
enum Verdict {
    /// `XDP_TX` to the backend that owns this Call-ID in the published table.
    Forwarded { call_id: String },
    /// `XDP_PASS`, untouched, counted under this VIP slot and reason.
    Passed { slot: u32, reason: Reason },
}

/// One frame to time.
struct Case {
    label: &'static str,
    payload_len: usize,
    frame: Vec<u8>,
    verdict: Verdict,
    /// Whether the frame is a SIP message the 5x target applies to.
    sip_message: bool,
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
    if args.e2e {
        bail!(
            "--e2e (end-to-end benchmark against Kamailio's dispatcher) is not implemented yet; \
             run without --e2e for the BPF_PROG_TEST_RUN micro-benchmark"
        );
    }
    check_privileges()?;

    let cases = cases()?;
    eprintln!("loading the XDP program...");
    let mut dataplane = Dataplane::load(&LoadOptions::default())
        .context("loading the XDP program (is the kernel's BPF support available?)")?;
    let table = fixture::configure(&mut dataplane, HASH_SEED, 0)?;
    for case in &cases {
        check_verdict(&dataplane, &table, case)
            .with_context(|| format!("checking frame `{}` before timing it", case.label))?;
    }
    let verified = dataplane
        .verified_instructions()
        .context("reading the program's verifier statistics")?;

    let timings = measure(&dataplane, &cases, args)?;
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

/// The frames to time, floor first.
fn cases() -> Result<Vec<Case>> {
    let mut rng = Rng::new(CALL_SEED);
    let call = Call::random(&mut rng, 0);
    let call_id = call.call_id.as_str();
    let client = SocketAddr::new(IpAddr::V4(CLIENT), 5062);
    let vip = SocketAddr::new(IpAddr::V4(VIP), VIP_PORT);

    // A realistic INVITE of about 550 bytes (the minimal SDP): Call-ID is the 5th of 10 headers.
    let invite = call.invite(client, vip, 0);
    ensure!(
        find(&invite, b"\r\nCall-ID: ").is_some(),
        "the generated INVITE has no `Call-ID:` header"
    );
    let bye = call.bye(client, vip);
    let long_invite = long_invite(call_id, client, vip);
    let no_call_id = without_header(&invite, b"Call-ID:")?;

    let not_vip = FrameSpec {
        destination: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 101)),
        ..FrameSpec::default()
    };
    let to_vip = FrameSpec::default();
    let case = |label, spec: &FrameSpec, payload: &[u8], verdict, sip_message| Case {
        label,
        payload_len: payload.len(),
        frame: udp_frame(spec, payload),
        verdict,
        sip_message,
    };
    let forwarded = || Verdict::Forwarded {
        call_id: call_id.to_owned(),
    };
    Ok(vec![
        case(
            "not for a VIP (floor): INVITE to 198.51.100.101",
            &not_vip,
            &invite,
            Verdict::Passed {
                slot: NO_VIP,
                reason: Reason::NotVip,
            },
            false,
        ),
        case(
            "CRLF keep-alive to the VIP",
            &to_vip,
            b"\r\n\r\n",
            Verdict::Passed {
                slot: VIP_SLOT,
                reason: Reason::KeepAlive,
            },
            false,
        ),
        case("BYE", &to_vip, &bye, forwarded(), true),
        case(
            "INVITE + SDP, Call-ID mid-headers",
            &to_vip,
            &invite,
            forwarded(),
            true,
        ),
        case(
            "INVITE, Call-ID last header",
            &to_vip,
            &long_invite,
            forwarded(),
            true,
        ),
        case(
            "INVITE without Call-ID (passed)",
            &to_vip,
            &no_call_id,
            Verdict::Passed {
                slot: VIP_SLOT,
                reason: Reason::NoCallId,
            },
            true,
        ),
    ])
}

/// An INVITE of about 1,400 bytes that crossed three proxies (three Vias, three
/// Record-Routes, the usual capability headers), whose Call-ID is the last header: the
/// scanner has to walk the whole header section to reach it.
fn long_invite(call_id: &str, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
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
        "Min-SE: 90".to_owned(),
        "P-Asserted-Identity: \"Alice Example\" <sip:+15550100@client.example.com;user=phone>"
            .to_owned(),
        "User-Agent: sipxdp-bench softphone 1.0 (long header section worst case)".to_owned(),
        "Content-Type: application/sdp".to_owned(),
    ];
    let body = format!(
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 {client_ip}\r\ns=-\r\n\
         c=IN IP4 {client_ip}\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 9 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let mut message = format!("INVITE sip:service@{vip} SIP/2.0\r\n");
    for header in &headers {
        message.push_str(header);
        message.push_str("\r\n");
    }
    message.push_str(&format!("Content-Length: {}\r\n", body.len()));
    message.push_str(&format!("Call-ID: {call_id}\r\n\r\n"));
    message.push_str(&body);
    message.into_bytes()
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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
    }
}

/// Runs `case` once and checks the action, the frame and the counter it bumps.
fn check_verdict(dataplane: &Dataplane, table: &[u16], case: &Case) -> Result<()> {
    let (slot, action, reason) = match &case.verdict {
        Verdict::Forwarded { .. } => (VIP_SLOT, Action::Forwarded, Reason::CallId),
        Verdict::Passed { slot, reason } => (*slot, Action::Passed, *reason),
    };
    let packets = |dataplane: &Dataplane| -> Result<u64> {
        Ok(dataplane
            .counter(slot, action, reason)
            .context("reading the counters")?
            .packets)
    };
    let before = packets(dataplane)?;
    let output = dataplane
        .test_run(&case.frame)
        .context("BPF_PROG_TEST_RUN of the frame")?;
    match &case.verdict {
        Verdict::Forwarded { call_id } => {
            ensure!(
                output.action == XDP_TX,
                "expected XDP_TX (forwarded to a backend), got {}; the VIP, backends or \
                 Call-ID scan are not what this benchmark assumes",
                action_name(output.action)
            );
            let hash = xxh64_bytes(call_id.as_bytes(), HASH_SEED);
            let entry = table_entry(hash, table.len() as u32);
            let backend = u32::from(table[entry]);
            let mut expected = case.frame.clone();
            expected[..6].copy_from_slice(&backend_mac(backend));
            expected[6..12].copy_from_slice(&BALANCER_MAC);
            ensure!(
                output.frame == expected,
                "the forwarded frame is not the input with the MACs of backend {backend} \
                 (the owner of Call-ID {call_id:?})"
            );
        }
        Verdict::Passed { .. } => {
            ensure!(
                output.action == XDP_PASS,
                "expected XDP_PASS ({}), got {}",
                reason.name(),
                action_name(output.action)
            );
            ensure!(
                output.frame == case.frame,
                "a passed frame must be untouched"
            );
        }
    }
    let after = packets(dataplane)?;
    ensure!(
        after == before + 1,
        "expected one packet counted as {} / {} in slot {slot}, the counter went from \
         {before} to {after}",
        action.name(),
        reason.name()
    );
    Ok(())
}

/// Times every case in interleaved rounds until `rounds` are done or the budget is spent.
fn measure(dataplane: &Dataplane, cases: &[Case], args: &Args) -> Result<Vec<Timing>> {
    for case in cases {
        dataplane
            .time_run(&case.frame, WARM_UP_REPEAT)
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
            let ns = dataplane
                .time_run(&case.frame, args.repeat)
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

struct Report<'a> {
    cases: &'a [Case],
    timings: &'a [Timing],
    verified: Option<u32>,
    machine: &'a Machine,
    repeat: u32,
}

impl Report<'_> {
    fn header(&self) -> [&'static str; 8] {
        [
            "#",
            "frame",
            "payload B",
            "verdict",
            "best ns/pkt",
            "median ns",
            "Mpps/core",
            "x floor",
        ]
    }

    fn rows(&self) -> Vec<[String; 8]> {
        let floor = self.timings.first().map_or(0, Timing::best);
        self.cases
            .iter()
            .zip(self.timings)
            .enumerate()
            .map(|(index, (case, timing))| {
                let best = timing.best();
                [
                    (index + 1).to_string(),
                    case.label.to_owned(),
                    case.payload_len.to_string(),
                    verdict_name(&case.verdict),
                    best.to_string(),
                    timing.median().to_string(),
                    format!("{:.2}", 1_000.0 / best as f64),
                    format!("{:.1}", ratio(best, floor)),
                ]
            })
            .collect()
    }

    fn rounds(&self) -> usize {
        self.timings.first().map_or(0, |timing| timing.rounds.len())
    }

    fn context_lines(&self) -> Vec<String> {
        let verified = self
            .verified
            .map_or_else(|| "not reported".to_owned(), |count| count.to_string());
        vec![
            format!(
                "machine: {} ({} CPUs), kernel {}",
                self.machine.cpu, self.machine.cpus, self.machine.kernel
            ),
            format!(
                "method: BPF_PROG_TEST_RUN, best of {} rounds of {} repeats per frame",
                self.rounds(),
                self.repeat
            ),
            format!("verifier: {verified} instructions processed (limit 1,000,000)"),
        ]
    }

    /// Whether every SIP message stays within the target ratio, and the worst one.
    fn target(&self) -> String {
        let floor = self.timings.first().map_or(0, Timing::best);
        let worst = self
            .cases
            .iter()
            .zip(self.timings)
            .filter(|(case, _)| case.sip_message)
            .map(|(case, timing)| (case.label, ratio(timing.best(), floor)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match worst {
            Some((label, worst)) => format!(
                "target: a SIP message costs at most {TARGET_RATIO:.0}x the floor: {} \
                 (worst: {worst:.1}x, {label})",
                if worst <= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            None => "target: no SIP message measured".to_owned(),
        }
    }

    fn print_plain(&self) {
        for line in self.context_lines() {
            println!("{line}");
        }
        println!();
        let header = self.header().map(str::to_owned);
        let rows = self.rows();
        let mut widths = header.clone().map(|cell| cell.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        // Text columns are left-aligned, numbers right-aligned.
        let left = [false, true, false, true, false, false, false, false];
        let line = |cells: &[String; 8]| {
            let mut out = String::new();
            for (index, cell) in cells.iter().enumerate() {
                let width = widths[index];
                if index > 0 {
                    out.push_str("  ");
                }
                if left[index] {
                    out.push_str(&format!("{cell:<width$}"));
                } else {
                    out.push_str(&format!("{cell:>width$}"));
                }
            }
            out.trim_end().to_owned()
        };
        println!("{}", line(&header));
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        println!("{}", "-".repeat(total));
        for row in &rows {
            println!("{}", line(row));
        }
        println!();
        println!("{}", self.target());
    }

    fn print_markdown(&self) {
        for line in self.context_lines() {
            println!("- {line}");
        }
        println!();
        let header = self.header();
        println!("| {} |", header.join(" | "));
        let align = ["--:", ":--", "--:", ":--", "--:", "--:", "--:", "--:"];
        println!("|{}|", align.join("|"));
        for row in self.rows() {
            println!("| {} |", row.join(" | "));
        }
        println!();
        println!("{}", self.target());
    }
}

fn ratio(ns: u64, floor: u64) -> f64 {
    if floor == 0 {
        0.0
    } else {
        ns as f64 / floor as f64
    }
}
