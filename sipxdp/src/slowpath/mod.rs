//! The slow path: what the XDP program passes up on a UDP VIP (fragments it could not
//! place, Call-IDs beyond its window, IPv6 extension headers, messages it cannot parse)
//! reaches a socket on the VIP, reassembled by the stack. The daemon parses each whole
//! message with the kernel's Call-ID code, picks the backend with the same table and
//! dialogs ([`decide`]), and sends the client's exact bytes on from the client's address
//! and port ([`socket::Transmitter`]), or drops them for a counted cause.
//!
//! One receiving thread per VIP feeds a bounded queue; one forwarding thread empties it.
//! A full queue, and a full socket buffer before it, drop messages and count them.

pub mod decide;
pub mod outcome;
pub mod socket;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use aya::maps::{HashMap, MapData, MapError};
use sipxdp_common::{
    maps::{Placement, PlacementKey},
    outcome::Reason,
};

use self::{
    decide::{Decision, DialogStore, View, decide},
    outcome::{Cause, Counts, Outcome},
    socket::{MAX_MESSAGE, SocketError, Transmitter, VipSocket, backend_address},
};
use crate::config::ForwardingMode;

/// The kernel's `DIALOGS` map, shared with the XDP program.
pub struct KernelDialogs(pub HashMap<MapData, PlacementKey, Placement>);

impl DialogStore for KernelDialogs {
    fn get(&mut self, key: &PlacementKey) -> Option<Placement> {
        self.0.get(key, 0).ok()
    }

    fn put(&mut self, key: &PlacementKey, dialog: &Placement) {
        if let Err(error) = self.0.insert(key, dialog, 0) {
            log::debug!("slow path: remembering a dialog: {error}");
        }
    }
}

/// A VIP the slow path serves: its name and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub name: String,
    pub address: SocketAddr,
}

/// A message waiting to be forwarded.
struct Message {
    vip: SocketAddr,
    client: SocketAddr,
    payload: Vec<u8>,
}

