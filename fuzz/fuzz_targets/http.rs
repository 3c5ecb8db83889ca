//! Fuzz target: `l7mark::proto::http`, with the invariants of `l7mark_fuzz::check_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7mark_fuzz::check_http(data));
