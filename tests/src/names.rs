//! Names for namespaces and interfaces that never collide.
//!
//! Tests of one binary run in parallel threads and several test binaries (or engineers) may
//! run at the same time on one machine, so every name carries the creating process's pid and
//! a per-process counter. The pid also tells [`crate::remove_stale_namespaces`] which
//! namespaces belong to crashed runs: their pid no longer exists.
//!
//! Namespace names: `sx<pid>-<counter>-<role>`. Interface names must fit the kernel's
//! 15-byte `IFNAMSIZ` limit, so they use base 36: `sx<pid36>-<counter36><side>`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every namespace and generated interface of this harness starts with this.
pub const PREFIX: &str = "sx";

/// The kernel's limit on interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The prefix of every namespace name this process creates: `sx<pid>-`.
pub fn netns_process_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// The prefix of every interface name this process generates: `sx<pid36>-`.
pub fn ifname_process_prefix() -> String {
    format!("{PREFIX}{}-", base36(u64::from(std::process::id())))
}

/// A fresh namespace name `sx<pid>-<counter>-<role>`.
pub(crate) fn netns_name(role: &str) -> String {
    format!("{}{}-{role}", netns_process_prefix(), next_id())
}

/// A fresh interface name `sx<pid36>-<counter36><side>`, at most 15 bytes for any pid
/// below 36^5 (pid_max is at most 2^22) and the first 36^6 names of a process.
pub(crate) fn ifname(side: char) -> String {
    format!("{}{}{side}", ifname_process_prefix(), base36(next_id()))
}

/// The pid encoded in a namespace name of this harness, or `None` for foreign names.
pub fn owner_pid(netns_name: &str) -> Option<u32> {
    let rest = netns_name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// True when `role` is usable inside a namespace name (lowercase letters, digits, '-').
pub(crate) fn is_valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 32
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True when the kernel accepts `name` as an interface name.
pub(crate) fn is_valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

fn base36(mut value: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_names_carry_pid_and_role() {
        let name = netns_name("backend-1");
        assert!(name.starts_with(&netns_process_prefix()));
        assert!(name.ends_with("-backend-1"));
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        assert_ne!(netns_name("client"), netns_name("client"));
    }

    #[test]
    fn owner_pid_ignores_foreign_names() {
        assert_eq!(owner_pid("sx123-4-client"), Some(123));
        assert_eq!(owner_pid("sx-4-client"), None);
        assert_eq!(owner_pid("sxfoo-4"), None);
        assert_eq!(owner_pid("docker-1"), None);
        assert_eq!(owner_pid("sx12"), None);
    }

    #[test]
    fn ifnames_fit_ifnamsiz_even_for_the_largest_pid() {
        let name = ifname('a');
        assert!(is_valid_ifname(&name), "{name}");
        let worst = format!(
            "{PREFIX}{}-{}a",
            base36(4_194_304),
            base36(36u64.pow(6) - 1)
        );
        assert!(worst.len() <= MAX_IFNAME_LEN, "{worst}");
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn validation() {
        assert!(is_valid_role("backend-12"));
        assert!(!is_valid_role("Backend"));
        assert!(!is_valid_role(""));
        assert!(!is_valid_ifname("a-very-long-interface"));
        assert!(!is_valid_ifname("bad/name"));
        assert!(is_valid_ifname("br0"));
    }
}
