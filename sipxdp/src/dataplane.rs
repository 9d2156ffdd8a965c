//! The loaded kernel program and its maps: the only module that talks to aya.

use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, xdp::DevMapHash},
    programs::{
        ProgramError, TestRun, TestRunOptions, Xdp,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use sipxdp_common::{
    flood::FloodConfig,
    maps::{
        Backend, Counter, MAGLEV_EMPTY, MAGLEV_TABLE_ENTRIES, MaglevTable, NatReturn, Placement,
        PlacementKey, Settings, VIP_PROBES, VIP_REMOVED_PROTOCOL, VIP_TABLE_ENTRIES, VipConfig,
        VipEntry, VipKey, names,
    },
    outcome::{Action, Reason, counter_index},
};
use thiserror::Error;

use crate::plan::{
    Plan, VipPlan,
    writes::{self, MapWrite},
};

/// How the program is attached: re-exported so callers need not depend on aya.
pub use aya::programs::XdpMode;

/// The kernel program, built by `build.rs` and embedded in the binary.
static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipxdp"));

/// The program's name in the object.
const PROGRAM: &str = "sipxdp";

/// Errors of the data plane, each naming what was being done.
#[derive(Debug, Error)]
pub enum DataplaneError {
    #[error("loading the eBPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the eBPF object has no program `{PROGRAM}`")]
    MissingProgram,
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("loading the XDP program into the kernel (verifier): {0}")]
    Load(#[source] ProgramError),
    #[error("attaching the XDP program to {interface} in {mode:?} mode: {source}")]
    Attach {
        interface: String,
        mode: XdpMode,
        #[source]
        source: ProgramError,
    },
    #[error("interface name {0:?} contains a NUL byte")]
    InterfaceName(String),
    #[error("adding interface {ifindex} to TX_PORTS: {source}")]
    TxPort {
        ifindex: u32,
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    #[error("{what}: {source}")]
    Map {
        what: String,
        #[source]
        source: MapError,
    },
    #[error("reading the program's log messages: {0}")]
    Logger(#[source] aya_log::Error),
    #[error("running the program on a test frame: {0}")]
    TestRun(#[source] ProgramError),
    #[error(
        "Maglev table for VIP slot {slot} has {len} entries; at most {MAGLEV_TABLE_ENTRIES} fit"
    )]
    TableTooLarge { slot: u32, len: usize },
    #[error("no free entry for VIP {0:?} within {VIP_PROBES} probes of its home entry")]
    VipTableFull(VipKey),
    #[error("VIP {0:?} is not configured")]
    UnknownVip(VipKey),
    #[error("duplicating the descriptor of a map: {0}")]
    DuplicateMap(#[source] std::io::Error),
    #[error("pinning on bpffs at {}: {reason} (is it on a bpf filesystem?)", path.display())]
    Pin { path: PathBuf, reason: String },
}

fn map_error(what: impl Into<String>) -> impl FnOnce(MapError) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Map { what, source }
}

/// How to load the program.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Highest aya-log level the program emits (`None`: no logs). Disabled levels cost
    /// nothing: the verifier removes the code of a disabled log statement.
    pub log_level: Option<aya_log::Level>,
    /// Ask the verifier for statistics (used by tests to report instruction counts).
    pub verifier_statistics: bool,
    /// Entries of the `DIALOGS` map (`None`: `DEFAULT_DIALOG_ENTRIES`). The kernel
    /// allocates them all at load time, 96 bytes each.
    pub dialog_entries: Option<u32>,
    /// Entries of the `FRAGMENTS` map (`None`: `DEFAULT_FRAGMENT_ENTRIES`).
    pub fragment_entries: Option<u32>,
    /// Entries of the `CONNECTIONS` map (`None`: `DEFAULT_CONNECTION_ENTRIES`), 96 bytes
    /// each, like `DIALOGS`.
    pub connection_entries: Option<u32>,
    /// Entries of the `FLOOD_SOURCES` map (`None`: `DEFAULT_FLOOD_SOURCES`), about 100
    /// bytes each, allocated at load.
    pub flood_sources: Option<u32>,
    /// Where the stateful maps are pinned (`None`: not pinned). Maps already pinned there
    /// are reused, so a new daemon takes over the tables, dialogs and counters of the one
    /// before.
    pub pins: Option<Pins>,
}

/// What the daemon pins on bpffs so that traffic keeps flowing while no daemon runs:
/// the maps that hold state, one XDP link per interface, and the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pins {
    root: PathBuf,
}

