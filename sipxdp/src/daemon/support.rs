//! What this version of the data path can carry out of what the configuration can say.
//!
//! The configuration language describes TCP VIPs in NAT mode too, so that files written
//! today keep working as the data path grows. The kernel program balances TCP by direct
//! server return only, so `check-config` and `run` refuse such a VIP with one clear line
//! rather than attaching a program that would forward its segments without the rewrite.

use crate::config::{Config, ForwardingMode, Protocol};

/// One line per configured feature the data path cannot serve yet; empty when it can
/// serve the whole file.
pub fn unsupported(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for vip in &config.vips {
        if vip.protocol == Protocol::Tcp && vip.mode == ForwardingMode::Nat {
            problems.push(format!(
                "VIP {}: protocol \"tcp\" is balanced by direct server return only; \
                 mode \"nat\" is not supported for it (use mode = \"dsr\")",
                vip.name
            ));
        }
    }
    problems
}

/// One line per kernel setting that NAT mode needs and this machine lacks; empty when no
/// VIP uses NAT. `read` returns the value of a sysctl, as `sysctl -n` prints it.
///
/// NAT needs the balancer to forward (`ip_forward`, IPv6 `forwarding`), and, for IPv4, to
/// accept datagrams whose source is one of its own addresses (`accept_local`): an answer
/// to a client the kernel has no neighbour entry for yet leaves XDP with the VIP as its
/// source, for the stack to resolve the neighbour and forward it.
pub fn missing_nat_sysctls(config: &Config, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let nat: Vec<_> = config
        .vips
        .iter()
        .filter(|vip| vip.mode == ForwardingMode::Nat)
        .collect();
    let mut wanted = Vec::new();
    if nat.iter().any(|vip| vip.address.is_ipv4()) {
        wanted.push("net.ipv4.ip_forward");
        wanted.push("net.ipv4.conf.all.accept_local");
    }
    if nat.iter().any(|vip| vip.address.is_ipv6()) {
        wanted.push("net.ipv6.conf.all.forwarding");
    }
    wanted
        .into_iter()
        .filter(|key| read(key).as_deref().map(str::trim) != Some("1"))
        .map(|key| {
            format!(
                "NAT mode needs the sysctl {key} = 1 (it is {}); see the README, NAT mode",
                read(key).map_or_else(|| "unreadable".to_owned(), |value| value.trim().to_owned())
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::parse, test_support::Machine};

    fn config(vip: &str) -> Config {
        let text = format!(
            "[[interfaces]]\nname = \"eth0\"\n[[vips]]\n{vip}\n[[vips.backends]]\n\
             address = \"{}\"\nport = 5080\n",
            if vip.contains("2001:db8") {
                "2001:db8:2::21"
            } else {
                "198.51.100.21"
            }
        );
        parse(&text, "test.toml", &Machine).expect("a valid configuration")
    }

    #[test]
    fn udp_vips_of_both_families_and_modes_are_supported() {
        for address in ["198.51.100.100", "2001:db8:1::100"] {
            for mode in ["dsr", "nat"] {
                let config = config(&format!(
                    "address = \"{address}\"\nport = 5080\nmode = \"{mode}\""
                ));
                assert_eq!(unsupported(&config), Vec::<String>::new());
            }
        }
    }

    #[test]
    fn tcp_is_supported_by_direct_server_return_only() {
        let dsr = config("address = \"2001:db8:1::100\"\nport = 5080\nprotocol = \"tcp\"");
        assert_eq!(unsupported(&dsr), Vec::<String>::new());
        let nat = config(
            "name = \"trunk\"\naddress = \"198.51.100.100\"\nport = 5080\nprotocol = \"tcp\"\n\
             mode = \"nat\"",
        );
        assert_eq!(
            unsupported(&nat),
            [
                "VIP trunk: protocol \"tcp\" is balanced by direct server return only; mode \
              \"nat\" is not supported for it (use mode = \"dsr\")"
            ]
        );
    }

    #[test]
    fn nat_names_each_missing_sysctl() {
        let nat = config("address = \"198.51.100.100\"\nport = 5080\nmode = \"nat\"");
        let set = |key: &str| {
            Some(
                if key.ends_with("accept_local") {
                    "0\n"
                } else {
                    "1\n"
                }
                .to_owned(),
            )
        };
        let missing = missing_nat_sysctls(&nat, set);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("net.ipv4.conf.all.accept_local = 1 (it is 0)"));
        assert_eq!(
            missing_nat_sysctls(&nat, |_| Some("1".to_owned())),
            Vec::<String>::new()
        );
        let dsr = config("address = \"198.51.100.100\"\nport = 5080");
        assert_eq!(missing_nat_sysctls(&dsr, |_| None), Vec::<String>::new());
    }
}
