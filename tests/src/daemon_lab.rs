//! The `sipxdp` daemon running in a lab: a balancer namespace running the real binary
//! from a generated configuration, backends that receive calls on the VIP (direct server
//! return) and answer the daemon's SIP OPTIONS health checks, and a client that sends
//! dialogs. Shared by the daemon tests and the demo.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    ChildGuard, Lab, LabConfig, Netns, UdpReceiver,
    delivery::{Received, WINDOW, collect, deliver_windowed},
    kamailio::{self, CallSpread, Kamailio},
    prometheus::{Prometheus, http_get},
    send_udp_from,
    sipgen::{Answer, Call, answer_calls, answer_options},
    sipp::{Sipp, SippReport},
    wait_until,
};

/// The SIP port of the VIP, and of the backends in direct server return.
pub const SIP_PORT: u16 = 5060;
/// Where the daemon serves its metrics, inside the balancer's namespace.
pub const METRICS: &str = "127.0.0.1:9560";
/// The port NAT backends listen on: not the VIP's, so that NAT rewrites the port too.
pub const NAT_BACKEND_PORT: u16 = 5080;

/// How the lab's balancer forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The standard lab: one segment, backends hold the VIP.
    Dsr,
    /// The routed lab: backends on their own segment behind the balancer, on
    /// [`NAT_BACKEND_PORT`], answering INVITE and BYE.
    Nat,
}

/// The `sipxdp` binary next to the running one (`target/<profile>/`), or `$SIPXDP_BIN`.
pub fn sipxdp_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SIPXDP_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the running binary")?;
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("sipxdp");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no sipxdp binary beside {}: build it with `cargo build --release -p sipxdp` \
         (`cargo xtask test` does) or set SIPXDP_BIN",
        exe.display()
    )
}

fn lab_config(weights: &[u32]) -> LabConfig {
    LabConfig {
        backends: weights.len(),
        ..LabConfig::default()
    }
}

/// The directory of this process's lab files (configuration, logs, control socket).
fn lab_directory() -> anyhow::Result<PathBuf> {
    let directory = std::env::temp_dir().join(format!("sipxdp-lab-{}", std::process::id()));
    fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
    Ok(directory)
}

/// The lab with the daemon running.
pub struct DaemonLab {
    lab: Lab,
    mode: Mode,
    /// Each backend's SIP stack: one socket per family, IPv4 first ...
    receivers: Vec<[UdpReceiver; 2]>,
    /// ... or a Kamailio (`None` while stopped).
    kamailios: Vec<Option<Kamailio>>,
    /// Whether the configuration has the TCP VIP `lab-tcp` too.
    tcp_vip: bool,
    directory: PathBuf,
    daemon: Option<ChildGuard>,
    /// Extra lines of every `[[vips]]` table in the configuration.
    vip_options: String,
    /// A command the daemon runs under (`setpriv …`), empty for none.
    wrapper: Vec<String>,
}

impl DaemonLab {
    /// Builds the standard lab with one backend per weight, starts the backends and the
    /// daemon, and waits until the program is attached.
    pub fn start(weights: &[u32]) -> anyhow::Result<Self> {
        Self::start_in(Mode::Dsr, weights)
    }

    /// Builds the lab of `mode` with one backend per weight, starts the backends and the
    /// daemon, and waits until the program is attached to every balancer interface.
    pub fn start_in(mode: Mode, weights: &[u32]) -> anyhow::Result<Self> {
        remove_stale_pins();
        let (lab, port, answer): (_, _, fn(&[u8]) -> Answer) = match mode {
            Mode::Dsr => (
                Lab::standard(&lab_config(weights))?,
                SIP_PORT,
                answer_options,
            ),
            Mode::Nat => (
                Lab::routed_nat(&lab_config(weights))?,
                NAT_BACKEND_PORT,
                answer_calls,
            ),
        };
        // Bound to every address of each family: calls arrive for the VIP, health checks
        // for the backend's own address. IPv6 sockets take only IPv6, so that the IPv4
        // socket sees plain IPv4 peers.
        let any_v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let any_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let mut receivers = Vec::new();
        for backend in lab.backends() {
            backend.netns().sysctl_write("net.ipv6.bindv6only", "1")?;
            receivers.push([
                UdpReceiver::bind_answering(backend.netns(), any_v4, answer)?,
                UdpReceiver::bind_answering(backend.netns(), any_v6, answer)?,
            ]);
        }
        Self::finish(lab, mode, receivers, Vec::new(), false, weights)
    }

