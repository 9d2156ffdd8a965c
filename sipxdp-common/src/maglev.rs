//! Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, section 3.4).
//!
//! The control plane builds a lookup table of `M` entries (`M` prime) with [`build_table`];
//! each entry holds the slot id of one backend. The kernel picks a backend for a call with
//! `table[table_entry(hash, M)]` ([`crate::maps::table_entry`]) — [`lookup`] is the
//! userspace mirror of that. Maglev tables give an
//! almost exactly even (or, here, weight-proportional) spread of entries and, when the set of
//! backends changes, move few entries that belonged to the backends that stay.
//!
//! # The algorithm
//!
//! Backends are first sorted by [`MaglevBackend::key`], so the caller's order does not
//! matter, and those with weight 0 are dropped. Each remaining backend `i` gets a
//! permutation of the table positions from two XXH64 hashes of its key
//! ([`xxh64_bytes`]) with the seeds [`OFFSET_SEED`] and [`SKIP_SEED`]:
//!
//! ```text
//! offset = xxh64(key, OFFSET_SEED) % M
//! skip   = xxh64(key, SKIP_SEED) % (M - 1) + 1
//! permutation[j] = (offset + j * skip) % M
//! ```
//!
//! As `M` is prime and `1 <= skip < M`, this visits every position exactly once.
//!
//! The backends then take turns; on its turn a backend claims the next position of its
//! permutation that is still empty, until the table is full. With equal weights the turns go
//! round-robin in key order, exactly as in the paper. With weights, backend `i` takes its
//! `k`-th turn (`k = 1, 2, …`) at the virtual time `k / weight_i`; turns are taken in order of
//! virtual time, ties in key order. (This is the stride-scheduling form of the
//! credit-based "weighted Maglev" of e.g. Katran; unlike a credit measured against the
//! largest weight, a backend's turn times depend on its own weight only, so adding or
//! removing a backend never reorders the turns of the others.) When the table fills, every
//! backend has had a number of turns within one of `weight_i × T` for the common stopping
//! time `T`, so its number of entries differs from its exact share
//! `M × weight_i / Σ weight` by less than `1 + N × weight_i / Σ weight` (`N` backends): less
//! than one entry with equal weights. The second term, which matters for heavy backends
//! only, is `N / M` of the backend's share, at most 10 % by [`MIN_ENTRIES_PER_BACKEND`].
//!
//! Everything is integer arithmetic on fixed seeds, so the same backends and size give the
//! same table on every machine.

use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};
use core::fmt;

use crate::hash::xxh64_bytes;

/// The table size the control plane uses unless told otherwise: the prime the paper uses
/// for its small table.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The largest table size accepted; the kernel's inner table map has this many entries.
pub const MAX_TABLE_SIZE: u32 = 65_537;

/// The smallest table size accepted: the smallest prime that holds
/// [`MIN_ENTRIES_PER_BACKEND`] entries for one backend, so every accepted size can hold at
/// least one backend.
pub const MIN_TABLE_SIZE: u32 = 11;

/// The table must have at least this many entries per backend of non-zero weight:
/// `size >= MIN_ENTRIES_PER_BACKEND × backends`.
///
/// Maglev needs `M ≫ N`. With equal weights every backend gets `⌊M/N⌋` or `⌈M/N⌉` entries,
/// so the share of a backend is off by at most `N/M` of its fair share; this rule bounds that
/// at 10 %. With the default size it allows up to 6,553 backends, and with 1,000 backends
/// the imbalance is at most 1.5 %.
pub const MIN_ENTRIES_PER_BACKEND: u32 = 10;

/// Seed of the XXH64 hash of a backend's key that gives its permutation's offset
/// (the ASCII bytes of `"maglev-o"`, big-endian).
pub const OFFSET_SEED: u64 = 0x6d61_676c_6576_2d6f;

/// Seed of the XXH64 hash of a backend's key that gives its permutation's skip
/// (the ASCII bytes of `"maglev-s"`, big-endian).
pub const SKIP_SEED: u64 = 0x6d61_676c_6576_2d73;

