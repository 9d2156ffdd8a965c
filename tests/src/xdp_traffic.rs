//! Traffic at the rates of native XDP for the end-to-end benchmark: a generator that
//! sends SIP datagrams with `BPF_PROG_TEST_RUN` in live-frames mode (the kernel's own XDP
//! traffic generator, kernel 5.18), and sinks on the backends that count them in XDP and
//! drop them.
//!
//! A sending socket tops out at tens of thousands of datagrams a second here, and a
//! receiving socket at about the same: both far below what an XDP program forwards. The
//! generator hands frames straight to the veth driver, and the sinks take them off it
//! before the network stack sees them, so the path between them is what is measured.

use std::os::fd::OwnedFd;

use crate::{
    Veth,
    link::LinkError,
    netns::{Netns, NetnsError},
    raw_bpf::{
        self, Asm, BpfError, HELPER_GET_PRANDOM_U32, HELPER_MAP_LOOKUP_ELEM, R0, R1, R2, R3, R4,
        R5, R6, R10, Size, XDP_DROP, XDP_PASS, XDP_TX,
    },
};

/// Errors of the generator and the sinks.
#[derive(Debug, thiserror::Error)]
pub enum XdpTrafficError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("a sink counts on at most {0} interfaces")]
    SinkFull(u32),
    #[error("the Call-ID of the generator's frame must start at least 42 bytes in, not at {0}")]
    CallIdOffset(usize),
}

/// Letters of each frame's Call-ID the generator rewrites: 16 random bits, 4 per letter,
/// so the frames carry 65,536 distinct Call-IDs.
const RANDOM_LETTERS: usize = 4;

/// Sends copies of one IPv4/UDP frame out of an interface, each with fresh random
/// letters at the start of its Call-ID.
#[derive(Debug)]
pub struct Generator {
    program: OwnedFd,
    frame: Vec<u8>,
    /// The program attached to an idle veth of its own, which keeps it in the kernel's
    /// XDP dispatcher: otherwise every run of more than one frame adds it there and
    /// removes it again, each time waiting for an RCU grace period (about 15 ms here,
    /// under a lock all senders share).
    _dispatched: (OwnedFd, Veth),
}

impl Generator {
    /// A generator of `frame` for interfaces in `netns`; the frame's Call-ID value starts
    /// at byte `call_id_at` and is at least [`RANDOM_LETTERS`] long. Its UDP checksum
    /// should be zero (none): the letters change with every frame.
    ///
    /// # Errors
    ///
    /// The Call-ID lies within the headers, or the kernel refused the program or its
    /// idle veth.
    pub fn load(netns: &Netns, frame: Vec<u8>, call_id_at: usize) -> Result<Self, XdpTrafficError> {
        let at = i16::try_from(call_id_at)
            .ok()
            .filter(|&at| at >= 42)
            .ok_or(XdpTrafficError::CallIdOffset(call_id_at))?;
        let mut asm = Asm::default();
        asm.mov(R6, R1)
            .call(HELPER_GET_PRANDOM_U32)
            .load(Size::Word, R2, R6, 0)
            .load(Size::Word, R3, R6, 4)
            .mov(R4, R2)
            .add_imm(R4, i32::from(at) + RANDOM_LETTERS as i32)
            .jump_gt(R4, R3, "send");
        for letter in 0..RANDOM_LETTERS {
            asm.mov(R5, R0)
                .rsh_imm(R5, 4 * letter as i32)
                .and_imm(R5, 0xf)
                .add_imm(R5, i32::from(b'a'))
                .store(Size::Byte, R2, at + letter as i16, R5);
        }
        asm.label("send").ret(XDP_TX);
        let program = raw_bpf::load_xdp("sipxdp_gen", &asm.finish())?;
        let idle = Veth::new(netns, netns, None, None)?;
        let ifindex = idle.a().ifindex()?;
        let link = netns.enter_thread(|| raw_bpf::attach_native(&program, ifindex))??;
        Ok(Self {
            program,
            frame,
            _dispatched: (link, idle),
        })
    }

    /// Sends `count` frames out of `ifindex`; returns when the kernel has handed the
    /// last one to the driver. Must run on a thread in the interface's namespace
    /// ([`Netns::enter_thread`]).
    ///
    /// # Errors
    ///
    /// The kernel refused the run.
    pub fn send(&self, ifindex: u32, count: u32) -> Result<(), XdpTrafficError> {
        Ok(raw_bpf::send_live(
            &self.program,
            &self.frame,
            ifindex,
            count,
        )?)
    }
}