/// Version of the pinned maps' layouts: a release that changes a map's key or value
/// layout raises it, so that it pins fresh maps beside the old ones instead of reusing
/// maps it would misread.
/// Version 2: `Settings` gained `connection_idle_ns`.
/// Version 3: `Backend` gained `vip_slot`.
const PINNED_LAYOUT: u32 = 3;

/// The maps that outlive the daemon. The per-CPU scratch maps hold nothing between
/// packets and are not pinned.
const PINNED_MAPS: [&str; 11] = [
    names::VIPS,
    names::BACKENDS,
    names::MAGLEV,
    names::TX_PORTS,
    names::SETTINGS,
    names::COUNTERS,
    names::BACKEND_COUNTERS,
    names::DIALOGS,
    names::FRAGMENTS,
    names::NAT_RETURNS,
    names::CONNECTIONS,
];

impl Pins {
    /// Pins under the bpffs directory `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn maps(&self) -> PathBuf {
        self.root.join(format!("maps-v{PINNED_LAYOUT}"))
    }

    fn link(&self, interface: &str) -> PathBuf {
        self.root.join(format!("link-{interface}"))
    }

    fn program(&self) -> PathBuf {
        self.root.join("program")
    }

    /// The interfaces with a pinned link.
    pub fn linked_interfaces(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut interfaces: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.strip_prefix("link-"))
                    .map(str::to_owned)
            })
            .collect();
        interfaces.sort();
        interfaces
    }

    /// Detaches every pinned link and removes every pin: what `sipxdp detach` does.
    /// Returns the interfaces detached.
    pub fn remove_all(&self) -> Result<Vec<String>, DataplaneError> {
        let interfaces = self.linked_interfaces();
        for interface in &interfaces {
            let path = self.link(interface);
            let pinned = PinnedLink::from_pin(&path).map_err(|source| DataplaneError::Pin {
                path: path.clone(),
                reason: source.to_string(),
            })?;
            // Unpinned and dropped, the link's last reference goes and XDP detaches.
            drop(pinned.unpin().map_err(|source| DataplaneError::Pin {
                path,
                reason: source.to_string(),
            })?);
        }
        if self.root.exists() {
            fs::remove_dir_all(&self.root).map_err(|source| DataplaneError::Pin {
                path: self.root.clone(),
                reason: source.to_string(),
            })?;
        }
        Ok(interfaces)
    }
}

/// How `attach` attached the program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A new XDP link.
    Attached,
    /// The program replaced the one in the link a previous daemon pinned, in one step.
    Adopted,
}

/// The result of running the program once on a frame with `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP action the program returned (`XDP_PASS`, `XDP_TX`, …).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// The program, loaded and verified, with its maps.
pub struct Dataplane {
    ebpf: Ebpf,
}

