//! wasm-bindgen bridge of northstar-core (to be written). A bridge, not API.
