//! From the raw file to a [`Config`]: applies the defaults documented in [`super::model`]
//! and checks every value and every relation between values, recording each problem
//! instead of stopping at the first, so that one run shows the operator everything to fix.
//! The VIPs and their backends have their own module, [`super::vips`].

use std::{collections::HashMap, ops::Range};

use super::{
    Environment,
    fields::{self, duplicate},
    flood,
    model::{
        Config, DaemonConfig, FragmentConfig, HealthCheckConfig, InterfaceConfig, LogLevel,
        MetricsConfig, SlowPathConfig, StickyConfig, TcpConfig, XdpMode,
    },
    parse::{
        RawConfig, RawDaemon, RawFragments, RawHealthCheck, RawInterface, RawMetrics, RawSlowPath,
        RawSticky, RawTcp, Scalar,
    },
    problems::Problems,
    values, vips,
};

/// Any count that ends up in a `u32`: at least 1, as 0 entries, retries or slots would
/// make the feature useless rather than off.
const COUNT: (i64, i64) = (1, u32::MAX as i64);

const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("off", LogLevel::Off),
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];

const XDP_MODES: &[(&str, XdpMode)] = &[
    (XdpMode::Auto.name(), XdpMode::Auto),
    (XdpMode::Skb.name(), XdpMode::Skb),
    (XdpMode::Driver.name(), XdpMode::Driver),
];

/// SIP status codes: 100 to 699 (RFC 3261, section 7.2).
const REPLY_CODES: (i64, i64) = (100, 699);

/// Checks the whole configuration. The result is meaningful only if no problem was
/// recorded.
pub(super) fn config(raw: &RawConfig, env: &dyn Environment, problems: &mut Problems) -> Config {
    Config {
        daemon: daemon(&raw.daemon, problems),
        metrics: metrics(&raw.metrics, problems),
        interfaces: interfaces(raw, env, problems),
        health_check: health_check(&raw.health_check, problems),
        sticky: sticky(&raw.sticky, problems),
        fragments: fragments(&raw.fragments, problems),
        tcp: tcp(&raw.tcp, problems),
        slow_path: slow_path(&raw.slow_path, problems),
        flood: flood::section(&raw.flood, problems),
        vips: vips::vips(&raw.vips, problems),
    }
}

fn daemon(raw: &RawDaemon, problems: &mut Problems) -> DaemonConfig {
    let default = DaemonConfig::default();
    DaemonConfig {
        log_level: fields::keyword(
            problems,
            raw.log_level.as_ref(),
            "log_level",
            LOG_LEVELS,
            default.log_level,
        ),
        kernel_log_level: fields::keyword(
            problems,
            raw.kernel_log_level.as_ref(),
            "kernel_log_level",
            LOG_LEVELS,
            default.kernel_log_level,
        ),
        control_socket: fields::absolute_path(
            problems,
            raw.control_socket.as_ref(),
            "control_socket",
            default.control_socket,
        ),
        pin_path: fields::absolute_path(
            problems,
            raw.pin_path.as_ref(),
            "pin_path",
            default.pin_path,
        ),
        // TOML integers are signed 64-bit, so this is the range a file can express.
        hash_seed: fields::integer(
            problems,
            raw.hash_seed.as_ref(),
            "hash_seed",
            (0, i64::MAX),
            default.hash_seed,
        ),
    }
}

fn metrics(raw: &RawMetrics, problems: &mut Problems) -> MetricsConfig {
    let default = MetricsConfig::default();
    let listen = match &raw.listen {
        None => default.listen,
        Some(value) if value.get_ref() == "off" => None,
        Some(value) => fields::socket_address(problems, value, "listen").or(default.listen),
    };
    MetricsConfig { listen }
}

/// At least one interface, each named once and present in this network namespace.
fn interfaces(
    raw: &RawConfig,
    env: &dyn Environment,
    problems: &mut Problems,
) -> Vec<InterfaceConfig> {
    let Some(list) = &raw.interfaces else {
        problems.whole_file(
            "no [[interfaces]]: name at least one interface for the XDP program to attach to",
        );
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        problems.at(
            list.span(),
            "interfaces is empty: name at least one interface for the XDP program to attach to",
        );
    }
    let mut seen = HashMap::new();
    list.get_ref()
        .iter()
        .map(|interface| self::interface(interface.get_ref(), env, &mut seen, problems))
        .collect()
}

