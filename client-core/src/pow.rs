//! Hashcash-style proof of work on deposits (docs/PROTOCOL.md §"Relay", "Proof of work").
//!
//! A deposit batch addressed to a mailbox registered as "needs proof of work"
//! (counselor intake mailboxes) must carry a nonce such that
//!
//! ```text
//! SHA-256("northstar/v1/pow" || challenge[32] || batch_hash[32] || nonce:u64 BE)
//! ```
//!
//! starts with at least [`batch_difficulty`]`(difficulty, count)` zero bits:
//! the relay's announced `difficulty` plus `ceil(log2(count))` for a batch of
//! `count` envelopes, so a batch costs at least `count` times the work of one
//! envelope. `challenge` is the 32 random bytes the relay sent in its hello
//! (rotated after every accepted proof), and `batch_hash` is
//! [`crate::frame::deposit_batch_hash`] of the envelopes, so one proof covers
//! exactly one batch on exactly one connection.
//!
//! The proof blunts floods from a single client without identities; it is not
//! meant to stop a determined attacker with hardware.

use sha2::{Digest, Sha256};

/// Domain separation prefix of every proof-of-work hash.
pub const POW_DOMAIN: &[u8] = b"northstar/v1/pow";

/// Length of the relay's per-connection proof-of-work challenge.
pub const CHALLENGE_LEN: usize = 32;

/// Default difficulty in leading zero bits: 16 bits means 2^16 = 65 536
/// hashes expected. Each attempt is one SHA-256 compression (the first block
/// is precomputed), and a browser running this crate as wasm does roughly
/// 0.5–1 million compressions per second, so ≈ 65–130 ms: unnoticeable to a
/// person sending a message, but a flood of a million deposits costs the
/// flooder 2^36 hashes.
pub const DEFAULT_DIFFICULTY: u8 = 16;

/// Largest difficulty a client will attempt and a relay may demand: 2^28
/// expected hashes (minutes in a browser). Anything above would make deposits
/// unusable, so a relay asking for more is refused rather than obeyed.
pub const MAX_DIFFICULTY: u8 = 28;

/// The difficulty a deposit batch of `count` envelopes must meet when the
/// relay announces `difficulty`: `difficulty + ceil(log2(count))` leading
/// zero bits (one envelope: `difficulty`; 2: +1; 3–4: +2; 5–8: +3; 9–16: +4;
/// 17–32: +5; 33–64: +6). The expected work, `2^(difficulty +
/// ceil(log2(count)))` hashes, is at least `count × 2^difficulty`: filling a
/// mailbox costs the same whether its envelopes come one by one or 64 to a
/// batch. Saturates at `u8::MAX` (a count of 0 counts as 1).
pub fn batch_difficulty(difficulty: u8, count: usize) -> u8 {
    let extra = match count {
        0 | 1 => 0,
        n => usize::BITS - (n - 1).leading_zeros(),
    };
    difficulty.saturating_add(u8::try_from(extra).unwrap_or(u8::MAX))
}

/// The most envelopes one batch may carry when the relay announces
/// `difficulty` without its [`batch_difficulty`] going over
/// [`MAX_DIFFICULTY`] (at least 1: a single envelope needs `difficulty`).
pub fn max_batch_at(difficulty: u8) -> usize {
    1usize << MAX_DIFFICULTY.saturating_sub(difficulty).min(16)
}

/// Errors of this module.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PowError {
    /// The requested difficulty is above [`MAX_DIFFICULTY`].
    #[error("difficulty {got} above the maximum {max}")]
    DifficultyTooHigh { max: u8, got: u8 },
    /// The nonce does not give enough leading zero bits.
    #[error("proof of work has {got} leading zero bits, {required} required")]
    Insufficient { required: u8, got: u32 },
    /// No nonce in the searched range works (only from [`solve_range`]).
    #[error("no solution in the searched range")]
    NotFound,
}

/// The hasher state after the fixed prefix (domain, challenge, batch hash):
/// the search only hashes the nonce on top of a clone of it.
fn prefix(challenge: &[u8; CHALLENGE_LEN], batch_hash: &[u8; 32]) -> Sha256 {
    let mut h = Sha256::new();
    h.update(POW_DOMAIN);
    h.update(challenge);
    h.update(batch_hash);
    h
}

/// Number of leading zero bits of a hash.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in hash {
        if *b == 0 {
            n += 8;
        } else {
            n += b.leading_zeros();
            break;
        }
    }
    n
}

fn bits_for(prefix: &Sha256, nonce: u64) -> u32 {
    let mut h = prefix.clone();
    h.update(nonce.to_be_bytes());
    leading_zero_bits(&h.finalize().into())
}

