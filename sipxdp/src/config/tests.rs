//! Tests of loading whole configurations: what is accepted, the defaults, and that each
//! kind of mistake is refused with a message naming it at the right line and column.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use super::*;

/// A machine with the interfaces `eth0` and `eth1` and a configuration file of the given
/// owner and mode.
struct FakeEnvironment {
    owner: u32,
    mode: u32,
    uid: u32,
}

const INTERFACES: [&str; 2] = ["eth0", "eth1"];

/// A regular file owned by the current user, readable by all, writable by its owner only.
const ENV: FakeEnvironment = FakeEnvironment {
    owner: 1000,
    mode: 0o100_644,
    uid: 1000,
};

impl Environment for FakeEnvironment {
    fn interface_index(&self, name: &str) -> Option<u32> {
        let position = INTERFACES.iter().position(|known| *known == name)?;
        u32::try_from(position + 2).ok()
    }

    fn file_owner_and_mode(&self, _path: &Path) -> io::Result<(u32, u32)> {
        Ok((self.owner, self.mode))
    }

    fn current_uid(&self) -> u32 {
        self.uid
    }
}

/// The smallest valid configuration: two lines.
const BASE: &str = "[[interfaces]]\nname = \"eth0\"\n";

/// A VIP with one backend, appended to `BASE`: its header is line 3.
const VIP: &str =
    "[[vips]]\naddress = \"198.51.100.100\"\n[[vips.backends]]\naddress = \"198.51.100.21\"\n";

fn parse_ok(text: &str) -> Config {
    match parse(text, "test.toml", &ENV) {
        Ok(config) => config,
        Err(errors) => panic!("refused:\n{errors}"),
    }
}

/// Asserts that `text` is refused with exactly the `expected` problems, given as
/// (line, column, a fragment of the message).
#[track_caller]
fn refused(text: &str, expected: &[(usize, usize, &str)]) {
    let errors = match parse(text, "test.toml", &ENV) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(errors) => errors,
    };
    let found: Vec<(usize, usize, &str)> = errors
        .problems()
        .iter()
        .map(|p| (p.line, p.column, p.message.as_str()))
        .collect();
    assert_eq!(found.len(), expected.len(), "problems:\n{errors}");
    for ((line, column, message), (want_line, want_column, fragment)) in found.iter().zip(expected)
    {
        assert_eq!(
            (line, column),
            (want_line, want_column),
            "position of {message:?}; problems:\n{errors}"
        );
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(text: &str) -> IpAddr {
    IpAddr::V6(text.parse::<Ipv6Addr>().unwrap())
}

/// Every key, none at its default.
const COMPLETE: &str = r#"
[daemon]
log_level = "debug"
kernel_log_level = "warn"
control_socket = "/tmp/sipxdp.sock"
pin_path = "/sys/fs/bpf/other"
hash_seed = 42

[metrics]
listen = "[2001:db8::1]:9999"

[[interfaces]]
name = "eth0"
xdp_mode = "driver"

[[interfaces]]
name = "eth1"
xdp_mode = "skb"

[health_check]
enabled = false
interval = "5m"
timeout = 3
down_after = 5
up_after = 4
reply_codes = [200, "400-499", "600"]

[sticky]
entries = 1000
idle_timeout = "500ms"

[fragments]
entries = 7

[tcp]
connections = 99
idle_timeout = "2m"

[slow_path]
enabled = false
queue = 12

[flood]
sources = 1234

[[vips]]
name = "tcp-nat"
address = "203.0.113.10"
port = 5070
protocol = "tcp"
mode = "nat"
keep_alive = "drop"
non_sip = "drop"
unplaceable = "fallback"
table_size = 101

[[vips.backends]]
address = "203.0.113.21"
port = 6000
weight = 3
mac = "02-00-5E-10-00-0A"
state = "draining"

[[vips.backends]]
address = "203.0.113.22"
state = "disabled"

[[vips.backends]]
address = "203.0.113.23"
"#;

#[test]
fn every_key_is_read() {
    let expected = Config {
        daemon: DaemonConfig {
            log_level: LogLevel::Debug,
            kernel_log_level: LogLevel::Warn,
            control_socket: PathBuf::from("/tmp/sipxdp.sock"),
            pin_path: PathBuf::from("/sys/fs/bpf/other"),
            hash_seed: 42,
        },
        metrics: MetricsConfig {
            listen: Some(SocketAddr::new(v6("2001:db8::1"), 9999)),
        },
        interfaces: vec![
            InterfaceConfig {
                name: "eth0".into(),
                xdp_mode: XdpMode::Driver,
            },
            InterfaceConfig {
                name: "eth1".into(),
                xdp_mode: XdpMode::Skb,
            },
        ],
        health_check: HealthCheckConfig {
            enabled: false,
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(3),
            down_after: 5,
            up_after: 4,
            reply_codes: vec![(200, 200), (400, 499), (600, 600)],
        },
        sticky: StickyConfig {
            entries: 1000,
            idle_timeout: Duration::from_millis(500),
        },
        fragments: FragmentConfig { entries: 7 },
        tcp: TcpConfig {
            connections: 99,
            idle_timeout: Duration::from_secs(120),
        },
        slow_path: SlowPathConfig {
            enabled: false,
            queue: 12,
        },
        flood: FloodConfig { sources: 1234 },
        vips: vec![VipConfig {
            name: "tcp-nat".into(),
            address: v4(203, 0, 113, 10),
            port: 5070,
            protocol: Protocol::Tcp,
            mode: ForwardingMode::Nat,
            keep_alive: Policy::Drop,
            non_sip: Policy::Drop,
            unplaceable: UnplaceablePolicy::Fallback,
            table_size: 101,
            flood: VipFlood::default(),
            backends: vec![
                BackendConfig {
                    address: v4(203, 0, 113, 21),
                    port: 6000,
                    weight: 3,
                    mac: Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]),
                    state: AdminState::Draining,
                },
                BackendConfig {
                    address: v4(203, 0, 113, 22),
                    port: 5070,
                    weight: 1,
                    mac: None,
                    state: AdminState::Disabled,
                },
                BackendConfig {
                    address: v4(203, 0, 113, 23),
                    port: 5070,
                    weight: 1,
                    mac: None,
                    state: AdminState::Active,
                },
            ],
        }],
    };
    assert_eq!(parse_ok(COMPLETE), expected);
}

