//! The embedded XDP program: loading it over the pinned maps, and attaching, adopting and
//! detaching its links.

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::MapInfo,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, Link as _, PinnedLink},
        tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        xdp::XdpLink,
    },
    util::KernelVersion,
};
use sipguard_common::maps as names;

use crate::{pin::PinLayout, sys};

/// The object built by `build.rs` (empty when the eBPF build was skipped).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipguard-xdp"));
/// Name of the XDP entry point in the object.
const PROGRAM: &str = "sipguard";
/// Name of the response program (TC egress) in the object.
const RESPONSES: &str = "sipguard_responses";

/// How to attach to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native mode only.
    Driver,
    /// Generic (skb) mode: works on any interface, costs more.
    Skb,
}

impl crate::named::Named for AttachMode {
    const WHAT: &'static str = "XDP attach mode";
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("auto", Self::Auto, "Native (driver) mode, falling back to generic mode with a warning"),
        ("driver", Self::Driver, "Native mode only"),
        ("skb", Self::Skb, "Generic (skb) mode: works on any interface, costs more"),
    ];
}

impl serde::Serialize for AttachMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::named::Named::name(*self))
    }
}

/// A program loaded over the pinned maps, ready to attach.
pub struct Loaded {
    ebpf: Ebpf,
    /// Whether the maps were created by this load (nothing was pinned before).
    pub fresh: bool,
}

/// Refuses maps pinned by an incompatible sipguard: the verifier would reject the program
/// with a cryptic message, or worse, accept it over a map of another shape.
fn check_pinned_shapes(layout: &PinLayout) -> anyhow::Result<()> {
    for spec in &names::SCHEMA {
        let path = layout.map(spec.name);
        if !path.exists() {
            continue;
        }
        let info =
            MapInfo::from_pin(&path).with_context(|| format!("inspecting {}", path.display()))?;
        let kind = info.map_type().map(|t| t as u32).ok();
        let (key, value) = (info.key_size(), info.value_size());
        if kind != Some(spec.kind as u32) || key != spec.key_size || value != spec.value_size {
            bail!(
                "the map pinned at {} was made by an incompatible sipguard version (type {kind:?}, key/value size {key}/{value}; expected {:?}, {}/{}); run `sipguard detach` to remove the old filter first",
                path.display(),
                spec.kind,
                spec.key_size,
                spec.value_size
            );
        }
    }
    Ok(())
}

/// Sizes of the maps userspace chooses, used when they are first created.
#[derive(Clone, Copy, Debug)]
pub struct Capacities {
    /// Entries per source list trie (per family).
    pub lists: u32,
    /// Protected destinations per family.
    pub destinations: u32,
    /// Remote sources whose behaviour is tracked.
    pub behaviour: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            lists: names::DEFAULT_LIST_CAPACITY,
            destinations: names::DEFAULT_DEST_CAPACITY,
            behaviour: names::DEFAULT_BEHAVIOUR_CAPACITY,
        }
    }
}

/// Loads the program, reusing the maps pinned under `layout` or creating (and pinning) them
/// with the given capacities.
pub fn load(layout: &PinLayout, capacity: Capacities) -> anyhow::Result<Loaded> {
    if OBJECT.is_empty() {
        bail!(
            "this sipguard binary was built without its XDP program (SIPGUARD_SKIP_EBPF); run `cargo xtask setup`, then rebuild"
        );
    }
    crate::kernel::require()?;
    layout.prepare()?;
    let fresh = !layout.has_maps();
    if !fresh {
        check_pinned_shapes(layout)?;
    }
    let result = load_inner(layout, capacity).and_then(|ebpf| {
        crate::upgrade::pin_layout(layout)?;
        Ok(ebpf)
    });
    if result.is_err()
        && fresh
        && let Err(e) = layout.remove_all()
    {
        // Half a filter is left: say so beside the load's own error.
        log::warn!("removing the half-made filter under {}: {e:#}", layout.root().display());
    }
    Ok(Loaded { ebpf: result?, fresh })
}

