//! The slow path's sockets: a UDP socket on each VIP that receives what the kernel path
//! passed up (reassembled by the stack), and the senders that deliver a message to its
//! backend as if the client had sent it there.

use std::{
    collections::HashMap,
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

use sipxdp_common::{
    maps::Backend,
    wire::{
        build::{BuildError, UdpFrame},
        ethernet,
    },
};
use thiserror::Error;

use super::decide::ip_address;

/// Errors of the slow path's sockets, each naming what it concerns.
#[derive(Debug, Error)]
pub enum SocketError {
    #[error(
        "VIP {vip}: {address} is not an address of this host, so the slow path cannot \
         receive what the XDP program passes up; add it (e.g. `ip address add {address} dev \
         lo`) or set `[slow_path] enabled = false`"
    )]
    NotLocal { vip: String, address: IpAddr },
    #[error("VIP {vip}: binding the slow path's socket to {address}: {source}")]
    Bind {
        vip: String,
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("building the frames of a message: {0:?}")]
    Build(BuildError),
}

/// Room for the largest UDP payload.
pub const MAX_MESSAGE: usize = 65_536;

/// A receive buffer for bursts: about 2,000 full-size frames, where the kernel's default
/// (208 KiB) holds about a hundred.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// The UDP socket on one VIP.
pub struct VipSocket {
    socket: UdpSocket,
}

/// One datagram received on a VIP.
pub struct Received {
    pub len: usize,
    pub client: SocketAddr,
    /// The socket's count of datagrams dropped for a full buffer, so far (`SO_RXQ_OVFL`).
    pub overflowed: Option<u32>,
}

impl VipSocket {
    /// Binds to the VIP `address`, which must be an address of this host.
    pub fn bind(vip: &str, address: SocketAddr) -> Result<Self, SocketError> {
        let socket = UdpSocket::bind(address).map_err(|source| {
            if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                SocketError::NotLocal {
                    vip: vip.to_owned(),
                    address: address.ip(),
                }
            } else {
                SocketError::Bind {
                    vip: vip.to_owned(),
                    address,
                    source,
                }
            }
        })?;
        let fd = socket.as_raw_fd();
        set_option(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
            .map_err(|source| io_error("asking for the receive drop count", source))?;
        // The forced size needs CAP_NET_ADMIN, which the daemon has; the plain one is
        // capped by net.core.rmem_max.
        if set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER).is_err() {
            set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)
                .map_err(|source| io_error("sizing the receive buffer", source))?;
        }
        Ok(Self { socket })
    }

    /// Waits for the next datagram and reads it into `buffer`. `Ok(None)` once
    /// [`VipSocket::shut_down`] was called.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: all-zero bytes are valid for these C structs.
        let mut source: libc::sockaddr_storage = unsafe { zeroed() };
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        // SAFETY: as above.
        let mut header: libc::msghdr = unsafe { zeroed() };
        header.msg_name = (&raw mut source).cast();
        header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        header.msg_iov = &raw mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = size_of::<[u64; 8]>();
        // SAFETY: every pointer in `header` points at live memory of the stated size.
        let len = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut header, 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let Some(client) = socket_address(&source) else {
            // A shut-down socket returns without a sender.
            return Ok(None);
        };
        Ok(Some(Received {
            len: len as usize,
            client,
            overflowed: overflow_count(&header),
        }))
    }

    /// Wakes a thread blocked in `receive` and makes it return `Ok(None)`.
    pub fn shut_down(&self) {
        // SAFETY: shutting down a socket this value owns.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
    }
}

/// The `SO_RXQ_OVFL` control message of a received datagram, if any.
fn overflow_count(header: &libc::msghdr) -> Option<u32> {
    // SAFETY: walking the control messages `recvmsg` wrote into `header`'s buffer.
    unsafe {
        let mut message = libc::CMSG_FIRSTHDR(header);
        while !message.is_null() {
            if (*message).cmsg_level == libc::SOL_SOCKET
                && (*message).cmsg_type == libc::SO_RXQ_OVFL
            {
                return Some(libc::CMSG_DATA(message).cast::<u32>().read_unaligned());
            }
            message = libc::CMSG_NXTHDR(header, message);
        }
    }
    None
}

fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let v4 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()),
                u16::from_be(v4.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let v6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Sends messages to backends with the client's address and port as their source:
/// Ethernet frames to the backend's MAC with the VIP as destination (DSR), or IP packets
/// routed to the backend's address (NAT). Fragments them at the MTU as the IP layer would.
pub struct Transmitter {
    /// `AF_PACKET` (kernel 2.2): frames out of a given interface.
    frames: OwnedFd,
    /// Raw IPv4 and IPv6 sockets with the IP header included, routed by the kernel.
    packets_v4: OwnedFd,
    packets_v6: OwnedFd,
    interface_mtus: HashMap<u32, usize>,
    route_mtus: HashMap<IpAddr, usize>,
    identification: u16,
}

/// The TTL of a message sent on: the kernel's default.
const TTL: u8 = 64;

impl Transmitter {
    pub fn new() -> Result<Self, SocketError> {
        // Protocol 0: a socket that sends and never receives.
        let frames =
            open(libc::AF_PACKET, 0).map_err(|source| io_error("AF_PACKET socket", source))?;
        let packets_v4 = open(libc::AF_INET, libc::IPPROTO_RAW)
            .map_err(|source| io_error("raw IPv4 socket", source))?;
        let packets_v6 = open(libc::AF_INET6, libc::IPPROTO_RAW)
            .map_err(|source| io_error("raw IPv6 socket", source))?;
        Ok(Self {
            frames,
            packets_v4,
            packets_v6,
            interface_mtus: HashMap::new(),
            route_mtus: HashMap::new(),
            // Differs between daemon runs, like the kernel's own identifications.
            identification: std::process::id() as u16,
        })
    }

    /// Direct server return: `payload` from `client` to `vip`, in frames to `backend`'s MAC
    /// out of its interface.
    pub fn send_direct(
        &mut self,
        client: SocketAddr,
        vip: SocketAddr,
        backend: &Backend,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        let mtu = self.interface_mtu(backend.ifindex)?;
        let ethernet = ethernet::Repr {
            destination: backend.destination_mac,
            source: backend.source_mac,
            vlans: [None, None],
            ethertype: 0,
        };
        let frames = self.frames(ethernet, client, vip, payload, mtu)?;
        // SAFETY: all-zero bytes are a valid sockaddr_ll.
        let mut link: libc::sockaddr_ll = unsafe { zeroed() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_ifindex = backend.ifindex as i32;
        link.sll_halen = 6;
        link.sll_addr[..6].copy_from_slice(&backend.destination_mac);
        for frame in &frames {
            send_to(
                &self.frames,
                frame,
                (&raw const link).cast(),
                size_of::<libc::sockaddr_ll>(),
            )?;
        }
        Ok(())
    }

    /// NAT: `payload` from `client` to `backend`'s address and port, routed by the kernel.
    pub fn send_routed(
        &mut self,
        client: SocketAddr,
        backend: SocketAddr,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        let mtu = self.route_mtu(backend.ip())?;
        let ethernet = ethernet::Repr {
            destination: [0; 6],
            source: [0; 6],
            vlans: [None, None],
            ethertype: 0,
        };
        let frames = self.frames(ethernet, client, backend, payload, mtu)?;
        let l3 = ethernet.header_len();
        // The port must be 0 (or the protocol) for a raw socket.
        let destination = SocketAddr::new(backend.ip(), 0);
        let (socket, address, len) = match destination {
            SocketAddr::V4(v4) => {
                let address = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                (
                    &self.packets_v4,
                    Address::V4(address),
                    size_of::<libc::sockaddr_in>(),
                )
            }
            SocketAddr::V6(v6) => {
                // SAFETY: all-zero bytes are a valid sockaddr_in6.
                let mut address: libc::sockaddr_in6 = unsafe { zeroed() };
                address.sin6_family = libc::AF_INET6 as u16;
                address.sin6_addr.s6_addr = v6.ip().octets();
                (
                    &self.packets_v6,
                    Address::V6(address),
                    size_of::<libc::sockaddr_in6>(),
                )
            }
        };
        for frame in &frames {
            send_to(socket, &frame[l3..], address.as_ptr(), len)?;
        }
        Ok(())
    }

    fn frames(
        &mut self,
        ethernet: ethernet::Repr,
        client: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
        mtu: usize,
    ) -> Result<Vec<Vec<u8>>, SocketError> {
        self.identification = self.identification.wrapping_add(1);
        UdpFrame {
            ethernet,
            source: client.ip(),
            destination: destination.ip(),
            source_port: client.port(),
            destination_port: destination.port(),
            payload,
            ttl: TTL,
            identification: self.identification,
            ipv4_options: &[],
        }
        .fragments(mtu)
        .map_err(SocketError::Build)
    }

    /// The MTU of interface `ifindex`, read once.
    fn interface_mtu(&mut self, ifindex: u32) -> Result<usize, SocketError> {
        if let Some(mtu) = self.interface_mtus.get(&ifindex) {
            return Ok(*mtu);
        }
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `name` has room for IF_NAMESIZE bytes.
        if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
            return Err(io_error(
                "naming a backend's interface",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: all-zero bytes are a valid ifreq.
        let mut request: libc::ifreq = unsafe { zeroed() };
        request.ifr_name = name;
        // SAFETY: SIOCGIFMTU reads the name and writes the MTU into `request`.
        if unsafe { libc::ioctl(self.packets_v4.as_raw_fd(), libc::SIOCGIFMTU, &mut request) } < 0 {
            return Err(io_error(
                "reading an interface's MTU",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: SIOCGIFMTU set the MTU member.
        let mtu = unsafe { request.ifr_ifru.ifru_mtu } as usize;
        self.interface_mtus.insert(ifindex, mtu);
        Ok(mtu)
    }

    /// The path MTU the kernel knows towards `destination`, read once.
    fn route_mtu(&mut self, destination: IpAddr) -> Result<usize, SocketError> {
        if let Some(mtu) = self.route_mtus.get(&destination) {
            return Ok(*mtu);
        }
        let unspecified: IpAddr = match destination {
            IpAddr::V4(_) => IpAddr::from([0u8; 4]),
            IpAddr::V6(_) => IpAddr::from([0u8; 16]),
        };
        let probe = UdpSocket::bind((unspecified, 0))
            .and_then(|probe| probe.connect((destination, 9)).map(|()| probe))
            .map_err(|source| io_error("finding the route to a backend", source))?;
        let (level, option) = match destination {
            IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
            IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
        };
        let mut mtu: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `mtu` and `len` outlive the call and have the stated size.
        if unsafe {
            libc::getsockopt(
                probe.as_raw_fd(),
                level,
                option,
                (&raw mut mtu).cast(),
                &mut len,
            )
        } < 0
        {
            return Err(io_error(
                "reading the route MTU",
                io::Error::last_os_error(),
            ));
        }
        let mtu = mtu as usize;
        self.route_mtus.insert(destination, mtu);
        Ok(mtu)
    }

    /// Forgets the MTUs read so far, after the kernel's routes or links changed.
    pub fn forget_mtus(&mut self) {
        self.interface_mtus.clear();
        self.route_mtus.clear();
    }
}

/// A destination address for `sendto`.
enum Address {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl Address {
    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            Self::V4(address) => (address as *const libc::sockaddr_in).cast(),
            Self::V6(address) => (address as *const libc::sockaddr_in6).cast(),
        }
    }
}

fn send_to(
    socket: &OwnedFd,
    bytes: &[u8],
    address: *const libc::sockaddr,
    len: usize,
) -> Result<(), SocketError> {
    // SAFETY: `bytes` and `address` point at live memory of the stated sizes.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            address,
            len as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io_error("sending to a backend", io::Error::last_os_error()));
    }
    Ok(())
}

fn open(family: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and has the stated size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn io_error(what: &'static str, source: io::Error) -> SocketError {
    SocketError::Io { what, source }
}

/// The backend's SIP address, as the slow path sends to it in NAT mode.
pub fn backend_address(backend: &Backend) -> SocketAddr {
    SocketAddr::new(ip_address(backend.address), backend.port)
}
