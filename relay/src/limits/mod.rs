//! Anti-abuse limits enforced per connection (the per-mailbox quotas live in
//! the store, the connection cap in the server).

pub mod rate;
