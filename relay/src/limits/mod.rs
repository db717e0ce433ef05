//! Anti-abuse limits enforced per connection (the per-mailbox quotas live in
//! the store, the WebSocket cap in the server, the TCP cap and idle timeout
//! in [`socket`]).

pub mod rate;
pub mod socket;
