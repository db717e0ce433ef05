//! Every maximum of the relay wire protocol in one place, each with why it
//! has that value, and compile-time checks that related limits agree (a
//! structure's own maximum must fit the frame that carries it). The
//! structures' own limits stay beside them (`directory`, `state`,
//! `sealed`, `message`); the codec here refers to those, never to a looser
//! copy.

use crate::directory::MAX_SIGNED_DIRECTORY_LEN;
use crate::pqxdh::{MAX_SIGNED_BUNDLE_LEN, ONE_TIME_PQ_PREKEY_PUBLIC_LEN};
use crate::sealed::{ENVELOPE_HEADER_LEN, MAX_CIPHERTEXT_LEN};
use crate::state::MAX_STATE_BLOB_LEN;

/// `version || request_id || tag`.
pub const FRAME_HEADER_LEN: usize = 6;

/// Absolute ceiling on an encoded frame: a full batch of the largest
/// envelopes (64 × ~64 KiB ≈ 4.2 MB) or the largest state blob fits; a relay
/// configures a lower limit and announces it in its hello (clients batch by
/// the announced one).
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Most envelopes in one deposit batch: a seeker fans one message out to
/// every device of the intake set, and 64 devices is beyond any team we
/// plan for; larger sets split into several batches (each with its own proof).
pub const MAX_BATCH_ENVELOPES: usize = 64;

/// Most envelope ids in one acknowledgement: a client acknowledges what it
/// has processed in slices, and 256 × 32 bytes keeps the frame small.
pub const MAX_ACK_IDS: usize = 256;

/// Largest directory a frame carries: exactly the signed directory's own
/// maximum (`directory::MAX_SIGNED_DIRECTORY_LEN`).
pub const MAX_DIRECTORY_LEN: usize = MAX_SIGNED_DIRECTORY_LEN;

/// Largest signed prekey bundle a frame carries (identity, signed X25519
/// prekey, signed ML-KEM-768 prekey of 1184 bytes, signatures): about
/// 1.5 KB today, with room for one more post-quantum key.
pub const MAX_PREKEY_BUNDLE_LEN: usize = 4096;

/// A one-time prekey on the wire: `id:u32 || x25519_pk[32]`.
pub const ONE_TIME_PREKEY_LEN: usize = 36;

/// Most one-time prekeys in one upload (the relay's per-mailbox cap may be lower).
pub const MAX_PREKEYS_PER_UPLOAD: usize = 1000;

/// A one-time ML-KEM prekey on the wire: `id:u32 || pk[1184] || sig[64]`
/// (`pqxdh::ONE_TIME_PQ_PREKEY_PUBLIC_LEN`).
pub const ONE_TIME_PQ_PREKEY_LEN: usize = ONE_TIME_PQ_PREKEY_PUBLIC_LEN;

/// Most one-time ML-KEM prekeys in one upload (1.25 MB at most; the relay's
/// per-mailbox cap and frame limit may be lower, and clients split an
/// upload into frames that fit the relay's announced limit).
pub const MAX_PQ_PREKEYS_PER_UPLOAD: usize = 1000;

/// Largest encrypted seeker-state blob a frame carries: exactly the state
/// blob's own maximum (`state::MAX_STATE_BLOB_LEN`); a relay may configure
/// a lower cap.
pub const MAX_STATE_LEN: usize = MAX_STATE_BLOB_LEN;

/// Largest encoded envelope.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_HEADER_LEN + MAX_CIPHERTEXT_LEN;

/// The `replace` flag that ends an `UploadPrekeys` body.
const REPLACE_FLAG_LEN: usize = 1;

// Every structure fits the frame that carries it.
const _: () = assert!(MAX_PREKEY_BUNDLE_LEN >= MAX_SIGNED_BUNDLE_LEN);
const _: () = assert!(FRAME_HEADER_LEN + 4 + MAX_DIRECTORY_LEN <= MAX_FRAME_LEN);
const _: () = assert!(FRAME_HEADER_LEN + 4 + 4 + MAX_STATE_LEN <= MAX_FRAME_LEN);
const _: () =
    assert!(FRAME_HEADER_LEN + 1 + 8 + 2 + MAX_BATCH_ENVELOPES * MAX_ENVELOPE_LEN <= MAX_FRAME_LEN);
const _: () = assert!(FRAME_HEADER_LEN + 2 + MAX_ACK_IDS * 32 <= MAX_FRAME_LEN);
const _: () = assert!(
    FRAME_HEADER_LEN
        + 2
        + MAX_PREKEY_BUNDLE_LEN
        + 2
        + MAX_PREKEYS_PER_UPLOAD * ONE_TIME_PREKEY_LEN
        + 2
        + MAX_PQ_PREKEYS_PER_UPLOAD * ONE_TIME_PQ_PREKEY_LEN
        + REPLACE_FLAG_LEN
        <= MAX_FRAME_LEN
);
// A seeker's whole fan-out fits one maximal batch.
const _: () = assert!(crate::client::seeker::MAX_INTAKE_DEVICES <= MAX_BATCH_ENVELOPES);
