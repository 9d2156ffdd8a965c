//! The Maglev builder on arbitrary backends, weights and sizes: never a panic, and a
//! table it builds has `size` entries, each the slot of a backend with weight.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipxdp_common::maglev::{MaglevBackend, build_table};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Small sizes keep runs fast; the size need not be valid.
    let size = 11 + u32::from(selector) * 7;
    let backends: Vec<MaglevBackend> = rest
        .chunks(4)
        .enumerate()
        .map(|(slot, chunk)| MaglevBackend {
            key: chunk,
            weight: u32::from(chunk[0] % 4),
            slot: slot as u32,
        })
        .collect();
    if let Ok(table) = build_table(&backends, size) {
        assert_eq!(table.len(), size as usize);
        for slot in table {
            assert!(
                backends
                    .iter()
                    .any(|backend| backend.slot == slot && backend.weight > 0)
            );
        }
    }
});
