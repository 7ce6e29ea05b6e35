//! Bounds the verifier can see. LLVM removes a mask it can prove redundant (`i & 2047` after
//! `i < len` and `len <= 2048`) and moves masks across `|` and `+`; newer verifiers reason as
//! well, but 6.1's learns nothing from comparing two registers and treats the result of `|`,
//! `^` or a shift by a register as unknown. So every index that guards a map or packet access
//! is masked here, in the register that is used, by an instruction LLVM cannot see through.

/// `$v & $mask` (`$mask` a literal `2^n - 1`), kept in the program as written.
#[macro_export]
macro_rules! and_mask {
    ($v:expr, $mask:literal) => {{
        let v: usize = $v;
        $crate::and_mask_impl!(v, $mask)
    }};
}

#[cfg(target_arch = "bpf")]
#[doc(hidden)]
#[macro_export]
macro_rules! and_mask_impl {
    ($v:ident, $mask:literal) => {{
        let mut v = $v;
        // SAFETY: pure register arithmetic.
        unsafe {
            core::arch::asm!(
                concat!("{0} &= ", stringify!($mask)),
                inout(reg) v,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
        v
    }};
}

#[cfg(not(target_arch = "bpf"))]
#[doc(hidden)]
#[macro_export]
macro_rules! and_mask_impl {
    ($v:ident, $mask:literal) => {
        $v & $mask
    };
}
