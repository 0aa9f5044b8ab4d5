//! Generates the service and messages from `proto/inference.proto` (needs `protoc`, which
//! `scripts/setup.sh` installs).

fn main() {
    let proto = "proto/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let built = tonic_prost_build::configure()
        // Tensor bytes are sliced out of the received buffer instead of copied.
        .bytes(".inference")
        .codec_path("crate::codec::StrictCodec")
        .compile_protos(&[proto], &["proto"]);
    if let Err(e) = built {
        let hint = if e.to_string().contains("protoc") { " (is protoc installed? run scripts/setup.sh)" } else { "" };
        eprintln!("cannot generate the gRPC code from {proto}{hint}: {e}");
        std::process::exit(1);
    }
}