    /// The standard (DSR) lab with a Kamailio on each backend instead of the harness's
    /// sockets: real SIP proxies answering health checks and calls. See
    /// [`DaemonLab::send_to_kamailio`].
    pub fn start_with_kamailio(weights: &[u32]) -> anyhow::Result<Self> {
        Self::with_kamailio(weights, false)
    }

    /// [`DaemonLab::start_with_kamailio`] with the TCP VIP `lab-tcp` too, on the IPv4
    /// VIP's address and port ([`DaemonLab::vip`]), over the same backends.
    pub fn start_with_kamailio_and_tcp(weights: &[u32]) -> anyhow::Result<Self> {
        Self::with_kamailio(weights, true)
    }

    fn with_kamailio(weights: &[u32], tcp_vip: bool) -> anyhow::Result<Self> {
        let lab = Lab::standard(&lab_config(weights))?;
        let directory = lab_directory()?;
        let mut kamailios = Vec::new();
        for (index, backend) in lab.backends().iter().enumerate() {
            let name = format!("kamailio-{}", index + 1);
            kamailios.push(Some(Kamailio::start(
                backend.netns(),
                &directory,
                &name,
                SIP_PORT,
            )?));
        }
        Self::finish(lab, Mode::Dsr, Vec::new(), kamailios, tcp_vip, weights)
    }

    fn finish(
        lab: Lab,
        mode: Mode,
        receivers: Vec<[UdpReceiver; 2]>,
        kamailios: Vec<Option<Kamailio>>,
        tcp_vip: bool,
        weights: &[u32],
    ) -> anyhow::Result<Self> {
        let mut this = DaemonLab {
            lab,
            mode,
            receivers,
            kamailios,
            tcp_vip,
            directory: lab_directory()?,
            daemon: None,
            vip_options: String::new(),
            wrapper: Vec::new(),
        };
        this.write_config(weights)?;
        this.start_daemon()?;
        Ok(this)
    }

    /// Stops the Kamailio of backend `number` (from 1).
    pub fn stop_kamailio(&mut self, number: usize) -> anyhow::Result<()> {
        let kamailio = self
            .kamailios
            .get_mut(number - 1)
            .and_then(Option::take)
            .context("no Kamailio runs on that backend")?;
        kamailio.stop()
    }

    /// Starts the Kamailio of backend `number` (from 1) again.
    pub fn start_kamailio(&mut self, number: usize) -> anyhow::Result<()> {
        let backend = &self.lab.backends()[number - 1];
        let name = format!("kamailio-{number}");
        let kamailio = Kamailio::start(backend.netns(), &self.directory, &name, SIP_PORT)?;
        self.kamailios[number - 1] = Some(kamailio);
        Ok(())
    }

    /// The INVITEs the Kamailio of backend `number` (from 1) received so far.
    pub fn kamailio_invites(&self, number: usize) -> usize {
        self.kamailios
            .get(number - 1)
            .and_then(Option::as_ref)
            .map_or(0, |kamailio| {
                kamailio
                    .requests()
                    .iter()
                    .filter(|request| request.method == "INVITE")
                    .count()
            })
    }

    /// What every running Kamailio received so far, with its backend number (from 1),
    /// health checks left out.
    pub fn kamailio_requests(&self) -> Vec<(usize, kamailio::Request)> {
        self.kamailios
            .iter()
            .enumerate()
            .filter_map(|(index, kamailio)| kamailio.as_ref().map(|kamailio| (index + 1, kamailio)))
            .flat_map(|(number, kamailio)| {
                kamailio
                    .requests()
                    .into_iter()
                    .filter(|request| request.method != "OPTIONS")
                    .map(move |request| (number, request))
            })
            .collect()
    }

