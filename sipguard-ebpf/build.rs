//! Rebuild the program when bpf-linker changes: cargo cannot see that binary as a dependency.
fn main() {
    // On the host (clippy, unit tests) bpf-linker is not needed and may be absent.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
