//! The Prometheus endpoint: what the daemon knows at the moment of a scrape, in the
//! Prometheus text format ([`exposition`], pure), served read-only over HTTP
//! ([`Exporter`]). Counters are the kernel's per-CPU counters summed at scrape time.

mod http;

use std::fmt::Write as _;

use prometheus::{Encoder as _, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use thiserror::Error;

pub use self::http::{Exporter, HttpError, Reply, Scrape};
use crate::{
    health::{LATENCY_BUCKETS_US, LatencyHistogram},
    report::Report,
};

/// Why the metrics could not be written.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("building the metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("the metrics text is not UTF-8")]
    Encoding,
}

/// What the daemon knows about one backend besides its counters.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendState {
    pub vip: String,
    pub backend: String,
    pub weight: u32,
    /// `active`, `draining` or `disabled`.
    pub admin: &'static str,
    pub up: bool,
    /// Health checks of the backend are running: false when checks are off, or when its
    /// address family has no address to send them from.
    pub checked: bool,
    /// The last health check's round trip, in seconds.
    pub latency_seconds: Option<f64>,
    /// Every health check's round trip.
    pub latencies: LatencyHistogram,
    /// Health checks that got no acceptable answer, since the daemon started.
    pub check_failures: u64,
}

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub interface: String,
    /// The mode the kernel attached in: `driver`, `skb`, `offload`, `multi`, or
    /// `unknown` when it could not be read back.
    pub mode: &'static str,
    /// The configured `xdp_mode`: `auto`, `driver` or `skb`.
    pub requested: &'static str,
}

/// A VIP's Maglev tables.
#[derive(Clone, Debug, PartialEq)]
pub struct TableState {
    pub vip: String,
    /// Tables published since the daemon started: each one flips the live generation.
    pub publications: u64,
    /// When the last one was, in seconds since the Unix epoch.
    pub last_rebuild_seconds: f64,
}

/// Everything one scrape reports.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub report: Report,
    pub backends: Vec<BackendState>,
    pub attached: Vec<Attached>,
    /// Instructions the verifier processed to accept the program.
    pub verified_instructions: Option<u32>,
    pub tables: Vec<TableState>,
    /// The slow path's messages; `None` when it is off.
    pub slow_path: Option<Vec<SlowPathCount>>,
    /// The messages the slow path sent to each backend.
    pub slow_path_sent: Vec<SlowPathSent>,
    /// How full the LRU maps were at their last count.
    pub maps: Vec<MapFill>,
}

/// How many entries an LRU map held at its last count, of how many it can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFill {
    /// The map's name (`DIALOGS`, `CONNECTIONS`, `FRAGMENTS`, `FLOOD_SOURCES`).
    pub map: &'static str,
    pub entries: u64,
    pub max_entries: u32,
}

/// Messages the slow path handled with one outcome for one cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowPathCount {
    pub vip: String,
    /// `forwarded`, `fallback` or `dropped`.
    pub outcome: &'static str,
    pub reason: &'static str,
    pub messages: u64,
}

/// Messages the slow path sent to one backend of a VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowPathSent {
    pub vip: String,
    pub backend: String,
    pub messages: u64,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(counter.clone()))?;
    Ok(counter)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let gauge = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// The metrics of `snapshot` in the Prometheus text format (version 0.0.4).
