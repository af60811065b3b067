#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonewarden_cni::fuzzing::env(data));
