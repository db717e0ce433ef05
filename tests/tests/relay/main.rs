//! The relay end to end: the real `northstar-relay` binary on 127.0.0.1,
//! driven over real WebSockets. Build it first:
//! `cargo build -p northstar-relay && cargo test -p northstar-e2e`
//! (see `northstar_e2e`'s crate doc for how the binary is found).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod durability;
mod faults;
mod hostile;
mod limits;
mod metrics;
mod node_kill;
mod nodes;
mod pressure;
mod protocol;
mod seized;

use northstar_core::UnixTime;

/// Seconds since the epoch, for expiry checks.
pub fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}
