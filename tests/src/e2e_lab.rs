//! The end-to-end benchmark's lab: native XDP from end to end, so that the balancer, not
//! the lab, is what runs out of room first.
//!
//! ```text
//!   client ──veth── balancer ──veth── backend 1
//!  (generator)     (front)    ├─veth── backend 2      (a sink on each backend's veth)
//!                             └─veth── backend 3
//! ```
//!
//! Each host has a namespace of its own. The client sends with the XDP generator
//! ([`crate::xdp_traffic::Generator`]) straight into the balancer's `front` veth, from
//! one thread per CPU; each backend counts what reaches it with an XDP sink and drops it.
//! Every link has a queue per CPU, so that each CPU carries its share from the generator
//! to the sinks without waiting for another. No bridge: a Linux bridge
//! turns every frame into a socket buffer, which would cost more than the balancer. No
//! ARP: every neighbour is permanent. No IPv6: nothing but the benchmark's frames moves.
//!
//! The balancer under test runs in the balancer namespace: `sipxdp run` attached in
//! driver mode to `front`; a program that redirects every frame to a backend picked at
//! random (XDP forwarding without a balancer's work); or, for the balancers that run in the network
//! stack (Kamailio, plain routing), a pass-through XDP program on `front` (a veth only
//! takes frames from its peer's XDP when it has an XDP program of its own).

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, ensure};

use crate::{
    ChildGuard, Iface, MacAddr, Netns, Veth,
    daemon_lab::{self, detach, has_xdp, remove_stale_pins, spawn_daemon, write_config},
    frames::{BALANCER_MAC, CLIENT, CLIENT_MAC, FrameSpec, VIP, udp_frame},
    raw_bpf::{self, Asm, HELPER_GET_PRANDOM_U32, HELPER_REDIRECT_MAP, R0, R1, R2, R3},
    reference_xdp::ReferenceXdp,
    sipgen::find,
    xdp_traffic::{Generator, Sink},
};

/// The SIP port of the VIP and of the backends.
pub const SIP_PORT: u16 = 5060;
/// The balancer's address on the client's segment (198.51.100.0/24).
const FRONT_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The MTU of the client's segment: room for the slow path's messages of about 2 KB in
/// one frame (the generator sends whole frames), within what veth's native XDP takes
/// (a frame in one page: about 3,500 bytes).
const FRONT_MTU: u32 = 3000;
/// Backends in the lab.
pub const BACKENDS: usize = 3;

/// The CPUs of this machine: the lab's links have a queue for each, and the generator a
/// sending thread on each.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |count| count.get() as u32)
}

/// The balancer's and backend `number`'s (from 0) addresses on their /30 of
/// 203.0.113.0/24.
fn backend_link(number: usize) -> (Ipv4Addr, Ipv4Addr) {
    let base = 4 * number as u8;
    (
        Ipv4Addr::new(203, 0, 113, base + 1),
        Ipv4Addr::new(203, 0, 113, base + 2),
    )
}

/// The lab, built and torn down (also when a step fails) with this value.
pub struct E2eLab {
    /// `sipxdp run`, while it runs.
    daemon: Option<ChildGuard>,
    /// The link of the program standing in for sipxdp on `front`, while attached.
    stand_in: Option<OwnedFd>,
    sink: Sink,
    /// The client's end of `front`, which the generator sends out of.
    client_ifindex: u32,
    front: Veth,
    back: Vec<Veth>,
    client: Netns,
    balancer: Netns,
    /// Kept for teardown: dropping them removes the namespaces.
    _backends: Vec<Netns>,
    directory: PathBuf,
}

