#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]
use aya_ebpf::{bindings::xdp_action, macros::{xdp, btf_map}, programs::XdpContext, btf_maps::{Array, PerCpuArray}};
use sipxdp_common::{callid::{locate, KernelLimits}, payload::Payload, swar::keep_bytes};

#[btf_map]
static RESULT: Array<u64, 4> = Array::new();

struct PacketPayload { start: usize, end: usize, len: usize, scratch: *mut u64, tail: *mut [u64; 9] }

#[btf_map]
static SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();
#[btf_map]
static TAIL: PerCpuArray<[u64; 9], 1> = PerCpuArray::new();

impl PacketPayload {
    #[inline(always)]
    fn tail_word(&self, at: usize, len: usize) -> u64 {
        // offset of `at` in the tail copy, which starts 32 bytes before the payload end
        let off = (at + 32 - len) & 63;
        unsafe { ((self.tail as *const u8).add(off) as *const u64).read_unaligned() }
    }
}

impl Payload for PacketPayload {
    #[inline(always)]
    fn len(&self) -> usize { unlink(self.len) }
    #[inline(always)]
    fn block(&self, at: usize) -> [u64; 4] {
        let at = unlink(at);
        let len = unlink(self.len);
        if at + 32 <= len {
            let p = launder(self.start + at);
            if p + 32 <= self.end {
                let p = p as *const u64;
                return unsafe { [p.read_unaligned(), p.add(1).read_unaligned(), p.add(2).read_unaligned(), p.add(3).read_unaligned()] };
            }
        }
        [self.tail_word(at, len), self.tail_word(at + 8, len), self.tail_word(at + 16, len), self.tail_word(at + 24, len)]
    }
    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        unsafe { core::ptr::write_volatile(self.scratch, value as u64); core::ptr::read_volatile(self.scratch) as usize }
    }
    #[inline(always)]
    fn detach(&self, value: usize) -> usize { unlink(value) }
    #[inline(always)]
    fn word(&self, at: usize) -> u64 {
        let at = unlink(at);
        let len = unlink(self.len);
        if at + 8 <= len {
            let p = launder(self.start + at);
            if p + 8 <= self.end {
                return unsafe { (p as *const u64).read_unaligned() };
            }
        }
        self.tail_word(at, len)
    }
}

/// `x & 0xffff` in a way that neither LLVM nor the verifier links to `x`: comparisons on
/// the result refine only the result.
#[inline(always)]
fn unlink(mut x: usize) -> usize {
    unsafe { core::arch::asm!("{0} &= 0x3fff", inout(reg) x, options(nomem, nostack, preserves_flags)) };
    x
}

#[inline(always)]
fn launder(mut x: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) x, options(nomem, nostack, preserves_flags)) };
    x
}

#[xdp]
pub fn sipxdp(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + 42 > end { return xdp_action::XDP_PASS; }
    let udp_len = u16::from_be(unsafe { *((start + 38) as *const u16) }) as usize;
    if udp_len < 8 { return xdp_action::XDP_PASS; }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return xdp_action::XDP_PASS };
    let len = udp_len - 8;
    if len > 4096 { return xdp_action::XDP_PASS; }
    let tp = launder(start + 42 - 32 + len);
    if tp + 32 > end { return xdp_action::XDP_PASS; }
    let tp = tp as *const u64;
    let Some(tail) = TAIL.get_ptr_mut(0) else { return xdp_action::XDP_PASS };
    unsafe {
        let t = tail as *mut u64;
        for i in 0..4 { core::ptr::write_volatile(t.add(i), tp.add(i).read_unaligned()); }
        for i in 4..9 { core::ptr::write_volatile(t.add(i), 0); }
    }
    let mut payload = PacketPayload { start: start + 42, end, len, scratch, tail };
    payload.len = payload.opaque(len);
    match locate::<_, KernelLimits>(&payload, 0) {
        Ok(c) => {
            if let Some(slot) = RESULT.get_ptr_mut(0) { unsafe { *slot = c.hash } }
            if let Some(slot) = RESULT.get_ptr_mut(1) { unsafe { *slot = c.start as u64 } }
            xdp_action::XDP_TX
        }
        Err(r) => {
            if let Some(slot) = RESULT.get_ptr_mut(2) { unsafe { *slot = r as u64 } }
            xdp_action::XDP_PASS
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
