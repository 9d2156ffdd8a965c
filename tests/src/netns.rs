//! Network namespace guards: create, run commands and threads inside, and tear down.
//!
//! Every lab host is a namespace of its own, so nothing a test does can touch the root
//! namespace or the machine's uplink. A [`Netns`] is created with only `lo` up and no
//! default route, and its `Drop` kills whatever still runs inside and deletes it, so a
//! panicking test leaves nothing behind. Namespaces left by crashed runs (whose pid is gone)
//! are removed by [`remove_stale_namespaces`].

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::cmd::{self, CmdError};
use crate::names;
use crate::process::ChildGuard;
use crate::wait::wait_until;

/// Where `ip netns` keeps the bind mounts that name namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// How long teardown waits for SIGKILLed processes to leave a namespace.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("invalid namespace role `{role}` (use 1-32 of a-z, 0-9, '-')")]
    InvalidRole { role: String },
    #[error("creating network namespace {name}: {source}")]
    Create { name: String, source: CmdError },
    #[error("configuring new network namespace {name}: {source}")]
    Configure { name: String, source: CmdError },
    #[error("opening network namespace {name} at {path}: {source}")]
    Open {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("entering network namespace {name} (setns): {source}")]
    Setns { name: String, source: io::Error },
    #[error("empty command line for namespace {name}")]
    EmptyCommand { name: String },
    #[error("in network namespace {name}: {source}")]
    Command { name: String, source: CmdError },
    #[error("spawning `{command}` in network namespace {name}: {source}")]
    Spawn {
        name: String,
        command: String,
        source: io::Error,
    },
    #[error("{what} in network namespace {name}: {source}")]
    Io {
        name: String,
        what: String,
        source: io::Error,
    },
    #[error("listing network namespaces in {NETNS_RUN_DIR}: {source}")]
    List { source: io::Error },
    #[error("processes {pids:?} still run in network namespace {name} after SIGKILL")]
    Unkillable { name: String, pids: Vec<i32> },
    #[error("deleting network namespace {name}: {source}")]
    Delete { name: String, source: CmdError },
}

/// An owned, named network namespace; dropping it kills its processes and deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    role: String,
}

