fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/zonewarden.proto");
    println!("cargo:rerun-if-changed=proto/audit.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/zonewarden.proto", "proto/audit.proto"], &["proto"])?;
    Ok(())
}
