//! Frames sent and received as they are, through `AF_PACKET` sockets: for what an IP
//! socket cannot send (fragments out of order, IPv6 extension headers) or see (the
//! Ethernet addresses of a forwarded frame).

use std::{
    ffi::CString,
    io,
    mem::zeroed,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// `ETH_P_ALL` in network byte order: every protocol.
const ALL_PROTOCOLS: u16 = (libc::ETH_P_ALL as u16).to_be();

/// An `AF_PACKET` socket bound to one interface of the calling thread's namespace.
pub struct PacketSocket {
    socket: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Binds to `interface`, receiving every protocol.
    ///
    /// # Errors
    ///
    /// No such interface, or the socket cannot be made (it needs CAP_NET_RAW).
    pub fn bind(interface: &str) -> anyhow::Result<Self> {
        let name = CString::new(interface).context("an interface name")?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {interface}: {}", io::Error::last_os_error());
        }
        // SAFETY: plain socket creation; the descriptor is owned at once.
        let socket = unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ALL_PROTOCOLS),
            );
            if fd < 0 {
                bail!("AF_PACKET socket: {}", io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let this = Self {
            socket,
            ifindex: ifindex as i32,
        };
        let link = this.link(&[0; 6]);
        // SAFETY: `link` is live for the call, of the stated size.
        let bound = unsafe {
            libc::bind(
                this.socket.as_raw_fd(),
                (&raw const link).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            bail!("binding to {interface}: {}", io::Error::last_os_error());
        }
        Ok(this)
    }

    fn link(&self, destination: &[u8]) -> libc::sockaddr_ll {
        // SAFETY: all-zero bytes are a valid sockaddr_ll.
        let mut link: libc::sockaddr_ll = unsafe { zeroed() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_protocol = ALL_PROTOCOLS;
        link.sll_ifindex = self.ifindex;
        link.sll_halen = 6;
        link.sll_addr[..6].copy_from_slice(&destination[..6]);
        link
    }

    /// Sends `frame` out of the interface as it is.
    ///
    /// # Errors
    ///
    /// The kernel refused the frame.
    pub fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        let link = self.link(frame.get(..6).context("a frame of at least 6 bytes")?);
        // SAFETY: `frame` and `link` are live for the call, of the stated sizes.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const link).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            bail!("sending a frame: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame the interface received (not one it sent), or `None` once `deadline`
    /// passed.
    ///
    /// # Errors
    ///
    /// Receiving failed.
    pub fn receive(&self, deadline: Instant) -> anyhow::Result<Option<Vec<u8>>> {
        let mut buffer = vec![0u8; 65_536];
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(None);
            }
            let mut poll = libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = wait.max(Duration::from_millis(1)).as_millis();
            // SAFETY: one valid pollfd.
            let ready =
                unsafe { libc::poll(&mut poll, 1, i32::try_from(millis).unwrap_or(i32::MAX)) };
            if ready <= 0 {
                continue;
            }
            // SAFETY: all-zero bytes are a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buffer` and `from` are live, of the stated sizes.
            let len = unsafe {
                libc::recvfrom(
                    self.socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            if len < 0 {
                bail!("receiving a frame: {}", io::Error::last_os_error());
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                return Ok(Some(buffer[..len as usize].to_vec()));
            }
        }
    }
}

/// Sends `frames` out of `interface` of `netns`, in order.
///
/// # Errors
///
/// The namespace or interface cannot be entered or found, or a send fails.
pub fn send_frames(netns: &Netns, interface: &str, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    netns
        .enter_thread(|| -> anyhow::Result<()> {
            let socket = PacketSocket::bind(interface)?;
            for frame in frames {
                socket.send(frame)?;
            }
            Ok(())
        })
        .context("entering the namespace")?
}
