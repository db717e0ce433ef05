//! Seeker codenames and the keys derived from them (docs/PROTOCOL.md
//! §"Codenames").
//!
//! A codename is [`CODENAME_WORDS`] words drawn uniformly from the EFF large
//! word list (7776 words): 7 × log2(7776) ≈ 90.5 bits, the ≥ 90 bits
//! DESIGN.md asks for. It is generated on the seeker's device, shown once, and
//! is the *only* thing the seeker keeps: every key of theirs is derived from it.
//!
//! ```text
//! normalised = words joined by one ASCII space, each spelled as in the list
//! salt       = SHA-256("northstar/v1/codename-salt" || org_ed25519_pk[32])
//! master     = Argon2id(v=0x13, m=65536 KiB, t=3, p=1, len=32)(normalised, salt)
//! seed(p)    = HKDF-SHA256(salt = none, ikm = master,
//!                          info = "northstar/v1/seeker/" || p)[0..32]
//!   p ∈ { "identity-x25519", "identity-ed25519", "mailbox-auth",
//!         "mailbox-seal", "state-key" }
//! ```
//!
//! The salt binds the derivation to one organisation, so a table of
//! precomputed codenames is useful against one organisation only.
//!
//! Parsing is forgiving about layout and strict about words: case is ignored
//! (Unicode lower-casing), any run of non-letters (spaces, tabs, new lines,
//! hyphens, commas, dots, digits from a numbered list) separates words, and
//! separators before the first or after the last word are ignored. The four
//! hyphenated list words (`drop-down`, `felt-tip`, `t-shirt`, `yo-yo`) are
//! recognised however their halves are separated, which is unambiguous because
//! none of their first halves is a list word. Prefixes of words are **not**
//! accepted: a truncated or mistyped word must fail loudly rather than be
//! silently completed into a different key.

use core::fmt;

use diceware_wordlists::EFF_LONG_WORDLIST;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoRng;
use crate::keys::Ed25519Public;

/// Words in a codename. 7 × log2(7776) ≈ 90.47 bits ≥ the 90 bits DESIGN.md
/// requires; one more word would cost the seeker more to write down than it
/// buys against an Argon2id-hardened search.
pub const CODENAME_WORDS: usize = 7;

/// Size of the EFF large word list the words are drawn from.
pub const WORD_LIST_LEN: usize = 7776;

/// Longest input [`Codename::parse`] looks at, in bytes. Seven words of at
/// most nine letters need 69 bytes; 1 KiB allows generous spacing, numbering
/// and pasted punctuation while bounding the work an attacker-sized paste
/// can cause.
pub const MAX_CODENAME_INPUT_LEN: usize = 1024;

/// Argon2id memory cost in KiB (64 MiB). Memory-hardness is what makes a
/// guessing attack expensive; 64 MiB is what a mid-range phone browser can
/// allocate to wasm reliably. Together with [`ARGON2_T_COST`] it is chosen
/// for about one second in a phone browser (see docs/BENCHMARKS.md).
pub const ARGON2_M_COST_KIB: u32 = 64 * 1024;

/// Argon2id passes over memory (RFC 9106's second recommended option uses
/// t = 3 with 64 MiB).
pub const ARGON2_T_COST: u32 = 3;

/// Argon2id lanes. Browsers run the wasm on one thread, so more lanes would
/// buy an attacker's GPU parallelism without helping the seeker.
pub const ARGON2_P_COST: u32 = 1;

/// Domain separator of the per-organisation salt.
pub const SALT_DOMAIN: &[u8] = b"northstar/v1/codename-salt";

/// Prefix of every HKDF `info` string for the seeker's derived seeds.
pub const SEEKER_INFO_PREFIX: &[u8] = b"northstar/v1/seeker/";

/// Largest multiple of [`WORD_LIST_LEN`] below 2^16: draws at or above it are
/// rejected so every word is exactly equally likely (no modulo bias).
const REJECTION_LIMIT: u32 = (1 << 16) - (1 << 16) % WORD_LIST_LEN as u32;

