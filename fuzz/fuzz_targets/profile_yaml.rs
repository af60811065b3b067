#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonewarden_profiles::fuzzing::profile_yaml(data));
