//! A non-blocking `NETLINK_ROUTE` socket: requests with replies, and multicast notifications.
//!
//! The socket belongs to the network namespace of the thread that opens it, for its whole life.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::wire::{self, Request};

/// `SOL_NETLINK` / `NETLINK_ADD_MEMBERSHIP` (linux/netlink.h).
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

/// How long the kernel may take to answer a request. Route, link and neighbour requests are
/// answered synchronously (the reply is queued before `send` returns), so this only guards
/// against a reply that never comes.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Receive buffer asked for sockets that join groups, so that bursts of notifications (a
/// link going down flushes all its neighbours and routes) do not overrun it.
const NOTIFICATION_BUFFER: libc::c_int = 1 << 20;

/// What the kernel answered to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// The requested object: message type and payload.
    Message { kind: u16, payload: Vec<u8> },
    /// Success of a request that returns no object.
    Ack,
}

#[derive(Debug)]
pub(super) struct NetlinkSocket {
    fd: OwnedFd,
    buffer: Vec<u8>,
    sequence: u32,
}

impl NetlinkSocket {
    /// Opens a socket in the current thread's network namespace, joined to `groups`
    /// (`RTNLGRP_*`; none for a socket that only sends requests).
    pub(super) fn open(groups: &[u32]) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid (nl_pid 0: the kernel picks).
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `address` is a valid sockaddr_nl of the given length.
        check(unsafe {
            libc::bind(
                raw,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        for &group in groups {
            set_option(
                &fd,
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                group as libc::c_int,
            )?;
        }
        if !groups.is_empty() {
            set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, NOTIFICATION_BUFFER)?;
        }
        Ok(NetlinkSocket {
            fd,
            buffer: vec![0; 16 * 1024],
            sequence: 0,
        })
    }

    /// Sends `request` and returns the kernel's answer; an error answer becomes the errno
    /// it carries. Replies to earlier requests that timed out are skipped by sequence number.
    pub(super) fn request(&mut self, mut request: Request) -> io::Result<Reply> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let bytes = request.stamp(sequence);
        // SAFETY: `bytes` is valid for its length; the destination is the kernel (all zero
        // address but the family), which `send` on an unconnected netlink socket uses.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.wait_readable(remaining)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no netlink reply within {REPLY_TIMEOUT:?}"),
                ));
            }
            let Some(datagram) = self.receive()? else {
                continue;
            };
            for message in wire::messages(datagram) {
                let message = message?;
                if message.sequence != sequence {
                    continue;
                }
                if message.kind != wire::NLMSG_ERROR {
                    return Ok(Reply::Message {
                        kind: message.kind,
                        payload: message.payload.to_vec(),
                    });
                }
                return match wire::error_code(message.payload)? {
                    0 => Ok(Reply::Ack),
                    code => Err(io::Error::from_raw_os_error(code.saturating_neg())),
                };
            }
        }
    }

    /// Waits until a datagram can be received or `timeout` passes; true if one can.
    pub(super) fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so that a sub-millisecond remainder still waits instead of spinning.
        let millis = timeout
            .as_micros()
            .div_ceil(1000)
            .min(libc::c_int::MAX as u128);
        // SAFETY: `poll` is one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut poll, 1, millis as libc::c_int) };
        match ready {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    Ok(true) // let the caller look, then wait again
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Receives one datagram without blocking; `None` if there is none (`EAGAIN`).
    ///
    /// `ENOBUFS` means the kernel dropped notifications because the receive buffer was full;
    /// it is returned as an error for the caller to handle (the socket stays usable).
    pub(super) fn receive(&mut self) -> io::Result<Option<&[u8]>> {
        let fd = self.fd.as_raw_fd();
        // A peek with MSG_TRUNC returns the full datagram length, so large replies (a link
        // with many attributes) are never cut short.
        // SAFETY: a zero-length read into a null buffer is valid with MSG_PEEK | MSG_TRUNC.
        let peeked = retry_interrupted(|| unsafe {
            libc::recv(
                fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        });
        let len = match peeked {
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(error) => return Err(error),
        };
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        let buffer = &mut self.buffer;
        // SAFETY: the buffer is valid for writes of its length.
        let received = retry_interrupted(|| unsafe {
            libc::recv(
                fd,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        })?;
        Ok(Some(&self.buffer[..received]))
    }
}

impl AsFd for NetlinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_option(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the length given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// Runs a `recv`-like call again while a signal interrupts it; returns its non-negative result.
fn retry_interrupted(mut call: impl FnMut() -> libc::ssize_t) -> io::Result<usize> {
    loop {
        let result = call();
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