/// Errors of this module. None carries a word or any part of the codename.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodenameError {
    /// The input did not contain exactly [`CODENAME_WORDS`] words.
    #[error("a codename has {expected} words, this has {got}")]
    WrongWordCount { expected: usize, got: usize },
    /// The word at `position` (1-based) is not in the word list.
    #[error("word {position} is not in the word list")]
    UnknownWord { position: usize },
    /// The input is longer than [`MAX_CODENAME_INPUT_LEN`].
    #[error("input is {got} bytes, at most {max} allowed")]
    InputTooLong { max: usize, got: usize },
    /// The key-derivation function rejected its parameters (cannot happen
    /// with the built-in constants; kept so no path panics).
    #[error("key derivation failed")]
    Kdf,
}

/// A seeker's codename: indices into the EFF large word list.
///
/// Zeroized on drop; `Debug` prints no word; `Display` prints the words
/// separated by single spaces (show it once, to be written down).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Codename {
    words: [u16; CODENAME_WORDS],
}

impl fmt::Debug for Codename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Codename(..)")
    }
}

impl fmt::Display for Codename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &w) in self.words.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word(w))?;
        }
        Ok(())
    }
}

impl PartialEq for Codename {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        let a: Zeroizing<Vec<u8>> =
            Zeroizing::new(self.words.iter().flat_map(|w| w.to_be_bytes()).collect());
        let b: Zeroizing<Vec<u8>> =
            Zeroizing::new(other.words.iter().flat_map(|w| w.to_be_bytes()).collect());
        a.ct_eq(&b).into()
    }
}
impl Eq for Codename {}

fn word(index: u16) -> &'static str {
    // Indices are only ever created below WORD_LIST_LEN.
    EFF_LONG_WORDLIST
        .get(usize::from(index))
        .copied()
        .unwrap_or("")
}

