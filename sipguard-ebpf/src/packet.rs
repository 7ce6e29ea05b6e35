//! Bounds-checked access to the frame. Every read goes through [`Packet::bytes`], whose single
//! comparison against `data_end` is the form the verifier understands.

/// The frame is shorter than a header claims.
#[derive(Clone, Copy, Debug)]
pub struct Truncated;

#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// `N` bytes at `offset`, or [`Truncated`].
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, offset: usize) -> Result<&[u8; N], Truncated> {
        let p = self.start + offset;
        if p + N > self.end {
            return Err(Truncated);
        }
        // SAFETY: `p..p + N` lies inside the frame, which outlives the program run.
        Ok(unsafe { &*(p as *const [u8; N]) })
    }

    #[inline(always)]
    pub fn u16_at(&self, offset: usize) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(*self.bytes::<2>(offset)?))
    }

    /// Whether at least one byte exists at `offset`.
    #[inline(always)]
    pub fn has_byte(&self, offset: usize) -> bool {
        self.start + offset < self.end
    }
}