    /// Sends `messages` from `client` to `vip` in windows of [`WINDOW`], each after the
    /// previous one was logged by the Kamailios, and returns the requests they logged
    /// meanwhile (health checks left out).
    ///
    /// # Errors
    ///
    /// A window that was not logged whole within 10 s, with what the daemon logged.
    pub fn send_to_kamailio(
        &self,
        client: SocketAddr,
        vip: SocketAddr,
        messages: &[Vec<u8>],
    ) -> anyhow::Result<Vec<(usize, kamailio::Request)>> {
        let already = self.kamailio_requests();
        for window in messages.chunks(WINDOW) {
            let before = self.kamailio_requests().len();
            send_udp_from(self.lab.client().netns(), client, vip, window)?;
            let arrived = wait_until(Instant::now() + Duration::from_secs(10), || {
                self.kamailio_requests().len() >= before + window.len()
            });
            ensure!(
                arrived,
                "{} of {} messages reached the Kamailios; sipxdp logged:\n{}",
                self.kamailio_requests().len() - before,
                window.len(),
                self.daemon_log()
            );
        }
        let mut all = self.kamailio_requests();
        // What each Kamailio logged before this call is a prefix of what it logs now.
        all.retain(|entry| !already.contains(entry));
        Ok(all)
    }

    /// Starts sipp in the client's namespace placing `calls` calls at `rate` per second
    /// to the IPv4 VIP, with Call-IDs tagged `tag` (`N-TAG@client`), so that the requests
    /// of this run can be told from others' in the Kamailios' logs.
    pub fn start_sipp(&self, tag: &str, calls: u32, rate: u32) -> anyhow::Result<Sipp> {
        Sipp::start(
            self.lab.client().netns(),
            &self.directory.join(format!("sipp-{tag}")),
            std::net::SocketAddrV4::new(self.lab.client().iface().ipv4(), SIP_PORT),
            self.vip(),
            tag,
            calls,
            rate,
        )
    }

    /// Waits for `sipp` (started with `tag`) to end and returns its report and where the
    /// Kamailios saw the requests of its calls. Kamailio logs a request before answering
    /// it, but an ACK (never answered) may be logged after the call ended, so this polls
    /// up to 5 s until three requests per successful call are in the logs.
    pub fn finish_sipp(&self, tag: &str, sipp: Sipp) -> anyhow::Result<(SippReport, CallSpread)> {
        let report = sipp.wait()?;
        let marker = format!("-{tag}@");
        let requests = || {
            let mut requests = self.kamailio_requests();
            requests.retain(|(_, request)| request.call_id.contains(&marker));
            requests
        };
        let expected = usize::try_from(report.successful * 3)?;
        wait_until(Instant::now() + Duration::from_secs(5), || {
            requests().len() >= expected
        });
        Ok((report, kamailio::spread(&requests())))
    }

    /// The directory of the lab's files (configuration, logs, sipp's files).
    pub fn directory(&self) -> &std::path::Path {
        &self.directory
    }