fn lookup(w: &str) -> Option<u16> {
    // The list is sorted (byte order), so binary search finds exact words.
    EFF_LONG_WORDLIST
        .binary_search(&w)
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

impl Codename {
    /// Draws a fresh codename: each word uniformly, by rejection sampling on
    /// 16-bit draws (accept `v < 62208 = 8 × 7776`, word = `v mod 7776`).
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut words = [0u16; CODENAME_WORDS];
        for slot in words.iter_mut() {
            loop {
                let mut b = [0u8; 2];
                rng.fill_bytes(&mut b);
                let v = u32::from(u16::from_be_bytes(b));
                b.zeroize();
                if v < REJECTION_LIMIT {
                    // v % 7776 < 7776 < 2^16.
                    *slot = (v % WORD_LIST_LEN as u32) as u16;
                    break;
                }
            }
        }
        Codename { words }
    }

    /// Parses what a seeker typed (see the module doc for the normalisation).
    pub fn parse(input: &str) -> Result<Self, CodenameError> {
        if input.len() > MAX_CODENAME_INPUT_LEN {
            return Err(CodenameError::InputTooLong {
                max: MAX_CODENAME_INPUT_LEN,
                got: input.len(),
            });
        }
        let lower = Zeroizing::new(input.to_lowercase());
        let tokens: Vec<&str> = lower
            .split(|c: char| !c.is_alphabetic())
            .filter(|t| !t.is_empty())
            .collect();
        // Filled in place: on any error path, dropping it zeroizes what was read.
        let mut out = Codename {
            words: [0u16; CODENAME_WORDS],
        };
        let mut count = 0usize;
        let mut joined = Zeroizing::new(String::new());
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            let found = match lookup(token) {
                Some(ix) => {
                    i += 1;
                    Some(ix)
                }
                None => {
                    // A hyphenated list word whose first half is no word.
                    let merged = tokens.get(i + 1).and_then(|next| {
                        joined.clear();
                        joined.push_str(token);
                        joined.push('-');
                        joined.push_str(next);
                        lookup(&joined)
                    });
                    i += if merged.is_some() { 2 } else { 1 };
                    merged
                }
            };
            count += 1;
            match found {
                None => return Err(CodenameError::UnknownWord { position: count }),
                Some(ix) => {
                    if let Some(slot) = out.words.get_mut(count - 1) {
                        *slot = ix;
                    }
                }
            }
        }
        if count != CODENAME_WORDS {
            return Err(CodenameError::WrongWordCount {
                expected: CODENAME_WORDS,
                got: count,
            });
        }
        Ok(out)
    }

    /// The words, separated by single spaces, in a buffer zeroized on drop
    /// (prefer this to `to_string()` when handing the codename to a UI).
    pub fn to_zeroizing_string(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(CODENAME_WORDS * 10));
        for (i, &w) in self.words.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(word(w));
        }
        s
    }

    /// The bytes Argon2id hashes: the words joined by single spaces.
    fn normalised(&self) -> Zeroizing<Vec<u8>> {
        let s = self.to_zeroizing_string();
        Zeroizing::new(s.as_bytes().to_vec())
    }

    /// Derives the seeker's secrets for organisation `org` (Argon2id, then
    /// HKDF-SHA256; see the module doc). Deliberately slow: about one second
    /// in a phone browser.
    pub fn derive(&self, org: &Ed25519Public) -> Result<SeekerSecrets, CodenameError> {
        let mut salt = Sha256::new();
        salt.update(SALT_DOMAIN);
        salt.update(org.0);
        let salt: [u8; 32] = salt.finalize().into();

        let params = argon2::Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, Some(32))
            .map_err(|_| CodenameError::Kdf)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut master = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(&self.normalised(), &salt, master.as_mut())
            .map_err(|_| CodenameError::Kdf)?;

        let hk = Hkdf::<Sha256>::new(None, master.as_ref());
        let expand = |purpose: &str| -> Result<[u8; 32], CodenameError> {
            let mut out = [0u8; 32];
            hk.expand_multi_info(&[SEEKER_INFO_PREFIX, purpose.as_bytes()], &mut out)
                .map_err(|_| CodenameError::Kdf)?;
            Ok(out)
        };
        Ok(SeekerSecrets {
            identity_x25519: expand(purpose::IDENTITY_X25519)?,
            identity_ed25519: expand(purpose::IDENTITY_ED25519)?,
            mailbox_auth: expand(purpose::MAILBOX_AUTH)?,
            mailbox_seal: expand(purpose::MAILBOX_SEAL)?,
            state_key: expand(purpose::STATE_KEY)?,
        })
    }
}

/// The HKDF purposes appended to [`SEEKER_INFO_PREFIX`].
pub mod purpose {
    pub const IDENTITY_X25519: &str = "identity-x25519";
    pub const IDENTITY_ED25519: &str = "identity-ed25519";
    pub const MAILBOX_AUTH: &str = "mailbox-auth";
    pub const MAILBOX_SEAL: &str = "mailbox-seal";
    pub const STATE_KEY: &str = "state-key";
}

/// Everything derived from a codename: 32-byte seeds for the seeker's
/// identity keys, mailbox keys and state key. Zeroized on drop; `Debug`
/// prints no bytes; not `Clone`, so the seeds exist once.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SeekerSecrets {
    identity_x25519: [u8; 32],
    identity_ed25519: [u8; 32],
    mailbox_auth: [u8; 32],
    mailbox_seal: [u8; 32],
    state_key: [u8; 32],
}

impl fmt::Debug for SeekerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeekerSecrets(..)")
    }
}