impl E2eLab {
    /// Builds the lab with a sink on every backend.
    ///
    /// # Errors
    ///
    /// A namespace, link, address or program that could not be set up.
    pub fn start() -> anyhow::Result<Self> {
        // A killed run's namespaces, and the daemon or Kamailio still running in them,
        // would share the CPUs with the measurement.
        crate::remove_stale_namespaces().context("removing a killed run's namespaces")?;
        remove_stale_pins();
        let client = Netns::new("client")?;
        let balancer = Netns::new("balancer")?;
        let backends = (1..=BACKENDS)
            .map(|number| Netns::new(&format!("backend{number}")))
            .collect::<Result<Vec<_>, _>>()?;
        for netns in [&client, &balancer].into_iter().chain(&backends) {
            for scope in ["all", "default"] {
                netns.sysctl_write(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "1")?;
            }
        }
        let directory = std::env::temp_dir().join(format!("sipxdp-e2e-{}", std::process::id()));
        fs::create_dir_all(&directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let front = Veth::with_queues(&client, &balancer, cpus())?;
        front.a().set_mac(MacAddr(CLIENT_MAC))?;
        front.b().set_mac(MacAddr(BALANCER_MAC))?;
        for (end, address) in [(front.a(), CLIENT), (front.b(), FRONT_ADDRESS)] {
            end.set_mtu(FRONT_MTU)?;
            end.add_address(IpAddr::V4(address), 24)?;
            end.set_up()?;
        }
        Iface::new(&balancer, "lo")?.add_address(IpAddr::V4(VIP), 32)?;
        let mut sink = Sink::new(SIP_PORT)?;
        let mut back = Vec::new();
        for (number, netns) in backends.iter().enumerate() {
            let veth = Veth::with_queues(&balancer, netns, cpus())?;
            let (ours, theirs) = backend_link(number);
            veth.a().add_address(IpAddr::V4(ours), 30)?;
            veth.b().add_address(IpAddr::V4(theirs), 30)?;
            veth.a().set_up()?;
            veth.b().set_up()?;
            veth.a()
                .set_neighbour(IpAddr::V4(theirs), veth.b().mac()?)?;
            sink.attach(netns, veth.b().ifindex()?)?;
            back.push(veth);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for end in [front.a(), front.b()]
            .into_iter()
            .chain(back.iter().flat_map(|veth| [veth.a(), veth.b()]))
        {
            end.wait_oper_up(deadline)?;
        }
        let client_ifindex = front.a().ifindex()?;
        Ok(Self {
            daemon: None,
            stand_in: None,
            sink,
            client_ifindex,
            front,
            back,
            client,
            balancer,
            _backends: backends,
            directory,
        })
    }

    /// The client's namespace, where the generator runs.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The balancer's namespace.
    pub fn balancer(&self) -> &Netns {
        &self.balancer
    }

    /// The client's end of the front link, which the generator sends out of.
    pub fn client_ifindex(&self) -> u32 {
        self.client_ifindex
    }

    /// The VIP.
    pub fn vip(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(VIP), SIP_PORT)
    }

    /// The client's address (the generator's frames come from port 5062).
    pub fn client_address(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(CLIENT), 5062)
    }

    /// The balancer's own address on the client's segment.
    pub fn front_address(&self) -> IpAddr {
        IpAddr::V4(FRONT_ADDRESS)
    }

    /// The backends' SIP addresses.
    pub fn backend_addresses(&self) -> Vec<SocketAddr> {
        (0..BACKENDS)
            .map(|number| SocketAddr::new(IpAddr::V4(backend_link(number).1), SIP_PORT))
            .collect()
    }

    /// Where lab files (configuration, logs) go.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Datagrams the backends' sinks counted so far.
    pub fn received(&self) -> anyhow::Result<u64> {
        Ok(self.sink.received()?)
    }

    /// Datagrams backend `number` (from 0) counted so far.
    pub fn received_by(&self, number: usize) -> anyhow::Result<u64> {
        Ok(self.sink.received_at(number)?)
    }

    /// A generator of `message` from the client to the VIP: the frame without a UDP
    /// checksum (the generator changes the Call-ID of every copy), random letters at the
    /// start of its Call-ID.
    ///
    /// # Errors
    ///
    /// The message has no `Call-ID` header, or the generator could not be loaded.
    pub fn generator(&self, message: &[u8]) -> anyhow::Result<Generator> {
        let mut frame = udp_frame(&FrameSpec::default(), message);
        // Ethernet (14) + IPv4 without options (20): the checksum is bytes 6 and 7 of UDP.
        frame[40..42].fill(0);
        let name = b"Call-ID: ";
        let call_id_at =
            find(&frame, name).context("the message has a Call-ID header")? + name.len();
        Ok(Generator::load(&self.client, frame, call_id_at)?)
    }

    fn config_path(&self) -> PathBuf {
        self.directory.join("sipxdp.toml")
    }

    /// Where the daemon pins its program and maps.
    pub fn pin_path(&self) -> PathBuf {
        daemon_lab::pin_path(daemon_lab::PinnedLab::EndToEnd)
    }

