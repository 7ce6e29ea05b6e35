//! Attaching, adopting and detaching the loaded programs: the XDP entry program's link per
//! interface (with its jump table pinned beside it), and the response program's egress hook.

use std::path::Path;

use anyhow::Context as _;
use aya::{
    programs::{
        LinkOrder, TcAttachType, Xdp, XdpMode,
        links::{FdLink, Link as _, PinnedLink},
        tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        xdp::XdpLink,
    },
    util::KernelVersion,
};
use sipguard_common::maps as names;

use super::{Loaded, entry, responses};
use crate::kernel::{pin::PinLayout, sys};

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
    /// Attaches to `iface` and pins the link, or adopts the link already pinned for it. The
    /// entry program's jump table is pinned for the interface before the link runs it, and
    /// stays pinned while it does: the kernel empties a jump table when its last descriptor
    /// and pin go, and the link alone does not keep it.
    pub fn attach(
        &mut self,
        layout: &PinLayout,
        iface: &str,
        mode: AttachMode,
    ) -> anyhow::Result<Attached> {
        let pin = layout.link(iface);
        if pin.exists() {
            // The new table is pinned beside the old one until the link has moved, so the
            // program the link runs always has its own.
            let next = layout.stages_next(iface);
            self.pin_stages(&next)?;
            let adopted = adopt(entry(&mut self.ebpf)?, &pin);
            match adopted {
                Ok(()) => {
                    self.pin_stages(&layout.stages(iface))?;
                    remove_pin(&next)?;
                    return Ok(Attached::Adopted);
                }
                Err(AdoptError::Defunct) => {
                    log::warn!("{iface}: the pinned link outlived its interface; attaching afresh");
                    remove_pin(&next)?;
                    std::fs::remove_file(&pin)
                        .with_context(|| format!("removing stale {}", pin.display()))?;
                }
                Err(AdoptError::Other(e)) => {
                    remove_pin(&next)?;
                    return Err(e.context(format!("adopting the link pinned at {}", pin.display())));
                }
            }
        }
        let index = sys::ifindex(iface).with_context(|| format!("no such interface: {iface}"))?;
        let stages = layout.stages(iface);
        self.pin_stages(&stages)?;
        self.attach_new(layout, iface, index, mode).inspect_err(|_| {
            if let Err(e) = remove_pin(&stages) {
                log::warn!("{iface}: {e:#}");
            }
        })
    }

    /// Pins this load's jump table at `path`, in place of whatever was pinned there.
    fn pin_stages(&self, path: &Path) -> anyhow::Result<()> {
        remove_pin(path)?;
        self.ebpf
            .map(names::STAGES)
            .context("the object has no jump table")?
            .pin(path)
            .with_context(|| format!("pinning the jump table at {}", path.display()))
    }

    fn attach_new(
        &mut self,
        layout: &PinLayout,
        iface: &str,
        index: u32,
        mode: AttachMode,
    ) -> anyhow::Result<Attached> {
        let pin = layout.link(iface);
        let prog = entry(&mut self.ebpf)?;
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

/// Removes `path`'s pin, if there is one.
fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Unpins the jump table pinned for `iface` (after its link is gone).
pub fn unpin_stages(layout: &PinLayout, iface: &str) -> anyhow::Result<()> {
    remove_pin(&layout.stages_next(iface))?;
    remove_pin(&layout.stages(iface))
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
pub fn detach_pinned(pin: &Path, what: &str) -> anyhow::Result<()> {
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

fn adopt(prog: &mut Xdp, pin: &Path) -> Result<(), AdoptError> {
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