pub fn exposition(snapshot: &Snapshot) -> Result<String, MetricsError> {
    let registry = Registry::new();
    let packets = counter(
        &registry,
        "sipxdp_packets_total",
        "Packets the XDP program handled, by VIP (\"none\" for traffic to no VIP), action and reason.",
        &["vip", "action", "reason"],
    )?;
    let bytes = counter(
        &registry,
        "sipxdp_bytes_total",
        "Bytes of the frames the XDP program handled, by VIP, action and reason.",
        &["vip", "action", "reason"],
    )?;
    for outcome in &snapshot.report.outcomes {
        let vip = outcome.vip.as_deref().unwrap_or("none");
        let labels = [vip, outcome.action.name(), outcome.reason.name()];
        packets.with_label_values(&labels).inc_by(outcome.packets);
        bytes.with_label_values(&labels).inc_by(outcome.bytes);
    }
    let backend_packets = counter(
        &registry,
        "sipxdp_backend_packets_total",
        "Packets the XDP program forwarded to a backend.",
        &["vip", "backend"],
    )?;
    let backend_bytes = counter(
        &registry,
        "sipxdp_backend_bytes_total",
        "Bytes of the frames the XDP program forwarded to a backend.",
        &["vip", "backend"],
    )?;
    for traffic in &snapshot.report.backends {
        let labels = [traffic.vip.as_str(), &traffic.backend.to_string()];
        backend_packets
            .with_label_values(&labels)
            .inc_by(traffic.packets);
        backend_bytes
            .with_label_values(&labels)
            .inc_by(traffic.bytes);
    }
    let up = gauge(
        &registry,
        "sipxdp_backend_up",
        "1 when the backend's health checks pass (or are off), 0 when it is down.",
        &["vip", "backend"],
    )?;
    let checked = gauge(
        &registry,
        "sipxdp_backend_checked",
        "1 while the backend's health checks run, 0 when checks are off or its address family has no address to send them from.",
        &["vip", "backend"],
    )?;
    let state = gauge(
        &registry,
        "sipxdp_backend_state",
        "1 for the backend's admin state (active, draining or disabled), 0 for the others.",
        &["vip", "backend", "state"],
    )?;
    let weight = gauge(
        &registry,
        "sipxdp_backend_weight",
        "The backend's configured weight.",
        &["vip", "backend"],
    )?;
    let failures = counter(
        &registry,
        "sipxdp_health_check_failures_total",
        "Health checks of the backend that got no acceptable answer.",
        &["vip", "backend"],
    )?;
    for backend in &snapshot.backends {
        let labels = [backend.vip.as_str(), backend.backend.as_str()];
        up.with_label_values(&labels).set(i64::from(backend.up));
        checked
            .with_label_values(&labels)
            .set(i64::from(backend.checked));
        weight
            .with_label_values(&labels)
            .set(i64::from(backend.weight));
        failures
            .with_label_values(&labels)
            .inc_by(backend.check_failures);
        for name in ["active", "draining", "disabled"] {
            state
                .with_label_values(&[labels[0], labels[1], name])
                .set(i64::from(backend.admin == name));
        }
    }
    let publications = counter(
        &registry,
        "sipxdp_maglev_tables_published_total",
        "Maglev tables published for the VIP since the daemon started (each flips the live generation).",
        &["vip"],
    )?;
    let rebuilt = GaugeVec::new(
        Opts::new(
            "sipxdp_maglev_last_rebuild_timestamp_seconds",
            "When the VIP's last Maglev table was published, in seconds since the Unix epoch.",
        ),
        &["vip"],
    )?;
    registry.register(Box::new(rebuilt.clone()))?;
    for table in &snapshot.tables {
        publications
            .with_label_values(&[table.vip.as_str()])
            .inc_by(table.publications);
        rebuilt
            .with_label_values(&[table.vip.as_str()])
            .set(table.last_rebuild_seconds);
    }
    if let Some(counts) = &snapshot.slow_path {
        let messages = counter(
            &registry,
            "sipxdp_slow_path_messages_total",
            "Messages the slow path handled, by VIP, outcome (forwarded, fallback, dropped) and reason.",
            &["vip", "outcome", "reason"],
        )?;
        for count in counts {
            messages
                .with_label_values(&[count.vip.as_str(), count.outcome, count.reason])
                .inc_by(count.messages);
        }
        let sent = counter(
            &registry,
            "sipxdp_slow_path_backend_messages_total",
            "Messages the slow path sent to a backend (the XDP program's forwards are in sipxdp_backend_packets_total).",
            &["vip", "backend"],
        )?;
        for count in &snapshot.slow_path_sent {
            sent.with_label_values(&[count.vip.as_str(), count.backend.as_str()])
                .inc_by(count.messages);
        }
    }
    let entries = gauge(
        &registry,
        "sipxdp_map_entries",
        "Entries of the kernel's LRU map (DIALOGS: calls remembered; CONNECTIONS: TCP connections remembered; FRAGMENTS: datagrams whose later fragments are expected; FLOOD_SOURCES: sources with a token bucket), counted every 15 s.",
        &["map"],
    )?;
    let max_entries = gauge(
        &registry,
        "sipxdp_map_max_entries",
        "Entries the kernel's LRU map can hold before it forgets the least recently used.",
        &["map"],
    )?;
    for fill in &snapshot.maps {
        entries
            .with_label_values(&[fill.map])
            .set(i64::try_from(fill.entries).unwrap_or(i64::MAX));
        max_entries
            .with_label_values(&[fill.map])
            .set(i64::from(fill.max_entries));
    }
    let program = gauge(
        &registry,
        "sipxdp_program_info",
        "1 for each interface the XDP program is attached to, with the mode the kernel attached it in and the configured one.",
        &["interface", "mode", "requested"],
    )?;
    for attached in &snapshot.attached {
        program
            .with_label_values(&[
                attached.interface.as_str(),
                attached.mode,
                attached.requested,
            ])
            .set(1);
    }
    if let Some(instructions) = snapshot.verified_instructions {
        let verified = gauge(
            &registry,
            "sipxdp_program_verified_instructions",
            "Instructions the kernel's verifier processed to accept the program.",
            &[],
        )?;
        verified
            .with_label_values::<&str>(&[])
            .set(i64::from(instructions));
    }
    let build = gauge(
        &registry,
        "sipxdp_build_info",
        "1, with the version of the running sipxdp.",
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    let mut text = String::from_utf8(text).map_err(|_| MetricsError::Encoding)?;
    latency_histograms(&snapshot.backends, &mut text);
    Ok(text)
}

/// `sipxdp_health_check_latency_seconds`, written by hand: the prober counts round trips
/// into buckets as they happen, and the crate's histograms take observations, not
/// counts.
fn latency_histograms(backends: &[BackendState], text: &mut String) {
    const NAME: &str = "sipxdp_health_check_latency_seconds";
    if backends.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "# HELP {NAME} Round trips of the backend's answered health checks.\n# TYPE {NAME} histogram"
    );
    for backend in backends {
        let labels = format!(
            "backend=\"{}\",vip=\"{}\"",
            escape(&backend.backend),
            escape(&backend.vip)
        );
        let histogram = &backend.latencies;
        for (count, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS_US) {
            let le = bound as f64 / 1e6;
            let _ = writeln!(text, "{NAME}_bucket{{{labels},le=\"{le}\"}} {count}");
        }
        let _ = writeln!(
            text,
            "{NAME}_bucket{{{labels},le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(
            text,
            "{NAME}_sum{{{labels}}} {}",
            histogram.sum_us as f64 / 1e6
        );
        let _ = writeln!(text, "{NAME}_count{{{labels}}} {}", histogram.count);
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the text format wants.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use sipxdp_common::outcome::{Action, Reason};

    use super::*;
    use crate::report::{BackendTraffic, Outcome};

    fn snapshot() -> Snapshot {
        Snapshot {
            report: Report {
                outcomes: vec![
                    Outcome {
                        vip: Some("sip".into()),
                        action: Action::Forwarded,
                        reason: Reason::CallId,
                        packets: 7,
                        bytes: 4_200,
                    },
                    Outcome {
                        vip: None,
                        action: Action::Passed,
                        reason: Reason::NotVip,
                        packets: 3,
                        bytes: 180,
                    },
                ],
                backends: vec![BackendTraffic {
                    vip: "sip".into(),
                    backend: "198.51.100.21:5060".parse().unwrap(),
                    packets: 7,
                    bytes: 4_200,
                }],
            },
            backends: vec![BackendState {
                vip: "sip".into(),
                backend: "198.51.100.21:5060".into(),
                weight: 2,
                admin: "draining",
                up: true,
                checked: true,
                latency_seconds: Some(0.0004),
                latencies: {
                    let mut histogram = LatencyHistogram::default();
                    histogram.observe(std::time::Duration::from_micros(400));
                    histogram
                },
                check_failures: 1,
            }],
            attached: vec![Attached {
                interface: "eth0".into(),
                mode: "skb",
                requested: "auto",
            }],
            verified_instructions: Some(190_000),
            tables: vec![TableState {
                vip: "sip".into(),
                publications: 3,
                last_rebuild_seconds: 1_795_000_000.5,
            }],
            slow_path: Some(vec![SlowPathCount {
                vip: "sip".into(),
                outcome: "fallback",
                reason: "no_call_id",
                messages: 2,
            }]),
            slow_path_sent: vec![SlowPathSent {
                vip: "sip".into(),
                backend: "198.51.100.21:5060".into(),
                messages: 2,
            }],
            maps: vec![MapFill {
                map: "DIALOGS",
                entries: 12,
                max_entries: 1_048_576,
            }],
        }
    }

    #[test]
    fn counters_and_states_are_written_with_their_labels() {
        let text = exposition(&snapshot()).expect("metrics");
        for line in [
            "sipxdp_packets_total{action=\"forwarded\",reason=\"call_id\",vip=\"sip\"} 7",
            "sipxdp_packets_total{action=\"passed\",reason=\"not_vip\",vip=\"none\"} 3",
            "sipxdp_backend_packets_total{backend=\"198.51.100.21:5060\",vip=\"sip\"} 7",
            "sipxdp_backend_state{backend=\"198.51.100.21:5060\",state=\"draining\",vip=\"sip\"} 1",
            "sipxdp_backend_state{backend=\"198.51.100.21:5060\",state=\"active\",vip=\"sip\"} 0",
            "sipxdp_backend_up{backend=\"198.51.100.21:5060\",vip=\"sip\"} 1",
            "sipxdp_backend_checked{backend=\"198.51.100.21:5060\",vip=\"sip\"} 1",
            "sipxdp_backend_weight{backend=\"198.51.100.21:5060\",vip=\"sip\"} 2",
            "sipxdp_health_check_latency_seconds_bucket{backend=\"198.51.100.21:5060\",vip=\"sip\",le=\"0.0005\"} 1",
            "sipxdp_health_check_latency_seconds_count{backend=\"198.51.100.21:5060\",vip=\"sip\"} 1",
            "sipxdp_program_info{interface=\"eth0\",mode=\"skb\",requested=\"auto\"} 1",
            "sipxdp_program_verified_instructions 190000",
            "sipxdp_maglev_tables_published_total{vip=\"sip\"} 3",
            "sipxdp_slow_path_messages_total{outcome=\"fallback\",reason=\"no_call_id\",vip=\"sip\"} 2",
            "sipxdp_slow_path_backend_messages_total{backend=\"198.51.100.21:5060\",vip=\"sip\"} 2",
            "sipxdp_map_entries{map=\"DIALOGS\"} 12",
            "sipxdp_map_max_entries{map=\"DIALOGS\"} 1048576",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(text.contains("# TYPE sipxdp_packets_total counter"));
    }

    /// Every metric family `snapshot` makes [`exposition`] write.
    fn names(snapshot: &Snapshot) -> Vec<String> {
        exposition(snapshot)
            .expect("metrics")
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_metric_is_in_the_readme() {
        let readme = include_str!("../../../README.md");
        for name in names(&snapshot()) {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is not in the README"
            );
        }
    }
}