impl Dataplane {
    /// Loads the embedded object and the program into the kernel.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        let level = options.log_level.map_or(0u8, |level| level as u8);
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &level, false);
        if options.verifier_statistics {
            loader.verifier_log_level(VerifierLogLevel::STATS);
        }
        if let Some(entries) = options.dialog_entries {
            loader.map_max_entries(names::DIALOGS, entries);
        }
        if let Some(entries) = options.fragment_entries {
            loader.map_max_entries(names::FRAGMENTS, entries);
        }
        if let Some(entries) = options.connection_entries {
            loader.map_max_entries(names::CONNECTIONS, entries);
        }
        if let Some(entries) = options.flood_sources {
            loader.map_max_entries(names::FLOOD_SOURCES, entries);
        }
        let maps_dir = options.pins.as_ref().map(Pins::maps);
        if let Some(directory) = &maps_dir {
            fs::create_dir_all(directory).map_err(|source| DataplaneError::Pin {
                path: directory.clone(),
                reason: source.to_string(),
            })?;
            for name in PINNED_MAPS {
                loader.map_pin_path(name, directory.join(name));
            }
        }
        let mut ebpf = loader
            .load(PROGRAM_OBJECT)
            .map_err(DataplaneError::Object)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::Load)?;
        program.load().map_err(DataplaneError::Load)?;
        Ok(Self { ebpf })
    }

    fn program(&self) -> Result<&Xdp, DataplaneError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::Load)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::Load)
    }

    /// Starts reading the program's aya-log messages; the caller polls the returned logger
    /// (it is readable when messages wait) and calls `flush` to log them.
    pub fn kernel_logger(
        &mut self,
    ) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>, DataplaneError> {
        aya_log::EbpfLogger::init(&mut self.ebpf).map_err(DataplaneError::Logger)
    }

    /// How many instructions the verifier processed to accept the program.
    pub fn verified_instructions(&self) -> Result<Option<u32>, DataplaneError> {
        let info = self.program()?.info().map_err(DataplaneError::Load)?;
        Ok(info.verified_instruction_count())
    }

    /// Attaches the program to `interface`; it stays attached until the `Dataplane` is
    /// dropped.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: XdpMode,
        pins: Option<&Pins>,
    ) -> Result<Attachment, DataplaneError> {
        let attach_error = |source| DataplaneError::Attach {
            interface: interface.to_owned(),
            mode,
            source,
        };
        let pin_error = |path: &Path| {
            let path = path.to_owned();
            move |source: &dyn std::fmt::Display| DataplaneError::Pin {
                path,
                reason: source.to_string(),
            }
        };
        let name = std::ffi::CString::new(interface)
            .map_err(|_| DataplaneError::InterfaceName(interface.to_owned()))?;
        let program = self.program_mut()?;
        let Some(pins) = pins else {
            return program
                .attach(name.as_c_str(), mode)
                .map(|_| Attachment::Attached)
                .map_err(attach_error);
        };
        let path = pins.link(interface);
        let (link, attachment) = if path.exists() {
            // Unpinned only for as long as the replacement takes; the link, held by this
            // process meanwhile, stays attached throughout.
            let pinned = PinnedLink::from_pin(&path).map_err(|e| pin_error(&path)(&e))?;
            let link = pinned.unpin().map_err(|e| pin_error(&path)(&e))?;
            let link = XdpLink::try_from(link).map_err(|e| pin_error(&path)(&e))?;
            let id = program.attach_to_link(link).map_err(attach_error)?;
            (
                program.take_link(id).map_err(attach_error)?,
                Attachment::Adopted,
            )
        } else {
            let id = program
                .attach(name.as_c_str(), mode)
                .map_err(attach_error)?;
            (
                program.take_link(id).map_err(attach_error)?,
                Attachment::Attached,
            )
        };
        // Netlink XDP attachments (kernels before 5.9) are no links and cannot be pinned.
        let link = FdLink::try_from(link).map_err(|e| pin_error(&path)(&e))?;
        link.pin(&path).map_err(|e| pin_error(&path)(&e))?;
        // The program itself too, for `bpftool` and friends; the link holds it anyway.
        let program_path = pins.program();
        if program_path.exists() {
            fs::remove_file(&program_path).map_err(|e| pin_error(&program_path)(&e))?;
        }
        program
            .pin(&program_path)
            .map_err(|e| pin_error(&program_path)(&e))?;
        Ok(attachment)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, DataplaneError> {
        self.ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, DataplaneError> {
        self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))
    }

    /// Writes the global settings.
    pub fn set_settings(&mut self, settings: &Settings) -> Result<(), DataplaneError> {
        let mut array: Array<_, Settings> = Array::try_from(self.map_mut(names::SETTINGS)?)
            .map_err(map_error("opening SETTINGS"))?;
        array
            .set(0, settings, 0)
            .map_err(map_error("writing SETTINGS"))
    }

    fn vips(&mut self) -> Result<Array<&mut aya::maps::MapData, VipEntry>, DataplaneError> {
        Array::try_from(self.map_mut(names::VIPS)?).map_err(map_error("opening VIPS"))
    }

    /// The `VIPS` entry holding `key`, or the free entry where it would go.
    fn vip_entry(&mut self, key: &VipKey) -> Result<(u32, Option<VipEntry>), DataplaneError> {
        let vips = self.vips()?;
        let home = key.home();
        let mut free = None;
        for probe in 0..VIP_PROBES {
            let index = (home + probe) & (VIP_TABLE_ENTRIES - 1);
            let entry = vips.get(&index, 0).map_err(map_error("reading VIPS"))?;
            if entry.key.matches(key) {
                return Ok((index, Some(entry)));
            }
            let unused = entry.key.protocol == 0 || entry.key.protocol == VIP_REMOVED_PROTOCOL;
            if unused && free.is_none() {
                free = Some(index);
            }
        }
        free.map(|index| (index, None))
            .ok_or(DataplaneError::VipTableFull(*key))
    }

    /// Adds a VIP or changes its flags and table size; the live Maglev table generation
    /// stays as it is (`publish_table` flips it).
    pub fn set_vip(&mut self, key: &VipKey, config: &VipConfig) -> Result<(), DataplaneError> {
        let (index, existing) = self.vip_entry(key)?;
        // The live table and its size change only together, in `publish_table`: a new VIP
        // starts with an empty table (its packets pass with `NoBackend`) until then.
        let config = VipConfig {
            generation: existing.map_or(0, |entry| entry.config.generation),
            table_size: existing.map_or(0, |entry| entry.config.table_size),
            ..*config
        };
        self.vips()?
            .set(index, &VipEntry { key: *key, config }, 0)
            .map_err(map_error("writing a VIP"))
    }

    /// Removes a VIP; packets to it are passed on from then on.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let (index, existing) = self.vip_entry(key)?;
        if existing.is_none() {
            return Err(DataplaneError::UnknownVip(*key));
        }
        // An empty entry would end the search for VIPs placed past it, so a removed
        // entry keeps a key no packet matches until the entry is reused.
        let tombstone = VipEntry {
            key: VipKey {
                protocol: VIP_REMOVED_PROTOCOL,
                ..*key
            },
            config: VipConfig::default(),
        };
        self.vips()?
            .set(index, &tombstone, 0)
            .map_err(map_error("removing a VIP"))
    }

    /// What the maps already hold, as a plan: the VIPs, backend slots and NAT return
    /// entries a previous daemon left in pinned maps (nothing in fresh maps), with their
    /// tables and flood settings unknown. Applying the first plan over it removes what the
    /// new configuration no longer has; over an empty plan, a VIP dropped from the
    /// configuration while no daemon ran would keep being served by the pinned program
    /// from stale entries, and counted under a slot the metrics no longer name. The VIP
    /// and backend slots in it are those `Slots::taking_over` gives back.
    pub fn pinned_plan(&self) -> Result<Plan, DataplaneError> {
        let mut plan = Plan::default();
        let vips: Array<_, VipEntry> =
            Array::try_from(self.map(names::VIPS)?).map_err(map_error("opening VIPS"))?;
        for entry in vips.iter() {
            let entry = entry.map_err(map_error("reading VIPS"))?;
            if entry.key.protocol == 0 || entry.key.protocol == VIP_REMOVED_PROTOCOL {
                continue;
            }
            plan.vips.push(VipPlan {
                name: String::new(),
                key: entry.key,
                entry: entry.config,
                table: Vec::new(),
                flood: FloodConfig::default(),
            });
        }
        let backends: Array<_, Backend> =
            Array::try_from(self.map(names::BACKENDS)?).map_err(map_error("opening BACKENDS"))?;
        for (slot, backend) in (0..).zip(backends.iter()) {
            let backend = backend.map_err(map_error("reading BACKENDS"))?;
            if backend != Backend::default() {
                plan.backends.insert(slot, backend);
            }
        }
        let returns: HashMap<_, VipKey, NatReturn> =
            HashMap::try_from(self.map(names::NAT_RETURNS)?)
                .map_err(map_error("opening NAT_RETURNS"))?;
        for entry in returns.iter() {
            let (key, value) = entry.map_err(map_error("reading NAT_RETURNS"))?;
            plan.nat_returns.insert(key, value);
        }
        Ok(plan)
    }

    /// Writes a backend slot.
    pub fn set_backend(&mut self, slot: u32, backend: &Backend) -> Result<(), DataplaneError> {
        let mut backends: Array<_, Backend> = Array::try_from(self.map_mut(names::BACKENDS)?)
            .map_err(map_error("opening BACKENDS"))?;
        backends
            .set(slot, backend, 0)
            .map_err(map_error(format!("writing backend slot {slot}")))
    }

    /// Lets the program redirect to `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut ports = DevMapHash::try_from(self.map_mut(names::TX_PORTS)?)
            .map_err(map_error("opening TX_PORTS"))?;
        ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|source| DataplaneError::TxPort { ifindex, source })
    }

    /// Publishes a Maglev table for the VIP `key`: writes the VIP's idle table, then flips
    /// the VIP's live generation to it, so the program sees the old table or the new one.
    pub fn publish_table(&mut self, key: &VipKey, table: &[u16]) -> Result<(), DataplaneError> {
        let (index, existing) = self.vip_entry(key)?;
        let mut entry = existing.ok_or(DataplaneError::UnknownVip(*key))?;
        let slot = entry.config.slot;
        if table.len() > MAGLEV_TABLE_ENTRIES {
            return Err(DataplaneError::TableTooLarge {
                slot,
                len: table.len(),
            });
        }
        let mut full: Box<MaglevTable> = Box::new([MAGLEV_EMPTY; MAGLEV_TABLE_ENTRIES]);
        full[..table.len()].copy_from_slice(table);
        entry.config.generation ^= 1;
        entry.config.table_size = table.len() as u32;
        let mut tables: Array<_, MaglevTable> =
            Array::try_from(self.map_mut(names::MAGLEV)?).map_err(map_error("opening MAGLEV"))?;
        tables
            .set(entry.config.table_index(), &*full, 0)
            .map_err(map_error(format!(
                "writing a Maglev table of VIP slot {slot}"
            )))?;
        self.vips()?
            .set(index, &entry, 0)
            .map_err(map_error(format!(
                "switching VIP slot {slot} to its new Maglev table"
            )))
    }

    /// Writes the flood protection of VIP slot `slot` (`FLOOD`).
    pub fn set_flood(&mut self, slot: u32, flood: &FloodConfig) -> Result<(), DataplaneError> {
        let mut array: Array<_, FloodConfig> =
            Array::try_from(self.map_mut(names::FLOOD)?).map_err(map_error("opening FLOOD"))?;
        array
            .set(slot, flood, 0)
            .map_err(map_error(format!("writing FLOOD slot {slot}")))
    }

    /// Makes the maps hold `plan`, given that they hold `previous`: writes what changed,
    /// in the order [`writes::ordered`] gives.
    pub fn apply(&mut self, plan: &Plan, previous: &Plan) -> Result<(), DataplaneError> {
        for write in writes::ordered(previous, plan) {
            match write {
                MapWrite::Backend { slot, entry } => self.set_backend(slot, &entry)?,
                MapWrite::Flood { slot, entry } => self.set_flood(slot, entry)?,
                MapWrite::Vip { key, entry } => self.set_vip(key, entry)?,
                MapWrite::Table { key, table } => self.publish_table(key, table)?,
                MapWrite::RemoveVip { key } => self.remove_vip(key)?,
                MapWrite::NatReturn { key, entry } => self.set_nat_return(key, entry)?,
            }
        }
        Ok(())
    }

    /// The dialog the program remembers under `key`, if any.
    pub fn dialog(&self, key: &PlacementKey) -> Result<Option<Placement>, DataplaneError> {
        self.placement(names::DIALOGS, key)
    }

    /// The TCP connection the program remembers under `key`, if any.
    pub fn connection(&self, key: &PlacementKey) -> Result<Option<Placement>, DataplaneError> {
        self.placement(names::CONNECTIONS, key)
    }

    /// What the placement map `name` remembers under `key`, if anything.
    fn placement(
        &self,
        name: &'static str,
        key: &PlacementKey,
    ) -> Result<Option<Placement>, DataplaneError> {
        let placements: HashMap<_, PlacementKey, Placement> =
            HashMap::try_from(self.map(name)?).map_err(map_error(format!("opening {name}")))?;
        match placements.get(key, 0) {
            Ok(placement) => Ok(Some(placement)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(map_error(format!("reading {name}"))(source)),
        }
    }

    /// A second handle on the LRU hash map `name` (`DIALOGS`, `FRAGMENTS`), for a thread
    /// of its own.
    pub fn lru_map_copy(&self, name: &'static str) -> Result<MapData, DataplaneError> {
        let Some(Map::LruHashMap(data)) = self.ebpf.map(name) else {
            return Err(DataplaneError::MissingMap(name));
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(DataplaneError::DuplicateMap)?;
        MapData::from_fd(fd).map_err(map_error(format!("opening {name} again")))
    }

    /// Makes datagrams from the NAT backend `key` leave with `value`'s VIP as their
    /// source, or (`None`) stops rewriting them.
    pub fn set_nat_return(
        &mut self,
        key: &VipKey,
        value: Option<&NatReturn>,
    ) -> Result<(), DataplaneError> {
        let mut returns: HashMap<_, VipKey, NatReturn> =
            HashMap::try_from(self.map_mut(names::NAT_RETURNS)?)
                .map_err(map_error("opening NAT_RETURNS"))?;
        match value {
            Some(value) => returns
                .insert(key, value, 0)
                .map_err(map_error("writing NAT_RETURNS")),
            None => returns
                .remove(key)
                .map_err(map_error("removing from NAT_RETURNS")),
        }
    }

    /// The per-CPU counter of (VIP slot, action, reason), summed over CPUs.
    pub fn counter(
        &self,
        slot: u32,
        action: Action,
        reason: Reason,
    ) -> Result<Counter, DataplaneError> {
        let counters: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(names::COUNTERS)?)
            .map_err(map_error("opening COUNTERS"))?;
        let values = counters
            .get(&counter_index(slot, action, reason), 0)
            .map_err(map_error("reading COUNTERS"))?;
        Ok(sum(values.iter()))
    }

    /// The forwarding counter of a backend slot, summed over CPUs.
    pub fn backend_counter(&self, slot: u32) -> Result<Counter, DataplaneError> {
        let counters: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(self.map(names::BACKEND_COUNTERS)?)
                .map_err(map_error("opening BACKEND_COUNTERS"))?;
        let values = counters
            .get(&slot, 0)
            .map_err(map_error("reading BACKEND_COUNTERS"))?;
        Ok(sum(values.iter()))
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`, kernel 4.12).
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutput, DataplaneError> {
        let mut output = vec![0; frame.len() + 256];
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut output),
                ..TestRunOptions::default()
            })
            .map_err(DataplaneError::TestRun)?;
        output.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            action: result.return_value,
            frame: output,
        })
    }

    /// Runs the program `repeat` times on `frame` and returns the kernel's mean time per
    /// run in nanoseconds.
    pub fn time_run(&self, frame: &[u8], repeat: u32) -> Result<u64, DataplaneError> {
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(DataplaneError::TestRun)?;
        Ok(result.duration.as_nanos() as u64)
    }

    /// The program's file descriptor, for tools that inspect it.
    pub fn program_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, DataplaneError> {
        Ok(self.program()?.fd().map_err(DataplaneError::Load)?.as_fd())
    }
}

fn sum<'a>(values: impl Iterator<Item = &'a Counter>) -> Counter {
    values.fold(Counter::default(), |total, value| Counter {
        packets: total.packets + value.packets,
        bytes: total.bytes + value.bytes,
    })
}
