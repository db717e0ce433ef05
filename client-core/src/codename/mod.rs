//! Seeker codenames and the keys derived from them (docs/PROTOCOL.md
//! §"Codenames").
//!
//! A codename is a few words in the seeker's language, drawn uniformly from
//! that language's list ([`lists`]): 7 words of the EFF large list (7776
//! words, 90.5 bits) in English, 9 words of a 2048-word list (99 bits) in
//! Spanish, French and Haitian Creole — at least the 90 bits DESIGN.md asks
//! for. Two **check words** follow, computed from the others: one word
//! miscopied into another list word is caught, and its position named
//! ([`CodenameError::WrongWord`]), instead of silently opening nothing.
//! The codename is generated on the seeker's device, shown once, and is the
//! *only* thing the seeker keeps: every key of theirs is derived from it.
//!
//! ```text
//! check      = SHA-256("northstar/v2/codename-check" || tag || 0x00 || index_u16be*)
//! check word = BE32(check[0..4]) mod N,  BE32(check[4..8]) mod N
//! password   = tag || 0x00 || index_u16be*         (the data words only)
//! salt       = SHA-256("northstar/v1/codename-salt" || org_ed25519_pk[32])
//! master     = Argon2id(v=0x13, m=65536 KiB, t=3, p=1, len=32)(password, salt)
//! seed(p)    = HKDF-SHA256(salt = none, ikm = master,
//!                          info = "northstar/v1/seeker/" || p)[0..32]
//!   p ∈ { "identity-x25519", "identity-ed25519", "mailbox-auth",
//!         "mailbox-seal", "state-key" }
//! ```
//!
//! The salt binds the derivation to one organisation, so a table of
//! precomputed codenames is useful against one organisation only.
//!
//! Parsing recognises the list and is forgiving about layout and strict
//! about words: case and diacritics are ignored, any run of non-letters
//! (spaces, tabs, new lines, hyphens, commas, dots, digits from a numbered
//! list) separates words, and separators before the first or after the last
//! word are ignored. A list word with a hyphen (four in the EFF list:
//! `drop-down`, `felt-tip`, `t-shirt`, `yo-yo`) is recognised however its
//! halves are separated, which is unambiguous because none of their first
//! halves is a list word. Prefixes of words are **not** accepted: a
//! truncated or mistyped word must fail loudly rather than be silently
//! completed into a different key.

use core::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoRng;
use crate::ids::Language;
use crate::keys::Ed25519Public;

mod lists;

/// Check words after the data words of every codename.
pub const CHECK_WORDS: usize = 2;

/// Most data words of any language (Spanish, French, Haitian Creole).
pub const MAX_DATA_WORDS: usize = 9;

/// Longest input [`Codename::parse`] looks at, in bytes. Eleven words of at
/// most nine letters need about 120 bytes; 1 KiB allows generous spacing,
/// numbering and pasted punctuation while bounding the work an
/// attacker-sized paste can cause.
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

/// Domain separator of the check words.
pub const CHECK_DOMAIN: &[u8] = b"northstar/v2/codename-check";

/// Prefix of every HKDF `info` string for the seeker's derived seeds.
pub const SEEKER_INFO_PREFIX: &[u8] = b"northstar/v1/seeker/";

/// How many words of its list a codename in `language` draws: enough for
/// at least 90 bits (7 × log2 7776 ≈ 90.5; 9 × log2 2048 = 99).
pub fn data_words(language: Language) -> usize {
    match language {
        Language::En => 7,
        Language::Es | Language::Fr | Language::Ht => 9,
    }
}

/// How many words a codename in `language` has in all (data and check
/// words): what the seeker writes down and types.
pub fn codename_words(language: Language) -> usize {
    data_words(language) + CHECK_WORDS
}

/// Size of the word list of `language` (7776 or 2048).
pub fn word_list_len(language: Language) -> usize {
    lists::list(language).len()
}

