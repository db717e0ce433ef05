//! Helpers for the end-to-end tests: start the real relay binary on
//! 127.0.0.1 with a temporary data directory (to be written).
