//! The ratchet state machine: [`Session`] (docs/PROTOCOL.md, "Double
//! Ratchet", §State and §Algorithms).
//!
//! Every fallible step first computes everything it would change into local
//! values and assigns them to `self` only after the last fallible operation
//! (for `decrypt`: after the body authenticated), so an error leaves the
//! session exactly as it was.

use std::collections::VecDeque;
use std::fmt;
use std::mem;

use zeroize::Zeroizing;

use super::header::{
    self, HEADER_NONCE_LEN, Header, MAX_AD_LEN, MAX_PLAINTEXT_LEN, MESSAGE_PREFIX_LEN,
    MESSAGE_VERSION, ParsedMessage,
};
use super::keys::{self, ChainKey, HeaderKey, KEY_LEN, MessageKey, RatchetSecret, RootKey};
use super::{MAX_OLD_CHAINS, MAX_SKIP, MAX_SKIPPED_CHAIN_AGE, MAX_SKIPPED_KEYS, RatchetError};
use crate::CryptoRng;
use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// Version byte of an encoded session state ([`Session::encode_state`]).
pub const STATE_VERSION: u8 = 1;

/// Skipped keys of one earlier receiving chain, with that chain's header key.
/// The header key is kept even when no key is left, so that a replay of a
/// message from that chain is recognised as [`RatchetError::Replay`] until
/// the chain expires.
struct OldChain {
    hk: HeaderKey,
    /// `recv_epoch` while this chain was the current receiving chain.
    epoch: u32,
    /// `(n, mk)` in increasing `n`.
    keys: VecDeque<(u32, MessageKey)>,
}

/// One party's Double Ratchet state (the specification's `state`).
///
/// Not `Clone`: a session must not fork (two copies would reuse message
/// keys). Save and restore it with [`Session::encode_state`] /
/// [`Session::decode_state`].
pub struct Session {
    /// PQXDH's associated data, bound into every message body.
    ad: Vec<u8>,
    /// `DHs`: our current ratchet key pair.
    dhs: RatchetSecret,
    /// `DHr`: the peer's current ratchet public key (`None` for the
    /// responder until the first message arrives).
    dhr: Option<[u8; KEY_LEN]>,
    /// `RK`.
    rk: RootKey,
    /// `CKs`. `None` means the sending half of a DH ratchet step is pending
    /// (or, with `dhr == None`, that we cannot send yet).
    cks: Option<ChainKey>,
    /// `CKr`.
    ckr: Option<ChainKey>,
    /// `HKs`.
    hks: Option<HeaderKey>,
    /// `HKr`.
    hkr: Option<HeaderKey>,
    /// `NHKs`.
    nhks: HeaderKey,
    /// `NHKr`.
    nhkr: HeaderKey,
    /// `Ns`, `Nr`, `PN`.
    ns: u32,
    nr: u32,
    pn: u32,
    /// Number of DH ratchet steps on receipt so far; dates skipped keys.
    recv_epoch: u32,
    /// `MKSKIPPED` entries of the current receiving chain (header key `HKr`),
    /// `(n, mk)` in increasing `n`.
    current_skipped: VecDeque<(u32, MessageKey)>,
    /// `MKSKIPPED` entries of earlier receiving chains, oldest first; at most
    /// [`MAX_OLD_CHAINS`].
    old_chains: VecDeque<OldChain>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("recv_epoch", &self.recv_epoch)
            .field("skipped_keys", &self.skipped_keys())
            .field("old_chains", &self.old_chains.len())
            .finish_non_exhaustive()
    }
}

/// What `decrypt` commits after the body authenticated.
struct ReceiveStep {
    /// Set when the message started a new receiving chain.
    ratchet: Option<RatchetStep>,
    /// The message key of this message.
    mk: MessageKey,
    /// `CKr` after this message.
    ckr: ChainKey,
    /// `Nr` after this message.
    nr: u32,
    /// Keys skipped in the (new or current) receiving chain.
    skipped: Vec<(u32, MessageKey)>,
}

/// The receiving half of a DH ratchet step (`DHRatchetHE` up to the first
/// `KDF_RK_HE`).
struct RatchetStep {
    dhr: [u8; KEY_LEN],
    rk: RootKey,
    nhkr: HeaderKey,
    recv_epoch: u32,
    /// Keys skipped at the end of the previous receiving chain (up to `pn`).
    old_skipped: Vec<(u32, MessageKey)>,
}

