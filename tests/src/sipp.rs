//! sipp as the lab's SIP client: its built-in UAC scenario (INVITE, 200, ACK, pause, BYE,
//! 200) for a bounded number of calls, with its statistics file and its per-call response
//! times read back, which is what the demo and its test report from.

use std::{
    fs,
    net::{SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{ChildGuard, Netns};

/// A sipp client placing calls; killed when dropped.
pub struct Sipp {
    child: ChildGuard,
    directory: PathBuf,
    calls: u32,
    rate: u32,
}

/// How sipp's calls went, from its statistics file and its response-time trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SippReport {
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Each successful call's setup time (INVITE sent to 200 OK received) in ms, sorted.
    /// sipp writes whole milliseconds.
    pub setup_ms: Vec<u64>,
}

impl SippReport {
    /// The `percent` percentile of the setup times (nearest rank); `None` without calls.
    pub fn setup_percentile(&self, percent: f64) -> Option<u64> {
        let last = self.setup_ms.len().checked_sub(1)?;
        let rank = ((percent / 100.0) * self.setup_ms.len() as f64).ceil() as usize;
        Some(self.setup_ms[rank.saturating_sub(1).min(last)])
    }
}

impl Sipp {
    /// Starts sipp in `netns` from `local`, placing `calls` calls (Call-IDs
    /// `N-TAG@LOCAL`) to `target` at
    /// `rate` calls per second, writing its files into `directory` (created, and emptied of
    /// an earlier run's files). No call waits longer than 5 s for a message, so a lost
    /// message fails its call instead of stalling the run.
    pub fn start(
        netns: &Netns,
        directory: &Path,
        local: SocketAddrV4,
        target: SocketAddr,
        tag: &str,
        calls: u32,
        rate: u32,
    ) -> anyhow::Result<Self> {
        ensure!(
            calls > 0 && rate > 0,
            "sipp needs at least one call per second"
        );
        if directory.exists() {
            fs::remove_dir_all(directory)
                .with_context(|| format!("removing {}", directory.display()))?;
        }
        fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let output = fs::File::create(directory.join("sipp.out"))?;
        let mut command = Command::new("sipp");
        command
            .current_dir(directory)
            .args(["-sn", "uac", "-i", &local.ip().to_string()])
            .args(["-p", &local.port().to_string()])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            // At most one second of calls in progress, each paused 100 ms before its BYE.
            .args(["-l", &rate.to_string(), "-d", "100"])
            // Call-IDs that do not depend on sipp's pid, so the same run places the same
            // calls, and that carry `tag`, so a run's calls can be told from another's.
            .args(["-cid_str", &format!("%u-{tag}@%s")])
            .args(["-recv_timeout", "5000", "-nostdin"])
            .args(["-trace_stat", "-stf", "stats.csv", "-fd", "1"])
            .args(["-trace_rtt", "-rtt_freq", "1"])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(Stdio::null());
        let child = netns.spawn(command)?;
        Ok(Self {
            child,
            directory: directory.to_owned(),
            calls,
            rate,
        })
    }

    /// How long the calls take at the configured rate, plus 10 s for the last ones and
    /// for timeouts: the bound after which [`Sipp::wait`] gives up.
    pub fn expected_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.calls.div_ceil(self.rate)) + 10)
    }

    /// Calls sipp's statistics file counts as created so far (it writes every second).
    pub fn created_so_far(&self) -> u64 {
        read_stats(&self.directory.join("stats.csv"))
            .map(|stats| stats.created)
            .unwrap_or(0)
    }

    /// Waits until sipp ends (killing it after [`Sipp::expected_duration`]) and reads its
    /// statistics and response times.
    pub fn wait(mut self) -> anyhow::Result<SippReport> {
        let deadline = Instant::now() + self.expected_duration();
        if self.child.wait_until_exit(deadline)?.is_none() {
            bail!(
                "sipp did not finish within {:?}:\n{}",
                self.expected_duration(),
                self.output()
            );
        }
        let stats = read_stats(&self.directory.join("stats.csv")).with_context(|| {
            format!("reading sipp's statistics; it printed:\n{}", self.output())
        })?;
        let mut setup_ms = read_response_times(&self.directory)?;
        setup_ms.sort_unstable();
        Ok(SippReport { setup_ms, ..stats })
    }

    /// What sipp printed (its final screen).
    pub fn output(&self) -> String {
        fs::read_to_string(self.directory.join("sipp.out")).unwrap_or_default()
    }
}

/// The cumulative counters of the last row of sipp's `;`-separated statistics file.
fn read_stats(path: &Path) -> anyhow::Result<SippReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("an empty statistics file")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .context("no statistics row")?
        .split(';')
        .collect();
    let field = |name: &str| -> anyhow::Result<u64> {
        let index = header
            .iter()
            .position(|column| *column == name)
            .with_context(|| format!("no column {name}"))?;
        let value = last
            .get(index)
            .with_context(|| format!("no value of {name}"))?;
        value
            .trim()
            .parse()
            .with_context(|| format!("{name} = {value:?}"))
    };
    Ok(SippReport {
        created: field("TotalCallCreated")?,
        successful: field("SuccessfulCall(C)")?,
        failed: field("FailedCall(C)")?,
        retransmissions: field("Retransmissions(C)")?,
        setup_ms: Vec::new(),
    })
}

