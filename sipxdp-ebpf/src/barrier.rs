//! Tiny inline-assembly barriers that shape what LLVM emits and what the verifier infers.
//!
//! LLVM is free to re-derive a pointer after its bounds check, or to fold a check into a
//! form the verifier cannot use; and the verifier links registers that are copies of each
//! other, so a comparison on one refines all of them. Both lead to programs that are
//! correct yet rejected, or verified path by path at great cost. These barriers are one
//! BPF instruction each and the only `asm!` in the program.

/// `value & 0x3fff`, computed by an instruction neither LLVM nor the verifier relates to
/// `value`: comparisons on the result refine only the result.
///
/// Payload offsets and lengths are below 16,384: frames larger than that do not reach XDP
/// in one buffer.
#[inline(always)]
pub fn detach(mut value: usize) -> usize {
    // SAFETY: a register-only ALU instruction.
    unsafe {
        core::arch::asm!("{0} &= 0x3fff", inout(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// `value`, hidden from LLVM: the bounds check and the load that follow use this very
/// register, so LLVM cannot re-derive the address in a way the check does not cover.
#[inline(always)]
pub fn pin(mut value: usize) -> usize {
    // SAFETY: a register move.
    unsafe {
        core::arch::asm!("{0} = {0}", inout(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}