impl Netns {
    /// Creates `sx<pid>-<counter>-<role>` with `lo` up and no routes besides the kernel's.
    pub fn new(role: &str) -> Result<Netns, NetnsError> {
        if !names::is_valid_role(role) {
            return Err(NetnsError::InvalidRole {
                role: role.to_owned(),
            });
        }
        let name = names::netns_name(role);
        cmd::ip(&["netns", "add", &name]).map_err(|source| NetnsError::Create {
            name: name.clone(),
            source,
        })?;
        // From here on the guard owns the namespace, so a failure below still deletes it.
        let netns = Netns {
            name,
            role: role.to_owned(),
        };
        netns
            .ip(&["link", "set", "lo", "up"])
            .map_err(|source| NetnsError::Configure {
                name: netns.name.clone(),
                source,
            })?;
        Ok(netns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role given at creation (`client`, `backend-1`, ...).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The namespace file (`/var/run/netns/NAME`) that `setns()` opens.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, CmdError> {
        cmd::ip_in(&self.name, args)
    }

    /// Runs `argv` inside the namespace and waits for it; a non-zero exit is an error that
    /// carries stderr. For short commands; long-running ones belong in [`Netns::spawn`].
    pub fn run(&self, argv: &[&str]) -> Result<Output, NetnsError> {
        let (program, args) = argv.split_first().ok_or_else(|| NetnsError::EmptyCommand {
            name: self.name.clone(),
        })?;
        let mut command = Command::new(program);
        command.args(args);
        let file = self.open()?;
        enter_before_exec(&mut command, &file);
        cmd::run(&mut command).map_err(|source| NetnsError::Command {
            name: self.name.clone(),
            source,
        })
    }

    /// Starts `command` inside the namespace as the leader of a new process group; the
    /// returned guard kills the group and reaps it on drop. Stdio is whatever `command` says
    /// (the std default inherits the test's; consider `Stdio::null()` for stdin).
    ///
    /// The child enters the namespace with `setns()` between fork and exec, so anything set
    /// on `command` (args, env, stdio, cwd) is kept. Unlike `ip netns exec` it keeps the
    /// caller's mount namespace: `/sys/class/net` still shows the root namespace, while
    /// netlink, ioctls and sockets (what aya, sipp and kamailio use) see the lab namespace.
    pub fn spawn(&self, mut command: Command) -> Result<ChildGuard, NetnsError> {
        let description = cmd::describe(&command);
        let file = self.open()?;
        enter_before_exec(&mut command, &file);
        command.process_group(0);
        let child = command.spawn().map_err(|source| NetnsError::Spawn {
            name: self.name.clone(),
            command: description.clone(),
            source,
        })?;
        Ok(ChildGuard::new(
            child,
            format!("{description} (netns {})", self.name),
        ))
    }

    /// Runs `f` on a fresh OS thread that has joined this namespace and returns its result.
    ///
    /// Sockets created by `f` stay in this namespace for their whole life, also when used
    /// from other threads later; that is how tests open sockets inside a lab host. A panic
    /// in `f` is propagated to the caller.
    pub fn enter_thread<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                // SAFETY: setns() only changes the network namespace of this thread, which
                // is private to this call and ends with it; the fd is valid while `file`
                // lives.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(NetnsError::Setns {
                        name: self.name.clone(),
                        source: io::Error::last_os_error(),
                    });
                }
                drop(file);
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A UDP socket bound to `bind` inside the namespace.
    pub fn udp_socket(&self, bind: SocketAddr) -> Result<UdpSocket, NetnsError> {
        self.socket_op(format!("binding UDP socket to {bind}"), || {
            UdpSocket::bind(bind)
        })
    }

    /// A TCP listener bound to `bind` inside the namespace.
    pub fn tcp_listener(&self, bind: SocketAddr) -> Result<TcpListener, NetnsError> {
        self.socket_op(format!("listening on TCP {bind}"), || {
            TcpListener::bind(bind)
        })
    }

    /// A TCP connection from inside the namespace to `to`, bounded by `timeout`.
    pub fn tcp_connect(&self, to: SocketAddr, timeout: Duration) -> Result<TcpStream, NetnsError> {
        self.socket_op(format!("connecting over TCP to {to}"), || {
            TcpStream::connect_timeout(&to, timeout)
        })
    }

    /// Writes a sysctl of this namespace, e.g. `net.ipv4.conf.all.rp_filter` = `0`.
    ///
    /// Keys use dots as separators, so interface names inside keys must not contain dots
    /// (the harness never generates such names).
    pub fn sysctl_write(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = sysctl_path(key);
        self.enter_thread(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Io {
                name: self.name.clone(),
                what: format!("setting sysctl {key}={value}"),
                source,
            })
    }

    /// Reads a sysctl of this namespace (trimmed).
    pub fn sysctl_read(&self, key: &str) -> Result<String, NetnsError> {
        let path = sysctl_path(key);
        self.enter_thread(|| std::fs::read_to_string(&path))?
            .map(|value| value.trim().to_owned())
            .map_err(|source| NetnsError::Io {
                name: self.name.clone(),
                what: format!("reading sysctl {key}"),
                source,
            })
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Result<Vec<i32>, NetnsError> {
        pids_in(&self.name)
    }

    fn open(&self) -> Result<File, NetnsError> {
        let path = self.path();
        File::open(&path).map_err(|source| NetnsError::Open {
            name: self.name.clone(),
            path,
            source,
        })
    }

    fn socket_op<T: Send>(
        &self,
        what: String,
        op: impl FnOnce() -> io::Result<T> + Send,
    ) -> Result<T, NetnsError> {
        self.enter_thread(op)?.map_err(|source| NetnsError::Io {
            name: self.name.clone(),
            what,
            source,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = destroy(&self.name) {
            eprintln!("sipxdp-tests: tearing down: {err}");
        }
    }
}

/// Makes the child of `command` join the namespace of `file` before it execs.
fn enter_before_exec(command: &mut Command, file: &File) {
    let fd = file.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only makes the setns() system call
    // (async-signal-safe, no allocation). The parent keeps `file` open until spawn returns,
    // so the inherited fd is valid in the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn pids_in(name: &str) -> Result<Vec<i32>, NetnsError> {
    let output = cmd::ip(&["netns", "pids", name]).map_err(|source| NetnsError::Command {
        name: name.to_owned(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// SIGKILLs every process in namespace `name`, waits until they are gone and deletes it.
fn destroy(name: &str) -> Result<(), NetnsError> {
    // SAFETY: getpid has no preconditions.
    let own_pid = unsafe { libc::getpid() };
    let deadline = Instant::now() + KILL_DEADLINE;
    let mut remaining = Vec::new();
    let gone = wait_until(deadline, || match pids_in(name) {
        Ok(pids) => {
            remaining = pids.into_iter().filter(|&pid| pid != own_pid).collect();
            for &pid in &remaining {
                // SAFETY: kill() with a pid from `ip netns pids`; ESRCH (already gone) is fine.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            remaining.is_empty()
        }
        // A namespace that vanished underneath us has no processes left.
        Err(_) => {
            remaining.clear();
            true
        }
    });
    if !gone {
        return Err(NetnsError::Unkillable {
            name: name.to_owned(),
            pids: remaining,
        });
    }
    if !Path::new(NETNS_RUN_DIR).join(name).exists() {
        return Ok(());
    }
    cmd::ip(&["netns", "del", name]).map_err(|source| NetnsError::Delete {
        name: name.to_owned(),
        source,
    })?;
    Ok(())
}

/// Names of all network namespaces known to `ip netns` (any owner), sorted.
pub fn list_namespaces() -> Result<Vec<String>, NetnsError> {
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(NetnsError::List { source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetnsError::List { source })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Deletes namespaces of this harness (`sx<pid>-...`) whose creating process no longer
/// exists, killing anything still running inside them. Returns the names removed.
///
/// Namespaces of live processes (parallel test binaries, a running lab) are never touched.
/// If a crashed run's pid has been reused meanwhile, its namespaces survive until that pid
/// is gone too: a leak is better than deleting a live lab.
pub fn remove_stale_namespaces() -> Result<Vec<String>, NetnsError> {
    remove_namespaces_of(|pid| !Path::new("/proc").join(pid.to_string()).exists())
}

/// Deletes this process's namespaces, killing anything still running inside them: for a
/// harness told to stop (see [`crate::interrupt`]), whose guards will not run. Returns the
/// names removed.
pub fn remove_own_namespaces() -> Result<Vec<String>, NetnsError> {
    let own = std::process::id();
    remove_namespaces_of(|pid| pid == own)
}

/// Deletes the harness's namespaces whose creating process's pid `owner` picks.
fn remove_namespaces_of(owner: impl Fn(u32) -> bool) -> Result<Vec<String>, NetnsError> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        if !names::owner_pid(&name).is_some_and(&owner) {
            continue;
        }
        match destroy(&name) {
            Ok(()) => removed.push(name),
            // Another process cleaning up at the same time may have won the race.
            Err(_) if !Path::new(NETNS_RUN_DIR).join(&name).exists() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::link::Veth;
    use crate::testutil::{assert_no_leftovers, privileged};
    use crate::traffic::{UdpReceiver, send_udp_from};

    fn exists(name: &str) -> bool {
        list_namespaces().unwrap().iter().any(|n| n == name)
    }

    #[test]
    fn rejects_bad_roles_without_creating_anything() {
        assert!(matches!(
            Netns::new("Bad Role"),
            Err(NetnsError::InvalidRole { .. })
        ));
    }

    #[test]
    fn new_namespace_has_lo_up_and_no_default_route() {
        let Some(_serial) = privileged("new_namespace_has_lo_up_and_no_default_route") else {
            return;
        };
        let ns = Netns::new("plain").unwrap();
        assert!(exists(ns.name()));
        assert!(ns.name().starts_with(&names::netns_process_prefix()));
        let lo = ns.run(&["ip", "-j", "link", "show", "lo"]).unwrap();
        assert!(String::from_utf8_lossy(&lo.stdout).contains("\"UP\""));
        for family in ["-4", "-6"] {
            let routes = ns.ip(&[family, "route", "show", "default"]).unwrap();
            assert!(
                routes.stdout.is_empty(),
                "{family} default route in {}",
                ns.name()
            );
        }
        let name = ns.name().to_owned();
        drop(ns);
        assert!(!exists(&name));
    }

    #[test]
    fn run_failures_carry_stderr_and_namespace() {
        let Some(_serial) = privileged("run_failures_carry_stderr_and_namespace") else {
            return;
        };
        let ns = Netns::new("run").unwrap();
        let err = ns
            .run(&["sh", "-c", "echo broken >&2; exit 2"])
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("broken") && text.contains(ns.name()),
            "{text}"
        );
        assert!(matches!(ns.run(&[]), Err(NetnsError::EmptyCommand { .. })));
    }

    #[test]
    fn threads_and_sysctls_see_the_namespace_not_the_root() {
        let Some(_serial) = privileged("threads_and_sysctls_see_the_namespace_not_the_root") else {
            return;
        };
        let root_value = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_ignore")
            .unwrap()
            .trim()
            .to_owned();
        let ns = Netns::new("sysctl").unwrap();
        let wanted = if root_value == "1" { "2" } else { "1" };
        ns.sysctl_write("net.ipv4.conf.all.arp_ignore", wanted)
            .unwrap();
        assert_eq!(
            ns.sysctl_read("net.ipv4.conf.all.arp_ignore").unwrap(),
            wanted
        );
        let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_ignore").unwrap();
        assert_eq!(root_after.trim(), root_value);
        // The root's uplink does not exist inside the namespace.
        let has_eth0 = ns
            .enter_thread(|| std::path::Path::new("/proc/sys/net/ipv4/conf/eth0").exists())
            .unwrap();
        assert!(!has_eth0);
    }

    #[test]
    fn enter_thread_propagates_panics() {
        let Some(_serial) = privileged("enter_thread_propagates_panics") else {
            return;
        };
        let ns = Netns::new("panic").unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ns.enter_thread(|| panic!("inside the namespace")).unwrap();
        }));
        assert!(result.is_err());
    }

    #[test]
    fn child_guard_and_namespace_drop_kill_processes() {
        let Some(_serial) = privileged("child_guard_and_namespace_drop_kill_processes") else {
            return;
        };
        let ns = Netns::new("procs").unwrap();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("60");
        let guard = ns.spawn(sleeper).unwrap();
        let pid = i32::try_from(guard.id()).unwrap();
        assert!(ns.pids().unwrap().contains(&pid));
        drop(guard);
        assert!(!ns.pids().unwrap().contains(&pid));

        // A forking child whose guard outlives the namespace: the namespace's drop kills
        // the whole tree, the guard then only reaps.
        let mut forking = Command::new("sh");
        forking.args(["-c", "sleep 60 & sleep 60 & wait"]);
        let mut guard = ns.spawn(forking).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(wait_until(deadline, || ns.pids().unwrap().len() == 3));
        let name = ns.name().to_owned();
        drop(ns);
        assert!(!exists(&name));
        let status = guard
            .wait_until_exit(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert!(
            status.is_some(),
            "the namespace's drop must have killed the child"
        );
    }

    #[test]
    fn terminate_sends_sigterm_first() {
        use std::os::unix::process::ExitStatusExt;
        let Some(_serial) = privileged("terminate_sends_sigterm_first") else {
            return;
        };
        let ns = Netns::new("term").unwrap();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("60");
        let guard = ns.spawn(sleeper).unwrap();
        let status = guard.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn remove_stale_namespaces_removes_dead_owners_only() {
        let Some(_serial) = privileged("remove_stale_namespaces_removes_dead_owners_only") else {
            return;
        };
        // A pid above pid_max can never exist, so this looks like a crashed run's namespace.
        // Our own pid in the role keeps parallel runs of this test apart.
        let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stale = format!(
            "{}{}-0-stale-of-{}",
            names::PREFIX,
            pid_max + 1,
            std::process::id()
        );
        cmd::ip(&["netns", "add", &stale]).unwrap();
        let mut orphan = Command::new("ip")
            .args(["netns", "exec", &stale, "sleep", "60"])
            .spawn()
            .unwrap();
        let live = Netns::new("live").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        wait_until(deadline, || {
            pids_in(&stale).is_ok_and(|pids| !pids.is_empty())
        });

        // Another test process building a lab right now may win the race and remove it
        // first; either way it must be gone afterwards and the live namespace must remain.
        remove_stale_namespaces().unwrap();
        assert!(!exists(&stale));
        assert!(exists(live.name()));
        assert!(
            !orphan.wait().unwrap().success(),
            "the orphan must have been killed"
        );
    }

    #[test]
    fn own_namespaces_are_removed_with_what_runs_in_them() {
        let Some(_serial) = privileged("own_namespaces_are_removed_with_what_runs_in_them") else {
            return;
        };
        let own = Netns::new("own").unwrap();
        let mut inside = Command::new("ip")
            .args(["netns", "exec", own.name(), "sleep", "60"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        wait_until(deadline, || {
            pids_in(own.name()).is_ok_and(|pids| !pids.is_empty())
        });

        let removed = remove_own_namespaces().unwrap();
        assert!(removed.iter().any(|name| name == own.name()), "{removed:?}");
        assert!(!exists(own.name()));
        assert!(
            !inside.wait().unwrap().success(),
            "what ran inside must have been killed"
        );
        // Already removed: its guard has nothing left to do.
        std::mem::forget(own);
    }

    #[test]
    fn same_addresses_in_two_namespace_sets_are_isolated() {
        let Some(_serial) = privileged("same_addresses_in_two_namespace_sets_are_isolated") else {
            return;
        };
        let sender_addr = Ipv4Addr::new(198, 51, 100, 10);
        let receiver_addr = Ipv4Addr::new(198, 51, 100, 21);
        let mut worlds = Vec::new();
        for _ in 0..2 {
            let a = Netns::new("iso-a").unwrap();
            let b = Netns::new("iso-b").unwrap();
            let veth = Veth::new(&a, &b, None, None).unwrap();
            for (end, addr) in [(veth.a(), sender_addr), (veth.b(), receiver_addr)] {
                end.add_address(addr.into(), 26).unwrap();
                end.set_up().unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            veth.a().wait_oper_up(deadline).unwrap();
            let receiver = UdpReceiver::bind(&b, SocketAddr::from((receiver_addr, 5060))).unwrap();
            worlds.push((receiver, veth, a, b));
        }
        for (index, (_, _, a, _)) in worlds.iter().enumerate() {
            let payload = format!("world {index}");
            let summary = send_udp_from(
                a,
                SocketAddr::from((sender_addr, 0)),
                SocketAddr::from((receiver_addr, 5060)),
                std::iter::repeat_n(payload.as_bytes(), 20),
            )
            .unwrap();
            assert_eq!(summary.sent, 20);
        }
        for (index, (receiver, ..)) in worlds.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let got = receiver.collect(20, deadline).unwrap();
            assert_eq!(got.len(), 20, "world {index}");
            assert!(
                got.iter()
                    .all(|d| d.payload == format!("world {index}").as_bytes())
            );
            // Nothing from the other world arrives later either.
            let extra = receiver.collect(1, Instant::now() + Duration::from_millis(200));
            assert!(extra.unwrap().is_empty());
        }
        drop(worlds);
        assert_no_leftovers();
    }
}