/// The response times of sipp's `*_rtt.csv` trace (`Date_ms;response_time_ms;rtd_no`).
fn read_response_times(directory: &Path) -> anyhow::Result<Vec<u64>> {
    let mut times = Vec::new();
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with("_rtt.csv") {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        times.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| line.split(';').nth(1)?.trim().parse::<f64>().ok())
                .map(|ms| ms.round() as u64),
        );
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_response_times_are_read_back() {
        let directory = std::env::temp_dir().join(format!("sipp-parse-{}", std::process::id()));
        fs::create_dir_all(&directory).unwrap();
        fs::write(
            directory.join("stats.csv"),
            "StartTime;TotalCallCreated;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n\
             x;10;9;1;0;\n\
             y;20;18;2;3;\n",
        )
        .unwrap();
        fs::write(
            directory.join("uac_42_rtt.csv"),
            "Date_ms;response_time_ms;rtd_no\n1.0;3;1\n2.0;1;1\n3.0;2;1\n",
        )
        .unwrap();
        let stats = read_stats(&directory.join("stats.csv")).unwrap();
        let mut times = read_response_times(&directory).unwrap();
        times.sort_unstable();
        fs::remove_dir_all(&directory).unwrap();
        assert_eq!((stats.created, stats.successful, stats.failed), (20, 18, 2));
        assert_eq!(stats.retransmissions, 3);
        let report = SippReport {
            setup_ms: times,
            ..stats
        };
        assert_eq!(report.setup_ms, [1, 2, 3]);
        assert_eq!(report.setup_percentile(50.0), Some(2));
        assert_eq!(report.setup_percentile(100.0), Some(3));
    }
}

/// A sipp UAC whose every lost message fails its call (no retransmissions, `-nr`), for
/// tests that require zero failed calls. Unlike [`Sipp`] it keeps no statistics: its exit
/// status says whether every call succeeded, and its screen says why not.
#[derive(Clone, Debug)]
pub struct StrictUac {
    pub calls: u32,
    /// Calls started per second; at most that many are in progress at once.
    pub rate: u32,
    /// How long each call pauses before its BYE.
    pub pause: Duration,
    /// Each call on a TCP connection of its own (`-t tn`) instead of UDP.
    pub tcp: bool,
    /// sipp's own SIP port; `None` lets it pick.
    pub local_port: Option<u16>,
    /// sipp gives up, failing, after this long (`-timeout`).
    pub timeout: Duration,
}

/// A running [`StrictUac`]; killed when dropped.
pub struct StrictRun {
    child: ChildGuard,
    directory: PathBuf,
    timeout: Duration,
}

impl StrictUac {
    /// Starts the calls from `local` (in `netns`) to `target`, with sipp's files in a
    /// directory of its own named after `tag`.
    pub fn start(
        &self,
        netns: &Netns,
        local: std::net::IpAddr,
        target: SocketAddr,
        tag: &str,
    ) -> anyhow::Result<StrictRun> {
        let directory =
            std::env::temp_dir().join(format!("sipxdp-sipp-{tag}-{}", std::process::id()));
        fs::create_dir_all(&directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let mut command = Command::new("sipp");
        command.args(["-sn", "uac", "-i", &local.to_string()]);
        if let Some(port) = self.local_port {
            command.args(["-p", &port.to_string()]);
        }
        if self.tcp {
            command.args(["-t", "tn", "-max_socket", &(2 * self.calls).to_string()]);
        }
        command
            .args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()])
            .args(["-l", &self.rate.to_string()])
            .args(["-d", &self.pause.as_millis().to_string(), "-nr"])
            .args(["-recv_timeout", "5000", "-timeout"])
            .arg(self.timeout.as_secs().to_string())
            .args(["-timeout_error", "-nostdin"])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(fs::File::create(directory.join("sipp.out"))?)
            .stderr(fs::File::create(directory.join("sipp.err"))?);
        Ok(StrictRun {
            child: netns.spawn(command)?,
            directory,
            timeout: self.timeout,
        })
    }
}

impl StrictRun {
    /// Waits for sipp to end (at most its timeout and 30 s more) and removes its files.
    /// Returns whether every call succeeded, and what sipp printed.
    pub fn finish(mut self) -> anyhow::Result<(bool, String)> {
        let deadline = Instant::now() + self.timeout + Duration::from_secs(30);
        let status = self.child.wait_until_exit(deadline)?;
        let output = ["sipp.out", "sipp.err"]
            .map(|file| fs::read_to_string(self.directory.join(file)).unwrap_or_default())
            .join("\n");
        fs::remove_dir_all(&self.directory)
            .with_context(|| format!("removing {}", self.directory.display()))?;
        let Some(status) = status else {
            bail!("sipp did not end within {:?}:\n{output}", self.timeout);
        };
        Ok((status.success(), output))
    }
}
