//! The Call-ID locator and hash on arbitrary payloads, with the kernel's limits and the
//! slow path's: never a panic, a found value lies inside the payload and hashes as its
//! bytes do, and whatever the kernel's limits place, the slow path's place the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipxdp_common::{
    callid::{KernelLimits, MessageLimits, locate},
    hash::xxh64_bytes,
    payload::SlicePayload,
};

const SEED: u64 = 0x5eed;

fuzz_target!(|payload: &[u8]| {
    let kernel = locate::<_, KernelLimits>(&SlicePayload(payload), SEED);
    let whole = locate::<_, MessageLimits>(&SlicePayload(payload), SEED);
    for found in [&kernel, &whole].into_iter().flatten() {
        let value = &payload[found.start..found.start + found.len];
        assert!(!value.is_empty());
        assert_eq!(found.hash, xxh64_bytes(value, SEED));
    }
    if let Ok(found) = kernel {
        assert_eq!(whole.map(|whole| whole.hash), Ok(found.hash));
    }
});