impl Session {
    /// `RatchetInitAliceHE`: the initiator (seeker), who knows the
    /// responder's signed prekey `their_ratchet_pk` from PQXDH.
    ///
    /// `(RK0, HKa, NHKb) = KDF_INIT(sk)`; `DHs = GENERATE_DH()`;
    /// `RK, CKs, NHKs = KDF_RK(RK0, DH(DHs, their_ratchet_pk))`;
    /// `HKs = HKa`; `NHKr = NHKb`.
    ///
    /// PQXDH has verified the prekey's signature and already refused a
    /// non-contributory DH with it, so this step does not check again (and
    /// cannot fail); every ratchet key received later in a header is checked
    /// ([`RatchetError::InvalidRatchetKey`]).
    pub fn initiate(
        sk: Zeroizing<[u8; 32]>,
        ad: Vec<u8>,
        their_ratchet_pk: [u8; 32],
        rng: &mut impl CryptoRng,
    ) -> Session {
        let (rk0, hka, nhkb) = keys::kdf_init(&sk);
        let dhs = RatchetSecret::generate(rng);
        let dh = dhs.dh_unchecked(&their_ratchet_pk);
        let (rk, cks, nhks) = keys::kdf_rk(&rk0, &dh);
        Session {
            ad,
            dhs,
            dhr: Some(their_ratchet_pk),
            rk,
            cks: Some(cks),
            ckr: None,
            hks: Some(hka),
            hkr: None,
            nhks,
            nhkr: nhkb,
            ns: 0,
            nr: 0,
            pn: 0,
            recv_epoch: 0,
            current_skipped: VecDeque::new(),
            old_chains: VecDeque::new(),
        }
    }

    /// `RatchetInitBobHE`: the responder (counselor device), whose signed
    /// prekey secret `our_ratchet_secret` the initiator used.
    ///
    /// `(RK0, HKa, NHKb) = KDF_INIT(sk)`; `DHs = our_ratchet_secret`;
    /// `RK = RK0`; `NHKs = NHKb`; `NHKr = HKa`. It cannot send until the
    /// first message arrives ([`RatchetError::CannotSendYet`]).
    pub fn respond(
        sk: Zeroizing<[u8; 32]>,
        ad: Vec<u8>,
        our_ratchet_secret: Zeroizing<[u8; 32]>,
    ) -> Session {
        let (rk0, hka, nhkb) = keys::kdf_init(&sk);
        Session {
            ad,
            dhs: RatchetSecret::from_bytes(&our_ratchet_secret),
            dhr: None,
            rk: rk0,
            cks: None,
            ckr: None,
            hks: None,
            hkr: None,
            nhks: nhkb,
            nhkr: hka,
            ns: 0,
            nr: 0,
            pn: 0,
            recv_epoch: 0,
            current_skipped: VecDeque::new(),
            old_chains: VecDeque::new(),
        }
    }

    /// Whether [`Session::encrypt`] can succeed (false only for a responder
    /// that has not yet received a message).
    pub fn can_send(&self) -> bool {
        self.cks.is_some() || self.dhr.is_some()
    }

    /// Number of skipped message keys currently stored (at most
    /// [`MAX_SKIPPED_KEYS`]).
    pub fn skipped_keys(&self) -> usize {
        self.current_skipped.len() + self.old_chains.iter().map(|c| c.keys.len()).sum::<usize>()
    }

    fn check_ad(&self) -> Result<(), RatchetError> {
        if self.ad.len() > MAX_AD_LEN {
            return Err(RatchetError::AssociatedDataTooLong {
                max: MAX_AD_LEN,
                got: self.ad.len(),
            });
        }
        Ok(())
    }

