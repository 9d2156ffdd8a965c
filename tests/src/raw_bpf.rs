//! The few `bpf(2)` commands the benchmarks issue themselves, and an assembler for the
//! tiny XDP programs they load: the reference program ([`crate::reference_xdp`]) and the
//! end-to-end lab's traffic generator and sinks ([`crate::xdp_traffic`]).
//!
//! These programs are a handful of instructions each and exist only for measuring, so
//! they are assembled here rather than built into the product's object file.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `bpf_attr` is a union of at most 160 bytes in the kernels this targets; the kernel
/// accepts a larger, zero-filled buffer.
const ATTR_SIZE: usize = 160;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_DEVMAP: u32 = 14;
/// `BPF_XDP`, the attach type of an XDP link (kernel 5.9).
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (kernel 5.18): frames the program returns `XDP_TX` or
/// `XDP_REDIRECT` for are really sent.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// XDP return codes.
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_TX: i32 = 3;

/// Helper function numbers (`enum bpf_func_id`).
pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
pub const HELPER_GET_PRANDOM_U32: i32 = 7;
pub const HELPER_REDIRECT_MAP: i32 = 51;

/// A failed `bpf(2)` command, named.
#[derive(Debug, thiserror::Error)]
#[error("{command}")]
pub struct BpfError {
    command: String,
    #[source]
    source: io::Error,
}

fn put(attr: &mut [u8; ATTR_SIZE], offset: usize, value: &[u8]) {
    attr[offset..offset + value.len()].copy_from_slice(value);
}

fn word(attr: &[u8; ATTR_SIZE], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&attr[offset..offset + 4]);
    u32::from_ne_bytes(bytes)
}

/// Calls `bpf(cmd, attr)`; `what` names the command in the error.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE], what: &str) -> Result<i64, BpfError> {
    // SAFETY: `attr` is a writable buffer of ATTR_SIZE bytes whose pointers, set by the
    // callers, point to memory that outlives the call.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE) };
    if result < 0 {
        Err(BpfError {
            command: what.to_owned(),
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(result)
    }
}

/// `bpf` for the commands that return a new file descriptor.
fn bpf_fd(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE], what: &str) -> Result<OwnedFd, BpfError> {
    let fd = bpf(cmd, attr, what)?;
    // SAFETY: the command returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A register, `r0` to `r10`.
#[derive(Clone, Copy, Debug)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R10: Reg = Reg(10);

/// Memory access sizes (`BPF_SIZE`).
#[derive(Clone, Copy, Debug)]
pub enum Size {
    Byte = 0x10,
    Half = 0x08,
    Word = 0x00,
    Double = 0x18,
}

/// A program under construction: eBPF instructions, 8 bytes each, with jumps to labels
/// resolved when [`Asm::finish`] is called.
#[derive(Debug, Default)]
pub struct Asm {
    code: Vec<[u8; 8]>,
    /// (instruction index, label) of each jump.
    jumps: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn push(&mut self, opcode: u8, dst: Reg, src: Reg, offset: i16, imm: i32) -> &mut Self {
        let mut insn = [0u8; 8];
        insn[0] = opcode;
        insn[1] = (src.0 << 4) | dst.0;
        insn[2..4].copy_from_slice(&offset.to_le_bytes());
        insn[4..8].copy_from_slice(&imm.to_le_bytes());
        self.code.push(insn);
        self
    }

    /// `dst = imm`.
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(0xb7, dst, R0, 0, imm)
    }

    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(0xbf, dst, src, 0, 0)
    }

    /// `dst += imm`.
    pub fn add_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(0x07, dst, R0, 0, imm)
    }

    /// `dst &= imm`.
    pub fn and_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(0x57, dst, R0, 0, imm)
    }

    /// `dst %= imm` (unsigned).
    pub fn mod_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(0x97, dst, R0, 0, imm)
    }

    /// `dst >>= imm` (logical).
    pub fn rsh_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(0x77, dst, R0, 0, imm)
    }

    /// `dst = *(size *)(src + offset)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, offset: i16) -> &mut Self {
        self.push(0x61 | size as u8, dst, src, offset, 0)
    }

    /// `*(size *)(dst + offset) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, offset: i16, src: Reg) -> &mut Self {
        self.push(0x63 | size as u8, dst, src, offset, 0)
    }

    /// `*(size *)(dst + offset) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, offset: i16, imm: i32) -> &mut Self {
        self.push(0x62 | size as u8, dst, R0, offset, imm)
    }

    /// `dst = map` (the map's file descriptor, turned into its address at load time).
    pub fn load_map(&mut self, dst: Reg, map: &OwnedFd) -> &mut Self {
        // `BPF_LD | BPF_IMM | BPF_DW` with `BPF_PSEUDO_MAP_FD` as the source, then the
        // second half of the 16-byte instruction (the upper 32 bits, zero).
        self.push(0x18, dst, Reg(1), 0, map.as_raw_fd());
        self.push(0, R0, R0, 0, 0)
    }

    /// `goto label if dst > src` (unsigned).
    pub fn jump_gt(&mut self, dst: Reg, src: Reg, label: &'static str) -> &mut Self {
        self.jumps.push((self.code.len(), label));
        self.push(0x2d, dst, src, 0, 0)
    }

    /// `goto label if dst != imm`.
    pub fn jump_ne_imm(&mut self, dst: Reg, imm: i32, label: &'static str) -> &mut Self {
        self.jumps.push((self.code.len(), label));
        self.push(0x55, dst, R0, 0, imm)
    }

    /// `goto label if dst == imm`.
    pub fn jump_eq_imm(&mut self, dst: Reg, imm: i32, label: &'static str) -> &mut Self {
        self.jumps.push((self.code.len(), label));
        self.push(0x15, dst, R0, 0, imm)
    }

    /// Calls helper `helper`.
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(0x85, R0, R0, 0, helper)
    }

    /// Returns `r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(0x95, R0, R0, 0, 0)
    }

    /// `return code`.
    pub fn ret(&mut self, code: i32) -> &mut Self {
        self.mov_imm(R0, code).exit()
    }

    /// Names the next instruction.
    pub fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.code.len()));
        self
    }

    /// The program's instructions, jumps resolved.
    ///
    /// # Panics
    ///
    /// A jump to a label that was never placed: a bug in the program's source.
    pub fn finish(&self) -> Vec<[u8; 8]> {
        let mut code = self.code.clone();
        for &(at, label) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(name, _)| *name == label)
                .map(|&(_, index)| index)
                .unwrap_or_else(|| panic!("no label {label}"));
            let offset = i16::try_from(target as isize - at as isize - 1).expect("a short jump");
            code[at][2..4].copy_from_slice(&offset.to_le_bytes());
        }
        code
    }
}