impl SeekerSecrets {
    /// Seed of the identity X25519 key (used as an X25519 scalar, clamped).
    pub fn identity_x25519_seed(&self) -> &[u8; 32] {
        &self.identity_x25519
    }
    /// Seed of the identity Ed25519 key (an RFC 8032 secret key).
    pub fn identity_ed25519_seed(&self) -> &[u8; 32] {
        &self.identity_ed25519
    }
    /// Seed of the mailbox's Ed25519 authentication key (proves ownership to the relay).
    pub fn mailbox_auth_seed(&self) -> &[u8; 32] {
        &self.mailbox_auth
    }
    /// Seed of the mailbox's X25519 sealing key (HPKE recipient key).
    pub fn mailbox_seal_seed(&self) -> &[u8; 32] {
        &self.mailbox_seal
    }
    /// The key of the seeker's encrypted state blob.
    pub fn state_key(&self) -> crate::state::StateKey {
        crate::state::StateKey::from_bytes(Zeroizing::new(self.state_key))
    }
    /// Raw state-key bytes (prefer [`SeekerSecrets::state_key`]).
    pub fn state_key_bytes(&self) -> &[u8; 32] {
        &self.state_key
    }
    /// The seeker's identity key pair.
    pub fn identity_keys(&self) -> crate::keys::IdentityKeyPair {
        crate::keys::IdentityKeyPair::from_seeds(
            Zeroizing::new(self.identity_x25519),
            Zeroizing::new(self.identity_ed25519),
        )
    }
    /// The seeker's mailbox key pair.
    pub fn mailbox_keys(&self) -> crate::keys::MailboxKeyPair {
        crate::keys::MailboxKeyPair::from_seeds(
            Zeroizing::new(self.mailbox_auth),
            Zeroizing::new(self.mailbox_seal),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn org(b: u8) -> Ed25519Public {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[b; 32]);
        Ed25519Public(sk.verifying_key().to_bytes())
    }

    #[test]
    fn word_list_digest_is_the_one_protocol_md_gives() {
        // SHA-256 of the 7776 words, each followed by one "\n", in list order.
        let mut h = Sha256::new();
        for w in EFF_LONG_WORDLIST.iter() {
            h.update(w.as_bytes());
            h.update(b"\n");
        }
        let got: [u8; 32] = h.finalize().into();
        assert_eq!(hex::encode(got), WORD_LIST_SHA256);
    }

    /// The digest docs/PROTOCOL.md §5.1 states for the word list.
    const WORD_LIST_SHA256: &str =
        "6d557f0693958fb5e650b68b5bee585eb82cf4da32965505c789e924743bc522";

    #[test]
    fn word_list_is_the_eff_large_list_and_sorted() {
        assert_eq!(EFF_LONG_WORDLIST.len(), WORD_LIST_LEN);
        assert!(EFF_LONG_WORDLIST.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(REJECTION_LIMIT, 62_208);
        // ≥ 90 bits.
        assert!(CODENAME_WORDS as f64 * (WORD_LIST_LEN as f64).log2() >= 90.0);
    }

    #[test]
    fn generation_is_roughly_uniform_and_round_trips() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let mut counts = vec![0u32; WORD_LIST_LEN];
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..2000 {
            let c = Codename::generate(&mut rng);
            for &w in &c.words {
                counts[usize::from(w)] += 1;
            }
            let shown = c.to_string();
            assert_eq!(shown.split(' ').count(), CODENAME_WORDS);
            assert_eq!(Codename::parse(&shown).unwrap(), c);
            distinct.insert(shown);
        }
        assert_eq!(distinct.len(), 2000);
        // 14 000 draws over 7776 words: expect ~1.8 each; no word should
        // dominate and most words should appear.
        assert!(counts.iter().all(|&n| n < 15));
        assert!(counts.iter().filter(|&&n| n > 0).count() > 6000);
    }

    #[test]
    fn parse_normalises_case_spacing_and_punctuation() {
        let canon = "abacus abdomen abdominal abide abiding ability ablaze";
        let c = Codename::parse(canon).unwrap();
        for variant in [
            "ABACUS Abdomen abdominal abide abiding ability ablaze",
            "  abacus\tabdomen\nabdominal   abide abiding ability ablaze.  ",
            "abacus-abdomen-abdominal-abide-abiding-ability-ablaze",
            "abacus, abdomen, abdominal, abide, abiding, ability, ablaze",
            "1. abacus 2. abdomen 3. abdominal 4. abide 5. abiding 6. ability 7. ablaze",
            "abacus.abdomen.abdominal.abide.abiding.ability.ablaze",
            "\u{00a0}ABACUS\u{2003}abdomen abdominal abide abiding ability ablaze!",
        ] {
            assert_eq!(Codename::parse(variant).unwrap(), c, "{variant}");
        }
        assert_eq!(c.to_string(), canon);
    }

    #[test]
    fn hyphenated_words_parse_however_separated() {
        let c = Codename::parse("t-shirt yo-yo drop-down felt-tip yoyo down shirt").unwrap();
        assert_eq!(
            c.to_string(),
            "t-shirt yo-yo drop-down felt-tip yoyo down shirt"
        );
        let d = Codename::parse("T SHIRT yo yo drop down felt tip yoyo down shirt").unwrap();
        assert_eq!(c, d);
        assert_ne!(
            Codename::parse("yoyo yoyo yoyo yoyo yoyo yoyo yoyo").unwrap(),
            Codename::parse("yo-yo yoyo yoyo yoyo yoyo yoyo yoyo").unwrap()
        );
    }

    #[test]
    fn wrong_count_and_unknown_words_fail_without_echo() {
        assert_eq!(
            Codename::parse("abacus abdomen"),
            Err(CodenameError::WrongWordCount {
                expected: 7,
                got: 2
            })
        );
        assert_eq!(
            Codename::parse(""),
            Err(CodenameError::WrongWordCount {
                expected: 7,
                got: 0
            })
        );
        assert_eq!(
            Codename::parse("abacus abdomen abdominal abide abiding ability ablaze ablaze"),
            Err(CodenameError::WrongWordCount {
                expected: 7,
                got: 8
            })
        );
        let e = Codename::parse("abacus abdomen zzzsecretzzz abide abiding ability ablaze")
            .unwrap_err();
        assert_eq!(e, CodenameError::UnknownWord { position: 3 });
        assert!(!e.to_string().contains("zzzsecretzzz"));
        // Prefixes are not completed; accented letters are not folded.
        assert!(Codename::parse("abac abdomen abdominal abide abiding ability ablaze").is_err());
        assert!(Codename::parse("abacús abdomen abdominal abide abiding ability ablaze").is_err());
        let long = "a ".repeat(600);
        assert!(matches!(
            Codename::parse(&long),
            Err(CodenameError::InputTooLong { .. })
        ));
    }

    #[test]
    fn debug_prints_no_words_or_bytes() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let c = Codename::generate(&mut rng);
        let dbg = format!("{c:?}");
        assert_eq!(dbg, "Codename(..)");
        for w in c.to_string().split(' ') {
            assert!(!dbg.contains(w));
        }
        let s = c.derive(&org(1)).unwrap();
        assert_eq!(format!("{s:?}"), "SeekerSecrets(..)");
    }

