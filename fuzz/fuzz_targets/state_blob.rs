#![no_main]
//! `cargo fuzz run state_blob`: see `northstar_fuzz::state_blob`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::state_blob(data));
