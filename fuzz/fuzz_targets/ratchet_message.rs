#![no_main]
//! `cargo fuzz run ratchet_message`: see `northstar_fuzz::ratchet_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::ratchet_message(data));
