//! The tokio loop around a [`Prober`]: it moves datagrams, time and commands in
//! and transmits and events out, and decides nothing itself.

use std::{io, time::Instant};

use thiserror::Error;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
};

use super::{
    prober::{DuplicateTargetId, Event, Prober, Target},
    status::TargetStatus,
};

/// The largest UDP payload; a reply can never be cut short.
const MAX_DATAGRAM: usize = 65_535;

/// Why the driver stopped other than by being told to.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error("receiving on the health-check socket: {0}")]
    Receive(#[source] io::Error),
}

/// What the daemon can ask of a running driver.
#[derive(Debug)]
pub enum Command {
    /// Replace the targets, on reload. The reply says whether the set was taken.
    SetTargets {
        targets: Vec<Target>,
        reply: oneshot::Sender<Result<(), DuplicateTargetId>>,
    },
    /// Report every target's status, for `sipxdp status`.
    Snapshot { reply: oneshot::Sender<Snapshot> },
    /// Send from `socket`, bound to `local`, from now on, when the source address must
    /// change. The old socket is closed.
    Rebind {
        socket: UdpSocket,
        local: std::net::SocketAddr,
    },
}

/// The prober's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub targets: Vec<(Target, TargetStatus)>,
    pub ignored_replies: u64,
}

/// Runs `prober` on `socket` until the daemon lets go of either channel:
/// dropping every command sender, or the event receiver, stops it cleanly.
///
/// A failed send is only logged: the ping then times out and counts as the
/// failure it is. Events are sent with backpressure; they are rare (at most one
/// per target per interval), so the daemon must just keep receiving them.
pub async fn run(
    mut prober: Prober,
    mut socket: UdpSocket,
    events: mpsc::Sender<Event>,
    mut commands: mpsc::Receiver<Command>,
) -> Result<(), DriverError> {
    let mut buffer = vec![0; MAX_DATAGRAM];
    loop {
        let now = Instant::now();
        while let Some(transmit) = prober.poll_transmit(now) {
            if let Err(error) = socket
                .send_to(&transmit.payload, transmit.destination)
                .await
            {
                log::warn!(
                    "sending a health check to {}: {error}",
                    transmit.destination
                );
            }
        }
        while let Some(event) = prober.poll_event() {
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
        let deadline = prober.poll_timeout();
        tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((length, from)) => {
                    let payload = buffer.get(..length).unwrap_or_default();
                    prober.handle_datagram(Instant::now(), from, payload);
                }
                // ICMP errors for earlier sends surface here on some systems;
                // the affected pings simply time out.
                Err(error) if is_transient(&error) => {
                    log::debug!("health-check socket: {error}");
                }
                Err(error) => return Err(DriverError::Receive(error)),
            },
            () = sleep_until(deadline) => prober.handle_timeout(Instant::now()),
            command = commands.recv() => match command {
                Some(command) => execute(&mut prober, &mut socket, command),
                None => return Ok(()),
            },
        }
    }
}