    /// Starts `sipxdp run` on `front` in driver mode, DSR to the three backends with
    /// equal weights, no health checks (the sinks answer nothing), and waits until it is
    /// attached. Its slow path listens on the VIP, which the balancer holds on `lo`.
    ///
    /// # Errors
    ///
    /// The configuration could not be written or the daemon did not attach.
    pub fn start_sipxdp(&mut self) -> anyhow::Result<()> {
        let mut text = format!(
            "# Generated by sipxdp-bench --e2e for a throw-away lab.\n\
             [[interfaces]]\nname = \"{front}\"\nxdp_mode = \"driver\"\n\n\
             [daemon]\ncontrol_socket = \"{socket}\"\npin_path = \"{pins}\"\n\n\
             [metrics]\nlisten = \"off\"\n\n\
             [health_check]\nenabled = false\n\n\
             [[vips]]\nname = \"bench\"\naddress = \"{vip}\"\nport = {SIP_PORT}\n",
            front = self.front.b().name(),
            socket = self.directory.join("control.sock").display(),
            pins = self.pin_path().display(),
            vip = VIP,
        );
        for backend in self.backend_addresses() {
            text.push_str(&format!(
                "\n[[vips.backends]]\naddress = \"{}\"\n",
                backend.ip()
            ));
        }
        let path = self.config_path();
        write_config(&path, &text)?;
        let daemon = spawn_daemon(&self.balancer, &path, &self.directory, &[], || {
            self.front_has_xdp().unwrap_or(false)
        })?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// The daemon's process group, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(ChildGuard::id)
    }

    /// Stops the daemon and removes what it attached and pinned.
    ///
    /// # Errors
    ///
    /// `sipxdp detach` failed, or a program is still attached to `front`.
    pub fn stop_sipxdp(&mut self) -> anyhow::Result<()> {
        if let Some(daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(10))?;
        }
        detach(&self.balancer, &self.config_path())?;
        ensure!(!self.front_has_xdp()?, "sipxdp is still attached");
        Ok(())
    }

    /// Attaches a program that passes every frame to the stack on `front`, for the
    /// balancers that run there, in place of any other stand-in.
    ///
    /// # Errors
    ///
    /// The program could not be loaded or attached.
    pub fn pass_to_stack(&mut self) -> anyhow::Result<()> {
        let program = ReferenceXdp::load()?;
        self.stand_in(program.program())
    }

    /// Attaches a program that redirects every frame on `front` to a backend's link
    /// picked at random, unchanged: XDP forwarding to the backends without a balancer's
    /// work, the ceiling of the XDP path and the lab's own CPU time per message.
    ///
    /// # Errors
    ///
    /// The program or its device map could not be loaded, or the program attached.
    pub fn forward_to_random_backends(&mut self) -> anyhow::Result<()> {
        let ifindexes = self
            .back
            .iter()
            .map(|veth| veth.a().ifindex())
            .collect::<Result<Vec<_>, _>>()?;
        // Entries name interfaces of the namespace they are added from.
        let ports = self
            .balancer
            .enter_thread(|| raw_bpf::create_devmap("sipxdp_fwd_tx", &ifindexes))??;
        let program = Asm::default()
            .call(HELPER_GET_PRANDOM_U32)
            .mov(R2, R0)
            .mod_imm(R2, BACKENDS as i32)
            .load_map(R1, &ports)
            .mov_imm(R3, 0)
            .call(HELPER_REDIRECT_MAP)
            .exit()
            .finish();
        let program = raw_bpf::load_xdp("sipxdp_forward", &program)?;
        self.stand_in(&program)
    }

    fn stand_in(&mut self, program: &OwnedFd) -> anyhow::Result<()> {
        // One program at a time: the old link goes first.
        self.stand_in = None;
        let ifindex = self.front.b().ifindex()?;
        let link = self
            .balancer
            .enter_thread(|| raw_bpf::attach_native(program, ifindex))??;
        self.stand_in = Some(link);
        Ok(())
    }

    /// Turns the balancer into a plain router for the VIP: it gives the VIP up,
    /// forwards, and routes the VIP to the first backend. One route, not a multipath one:
    /// the generator's frames are one flow, which a multipath route keeps on one path.
    ///
    /// # Errors
    ///
    /// An address, sysctl or route that could not be changed.
    pub fn route_vip_to_first_backend(&self) -> anyhow::Result<()> {
        Iface::new(&self.balancer, "lo")?.del_address(IpAddr::V4(VIP), 32)?;
        self.balancer.sysctl_write("net.ipv4.ip_forward", "1")?;
        self.balancer.run(&[
            "ip",
            "route",
            "replace",
            &format!("{VIP}/32"),
            "via",
            &backend_link(0).1.to_string(),
        ])?;
        Ok(())
    }

    fn front_has_xdp(&self) -> anyhow::Result<bool> {
        has_xdp(&self.balancer, self.front.b().name())
    }
}

impl Drop for E2eLab {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.terminate(Duration::from_secs(5));
        }
        // The pins live in the host's bpffs, not in the lab's namespaces.
        if self.config_path().exists() && detach(&self.balancer, &self.config_path()).is_err() {
            let _ = fs::remove_dir_all(self.pin_path());
        }
        let _ = fs::remove_dir_all(&self.directory);
    }
}
