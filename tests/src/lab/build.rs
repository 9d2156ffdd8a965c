//! Building a [`Lab`] from its [`Plan`](super::plan::Plan).
//!
//! Every object is owned by a guard from the moment it exists, so a failure halfway (or a
//! panic) drops what was built so far and leaves nothing behind.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::plan::{BACK, FRONT, HostPlan, IfacePlan, Plan, Segment};
use super::{Host, HostIface, Lab, LabConfig, LabError, LabKind, LabLock};
use crate::addrplan::{RootNetwork, check_lab_subnets};
use crate::link::{Bridge, Iface, LinkError, Veth};
use crate::netns::{Netns, NetnsError, remove_stale_namespaces};
use crate::subnet::Subnet;

/// How long links and bridge ports may take to come up.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// Sysctls of the switch namespace: no IPv6 on the bridge and its ports, so the switch
/// itself sends no router solicitations, MLD reports or DAD probes into the lab.
const SWITCH_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];

/// Sysctls of every host, set before its interfaces exist so they inherit the `default`
/// values: no reverse-path filter (DSR replies come from the VIP via a backend's MAC; NAT
/// replies come back via the balancer), no IPv6 DAD (addresses usable at once), no router
/// solicitations or RAs (no traffic nobody asked for, no learned default route), and
/// explicit ARP behaviour instead of whatever the root namespace passes on.
const HOST_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.conf.all.arp_ignore", "0"),
    ("net.ipv4.conf.default.arp_ignore", "0"),
    ("net.ipv4.conf.all.arp_announce", "0"),
    ("net.ipv4.conf.default.arp_announce", "0"),
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.router_solicitations", "0"),
    ("net.ipv6.conf.default.router_solicitations", "0"),
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
];

/// Extra sysctls of DSR backends: answer ARP only for addresses of the receiving
/// interface (never for the VIP on `lo`), and never use the VIP as the sender address of
/// ARP requests, so the client keeps resolving the VIP to the balancer. (IPv6 needs nothing
/// here: the kernel answers Neighbour Solicitations only for addresses of the receiving
/// interface, and picks a link-local source for its own solicitations.)
const DSR_BACKEND_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
];

/// Extra sysctls of the NAT balancer: it routes between the two segments, and accepts
/// datagrams whose source is its own VIP, which is what sipxdp hands its stack when a
/// client's neighbour entry is still missing (see sipxdp's README, NAT mode).
const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv4.conf.all.accept_local", "1"),
];

pub(super) fn build(kind: LabKind, config: &LabConfig) -> Result<Lab, LabError> {
    let plan = Plan::new(kind, config)?;
    let lock = LabLock::acquire()?;
    remove_stale_namespaces().map_err(LabError::Stale)?;
    let root = RootNetwork::read()?;
    check_lab_subnets(&plan.subnets(), &root.entries)?;

    let switch = new_netns("switch", SWITCH_SYSCTLS)?;
    let mut bridges = vec![new_bridge(&switch, FRONT)?];
    if kind == LabKind::RoutedNat {
        bridges.push(new_bridge(&switch, BACK)?);
    }
    let mut veths = Vec::new();
    let mut net = Segments {
        switch: &switch,
        bridges: &bridges,
        veths: &mut veths,
        ports: Vec::new(),
    };

    let client = net.host(&plan.client, &[])?;
    let balancer_sysctls = match kind {
        LabKind::Standard => &[][..],
        LabKind::RoutedNat => ROUTER_SYSCTLS,
    };
    let balancer = net.host(&plan.balancer, balancer_sysctls)?;
    let backend_sysctls = match kind {
        LabKind::Standard => DSR_BACKEND_SYSCTLS,
        LabKind::RoutedNat => &[][..],
    };
    let backends = plan
        .backends
        .iter()
        .map(|backend| net.host(backend, backend_sysctls))
        .collect::<Result<Vec<_>, _>>()?;

    configure_vip(
        &plan,
        &client,
        &balancer,
        &backends,
        config.static_vip_neighbour,
    )?;
    if kind == LabKind::RoutedNat {
        configure_routes(&plan, &client, &balancer, &backends)?;
    }
    let ports = net.ports;
    wait_ready(&ports, [&client, &balancer].into_iter().chain(&backends))?;

    Ok(Lab {
        veths,
        bridges,
        client,
        balancer,
        backends,
        switch,
        kind,
        vip: plan.vip,
        _lock: lock,
    })
}

fn new_netns(role: &str, sysctls: &[(&str, &str)]) -> Result<Netns, LabError> {
    let netns = Netns::new(role).map_err(netns_error(role))?;
    for (key, value) in sysctls {
        netns.sysctl_write(key, value).map_err(netns_error(role))?;
    }
    Ok(netns)
}

fn new_bridge(switch: &Netns, segment: Segment) -> Result<Bridge, LabError> {
    Bridge::new(switch, segment.bridge).map_err(link_error("switch"))
}

fn netns_error(role: &str) -> impl Fn(NetnsError) -> LabError + '_ {
    move |source| LabError::Netns {
        role: role.to_owned(),
        source: Box::new(source),
    }
}

fn link_error(role: &str) -> impl Fn(LinkError) -> LabError + '_ {
    move |source| LabError::Link {
        role: role.to_owned(),
        source: Box::new(source),
    }
}

/// The switch side of the lab while hosts are being plugged in.
struct Segments<'a> {
    switch: &'a Netns,
    bridges: &'a [Bridge],
    veths: &'a mut Vec<Veth>,
    /// Every bridge port plugged so far, with its bridge.
    ports: Vec<(&'a Bridge, Iface)>,
}