/// Applies a command. A requester that stopped waiting for the reply is no
/// error: the command itself has taken effect.
fn execute(prober: &mut Prober, socket: &mut UdpSocket, command: Command) {
    match command {
        Command::SetTargets { targets, reply } => {
            let _ = reply.send(prober.set_targets(Instant::now(), targets));
        }
        Command::Snapshot { reply } => {
            let snapshot = Snapshot {
                targets: prober
                    .statuses()
                    .map(|(target, status)| (target, status.clone()))
                    .collect(),
                ignored_replies: prober.ignored_replies(),
            };
            let _ = reply.send(snapshot);
        }
        Command::Rebind {
            socket: rebound,
            local,
        } => {
            prober.set_local(Instant::now(), local);
            *socket = rebound;
        }
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Duration,
    };

    use super::*;
    use crate::health::{DownReason, Settings, State, testing::response};

    /// Generous: the events are due within about a second even on a loaded machine.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A backend that answers 200 OK while `answering` is set, and stays silent otherwise.
    async fn backend(socket: UdpSocket, answering: Arc<AtomicBool>) {
        let mut buffer = vec![0; MAX_DATAGRAM];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            if answering.load(Ordering::SeqCst) {
                let reply = response(&buffer[..length], 200);
                socket.send_to(reply.as_bytes(), from).await.unwrap();
            }
        }
    }

    async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
        tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event within the deadline")
            .expect("the driver is running")
    }

    /// Checks every `interval_ms`, timing out after `timeout_ms`, down and up after
    /// `threshold` outcomes, 2xx alive.
    fn settings(interval_ms: u64, timeout_ms: u64, threshold: u32) -> Settings {
        Settings {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            down_after: threshold,
            up_after: threshold,
            alive_codes: vec![(200, 299)],
        }
    }

    #[tokio::test]
    async fn driver_reports_down_and_up_over_udp() {
        let backend_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let probe_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let prober =
            Prober::new(settings(150, 100, 2), probe_socket.local_addr().unwrap(), 1).unwrap();
        let answering = Arc::new(AtomicBool::new(false));
        let target = Target {
            id: 7,
            address: backend_socket.local_addr().unwrap(),
        };
        let backend = tokio::spawn(backend(backend_socket, answering.clone()));
        let (event_sender, mut events) = mpsc::channel(4);
        let (commands, command_receiver) = mpsc::channel(4);
        let driver = tokio::spawn(run(prober, probe_socket, event_sender, command_receiver));

        let (reply, accepted) = oneshot::channel();
        let set_targets = Command::SetTargets {
            targets: vec![target],
            reply,
        };
        commands.send(set_targets).await.unwrap();
        assert_eq!(accepted.await.unwrap(), Ok(()));

        // Silent backend: Down after two timeouts.
        let down = Event::Down {
            id: 7,
            reason: DownReason::Timeout,
        };
        assert_eq!(next_event(&mut events).await, down);

        // Answering backend: Up after two replies, which the snapshot shows.
        answering.store(true, Ordering::SeqCst);
        assert_eq!(next_event(&mut events).await, Event::Up { id: 7 });
        let (reply, snapshot) = oneshot::channel();
        commands.send(Command::Snapshot { reply }).await.unwrap();
        let snapshot = snapshot.await.unwrap();
        let [(reported, status)] = &snapshot.targets[..] else {
            panic!("one target expected")
        };
        assert_eq!(*reported, target);
        assert_eq!(status.state, State::Up);
        assert_eq!(status.last_reply_code, Some(200));
        assert!(
            status
                .last_latency
                .is_some_and(|latency| latency < PATIENCE)
        );
        assert!(status.failures_total >= 2);

        // Backend stops answering: Down again.
        answering.store(false, Ordering::SeqCst);
        assert_eq!(next_event(&mut events).await, down);

        // Dropping the command sender stops the driver cleanly.
        drop(commands);
        let stopped = tokio::time::timeout(PATIENCE, driver).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))));
        backend.abort();
    }

    #[tokio::test]
    async fn after_a_rebind_checks_come_from_the_new_socket_and_are_answered_there() {
        let backend_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let second = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (first_local, second_local) =
            (first.local_addr().unwrap(), second.local_addr().unwrap());
        let mut prober = Prober::new(settings(50, 40, 1), first_local, 1).unwrap();
        let target = Target {
            id: 3,
            address: backend_socket.local_addr().unwrap(),
        };
        prober.set_targets(Instant::now(), vec![target]).unwrap();
        // The backend answers every ping and reports where it came from.
        let (sources, mut pinged_from) = mpsc::unbounded_channel();
        let backend = tokio::spawn(async move {
            let mut buffer = vec![0; MAX_DATAGRAM];
            while let Ok((length, from)) = backend_socket.recv_from(&mut buffer).await {
                let reply = response(&buffer[..length], 200);
                backend_socket
                    .send_to(reply.as_bytes(), from)
                    .await
                    .unwrap();
                let _ = sources.send(from);
            }
        });
        let (event_sender, _events) = mpsc::channel(4);
        let (commands, command_receiver) = mpsc::channel(4);
        let driver = tokio::spawn(run(prober, first, event_sender, command_receiver));
        let next_source = async |pinged_from: &mut mpsc::UnboundedReceiver<SocketAddr>| {
            tokio::time::timeout(PATIENCE, pinged_from.recv())
                .await
                .expect("a ping within the deadline")
                .expect("the backend is running")
        };
        assert_eq!(next_source(&mut pinged_from).await, first_local);

        commands
            .send(Command::Rebind {
                socket: second,
                local: second_local,
            })
            .await
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while next_source(&mut pinged_from).await != second_local {
            assert!(Instant::now() < deadline, "no ping from the new socket");
        }
        // Replies reach the new socket: the status counts them, and no check failed.
        let answered = |snapshot: &Snapshot| snapshot.targets[0].1.latencies.count;
        let snapshot = async || {
            let (reply, snapshot) = oneshot::channel();
            commands.send(Command::Snapshot { reply }).await.unwrap();
            snapshot.await.unwrap()
        };
        let before = answered(&snapshot().await);
        while answered(&snapshot().await) < before + 3 {
            assert!(Instant::now() < deadline, "no replies on the new socket");
            next_source(&mut pinged_from).await;
        }
        assert_eq!(snapshot().await.targets[0].1.failures_total, 0);
        drop(commands);
        assert!(matches!(
            tokio::time::timeout(PATIENCE, driver).await,
            Ok(Ok(Ok(())))
        ));
        backend.abort();
    }
}
