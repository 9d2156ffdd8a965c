//! How full the kernel's LRU maps are. The kernel keeps no count of an LRU hash map's
//! entries, so a thread of its own walks their keys every [`INTERVAL`] with its own map
//! descriptors; a scrape reads the last count.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::{
    Pod,
    maps::{HashMap, MapData},
};

use crate::metrics::MapFill;

/// Time between two walks. A walk of a full million-entry map takes about a second of
/// one core's time in system calls.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// A map to count: its name, capacity and a way to count its keys.
pub struct Counted {
    pub name: &'static str,
    pub max_entries: u32,
    pub count: Box<dyn Fn(u32) -> u64 + Send>,
}

impl Counted {
    /// The LRU hash map `map` (a handle of its own) named `name`, with keys `K` and
    /// values `V`.
    pub fn lru<K: Pod + Send + 'static, V: Pod + Send + 'static>(
        name: &'static str,
        map: MapData,
        max_entries: u32,
    ) -> anyhow::Result<Self> {
        let map: HashMap<MapData, K, V> = HashMap::try_from(aya::maps::Map::LruHashMap(map))?;
        Ok(Self {
            name,
            max_entries,
            count: Box::new(move |limit| count_keys(map.keys(), limit)),
        })
    }
}

/// Counts the keys an iterator yields, at most `limit`: a walk that entries keep
/// replacing under it may start over, and must still end.
fn count_keys<K, E>(keys: impl Iterator<Item = Result<K, E>>, limit: u32) -> u64 {
    keys.take(limit as usize).filter(Result::is_ok).count() as u64
}

/// The counting thread; it stops when dropped.
pub struct Occupancy {
    fills: Arc<Mutex<Vec<MapFill>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Occupancy {
    pub fn start(maps: Vec<Counted>) -> Self {
        let fills = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = fills.clone();
        let thread = std::thread::Builder::new()
            .name("map-occupancy".into())
            .spawn(move || {
                loop {
                    let counted: Vec<MapFill> = maps
                        .iter()
                        .map(|map| MapFill {
                            map: map.name,
                            entries: (map.count)(map.max_entries),
                            max_entries: map.max_entries,
                        })
                        .collect();
                    *shared.lock().unwrap_or_else(PoisonError::into_inner) = counted;
                    match stopped.recv_timeout(INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok();
        Self {
            fills,
            stop: Some(stop),
            thread,
        }
    }

    /// The last counts (empty until the first walk ends).
    pub fn fills(&self) -> Vec<MapFill> {
        self.fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Occupancy {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count_keys;

    #[test]
    fn a_walk_counts_the_keys_read_and_ends_at_the_limit() {
        let keys = [Ok(1), Err(()), Ok(3)];
        assert_eq!(count_keys(keys.into_iter(), 10), 2);
        assert_eq!(
            count_keys(std::iter::repeat(Ok::<u32, ()>(7)), 1_000),
            1_000
        );
    }
}
