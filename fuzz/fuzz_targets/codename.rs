#![no_main]
//! `cargo fuzz run codename`: see `northstar_fuzz::codename`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::codename(data));