fn interface(
    raw: &RawInterface,
    env: &dyn Environment,
    seen: &mut HashMap<String, Range<usize>>,
    problems: &mut Problems,
) -> InterfaceConfig {
    let name = raw.name.get_ref();
    if let Some(first) = seen.get(name) {
        duplicate(
            problems,
            raw.name.span(),
            format_args!("interface {name:?}"),
            first,
        );
    } else {
        seen.insert(name.clone(), raw.name.span());
        if env.interface_index(name).is_none() {
            problems.at(
                raw.name.span(),
                format!("there is no interface {name:?} in this network namespace"),
            );
        }
    }
    InterfaceConfig {
        name: name.clone(),
        xdp_mode: fields::keyword(
            problems,
            raw.xdp_mode.as_ref(),
            "xdp_mode",
            XDP_MODES,
            XdpMode::Auto,
        ),
    }
}

fn health_check(raw: &RawHealthCheck, problems: &mut Problems) -> HealthCheckConfig {
    let default = HealthCheckConfig::default();
    let interval = fields::duration(
        problems,
        raw.interval.as_ref(),
        "interval",
        default.interval,
    );
    let timeout = fields::duration(problems, raw.timeout.as_ref(), "timeout", default.timeout);
    // A ping still waiting when the next is due would overlap it.
    if timeout >= interval
        && let Some(span) = raw
            .timeout
            .as_ref()
            .or(raw.interval.as_ref())
            .map(|v| v.span())
    {
        problems.at(
            span,
            format!("timeout ({timeout:?}) must be shorter than interval ({interval:?})"),
        );
    }
    HealthCheckConfig {
        enabled: raw.enabled.unwrap_or(default.enabled),
        interval,
        timeout,
        down_after: fields::integer(
            problems,
            raw.down_after.as_ref(),
            "down_after",
            COUNT,
            default.down_after,
        ),
        up_after: fields::integer(
            problems,
            raw.up_after.as_ref(),
            "up_after",
            COUNT,
            default.up_after,
        ),
        reply_codes: match &raw.reply_codes {
            None => default.reply_codes,
            Some(list) => reply_codes(list, problems),
        },
    }
}

fn reply_codes(
    list: &toml::Spanned<Vec<toml::Spanned<Scalar>>>,
    problems: &mut Problems,
) -> Vec<(u16, u16)> {
    if list.get_ref().is_empty() {
        problems.at(
            list.span(),
            "reply_codes is empty: no reply would show a backend alive",
        );
    }
    list.get_ref()
        .iter()
        .filter_map(|item| {
            let (low, high) = match item.get_ref() {
                Scalar::Integer(code) => (*code, *code),
                Scalar::Text(text) => match values::code_range(text) {
                    Ok(range) => range,
                    Err(error) => {
                        problems.at(item.span(), format!("reply_codes: {error}"));
                        return None;
                    }
                },
            };
            let (min, max) = REPLY_CODES;
            let outside = [low, high]
                .into_iter()
                .find(|code| !(min..=max).contains(code));
            if let Some(code) = outside {
                problems.at(
                    item.span(),
                    format!("reply code {code} is outside {min}-{max}"),
                );
                return None;
            }
            if low > high {
                problems.at(
                    item.span(),
                    format!("reply code range {low}-{high} is inverted: write {high}-{low}"),
                );
                return None;
            }
            Some((u16::try_from(low).ok()?, u16::try_from(high).ok()?))
        })
        .collect()
}

fn sticky(raw: &RawSticky, problems: &mut Problems) -> StickyConfig {
    let default = StickyConfig::default();
    StickyConfig {
        entries: fields::integer(
            problems,
            raw.entries.as_ref(),
            "[sticky] entries",
            COUNT,
            default.entries,
        ),
        idle_timeout: fields::duration(
            problems,
            raw.idle_timeout.as_ref(),
            "idle_timeout",
            default.idle_timeout,
        ),
    }
}

fn fragments(raw: &RawFragments, problems: &mut Problems) -> FragmentConfig {
    let default = FragmentConfig::default();
    FragmentConfig {
        entries: fields::integer(
            problems,
            raw.entries.as_ref(),
            "[fragments] entries",
            COUNT,
            default.entries,
        ),
    }
}

fn tcp(raw: &RawTcp, problems: &mut Problems) -> TcpConfig {
    let default = TcpConfig::default();
    TcpConfig {
        connections: fields::integer(
            problems,
            raw.connections.as_ref(),
            "[tcp] connections",
            COUNT,
            default.connections,
        ),
        idle_timeout: fields::duration(
            problems,
            raw.idle_timeout.as_ref(),
            "[tcp] idle_timeout",
            default.idle_timeout,
        ),
    }
}

fn slow_path(raw: &RawSlowPath, problems: &mut Problems) -> SlowPathConfig {
    let default = SlowPathConfig::default();
    SlowPathConfig {
        enabled: raw.enabled.unwrap_or(default.enabled),
        queue: fields::integer(problems, raw.queue.as_ref(), "queue", COUNT, default.queue),
    }
}