#[test]
fn defaults() {
    let config = parse_ok(&format!("{BASE}{VIP}"));
    assert_eq!(config.daemon, DaemonConfig::default());
    assert_eq!(config.daemon.log_level, LogLevel::Info);
    assert_eq!(config.daemon.kernel_log_level, LogLevel::Off);
    assert_eq!(
        config.daemon.control_socket,
        Path::new("/run/sipxdp/control.sock")
    );
    assert_eq!(config.daemon.pin_path, Path::new("/sys/fs/bpf/sipxdp"));
    assert_eq!(config.daemon.hash_seed, 0);
    assert_eq!(
        config.metrics.listen,
        Some(SocketAddr::new(v4(127, 0, 0, 1), 9560))
    );
    assert_eq!(
        config.interfaces,
        [InterfaceConfig {
            name: "eth0".into(),
            xdp_mode: XdpMode::Auto
        }]
    );
    assert_eq!(
        config.health_check,
        HealthCheckConfig {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 2,
            reply_codes: vec![(100, 699)],
        }
    );
    assert_eq!(
        config.sticky,
        StickyConfig {
            entries: 1_048_576,
            idle_timeout: Duration::from_secs(3600)
        }
    );
    assert_eq!(config.fragments, FragmentConfig { entries: 65_536 });
    assert_eq!(
        config.tcp,
        TcpConfig {
            connections: 262_144,
            idle_timeout: Duration::from_secs(3600)
        }
    );
    assert_eq!(
        config.slow_path,
        SlowPathConfig {
            enabled: true,
            queue: 4096
        }
    );
    assert_eq!(
        config.vips,
        [VipConfig {
            name: "198.51.100.100:5060/udp".into(),
            address: v4(198, 51, 100, 100),
            port: 5060,
            protocol: Protocol::Udp,
            mode: ForwardingMode::Dsr,
            keep_alive: Policy::Pass,
            non_sip: Policy::Pass,
            unplaceable: UnplaceablePolicy::Drop,
            table_size: 65_537,
            flood: VipFlood::default(),
            backends: vec![BackendConfig {
                address: v4(198, 51, 100, 21),
                port: 5060,
                weight: 1,
                mac: None,
                state: AdminState::Active,
            }],
        }]
    );
}

