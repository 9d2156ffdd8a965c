//! Build settings of the kernel program.
fn main() {
    // Cargo cannot express a dependency on a binary, so the linker's path is the cache key
    // that rebuilds the program when `bpf-linker` changes.
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo::rerun-if-changed={}", path.display()),
        Err(error) => {
            println!("cargo::warning=bpf-linker not found ({error}); run `cargo xtask setup`")
        }
    }
    // The payload scanner loads 8-byte words at any byte offset. Without this LLVM splits
    // every such load into eight byte loads; x86-64 and arm64 load misaligned words
    // natively and the verifier allows it unless a program asks for strict alignment.
    println!("cargo::rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
