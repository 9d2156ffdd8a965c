//! SIP OPTIONS health checks of the backends, like Kamailio's dispatcher.
//!
//! [`Prober`] holds all the logic and no IO: it is fed the time, received
//! datagrams and target sets, and hands back datagrams to send and Up/Down
//! events, so every rule is tested without sockets or clocks. [`run`] is the
//! thin tokio loop that connects it to a UDP socket and to the daemon.

mod driver;
mod prober;
mod settings;
mod status;

pub use driver::{Command, DriverError, Snapshot, run};
pub use prober::{DownReason, DuplicateTargetId, Event, Prober, Target, Transmit};
pub use settings::{MAX_INTERVAL, Settings, SettingsError};
pub use status::{LATENCY_BUCKETS_US, LatencyHistogram, State, TargetStatus};

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
