#![no_main]
//! `cargo fuzz run prekey_bundle`: see `northstar_fuzz::prekey_bundle`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| northstar_fuzz::prekey_bundle(data));