#[test]
fn metrics_can_be_off_and_no_vip_is_fine() {
    let config = parse_ok(&format!("{BASE}[metrics]\nlisten = \"off\"\n"));
    assert_eq!(config.metrics.listen, None);
    assert!(config.vips.is_empty());
}

#[test]
fn default_name_of_an_ipv6_vip_brackets_the_address() {
    let text = format!(
        "{BASE}[[vips]]\naddress = \"2001:db8:1::100\"\nport = 5062\n\
         [[vips.backends]]\naddress = \"2001:db8:2::21\"\n"
    );
    assert_eq!(parse_ok(&text).vips[0].name, "[2001:db8:1::100]:5062/udp");
}

#[test]
fn the_example_parses() {
    let text = include_str!("../../../docs/sipxdp.example.toml");
    let config = match parse(text, "docs/sipxdp.example.toml", &ENV) {
        Ok(config) => config,
        Err(errors) => panic!("the example is refused:\n{errors}"),
    };
    assert_eq!(config.interfaces[0].name, "eth0");
    assert_eq!(config.vips.len(), 2);
    let [udp, v6_nat] = &config.vips[..] else {
        unreachable!()
    };
    assert_eq!((udp.address, udp.port), (v4(198, 51, 100, 100), 5060));
    assert_eq!(udp.mode, ForwardingMode::Dsr);
    let weights: Vec<u32> = udp.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [1, 2, 1]);
    assert!(udp.backends.iter().any(|b| b.mac.is_some()));
    assert_eq!(v6_nat.name, "[2001:db8:1::100]:5060/udp");
    assert_eq!(v6_nat.mode, ForwardingMode::Nat);
    assert!(
        v6_nat
            .backends
            .iter()
            .all(|b| b.address.is_ipv6() && b.port == 5080)
    );
    // The example shows every default: apart from the VIPs and the interface, it is the
    // default configuration.
    let defaults = parse_ok(BASE);
    assert_eq!(
        (
            &config.daemon,
            &config.metrics,
            &config.health_check,
            &config.sticky,
            &config.fragments,
            &config.tcp,
            &config.slow_path
        ),
        (
            &defaults.daemon,
            &defaults.metrics,
            &defaults.health_check,
            &defaults.sticky,
            &defaults.fragments,
            &defaults.tcp,
            &defaults.slow_path
        )
    );
}

/// Every key any table accepts appears in the example, set or commented out. The keys come
/// from the parser itself: the message refusing an unknown key lists the known ones.
#[test]
fn the_example_shows_every_key() {
    let example = include_str!("../../../docs/sipxdp.example.toml");
    let tables = [
        "",
        "[daemon]\n",
        "[metrics]\n",
        "[[interfaces]]\nname = \"eth0\"\n",
        "[health_check]\n",
        "[sticky]\n",
        "[fragments]\n",
        "[tcp]\n",
        "[slow_path]\n",
        "[[vips]]\naddress = \"198.51.100.100\"\n",
        "[[vips]]\naddress = \"198.51.100.100\"\n[[vips.backends]]\naddress = \"198.51.100.21\"\n",
    ];
    for table in tables {
        let errors = parse(&format!("{table}unknown = 1\n"), "keys", &ENV).unwrap_err();
        let message = &errors.problems()[0].message;
        let keys: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        assert!(!keys.is_empty(), "{message}");
        for key in keys {
            let shown = example.contains(&format!("\n{key} = "))
                || example.contains(&format!("\n# {key} = "))
                || example.contains(&format!("\n[{key}]"))
                || example.contains(&format!("\n[[{key}]]"))
                || example.contains(&format!("\n[[vips.{key}]]"));
            assert!(shown, "the example does not show `{key}` of {table:?}");
        }
    }
}