/// One backend to place in a Maglev table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// A stable identity of the backend, e.g. `b"198.51.100.21:5060"`. It alone decides the
    /// backend's permutation, so it must not change while the backend stays in service;
    /// keys must be distinct.
    pub key: &'a [u8],
    /// The backend's relative share of the table; 0 keeps it out of the table. A backend
    /// whose share `weight / Σ weights` is below `1 / size` may get no entries.
    pub weight: u32,
    /// The value stored in the table entries the backend owns (the kernel's backend slot
    /// id). Slots need not be distinct, though they normally are.
    pub slot: u32,
}

/// Why [`build_table`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaglevError {
    /// The size is below [`MIN_TABLE_SIZE`] or above [`MAX_TABLE_SIZE`].
    SizeOutOfRange {
        /// The size asked for.
        size: u32,
    },
    /// The size is not a prime number.
    SizeNotPrime {
        /// The size asked for.
        size: u32,
    },
    /// Two backends have the same key.
    DuplicateKey {
        /// The index of the first backend with the key in the caller's slice.
        first: usize,
        /// The index of a later backend with the same key.
        second: usize,
    },
    /// No backend has a weight above 0.
    NoBackends,
    /// There are more backends of non-zero weight than `size / MIN_ENTRIES_PER_BACKEND`.
    TooManyBackends {
        /// The number of backends of non-zero weight.
        backends: usize,
        /// The size asked for.
        size: u32,
    },
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SizeOutOfRange { size } => write!(
                f,
                "Maglev table size {size} is outside {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}"
            ),
            Self::SizeNotPrime { size } => write!(f, "Maglev table size {size} is not prime"),
            Self::DuplicateKey { first, second } => {
                write!(f, "backends {first} and {second} have the same key")
            }
            Self::NoBackends => f.write_str("no backend has a weight above 0"),
            Self::TooManyBackends { backends, size } => write!(
                f,
                "{backends} backends need a Maglev table of at least {} entries, not {size}",
                backends as u64 * MIN_ENTRIES_PER_BACKEND as u64
            ),
        }
    }
}

impl core::error::Error for MaglevError {}