    #[test]
    fn derivation_is_deterministic_separated_and_per_org() {
        let c = Codename::parse("abacus abdomen abdominal abide abiding ability ablaze").unwrap();
        let a = c.derive(&org(1)).unwrap();
        let b = c.derive(&org(1)).unwrap();
        let other = c.derive(&org(2)).unwrap();
        assert_eq!(a.identity_x25519_seed(), b.identity_x25519_seed());
        assert_eq!(a.state_key_bytes(), b.state_key_bytes());
        assert_ne!(a.identity_x25519_seed(), other.identity_x25519_seed());
        assert_ne!(a.mailbox_auth_seed(), other.mailbox_auth_seed());
        let all = [
            a.identity_x25519_seed(),
            a.identity_ed25519_seed(),
            a.mailbox_auth_seed(),
            a.mailbox_seal_seed(),
            a.state_key_bytes(),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        let c2 =
            Codename::parse("abacus abdomen abdominal abide abiding ability ablaze zoom").err();
        assert!(c2.is_some());
    }

    #[test]
    fn vectors() {
        let org_key = crate::directory::OrgSigningKey::from_seed(&[0x0a; 32]);
        let org_pk = *org_key.public().as_ed25519();
        let mut cases = Vec::new();
        let mut rng = ChaCha20Rng::from_seed([0x0c; 32]);
        let generated: Vec<Codename> = (0..2).map(|_| Codename::generate(&mut rng)).collect();
        for (i, c) in generated.iter().enumerate() {
            let s = c.derive(&org_pk).unwrap();
            let id = s.identity_keys().public();
            let mb = s.mailbox_keys().public();
            let mut salt = Sha256::new();
            salt.update(SALT_DOMAIN);
            salt.update(org_pk.0);
            let salt: [u8; 32] = salt.finalize().into();
            cases.push(serde_json::json!({
                "rng_seed": "0c".repeat(32),
                "draw": i,
                "codename": c.to_string(),
                "word_indices": c.words.to_vec(),
                "org_ed25519_public": hex::encode(org_pk.0),
                "salt": hex::encode(salt),
                "seed_identity_x25519": hex::encode(s.identity_x25519_seed()),
                "seed_identity_ed25519": hex::encode(s.identity_ed25519_seed()),
                "seed_mailbox_auth": hex::encode(s.mailbox_auth_seed()),
                "seed_mailbox_seal": hex::encode(s.mailbox_seal_seed()),
                "seed_state_key": hex::encode(s.state_key_bytes()),
                "identity_x25519_public": hex::encode(id.x25519.0),
                "identity_ed25519_public": hex::encode(id.ed25519.0),
                "mailbox_auth_public": hex::encode(mb.auth.0),
                "mailbox_seal_public": hex::encode(mb.seal.0),
                "mailbox_id": mb.id().to_hex(),
            }));
        }
        let canonical = generated[0].to_string();
        let upper = canonical.to_uppercase();
        let variants = [
            upper.replace(' ', "-"),
            format!("  {} .", canonical.replace(' ', ",\t")),
        ];
        for v in &variants {
            assert_eq!(Codename::parse(v).unwrap(), generated[0]);
        }
        let json = serde_json::json!({
            "description": "Codenames: 7 words of the EFF large list drawn from ChaCha20Rng::from_seed(rng_seed) (rejection sampling on big-endian u16 draws), and the seeds derived with Argon2id + HKDF-SHA256 for the organisation key (org signing seed = 0x0a * 32). Public keys: X25519 scalar = seed (clamped), Ed25519 = RFC 8032 from seed.",
            "argon2id": { "m_cost_kib": ARGON2_M_COST_KIB, "t_cost": ARGON2_T_COST, "p_cost": ARGON2_P_COST, "version": 19, "output_len": 32 },
            "cases": cases,
            "parse_equivalents": { "canonical": canonical, "inputs": variants },
            "parse_failures": [
                { "input": "abacus abdomen", "error": "WrongWordCount { expected: 7, got: 2 }" },
                { "input": "abacus abdomen notaword abide abiding ability ablaze", "error": "UnknownWord { position: 3 }" }
            ],
        });
        crate::state::vectors::check("codename.json", &json);
    }

    /// Native release-mode timing of the Argon2id step, for docs/BENCHMARKS.md:
    /// `cargo test -p northstar-core --release -- --ignored codename_kdf_timing --nocapture`
    #[test]
    #[ignore]
    fn codename_kdf_timing() {
        let c = Codename::parse("abacus abdomen abdominal abide abiding ability ablaze").unwrap();
        let start = std::time::Instant::now();
        let n = 5;
        for _ in 0..n {
            let _ = c.derive(&org(1)).unwrap();
        }
        println!("codename derive: {:?} per derivation", start.elapsed() / n);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Codename::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_word_soup(ws in proptest::collection::vec(0usize..WORD_LIST_LEN, 0..12), sep in "[ ,.\\-\t\n]{1,3}") {
            let s = ws.iter().map(|&i| EFF_LONG_WORDLIST[i]).collect::<Vec<_>>().join(&sep);
            let r = Codename::parse(&s);
            if ws.len() == CODENAME_WORDS {
                let c = r.unwrap();
                prop_assert_eq!(c.to_string(), ws.iter().map(|&i| EFF_LONG_WORDLIST[i]).collect::<Vec<_>>().join(" "));
            }
        }
    }
}