#[test]
fn syntax_error() {
    refused(
        "[daemon\nlog_level = \"info\"\n",
        &[(1, 8, "unclosed table, expected `]`")],
    );
    refused(
        &format!("{BASE}[daemon]\nlog_level = verbose\n"),
        &[(4, 13, "string values must be quoted")],
    );
    refused(
        &format!("{BASE}[daemon]\nhash_seed = 1\nhash_seed = 2\n"),
        &[(5, 1, "duplicate key")],
    );
}

#[test]
fn type_error() {
    refused(
        &format!("{BASE}[[vips]]\naddress = 198\n"),
        &[(4, 11, "invalid type: integer `198`, expected a string")],
    );
    refused(
        &format!("{BASE}[health_check]\ninterval = true\n"),
        &[(4, 12, "expected an integer or a string")],
    );
}

#[test]
fn unknown_key_at_top_level() {
    refused(
        &format!("colour = \"blue\"\n{BASE}"),
        &[(1, 1, "unknown field `colour`, expected one of `daemon`")],
    );
}

#[test]
fn unknown_key_in_a_backend() {
    refused(
        &format!("{BASE}{VIP}weigth = 2\n"),
        &[(7, 1, "unknown field `weigth`")],
    );
}

#[test]
fn missing_required_key() {
    refused(
        &format!("{BASE}[[vips]]\nport = 5060\n"),
        &[(3, 1, "missing field `address`")],
    );
}

#[test]
fn bad_address() {
    refused(
        &format!("{BASE}{VIP}[[vips.backends]]\naddress = \"198.51.100.300\"\n"),
        &[(
            8,
            11,
            "backend address \"198.51.100.300\" is not an IP address",
        )],
    );
}

#[test]
fn unusable_vip_addresses() {
    for (address, why) in [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::ffff:198.51.100.100", "IPv4-mapped"),
    ] {
        let backend = if address.contains(':') {
            "2001:db8::21"
        } else {
            "198.51.100.21"
        };
        refused(
            &format!(
                "{BASE}[[vips]]\naddress = \"{address}\"\n[[vips.backends]]\naddress = \"{backend}\"\n"
            ),
            &[(4, 11, why)],
        );
    }
}

#[test]
fn bad_mac() {
    refused(
        &format!("{BASE}{VIP}mac = \"02:00:5e:10:00\"\n"),
        &[(7, 7, "is not a MAC address")],
    );
    refused(
        &format!("{BASE}{VIP}mac = \"ff:ff:ff:ff:ff:ff\"\n"),
        &[(7, 7, "multicast or broadcast")],
    );
}

#[test]
fn port_zero() {
    refused(
        &format!("{BASE}{VIP}port = 0\n"),
        &[(7, 8, "port must be at least 1, not 0")],
    );
    refused(
        &format!(
            "{BASE}[[vips]]\naddress = \"198.51.100.100\"\nport = 70000\n[[vips.backends]]\naddress = \"198.51.100.21\"\n"
        ),
        &[(5, 8, "port must be at most 65535, not 70000")],
    );
}

#[test]
fn duplicate_backend() {
    refused(
        &format!("{BASE}{VIP}[[vips.backends]]\naddress = \"198.51.100.21\"\nport = 5060\n"),
        &[(
            8,
            11,
            "backend 198.51.100.21:5060 is already defined at line 6",
        )],
    );
}

#[test]
fn duplicate_vip() {
    refused(
        &format!("{BASE}{VIP}{VIP}"),
        &[(
            8,
            11,
            "VIP 198.51.100.100:5060/udp is already defined at line 4",
        )],
    );
    // Another protocol makes another VIP.
    let tcp = VIP.replace("[[vips.backends]]", "protocol = \"tcp\"\n[[vips.backends]]");
    assert_eq!(parse_ok(&format!("{BASE}{VIP}{tcp}")).vips.len(), 2);
}

