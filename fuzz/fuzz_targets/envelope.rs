#![no_main]
//! `cargo fuzz run envelope`: see `northstar_fuzz::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::envelope(data));
