//! Deciding whether a privileged test can run here, and skipping it loudly when it cannot.
//!
//! Lab tests need root (network namespaces, veth, XDP). On a developer machine without root
//! they should skip with a visible reason instead of failing; in CI a skip would hide a broken
//! setup, so `SIPXDP_REQUIRE_PRIVILEGES=1` turns every skip into a panic.

use std::path::Path;
use std::process::{Command, Stdio};

/// Environment variable that turns skips into failures (set it to `1` in CI).
pub const REQUIRE_PRIVILEGES_ENV: &str = "SIPXDP_REQUIRE_PRIVILEGES";

/// Capabilities a lab needs: CAP_NET_ADMIN (links, addresses) and CAP_SYS_ADMIN (setns,
/// mounting namespace files).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Returns true when this process can build labs. Otherwise prints
/// `SKIP <test_name>: <reason>` to stderr and returns false, or panics with the reason when
/// `SIPXDP_REQUIRE_PRIVILEGES=1`.
pub fn require_privileges(test_name: &str) -> bool {
    match privilege_problem() {
        None => true,
        Some(reason) => skip(test_name, &reason),
    }
}

/// Returns true when `command` is an executable in `PATH` (e.g. `sipp`, `kamailio`,
/// `prometheus`); otherwise skips `test_name` with the same policy as [`require_privileges`].
pub fn require_command(test_name: &str, command: &str) -> bool {
    if find_in_path(command) {
        true
    } else {
        skip(test_name, &format!("command `{command}` not found in PATH"))
    }
}

fn skip(test_name: &str, reason: &str) -> bool {
    let forbidden = std::env::var(REQUIRE_PRIVILEGES_ENV).is_ok_and(|value| value == "1");
    skip_unless_forbidden(test_name, reason, forbidden)
}

fn skip_unless_forbidden(test_name: &str, reason: &str, forbidden: bool) -> bool {
    if forbidden {
        panic!("{test_name} cannot run and {REQUIRE_PRIVILEGES_ENV}=1 forbids skipping: {reason}");
    }
    eprintln!("SKIP {test_name}: {reason}");
    false
}

/// Why this process cannot build labs, or `None` when it can.
fn privilege_problem() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("needs root (effective uid is {euid})"));
    }
    match effective_capabilities() {
        Ok(caps) => {
            for (bit, name) in [
                (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
                (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
            ] {
                if caps & (1u64 << bit) == 0 {
                    return Some(format!("root but without {name}"));
                }
            }
        }
        Err(reason) => return Some(reason),
    }
    match Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(err) => Some(format!(
            "cannot run `ip netns list` (iproute2 missing?): {err}"
        )),
    }
}

/// The effective capability mask from `/proc/self/status` (`CapEff:` in hex).
fn effective_capabilities() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("reading /proc/self/status: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| "no readable CapEff line in /proc/self/status".to_owned())
}

fn find_in_path(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        return is_executable(Path::new(command));
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(command)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_a_made_up_command() {
        assert!(find_in_path("sh"));
        assert!(!find_in_path("sipxdp-no-such-command"));
    }

    #[test]
    fn skips_by_default() {
        assert!(!skip_unless_forbidden("some_test", "no root", false));
    }

    #[test]
    #[should_panic(expected = "SIPXDP_REQUIRE_PRIVILEGES=1 forbids skipping: no root")]
    fn panics_when_skipping_is_forbidden() {
        skip_unless_forbidden("some_test", "no root", true);
    }

    #[test]
    fn missing_command_skips() {
        if std::env::var(REQUIRE_PRIVILEGES_ENV).is_err() {
            assert!(!require_command("some_test", "sipxdp-no-such-command"));
        }
        assert!(require_command("some_test", "sh"));
    }

    #[test]
    fn capabilities_are_readable() {
        assert!(effective_capabilities().is_ok());
    }
}