/// Searches nonces `start .. start + count` (for callers that must yield
/// between slices, like a browser's event loop).
pub fn solve_range(
    challenge: &[u8; CHALLENGE_LEN],
    batch_hash: &[u8; 32],
    difficulty: u8,
    start: u64,
    count: u64,
) -> Result<u64, PowError> {
    if difficulty > MAX_DIFFICULTY {
        return Err(PowError::DifficultyTooHigh {
            max: MAX_DIFFICULTY,
            got: difficulty,
        });
    }
    let p = prefix(challenge, batch_hash);
    let end = start.saturating_add(count);
    (start..end)
        .find(|n| bits_for(&p, *n) >= u32::from(difficulty))
        .ok_or(PowError::NotFound)
}

/// Finds a nonce for the batch (clients). Expected `2^difficulty` hashes.
pub fn solve(
    challenge: &[u8; CHALLENGE_LEN],
    batch_hash: &[u8; 32],
    difficulty: u8,
) -> Result<u64, PowError> {
    solve_range(challenge, batch_hash, difficulty, 0, u64::MAX)
}

/// Checks a nonce (relay). One hash.
pub fn verify(
    challenge: &[u8; CHALLENGE_LEN],
    batch_hash: &[u8; 32],
    difficulty: u8,
    nonce: u64,
) -> Result<(), PowError> {
    let got = bits_for(&prefix(challenge, batch_hash), nonce);
    if got >= u32::from(difficulty) {
        Ok(())
    } else {
        Err(PowError::Insufficient {
            required: difficulty,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn solve_then_verify() {
        let c = [7u8; 32];
        let b = [9u8; 32];
        let n = solve(&c, &b, 12).unwrap();
        verify(&c, &b, 12, n).unwrap();
        // The same nonce is (almost surely) useless for another challenge or batch.
        let other = (0..4u8)
            .filter(|i| verify(&[*i; 32], &b, 12, n).is_ok())
            .count();
        assert!(other <= 1);
        assert_eq!(
            solve(&c, &b, MAX_DIFFICULTY + 1),
            Err(PowError::DifficultyTooHigh {
                max: MAX_DIFFICULTY,
                got: MAX_DIFFICULTY + 1
            })
        );
        verify(&c, &b, 0, 12345).unwrap();
    }

    #[test]
    fn matches_spelled_out_hash() {
        let c = [1u8; 32];
        let b = [2u8; 32];
        let n = solve(&c, &b, 8).unwrap();
        let mut input = Vec::new();
        input.extend_from_slice(b"northstar/v1/pow");
        input.extend_from_slice(&c);
        input.extend_from_slice(&b);
        input.extend_from_slice(&n.to_be_bytes());
        let h: [u8; 32] = Sha256::digest(&input).into();
        assert!(leading_zero_bits(&h) >= 8);
        assert_eq!(h[0], 0);
    }

    #[test]
    fn a_batch_needs_a_bit_more_for_each_doubling_of_its_envelopes() {
        let table = [
            (1, 16),
            (2, 17),
            (3, 18),
            (4, 18),
            (5, 19),
            (8, 19),
            (9, 20),
            (16, 20),
            (17, 21),
            (32, 21),
            (33, 22),
            (64, 22),
        ];
        for (count, bits) in table {
            assert_eq!(batch_difficulty(16, count), bits, "{count} envelopes");
        }
        assert_eq!(batch_difficulty(16, 0), 16);
        assert_eq!(batch_difficulty(u8::MAX, 64), u8::MAX);
        // The expected work covers every envelope: 2^extra >= count.
        for count in 1..=64usize {
            let extra = batch_difficulty(0, count);
            assert!(1usize << extra >= count, "{count}");
            assert!(
                count == 1 || 1usize << (extra - 1) < count,
                "the least such"
            );
        }
        assert_eq!(max_batch_at(16), 4096);
        assert_eq!(max_batch_at(26), 4);
        assert_eq!(max_batch_at(MAX_DIFFICULTY), 1);
        assert_eq!(max_batch_at(u8::MAX), 1);
        for d in 0..=MAX_DIFFICULTY {
            assert!(batch_difficulty(d, max_batch_at(d).min(64)) <= MAX_DIFFICULTY);
        }
    }

    #[test]
    fn leading_zeros_counts_bits() {
        let mut h = [0u8; 32];
        assert_eq!(leading_zero_bits(&h), 256);
        h[1] = 0x10;
        assert_eq!(leading_zero_bits(&h), 11);
    }

    proptest! {
        #[test]
        fn verify_never_panics(c in any::<[u8; 32]>(), b in any::<[u8; 32]>(), d in any::<u8>(), n in any::<u64>()) {
            let _ = verify(&c, &b, d, n);
        }
    }
}
