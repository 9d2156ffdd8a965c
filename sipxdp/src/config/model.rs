//! The validated configuration: what the rest of the daemon works with. Parsing and
//! validation (`super::parse`) produce it; nothing else constructs it from user input.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub interfaces: Vec<InterfaceConfig>,
    pub health_check: HealthCheckConfig,
    pub sticky: StickyConfig,
    pub fragments: FragmentConfig,
    pub tcp: TcpConfig,
    pub slow_path: SlowPathConfig,
    pub flood: FloodConfig,
    pub vips: Vec<VipConfig>,
}

/// `[daemon]`
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// Level of the daemon's own log (`log_level`, default "info").
    pub log_level: LogLevel,
    /// Highest level of the XDP program's aya-log messages forwarded to the daemon's log
    /// (`kernel_log_level`, default "off"). Messages below it cost nothing in the kernel.
    pub kernel_log_level: LogLevel,
    /// Unix socket of the runtime control interface (`control_socket`, default
    /// "/run/sipxdp/control.sock").
    pub control_socket: PathBuf,
    /// bpffs directory where the program, links and maps are pinned (`pin_path`, default
    /// "/sys/fs/bpf/sipxdp").
    pub pin_path: PathBuf,
    /// Seed of the Call-ID hash (`hash_seed`, default 0). Changing it remaps every call.
    pub hash_seed: u64,
}

/// A log level; `Off` disables the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `[metrics]`
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`listen`, default "127.0.0.1:9560"); `None`
    /// when set to "off".
    pub listen: Option<SocketAddr>,
}

/// `[[interfaces]]`: an interface the XDP program attaches to.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceConfig {
    /// Interface name (`name`, required).
    pub name: String,
    /// Attach mode (`xdp_mode`, default "auto").
    pub xdp_mode: XdpMode,
}

/// How to attach XDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native if the driver supports it, else generic (`"auto"`).
    Auto,
    /// Generic XDP, in the kernel stack (`"skb"`).
    Skb,
    /// Native XDP, in the driver (`"driver"`).
    Driver,
}

impl XdpMode {
    /// The configuration's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Skb => "skb",
            Self::Driver => "driver",
        }
    }
}

/// `[health_check]`: SIP OPTIONS pings to every backend.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheckConfig {
    /// Whether to ping at all (`enabled`, default true). Off: every backend counts as up.
    pub enabled: bool,
    /// Time between pings to one backend (`interval`, default "2s").
    pub interval: Duration,
    /// How long to wait for a reply (`timeout`, default "1s"; must be below `interval`).
    pub timeout: Duration,
    /// Consecutive failures that take an up backend down (`down_after`, default 3).
    pub down_after: u32,
    /// Consecutive successes that bring a down backend up (`up_after`, default 2).
    pub up_after: u32,
    /// Reply status codes that count as alive (`reply_codes`, default all of 100-699:
    /// any answer shows a live SIP stack). Each item is a code (200) or a range ("200-299").
    pub reply_codes: Vec<(u16, u16)>,
}

/// `[sticky]`: dialog stickiness.
#[derive(Clone, Debug, PartialEq)]
pub struct StickyConfig {
    /// Entries of the (VIP, Call-ID) → backend LRU map (`entries`, default 1,048,576).
    pub entries: u32,
    /// A call idle this long follows the Maglev table again (`idle_timeout`, default "1h").
    pub idle_timeout: Duration,
}

/// `[fragments]`: IP fragment tracking.
#[derive(Clone, Debug, PartialEq)]
pub struct FragmentConfig {
    /// Entries of the (source, destination, IP ID) → backend LRU map (`entries`,
    /// default 65,536).
    pub entries: u32,
}

/// `[tcp]`: TCP connections to TCP VIPs, each kept on one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpConfig {
    /// Entries of the (VIP, connection hash) → backend LRU map (`connections`, default
    /// 262,144).
    pub connections: u32,
    /// A connection idle this long follows the Maglev table again (`idle_timeout`,
    /// default "1h").
    pub idle_timeout: Duration,
}

/// `[slow_path]`: what the daemon does with what the kernel path passes up.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPathConfig {
    /// Whether the daemon takes over messages the XDP program passes (`enabled`, default
    /// true).
    pub enabled: bool,
    /// Messages queued between receiving and forwarding before new ones are dropped
    /// (`queue`, default 4096).
    pub queue: u32,
}