#[test]
fn duplicate_vip_name() {
    let second = "[[vips]]\nname = \"a\"\naddress = \"198.51.100.101\"\n[[vips.backends]]\naddress = \"198.51.100.21\"\n";
    refused(
        &format!("{BASE}{}{second}", second.replace(".101", ".100")),
        &[(9, 8, "VIP name \"a\" is already defined at line 4")],
    );
}

#[test]
fn no_backend_can_take_calls() {
    refused(
        &format!(
            "{BASE}{VIP}weight = 0\n[[vips.backends]]\naddress = \"198.51.100.22\"\nstate = \"disabled\"\n"
        ),
        &[(
            3,
            1,
            "VIP 198.51.100.100:5060/udp has no backend that can take calls",
        )],
    );
}

#[test]
fn vip_without_backends() {
    refused(
        &format!("{BASE}[[vips]]\naddress = \"198.51.100.100\"\n"),
        &[(3, 1, "has no backends")],
    );
}

#[test]
fn backend_of_another_family() {
    refused(
        &format!("{BASE}{VIP}[[vips.backends]]\naddress = \"2001:db8::22\"\n"),
        &[(
            8,
            11,
            "backend 2001:db8::22 is IPv6 but VIP 198.51.100.100:5060/udp is IPv4",
        )],
    );
}

#[test]
fn dsr_backend_on_another_port() {
    let text = format!("{BASE}{VIP}port = 5080\n");
    refused(
        &text,
        &[(7, 8, "differs from the VIP's port 5060: in DSR mode")],
    );
    let with_mode = |mode: &str| {
        text.replace(
            "[[vips.backends]]",
            &format!("mode = {mode:?}\n[[vips.backends]]"),
        )
    };
    // NAT allows it.
    parse_ok(&with_mode("nat"));
    // A bad mode or VIP port is reported alone, not also as a mismatch.
    refused(
        &with_mode("dnat"),
        &[(5, 8, "mode must be one of \"dsr\", \"nat\", not \"dnat\"")],
    );
    refused(
        &text.replace("[[vips.backends]]", "port = 0\n[[vips.backends]]"),
        &[(5, 8, "port must be at least 1, not 0")],
    );
}

#[test]
fn unknown_interface() {
    refused(
        "[[interfaces]]\nname = \"eth9\"\n",
        &[(2, 8, "there is no interface \"eth9\"")],
    );
}

#[test]
fn duplicate_interface() {
    refused(
        &format!("{BASE}{BASE}"),
        &[(4, 8, "interface \"eth0\" is already defined at line 2")],
    );
}

#[test]
fn no_interfaces() {
    let errors = parse("[daemon]\n", "test.toml", &ENV).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "test.toml: no [[interfaces]]: name at least one interface for the XDP program to attach to"
    );
    refused("interfaces = []\n", &[(1, 14, "interfaces is empty")]);
}

#[test]
fn table_size_not_prime() {
    refused(
        &format!("{BASE}{VIP}")
            .replace("[[vips.backends]]", "table_size = 65536\n[[vips.backends]]"),
        &[(5, 14, "table_size 65536 is not prime")],
    );
}

#[test]
fn table_size_out_of_range_or_too_small() {
    let with = |size: &str, backends: usize| {
        let mut text =
            format!("{BASE}[[vips]]\naddress = \"198.51.100.100\"\ntable_size = {size}\n");
        for host in 0..backends {
            text += &format!(
                "[[vips.backends]]\naddress = \"198.51.100.{}\"\n",
                10 + host
            );
        }
        text
    };
    refused(
        &with("65539", 1),
        &[(5, 14, "between 11 and 65537, not 65539")],
    );
    refused(&with("7", 1), &[(5, 14, "between 11 and 65537, not 7")]);
    refused(&with("-1", 1), &[(5, 14, "not -1")]);
    refused(
        &with("31", 4),
        &[(5, 14, "too small for 4 backends of non-zero weight")],
    );
    assert_eq!(parse_ok(&with("41", 4)).vips[0].table_size, 41);
}

#[test]
fn timeout_not_below_interval() {
    refused(
        &format!("{BASE}[health_check]\ninterval = \"1s\"\ntimeout = \"1000ms\"\n"),
        &[(5, 11, "timeout (1s) must be shorter than interval (1s)")],
    );
    // With the default timeout, the interval is to blame.
    refused(
        &format!("{BASE}[health_check]\ninterval = \"500ms\"\n"),
        &[(4, 12, "must be shorter than interval (500ms)")],
    );
}

