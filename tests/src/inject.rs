//! Frames sent as they are, for what a socket cannot send: fragments out of order, IPv6
//! extension headers.

use std::{
    io,
    mem::zeroed,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// Sends `frames` out of `interface` of `netns` through an `AF_PACKET` socket, in order.
///
/// # Errors
///
/// The namespace or interface cannot be entered or found, or a send fails.
pub fn send_frames(netns: &Netns, interface: &str, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let interface = std::ffi::CString::new(interface).context("an interface name")?;
    netns
        .enter_thread(move || -> anyhow::Result<()> {
            // SAFETY: plain socket creation; the descriptor is owned at once.
            let socket = unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
                if fd < 0 {
                    bail!("AF_PACKET socket: {}", io::Error::last_os_error());
                }
                OwnedFd::from_raw_fd(fd)
            };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(interface.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {interface:?}: {}", io::Error::last_os_error());
            }
            for frame in frames {
                // SAFETY: all-zero bytes are a valid sockaddr_ll.
                let mut link: libc::sockaddr_ll = unsafe { zeroed() };
                link.sll_family = libc::AF_PACKET as u16;
                link.sll_ifindex = ifindex as i32;
                link.sll_halen = 6;
                link.sll_addr[..6].copy_from_slice(&frame[..6]);
                // SAFETY: `frame` and `link` are live for the call, of the stated sizes.
                let sent = unsafe {
                    libc::sendto(
                        socket.as_raw_fd(),
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
            }
            Ok(())
        })
        .context("entering the namespace")?
}
