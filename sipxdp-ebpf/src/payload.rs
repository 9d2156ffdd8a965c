//! The UDP payload as the Call-ID scanner reads it: words straight from packet memory.

use sipxdp_common::payload::Payload;

use crate::barrier::{detach, pin};

/// Words of the per-CPU scratch entry: word 0 hides values (see [`Payload::opaque`]),
/// words 1..=4 hold the payload's last 32 bytes and words 5..=9 stay zero, so that a read
/// up to 32 bytes past the payload end sees zeroes, as the slice view in userspace does.
pub const SCRATCH_WORDS: usize = 10;

/// A UDP payload inside the current frame.
pub struct PacketPayload {
    /// Address of the first payload byte.
    start: usize,
    /// `data_end` of the frame.
    end: usize,
    /// Payload bytes, hidden from the verifier (use through [`detach`]).
    len: usize,
    /// The per-CPU scratch entry.
    scratch: *mut u64,
}

impl PacketPayload {
    /// A view of the `len` payload bytes at frame offset `offset`, which the caller has
    /// checked lie inside the frame and after at least 32 bytes of headers. `None` if the
    /// frame is shorter than that after all.
    #[inline(always)]
    pub fn new(
        data: usize,
        end: usize,
        offset: usize,
        len: usize,
        scratch: *mut u64,
    ) -> Option<Self> {
        // Hidden (see `Payload::opaque`): each family, tag count and fragment position
        // gives the payload another known offset, and the verifier would check the scan
        // once per offset.
        let hidden = |value: usize| {
            // SAFETY: word 0 of the scratch entry, as in `opaque`.
            unsafe {
                core::ptr::write_volatile(scratch, value as u64);
                core::ptr::read_volatile(scratch) as usize
            }
        };
        let offset = detach(hidden(offset));
        let len = detach(hidden(len));
        // Computed as one offset from `data`: a pointer with a negative constant part gets
        // no range from the bounds check below.
        let tail = pin(data + detach(offset + len - 32));
        if tail + 32 > end {
            return None;
        }
        let tail = tail as *const u64;
        // SAFETY: `tail..tail + 32` was checked against the frame end just above, and
        // `scratch` points to a `[u64; SCRATCH_WORDS]` map value.
        unsafe {
            for word in 0..4 {
                core::ptr::write_volatile(scratch.add(1 + word), tail.add(word).read_unaligned());
            }
            for word in 5..SCRATCH_WORDS {
                core::ptr::write_volatile(scratch.add(word), 0);
            }
        }
        Some(Self {
            start: data + offset,
            end,
            len: hidden(len),
            scratch,
        })
    }

    /// The word at payload offset `at`, for `at` within 32 bytes below or above the end.
    #[inline(always)]
    fn tail_word(&self, at: usize, len: usize) -> u64 {
        let offset = (at + 32 - len) & 63;
        // SAFETY: bytes 8..80 of the scratch entry; `offset + 8 <= 71`.
        unsafe { ((self.scratch as *const u8).add(8 + offset) as *const u64).read_unaligned() }
    }
}

impl Payload for PacketPayload {
    #[inline(always)]
    fn len(&self) -> usize {
        detach(self.len)
    }

    #[inline(always)]
    fn word(&self, at: usize) -> u64 {
        let at = detach(at);
        let len = detach(self.len);
        if at + 8 <= len {
            let word = pin(self.start + at);
            if word + 8 <= self.end {
                // SAFETY: checked against the frame end just above.
                return unsafe { (word as *const u64).read_unaligned() };
            }
        }
        self.tail_word(at, len)
    }

    #[inline(always)]
    fn block(&self, at: usize) -> [u64; 4] {
        let at = detach(at);
        let len = detach(self.len);
        if at + 32 <= len {
            let block = pin(self.start + at);
            if block + 32 <= self.end {
                let block = block as *const u64;
                // SAFETY: checked against the frame end just above.
                return unsafe {
                    [
                        block.read_unaligned(),
                        block.add(1).read_unaligned(),
                        block.add(2).read_unaligned(),
                        block.add(3).read_unaligned(),
                    ]
                };
            }
        }
        [
            self.tail_word(at, len),
            self.tail_word(at + 8, len),
            self.tail_word(at + 16, len),
            self.tail_word(at + 24, len),
        ]
    }

    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        // SAFETY: word 0 of the scratch entry. Volatile, so that neither the store nor the
        // load can be optimised away: the load is what the verifier cannot see through.
        unsafe {
            core::ptr::write_volatile(self.scratch, value as u64);
            core::ptr::read_volatile(self.scratch) as usize
        }
    }

    #[inline(always)]
    fn detach(&self, value: usize) -> usize {
        detach(value)
    }
}
