#![no_main]
//! `cargo fuzz run directory`: see `northstar_fuzz::directory`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::directory(data));