/// Loads an XDP program named `name` (at most 15 bytes).
///
/// # Errors
///
/// The kernel refused it, or the caller lacks CAP_BPF + CAP_NET_ADMIN.
pub fn load_xdp(name: &str, program: &[[u8; 8]]) -> Result<OwnedFd, BpfError> {
    let license = c"GPL";
    let mut log = vec![0u8; 65_536];
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, &BPF_PROG_TYPE_XDP.to_ne_bytes());
    put(&mut attr, 4, &(program.len() as u32).to_ne_bytes());
    put(&mut attr, 8, &(program.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 24, &1u32.to_ne_bytes());
    put(&mut attr, 28, &(log.len() as u32).to_ne_bytes());
    put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_ne_bytes());
    let name_bytes = &name.as_bytes()[..name.len().min(15)];
    put(&mut attr, 48, name_bytes);
    bpf_fd(BPF_PROG_LOAD, &mut attr, "").map_err(|error| {
        let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
        BpfError {
            command: format!(
                "loading the XDP program {name}: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            ),
            source: error.source,
        }
    })
}

/// Creates a map of `kind` with 4-byte keys, `value_size`-byte values and `entries`
/// entries, named `name` (at most 15 bytes).
fn create_map(kind: u32, value_size: u32, entries: u32, name: &str) -> Result<OwnedFd, BpfError> {
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, &kind.to_ne_bytes());
    put(&mut attr, 4, &4u32.to_ne_bytes());
    put(&mut attr, 8, &value_size.to_ne_bytes());
    put(&mut attr, 12, &entries.to_ne_bytes());
    put(&mut attr, 28, &name.as_bytes()[..name.len().min(15)]);
    bpf_fd(
        BPF_MAP_CREATE,
        &mut attr,
        &format!("creating the map {name}"),
    )
}

/// A per-CPU array of `entries` 64-bit counters named `name` (at most 15 bytes).
///
/// # Errors
///
/// The kernel refused to create it.
pub fn create_counters(name: &str, entries: u32) -> Result<OwnedFd, BpfError> {
    create_map(BPF_MAP_TYPE_PERCPU_ARRAY, 8, entries, name)
}

/// A device map (kernel 4.14) whose entry `n` redirects to `ifindexes[n]`. Must run in
/// the interfaces' network namespace.
///
/// # Errors
///
/// The kernel refused the map or an entry.
pub fn create_devmap(name: &str, ifindexes: &[u32]) -> Result<OwnedFd, BpfError> {
    let map = create_map(BPF_MAP_TYPE_DEVMAP, 4, ifindexes.len() as u32, name)?;
    for (index, ifindex) in ifindexes.iter().enumerate() {
        let key = index as u32;
        let mut attr = [0u8; ATTR_SIZE];
        put(&mut attr, 0, &(map.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 8, &(&key as *const u32 as u64).to_ne_bytes());
        put(&mut attr, 16, &(ifindex as *const u32 as u64).to_ne_bytes());
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &mut attr,
            &format!("adding interface {ifindex} to {name}"),
        )?;
    }
    Ok(map)
}

