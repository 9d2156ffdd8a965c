//! CPU time on this machine, for the end-to-end benchmark: the kernel time of all CPUs
//! from `/proc/stat`, the user and system time of a process group from `/proc/PID/stat`
//! (Kamailio and sipxdp run as process groups, see [`crate::ChildGuard`]), and the run
//! time the kernel counts for a pinned XDP program while statistics are on.

use std::{
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

/// What to read besides the kernel time of all CPUs.
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
    /// All CPUs' system + irq + softirq time, s: where XDP, the network stack and system
    /// calls run, whoever caused them.
    pub kernel: f64,
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
    pub kernel: f64,
    pub group_user: f64,
    pub group_system: f64,
    pub program: f64,
    pub program_runs: u64,
}

impl Reading {
    /// Reads the clocks `meter` names.
    pub fn now(meter: &Meter) -> anyhow::Result<Self> {
        let (group_user, group_system) = match meter.group {
            Some(pgid) => group_times(pgid)?,
            None => (0.0, 0.0),
        };
        let (program, program_runs) = match &meter.program {
            Some(pin) => program_times(pin)?,
            None => (0.0, 0),
        };
        Ok(Self {
            at: Instant::now(),
            kernel: kernel_time()?,
            group_user,
            group_system,
            program,
            program_runs,
        })
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &Reading) -> Spent {
        Spent {
            seconds: later.at.duration_since(self.at).as_secs_f64(),
            kernel: later.kernel - self.kernel,
            group_user: later.group_user - self.group_user,
            group_system: later.group_system - self.group_system,
            program: later.program - self.program,
            program_runs: later.program_runs - self.program_runs,
        }
    }
}

/// The aggregate `cpu` line of `/proc/stat`: system (3rd), irq (6th) and softirq (7th).
fn kernel_time() -> anyhow::Result<f64> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_kernel_time(&text).context("no cpu line in /proc/stat")
}

fn parse_kernel_time(text: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(2)? + fields.get(5)? + fields.get(6)?;
    Some(ticks as f64 * tick())
}

/// Sum of utime and stime over the processes of group `pgid`, in seconds.
fn group_times(pgid: u32) -> anyhow::Result<(f64, f64)> {
    let mut user = 0;
    let mut system = 0;
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let path = entry?.path().join("stat");
        // Processes come and go while we read: a missing file is a process that ended.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        if let Some((group, utime, stime)) = parse_process_stat(&text)
            && group == pgid
        {
            user += utime;
            system += stime;
        }
    }
    Ok((user as f64 * tick(), system as f64 * tick()))
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
        let stat = "cpu  10 0 20 500 0 3 7 0 0 0\ncpu0 1 0 2 50 0 0 0 0 0 0\n";
        assert_eq!(parse_kernel_time(stat), Some(30.0 * tick()));
        let process = "4242 (kamailio (x)) S 1 4240 4240 0 -1 4194560 900 0 0 0 \
                       150 25 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_process_stat(process), Some((4240, 150, 25)));
    }
}