    /// `RatchetEncryptHE`, preceded (when a DH ratchet step is pending) by
    /// the sending half of `DHRatchetHE`:
    /// `PN = Ns; Ns = 0; HKs = NHKs; DHs = GENERATE_DH();
    /// RK, CKs, NHKs = KDF_RK(RK, DH(DHs, DHr))`.
    /// Then `CKs, mk = KDF_CK(CKs)`, `header = (DHs.pub, PN, Ns)`,
    /// `Ns += 1`, and the encoded `RatchetMessage` is returned.
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, RatchetError> {
        self.check_ad()?;
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(RatchetError::PlaintextTooLong {
                max: MAX_PLAINTEXT_LEN,
                got: plaintext.len(),
            });
        }
        // The sending half of a pending DH ratchet step, computed, not yet applied.
        let step = match (&self.cks, &self.dhr) {
            (Some(_), _) => None,
            (None, None) => return Err(RatchetError::CannotSendYet),
            (None, Some(dhr)) => {
                let dhs = RatchetSecret::generate(rng);
                let dh = dhs.dh(dhr).ok_or(RatchetError::InvalidRatchetKey)?;
                let (rk, cks, nhks) = keys::kdf_rk(&self.rk, &dh);
                Some((dhs, rk, cks, nhks))
            }
        };
        let (message, ck_next, ns_next) = {
            let (hks, cks, dh, pn, ns) = match &step {
                Some((dhs, _, cks, _)) => (&self.nhks, cks, dhs.public(), self.ns, 0),
                None => match (&self.hks, &self.cks) {
                    (Some(hks), Some(cks)) => (hks, cks, self.dhs.public(), self.pn, self.ns),
                    _ => return Err(RatchetError::CannotSendYet),
                },
            };
            let ns_next = ns.checked_add(1).ok_or(RatchetError::CounterExhausted)?;
            let (ck_next, mk) = cks.step();
            let mut nonce = [0u8; HEADER_NONCE_LEN];
            rng.fill_bytes(&mut nonce);
            let enc_header = header::encrypt_header(hks, &nonce, &Header { dh, pn, n: ns })?;
            let mut prefix = Vec::with_capacity(MESSAGE_PREFIX_LEN);
            prefix.push(MESSAGE_VERSION);
            prefix.extend_from_slice(&nonce);
            prefix.extend_from_slice(&enc_header);
            let body = header::encrypt_body(mk, plaintext, &self.ad, &prefix)?;
            let mut w = Writer::with_capacity(prefix.len() + 4 + body.len());
            // body.len() <= MAX_BODY_LEN < u32::MAX, checked above via MAX_PLAINTEXT_LEN.
            w.bytes(&prefix).u32(body.len() as u32).bytes(&body);
            (w.into_bytes(), ck_next, ns_next)
        };
        // Commit.
        if let Some((dhs, rk, _, nhks)) = step {
            self.pn = self.ns;
            self.hks = Some(mem::replace(&mut self.nhks, nhks));
            self.dhs = dhs;
            self.rk = rk;
        }
        self.cks = Some(ck_next);
        self.ns = ns_next;
        Ok(message)
    }

    /// `RatchetDecryptHE`. Tries, in order: `HKr` (current chain: a skipped
    /// or a later message), the header key of each earlier chain still kept
    /// (a skipped message), then `NHKr` (a new chain: DH ratchet step).
    /// A header that opens but whose key was already used is
    /// [`RatchetError::Replay`]. On any error the session is unchanged.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.check_ad()?;
        let parsed = header::parse(message)?;
        if let Some(h) = self
            .hkr
            .as_ref()
            .and_then(|hkr| header::decrypt_header(hkr, &parsed))
        {
            if h.n < self.nr {
                return take_skipped(&mut self.current_skipped, h.n, &parsed, &self.ad);
            }
            let step = self.receive_in_chain(&h)?;
            return self.finish_receive(step, &parsed);
        }
        for i in 0..self.old_chains.len() {
            if let Some(h) = header::decrypt_header(&self.old_chains[i].hk, &parsed) {
                return take_skipped(&mut self.old_chains[i].keys, h.n, &parsed, &self.ad);
            }
        }
        if let Some(h) = header::decrypt_header(&self.nhkr, &parsed) {
            let step = self.receive_new_chain(&h)?;
            return self.finish_receive(step, &parsed);
        }
        Err(RatchetError::HeaderUndecryptable)
    }

    /// A message at or after `Nr` in the current receiving chain.
    fn receive_in_chain(&self, h: &Header) -> Result<ReceiveStep, RatchetError> {
        let ckr = self.ckr.as_ref().ok_or(RatchetError::HeaderUndecryptable)?;
        let (ckr, mk, skipped) = skip_keys(ckr, self.nr, h.n)?;
        Ok(ReceiveStep {
            ratchet: None,
            mk,
            ckr,
            nr: h.n.checked_add(1).ok_or(RatchetError::CounterExhausted)?,
            skipped,
        })
    }

    /// A message that opened under `NHKr`: `SkipMessageKeysHE(pn)` on the
    /// current chain, then the receiving half of `DHRatchetHE`:
    /// `HKr = NHKr; DHr = header.dh; RK, CKr, NHKr = KDF_RK(RK, DH(DHs, DHr))`.
    fn receive_new_chain(&self, h: &Header) -> Result<ReceiveStep, RatchetError> {
        check_skip(self.nr, h.pn)?;
        let old_skipped = match &self.ckr {
            Some(ckr) => skip_keys(ckr, self.nr, h.pn)?.2,
            None => Vec::new(),
        };
        let dh = self.dhs.dh(&h.dh).ok_or(RatchetError::InvalidRatchetKey)?;
        let (rk, ckr, nhkr) = keys::kdf_rk(&self.rk, &dh);
        let recv_epoch = self
            .recv_epoch
            .checked_add(1)
            .ok_or(RatchetError::CounterExhausted)?;
        let (ckr, mk, skipped) = skip_keys(&ckr, 0, h.n)?;
        Ok(ReceiveStep {
            ratchet: Some(RatchetStep {
                dhr: h.dh,
                rk,
                nhkr,
                recv_epoch,
                old_skipped,
            }),
            mk,
            ckr,
            nr: h.n.checked_add(1).ok_or(RatchetError::CounterExhausted)?,
            skipped,
        })
    }

    /// Decrypts the body and commits `step` only if it authenticates.
    fn finish_receive(
        &mut self,
        step: ReceiveStep,
        parsed: &ParsedMessage<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let ReceiveStep {
            ratchet,
            mk,
            ckr,
            nr,
            skipped,
        } = step;
        let plaintext = header::decrypt_body(mk, parsed, &self.ad).map_err(|(_, e)| e)?;
        // Commit.
        if let Some(r) = ratchet {
            let mut keys = mem::take(&mut self.current_skipped);
            keys.extend(r.old_skipped);
            if let Some(hk) = self.hkr.take() {
                self.old_chains.push_back(OldChain {
                    hk,
                    epoch: self.recv_epoch,
                    keys,
                });
            }
            self.hkr = Some(mem::replace(&mut self.nhkr, r.nhkr));
            self.rk = r.rk;
            self.dhr = Some(r.dhr);
            // The sending half of this step runs in the next `encrypt`.
            self.cks = None;
            self.recv_epoch = r.recv_epoch;
            let now = self.recv_epoch;
            self.old_chains
                .retain(|c| now.saturating_sub(c.epoch) <= MAX_SKIPPED_CHAIN_AGE);
            while self.old_chains.len() > MAX_OLD_CHAINS {
                self.old_chains.pop_front();
            }
        }
        self.ckr = Some(ckr);
        self.nr = nr;
        self.current_skipped.extend(skipped);
        self.evict();
        Ok(plaintext)
    }

    /// Deletes the oldest skipped keys until at most [`MAX_SKIPPED_KEYS`] remain.
    fn evict(&mut self) {
        let mut excess = self.skipped_keys().saturating_sub(MAX_SKIPPED_KEYS);
        for chain in self.old_chains.iter_mut() {
            let k = excess.min(chain.keys.len());
            chain.keys.drain(..k);
            excess -= k;
        }
        let k = excess.min(self.current_skipped.len());
        self.current_skipped.drain(..k);
    }

    /// Encodes the whole session for saved client state. The result holds
    /// secrets: encrypt it (see `state`) and let it drop (it zeroizes).
    ///
    /// ```text
    /// state =
    ///   version          u8 = STATE_VERSION (0x01)
    ///   ad               u32 BE length (<= MAX_AD_LEN) || bytes
    ///   dhs              [u8; 32]  X25519 secret
    ///   dhr              opt32
    ///   rk               [u8; 32]
    ///   cks, ckr         opt32, opt32
    ///   hks, hkr         opt32, opt32
    ///   nhks, nhkr       [u8; 32], [u8; 32]
    ///   ns, nr, pn       u32 BE each
    ///   recv_epoch       u32 BE
    ///   current_skipped  keys
    ///   old_chain_count  u8 (<= MAX_OLD_CHAINS)
    ///   old_chains       old_chain_count × (hk [u8; 32] || epoch u32 BE || keys)
    /// opt32 = 0x00 | 0x01 || [u8; 32]
    /// keys  = count u16 BE || count × (n u32 BE || mk [u8; 32]), n strictly increasing
    /// ```
    pub fn encode_state(&self) -> Zeroizing<Vec<u8>> {
        let key_entries = self.skipped_keys();
        let len = 1
            + 4
            + self.ad.len()
            + KEY_LEN * 4
            + 5 * (1 + KEY_LEN)
            + 16
            + 2
            + 1
            + self.old_chains.len() * (KEY_LEN + 4 + 2)
            + key_entries * (4 + KEY_LEN);
        // Exact capacity: the buffer never reallocates, so no stray copy of a
        // secret is left behind in freed memory.
        let mut w = Writer::with_capacity(len);
        w.u8(STATE_VERSION);
        w.u32(u32::try_from(self.ad.len()).unwrap_or(u32::MAX))
            .bytes(&self.ad);
        w.bytes(self.dhs.to_bytes().as_ref());
        put_opt(&mut w, self.dhr.as_ref());
        w.bytes(self.rk.as_bytes());
        put_opt(&mut w, self.cks.as_ref().map(ChainKey::as_bytes));
        put_opt(&mut w, self.ckr.as_ref().map(ChainKey::as_bytes));
        put_opt(&mut w, self.hks.as_ref().map(HeaderKey::as_bytes));
        put_opt(&mut w, self.hkr.as_ref().map(HeaderKey::as_bytes));
        w.bytes(self.nhks.as_bytes()).bytes(self.nhkr.as_bytes());
        w.u32(self.ns)
            .u32(self.nr)
            .u32(self.pn)
            .u32(self.recv_epoch);
        put_keys(&mut w, &self.current_skipped);
        // At most MAX_OLD_CHAINS (5) chains, by construction.
        w.u8(self.old_chains.len() as u8);
        for c in &self.old_chains {
            w.bytes(c.hk.as_bytes()).u32(c.epoch);
            put_keys(&mut w, &c.keys);
        }
        Zeroizing::new(w.into_bytes())
    }

    /// Strictly decodes [`Session::encode_state`]'s output: unknown version,
    /// bad option tags, over-long fields, inconsistent skipped-key lists
    /// (unordered, over [`MAX_SKIPPED_KEYS`], chains older than
    /// [`MAX_SKIPPED_CHAIN_AGE`]) and trailing bytes are errors.
    pub fn decode_state(bytes: &[u8]) -> Result<Session, RatchetError> {
        let mut r = Reader::new(bytes);
        r.version(STATE_VERSION, "ratchet state")?;
        let ad = r.vec_u32(MAX_AD_LEN, "ratchet state ad")?.to_vec();
        let dhs = RatchetSecret::from_bytes(&Zeroizing::new(r.array("ratchet state dhs")?));
        let dhr = get_opt(&mut r, "ratchet state dhr")?.map(|k| *k);
        let rk = RootKey::from_bytes(&Zeroizing::new(r.array("ratchet state rk")?));
        let cks = get_opt(&mut r, "ratchet state cks")?.map(|k| ChainKey::from_bytes(&k));
        let ckr = get_opt(&mut r, "ratchet state ckr")?.map(|k| ChainKey::from_bytes(&k));
        let hks = get_opt(&mut r, "ratchet state hks")?.map(|k| HeaderKey::from_bytes(&k));
        let hkr = get_opt(&mut r, "ratchet state hkr")?.map(|k| HeaderKey::from_bytes(&k));
        let nhks = HeaderKey::from_bytes(&Zeroizing::new(r.array("ratchet state nhks")?));
        let nhkr = HeaderKey::from_bytes(&Zeroizing::new(r.array("ratchet state nhkr")?));
        let ns = r.u32("ratchet state ns")?;
        let nr = r.u32("ratchet state nr")?;
        let pn = r.u32("ratchet state pn")?;
        let recv_epoch = r.u32("ratchet state epoch")?;
        let mut total = 0usize;
        let current_skipped = get_keys(&mut r, &mut total)?;
        if current_skipped.back().is_some_and(|(n, _)| *n >= nr) {
            return Err(DecodeError::Invalid {
                what: "ratchet state skipped key number",
            }
            .into());
        }
        let chain_count = usize::from(r.u8("ratchet state old chains")?);
        if chain_count > MAX_OLD_CHAINS {
            return Err(DecodeError::TooLong {
                what: "ratchet state old chains",
                max: MAX_OLD_CHAINS,
                got: chain_count,
            }
            .into());
        }
        let mut old_chains = VecDeque::with_capacity(chain_count);
        let mut last_epoch: Option<u32> = None;
        for _ in 0..chain_count {
            let hk = HeaderKey::from_bytes(&Zeroizing::new(r.array("ratchet state chain hk")?));
            let epoch = r.u32("ratchet state chain epoch")?;
            let ordered = last_epoch.is_none_or(|e| e < epoch);
            let fresh = epoch < recv_epoch && recv_epoch - epoch <= MAX_SKIPPED_CHAIN_AGE;
            if !ordered || !fresh {
                return Err(DecodeError::Invalid {
                    what: "ratchet state chain epoch",
                }
                .into());
            }
            last_epoch = Some(epoch);
            let keys = get_keys(&mut r, &mut total)?;
            old_chains.push_back(OldChain { hk, epoch, keys });
        }
        r.finish("ratchet state")?;
        Ok(Session {
            ad,
            dhs,
            dhr,
            rk,
            cks,
            ckr,
            hks,
            hkr,
            nhks,
            nhkr,
            ns,
            nr,
            pn,
            recv_epoch,
            current_skipped,
            old_chains,
        })
    }
}

