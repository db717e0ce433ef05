#![no_main]
//! `cargo fuzz run saved_state`: see `northstar_fuzz::saved_state`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::saved_state(data));
