//! What this version of the data path can carry out of what the configuration can say.
//!
//! The configuration language already describes SIP over TCP, so that
//! files written today keep working as the data path grows. Until the kernel program
//! handles them, `check-config` and `run` refuse such a file with one clear line per VIP
//! rather than attaching a program that would silently pass that traffic to the stack.

use crate::config::{Config, Protocol};

/// One line per configured feature the data path cannot serve yet; empty when it can
/// serve the whole file.
pub fn unsupported(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for vip in &config.vips {
        if vip.protocol == Protocol::Tcp {
            problems.push(format!(
                "VIP {}: protocol \"tcp\" is not supported by this version's data path yet",
                vip.name
            ));
        }
    }
    problems
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
    fn tcp_is_named() {
        let config = config("address = \"2001:db8:1::100\"\nport = 5080\nprotocol = \"tcp\"");
        let problems = unsupported(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("tcp"));
    }
}