/// The specification's `if Nr + MAX_SKIP < until: raise Error()`.
fn check_skip(nr: u32, until: u32) -> Result<(), RatchetError> {
    if u64::from(until) > u64::from(nr) + u64::from(MAX_SKIP) {
        return Err(RatchetError::TooManySkipped {
            max: MAX_SKIP,
            skip: u64::from(until) - u64::from(nr),
        });
    }
    Ok(())
}

/// Skipped message keys `(n, mk)`, in increasing `n`.
type Skipped = Vec<(u32, MessageKey)>;

/// `SkipMessageKeysHE` then `KDF_CK` on a chain whose next key is number
/// `from`: returns the chain key after message `until`, the message key of
/// `until`, and the keys of `from..until` (empty if `until <= from`).
fn skip_keys(
    ck: &ChainKey,
    from: u32,
    until: u32,
) -> Result<(ChainKey, MessageKey, Skipped), RatchetError> {
    check_skip(from, until)?;
    let mut skipped = Vec::with_capacity(until.saturating_sub(from) as usize);
    let (mut ck, mut mk) = ck.step();
    for n in from..until {
        skipped.push((n, mk));
        (ck, mk) = ck.step();
    }
    Ok((ck, mk, skipped))
}

/// Uses and deletes the skipped key `n` of one chain; [`RatchetError::Replay`]
/// if there is none (it was used already). On a body failure the key is put
/// back where it was.
fn take_skipped(
    keys: &mut VecDeque<(u32, MessageKey)>,
    n: u32,
    parsed: &ParsedMessage<'_>,
    ad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
    let Ok(pos) = keys.binary_search_by_key(&n, |(k, _)| *k) else {
        return Err(RatchetError::Replay);
    };
    let Some((_, mk)) = keys.remove(pos) else {
        return Err(RatchetError::Replay);
    };
    match header::decrypt_body(mk, parsed, ad) {
        Ok(plaintext) => Ok(plaintext),
        Err((mk, e)) => {
            keys.insert(pos, (n, mk));
            Err(e)
        }
    }
}