#[test]
fn bad_health_check_values() {
    refused(
        &format!(
            "{BASE}[health_check]\ndown_after = 0\nup_after = 0\n\
             reply_codes = [99, \"300-200\", \"2xx\", \"200-700\"]\n"
        ),
        &[
            (4, 14, "down_after must be at least 1, not 0"),
            (5, 12, "up_after must be at least 1, not 0"),
            (6, 16, "reply code 99 is outside 100-699"),
            (6, 20, "reply code range 300-200 is inverted"),
            (6, 31, "\"2xx\" is not a reply code"),
            (6, 38, "reply code 700 is outside 100-699"),
        ],
    );
    refused(
        &format!("{BASE}[health_check]\nreply_codes = []\n"),
        &[(4, 15, "reply_codes is empty")],
    );
}

#[test]
fn zero_entries() {
    refused(
        &format!(
            "{BASE}[sticky]\nentries = 0\n[fragments]\nentries = 0\n[slow_path]\nqueue = 0\n\
             [tcp]\nconnections = 0\nidle_timeout = \"0s\"\n"
        ),
        &[
            (4, 11, "[sticky] entries must be at least 1"),
            (6, 11, "[fragments] entries must be at least 1"),
            (8, 9, "queue must be at least 1"),
            (10, 15, "[tcp] connections must be at least 1"),
            (11, 16, "[tcp] idle_timeout must be longer than 0"),
        ],
    );
}

#[test]
fn bad_durations() {
    refused(
        &format!(
            "{BASE}[sticky]\nidle_timeout = \"1 hour\"\n[health_check]\ninterval = -2\ntimeout = \"0ms\"\n"
        ),
        &[
            (4, 16, "\"1 hour\" is not a duration"),
            (6, 12, "interval must not be negative"),
            (7, 11, "timeout must be longer than 0"),
        ],
    );
}

#[test]
fn bad_keywords_paths_and_listen() {
    refused(
        &format!(
            "{BASE}[daemon]\nlog_level = \"verbose\"\npin_path = \"sipxdp\"\nhash_seed = -1\n\
             [metrics]\nlisten = \"localhost:9560\"\n"
        ),
        &[
            (4, 13, "log_level must be one of \"off\", \"error\""),
            (5, 12, "pin_path must be an absolute path"),
            (6, 13, "hash_seed must be at least 0"),
            (
                8,
                10,
                "listen \"localhost:9560\" is not an address and port",
            ),
        ],
    );
}

#[test]
fn too_many_vips() {
    let mut text = BASE.to_owned();
    for host in 0..17 {
        text += &format!(
            "[[vips]]\naddress = \"198.51.100.{host}\"\n[[vips.backends]]\naddress = \"203.0.113.1\"\n"
        );
    }
    // The 17th VIP starts at line 3 + 16 × 4.
    refused(
        &text,
        &[(67, 1, "too many VIPs: the kernel's tables hold at most 16")],
    );
}

#[test]
fn too_many_backends() {
    let mut text = format!("{BASE}[[vips]]\naddress = \"2001:db8::1\"\n");
    for host in 0..=4096 {
        text += &format!("[[vips.backends]]\naddress = \"2001:db8:1::{host:x}\"\n");
    }
    // The 4097th backend starts at line 5 + 4096 × 2.
    refused(&text, &[(8197, 1, "too many backends")]);
}

#[test]
fn several_problems_are_all_reported() {
    let text = format!(
        "{BASE}[health_check]\ntimeout = \"5s\"\n\
         [[vips]]\naddress = \"198.51.100.100\"\ntable_size = 100\n\
         [[vips.backends]]\naddress = \"198.51.100.21\"\nmac = \"nope\"\n\
         [[vips.backends]]\naddress = \"198.51.100.21\"\n"
    );
    refused(
        &text,
        &[
            (4, 11, "timeout (5s) must be shorter than interval (2s)"),
            (7, 14, "table_size 100 is not prime"),
            (10, 7, "\"nope\" is not a MAC address"),
            (
                12,
                11,
                "backend 198.51.100.21:5060 is already defined at line 9",
            ),
        ],
    );
}