/// The receiving thread of one VIP.
struct Listener {
    socket: Arc<VipSocket>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn stop(mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.socket.shut_down();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The running slow path.
pub struct SlowPath {
    view: Arc<RwLock<Arc<View>>>,
    counts: Counts,
    queue: Option<SyncSender<Message>>,
    listeners: BTreeMap<SocketAddr, Listener>,
    forwarder: Option<JoinHandle<()>>,
}

impl SlowPath {
    /// Starts the forwarding thread, with a queue of `queue` messages, sending with
    /// `transmitter` and sharing `dialogs` with the kernel. It serves no VIP until
    /// [`SlowPath::serve`].
    pub fn start(queue: u32, transmitter: Transmitter, dialogs: KernelDialogs) -> Self {
        let (sender, receiver) = sync_channel(queue as usize);
        let view = Arc::new(RwLock::new(Arc::new(View::default())));
        let counts = Counts::default();
        let forwarder = {
            let view = view.clone();
            let counts = counts.clone();
            std::thread::Builder::new()
                .name("slow-path".into())
                .spawn(move || forward_all(&receiver, &view, &counts, transmitter, dialogs))
                .ok()
        };
        Self {
            view,
            counts,
            queue: Some(sender),
            listeners: BTreeMap::new(),
            forwarder,
        }
    }

    /// Receives on exactly the VIPs `vips`: binds those not yet bound, all before changing
    /// anything (an error leaves the slow path as it was), then closes the others.
    pub fn serve(&mut self, vips: &[Served]) -> Result<(), SocketError> {
        let mut bound = Vec::new();
        for vip in vips {
            if !self.listeners.contains_key(&vip.address) {
                bound.push((vip.address, VipSocket::bind(&vip.name, vip.address)?));
            }
        }
        for (address, socket) in bound {
            let listener = self.listen(address, socket);
            self.listeners.insert(address, listener);
        }
        let gone: Vec<SocketAddr> = self
            .listeners
            .keys()
            .filter(|address| !vips.iter().any(|vip| vip.address == **address))
            .copied()
            .collect();
        for address in gone {
            if let Some(listener) = self.listeners.remove(&address) {
                listener.stop();
            }
        }
        Ok(())
    }

    fn listen(&self, vip: SocketAddr, socket: VipSocket) -> Listener {
        let socket = Arc::new(socket);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = self.queue.clone().and_then(|queue| {
            let socket = socket.clone();
            let stopping = stopping.clone();
            let counts = self.counts.clone();
            std::thread::Builder::new()
                .name(format!("slow-path {vip}"))
                .spawn(move || receive_all(vip, &socket, &stopping, &queue, &counts))
                .ok()
        });
        Listener {
            socket,
            stopping,
            thread,
        }
    }

    /// Makes the forwarder decide with `view` from its next message on.
    pub fn publish(&self, view: View) {
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
    }

    /// The counts so far, by VIP address, outcome and cause.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl Drop for SlowPath {
    fn drop(&mut self) {
        for (_, listener) in std::mem::take(&mut self.listeners) {
            listener.stop();
        }
        // With every sender gone, the forwarder drains the queue and ends.
        self.queue = None;
        if let Some(forwarder) = self.forwarder.take() {
            let _ = forwarder.join();
        }
    }
}

/// Receives on `socket` until stopped, queueing each message for the forwarder.
fn receive_all(
    vip: SocketAddr,
    socket: &VipSocket,
    stopping: &AtomicBool,
    queue: &SyncSender<Message>,
    counts: &Counts,
) {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let mut overflowed = 0u32;
    while !stopping.load(Ordering::Relaxed) {
        let received = match socket.receive(&mut buffer) {
            Ok(Some(received)) => received,
            Ok(None) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                log::error!("slow path on {vip}: receiving stopped: {error}");
                return;
            }
        };
        if let Some(total) = received.overflowed {
            let lost = total.wrapping_sub(overflowed);
            if lost > 0 {
                counts.add(
                    vip,
                    Outcome::Dropped,
                    Cause::SocketOverflow,
                    u64::from(lost),
                );
            }
            overflowed = total;
        }
        let message = Message {
            vip,
            client: received.client,
            payload: buffer[..received.len].to_vec(),
        };
        match queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => counts.add(vip, Outcome::Dropped, Cause::QueueFull, 1),
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Forwards queued messages until every sender is gone.
fn forward_all(
    queue: &Receiver<Message>,
    view: &RwLock<Arc<View>>,
    counts: &Counts,
    mut transmitter: Transmitter,
    mut dialogs: KernelDialogs,
) {
    let mut generation = None;
    while let Ok(message) = queue.recv() {
        let view = view.read().unwrap_or_else(PoisonError::into_inner).clone();
        // Routes and links may have changed with the view: read MTUs again.
        if generation.is_some_and(|seen| !Arc::ptr_eq(&seen, &view)) {
            transmitter.forget_mtus();
        }
        generation = Some(view.clone());
        let (outcome, cause) = forward_one(&view, &message, &mut transmitter, &mut dialogs, counts);
        counts.add(message.vip, outcome, cause, 1);
    }
}

/// Decides and carries out what happens to one message; counts it under its backend when
/// it was sent, and returns what to count it as.
fn forward_one(
    view: &View,
    message: &Message,
    transmitter: &mut Transmitter,
    dialogs: &mut impl DialogStore,
    counts: &Counts,
) -> (Outcome, Cause) {
    let decision = decide(
        view,
        message.vip,
        &message.payload,
        message.client,
        dialogs,
        coarse_now_ns(),
    );
    let (backend, outcome, cause) = match decision {
        Decision::Drop(cause) => return (Outcome::Dropped, cause),
        Decision::Forward {
            backend,
            outcome,
            cause,
        } => (backend, outcome, cause),
    };
    let (Some(vip), Some(entry)) = (view.vips.get(&message.vip), view.backends.get(&backend))
    else {
        return (Outcome::Dropped, Cause::Kernel(Reason::NoBackend));
    };
    let sent = match vip.mode {
        ForwardingMode::Dsr => {
            transmitter.send_direct(message.client, vip.address, entry, &message.payload)
        }
        ForwardingMode::Nat => {
            transmitter.send_routed(message.client, backend_address(entry), &message.payload)
        }
    };
    match sent {
        Ok(()) => {
            counts.add_sent(message.vip, backend_address(entry));
            (outcome, cause)
        }
        Err(error) => {
            log::debug!(
                "slow path on {}: a message from {}: {error}",
                vip.name,
                message.client
            );
            (Outcome::Dropped, Cause::SendFailed)
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the clock the program stamps dialogs with.
pub fn coarse_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec that outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Opening the kernel's `DIALOGS` map for the slow path.
pub fn kernel_dialogs(map: MapData) -> Result<KernelDialogs, MapError> {
    HashMap::try_from(aya::maps::Map::LruHashMap(map)).map(KernelDialogs)
}
