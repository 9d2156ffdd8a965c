//! Sending and receiving test datagrams inside lab namespaces.
//!
//! Sockets are created inside the namespace (see [`Netns::enter_thread`]) and then used from
//! ordinary threads. Sending is bounded in count and time, and receiving runs on a
//! background thread from the moment the socket is bound, so a burst sent before the test
//! starts collecting is not lost to a full receive buffer.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::netns::{Netns, NetnsError};
use crate::sipgen::Answer;

/// The most datagrams one [`send_udp_from`] call sends; more is an error, not a truncation.
pub const MAX_DATAGRAMS_PER_SEND: usize = 1_000_000;

/// How long one send may block (full socket buffer, unresolved neighbour) before failing.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the receiver thread checks whether it should stop.
const RECEIVE_POLL: Duration = Duration::from_millis(50);

/// Larger than any UDP payload.
const MAX_DATAGRAM: usize = 65_536;

#[derive(Debug, Error)]
pub enum TrafficError {
    #[error("opening socket: {0}")]
    Socket(#[from] NetnsError),
    #[error("configuring UDP socket {local}: {source}")]
    Configure {
        local: SocketAddr,
        source: io::Error,
    },
    #[error("sending datagram #{index} from {from} to {to}: {source}")]
    Send {
        index: usize,
        from: SocketAddr,
        to: SocketAddr,
        source: io::Error,
    },
    #[error(
        "refusing to send more than {MAX_DATAGRAMS_PER_SEND} datagrams from {from} to {to} in one call"
    )]
    TooMany { from: SocketAddr, to: SocketAddr },
    #[error("receiving on {local}: {source}")]
    Receive {
        local: SocketAddr,
        source: io::Error,
    },
    #[error("receiver thread on {local} has stopped")]
    ReceiverGone { local: SocketAddr },
    #[error("starting receiver thread for {local}: {source}")]
    Thread {
        local: SocketAddr,
        source: io::Error,
    },
}

/// The outcome of [`send_udp_from`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSummary {
    /// The sending socket's address (the real port when `from` had port 0).
    pub local: SocketAddr,
    /// How many datagrams were sent.
    pub sent: usize,
}

/// Sends every payload as one datagram from a socket bound to `from` inside `netns` to
/// `to`, in order. At most [`MAX_DATAGRAMS_PER_SEND`] payloads; each send may block for at
/// most a few seconds.
pub fn send_udp_from<P: AsRef<[u8]>>(
    netns: &Netns,
    from: SocketAddr,
    to: SocketAddr,
    payloads: impl IntoIterator<Item = P>,
) -> Result<SendSummary, TrafficError> {
    let socket = netns.udp_socket(from)?;
    let local = socket
        .local_addr()
        .map_err(|source| TrafficError::Configure {
            local: from,
            source,
        })?;
    socket
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(|source| TrafficError::Configure { local, source })?;
    let mut payloads = payloads.into_iter();
    let mut sent = 0;
    for payload in payloads.by_ref().take(MAX_DATAGRAMS_PER_SEND) {
        socket
            .send_to(payload.as_ref(), to)
            .map_err(|source| TrafficError::Send {
                index: sent,
                from: local,
                to,
                source,
            })?;
        sent += 1;
    }
    if payloads.next().is_some() {
        return Err(TrafficError::TooMany { from: local, to });
    }
    Ok(SendSummary { local, sent })
}

/// One received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's address as seen by the receiver.
    pub peer: SocketAddr,
    pub payload: Vec<u8>,
}

/// Receive buffer of a [`UdpReceiver`]: room for thousands of datagrams, so a receiving
/// thread that the scheduler holds back for a moment loses nothing.
const RECEIVE_BUFFER: usize = 16 << 20;

