#![no_main]
//! `cargo fuzz run server_frame`: see `northstar_fuzz::server_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::server_frame(data));