fn put_opt(w: &mut Writer, key: Option<&[u8; KEY_LEN]>) {
    match key {
        None => {
            w.u8(0);
        }
        Some(k) => {
            w.u8(1).bytes(k);
        }
    }
}

fn get_opt(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, DecodeError> {
    match r.u8(what)? {
        0 => Ok(None),
        1 => Ok(Some(Zeroizing::new(r.array(what)?))),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

fn put_keys(w: &mut Writer, keys: &VecDeque<(u32, MessageKey)>) {
    // At most MAX_SKIPPED_KEYS (2000) entries, by construction.
    w.u16(keys.len() as u16);
    for (n, mk) in keys {
        w.u32(*n).bytes(mk.as_bytes());
    }
}

fn get_keys(
    r: &mut Reader<'_>,
    total: &mut usize,
) -> Result<VecDeque<(u32, MessageKey)>, DecodeError> {
    let what = "ratchet state skipped keys";
    let count = r.count_u16(MAX_SKIPPED_KEYS, what)?;
    *total += count;
    if *total > MAX_SKIPPED_KEYS {
        return Err(DecodeError::TooLong {
            what,
            max: MAX_SKIPPED_KEYS,
            got: *total,
        });
    }
    let mut keys = VecDeque::with_capacity(count);
    let mut last: Option<u32> = None;
    for _ in 0..count {
        let n = r.u32(what)?;
        if last.is_some_and(|l| l >= n) {
            return Err(DecodeError::Invalid {
                what: "ratchet state skipped key order",
            });
        }
        last = Some(n);
        let mk = MessageKey::from_bytes(&Zeroizing::new(r.array(what)?));
        keys.push_back((n, mk));
    }
    Ok(keys)
}