/// The sum over all CPUs of counter `index` of a map from [`create_counters`].
///
/// # Errors
///
/// The lookup failed or the number of CPUs is unknown.
pub fn read_counter(map: &OwnedFd, index: u32) -> Result<u64, BpfError> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let possible = possible_cpus().unwrap_or(cpus).max(cpus);
    let mut values = vec![0u64; possible];
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, &(map.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 8, &(&index as *const u32 as u64).to_ne_bytes());
    put(&mut attr, 16, &(values.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr, "reading a counter")?;
    Ok(values.iter().sum())
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, "0-N"), which sizes
/// a per-CPU map value.
fn possible_cpus() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    let last = text.trim().rsplit(['-', ',']).next()?;
    Some(last.parse::<usize>().ok()? + 1)
}

/// Attaches `program` to the interface `ifindex` in native (driver) mode, through a link
/// that detaches it when dropped. Must run in the interface's network namespace.
///
/// # Errors
///
/// The driver has no native XDP, or something else is attached.
pub fn attach_native(program: &OwnedFd, ifindex: u32) -> Result<OwnedFd, BpfError> {
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, &(program.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 4, &ifindex.to_ne_bytes());
    put(&mut attr, 8, &BPF_XDP.to_ne_bytes());
    put(&mut attr, 12, &XDP_FLAGS_DRV_MODE.to_ne_bytes());
    bpf_fd(
        BPF_LINK_CREATE,
        &mut attr,
        &format!("attaching an XDP program to interface {ifindex} in driver mode"),
    )
}

/// What a [`test_run`] returned: the program's action and the kernel's mean time per
/// run in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct TestRun {
    pub action: u32,
    pub duration_ns: u32,
}

/// The `BPF_PROG_TEST_RUN` attributes that run `program` `repeat` times on `frame`.
fn test_run_attr(program: &OwnedFd, frame: &[u8], repeat: u32) -> [u8; ATTR_SIZE] {
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, &(program.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 8, &(frame.len() as u32).to_ne_bytes());
    put(&mut attr, 16, &(frame.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 32, &repeat.to_ne_bytes());
    attr
}

/// Runs `program` `repeat` times on `frame` (`BPF_PROG_TEST_RUN`, kernel 4.12).
///
/// # Errors
///
/// The kernel refused the run.
pub fn test_run(program: &OwnedFd, frame: &[u8], repeat: u32) -> Result<TestRun, BpfError> {
    let mut attr = test_run_attr(program, frame, repeat);
    bpf(BPF_PROG_TEST_RUN, &mut attr, "BPF_PROG_TEST_RUN")?;
    Ok(TestRun {
        action: word(&attr, 4),
        duration_ns: word(&attr, 36),
    })
}

/// Runs `program` on `count` copies of `frame` as if they had arrived on `ifindex`, and
/// sends those it returns `XDP_TX` for out of `ifindex` (live frames, kernel 5.18). Must
/// run in the interface's network namespace.
///
/// # Errors
///
/// The kernel refused the run (no such interface, a frame too large for a page).
pub fn send_live(
    program: &OwnedFd,
    frame: &[u8],
    ifindex: u32,
    count: u32,
) -> Result<(), BpfError> {
    // `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. The kernel wants `data_end` equal to the frame's length.
    let mut context = [0u32; 6];
    context[1] = frame.len() as u32;
    context[3] = ifindex;
    let mut attr = test_run_attr(program, frame, count);
    put(&mut attr, 40, &(size_of_val(&context) as u32).to_ne_bytes());
    put(&mut attr, 48, &(context.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 64, &BPF_F_TEST_XDP_LIVE_FRAMES.to_ne_bytes());
    bpf(
        BPF_PROG_TEST_RUN,
        &mut attr,
        &format!("sending live frames out of interface {ifindex}"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let program = Asm::default()
            .jump_eq_imm(R1, 0, "out")
            .mov_imm(R0, 7)
            .load_map_placeholder()
            .label("out")
            .ret(XDP_PASS)
            .finish();
        // The jump skips the move and the two halves of the 16-byte load.
        assert_eq!(i16::from_le_bytes([program[0][2], program[0][3]]), 3);
        assert_eq!(program[0][0], 0x15);
        assert_eq!(program.len(), 6);
        assert_eq!(program[5][0], 0x95);
    }

    #[test]
    #[should_panic(expected = "no label missing")]
    fn a_jump_to_nowhere_is_a_bug() {
        Asm::default().jump_gt(R1, R2, "missing").finish();
    }

    impl Asm {
        fn load_map_placeholder(&mut self) -> &mut Self {
            self.push(0x18, R1, Reg(1), 0, 0);
            self.push(0, R0, R0, 0, 0)
        }
    }
}
