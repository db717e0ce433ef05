#![no_main]
//! `cargo fuzz run app_message`: see `northstar_fuzz::app_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::app_message(data));
