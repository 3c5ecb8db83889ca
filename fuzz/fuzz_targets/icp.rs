//! Fuzz target: `l7mark::proto::icp`, with the invariants of `l7mark_fuzz::check_icp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7mark_fuzz::check_icp(data));
