fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/zonewarden.proto");
    tonic_prost_build::configure().compile_protos(&["proto/zonewarden.proto"], &["proto"])?;
    Ok(())
}