/// True when `n` is a prime number.
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    // Trial division by 6k ± 1; `d * d` cannot overflow as `d <= 65_537`.
    let mut d: u64 = 5;
    while d * d <= n as u64 {
        if (n as u64).is_multiple_of(d) || (n as u64).is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// A backend's walk through its permutation.
struct Walk {
    /// The next position of the permutation to try.
    next: u32,
    skip: u32,
    weight: u64,
    slot: u32,
}

/// The `turn`-th turn of backend `index` (in key order), at virtual time `turn / weight`.
#[derive(PartialEq, Eq)]
struct Turn {
    turn: u64,
    weight: u64,
    index: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // turn / weight against other.turn / other.weight, exactly: `turn` never exceeds
        // `MAX_TABLE_SIZE + 1` < 2^17 and `weight` < 2^32, so the products fit.
        (self.turn * other.weight)
            .cmp(&(other.turn * self.weight))
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Builds the Maglev lookup table of `size` entries for `backends`.
///
/// Every entry of the result holds the [`slot`](MaglevBackend::slot) of a backend with
/// non-zero weight; the order of `backends` does not matter. See the [module
/// documentation](self) for the algorithm.
///
/// # Errors
///
/// - [`MaglevError::SizeOutOfRange`] unless `MIN_TABLE_SIZE <= size <= MAX_TABLE_SIZE`;
/// - [`MaglevError::SizeNotPrime`] unless `size` is prime;
/// - [`MaglevError::DuplicateKey`] if two backends (of any weight) share a key;
/// - [`MaglevError::NoBackends`] if no backend has a weight above 0;
/// - [`MaglevError::TooManyBackends`] if `size` is below
///   `MIN_ENTRIES_PER_BACKEND ×` the number of backends with a weight above 0.
///
/// # Cost
///
/// `O(N log N + M log N)` for the turns, plus the probes past taken positions, about
/// `M ln M / N` per backend for equal weights. `M = 65,537` with 1,000 backends takes a few
/// milliseconds.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size) {
        return Err(MaglevError::SizeOutOfRange { size });
    }
    if !is_prime(size) {
        return Err(MaglevError::SizeNotPrime { size });
    }

    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_unstable_by(|&a, &b| backends[a].key.cmp(backends[b].key).then(a.cmp(&b)));
    for pair in order.windows(2) {
        if let [first, second] = *pair
            && backends[first].key == backends[second].key
        {
            return Err(MaglevError::DuplicateKey { first, second });
        }
    }

    let mut walks: Vec<Walk> = order
        .iter()
        .map(|&i| &backends[i])
        .filter(|backend| backend.weight > 0)
        .map(|backend| Walk {
            next: (xxh64_bytes(backend.key, OFFSET_SEED) % size as u64) as u32,
            skip: (xxh64_bytes(backend.key, SKIP_SEED) % (size as u64 - 1) + 1) as u32,
            weight: backend.weight as u64,
            slot: backend.slot,
        })
        .collect();
    if walks.is_empty() {
        return Err(MaglevError::NoBackends);
    }
    if (walks.len() as u64) * MIN_ENTRIES_PER_BACKEND as u64 > size as u64 {
        return Err(MaglevError::TooManyBackends {
            backends: walks.len(),
            size,
        });
    }

    let mut table = vec![0u32; size as usize];
    let mut taken = vec![false; size as usize];
    let mut turns: BinaryHeap<Reverse<Turn>> = walks
        .iter()
        .enumerate()
        .map(|(index, walk)| {
            Reverse(Turn {
                turn: 1,
                weight: walk.weight,
                index,
            })
        })
        .collect();
    let mut filled = 0u32;
    while filled < size {
        // There is always a next turn: every popped turn pushes the backend's next one.
        let Some(Reverse(turn)) = turns.pop() else {
            break;
        };
        let walk = &mut walks[turn.index];
        // The permutation visits every position once every `size` steps and the table is
        // not full, so this finds an empty position within `size` steps.
        while taken[walk.next as usize] {
            walk.next = step(walk.next, walk.skip, size);
        }
        taken[walk.next as usize] = true;
        table[walk.next as usize] = walk.slot;
        walk.next = step(walk.next, walk.skip, size);
        filled += 1;
        turns.push(Reverse(Turn {
            turn: turn.turn + 1,
            ..turn
        }));
    }
    Ok(table)
}

/// The position after `at` in a permutation with `skip` over `size` positions.
#[inline]
fn step(at: u32, skip: u32, size: u32) -> u32 {
    // `at < size` and `skip < size <= MAX_TABLE_SIZE`, so the sum cannot overflow.
    let next = at + skip;
    if next >= size { next - size } else { next }
}

