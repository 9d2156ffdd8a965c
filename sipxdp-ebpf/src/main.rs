//! The sipxdp XDP program: steers SIP-over-UDP datagrams sent to a VIP to one backend
//! chosen by the hash of their Call-ID, by direct server return, and passes everything it
//! cannot place to the kernel stack. See `docs/architecture.md`.
#![no_std]
#![no_main]
// Inline assembly on the BPF target is still unstable; `barrier` uses two instructions.
#![feature(asm_experimental_arch)]

mod barrier;
mod flood;
mod maps;
mod nat;
mod packet;
mod payload;
mod steer;

use aya_ebpf::{macros::xdp, programs::XdpContext};

#[xdp]
pub fn sipxdp(ctx: XdpContext) -> u32 {
    steer::steer(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: nothing in the program can panic, and the verifier would reject a
    // program whose code reaches this loop.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
