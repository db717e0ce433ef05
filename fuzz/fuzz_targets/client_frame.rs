#![no_main]
//! `cargo fuzz run client_frame`: see `northstar_fuzz::client_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::client_frame(data));