/// The slot for a call whose hash is `hash`: the entry [`crate::maps::table_entry`]
/// picks, exactly what the kernel computes. `None` only for an empty table.
pub fn lookup(table: &[u32], hash: u64) -> Option<u32> {
    let size = u32::try_from(table.len()).ok()?;
    table.get(crate::maps::table_entry(hash, size)).copied()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::format;
    use alloc::string::String;
    use std::println;

    /// Keys like the control plane's, `"198.51.x.y:5060"`.
    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("198.51.{}.{}:5060", i / 250, i % 250 + 1))
            .collect()
    }

    /// Backends for `keys` with slot = index and weights from `weight`.
    fn backends<'a>(keys: &'a [String], weight: impl Fn(usize) -> u32) -> Vec<MaglevBackend<'a>> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| MaglevBackend {
                key: key.as_bytes(),
                weight: weight(i),
                slot: i as u32,
            })
            .collect()
    }

    fn counts(table: &[u32], slots: usize) -> Vec<usize> {
        let mut counts = vec![0; slots];
        for &slot in table {
            counts[slot as usize] += 1;
        }
        counts
    }

    /// splitmix64, for reproducible pseudo-random inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                let j = self.below(i as u64 + 1) as usize;
                items.swap(i, j);
            }
        }
    }

    /// Asserts the documented bound: each backend's count differs from its exact share
    /// `M w / W` by less than `1 + N w / W`.
    fn assert_close_to_shares(table: &[u32], weights: &[u32]) {
        let n = weights.iter().filter(|&&w| w > 0).count() as f64;
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        let counts = counts(table, weights.len());
        for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
            let share = weight as f64 / total;
            let expected = table.len() as f64 * share;
            assert!(
                (count as f64 - expected).abs() < 1.0 + n * share + 1e-9,
                "backend {i} of weight {weight} has {count} entries, expected {expected:.2}"
            );
        }
    }

    /// Asserts each backend's share is within ±3 % (relative) of its weight's share.
    fn assert_proportional(table: &[u32], weights: &[u32]) {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let counts = counts(table, weights.len());
        let mut worst = 0f64;
        for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
            let expected = table.len() as f64 * weight as f64 / total as f64;
            let error = (count as f64 - expected).abs() / expected;
            worst = worst.max(error);
            assert!(
                error <= 0.03,
                "backend {i} of weight {weight} has {count} entries, expected {expected:.1}"
            );
        }
        println!(
            "{} backends, weights {:?}..: worst relative share error {:.4} %",
            weights.len(),
            &weights[..weights.len().min(3)],
            worst * 100.0
        );
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            small,
            [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59
            ]
        );
        assert!(is_prime(65_537));
        assert!(is_prime(655_373));
        assert!(!is_prime(65_535));
        assert!(!is_prime(65_539 * 3));
        assert!(is_prime(4_294_967_291)); // The largest 32-bit prime.
        assert!(!is_prime(u32::MAX));
        assert!(!is_prime(65_521 * 65_519)); // Product of two large primes.
    }

    #[test]
    fn deterministic() {
        let keys = keys(10);
        let backends = backends(&keys, |i| i as u32 % 3 + 1);
        let a = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
        let b = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(a, b);
        // A fingerprint of the table pins the algorithm (hash, seeds, turn order) across
        // machines and releases: a change here changes every deployed table.
        let fingerprint = a
            .iter()
            .fold(0u64, |h, &s| (h ^ s as u64).wrapping_mul(0x100_0000_01B3));
        assert_eq!(&a[..8], &[2, 5, 8, 5, 3, 5, 4, 3]);
        assert_eq!(fingerprint, 0x379b_5193_52a4_8062);
    }

    #[test]
    fn fills_every_entry_with_a_weighted_backend() {
        let keys = keys(7);
        // Backends 2 and 5 have weight 0.
        let backends = backends(&keys, |i| if i % 3 == 2 { 0 } else { 1 });
        for size in [53, 71, 1_009, DEFAULT_TABLE_SIZE] {
            let table = build_table(&backends, size).unwrap();
            assert_eq!(table.len(), size as usize);
            let counts = counts(&table, keys.len());
            assert_eq!(counts[2], 0);
            assert_eq!(counts[5], 0);
            for i in [0, 1, 3, 4, 6] {
                assert!(counts[i] > 0);
            }
        }
    }

    #[test]
    fn equal_weights_balance() {
        for n in [1, 3, 10, 100, 1_000] {
            let keys = keys(n);
            let backends = backends(&keys, |_| 1);
            let table = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
            let counts = counts(&table, n);
            // Round-robin turns: the counts differ by at most one.
            let min = counts.iter().min().unwrap();
            let max = counts.iter().max().unwrap();
            assert!(max - min <= 1, "n = {n}: {min}..={max}");
            assert_proportional(&table, &vec![1; n]);
        }
    }

    #[test]
    fn equal_weights_of_any_size_balance() {
        // Only the ratio of the weights matters.
        let keys = keys(10);
        let ones = build_table(&backends(&keys, |_| 1), DEFAULT_TABLE_SIZE).unwrap();
        let big = build_table(&backends(&keys, |_| u32::MAX), DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(ones, big);
    }

    #[test]
    fn weights_are_proportional() {
        let keys = keys(3);
        let weights = [1, 2, 3];
        let table = build_table(&backends(&keys, |i| weights[i]), DEFAULT_TABLE_SIZE).unwrap();
        assert_proportional(&table, &weights);

        for n in [10, 100] {
            let keys = self::keys(n);
            let weights: Vec<u32> = (0..n as u32).map(|i| i % 5 + 1).collect();
            let table = build_table(&backends(&keys, |i| weights[i]), DEFAULT_TABLE_SIZE).unwrap();
            assert_proportional(&table, &weights);
        }

        // Large weights do not overflow.
        let weights = [u32::MAX, u32::MAX / 2, u32::MAX / 4];
        let table = build_table(&backends(&keys, |i| weights[i]), DEFAULT_TABLE_SIZE).unwrap();
        assert_proportional(&table, &weights);
    }

    /// For an old and a new table: the fraction of entries that changed owner among those
    /// owned in the old table by backends present in both.
    fn disruption(old: &[u32], new: &[u32], stays: impl Fn(u32) -> bool) -> f64 {
        let (mut kept, mut moved) = (0usize, 0usize);
        for (&o, &n) in old.iter().zip(new) {
            if stays(o) {
                kept += 1;
                if o != n {
                    moved += 1;
                }
            }
        }
        moved as f64 / kept as f64
    }

    #[test]
    fn removing_a_backend_moves_few_other_entries() {
        for (n, weighted, bound) in [
            (3usize, false, 0.005),
            (10, false, 0.005),
            (100, false, 0.01),
            (100, true, 0.01),
            (1_000, false, 0.01),
        ] {
            let keys = keys(n);
            let all = backends(&keys, |i| if weighted { i as u32 % 5 + 1 } else { 1 });
            let before = build_table(&all, DEFAULT_TABLE_SIZE).unwrap();
            let mut worst = 0f64;
            let mut sum = 0f64;
            // Every backend of small sets, a spread of the larger ones.
            let stride = if n <= 10 {
                1
            } else if n <= 100 {
                7
            } else {
                331
            };
            let removed_list: Vec<usize> = (0..n).step_by(stride).collect();
            for &removed in &removed_list {
                let rest: Vec<MaglevBackend> = all
                    .iter()
                    .copied()
                    .filter(|b| b.slot != removed as u32)
                    .collect();
                let after = build_table(&rest, DEFAULT_TABLE_SIZE).unwrap();
                // Every entry of the removed backend moves, of course.
                assert!(after.iter().all(|&s| s != removed as u32));
                let d = disruption(&before, &after, |s| s != removed as u32);
                worst = worst.max(d);
                sum += d;
            }
            println!(
                "remove 1 of {n} (weighted: {weighted}): other entries moved, mean {:.3} %, worst {:.3} %",
                100.0 * sum / removed_list.len() as f64,
                100.0 * worst
            );
            assert!(worst <= bound, "n = {n}: {worst}");
        }
    }

    #[test]
    fn adding_a_backend_moves_its_share() {
        for n in [3usize, 10, 100, 1_000] {
            let keys = keys(n + 1);
            let all = backends(&keys, |_| 1);
            let before = build_table(&all[..n], DEFAULT_TABLE_SIZE).unwrap();
            let after = build_table(&all, DEFAULT_TABLE_SIZE).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let moved = moved as f64 / before.len() as f64;
            let to_new =
                after.iter().filter(|&&s| s == n as u32).count() as f64 / after.len() as f64;
            let ideal = 1.0 / (n as f64 + 1.0);
            // Entries that moved between backends that were there before.
            let d = disruption(&before, &after, |_| true) - to_new;
            println!(
                "add 1 to {n}: moved {:.3} % of entries, ideal {:.3} %, to the new one {:.3} %, \
                 between old ones {:.3} %",
                100.0 * moved,
                100.0 * ideal,
                100.0 * to_new,
                100.0 * d
            );
            assert!((to_new - ideal).abs() <= ideal * 0.03, "n = {n}: {to_new}");
            assert!(moved >= to_new);
            assert!(d <= 0.01, "n = {n}: {d}");
        }
    }

    #[test]
    fn changing_a_weight_moves_few_other_entries() {
        let keys = keys(10);
        let before = build_table(&backends(&keys, |_| 2), DEFAULT_TABLE_SIZE).unwrap();
        // Halve backend 4: it loses about half its entries to the others.
        let after = build_table(
            &backends(&keys, |i| if i == 4 { 1 } else { 2 }),
            DEFAULT_TABLE_SIZE,
        )
        .unwrap();
        let d = disruption(&before, &after, |s| s != 4);
        println!("halve 1 of 10: other entries moved {:.3} %", 100.0 * d);
        assert!(d <= 0.02, "{d}");
    }

    #[test]
    fn input_order_does_not_matter() {
        let keys = keys(50);
        let mut backends = backends(&keys, |i| i as u32 % 4);
        let expected = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
        let mut rng = Rng(1);
        for _ in 0..5 {
            rng.shuffle(&mut backends);
            assert_eq!(
                build_table(&backends, DEFAULT_TABLE_SIZE),
                Ok(expected.clone())
            );
        }
        backends.reverse();
        assert_eq!(build_table(&backends, DEFAULT_TABLE_SIZE), Ok(expected));
    }

    #[test]
    fn errors() {
        let keys = keys(3);
        let good = backends(&keys, |_| 1);
        for size in [0, 1, 2, 3, 5, 7, 65_539, 655_373, u32::MAX] {
            assert_eq!(
                build_table(&good, size),
                Err(MaglevError::SizeOutOfRange { size })
            );
        }
        for size in [12, 15, 65_535, 65_536, 1_000] {
            assert_eq!(
                build_table(&good, size),
                Err(MaglevError::SizeNotPrime { size })
            );
        }
        assert_eq!(build_table(&good[..1], 11), Ok(vec![0; 11]));
        assert_eq!(
            build_table(&good, MAX_TABLE_SIZE).map(|t| t.len()),
            Ok(65_537)
        );

        assert_eq!(build_table(&[], 11), Err(MaglevError::NoBackends));
        assert_eq!(
            build_table(&backends(&keys, |_| 0), 11),
            Err(MaglevError::NoBackends)
        );

        let mut dup = good.clone();
        dup.push(MaglevBackend {
            key: keys[1].as_bytes(),
            weight: 0,
            slot: 9,
        });
        assert_eq!(
            build_table(&dup, 31),
            Err(MaglevError::DuplicateKey {
                first: 1,
                second: 3
            })
        );

        // Three weighted backends need 30 entries; weight-0 backends do not count.
        assert_eq!(
            build_table(&good, 29),
            Err(MaglevError::TooManyBackends {
                backends: 3,
                size: 29
            })
        );
        assert_eq!(build_table(&good, 31).map(|t| t.len()), Ok(31));
        let many = self::keys(6_554);
        assert_eq!(
            build_table(&backends(&many, |_| 1), DEFAULT_TABLE_SIZE),
            Err(MaglevError::TooManyBackends {
                backends: 6_554,
                size: DEFAULT_TABLE_SIZE
            })
        );
        assert!(build_table(&backends(&many, |i| (i != 0) as u32), DEFAULT_TABLE_SIZE).is_ok());

        // Every error has a message.
        for error in [
            MaglevError::SizeOutOfRange { size: 3 },
            MaglevError::SizeNotPrime { size: 9 },
            MaglevError::DuplicateKey {
                first: 1,
                second: 3,
            },
            MaglevError::NoBackends,
            MaglevError::TooManyBackends {
                backends: 3,
                size: 29,
            },
        ] {
            assert!(!format!("{error}").is_empty());
        }
        assert_eq!(
            format!(
                "{}",
                MaglevError::TooManyBackends {
                    backends: 3,
                    size: 29
                }
            ),
            "3 backends need a Maglev table of at least 30 entries, not 29"
        );
    }

    #[test]
    fn builds_a_thousand_backends() {
        let keys = keys(1_000);
        let backends = backends(&keys, |i| i as u32 % 10 + 1);
        let start = std::time::Instant::now();
        let table = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
        println!("1,000 weighted backends: built in {:?}", start.elapsed());
        let counts = counts(&table, 1_000);
        assert!(counts.iter().all(|&c| c > 0));
        // Weights 1..=10 (total 5,500): 11.9 entries per unit of weight.
        let weights: Vec<u32> = (0..1_000).map(|i| i % 10 + 1).collect();
        assert_close_to_shares(&table, &weights);
    }

    #[test]
    fn builds_the_largest_sets() {
        let max = (DEFAULT_TABLE_SIZE / MIN_ENTRIES_PER_BACKEND) as usize;
        let keys = keys(max);
        type Shape = (&'static str, fn(usize) -> u32);
        let shapes: [Shape; 4] = [
            ("equal", |_| 1),
            ("one heavy", |i| if i == 0 { u32::MAX } else { 1 }),
            ("half heavy", |i| if i % 2 == 0 { 1_000 } else { 1 }),
            ("ramp", |i| i as u32 + 1),
        ];
        for (name, weight) in shapes {
            let backends = backends(&keys, weight);
            let start = std::time::Instant::now();
            let table = build_table(&backends, DEFAULT_TABLE_SIZE).unwrap();
            println!("{max} backends, {name}: built in {:?}", start.elapsed());
            let weights: Vec<u32> = (0..max).map(weight).collect();
            assert_close_to_shares(&table, &weights);
        }
    }

    #[test]
    fn a_tiny_weight_may_get_nothing_but_breaks_nothing() {
        let keys = keys(3);
        let weights = [u32::MAX, u32::MAX, 1];
        let table = build_table(&backends(&keys, |i| weights[i]), 31).unwrap();
        assert_eq!(table.len(), 31);
        let counts = counts(&table, 3);
        assert_eq!(counts[2], 0);
        assert!(counts[0].abs_diff(counts[1]) <= 1);
    }

    #[test]
    fn lookup_indexes_like_the_kernel() {
        assert_eq!(lookup(&[], 5), None);
        let table = [10, 11, 12, 13, 14, 15, 16];
        assert_eq!(lookup(&table, 0), Some(10));
        assert_eq!(lookup(&table, u64::MAX), Some(16));
        assert_eq!(lookup(&table, 3 << 61), Some(table[2]));
    }

    /// Random backend sets: tables are full, hold only weighted backends, are proportional
    /// up to one entry per backend, and do not depend on the input order; a random removal
    /// moves few other entries.
    #[test]
    fn random_backend_sets() {
        let mut rng = Rng(0x5eed);
        let sizes = [11, 31, 101, 1_009, 10_007, DEFAULT_TABLE_SIZE];
        for round in 0..60 {
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            let max_n = (size / MIN_ENTRIES_PER_BACKEND) as u64;
            let n = (rng.below(max_n.min(300)) + 1) as usize;
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    // Random bytes of random length, made unique by the index.
                    let len = rng.below(40) as usize;
                    let mut key: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    key.extend_from_slice(&(i as u32).to_le_bytes());
                    key
                })
                .collect();
            let weights: Vec<u32> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => 1,
                    2 => rng.below(100) as u32 + 1,
                    _ => rng.next() as u32 | 1,
                })
                .collect();
            let mut backends: Vec<MaglevBackend> = keys
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(i, (key, &weight))| MaglevBackend {
                    key,
                    weight,
                    slot: i as u32,
                })
                .collect();
            let result = build_table(&backends, size);
            if weights.iter().all(|&w| w == 0) {
                assert_eq!(result, Err(MaglevError::NoBackends));
                continue;
            }
            let table = result.unwrap();
            assert_eq!(table.len(), size as usize, "round {round}");
            assert_close_to_shares(&table, &weights);
            rng.shuffle(&mut backends);
            assert_eq!(build_table(&backends, size).as_ref(), Ok(&table));

            if size >= 10_007 && n >= 3 {
                let removed = rng.below(n as u64) as u32;
                let rest: Vec<MaglevBackend> = backends
                    .iter()
                    .copied()
                    .filter(|b| b.slot != removed)
                    .collect();
                if let Ok(after) = build_table(&rest, size) {
                    let d = disruption(&table, &after, |s| s != removed);
                    assert!(d <= 0.03, "round {round}: {d}");
                }
            }
        }
    }
}