#[test]
fn display_is_origin_line_column_message() {
    let errors = parse(&format!("colour = 1\n{BASE}"), "/etc/sipxdp.toml", &ENV).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/etc/sipxdp.toml:1:1: unknown field `colour`, expected one of `daemon`, `metrics`, \
         `interfaces`, `health_check`, `sticky`, `fragments`, `tcp`, `slow_path`, `flood`, `vips`"
    );
}

/// A file of its own in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sipxdp-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn load_reads_a_safe_file() {
    let file = TempFile::new("safe.toml", BASE);
    let config = load(&file.0, &ENV).unwrap();
    assert_eq!(config.interfaces[0].name, "eth0");
    // Owned by root and read by another user is fine too.
    let root_owned = FakeEnvironment { owner: 0, ..ENV };
    assert!(load(&file.0, &root_owned).is_ok());
}

#[test]
fn load_names_the_file_in_problems() {
    let file = TempFile::new("broken.toml", "[[interfaces]]\nname = \"eth9\"\n");
    let errors = load(&file.0, &ENV).unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!(
            "{}:2:8: there is no interface \"eth9\" in this network namespace",
            file.0.display()
        )
    );
}

#[test]
fn load_refuses_a_group_writable_file() {
    let file = TempFile::new("writable.toml", BASE);
    let env = FakeEnvironment {
        mode: 0o100_664,
        ..ENV
    };
    let errors = load(&file.0, &env).unwrap_err();
    let [problem] = errors.problems() else {
        panic!("{errors}")
    };
    assert_eq!((problem.line, problem.column), (0, 0));
    assert!(
        problem
            .message
            .contains("group or others can write (mode 0664)"),
        "{problem}"
    );
    assert!(
        errors
            .to_string()
            .starts_with(&format!("{}: refusing", file.0.display()))
    );
}

#[test]
fn load_refuses_a_file_of_another_user() {
    let file = TempFile::new("foreign.toml", BASE);
    let env = FakeEnvironment { owner: 1001, ..ENV };
    let message = load(&file.0, &env).unwrap_err().to_string();
    assert!(message.contains("owned by uid 1001"), "{message}");
}

#[test]
fn load_reports_a_missing_file() {
    let missing = std::env::temp_dir().join("sipxdp-no-such-config.toml");
    let message = load(&missing, &SystemEnvironment).unwrap_err().to_string();
    assert!(
        message.contains("cannot inspect the configuration file"),
        "{message}"
    );
}

/// Locating problems takes time linear in the text: here 4,000 problems on one line.
#[test]
fn many_problems_on_one_long_line() {
    let backends = vec!["{address = \"nowhere\"}"; 4_000].join(", ");
    let text =
        format!("vips = [{{address = \"198.51.100.100\", backends = [{backends}]}}]\n{BASE}");
    let errors = parse(&text, "long", &ENV).unwrap_err();
    assert_eq!(errors.problems().len(), 4_000);
    let last = &errors.problems()[3_999];
    let expected_column = text.lines().next().unwrap().rfind("\"nowhere").unwrap() + 1;
    assert_eq!((last.line, last.column), (1, expected_column));
}

/// `parse` is total: cut or garbled text gives problems, never a panic.
#[test]
fn parse_never_panics() {
    let example = include_str!("../../../docs/sipxdp.example.toml");
    for (end, _) in example.char_indices().step_by(7) {
        let _ = parse(&example[..end], "cut", &ENV);
    }
    for (line_number, _) in example.lines().enumerate() {
        let without: Vec<&str> = example
            .lines()
            .enumerate()
            .filter(|(n, _)| *n != line_number)
            .map(|(_, line)| line)
            .collect();
        let _ = parse(&without.join("\n"), "line removed", &ENV);
    }
    let deep = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(&deep, "deep", &ENV).is_err());
    let deep_tables = format!("a = {}", "{b = ".repeat(100_000));
    assert!(parse(&deep_tables, "deep", &ENV).is_err());
    for garbage in [
        "\u{feff}",
        "\0",
        "[[",
        "=",
        "\u{10ffff}= 1",
        "a.b.c.d = 1\na = 2",
    ] {
        assert!(parse(garbage, "garbage", &ENV).is_err());
    }
}