/// Errors of this module. None carries a word or any part of the codename.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodenameError {
    /// The input did not have the word count of the list its words are from.
    #[error("a codename has {expected} words, this has {got}")]
    WrongWordCount { expected: usize, got: usize },
    /// The word at `position` (1-based) is in no word list.
    #[error("word {position} is not in the word list")]
    UnknownWord { position: usize },
    /// Every word is a list word but the one at `position` (1-based) does
    /// not fit the others: it was miscopied into another list word.
    #[error("word {position} does not match the others: it was probably miscopied")]
    WrongWord { position: usize },
    /// Every word is a list word but they do not fit together, and no single
    /// word can be blamed (two words wrong, or words out of order).
    #[error("the words do not match each other: check each word and their order")]
    Mismatch,
    /// The input is longer than [`MAX_CODENAME_INPUT_LEN`].
    #[error("input is {got} bytes, at most {max} allowed")]
    InputTooLong { max: usize, got: usize },
    /// The key-derivation function rejected its parameters (cannot happen
    /// with the built-in constants; kept so no path panics).
    #[error("key derivation failed")]
    Kdf,
}

/// A seeker's codename: a language and indices into its word list (the
/// data words; the check words are computed from them).
///
/// Zeroized on drop; `Debug` prints no word; `Display` prints every word,
/// check words last, separated by single spaces (show it once, to be
/// written down).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Codename {
    #[zeroize(skip)]
    language: Language,
    words: [u16; MAX_DATA_WORDS],
}

impl fmt::Debug for Codename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Codename(..)")
    }
}

impl fmt::Display for Codename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_zeroizing_string())
    }
}

impl PartialEq for Codename {
    /// Constant-time comparison of the words (the language is public).
    fn eq(&self, other: &Self) -> bool {
        self.language == other.language && bool::from(self.password().ct_eq(&other.password()))
    }
}
impl Eq for Codename {}

/// The check words' indices for `data` in `language`.
fn check_words(language: Language, data: &[u16]) -> [u16; CHECK_WORDS] {
    let n = lists::list(language).len() as u32;
    let mut h = Sha256::new();
    h.update(CHECK_DOMAIN);
    h.update(language.tag().as_bytes());
    h.update([0u8]);
    for w in data {
        h.update(w.to_be_bytes());
    }
    let d = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    let at = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    // n ≤ 7776 < 2^16.
    [(at(0) % n) as u16, (at(4) % n) as u16]
}

impl Codename {
    /// Draws a fresh codename in `language`: each data word uniformly, by
    /// rejection sampling on big-endian 16-bit draws (accept `v` below the
    /// largest multiple of the list size ≤ 2^16, word = `v mod N`).
    pub fn generate(language: Language, rng: &mut impl CryptoRng) -> Self {
        let n = lists::list(language).len() as u32;
        let limit = (1u32 << 16) - (1u32 << 16) % n;
        let mut words = [0u16; MAX_DATA_WORDS];
        for slot in words.iter_mut().take(data_words(language)) {
            loop {
                let mut b = [0u8; 2];
                rng.fill_bytes(&mut b);
                let v = u32::from(u16::from_be_bytes(b));
                b.zeroize();
                if v < limit {
                    // v % n < n ≤ 7776 < 2^16.
                    *slot = (v % n) as u16;
                    break;
                }
            }
        }
        Codename { language, words }
    }

    /// The language (and so the word list) of this codename.
    pub fn language(&self) -> Language {
        self.language
    }

    fn data(&self) -> &[u16] {
        &self.words[..data_words(self.language)]
    }