    /// The running daemon's pid, which leads its process group.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(ChildGuard::id)
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.directory.join("sipxdp.toml")
    }

    /// The IPv4 VIP's address and port (VIP `lab`).
    pub fn vip(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.lab.vip().v4), SIP_PORT)
    }

    /// The port the backends listen on: the VIP's for DSR, [`NAT_BACKEND_PORT`] for NAT.
    fn backend_port(&self) -> u16 {
        match self.mode {
            Mode::Dsr => SIP_PORT,
            Mode::Nat => NAT_BACKEND_PORT,
        }
    }

    /// Backend `number`'s (from 1) SIP address in one family, as the configuration
    /// names it.
    pub fn backend_address(&self, number: usize, v6: bool) -> SocketAddr {
        SocketAddr::new(
            self.lab.backends()[number - 1].iface().ip(v6),
            self.backend_port(),
        )
    }

    /// The IPv6 VIP's address and port (VIP `lab6`), over the same backends.
    pub fn vip_v6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.lab.vip().v6), SIP_PORT)
    }

    /// Makes `write_config` add `lines` to every VIP's table (policies, for example).
    pub fn set_vip_options(&mut self, lines: &str) {
        self.vip_options = lines.to_owned();
    }

    /// Writes the configuration for `weights` (one backend each, in lab order).
    pub fn write_config(&self, weights: &[u32]) -> anyhow::Result<()> {
        let balancer = self.lab.balancer();
        let mut text = String::from("# Generated by sipxdp-lab for a throw-away lab.\n");
        let interfaces = [Some(balancer.iface()), balancer.backend_side()];
        for interface in interfaces.into_iter().flatten() {
            text.push_str(&format!(
                "[[interfaces]]\nname = \"{}\"\n\
                 # Generic XDP: veth's native XDP needs extra set-up on the peer.\n\
                 xdp_mode = \"skb\"\n\n",
                interface.name()
            ));
        }
        text.push_str(&format!(
            "[daemon]\nlog_level = \"info\"\ncontrol_socket = \"{socket}\"\n\
             pin_path = \"{pins}\"\n\n\
             [metrics]\nlisten = \"{METRICS}\"\n\n\
             [health_check]\ninterval = \"500ms\"\ntimeout = \"300ms\"\ndown_after = 2\nup_after = 1\n",
            socket = self.control_socket().display(),
            pins = self.pin_path().display(),
        ));
        let mode = match self.mode {
            Mode::Dsr => "dsr",
            Mode::Nat => "nat",
        };
        let port = self.backend_port();
        let vip = self.lab.vip();
        let mut vips = vec![
            ("lab", IpAddr::V4(vip.v4), false, "udp"),
            ("lab6", IpAddr::V6(vip.v6), true, "udp"),
        ];
        if self.tcp_vip {
            vips.push(("lab-tcp", IpAddr::V4(vip.v4), false, "tcp"));
        }
        for (name, address, v6, protocol) in vips {
            text.push_str(&format!(
                "\n[[vips]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {SIP_PORT}\n\
                 protocol = \"{protocol}\"
mode = \"{mode}\"
{}",
                self.vip_options
            ));
            for (backend, weight) in self.lab.backends().iter().zip(weights) {
                text.push_str(&format!(
                    "\n[[vips.backends]]\naddress = \"{}\"\nport = {port}\nweight = {weight}\n",
                    backend.iface().ip(v6)
                ));
            }
        }
        write_config(&self.config_path(), &text)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    fn start_daemon(&mut self) -> anyhow::Result<()> {
        let daemon = spawn_daemon(
            self.lab.balancer().netns(),
            &self.config_path(),
            &self.directory,
            &self.wrapper,
            || self.attachment().is_ok_and(|state| state == Some(true)),
        )?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Where the daemon pins its program's link and maps: a bpffs directory of this
    /// process's own, removed when the lab is dropped.
    pub fn pin_path(&self) -> PathBuf {
        pin_path(PinnedLab::Daemon)
    }

    /// Runs `sipxdp detach` in the balancer's namespace: removes what a stopped daemon
    /// left attached and pinned. Returns what it printed.
    pub fn detach(&self) -> anyhow::Result<String> {
        detach(self.lab.balancer().netns(), &self.config_path())
    }

    /// Kills the daemon with SIGKILL: no chance to clean up, as in a crash.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        let mut daemon = self.daemon.take().context("the daemon is not running")?;
        let child = daemon.child_mut();
        child.kill().context("killing sipxdp")?;
        child.wait().context("reaping sipxdp")?;
        Ok(())
    }

    /// Starts the daemon again from the same configuration.
    pub fn restart_daemon(&mut self) -> anyhow::Result<()> {
        ensure!(self.daemon.is_none(), "the daemon is still running");
        self.start_daemon()
    }

    /// Runs `sipxdp run` on the lab's configuration in the balancer's namespace, after
    /// `prefix` (e.g. `setpriv …`), expecting it to refuse: returns what it said.
    ///
    /// # Errors
    ///
    /// It could not be started, or it did not refuse.
    pub fn refused_run(&self, prefix: &[&str]) -> anyhow::Result<String> {
        let binary = sipxdp_binary()?;
        let config = self.config_path();
        let mut argv = prefix.to_vec();
        argv.extend([
            binary.to_str().context("a UTF-8 path")?,
            "run",
            "--config",
            config.to_str().context("a UTF-8 path")?,
        ]);
        match self.lab.balancer().netns().run(&argv) {
            Ok(_) => bail!("sipxdp run did not refuse"),
            Err(refusal) => Ok(refusal.to_string()),
        }
    }

    /// Makes later (re)starts run the daemon as `wrapper... sipxdp run …`, e.g. under
    /// `setpriv` with fewer capabilities.
    pub fn set_daemon_wrapper(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|&word| word.to_owned()).collect();
    }

    /// The daemon's metrics text, fetched inside the balancer's namespace.
    pub fn scrape(&self) -> anyhow::Result<String> {
        http_get(self.lab.balancer().netns(), METRICS.parse()?, "/metrics")
    }

    /// Starts a Prometheus server in the balancer's namespace scraping the daemon every
    /// second; it stops when dropped. Query it with [`DaemonLab::query`].
    pub fn start_prometheus(&self) -> anyhow::Result<Prometheus> {
        Prometheus::start(
            self.lab.balancer().netns(),
            &self.directory,
            METRICS.parse()?,
        )
    }

    /// The instant vector of `query` from `prometheus`, started by
    /// [`DaemonLab::start_prometheus`].
    pub fn query(
        &self,
        prometheus: &Prometheus,
        query: &str,
    ) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        prometheus.query(self.lab.balancer().netns(), query)
    }

    /// The daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.directory.join("control.sock")
    }

    /// Runs `sipxdp ARGS --socket SOCKET`, as root or, with `uid`, as that user; returns
    /// whether it succeeded and what it printed (stdout, or stderr on failure).
    pub fn control(&self, args: &[&str], uid: Option<u32>) -> anyhow::Result<(bool, String)> {
        let binary = sipxdp_binary()?;
        let mut command = match uid {
            Some(uid) => {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(&binary);
                setpriv
            }
            None => Command::new(&binary),
        };
        let output = command
            .args(args)
            .arg("--socket")
            .arg(self.control_socket())
            .output()
            .with_context(|| format!("running sipxdp {}", args.join(" ")))?;
        let text = if output.status.success() {
            &output.stdout
        } else {
            &output.stderr
        };
        Ok((
            output.status.success(),
            String::from_utf8_lossy(text).into_owned(),
        ))
    }

    /// What the daemon logged so far.
    pub fn daemon_log(&self) -> String {
        daemon_log(&self.directory)
    }

    /// Whether an XDP program is attached to every balancer interface (`Some(true)`), to
    /// none (`Some(false)`), or to some only (`None`).
    fn attachment(&self) -> anyhow::Result<Option<bool>> {
        let balancer = self.lab.balancer();
        let mut states = Vec::new();
        for interface in [Some(balancer.iface()), balancer.backend_side()]
            .into_iter()
            .flatten()
        {
            states.push(has_xdp(balancer.netns(), interface.name())?);
        }
        Ok(if states.iter().all(|&on| on) {
            Some(true)
        } else if states.iter().all(|&on| !on) {
            Some(false)
        } else {
            None
        })
    }

    /// Whether an XDP program is attached to any balancer interface.
    pub fn attached(&self) -> anyhow::Result<bool> {
        Ok(self.attachment()? != Some(false))
    }

    /// Sends SIGHUP to the daemon.
    pub fn reload(&self) -> anyhow::Result<()> {
        let daemon = self.daemon.as_ref().context("the daemon is not running")?;
        let pid = libc::pid_t::try_from(daemon.id()).context("a pid")?;
        // SAFETY: signalling our own child, which is not reaped yet.
        ensure!(
            unsafe { libc::kill(pid, libc::SIGHUP) } == 0,
            "signalling sipxdp: {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Stops a backend's SIP stack: it neither receives nor answers from now on.
    pub fn stop_backend(&mut self, number: usize) {
        let receiver = self.receivers.remove(number - 1);
        drop(receiver);
    }

    /// Sends the INVITE, ACK and BYE of every call from `client` to the IPv4 VIP with
    /// [`deliver_windowed`] and returns what the backends received.
    ///
    /// # Errors
    ///
    /// A window that did not arrive whole within 10 s, with what the daemon logged.
    pub fn send_dialogs(
        &self,
        client: SocketAddr,
        calls: &[Call],
    ) -> anyhow::Result<Vec<Received>> {
        let vip = self.vip();
        let messages: Vec<Vec<u8>> = calls
            .iter()
            .flat_map(|call| {
                [
                    call.invite(client, vip, 200),
                    call.ack(client, vip),
                    call.bye(client, vip),
                ]
            })
            .collect();
        self.send(client, vip, &messages)
    }

    /// What the backends' sockets of one family received until `expected` datagrams
    /// arrived or `deadline` passed.
    ///
    /// # Errors
    ///
    /// A receiver that failed.
    pub fn collect(
        &self,
        ipv6: bool,
        expected: usize,
        deadline: Instant,
    ) -> anyhow::Result<Vec<Received>> {
        let receivers: Vec<&UdpReceiver> = self
            .receivers
            .iter()
            .map(|pair| &pair[usize::from(ipv6)])
            .collect();
        collect(&receivers, expected, deadline)
    }

    /// Sends `messages` from `client` to `vip` (either family) with [`deliver_windowed`]
    /// and returns what the backends received.
    ///
    /// # Errors
    ///
    /// A window that did not arrive whole within 10 s, with what the daemon logged.
    pub fn send(
        &self,
        client: SocketAddr,
        vip: SocketAddr,
        messages: &[Vec<u8>],
    ) -> anyhow::Result<Vec<Received>> {
        let family = usize::from(vip.is_ipv6());
        let receivers: Vec<&UdpReceiver> =
            self.receivers.iter().map(|pair| &pair[family]).collect();
        deliver_windowed(self.lab.client().netns(), &receivers, client, vip, messages)
            .with_context(|| format!("sipxdp logged:\n{}", self.daemon_log()))
    }

    /// Stops the daemon with SIGTERM and returns its exit status and what it printed (the
    /// final counters).
    pub fn stop_daemon(&mut self) -> anyhow::Result<(ExitStatus, String)> {
        let daemon = self.daemon.take().context("the daemon is not running")?;
        let status = daemon.terminate(Duration::from_secs(10))?;
        let output = fs::read_to_string(self.log_path("sipxdp.out")).unwrap_or_default();
        Ok((status, output))
    }
}

/// Where the labs' daemons pin: bpffs is not per network namespace, so a lab's pins
/// outlive its namespaces unless they are removed too.
const PIN_ROOT: &str = "/sys/fs/bpf";

/// The labs whose daemons pin under [`PIN_ROOT`]: the daemon lab and the end-to-end
/// benchmark's. Only their directories are ever removed, never an operator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedLab {
    Daemon,
    EndToEnd,
}