#[test]
fn flood_protection_is_off_by_default_and_read_per_vip() {
    let config = parse_ok(&format!("{BASE}{VIP}"));
    assert_eq!(config.flood, FloodConfig { sources: 65_536 });
    assert_eq!(config.vips[0].flood, VipFlood::default());
    let vip = VIP.replacen(
        "\n[[vips.backends]]",
        "\nrate_limit = 200\nrate_burst = 400\n\
         drop_user_agents = [\"friendly-scanner\", \"sipvicious\", \"sipcli\"]\n\
         [[vips.backends]]",
        1,
    );
    let config = parse_ok(&format!("{BASE}{vip}"));
    assert_eq!(
        config.vips[0].flood,
        VipFlood {
            rate_limit: Some(RateLimitConfig {
                rate: 200,
                burst: 400
            }),
            drop_user_agents: vec![
                "friendly-scanner".into(),
                "sipvicious".into(),
                "sipcli".into()
            ],
        }
    );
    // The burst defaults to twice the rate; a rate of 0 is no limit.
    let doubled = VIP.replacen(
        "\n[[vips.backends]]",
        "\nrate_limit = 50\n[[vips.backends]]",
        1,
    );
    let config = parse_ok(&format!("{BASE}{doubled}"));
    assert_eq!(
        config.vips[0].flood.rate_limit,
        Some(RateLimitConfig {
            rate: 50,
            burst: 100
        })
    );
    let zero = VIP.replacen(
        "\n[[vips.backends]]",
        "\nrate_limit = 0\n[[vips.backends]]",
        1,
    );
    assert_eq!(
        parse_ok(&format!("{BASE}{zero}")).vips[0].flood.rate_limit,
        None
    );
}

#[test]
fn bad_flood_settings_are_refused_where_they_are() {
    let with = |lines: &str| {
        let vip = VIP.replacen(
            "\n[[vips.backends]]",
            &format!("\n{lines}\n[[vips.backends]]"),
            1,
        );
        format!("{BASE}{vip}")
    };
    // The VIP's keys start on line 5.
    refused(
        &with("rate_limit = 200\nrate_burst = 100"),
        &[(6, 14, "rate_burst 100 is below rate_limit 200")],
    );
    refused(
        &with("rate_burst = 100"),
        &[(5, 14, "rate_burst needs a rate_limit")],
    );
    refused(
        &with("rate_limit = 20000000"),
        &[(5, 14, "rate_limit must be at most 10000000")],
    );
    refused(
        &with("rate_limit = -1"),
        &[(5, 14, "rate_limit must be at least 0")],
    );
    refused(
        &with("drop_user_agents = [\"\", \"sipcli\"]"),
        &[(5, 21, "must not be empty")],
    );
    refused(
        &with(&format!("drop_user_agents = [\"{}\"]", "x".repeat(33))),
        &[(5, 21, "is 33 bytes; the kernel matches at most 32")],
    );
    refused(
        &with("drop_user_agents = [\"a\\r\\nb\"]"),
        &[(5, 21, "control character")],
    );
    refused(
        &with(r#"drop_user_agents = ["1", "2", "3", "4", "5", "6", "7", "8", "9"]"#),
        &[(5, 20, "has 9 patterns; the kernel matches at most 8")],
    );
    refused(
        &format!(
            "{BASE}{}",
            VIP.replacen(
                "\n[[vips.backends]]",
                "\nprotocol = \"tcp\"\nrate_limit = 10\n[[vips.backends]]",
                1,
            )
        ),
        &[(6, 14, "rate_limit applies to UDP VIPs only")],
    );
    refused(
        "[flood]\nsources = 0\n[[interfaces]]\nname = \"eth0\"\n",
        &[(2, 11, "[flood] sources must be at least 1")],
    );
}