    /// Parses what a seeker typed (see the module doc for the
    /// normalisation), in whichever language's list its words are from.
    pub fn parse(input: &str) -> Result<Self, CodenameError> {
        if input.len() > MAX_CODENAME_INPUT_LEN {
            return Err(CodenameError::InputTooLong {
                max: MAX_CODENAME_INPUT_LEN,
                got: input.len(),
            });
        }
        let folded = Zeroizing::new(lists::fold(input));
        let tokens: Vec<&str> = folded
            .split(|c: char| !c.is_alphabetic())
            .filter(|t| !t.is_empty())
            .collect();
        // Each language's reading: the indices, or where the first word
        // it does not know is and how many it knew.
        let mut best: Option<(Language, usize, usize)> = None;
        let mut refused: Option<CodenameError> = None;
        for language in Language::ALL {
            match resolve(&tokens, language) {
                // Every word is in this list: the codename, or why not
                // (another list may hold every word too, and fit).
                Ok(indices) => match Self::from_indices(language, &indices) {
                    Ok(c) => return Ok(c),
                    // A list whose word count fits says more than one
                    // whose count does not.
                    Err(e) => {
                        let miscount =
                            |e: &CodenameError| matches!(e, CodenameError::WrongWordCount { .. });
                        if refused
                            .as_ref()
                            .is_none_or(|r| miscount(r) && !miscount(&e))
                        {
                            refused = Some(e);
                        }
                    }
                },
                Err((position, known)) => {
                    if best.is_none_or(|(_, _, k)| known > k) {
                        best = Some((language, position, known));
                    }
                }
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        match best {
            Some((_, position, _)) if !tokens.is_empty() => {
                Err(CodenameError::UnknownWord { position })
            }
            _ => Err(CodenameError::WrongWordCount {
                expected: codename_words(Language::En),
                got: 0,
            }),
        }
    }

    /// A codename from every word's index in `language`'s list (data words,
    /// then check words), or why the words are not one.
    fn from_indices(language: Language, indices: &[u16]) -> Result<Self, CodenameError> {
        let k = data_words(language);
        if indices.len() != k + CHECK_WORDS {
            return Err(CodenameError::WrongWordCount {
                expected: k + CHECK_WORDS,
                got: indices.len(),
            });
        }
        let (data, check) = indices.split_at(k);
        let mut out = Codename {
            language,
            words: [0u16; MAX_DATA_WORDS],
        };
        out.words[..k].copy_from_slice(data);
        if check_words(language, data)[..] == *check {
            return Ok(out);
        }
        Err(match locate(language, data, check) {
            Some(position) => CodenameError::WrongWord { position },
            None => CodenameError::Mismatch,
        })
    }

    /// Every word (data words, then check words), separated by single
    /// spaces, in the list's spelling, in a buffer zeroized on drop (prefer
    /// this to `to_string()` when handing the codename to a UI).
    pub fn to_zeroizing_string(&self) -> Zeroizing<String> {
        let list = lists::list(self.language);
        let check = check_words(self.language, self.data());
        let mut s = Zeroizing::new(String::with_capacity(12 * 11));
        for (i, &w) in self.data().iter().chain(check.iter()).enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(list.word(w));
        }
        s
    }

    /// The bytes Argon2id hashes: the language tag, a zero byte and each
    /// data word's index as a big-endian u16.
    fn password(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(3 + 2 * MAX_DATA_WORDS));
        p.extend_from_slice(self.language.tag().as_bytes());
        p.push(0);
        for w in self.data() {
            p.extend_from_slice(&w.to_be_bytes());
        }
        p
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
            .hash_password_into(&self.password(), &salt, master.as_mut())
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

/// Reads folded tokens as words of `language`'s list, left to right: a
/// token that is a list word is that word; one that is not, joined with the
/// next by `-`, may form a hyphenated list word. `Err((position, known))`:
/// the 1-based position of the first token that is no word, and how many
/// tokens in all are list words on their own (to pick the language whose
/// list the seeker most likely used).
fn resolve(tokens: &[&str], language: Language) -> Result<Zeroizing<Vec<u16>>, (usize, usize)> {
    let list = lists::list(language);
    let mut out = Zeroizing::new(Vec::with_capacity(tokens.len()));
    let mut first_unknown = None;
    let mut joined = Zeroizing::new(String::new());
    let mut i = 0;
    while i < tokens.len() {
        let found = match list.lookup(tokens[i]) {
            Some(ix) => {
                i += 1;
                Some(ix)
            }
            None => {
                let merged = tokens.get(i + 1).and_then(|next| {
                    joined.clear();
                    joined.push_str(tokens[i]);
                    joined.push('-');
                    joined.push_str(next);
                    list.lookup(&joined)
                });
                i += if merged.is_some() { 2 } else { 1 };
                merged
            }
        };
        match found {
            Some(ix) => out.push(ix),
            None => {
                out.push(0);
                first_unknown.get_or_insert(out.len());
            }
        }
    }
    match first_unknown {
        None => Ok(out),
        Some(position) => {
            let known = tokens.iter().filter(|t| list.lookup(t).is_some()).count();
            Err((position, known))
        }
    }
}

/// The one position (1-based) whose word, replaced by some other list word,
/// makes the check words fit; `None` if there is none or more than one.
/// At most (data words × list size) hashes, only on a mismatch.
fn locate(language: Language, data: &[u16], check: &[u16]) -> Option<usize> {
    let n = lists::list(language).len();
    let mut found = None;
    let mut blame = |position: usize| -> bool {
        match found {
            None => {
                found = Some(position);
                true
            }
            Some(_) => false,
        }
    };
    let mut trial: Zeroizing<Vec<u16>> = Zeroizing::new(data.to_vec());
    for p in 0..data.len() {
        for alt in 0..n {
            let alt = alt as u16;
            if alt == data[p] {
                continue;
            }
            trial[p] = alt;
            if check_words(language, &trial)[..] == *check && !blame(p + 1) {
                return None;
            }
        }
        trial[p] = data[p];
    }
    // A wrong check word: the data's own check words differ from the typed
    // ones in that word only.
    let own = check_words(language, data);
    let differ: Vec<usize> = (0..CHECK_WORDS).filter(|&i| own[i] != check[i]).collect();
    if let [i] = differ[..]
        && !blame(data.len() + i + 1)
    {
        return None;
    }
    found
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

    fn words_of(c: &Codename) -> Vec<String> {
        c.to_string().split(' ').map(str::to_owned).collect()
    }

    /// SHA-256 of each list's words, each followed by one "\n", in list
    /// order: the digests docs/PROTOCOL.md §5.1 states.
    #[test]
    fn word_list_digests_are_the_ones_protocol_md_gives() {
        for (language, digest) in [
            (
                Language::En,
                "6d557f0693958fb5e650b68b5bee585eb82cf4da32965505c789e924743bc522",
            ),
            (
                Language::Es,
                "0c639b0d58b6e56c18dcf418017ff341418a129e45fbf303361e8569edb02efe",
            ),
            (
                Language::Fr,
                "431c1d074225d2b7e82db857d7c3ea58051df546e7c8b74c1f6dcab36351fd56",
            ),
            (
                Language::Ht,
                "d218198523a923a2ecdc164b7c09952e1af412ba31283130e70e0590d6ac0490",
            ),
        ] {
            let list = lists::list(language);
            let mut h = Sha256::new();
            for i in 0..list.len() {
                h.update(list.word(i as u16).as_bytes());
                h.update(b"\n");
            }
            let got: [u8; 32] = h.finalize().into();
            assert_eq!(hex::encode(got), digest, "{language:?}");
        }
    }

    #[test]
    fn every_list_is_long_enough_unique_when_folded_and_single_words() {
        for language in Language::ALL {
            let list = lists::list(language);
            let n = list.len();
            assert!(n == 7776 || n == 2048, "{language:?}");
            // ≥ 90 bits in every language.
            assert!(data_words(language) as f64 * (n as f64).log2() >= 90.0);
            let mut folded = std::collections::HashSet::new();
            for i in 0..n {
                let w = list.word(i as u16);
                assert!(!w.is_empty() && !w.contains(' '), "{language:?} {w}");
                assert!(w.chars().all(|c| c.is_alphabetic() || c == '-'));
                // Every word is found again, however it is accented.
                assert_eq!(list.lookup(&lists::fold(w)), Some(i as u16));
                assert!(
                    folded.insert(lists::fold(w)),
                    "{language:?}: {w} folds onto another word"
                );
            }
        }
        assert_eq!(codename_words(Language::En), 9);
        assert_eq!(codename_words(Language::Ht), 11);
    }

    #[test]
    fn generation_is_roughly_uniform_and_round_trips_in_every_language() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        for language in Language::ALL {
            let n = word_list_len(language);
            let mut counts = vec![0u32; n];
            let mut distinct = std::collections::HashSet::new();
            for _ in 0..400 {
                let c = Codename::generate(language, &mut rng);
                assert_eq!(c.language(), language);
                for &w in c.data() {
                    counts[usize::from(w)] += 1;
                }
                let shown = c.to_string();
                assert_eq!(shown.split(' ').count(), codename_words(language));
                assert_eq!(Codename::parse(&shown).unwrap(), c);
                distinct.insert(shown);
            }
            assert_eq!(distinct.len(), 400);
            assert!(counts.iter().all(|&n| n < 15), "{language:?}");
        }
    }

    #[test]
    fn parse_normalises_case_spacing_punctuation_and_accents() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let c = Codename::generate(Language::En, &mut rng);
        let canon = c.to_string();
        for variant in [
            canon.to_uppercase(),
            format!("  {}.  ", canon.replace(' ', "\t")),
            canon.replace(' ', ", "),
            canon
                .split(' ')
                .enumerate()
                .map(|(i, w)| format!("{}. {w}", i + 1))
                .collect::<Vec<_>>()
                .join(" "),
            format!("\u{00a0}{}!", canon.replace(' ', "\u{2003}")),
        ] {
            assert_eq!(Codename::parse(&variant).unwrap(), c, "{variant}");
        }
        // Spanish and French: with or without accents, composed or not.
        for language in [Language::Es, Language::Fr, Language::Ht] {
            let c = (0..50)
                .map(|_| Codename::generate(language, &mut rng))
                .find(|c| !c.to_string().is_ascii())
                .unwrap();
            let shown = c.to_string();
            let bare: String = lists::fold(&shown);
            let decomposed: String = shown
                .chars()
                .flat_map(|ch| match ch {
                    'á' => vec!['a', '\u{301}'],
                    'é' => vec!['e', '\u{301}'],
                    'è' => vec!['e', '\u{300}'],
                    'ò' => vec!['o', '\u{300}'],
                    'ñ' => vec!['n', '\u{303}'],
                    other => vec![other],
                })
                .collect();
            for v in [bare, decomposed, shown.to_uppercase()] {
                assert_eq!(Codename::parse(&v).unwrap(), c, "{language:?}: {v}");
            }
        }
    }