fn load_inner(layout: &PinLayout, capacity: Capacities) -> anyhow::Result<Ebpf> {
    let maps_dir = layout.maps_dir();
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&maps_dir);
    for name in [names::ALLOW_V4, names::ALLOW_V6, names::BLOCK_V4, names::BLOCK_V6] {
        loader.map_max_entries(name, capacity.lists);
    }
    for name in [names::DEST_V4, names::DEST_V6] {
        loader.map_max_entries(name, capacity.destinations);
    }
    loader.map_max_entries(names::BEHAVIOUR, capacity.behaviour);
    let mut ebpf = loader.load(OBJECT).context("loading the XDP object and its maps")?;
    let prog: &mut Xdp = program(&mut ebpf)?;
    prog.load().context("the kernel refused the XDP program")?;
    responses(&mut ebpf)?.load().context("the kernel refused the response program (TC)")?;
    Ok(ebpf)
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    ebpf.program_mut(PROGRAM)
        .context("the object has no `sipguard` program")?
        .try_into()
        .context("`sipguard` is not an XDP program")
}

fn responses(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    ebpf.program_mut(RESPONSES)
        .with_context(|| format!("the object has no `{RESPONSES}` program"))?
        .try_into()
        .with_context(|| format!("`{RESPONSES}` is not a TC classifier"))
}

/// Priority and handle of the response program's clsact filter on kernels without tcx: fixed
/// ("SG"), so that a later run and `detach` find the filter an earlier process left.
const TC_PRIORITY: u16 = 0x5347;
const TC_HANDLE: TcHandle = TcHandle::new(0, 0x5347);

/// How the response program hooks into an interface's egress: a tcx link (pinned like the XDP
/// links) where the kernel has tcx (6.6), else a clsact filter, which lives in the qdisc and
/// outlives the process by itself.
fn has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// What [`Loaded::attach`] did on one interface.
#[derive(Debug)]
pub enum Attached {
    /// A new link, in the mode that worked.
    New(AttachMode),
    /// An existing pinned link now runs this program (replaced atomically: no gap).
    Adopted,
}

impl Loaded {
    /// The loaded XDP program (tests run it with `BPF_PROG_TEST_RUN`).
    pub fn program_mut(&mut self) -> anyhow::Result<&mut Xdp> {
        program(&mut self.ebpf)
    }

    /// The loaded response program (tests run it with `BPF_PROG_TEST_RUN`).
    pub fn responses_mut(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        responses(&mut self.ebpf)
    }

    /// Instructions the verifier processed to accept the response program (kernels 5.16+).
    pub fn responses_verified_instructions(&mut self) -> Option<u32> {
        self.responses_mut().ok()?.info().ok()?.verified_instruction_count()
    }

    /// Instructions the verifier processed to accept the program (kernels 5.16+).
    pub fn verified_instructions(&mut self) -> Option<u32> {
        self.program_mut().ok()?.info().ok()?.verified_instruction_count()
    }

    /// Attaches to `iface` and pins the link, or adopts the link already pinned for it.
    pub fn attach(
        &mut self,
        layout: &PinLayout,
        iface: &str,
        mode: AttachMode,
    ) -> anyhow::Result<Attached> {
        let pin = layout.link(iface);
        let prog = program(&mut self.ebpf)?;
        if pin.exists() {
            match adopt(prog, &pin) {
                Ok(()) => return Ok(Attached::Adopted),
                Err(AdoptError::Defunct) => {
                    log::warn!("{iface}: the pinned link outlived its interface; attaching afresh");
                    std::fs::remove_file(&pin)
                        .with_context(|| format!("removing stale {}", pin.display()))?;
                }
                Err(AdoptError::Other(e)) => {
                    return Err(e.context(format!("adopting the link pinned at {}", pin.display())));
                }
            }
        }
        let index = sys::ifindex(iface).with_context(|| format!("no such interface: {iface}"))?;
        let (link_id, used) = match mode {
            AttachMode::Driver => {
                (attach_with(prog, index, iface, XdpMode::Driver)?, AttachMode::Driver)
            }
            AttachMode::Skb => (attach_with(prog, index, iface, XdpMode::Skb)?, AttachMode::Skb),
            AttachMode::Auto => match attach_with(prog, index, iface, XdpMode::Driver) {
                Ok(id) => (id, AttachMode::Driver),
                Err(e) => {
                    log::warn!(
                        "{iface}: native XDP failed ({e:#}); using generic (skb) mode, which costs more per packet"
                    );
                    (attach_with(prog, index, iface, XdpMode::Skb)?, AttachMode::Skb)
                }
            },
        };
        let link = prog.take_link(link_id)?;
        let fd_link = FdLink::try_from(link).map_err(|_| {
            anyhow::anyhow!("{iface}: the kernel attached XDP without a bpf_link (Linux 5.9 or newer is required to pin it)")
        })?;
        fd_link.pin(&pin).with_context(|| format!("pinning the link at {}", pin.display()))?;
        Ok(Attached::New(used))
    }
}

