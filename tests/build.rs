fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cri_runtime_v1.proto");
    // Only a client: the tests talk to a real containerd.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/cri_runtime_v1.proto"], &["proto"])?;
    Ok(())
}
