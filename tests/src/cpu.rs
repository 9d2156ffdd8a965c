//! CPU time on this machine, for the end-to-end benchmark: the CPU time of every process
//! (kernel threads included), the user and system time of a process group (Kamailio and
//! sipxdp run as process groups, see [`crate::ChildGuard`]), and the run time the kernel
//! counts for a pinned XDP program while statistics are on.
//!
//! Processes' times, not `/proc/stat`'s per-CPU counters: those are samples taken at each
//! timer tick, and a paced sender that works for a tenth of every millisecond in step
//! with the timer can be missed by every sample. A process's user + system time adds up
//! to the run time the scheduler measured (the split between the two is estimated from
//! the samples, the sum is not). XDP and the network stack run in the softirq of the
//! task that sent the packet, so their time is that task's.

use std::{
    ffi::OsStr,
    fs,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use aya::{
    programs::ProgramInfo,
    sys::{Stats, enable_stats},
};

/// What to read besides the CPU time of all processes.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    /// The balancer's process group.
    pub group: Option<u32>,
    /// The balancer's pinned XDP program.
    pub program: Option<PathBuf>,
}

/// BPF program run-time statistics, on while this lives (`BPF_ENABLE_STATS`). They are
/// global: every program on the machine is timed meanwhile, at a few ns per run.
pub struct ProgramStats {
    _enabled: OwnedFd,
}

impl ProgramStats {
    pub fn enable() -> anyhow::Result<Self> {
        Ok(Self {
            _enabled: enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?,
        })
    }
}

/// (run time in s, runs) of the program pinned at `pin`.
fn program_times(pin: &Path) -> anyhow::Result<(f64, u64)> {
    let info = ProgramInfo::from_pin(pin)
        .with_context(|| format!("reading the program pinned at {}", pin.display()))?;
    Ok((info.run_time().as_secs_f64(), info.run_count()))
}

/// Seconds per clock tick, the unit of both files.
fn tick() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1.0 / hz.max(1) as f64
}

/// A reading of the CPU clocks at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub at: Instant,
    /// The user + system time of every process, s.
    pub tasks: f64,
    /// The group's user time, s (0 without a group).
    pub group_user: f64,
    /// The group's system time, s (0 without a group).
    pub group_system: f64,
    /// The program's run time, s, and runs (0 without a program).
    pub program: f64,
    pub program_runs: u64,
}

/// What changed between two [`Reading`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spent {
    pub seconds: f64,
    pub tasks: f64,
    pub group_user: f64,
    pub group_system: f64,
    pub program: f64,
    pub program_runs: u64,
}

impl Reading {
    /// Reads the clocks `meter` names.
    pub fn now(meter: &Meter) -> anyhow::Result<Self> {
        let times = process_times(meter.group)?;
        let (program, program_runs) = match &meter.program {
            Some(pin) => program_times(pin)?,
            None => (0.0, 0),
        };
        Ok(Self {
            at: Instant::now(),
            tasks: times.all,
            group_user: times.group_user,
            group_system: times.group_system,
            program,
            program_runs,
        })
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &Reading) -> Spent {
        Spent {
            seconds: later.at.duration_since(self.at).as_secs_f64(),
            tasks: later.tasks - self.tasks,
            group_user: later.group_user - self.group_user,
            group_system: later.group_system - self.group_system,
            program: later.program - self.program,
            program_runs: later.program_runs - self.program_runs,
        }
    }
}

/// Processes' CPU time, s.
struct ProcessTimes {
    /// User + system time of every process.
    all: f64,
    group_user: f64,
    group_system: f64,
}

/// The user + system time of every process (this one's from `getrusage`, to the
/// microsecond; the others' from `/proc/PID/stat`, in clock ticks), and the user and
/// system time of the processes of group `pgid`.
fn process_times(pgid: Option<u32>) -> anyhow::Result<ProcessTimes> {
    let own = std::process::id();
    let mut all = 0;
    let mut user = 0;
    let mut system = 0;
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let entry = entry?;
        if other_process(&entry.file_name(), own).is_none() {
            continue;
        }
        // Processes come and go while we read: a missing file is a process that ended.
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((group, utime, stime)) = parse_process_stat(&text) {
            all += utime + stime;
            if Some(group) == pgid {
                user += utime;
                system += stime;
            }
        }
    }
    Ok(ProcessTimes {
        all: all as f64 * tick() + own_time(),
        group_user: user as f64 * tick(),
        group_system: system as f64 * tick(),
    })
}

/// The pid a `/proc` entry named `name` stands for, if it is a process other than `own`:
/// `/proc/self` and `/proc/thread-self` are this process again (counting them doubled
/// the generator's time, and the XDP work in its softirq), and most other entries are
/// not processes.
fn other_process(name: &OsStr, own: u32) -> Option<u32> {
    let pid = name.to_str()?.parse().ok()?;
    (pid != own).then_some(pid)
}

/// This process's user + system time, s, its ended threads included.
fn own_time() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// (pgrp, utime, stime) of a `/proc/PID/stat` line. The command name may hold spaces
/// and parentheses, so fields are counted after the last `)`.
fn parse_process_stat(text: &str) -> Option<(u32, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, pgrp (field 5), ..., utime (14), stime (15).
    Some((
        fields.get(2)?.parse().ok()?,
        fields.get(11)?.parse().ok()?,
        fields.get(12)?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let process = "4242 (kamailio (x)) S 1 4240 4240 0 -1 4194560 900 0 0 0 \
                       150 25 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_process_stat(process), Some((4240, 150, 25)));
    }

    #[test]
    fn only_other_processes_are_counted() {
        let own = 4242;
        assert_eq!(other_process(OsStr::new("1"), own), Some(1));
        assert_eq!(other_process(OsStr::new("4241"), own), Some(4241));
        for not_another in ["4242", "self", "thread-self", "stat", "sys", "-1", ""] {
            assert_eq!(
                other_process(OsStr::new(not_another), own),
                None,
                "{not_another}"
            );
        }
    }
}
