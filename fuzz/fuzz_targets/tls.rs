//! Fuzz target: `l7mark::proto::tls`, with the invariants of `l7mark_fuzz::check_tls`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7mark_fuzz::check_tls(data));