/// Sets the socket's receive buffer to `bytes`, above `net.core.rmem_max`
/// (`SO_RCVBUFFORCE` needs `CAP_NET_ADMIN`, which the lab has anyway).
fn force_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket and a pointer to a c_int of the length given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket inside a namespace whose datagrams are read continuously by a background
/// thread and handed out by [`UdpReceiver::collect`]. Dropping it stops the thread.
#[derive(Debug)]
pub struct UdpReceiver {
    local: SocketAddr,
    /// The same socket, for sending from the receiving address.
    sender: UdpSocket,
    datagrams: Receiver<io::Result<Datagram>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpReceiver {
    /// Binds `bind` inside `netns` and starts receiving immediately.
    pub fn bind(netns: &Netns, bind: SocketAddr) -> Result<UdpReceiver, TrafficError> {
        Self::bind_answering(netns, bind, |_| Answer {
            reply: None,
            keep: true,
        })
    }

    /// Like [`bind`](Self::bind), but `answer` decides for each datagram whether a reply
    /// goes back to its sender and whether the datagram is handed out (SIP OPTIONS pings
    /// are answered and not handed out, for instance).
    pub fn bind_answering(
        netns: &Netns,
        bind: SocketAddr,
        answer: fn(&[u8]) -> Answer,
    ) -> Result<UdpReceiver, TrafficError> {
        let socket = netns.udp_socket(bind)?;
        let local = socket
            .local_addr()
            .map_err(|source| TrafficError::Configure {
                local: bind,
                source,
            })?;
        socket
            .set_read_timeout(Some(RECEIVE_POLL))
            .map_err(|source| TrafficError::Configure { local, source })?;
        force_receive_buffer(&socket, RECEIVE_BUFFER)
            .map_err(|source| TrafficError::Configure { local, source })?;
        let sending = socket
            .try_clone()
            .map_err(|source| TrafficError::Configure { local, source })?;
        let (sender, datagrams) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("udp-rx-{local}"))
            .spawn(move || receive_loop(&socket, &sender, &thread_stop, answer))
            .map_err(|source| TrafficError::Thread { local, source })?;
        Ok(UdpReceiver {
            local,
            sender: sending,
            datagrams,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `payload` to `to` from the receiving socket, so that answers come back here.
    pub fn send_to(&self, payload: &[u8], to: SocketAddr) -> Result<(), TrafficError> {
        self.sender
            .send_to(payload, to)
            .map(drop)
            .map_err(|source| TrafficError::Send {
                index: 0,
                from: self.local,
                to,
                source,
            })
    }

    /// Returns the datagrams received so far and those arriving until `expected` have been
    /// returned by this call or `deadline` passes, whichever comes first. Fewer than
    /// `expected` is not an error: the caller decides what a shortfall means.
    pub fn collect(
        &self,
        expected: usize,
        deadline: Instant,
    ) -> Result<Vec<Datagram>, TrafficError> {
        let mut got = Vec::new();
        while got.len() < expected {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.datagrams.recv_timeout(wait) {
                Ok(Ok(datagram)) => got.push(datagram),
                Ok(Err(source)) => {
                    return Err(TrafficError::Receive {
                        local: self.local,
                        source,
                    });
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(TrafficError::ReceiverGone { local: self.local });
                }
            }
        }
        Ok(got)
    }
}

impl Drop for UdpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread notices `stop` within one read timeout; a panic there has already
            // been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn receive_loop(
    socket: &UdpSocket,
    sender: &mpsc::Sender<io::Result<Datagram>>,
    stop: &AtomicBool,
    answer: fn(&[u8]) -> Answer,
) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let message = match socket.recv_from(&mut buffer) {
            Ok((len, peer)) => {
                let Answer { reply, keep } = answer(&buffer[..len]);
                if let Some(reply) = reply {
                    // A lost reply is what the asker's retries or health checks are for.
                    let _ = socket.send_to(&reply, peer);
                }
                if !keep {
                    continue;
                }
                Ok(Datagram {
                    peer,
                    payload: buffer[..len].to_vec(),
                })
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(err) => Err(err),
        };
        let failed = message.is_err();
        if sender.send(message).is_err() || failed {
            return;
        }
    }
}