    #[test]
    fn hyphenated_words_parse_however_separated() {
        let data = [
            "t-shirt",
            "yo-yo",
            "drop-down",
            "felt-tip",
            "yoyo",
            "down",
            "shirt",
        ];
        let list = lists::list(Language::En);
        let ix: Vec<u16> = data.iter().map(|w| list.lookup(w).unwrap()).collect();
        let check = check_words(Language::En, &ix);
        let full = format!(
            "{} {} {}",
            data.join(" "),
            list.word(check[0]),
            list.word(check[1])
        );
        let c = Codename::parse(&full).unwrap();
        assert_eq!(c.to_string(), full);
        let spaced = full
            .replacen("t-shirt", "T SHIRT", 1)
            .replacen("yo-yo", "yo yo", 1);
        assert_eq!(Codename::parse(&spaced).unwrap(), c);
    }

    /// Issue 19: one word miscopied into another *list* word used to give
    /// only "no conversation found". The check words catch it and name it.
    #[test]
    fn a_miscopied_word_is_caught_and_its_position_named() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        for language in Language::ALL {
            let c = Codename::generate(language, &mut rng);
            let list = lists::list(language);
            let words = words_of(&c);
            for (p, word) in words.iter().enumerate() {
                let ix = list.lookup(&lists::fold(word)).unwrap();
                let other = list.word((ix + 1) % list.len() as u16);
                let mut typed = words.clone();
                typed[p] = other.to_owned();
                assert_eq!(
                    Codename::parse(&typed.join(" ")),
                    Err(CodenameError::WrongWord { position: p + 1 }),
                    "{language:?}, word {}",
                    p + 1
                );
            }
            // Two words swapped, or two wrong: caught, nobody blamed wrongly
            // in these draws.
            let mut swapped = words.clone();
            swapped.swap(1, 2);
            assert!(Codename::parse(&swapped.join(" ")).is_err());
            let mut two = words.clone();
            two[0] = list.word(0).to_owned();
            two[3] = list.word(1).to_owned();
            if two != words {
                assert!(Codename::parse(&two.join(" ")).is_err());
            }
        }
    }

    #[test]
    fn wrong_count_and_unknown_words_fail_without_echo() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let c = Codename::generate(Language::En, &mut rng);
        let words = words_of(&c);
        assert_eq!(
            Codename::parse(&words[..2].join(" ")),
            Err(CodenameError::WrongWordCount {
                expected: 9,
                got: 2
            })
        );
        assert_eq!(
            Codename::parse(""),
            Err(CodenameError::WrongWordCount {
                expected: 9,
                got: 0
            })
        );
        let mut secret = words.clone();
        secret[2] = "zzzsecretzzz".into();
        let e = Codename::parse(&secret.join(" ")).unwrap_err();
        assert_eq!(e, CodenameError::UnknownWord { position: 3 });
        assert!(!e.to_string().contains("zzzsecretzzz"));
        // Prefixes are not completed.
        let mut prefix = words.clone();
        prefix[0].truncate(3);
        assert!(Codename::parse(&prefix.join(" ")).is_err());
        let long = "a ".repeat(600);
        assert!(matches!(
            Codename::parse(&long),
            Err(CodenameError::InputTooLong { .. })
        ));
        // A Spanish codename with one unknown word is reported against the
        // Spanish list.
        let es = Codename::generate(Language::Es, &mut rng);
        let mut w = words_of(&es);
        w[4] = "qqqq".into();
        assert_eq!(
            Codename::parse(&w.join(" ")),
            Err(CodenameError::UnknownWord { position: 5 })
        );
    }

    #[test]
    fn debug_prints_no_words_or_bytes() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let c = Codename::generate(Language::Es, &mut rng);
        let dbg = format!("{c:?}");
        assert_eq!(dbg, "Codename(..)");
        for w in c.to_string().split(' ') {
            assert!(!dbg.contains(w));
        }
        let s = c.derive(&org(1)).unwrap();
        assert_eq!(format!("{s:?}"), "SeekerSecrets(..)");
    }

    #[test]
    fn derivation_is_deterministic_separated_and_per_org_and_language() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let c = Codename::generate(Language::En, &mut rng);
        let a = c.derive(&org(1)).unwrap();
        let b = Codename::parse(&c.to_string())
            .unwrap()
            .derive(&org(1))
            .unwrap();
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
        // The same indices in another language are another codename.
        let mut es = Codename::generate(Language::Es, &mut rng);
        es.words = [0; MAX_DATA_WORDS];
        let mut en = Codename::generate(Language::En, &mut rng);
        en.words = [0; MAX_DATA_WORDS];
        assert_ne!(es.password(), en.password());
    }

    #[test]
    fn vectors() {
        let org_key = crate::directory::OrgSigningKey::from_seed(&[0x0a; 32]);
        let org_pk = *org_key.public().as_ed25519();
        let mut cases = Vec::new();
        let mut rng = ChaCha20Rng::from_seed([0x0c; 32]);
        let mut generated = Vec::new();
        for language in Language::ALL {
            for draw in 0..2 {
                let c = Codename::generate(language, &mut rng);
                let s = c.derive(&org_pk).unwrap();
                let id = s.identity_keys().public();
                let mb = s.mailbox_keys().public();
                let mut salt = Sha256::new();
                salt.update(SALT_DOMAIN);
                salt.update(org_pk.0);
                let salt: [u8; 32] = salt.finalize().into();
                cases.push(serde_json::json!({
                    "rng_seed": "0c".repeat(32),
                    "language": language.tag(),
                    "draw": draw,
                    "codename": c.to_string(),
                    "data_word_indices": c.data().to_vec(),
                    "check_word_indices": check_words(language, c.data()).to_vec(),
                    "argon2_password": hex::encode(&*c.password()),
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
                generated.push(c);
            }
        }
        let canonical = generated[0].to_string();
        let variants = [
            canonical.to_uppercase().replace(' ', "-"),
            format!("  {} .", canonical.replace(' ', ",\t")),
        ];
        for v in &variants {
            assert_eq!(Codename::parse(v).unwrap(), generated[0]);
        }
        let spanish = generated[2].to_string();
        let spanish_bare = lists::fold(&spanish);
        assert_eq!(Codename::parse(&spanish_bare).unwrap(), generated[2]);
        let mut miscopied = words_of(&generated[6]);
        let list = lists::list(Language::Ht);
        let ix = list.lookup(&lists::fold(&miscopied[3])).unwrap();
        miscopied[3] = list.word((ix + 1) % 2048).to_owned();
        let miscopied = miscopied.join(" ");
        let mut short = words_of(&generated[0]);
        short.truncate(2);
        let short = short.join(" ");
        let mut unknown = words_of(&generated[0]);
        unknown[2] = "notaword".into();
        let unknown = unknown.join(" ");
        let mut failures = Vec::new();
        for input in [&short, &unknown, &miscopied] {
            let e = Codename::parse(input).unwrap_err();
            failures.push(serde_json::json!({ "input": input, "error": format!("{e:?}") }));
        }
        let json = serde_json::json!({
            "description": "Codenames per language: data words drawn from ChaCha20Rng::from_seed(rng_seed) (rejection sampling on big-endian u16 draws below the largest multiple of the list size <= 65536), two check words (SHA-256 of \"northstar/v2/codename-check\" || tag || 0x00 || data indices u16 BE; BE32 of bytes 0..4 and 4..8 mod list size), and the seeds derived with Argon2id (password = tag || 0x00 || data indices u16 BE) + HKDF-SHA256 for the organisation key (org signing seed = 0x0a * 32). Public keys: X25519 scalar = seed (clamped), Ed25519 = RFC 8032 from seed.",
            "argon2id": { "m_cost_kib": ARGON2_M_COST_KIB, "t_cost": ARGON2_T_COST, "p_cost": ARGON2_P_COST, "version": 19, "output_len": 32 },
            "cases": cases,
            "parse_equivalents": [
                { "canonical": canonical, "inputs": variants },
                { "canonical": spanish, "inputs": [spanish_bare] },
            ],
            "parse_failures": failures,
        });
        crate::state::vectors::check("codename.json", &json);
    }

    /// Native release-mode timing of the Argon2id step, for docs/BENCHMARKS.md:
    /// `cargo test -p northstar-core --release -- --ignored codename_kdf_timing --nocapture`
    #[test]
    #[ignore]
    fn codename_kdf_timing() {
        let c = Codename::generate(Language::En, &mut ChaCha20Rng::from_seed([1; 32]));
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
        fn parse_never_panics_on_word_soup(
            lang in 0usize..4,
            ws in proptest::collection::vec(0u16..2048, 0..12),
            sep in "[ ,.\\-\t\n]{1,3}",
        ) {
            let language = Language::ALL[lang];
            let list = lists::list(language);
            let s = ws.iter().map(|&i| list.word(i)).collect::<Vec<_>>().join(&sep);
            let r = Codename::parse(&s);
            if ws.len() == codename_words(language) {
                // Random words: the check words fit only by chance.
                prop_assert!(r.is_err() || r.unwrap().language() == language);
            }
        }
    }
}
