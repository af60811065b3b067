#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonewarden_enforcer::fuzzing::conntrack_events(data));
