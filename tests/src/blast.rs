//! A paced UDP sender for the end-to-end benchmark: `sendmmsg` in batches of 64, so one
//! client thread can offer several hundred thousand datagrams a second, which one
//! `send_to` per datagram cannot.

use std::{
    io,
    net::UdpSocket,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

/// Datagrams per `sendmmsg` call.
pub const BATCH: usize = 64;

/// Sends `count` datagrams on the connected `socket` at `rate` a second, taking them in
/// turn from `messages` (from `first` on), a batch at a time, each batch no earlier than
/// its slot. Stops early once `limit` has passed. Returns how many were sent.
///
/// # Errors
///
/// `sendmmsg` failed, or `messages` is empty.
pub fn send_paced(
    socket: &UdpSocket,
    messages: &[Vec<u8>],
    first: usize,
    count: usize,
    rate: u64,
    limit: Duration,
) -> io::Result<usize> {
    if messages.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no messages"));
    }
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && start.elapsed() < limit {
        let slot = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        let ahead = slot.saturating_duration_since(Instant::now());
        if ahead > Duration::from_micros(100) {
            std::thread::sleep(ahead);
        }
        let batch = BATCH.min(count - sent);
        let mut iovecs: Vec<libc::iovec> = (0..batch)
            .map(|index| {
                let message = &messages[(first + sent + index) % messages.len()];
                libc::iovec {
                    iov_base: message.as_ptr().cast_mut().cast(),
                    iov_len: message.len(),
                }
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is valid (no name, no control data).
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iovec| {
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        let mut done = 0;
        while done < batch {
            // SAFETY: `headers[done..]` point at iovecs and messages that outlive the call;
            // the socket is connected, so no destination is needed.
            let result = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[done..].as_mut_ptr(),
                    (batch - done) as libc::c_uint,
                    0,
                )
            };
            if result < 0 {
                return Err(io::Error::last_os_error());
            }
            done += result as usize;
        }
        sent += batch;
    }
    Ok(sent)
}
