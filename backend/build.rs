//! Link-time fixes for libtorch from the Python wheel.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let lib = libtorch.join("lib");
    // Finds libtorch at run time without LD_LIBRARY_PATH; RUNPATH still yields to
    // LD_LIBRARY_PATH, which is how a binary carried to another machine finds its torch.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The linker's default --as-needed drops libtorch_cuda.so because no symbol of it is
    // referenced directly; without it libtorch reports CUDA as unavailable.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{},-ltorch_cuda,--as-needed", lib.display());
    }
}
