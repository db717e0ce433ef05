#![no_main]
//! `cargo fuzz run attachment`: see `northstar_fuzz::attachment`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::attachment(data));