impl PinnedLab {
    const ALL: [PinnedLab; 2] = [PinnedLab::Daemon, PinnedLab::EndToEnd];

    fn prefix(self) -> &'static str {
        match self {
            PinnedLab::Daemon => "sipxdp-lab-",
            PinnedLab::EndToEnd => "sipxdp-e2e-",
        }
    }

    /// The pid of the process whose lab pinned into the directory `name`, if it is a
    /// [`pin_path`].
    fn owner(name: &str) -> Option<u32> {
        Self::ALL
            .iter()
            .find_map(|lab| name.strip_prefix(lab.prefix())?.parse().ok())
    }
}

/// The bpffs directory where the daemon of this process's `lab` pins its program's link
/// and maps: `sipxdp-lab-<pid>` or `sipxdp-e2e-<pid>`.
pub fn pin_path(lab: PinnedLab) -> PathBuf {
    Path::new(PIN_ROOT).join(format!("{}{}", lab.prefix(), std::process::id()))
}

/// Removes the [`pin_path`] directories of the processes whose pid `owner` picks, and
/// with them the programs and maps (a `DIALOGS` map of 96 MiB among them) that the
/// kernel keeps while they are pinned. Returns the directories removed.
pub fn remove_pins_of(owner: impl Fn(u32) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| PinnedLab::owner(name.to_str()?))
                .is_some_and(&owner)
        })
        .filter(|path| fs::remove_dir_all(path).is_ok())
        .collect()
}