impl Loaded {
    /// Hooks the response program into `iface`'s egress, or moves an earlier hook to this
    /// program (atomically: a tcx link update, or a clsact filter replaced in place).
    pub fn attach_responses(&mut self, layout: &PinLayout, iface: &str) -> anyhow::Result<()> {
        let prog = responses(&mut self.ebpf)?;
        if has_tcx() {
            let pin = layout.response_link(iface);
            if pin.exists() {
                let fd: FdLink = PinnedLink::from_pin(&pin)
                    .with_context(|| format!("opening {}", pin.display()))?
                    .into();
                let link = SchedClassifierLink::try_from(fd)
                    .context("the pinned response link is not a tcx link")?;
                let id = prog.attach_to_link(link).with_context(|| {
                    format!("moving the response link pinned at {} to this program", pin.display())
                })?;
                // The link stays pinned; closing this descriptor does not detach it.
                drop(prog.take_link(id)?);
                return Ok(());
            }
            let id = prog
                .attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .with_context(|| {
                    format!("attaching the response program to {iface} (tcx egress)")
                })?;
            let link: FdLink = prog
                .take_link(id)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("{iface}: the tcx attach gave no bpf_link"))?;
            link.pin(&pin).with_context(|| format!("pinning the link at {}", pin.display()))?;
            return Ok(());
        }
        if let Err(e) = aya::programs::tc::qdisc_add_clsact(iface) {
            let exists = matches!(&e, aya::programs::tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
            if !exists {
                return Err(e).with_context(|| format!("adding a clsact qdisc to {iface}"));
            }
        }
        let options =
            NlOptions { priority: TC_PRIORITY, handle: TC_HANDLE, ..NlOptions::default() };
        let id = match prog.attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::Netlink(options),
        ) {
            Ok(id) => id,
            // An earlier run's filter: replace its program in place.
            Err(e) if is_os_error(&e, libc::EEXIST) => {
                let earlier = SchedClassifierLink::attached(
                    iface,
                    TcAttachType::Egress,
                    TC_PRIORITY,
                    TC_HANDLE,
                    None,
                )?;
                prog.attach_to_link(earlier)
                    .with_context(|| format!("replacing the response filter on {iface}"))?
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("attaching the response program to {iface} (clsact egress)")
                });
            }
        };
        // Dropped, the link would remove the filter: it must outlive this process.
        std::mem::forget(prog.take_link(id)?);
        Ok(())
    }
}

/// Removes the response program from `iface`'s egress; nothing there is not an error.
pub fn detach_responses(layout: &PinLayout, iface: &str) -> anyhow::Result<()> {
    let pin = layout.response_link(iface);
    if pin.exists() {
        return detach_pinned(&pin, &format!("the response program from {iface}"));
    }
    if has_tcx() || sys::ifindex(iface).is_none() {
        return Ok(());
    }
    let filter =
        SchedClassifierLink::attached(iface, TcAttachType::Egress, TC_PRIORITY, TC_HANDLE, None)?;
    match filter.detach() {
        Ok(()) => Ok(()),
        Err(e) if is_os_error(&e, libc::ENOENT) || is_os_error(&e, libc::EINVAL) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing the response filter from {iface}")),
    }
}

/// Detaches the `bpf_link` pinned at `pin` at once, then unpins it (`what`: "from eth0", for
/// the error). Unpinning alone would leave the release to a kernel workqueue, and traffic
/// could meet the program for a moment after the command returned.
pub fn detach_pinned(pin: &std::path::Path, what: &str) -> anyhow::Result<()> {
    let link = sys::obj_get(pin).with_context(|| format!("opening {}", pin.display()))?;
    // A link whose interface is gone is already detached (ENOLINK): just unpin it.
    match sys::link_detach(&link) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(e).with_context(|| format!("detaching {what}")),
    }
    std::fs::remove_file(pin).with_context(|| format!("removing {}", pin.display()))
}

/// Whether a program error carries the OS error `code` (from netlink or a syscall).
fn is_os_error(e: &aya::programs::ProgramError, code: i32) -> bool {
    use aya::programs::{ProgramError, tc::TcError};
    match e {
        ProgramError::TcError(TcError::NetlinkError(n)) | ProgramError::NetlinkError(n) => {
            n.raw_os_error() == Some(code)
        }
        ProgramError::SyscallError(s) => s.io_error.raw_os_error() == Some(code),
        _ => false,
    }
}

