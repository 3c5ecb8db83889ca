//! Fuzz target: `l7mark::proto::ip`, with the invariants of `l7mark_fuzz::check_ip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7mark_fuzz::check_ip(data));