/// Counts, on each interface it is attached to, the IPv4 UDP datagrams to one port
/// (first fragments only, so that a fragmented datagram counts once) and drops every
/// IPv4 frame; anything else goes to the stack.
#[derive(Debug)]
pub struct Sink {
    port: u16,
    counters: OwnedFd,
    /// One program and link per interface, in the order attached.
    attached: Vec<(OwnedFd, OwnedFd)>,
}

/// Interfaces one [`Sink`] can count on.
const SINK_INTERFACES: u32 = 16;

impl Sink {
    /// A sink for datagrams to `port`, not attached anywhere yet.
    ///
    /// # Errors
    ///
    /// The kernel refused the counters' map.
    pub fn new(port: u16) -> Result<Self, XdpTrafficError> {
        Ok(Self {
            port,
            counters: raw_bpf::create_counters("sipxdp_sink", SINK_INTERFACES)?,
            attached: Vec::new(),
        })
    }

    /// The program for the interface counted at `index`.
    fn program(&self, index: u32) -> Result<OwnedFd, XdpTrafficError> {
        let mut asm = Asm::default();
        // 14 bytes of Ethernet, 20 of IPv4 without options, 4 of the UDP header.
        asm.load(Size::Word, R2, R1, 0)
            .load(Size::Word, R3, R1, 4)
            .mov(R4, R2)
            .add_imm(R4, 38)
            .jump_gt(R4, R3, "pass")
            // Loads are little-endian: 0x0800 reads as 0x0008.
            .load(Size::Half, R5, R2, 12)
            .jump_ne_imm(R5, 0x0008, "pass")
            .load(Size::Byte, R5, R2, 14)
            .jump_ne_imm(R5, 0x45, "drop")
            .load(Size::Byte, R5, R2, 23)
            .jump_ne_imm(R5, 17, "drop")
            // The 13-bit fragment offset: the low 5 bits of byte 20 and byte 21.
            .load(Size::Half, R5, R2, 20)
            .and_imm(R5, 0xff1f)
            .jump_ne_imm(R5, 0, "drop")
            .load(Size::Half, R5, R2, 36)
            .jump_ne_imm(R5, i32::from(self.port.swap_bytes()), "drop")
            .store_imm(Size::Word, R10, -4, index as i32)
            .mov(R2, R10)
            .add_imm(R2, -4)
            .load_map(R1, &self.counters)
            .call(HELPER_MAP_LOOKUP_ELEM)
            .jump_eq_imm(R0, 0, "drop")
            .load(Size::Double, R1, R0, 0)
            .add_imm(R1, 1)
            .store(Size::Double, R0, 0, R1)
            .label("drop")
            .ret(XDP_DROP)
            .label("pass")
            .ret(XDP_PASS);
        Ok(raw_bpf::load_xdp("sipxdp_sink", &asm.finish())?)
    }

    /// Attaches the sink to `ifindex` in `netns`, in native mode, until it is dropped;
    /// [`Sink::received_at`] counts it under the number of interfaces attached before.
    ///
    /// # Errors
    ///
    /// The sink is on [`SINK_INTERFACES`] already, the interface has no native XDP or
    /// already has a program.
    pub fn attach(&mut self, netns: &Netns, ifindex: u32) -> Result<(), XdpTrafficError> {
        let index = self.attached.len() as u32;
        if index == SINK_INTERFACES {
            return Err(XdpTrafficError::SinkFull(SINK_INTERFACES));
        }
        let program = self.program(index)?;
        let link = netns.enter_thread(|| raw_bpf::attach_native(&program, ifindex))??;
        self.attached.push((program, link));
        Ok(())
    }

    /// The datagrams counted so far on the interface attached as `index`.
    ///
    /// # Errors
    ///
    /// Reading the counter failed.
    pub fn received_at(&self, index: usize) -> Result<u64, XdpTrafficError> {
        Ok(raw_bpf::read_counter(&self.counters, index as u32)?)
    }

    /// The datagrams counted so far on all interfaces.
    ///
    /// # Errors
    ///
    /// Reading a counter failed.
    pub fn received(&self) -> Result<u64, XdpTrafficError> {
        (0..self.attached.len())
            .map(|index| self.received_at(index))
            .sum()
    }
}