fn attach_with(
    prog: &mut Xdp,
    index: u32,
    iface: &str,
    mode: XdpMode,
) -> anyhow::Result<aya::programs::xdp::XdpLinkId> {
    prog.attach_to_if_index(index, mode).map_err(|e| {
        let busy = matches!(&e, aya::programs::ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EBUSY));
        let e = anyhow::Error::new(e);
        if busy {
            e.context(format!("{iface} already runs another XDP program; remove it first (ip link set dev {iface} xdp off)"))
        } else {
            e.context(format!("attaching to {iface} in {mode:?} mode"))
        }
    })
}

enum AdoptError {
    /// The link's interface is gone; the kernel detached it.
    Defunct,
    Other(anyhow::Error),
}

fn adopt(prog: &mut Xdp, pin: &std::path::Path) -> Result<(), AdoptError> {
    let raw = sys::obj_get(pin).map_err(|e| AdoptError::Other(e.into()))?;
    let (_, _, ifindex) = sys::xdp_link_info(&raw).map_err(|e| AdoptError::Other(e.into()))?;
    if ifindex == 0 {
        return Err(AdoptError::Defunct);
    }
    drop(raw);
    let fd: FdLink = PinnedLink::from_pin(pin).map_err(|e| AdoptError::Other(e.into()))?.into();
    let link = XdpLink::try_from(fd).map_err(|e| AdoptError::Other(e.into()))?;
    let id = prog.attach_to_link(link).map_err(|e| AdoptError::Other(e.into()))?;
    // The link stays pinned; this process keeps no reference to it, so `detach` from another
    // shell really detaches.
    drop(prog.take_link(id));
    Ok(())
}

/// Information about the link pinned for `iface`.
#[derive(Debug, serde::Serialize)]
pub struct LinkStatus {
    pub iface: String,
    /// Kernel ifindex the link is bound to; 0 when its interface is gone.
    pub ifindex: u32,
    pub link_id: u32,
    pub program_id: u32,
    /// Instructions the verifier processed for the attached program.
    pub verified_instructions: Option<u32>,
}

/// Verifier statistics of a loaded program, by id.
fn verified_instructions(program_id: u32) -> Option<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program_id)?
        .verified_instruction_count()
}

pub fn link_status(layout: &PinLayout, iface: &str) -> anyhow::Result<LinkStatus> {
    let pin = layout.link(iface);
    let fd = sys::obj_get(&pin).with_context(|| format!("opening {}", pin.display()))?;
    let (link_id, program_id, ifindex) =
        sys::xdp_link_info(&fd).with_context(|| format!("querying {}", pin.display()))?;
    Ok(LinkStatus {
        iface: iface.to_owned(),
        ifindex,
        link_id,
        program_id,
        verified_instructions: verified_instructions(program_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_mode_names_round_trip() {
        crate::named::assert_names_round_trip::<AttachMode>();
    }

    /// The program's map declarations are the schema's: every map of the built object is
    /// either in `sipguard_common::maps::SCHEMA`, with the same type, key, value, entries and
    /// flags, or private to the program; and every map of the schema is in the object.
    #[test]
    fn the_built_object_declares_the_schema() {
        assert!(!OBJECT.is_empty(), "built with SIPGUARD_SKIP_EBPF: no object to check");
        let object = aya_obj::Object::parse(OBJECT).expect("parsing the built object");
        let mut seen = Vec::new();
        for (name, map) in &object.maps {
            if name.starts_with('.') || names::PRIVATE.contains(&name.as_str()) {
                continue;
            }
            let spec = names::spec_of(name)
                .unwrap_or_else(|| panic!("{name} is in the object but not in the schema"));
            let declared = (
                map.map_type(),
                map.key_size(),
                map.value_size(),
                map.max_entries(),
                map.map_flags(),
            );
            let schema =
                (spec.kind as u32, spec.key_size, spec.value_size, spec.max_entries, spec.flags);
            assert_eq!(declared, schema, "{name}: (type, key, value, entries, flags)");
            seen.push(spec.name);
        }
        for spec in &names::SCHEMA {
            assert!(
                seen.contains(&spec.name),
                "{} is in the schema but not in the object",
                spec.name
            );
        }
    }
}
