//! The Northstar relay (to be written).
#![forbid(unsafe_code)]