/// Removes the pins of labs whose process no longer exists (killed outright).
pub fn remove_stale_pins() -> Vec<PathBuf> {
    remove_pins_of(|pid| !Path::new("/proc").join(pid.to_string()).exists())
}

/// Writes the daemon's configuration `text` to `path`, readable by all and writable by
/// its owner only, as the daemon requires.
///
/// # Errors
///
/// The file could not be written.
pub fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Runs `sipxdp detach --config CONFIG` in `netns`: removes what a stopped daemon left
/// attached and pinned. Returns what it printed.
///
/// # Errors
///
/// The binary could not be found or run, or failed.
pub fn detach(netns: &Netns, config: &Path) -> anyhow::Result<String> {
    let binary = sipxdp_binary()?;
    let output = netns.run(&[
        binary.to_str().context("a UTF-8 path")?,
        "detach",
        "--config",
        config.to_str().context("a UTF-8 path")?,
    ])?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether an XDP program is attached to `interface` in `netns`.
///
/// # Errors
///
/// `ip link show` failed.
pub fn has_xdp(netns: &Netns, interface: &str) -> anyhow::Result<bool> {
    let output = netns.run(&["ip", "link", "show", "dev", interface])?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("xdp"))
}

/// Runs `sipxdp check-config` on a file holding `text`, which is removed afterwards;
/// returns what it printed and the file's path, which its messages name.
///
/// # Errors
///
/// The file could not be written or the binary not run.
pub fn check_config(text: &str) -> anyhow::Result<(Output, PathBuf)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "sipxdp-check-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let output = Command::new(sipxdp_binary()?)
        .arg("check-config")
        .arg(&path)
        .output();
    let _ = fs::remove_file(&path);
    Ok((output.context("running sipxdp check-config")?, path))
}