/// `[flood]`: what flood protection shares between VIPs.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodConfig {
    /// Entries of the (source address, VIP) → token bucket LRU map (`sources`, default
    /// 65,536), allocated at start whether or not a VIP has a rate limit.
    pub sources: u32,
}

/// A VIP's flood protection (UDP VIPs only); the default is off.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VipFlood {
    /// Messages per second each source may send (`rate_limit`; absent or 0: no limit).
    pub rate_limit: Option<RateLimitConfig>,
    /// Substrings of User-Agent values whose messages are dropped (`drop_user_agents`,
    /// default empty), matched ASCII case-insensitively.
    pub drop_user_agents: Vec<String>,
}

/// `rate_limit` and `rate_burst` of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Messages per second per source (`rate_limit`).
    pub rate: u32,
    /// Messages a source may send at once after a quiet spell (`rate_burst`, default
    /// twice `rate_limit`; at least `rate_limit`).
    pub burst: u32,
}

/// `[[vips]]`: a virtual IP address and port that sipxdp balances.
#[derive(Clone, Debug, PartialEq)]
pub struct VipConfig {
    /// A name for logs, metrics and commands (`name`, default "ADDRESS:PORT/PROTOCOL").
    pub name: String,
    /// The VIP address (`address`, required; IPv4 or IPv6).
    pub address: IpAddr,
    /// The VIP port (`port`, default 5060).
    pub port: u16,
    /// `protocol`: "udp" (default) or "tcp".
    pub protocol: Protocol,
    /// `mode`: "dsr" (default) or "nat".
    pub mode: ForwardingMode,
    /// What to do with keep-alive datagrams (`keep_alive`: "pass", default, or "drop").
    pub keep_alive: Policy,
    /// What to do with datagrams that are not SIP (`non_sip`: "pass", default, or "drop").
    pub non_sip: Policy,
    /// What the slow path does with messages without a usable Call-ID (`unplaceable`:
    /// "drop", default, or "fallback": a backend chosen by the client's address and port).
    pub unplaceable: UnplaceablePolicy,
    /// Maglev table size (`table_size`, default 65,537; a prime, at most 65,537).
    pub table_size: u32,
    /// Rate limit and User-Agent drop list (`rate_limit`, `rate_burst`, `drop_user_agents`).
    pub flood: VipFlood,
    /// The backends (`[[vips.backends]]`, at least one).
    pub backends: Vec<BackendConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardingMode {
    /// Direct server return: only Ethernet addresses change; backends hold the VIP.
    Dsr,
    /// Destination NAT with the balancer on the return path.
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Pass,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnplaceablePolicy {
    Drop,
    Fallback,
}

/// `[[vips.backends]]`
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// The backend's own address (`address`, required), same family as the VIP.
    pub address: IpAddr,
    /// The port it listens on (`port`, default: the VIP's port). In DSR mode it must equal
    /// the VIP's port.
    pub port: u16,
    /// Share of new calls relative to the other backends (`weight`, default 1; 0 keeps the
    /// backend configured but takes it out of the table).
    pub weight: u32,
    /// Its MAC address (`mac`, optional): otherwise resolved from the neighbour table.
    pub mac: Option<[u8; 6]>,
    /// Administrative state (`state`: "active", default, "draining" or "disabled").
    pub state: AdminState,
}

impl BackendConfig {
    /// The backend's SIP address.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// Administrative state of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new calls.
    Active,
    /// Takes no new calls; calls in progress stay until idle.
    Draining,
    /// Takes nothing.
    Disabled,
}

impl AdminState {
    /// The configuration's spelling, also used by the control socket and the metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
        }
    }
}

// The defaults of the sections, each exactly as documented on its fields above; the parser
// uses them for every key a file leaves out.

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            kernel_log_level: LogLevel::Off,
            control_socket: PathBuf::from("/run/sipxdp/control.sock"),
            pin_path: PathBuf::from("/sys/fs/bpf/sipxdp"),
            hash_seed: 0,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9560)),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 2,
            reply_codes: vec![(100, 699)],
        }
    }
}

impl Default for StickyConfig {
    fn default() -> Self {
        Self {
            entries: 1_048_576,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

impl Default for FragmentConfig {
    fn default() -> Self {
        Self { entries: 65_536 }
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            connections: 262_144,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self { sources: 65_536 }
    }
}

impl Default for SlowPathConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 4096,
        }
    }
}

/// The protocol as written in the configuration ("udp", "tcp"); part of a VIP's default
/// name.
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}