impl<'a> Segments<'a> {
    /// Creates the host's namespace and plugs each of its interfaces into its segment.
    fn host(&mut self, plan: &HostPlan, extra_sysctls: &[(&str, &str)]) -> Result<Host, LabError> {
        let netns = new_netns(&plan.role, HOST_SYSCTLS)?;
        for (key, value) in extra_sysctls {
            netns
                .sysctl_write(key, value)
                .map_err(netns_error(&plan.role))?;
        }
        let iface = self
            .plug(&netns, &plan.primary)
            .map_err(link_error(&plan.role))?;
        let backend_side = match &plan.backend_side {
            Some(side) => Some(self.plug(&netns, side).map_err(link_error(&plan.role))?),
            None => None,
        };
        Ok(Host {
            netns,
            iface,
            backend_side,
        })
    }

    /// One veth from `netns` to the segment's bridge, with the planned MAC and addresses.
    fn plug(&mut self, netns: &Netns, plan: &IfacePlan) -> Result<HostIface, LinkError> {
        let veth = Veth::new(netns, self.switch, None, None)?;
        let (host_end, switch_end) = (veth.a().clone(), veth.b().clone());
        self.veths.push(veth);
        let bridges: &'a [Bridge] = self.bridges;
        let bridge = bridges
            .iter()
            .find(|bridge| bridge.iface().name() == plan.segment.bridge)
            .ok_or_else(|| LinkError::InvalidName {
                name: plan.segment.bridge.to_owned(),
            })?;
        host_end.set_mac(plan.mac)?;
        let (v4_subnet, v6_subnet) = (plan.segment.v4(), plan.segment.v6());
        host_end.add_address(IpAddr::V4(plan.v4), v4_subnet.prefix())?;
        host_end.add_address(IpAddr::V6(plan.v6), v6_subnet.prefix())?;
        host_end.set_up()?;
        bridge.attach(&switch_end)?;
        self.ports.push((bridge, switch_end));
        Ok(HostIface {
            iface: host_end,
            mac: plan.mac,
            ipv4: plan.v4,
            ipv4_subnet: v4_subnet,
            ipv6: plan.v6,
            ipv6_subnet: v6_subnet,
        })
    }
}

/// Puts the VIP on the balancer (and on the DSR backends' `lo`) and makes the client send
/// VIP traffic to the balancer's MAC.
fn configure_vip(
    plan: &Plan,
    client: &Host,
    balancer: &Host,
    backends: &[Host],
    static_neighbour: bool,
) -> Result<(), LabError> {
    let vips = [IpAddr::V4(plan.vip.v4), IpAddr::V6(plan.vip.v6)];
    for vip in vips {
        let host_prefix = Subnet::host(vip).prefix();
        balancer
            .iface
            .iface
            .add_address(vip, host_prefix)
            .map_err(link_error("balancer"))?;
        if plan.kind == LabKind::Standard {
            for backend in backends {
                Iface::new(&backend.netns, "lo")
                    .and_then(|lo| lo.add_address(vip, host_prefix))
                    .map_err(link_error(backend.role()))?;
            }
        }
        // The client reaches the VIP on-link even when it lies outside the segment's
        // subnet (198.51.100.100 is outside 198.51.100.0/26).
        let client_iface = &client.iface.iface;
        client_iface
            .add_route(Subnet::host(vip), None)
            .map_err(link_error("client"))?;
        if static_neighbour {
            client_iface
                .set_neighbour(vip, balancer.iface.mac)
                .map_err(link_error("client"))?;
        }
    }
    Ok(())
}

/// Routes of the NAT lab: the client reaches the backend segment via the balancer, the
/// backends reach the client segment (and the VIP, for SNAT to the VIP) via the balancer.
/// Still no default routes.
fn configure_routes(
    plan: &Plan,
    client: &Host,
    balancer: &Host,
    backends: &[Host],
) -> Result<(), LabError> {
    let front = &balancer.iface;
    let Some(back) = &balancer.backend_side else {
        return Err(LabError::Config(
            "routed NAT lab without a backend-side balancer interface".to_owned(),
        ));
    };
    for v6 in [false, true] {
        let (back_subnet, front_subnet) = if v6 {
            (back.ipv6_subnet, front.ipv6_subnet)
        } else {
            (back.ipv4_subnet, front.ipv4_subnet)
        };
        client
            .iface
            .iface
            .add_route(back_subnet, Some(front.ip(v6)))
            .map_err(link_error("client"))?;
        let vip = if v6 {
            IpAddr::V6(plan.vip.v6)
        } else {
            IpAddr::V4(plan.vip.v4)
        };
        for backend in backends {
            let iface = &backend.iface.iface;
            iface
                .add_route(front_subnet, Some(back.ip(v6)))
                .and_then(|()| {
                    if front_subnet.contains(vip) {
                        Ok(())
                    } else {
                        iface.add_route(Subnet::host(vip), Some(back.ip(v6)))
                    }
                })
                .map_err(link_error(backend.role()))?;
        }
    }
    Ok(())
}

/// Waits until every host interface has carrier and every bridge port forwards.
fn wait_ready<'a>(
    ports: &[(&Bridge, Iface)],
    hosts: impl Iterator<Item = &'a Host>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + READY_DEADLINE;
    for host in hosts {
        for iface in std::iter::once(&host.iface).chain(&host.backend_side) {
            iface
                .iface
                .wait_oper_up(deadline)
                .map_err(link_error(host.role()))?;
        }
    }
    for (bridge, port) in ports {
        bridge
            .wait_forwarding(port, deadline)
            .map_err(link_error("switch"))?;
    }
    Ok(())
}