/// What the daemon started by [`spawn_daemon`] with `directory` logged so far.
pub fn daemon_log(directory: &Path) -> String {
    fs::read_to_string(directory.join("sipxdp.log")).unwrap_or_default()
}

/// Starts `sipxdp run --config CONFIG` in `netns` (under the command `wrapper`, if not
/// empty), its output in `directory` (`sipxdp.out`, `sipxdp.log`), and waits until
/// `attached` holds and the daemon logged that it runs.
///
/// # Errors
///
/// The daemon exited or did not attach within 30 s; the error holds its log.
pub fn spawn_daemon(
    netns: &Netns,
    config: &Path,
    directory: &Path,
    wrapper: &[String],
    attached: impl Fn() -> bool,
) -> anyhow::Result<ChildGuard> {
    let binary = sipxdp_binary()?;
    let stdout = fs::File::create(directory.join("sipxdp.out"))?;
    let stderr = fs::File::create(directory.join("sipxdp.log"))?;
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let mut daemon = netns.spawn(command)?;
    let mut exited = None;
    let running = wait_until(Instant::now() + Duration::from_secs(30), || {
        if let Ok(Some(status)) = daemon.try_wait() {
            exited = Some(status);
            return true;
        }
        attached() && daemon_log(directory).contains("running;")
    });
    if let Some(status) = exited {
        bail!(
            "sipxdp exited ({status}) before attaching:\n{}",
            daemon_log(directory)
        );
    }
    ensure!(
        running,
        "sipxdp did not attach within 30 s:\n{}",
        daemon_log(directory)
    );
    Ok(daemon)
}

impl Drop for DaemonLab {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.terminate(Duration::from_secs(5));
        }
        // The pins live in the host's bpffs, not in the lab's namespaces.
        if self.detach().is_err() {
            let _ = fs::remove_dir_all(self.pin_path());
        }
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// The value of the samples in the metrics text `metrics` whose series (name and labels,
/// as the exporter writes them) starts with `series`, summed: one sample's value when
/// `series` is whole, 0 when none has it.
pub fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Messages of `vip` the report counts as forwarded: placed by the table (`call_id`) or
/// by their dialog (`dialog`).
pub fn forwarded(report: &str, vip: &str) -> u64 {
    ["call_id", "dialog"]
        .iter()
        .filter_map(|reason| counted(report, vip, "forwarded", reason))
        .sum()
}

/// The packets a report printed by `sipxdp` counts for `vip` under (action, reason), from
/// its `VIP ACTION REASON PACKETS BYTES` table.
pub fn counted(report: &str, vip: &str, action: &str, reason: &str) -> Option<u64> {
    report.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [name, found_action, found_reason, packets, _bytes]
                if name == vip && found_action == action && found_reason == reason =>
            {
                packets.parse().ok()
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::PinnedLab;

    #[test]
    fn only_the_labs_pins_have_owners() {
        assert_eq!(PinnedLab::owner("sipxdp-lab-4242"), Some(4242));
        assert_eq!(PinnedLab::owner("sipxdp-e2e-7"), Some(7));
        for not_a_lab in [
            "sipxdp",
            "sipxdp-edge-42",
            "sipxdp-lab-",
            "sipxdp-lab-x1",
            "other",
        ] {
            assert_eq!(PinnedLab::owner(not_a_lab), None, "{not_a_lab}");
        }
    }
}
