//! Bounds-checked access to the frame. Every read goes through [`Packet::bytes`], whose single
//! comparison against `data_end` is the form the verifier understands.

/// The frame is shorter than a header claims.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Truncated;

#[derive(Clone, Copy)]
pub(crate) struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// `N` bytes at `offset`, or [`Truncated`].
    #[inline(always)]
    pub(crate) fn bytes<const N: usize>(&self, offset: usize) -> Result<&[u8; N], Truncated> {
        let p = self.start + offset;
        if p + N > self.end {
            return Err(Truncated);
        }
        // SAFETY: `p..p + N` lies inside the frame, which outlives the program run.
        Ok(unsafe { &*(p as *const [u8; N]) })
    }

    #[inline(always)]
    pub(crate) fn u16_at(&self, offset: usize) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(*self.bytes::<2>(offset)?))
    }

    /// `N` bytes at a computed `offset` (one that came through maps or loops). The offset is
    /// masked to [`OFFSET_MASK`] in the register the access uses: LLVM knows the bound from an
    /// earlier check and drops a repeated one, while older verifiers (6.1) do not carry a
    /// bound from a register to its spilled copies and refuse the access as possibly outside
    /// the packet. (The mask also keeps offset + N within the verifier's 64 KiB packet range.)
    #[inline(always)]
    pub(crate) fn bytes_at<const N: usize>(&self, offset: usize) -> Result<&[u8; N], Truncated> {
        self.bytes::<N>(mask_offset(offset))
    }

    /// Whether at least one byte exists at `offset`.
    #[inline(always)]
    pub(crate) fn has_byte(&self, offset: usize) -> bool {
        self.start + offset < self.end
    }
}

/// The largest computed offset [`Packet::bytes_at`] reads at: no real frame's payload starts
/// further in.
pub(crate) const OFFSET_MASK: usize = 0x3fff;

/// `v & OFFSET_MASK`, kept (see [`crate::bound`]).
#[inline(always)]
pub(crate) fn mask_offset(v: usize) -> usize {
    const _: () = assert!(OFFSET_MASK == 16383, "spelled out below");
    sipguard_ebpf::and_mask!(v, 0x3fff)
}

/// Four bytes at `at` of a header already checked against the frame's end (`Packet::bytes`),
/// as one little-endian load: built from bytes, an address costs four loads and three shifts.
#[inline(always)]
pub(crate) fn le32<const N: usize>(h: &[u8; N], at: usize) -> u32 {
    debug_assert!(at + 4 <= N);
    let p = h.as_ptr().wrapping_add(at);
    #[cfg(target_arch = "bpf")]
    {
        let v: u32;
        // SAFETY: `p..p + 4` lies inside the checked header; BPF loads need no alignment.
        unsafe {
            core::arch::asm!("{0} = *(u32 *)({1} + 0)", out(reg) v, in(reg) p, options(readonly, nostack, preserves_flags));
        }
        v
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above; the host build exists for lints only.
    unsafe {
        core::ptr::read_unaligned(p.cast::<u32>())
    }
}

/// Eight bytes at `at` of a checked header, as one little-endian load (see [`le32`]).
#[inline(always)]
pub(crate) fn le64<const N: usize>(h: &[u8; N], at: usize) -> u64 {
    debug_assert!(at + 8 <= N);
    let p = h.as_ptr().wrapping_add(at);
    #[cfg(target_arch = "bpf")]
    {
        let v: u64;
        // SAFETY: `p..p + 8` lies inside the checked header; BPF loads need no alignment.
        unsafe {
            core::arch::asm!("{0} = *(u64 *)({1} + 0)", out(reg) v, in(reg) p, options(readonly, nostack, preserves_flags));
        }
        v
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    unsafe {
        core::ptr::read_unaligned(p.cast::<u64>())
    }
}
