//! The capabilities `sipxdp run` needs, checked before it touches anything, so that a
//! daemon started without them says which are missing instead of failing halfway.

use std::fmt;

/// A Linux capability the daemon uses, with its number (`linux/capability.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Attaching XDP, reading the neighbour tables, the forced socket buffer size.
    NetAdmin = 12,
    /// The slow path's `AF_PACKET` and raw IP sockets.
    NetRaw = 13,
    /// Stands in for `CapBpf` and `CapPerfmon` on any kernel.
    SysAdmin = 21,
    /// The verifier's checks for privileged programs (pointer arithmetic on packet data
    /// without the speculation limits), reading program statistics (Linux 5.8).
    Perfmon = 38,
    /// Loading the program and creating its maps (Linux 5.8).
    Bpf = 39,
}

impl Capability {
    /// What the daemon uses it for.
    const fn purpose(self) -> &'static str {
        match self {
            Self::NetAdmin => "attaching XDP and reading the neighbour tables",
            Self::NetRaw => "the slow path's packet sockets",
            Self::SysAdmin => "everything CAP_BPF and CAP_PERFMON allow",
            Self::Perfmon => "the verifier's privileged checks and program statistics",
            Self::Bpf => "loading the program and its maps",
        }
    }

    fn held(self, effective: u64) -> bool {
        effective & (1 << self as u32) != 0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::NetRaw => "CAP_NET_RAW",
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::Perfmon => "CAP_PERFMON",
            Self::Bpf => "CAP_BPF",
        };
        write!(f, "{name} ({})", self.purpose())
    }
}

/// The capabilities the daemon needs (the slow path adds `CAP_NET_RAW`) that the
/// effective set `effective` lacks. `CAP_SYS_ADMIN` covers `CAP_BPF` and `CAP_PERFMON`.
pub fn missing(effective: u64, slow_path: bool) -> Vec<Capability> {
    let admin = Capability::SysAdmin.held(effective);
    let mut needed = vec![Capability::Bpf, Capability::NetAdmin, Capability::Perfmon];
    if slow_path {
        needed.push(Capability::NetRaw);
    }
    needed
        .into_iter()
        .filter(|capability| {
            let covered = admin && matches!(capability, Capability::Bpf | Capability::Perfmon);
            !capability.held(effective) && !covered
        })
        .collect()
}

/// The effective capability set in `/proc/self/status` text (`CapEff:` in hex).
pub fn effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = 0x1ff_ffff_ffff;

    #[test]
    fn root_lacks_nothing() {
        assert!(missing(ALL, true).is_empty());
    }

    #[test]
    fn the_documented_set_is_enough() {
        let set = [
            Capability::Bpf,
            Capability::NetAdmin,
            Capability::Perfmon,
            Capability::NetRaw,
        ]
        .iter()
        .fold(0, |bits, capability| bits | 1 << *capability as u32);
        assert!(missing(set, true).is_empty());
        assert_eq!(missing(set & !(1 << 13), false), vec![]);
        assert_eq!(missing(set & !(1 << 13), true), vec![Capability::NetRaw]);
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon() {
        let set = 1 << 21 | 1 << 12;
        assert!(missing(set, false).is_empty());
        assert_eq!(missing(1 << 12 | 1 << 38, false), vec![Capability::Bpf]);
    }

    #[test]
    fn the_effective_set_is_read_from_the_status_file() {
        let status = "Name:\tsipxdp\nCapInh:\t0000000000000000\nCapEff:\t000001c000003000\n";
        assert_eq!(effective(status), Some(0x1c0_0000_3000));
        assert_eq!(effective("Name: x\n"), None);
    }
}
