//! One party's keys and its ratchet sessions with peers.
//!
//! Sending: [`Endpoint::seal_to`] encrypts an [`AppMessage`] for a peer over
//! the newest session with it; when there is none, the caller passes the
//! peer's prekey bundle and a session is started with PQXDH. Until the peer
//! has answered, messages carry the PQXDH header (`SealedBody::PreKey`), so
//! the peer can set the session up from whichever arrives first.
//!
//! Receiving: [`Endpoint::open`] opens the sealed envelope, finds the session
//! by the sender's identity (trying each session kept for that peer, newest
//! first) or sets one up from a session start with this endpoint's prekeys,
//! and decrypts. A failed step changes nothing. The sender named inside the
//! envelope is trusted only because the ratchet message decrypted under a
//! session bound (through PQXDH's AD) to that identity and mailbox.
//!
//! Two devices that start sessions with each other at the same time end up
//! with two sessions each; keeping [`MAX_SESSIONS_PER_PEER`] per peer and
//! moving the one that last decrypted to the front makes both converge.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use zeroize::Zeroizing;

use super::{ClientError, FetchedBundle};
use crate::error::{DecodeError, Error};
use crate::ids::MessageId;
use crate::keys::{
    IdentityKeyPair, IdentityPublic, MailboxKeyPair, MailboxPublic, OneTimePqPreKey,
    OneTimePqPreKeyPublic, OneTimePreKey, OneTimePreKeyPublic, PqPreKey, SignedPreKey,
};
use crate::message::AppMessage;
use crate::pqxdh::{self, InitialHeader, PqPrekeyId, PqSecret, SignedPreKeyBundle};
use crate::ratchet::{RatchetError, Session};
use crate::sealed::{self, Envelope, SealedBody, SealedContent, SenderInfo};
use crate::wire::{Reader, Writer};
use crate::{CryptoRng, UnixTime};

/// Sealed-content bytes of a self copy besides its filler: version, sender
/// identity and mailbox, tag, and the ratchet message's length prefix.
const SELF_COPY_OVERHEAD: usize = 1 + 64 + 64 + 1 + 4;

/// Sessions kept per peer. Two is enough for two devices that start
/// sessions with each other at the same moment; four leaves room for a peer
/// that restarted from saved state, without letting a peer make us try an
/// unbounded number of sessions on every message.
pub const MAX_SESSIONS_PER_PEER: usize = 4;

/// Message ids remembered to drop duplicates. Duplicates come from a relay
/// redelivering before an acknowledgement landed, so only recent ids
/// matter; 4096 covers far more than one unacknowledged batch.
pub const MAX_SEEN_IDS: usize = 4096;

/// Most peers one endpoint keeps sessions with (a counselor: one per
/// conversation plus colleagues). Bounds the saved state.
pub const MAX_PEERS: usize = 8192;

/// How often a counselor device replaces its signed X25519 prekey and its
/// signed last-resort ML-KEM prekey (weekly; at the first sync after the
/// period, since a device changes nothing between syncs). Every session
/// start the relay let through without a one-time prekey depends on these
/// two keys for its forward secrecy, so they must not live for ever.
pub const SIGNED_PREKEY_ROTATION_SECS: u64 = 7 * 24 * 3600;

/// How long the secrets of a replaced signed prekey pair are kept after the
/// rotation that replaced them, so that a session start sealed to the
/// previous bundle while it was still handed out (or still on its way)
/// opens. Then they are deleted (zeroized): a device state seized later
/// cannot open an opening logged earlier than the grace.
pub const SIGNED_PREKEY_GRACE_SECS: u64 = 7 * 24 * 3600;

/// Oldest a one-time prekey secret (either kind) gets before it is deleted,
/// used or not. A device cannot know which of its one-time prekeys the relay
/// handed out to someone who never used them (a hostile relay, or someone
/// draining them); without an end, those secrets would be kept, able to
/// open a logged session start, for ever. The relay's copies are replaced
/// by a fresh set at every rotation and every top-up (see the driver), so a
/// key on the relay is always far younger than this.
pub const ONE_TIME_PREKEY_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// Most one-time prekeys of each kind a device keeps (bounds saved state:
/// 38 bytes an X25519 one, 70 a one-time ML-KEM seed). When new ones would
/// pass it, the oldest held are deleted first: a device whose prekeys are
/// being drained still makes new ones, for ever.
pub const MAX_ONE_TIME_PREKEYS: usize = 2000;

/// Most signed prekey generations kept: the current one and the replaced
/// ones still in their grace period (at one rotation a week and a week's
/// grace, two; more only if rotations come faster).
pub const MAX_SIGNED_PREKEY_GENERATIONS: usize = 8;

/// Saved-state format version of an endpoint (2: dated signed prekey
/// generations, dated one-time prekeys of both kinds).
pub const ENDPOINT_STATE_VERSION: u8 = 2;

/// A signed X25519 prekey and a signed last-resort ML-KEM prekey, made and
/// uploaded together.
#[derive(Debug)]
struct Generation {
    /// When it was made ([`UNSTAMPED`] for a device's first pair, made before
    /// the device knew the time; stamped at its first sync).
    created_at: UnixTime,
    signed: SignedPreKey,
    pq: PqPreKey,
}

/// A one-time prekey secret, kept encoded (so a failed session start can
/// reload it instead of losing it), with the time it was made.
#[derive(Debug)]
struct Held {
    created_at: UnixTime,
    encoded: Zeroizing<Vec<u8>>,
}

/// The creation time of a device's first signed prekeys, before its first
/// sync said what time it is.
const UNSTAMPED: UnixTime = UnixTime(0);

/// The prekeys a counselor device answers session starts with.
#[derive(Debug)]
pub struct PrekeyStore {
    /// Signed prekey generations, oldest first. The last one is current (in
    /// the bundle on the relay); the others were replaced less than
    /// [`SIGNED_PREKEY_GRACE_SECS`] ago.
    generations: Vec<Generation>,
    /// Unused one-time X25519 prekeys, by id.
    one_time: BTreeMap<u32, Held>,
    /// Unused one-time ML-KEM prekeys (seeds), by id.
    one_time_pq: BTreeMap<u32, Held>,
}

/// A random id not in `taken` (ids are random so that they say nothing
/// about how many sessions a device has had).
fn fresh_id(taken: impl Fn(u32) -> bool, rng: &mut impl CryptoRng) -> u32 {
    loop {
        let id = rng.next_u32();
        if id != 0 && !taken(id) {
            return id;
        }
    }
}

/// Deletes the oldest of `held` until `room` more fit under
/// [`MAX_ONE_TIME_PREKEYS`].
fn make_room(held: &mut BTreeMap<u32, Held>, room: usize) {
    let excess = (held.len() + room).saturating_sub(MAX_ONE_TIME_PREKEYS);
    if excess == 0 {
        return;
    }
    let mut by_age: Vec<(UnixTime, u32)> = held.iter().map(|(id, h)| (h.created_at, *id)).collect();
    by_age.sort_unstable();
    for (_, id) in by_age.into_iter().take(excess) {
        held.remove(&id);
    }
}

/// Deletes what is [`ONE_TIME_PREKEY_MAX_AGE_SECS`] old; says whether any was.
fn expire_held(held: &mut BTreeMap<u32, Held>, now: UnixTime) -> bool {
    let before = held.len();
    held.retain(|_, h| h.created_at.0.saturating_add(ONE_TIME_PREKEY_MAX_AGE_SECS) > now.0);
    held.len() != before
}

impl PrekeyStore {
    /// Fresh signed and ML-KEM prekeys (dated at the first
    /// [`PrekeyStore::rotate_if_due`]) and no one-time prekeys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut store = PrekeyStore {
            generations: Vec::new(),
            one_time: BTreeMap::new(),
            one_time_pq: BTreeMap::new(),
        };
        store.push_generation(UNSTAMPED, rng);
        store
    }

    fn push_generation(&mut self, now: UnixTime, rng: &mut impl CryptoRng) {
        let gens = &self.generations;
        let spk_id = fresh_id(|id| gens.iter().any(|g| g.signed.id == id), rng);
        let pq_id = fresh_id(|id| gens.iter().any(|g| g.pq.id == id), rng);
        self.generations.push(Generation {
            created_at: now,
            signed: SignedPreKey::generate(spk_id, rng),
            pq: PqPreKey::generate(pq_id, rng),
        });
        if self.generations.len() > MAX_SIGNED_PREKEY_GENERATIONS {
            self.generations.remove(0);
        }
    }

    fn current(&self) -> &Generation {
        // Never empty: made with one, and only ever grows before pruning
        // all but the last.
        &self.generations[self.generations.len() - 1]
    }

    /// The bundle to upload (signed by the identity's Ed25519 key): the
    /// current signed prekeys.
    pub fn bundle(&self, identity: &IdentityKeyPair) -> SignedPreKeyBundle {
        let g = self.current();
        SignedPreKeyBundle::build(identity, &g.signed, &g.pq)
    }

    /// When the current signed prekeys were made (0 before the first sync).
    pub fn signed_prekey_created_at(&self) -> UnixTime {
        self.current().created_at
    }

    /// Signed prekey generations held (the current one and those in their
    /// grace period).
    pub fn generations(&self) -> usize {
        self.generations.len()
    }

    /// Replaces the signed X25519 and last-resort ML-KEM prekeys with new
    /// ones when the current ones are [`SIGNED_PREKEY_ROTATION_SECS`] old;
    /// the replaced ones are kept for [`SIGNED_PREKEY_GRACE_SECS`] (see
    /// [`PrekeyStore::expire`]). A device's first prekeys, made before it
    /// knew the time, are dated now instead. Says whether it rotated (the
    /// bundle must then be uploaded again).
    pub fn rotate_if_due(&mut self, now: UnixTime, rng: &mut impl CryptoRng) -> bool {
        let created = self.current().created_at;
        if created == UNSTAMPED {
            let last = self.generations.len() - 1;
            self.generations[last].created_at = now;
            return false;
        }
        if created.0.saturating_add(SIGNED_PREKEY_ROTATION_SECS) > now.0 {
            return false;
        }
        self.rotate(now, rng);
        true
    }

    /// Replaces the signed prekeys now, whatever their age.
    pub fn rotate(&mut self, now: UnixTime, rng: &mut impl CryptoRng) {
        self.push_generation(now, rng);
    }

    /// Deletes the signed prekeys replaced [`SIGNED_PREKEY_GRACE_SECS`] ago
    /// or more and the one-time prekeys [`ONE_TIME_PREKEY_MAX_AGE_SECS`] old
    /// (their secrets are zeroized as they are dropped). Says whether
    /// anything was deleted.
    pub fn expire(&mut self, now: UnixTime) -> bool {
        let mut changed = false;
        // Generation 0 was replaced when generation 1 was made.
        while self.generations.len() > 1
            && self.generations[1]
                .created_at
                .0
                .saturating_add(SIGNED_PREKEY_GRACE_SECS)
                <= now.0
        {
            self.generations.remove(0);
            changed = true;
        }
        changed |= expire_held(&mut self.one_time, now);
        changed |= expire_held(&mut self.one_time_pq, now);
        changed
    }

    /// Makes `count` new one-time X25519 prekeys (at most
    /// [`MAX_ONE_TIME_PREKEYS`]), dated `now`, with random ids not held;
    /// deletes the oldest held beyond the cap. Returns the public halves to
    /// upload.
    pub fn generate_one_time(
        &mut self,
        count: usize,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Vec<OneTimePreKeyPublic> {
        let count = count.min(MAX_ONE_TIME_PREKEYS);
        make_room(&mut self.one_time, count);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let held = &self.one_time;
            let id = fresh_id(|id| held.contains_key(&id), rng);
            let key = OneTimePreKey::generate(id, rng);
            out.push(key.public());
            self.one_time.insert(
                id,
                Held {
                    created_at: now,
                    encoded: key.encode(),
                },
            );
        }
        out
    }

    /// As [`PrekeyStore::generate_one_time`], for one-time ML-KEM prekeys,
    /// each signed by `identity`.
    pub fn generate_one_time_pq(
        &mut self,
        count: usize,
        now: UnixTime,
        identity: &IdentityKeyPair,
        rng: &mut impl CryptoRng,
    ) -> Vec<OneTimePqPreKeyPublic> {
        let count = count.min(MAX_ONE_TIME_PREKEYS);
        make_room(&mut self.one_time_pq, count);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let held = &self.one_time_pq;
            let id = fresh_id(|id| held.contains_key(&id), rng);
            let key = OneTimePqPreKey::generate(id, rng);
            out.push(OneTimePqPreKeyPublic::build(identity, &key));
            self.one_time_pq.insert(
                id,
                Held {
                    created_at: now,
                    encoded: key.encode(),
                },
            );
        }
        out
    }

    /// When the newest one-time prekey held (of either kind) was made.
    pub fn newest_one_time_at(&self) -> Option<UnixTime> {
        self.one_time
            .values()
            .chain(self.one_time_pq.values())
            .map(|h| h.created_at)
            .max()
    }

    /// Unused one-time X25519 prekeys held.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }

    /// Unused one-time ML-KEM prekeys held.
    pub fn one_time_pq_count(&self) -> usize {
        self.one_time_pq.len()
    }

    fn signed(&self, id: u32) -> Option<&SignedPreKey> {
        self.generations
            .iter()
            .rev()
            .map(|g| &g.signed)
            .find(|k| k.id == id)
    }

    fn last_resort(&self, id: u32) -> Option<&PqPreKey> {
        self.generations
            .iter()
            .rev()
            .map(|g| &g.pq)
            .find(|k| k.id == id)
    }

    /// ```text
    /// generations:u8 (1..=8) || (created_at:u64 || signed_prekey:vec16 || pq_prekey:vec16)*
    /// one_time:u16 (≤ 2000)    || (created_at:u64 || one_time_prekey:vec16)*
    /// one_time_pq:u16 (≤ 2000) || (created_at:u64 || one_time_pq_prekey:vec16)*
    /// ```
    fn write(&self, w: &mut Writer) -> Result<(), Error> {
        if self.generations.is_empty() || self.generations.len() > MAX_SIGNED_PREKEY_GENERATIONS {
            return Err(Error::TooLongToEncode {
                what: "signed prekey generations",
                max: MAX_SIGNED_PREKEY_GENERATIONS,
                got: self.generations.len(),
            });
        }
        w.u8(self.generations.len() as u8);
        for g in &self.generations {
            w.u64(g.created_at.0);
            w.vec_u16(&g.signed.encode(), 256, "signed prekey")?;
            w.vec_u16(&g.pq.encode(), usize::from(u16::MAX), "pq prekey")?;
        }
        for (held, what) in [
            (&self.one_time, "one-time prekeys"),
            (&self.one_time_pq, "one-time pq prekeys"),
        ] {
            w.count_u16(held.len(), MAX_ONE_TIME_PREKEYS, what)?;
            for h in held.values() {
                w.u64(h.created_at.0);
                w.vec_u16(&h.encoded, 256, what)?;
            }
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = usize::from(r.u8("signed prekey generations")?);
        if n == 0 || n > MAX_SIGNED_PREKEY_GENERATIONS {
            return Err(DecodeError::Invalid {
                what: "signed prekey generations",
            });
        }
        let mut generations: Vec<Generation> = Vec::with_capacity(n);
        for _ in 0..n {
            let created_at = UnixTime(r.u64("signed prekey time")?);
            let signed = SignedPreKey::decode(r.vec_u16(256, "signed prekey")?)?;
            let pq = PqPreKey::decode(r.vec_u16(usize::from(u16::MAX), "pq prekey")?)?;
            if generations
                .iter()
                .any(|g| g.signed.id == signed.id || g.pq.id == pq.id)
            {
                return Err(DecodeError::Invalid {
                    what: "signed prekey ids",
                });
            }
            generations.push(Generation {
                created_at,
                signed,
                pq,
            });
        }
        let one_time = read_held(r, "one-time prekeys", |b| Ok(OneTimePreKey::decode(b)?.id))?;
        let one_time_pq = read_held(r, "one-time pq prekeys", OneTimePqPreKey::decode_id)?;
        Ok(PrekeyStore {
            generations,
            one_time,
            one_time_pq,
        })
    }
}

/// Reads a counted list of dated one-time prekey encodings, checking each
/// (`id_of`) and refusing a repeated id.
fn read_held(
    r: &mut Reader<'_>,
    what: &'static str,
    id_of: impl Fn(&[u8]) -> Result<u32, DecodeError>,
) -> Result<BTreeMap<u32, Held>, DecodeError> {
    let n = r.count_u16(MAX_ONE_TIME_PREKEYS, what)?;
    let mut held = BTreeMap::new();
    for _ in 0..n {
        let created_at = UnixTime(r.u64(what)?);
        let bytes = r.vec_u16(256, what)?;
        let id = id_of(bytes)?;
        let h = Held {
            created_at,
            encoded: Zeroizing::new(bytes.to_vec()),
        };
        if held.insert(id, h).is_some() {
            return Err(DecodeError::Invalid { what });
        }
    }
    Ok(held)
}

/// A peer and the sessions kept with it, newest (or last used) first.
struct Peer {
    identity: IdentityPublic,
    mailbox: MailboxPublic,
    sessions: VecDeque<Session>,
    /// Set while we started the front session and the peer has not answered:
    /// outgoing messages then carry this header.
    pending_header: Option<InitialHeader>,
}

/// A message that was opened and decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Who sent it (authenticated by the session it decrypted under).
    pub from: IdentityPublic,
    /// Where replies to them go.
    pub from_mailbox: MailboxPublic,
    pub message: AppMessage,
}

/// One party: identity, mailbox, optional prekeys, sessions with peers.
pub struct Endpoint {
    identity: IdentityKeyPair,
    mailbox: MailboxKeyPair,
    prekeys: Option<PrekeyStore>,
    peers: BTreeMap<PeerKey, Peer>,
    seen: VecDeque<MessageId>,
    seen_set: BTreeSet<MessageId>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("mailbox", &self.mailbox.id())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint that accepts session starts (a counselor device).
    pub fn with_prekeys(
        identity: IdentityKeyPair,
        mailbox: MailboxKeyPair,
        prekeys: PrekeyStore,
    ) -> Self {
        Self::build(identity, mailbox, Some(prekeys))
    }

    /// An endpoint that only starts sessions (a seeker).
    pub fn without_prekeys(identity: IdentityKeyPair, mailbox: MailboxKeyPair) -> Self {
        Self::build(identity, mailbox, None)
    }

    fn build(
        identity: IdentityKeyPair,
        mailbox: MailboxKeyPair,
        prekeys: Option<PrekeyStore>,
    ) -> Self {
        Endpoint {
            identity,
            mailbox,
            prekeys,
            peers: BTreeMap::new(),
            seen: VecDeque::new(),
            seen_set: BTreeSet::new(),
        }
    }

    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    pub fn mailbox(&self) -> &MailboxKeyPair {
        &self.mailbox
    }

    pub fn prekeys(&self) -> Option<&PrekeyStore> {
        self.prekeys.as_ref()
    }

    pub fn prekeys_mut(&mut self) -> Option<&mut PrekeyStore> {
        self.prekeys.as_mut()
    }

    /// Makes `count` one-time ML-KEM prekeys ([`PrekeyStore::generate_one_time_pq`]),
    /// signed by this endpoint's identity.
    pub fn new_one_time_pq_prekeys(
        &mut self,
        count: usize,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<OneTimePqPreKeyPublic>, Error> {
        let store = self.prekeys.as_mut().ok_or(ClientError::NoPrekeys)?;
        Ok(store.generate_one_time_pq(count, now, &self.identity, rng))
    }

    /// Whether a session with this peer exists.
    pub fn has_session(&self, peer: &IdentityPublic) -> bool {
        self.peers
            .get(&peer_key(peer))
            .is_some_and(|p| !p.sessions.is_empty())
    }

    /// Forgets every session with `peer` (after a delete request).
    pub fn forget(&mut self, peer: &IdentityPublic) {
        self.peers.remove(&peer_key(peer));
    }

    /// Encrypts `msg` for the peer `to` (identity and mailbox from the
    /// directory or from an earlier message) and seals it to its mailbox.
    /// With no session yet, `bundle` must be the peer's fetched prekey bundle.
    pub fn seal_to(
        &mut self,
        to: &IdentityPublic,
        to_mailbox: &MailboxPublic,
        bundle: Option<&FetchedBundle>,
        msg: &AppMessage,
        rng: &mut impl CryptoRng,
    ) -> Result<Envelope, Error> {
        let plaintext = Zeroizing::new(msg.encode()?);
        if !self.has_session(to) {
            let fetched = bundle.ok_or(ClientError::NoSession)?;
            self.start_session(to, to_mailbox, fetched, rng)?;
        }
        let peer = self
            .peers
            .get_mut(&peer_key(to))
            .ok_or(ClientError::NoSession)?;
        let session = peer.sessions.front_mut().ok_or(ClientError::NoSession)?;
        let ratchet_message = session.encrypt(&plaintext, rng)?;
        let body = match &peer.pending_header {
            Some(header) => SealedBody::PreKey {
                header: Box::new(header.clone()),
                ratchet_message,
            },
            None => SealedBody::Ratchet { ratchet_message },
        };
        let content = SealedContent {
            sender: SenderInfo {
                identity: self.identity.public(),
                mailbox: self.mailbox.public(),
            },
            body,
        };
        sealed::seal(&peer.mailbox, &content, rng)
    }

    /// Starts a new session with `to` from its fetched prekey bundle (PQXDH
    /// `initiate`), in front of any kept: the next messages to `to` go on it,
    /// as `PreKey` bodies until the peer answers. Older sessions are kept
    /// (up to [`MAX_SESSIONS_PER_PEER`]) to read what the peer sent on them.
    pub fn start_session(
        &mut self,
        to: &IdentityPublic,
        to_mailbox: &MailboxPublic,
        fetched: &FetchedBundle,
        rng: &mut impl CryptoRng,
    ) -> Result<(), Error> {
        if fetched.mailbox != to_mailbox.id() {
            return Err(ClientError::MissingBundle {
                mailbox: to_mailbox.id(),
            }
            .into());
        }
        let mut bundle = SignedPreKeyBundle::decode(&fetched.signed_bundle)?.verify_for(to)?;
        if let Some(bytes) = &fetched.one_time_pq {
            bundle = bundle.with_one_time_pq(&OneTimePqPreKeyPublic::decode(bytes)?)?;
        }
        let otk = fetched
            .one_time
            .as_ref()
            .map(|b| OneTimePreKeyPublic::decode(b))
            .transpose()?;
        let (header, sk, ad) =
            pqxdh::initiate(rng, &self.identity, &self.mailbox, &bundle, otk.as_ref())?;
        let session = Session::initiate(
            sk.into_bytes(),
            ad.as_bytes().to_vec(),
            bundle.signed_prekey().0,
            rng,
        );
        self.insert_session(*to, *to_mailbox, session, Some(header))
    }

    fn insert_session(
        &mut self,
        peer: IdentityPublic,
        mailbox: MailboxPublic,
        session: Session,
        pending_header: Option<InitialHeader>,
    ) -> Result<(), Error> {
        let key = peer_key(&peer);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_PEERS {
            return Err(crate::ApiMisuse::TooManyPeers { max: MAX_PEERS }.into());
        }
        let entry = self.peers.entry(key).or_insert_with(|| Peer {
            identity: peer,
            mailbox,
            sessions: VecDeque::new(),
            pending_header: None,
        });
        entry.mailbox = mailbox;
        entry.sessions.push_front(session);
        entry.sessions.truncate(MAX_SESSIONS_PER_PEER);
        entry.pending_header = pending_header;
        Ok(())
    }

    /// An envelope to this endpoint's own mailbox, padded to the same size
    /// bucket as `like`, that this endpoint drops on receipt. A fan-out that
    /// includes it goes to the full set of devices, the acting one too, so
    /// the recipients of a batch do not tell the relay who acted
    /// (PROTOCOL.md §6.3). Its body is random bytes under a `Ratchet` tag,
    /// sealed like any other envelope.
    pub fn self_copy(&self, like: &Envelope, rng: &mut impl CryptoRng) -> Result<Envelope, Error> {
        use crate::padding::BUCKETS;
        let bucket = like
            .ciphertext()
            .len()
            .saturating_sub(sealed::HPKE_ENC_LEN + sealed::AEAD_TAG_LEN);
        // The smallest content that still lands in `bucket`: just above the
        // previous one (sealed content = 134 bytes of header + filler).
        let previous = BUCKETS
            .iter()
            .copied()
            .take_while(|b| *b < bucket)
            .last()
            .unwrap_or(0);
        let filler_len = previous.saturating_sub(SELF_COPY_OVERHEAD);
        let mut filler = vec![0u8; filler_len];
        rng.fill_bytes(&mut filler);
        let content = SealedContent {
            sender: SenderInfo {
                identity: self.identity.public(),
                mailbox: self.mailbox.public(),
            },
            body: SealedBody::Ratchet {
                ratchet_message: filler,
            },
        };
        sealed::seal(&self.mailbox.public(), &content, rng)
    }

    /// Opens an envelope addressed to this endpoint's mailbox. Returns
    /// `Ok(None)` for a duplicate (a message id already seen, or a ratchet
    /// message whose key was already used); nothing changes on any error.
    pub fn open(&mut self, env: &Envelope) -> Result<Option<Received>, Error> {
        self.open_checked(env, |_| Ok(()))
    }

    /// [`Endpoint::open`], with `accept` deciding, before a new session is
    /// kept or a one-time prekey spent, whether the message may be taken at
    /// all (a counselor refuses another identity naming a known
    /// conversation's mailbox). A refusal changes nothing a session start
    /// would have changed.
    pub fn open_checked(
        &mut self,
        env: &Envelope,
        accept: impl FnOnce(&Received) -> Result<(), Error>,
    ) -> Result<Option<Received>, Error> {
        self.open_inner(env, |_| Ok(()), accept)
    }

    /// [`Endpoint::open`], refusing an envelope whose sealed sender is not
    /// `allowed` before any ratchet is touched (a seeker hears only the
    /// devices the directory lists now). A sender that passes is then
    /// authenticated by its session, as always.
    pub fn open_from(
        &mut self,
        env: &Envelope,
        allowed: impl FnOnce(&IdentityPublic) -> Result<(), Error>,
    ) -> Result<Option<Received>, Error> {
        self.open_inner(env, allowed, |_| Ok(()))
    }

    fn open_inner(
        &mut self,
        env: &Envelope,
        sender_ok: impl FnOnce(&IdentityPublic) -> Result<(), Error>,
        accept: impl FnOnce(&Received) -> Result<(), Error>,
    ) -> Result<Option<Received>, Error> {
        let content = sealed::open(&self.mailbox, env)?;
        let sender = content.sender;
        // Our own copy of a fan-out (see `self_copy`): nothing to read.
        if sender.identity == self.identity.public() {
            return Ok(None);
        }
        sender_ok(&sender.identity)?;
        let (plaintext, commit) = match &content.body {
            SealedBody::Ratchet { ratchet_message } => {
                match self.decrypt_existing(&sender.identity, ratchet_message)? {
                    Some(found) => found,
                    None => return Ok(None),
                }
            }
            SealedBody::PreKey {
                header,
                ratchet_message,
            } => {
                // A session start we may already have accepted (the
                // initiator repeats the header until we answer).
                match self.decrypt_existing(&sender.identity, ratchet_message) {
                    Ok(Some(found)) => found,
                    Ok(None) => return Ok(None),
                    Err(_) => self.accept_session(&sender, header, ratchet_message)?,
                }
            }
        };
        let message = AppMessage::decode(&plaintext)?;
        let duplicate = self.seen_set.contains(&message.id);
        let from_mailbox = match &commit {
            Commit::New { mailbox, .. } => *mailbox,
            Commit::Existing { .. } => self
                .peers
                .get(&peer_key(&sender.identity))
                .map_or(sender.mailbox, |p| p.mailbox),
        };
        let received = Received {
            from: sender.identity,
            from_mailbox,
            message,
        };
        // Asked for duplicates too: a replayed session start is refused
        // before its session could be kept again.
        accept(&received)?;
        self.apply(sender, commit);
        if duplicate {
            return Ok(None);
        }
        self.remember(received.message.id);
        Ok(Some(received))
    }

    /// Tries each session kept for `peer`; a session that fails is left
    /// unchanged by the ratchet, the one that succeeds has advanced.
    /// `Ok(None)`: a replay of a message already read.
    fn decrypt_existing(
        &mut self,
        peer: &IdentityPublic,
        ratchet_message: &[u8],
    ) -> Result<Option<Opened>, Error> {
        let p = self
            .peers
            .get_mut(&peer_key(peer))
            .ok_or(ClientError::UnknownSender)?;
        let mut replay = false;
        for (index, session) in p.sessions.iter_mut().enumerate() {
            match session.decrypt(ratchet_message) {
                Ok(pt) => return Ok(Some((pt, Commit::Existing { index }))),
                Err(RatchetError::Replay) => replay = true,
                Err(_) => {}
            }
        }
        if replay {
            return Ok(None);
        }
        Err(RatchetError::HeaderUndecryptable.into())
    }

    fn accept_session(
        &self,
        sender: &SenderInfo,
        header: &InitialHeader,
        ratchet_message: &[u8],
    ) -> Result<Opened, Error> {
        let store = self.prekeys.as_ref().ok_or(ClientError::NoPrekeys)?;
        // The signed prekeys the header names: the current ones or ones
        // replaced less than the grace period ago.
        let signed = store
            .signed(header.signed_prekey_id())
            .ok_or(ClientError::UnknownPrekey {
                which: "signed",
                id: header.signed_prekey_id(),
            })?;
        // One-time prekeys are reloaded from their saved copies: they are
        // deleted from the store only once the first message has decrypted.
        let one_time_pq;
        let pq = match header.pq_prekey() {
            PqPrekeyId::LastResort(id) => {
                PqSecret::LastResort(store.last_resort(id).ok_or(ClientError::UnknownPrekey {
                    which: "ml-kem",
                    id,
                })?)
            }
            PqPrekeyId::OneTime(id) => {
                let held = store
                    .one_time_pq
                    .get(&id)
                    .ok_or(ClientError::UnknownPrekey {
                        which: "one-time ml-kem",
                        id,
                    })?;
                one_time_pq = OneTimePqPreKey::decode(&held.encoded)?;
                PqSecret::OneTime(&one_time_pq)
            }
        };
        let otk = match header.one_time_prekey_id() {
            None => None,
            Some(id) => {
                let held = store.one_time.get(&id).ok_or(ClientError::UnknownPrekey {
                    which: "one-time",
                    id,
                })?;
                Some(OneTimePreKey::decode(&held.encoded)?)
            }
        };
        let (sk, ad) = pqxdh::respond(&self.identity, signed, pq, otk, header)?;
        let mut session = Session::respond(
            sk.into_bytes(),
            ad.as_bytes().to_vec(),
            signed.key.to_bytes(),
        );
        let pt = session.decrypt(ratchet_message)?;
        Ok((
            pt,
            Commit::New {
                session: Box::new(session),
                one_time_used: header.one_time_prekey_id(),
                one_time_pq_used: match header.pq_prekey() {
                    PqPrekeyId::OneTime(id) => Some(id),
                    PqPrekeyId::LastResort(_) => None,
                },
                mailbox: sender.mailbox,
            },
        ))
    }

    /// Keeps what the decryption changed; returns the peer's mailbox of
    /// record — bound when the session was set up (PQXDH's AD, or the
    /// directory when we started it), never the later claim in an envelope.
    fn apply(&mut self, sender: SenderInfo, commit: Commit) -> MailboxPublic {
        match commit {
            Commit::Existing { index } => {
                let Some(p) = self.peers.get_mut(&peer_key(&sender.identity)) else {
                    return sender.mailbox;
                };
                if let Some(session) = p.sessions.remove(index) {
                    p.sessions.push_front(session);
                }
                // The peer answered: it holds the session now at the front.
                p.pending_header = None;
                p.mailbox
            }
            Commit::New {
                session,
                one_time_used,
                one_time_pq_used,
                mailbox,
            } => {
                if let Some(store) = self.prekeys.as_mut() {
                    if let Some(id) = one_time_used {
                        store.one_time.remove(&id);
                    }
                    if let Some(id) = one_time_pq_used {
                        store.one_time_pq.remove(&id);
                    }
                }
                // Cannot fail for an existing peer; a new peer over the cap
                // is dropped (the message was still read).
                let _ = self.insert_session(sender.identity, mailbox, *session, None);
                mailbox
            }
        }
    }

    fn remember(&mut self, id: MessageId) {
        if self.seen_set.insert(id) {
            self.seen.push_back(id);
            while self.seen.len() > MAX_SEEN_IDS {
                if let Some(old) = self.seen.pop_front() {
                    self.seen_set.remove(&old);
                }
            }
        }
    }

    /// Saves everything: keys, prekeys, sessions, recent message ids.
    ///
    /// ```text
    /// version:u8 (=2) || identity:vec16 || mailbox:vec16
    ///   || has_prekeys:u8 || [prekey store (PrekeyStore::write)]
    ///   || peers:u16 || peer*  || seen:u16 || id[16]*
    /// peer = identity[64] || mailbox[64] || has_header:u8 || [header:vec16]
    ///        || sessions:u8 || session_state:vec32*
    /// ```
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut w = Writer::new();
        w.u8(ENDPOINT_STATE_VERSION);
        w.vec_u16(&self.identity.encode(), 1024, "identity")?;
        w.vec_u16(&self.mailbox.encode(), 1024, "mailbox")?;
        match &self.prekeys {
            Some(store) => {
                w.u8(1);
                store.write(&mut w)?;
            }
            None => {
                w.u8(0);
            }
        }
        w.count_u16(self.peers.len(), MAX_PEERS, "peers")?;
        for peer in self.peers.values() {
            peer.identity.write(&mut w);
            peer.mailbox.write(&mut w);
            match &peer.pending_header {
                Some(h) => {
                    w.u8(1);
                    w.vec_u16(&h.encode(), 4096, "pending header")?;
                }
                None => {
                    w.u8(0);
                }
            }
            w.u8(peer.sessions.len() as u8);
            for s in &peer.sessions {
                w.vec_u32(&s.encode_state(), 1 << 20, "session")?;
            }
        }
        w.count_u16(self.seen.len(), MAX_SEEN_IDS, "seen ids")?;
        for id in &self.seen {
            w.bytes(&id.0);
        }
        Ok(Zeroizing::new(w.into_bytes()))
    }

    /// Restores what [`Endpoint::encode`] saved.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(ENDPOINT_STATE_VERSION, "endpoint state")?;
        let identity = IdentityKeyPair::decode(r.vec_u16(1024, "identity")?)?;
        let mailbox = MailboxKeyPair::decode(r.vec_u16(1024, "mailbox")?)?;
        let prekeys = match r.u8("has prekeys")? {
            0 => None,
            1 => Some(PrekeyStore::read(&mut r)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "has prekeys",
                    tag,
                }
                .into());
            }
        };
        let mut ep = Endpoint::build(identity, mailbox, prekeys);
        let n = r.count_u16(MAX_PEERS, "peers")?;
        for _ in 0..n {
            let identity = IdentityPublic::read(&mut r)?;
            let mailbox = MailboxPublic::read(&mut r)?;
            let pending_header = match r.u8("has header")? {
                0 => None,
                1 => Some(InitialHeader::decode(r.vec_u16(4096, "pending header")?)?),
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "has header",
                        tag,
                    }
                    .into());
                }
            };
            let count = usize::from(r.u8("sessions")?);
            if count == 0 || count > MAX_SESSIONS_PER_PEER {
                return Err(DecodeError::Invalid {
                    what: "session count",
                }
                .into());
            }
            let mut sessions = VecDeque::new();
            for _ in 0..count {
                sessions.push_back(Session::decode_state(r.vec_u32(1 << 20, "session")?)?);
            }
            ep.peers.insert(
                peer_key(&identity),
                Peer {
                    identity,
                    mailbox,
                    sessions,
                    pending_header,
                },
            );
        }
        let seen = r.count_u16(MAX_SEEN_IDS, "seen ids")?;
        for _ in 0..seen {
            ep.remember(MessageId(r.array("seen id")?));
        }
        r.finish("endpoint state")?;
        Ok(ep)
    }
}

/// Map key of a peer: its two identity public keys.
type PeerKey = [u8; 64];

fn peer_key(id: &IdentityPublic) -> PeerKey {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&id.x25519.0);
    k[32..].copy_from_slice(&id.ed25519.0);
    k
}

/// A decrypted plaintext and what to keep because of it.
type Opened = (Zeroizing<Vec<u8>>, Commit);

/// What to keep once a message has decrypted.
enum Commit {
    /// Session `index` of the sender decrypted it (already advanced in place).
    Existing { index: usize },
    /// A new session from a session start.
    New {
        session: Box<Session>,
        one_time_used: Option<u32>,
        one_time_pq_used: Option<u32>,
        mailbox: MailboxPublic,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Body, MessageText};
    use crate::{UnixTime, ids::MessageId};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn text(rng: &mut ChaCha20Rng, t: &str) -> AppMessage {
        AppMessage::new(
            MessageId::random(rng),
            UnixTime(1_800_000_000),
            Body::Text {
                text: MessageText::new(t),
            },
        )
    }

    #[test]
    fn a_later_envelope_cannot_redirect_the_peers_mailbox() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut alice = Endpoint::without_prekeys(
            IdentityKeyPair::generate(&mut rng),
            MailboxKeyPair::generate(&mut rng),
        );
        let mut bob = Endpoint::with_prekeys(
            IdentityKeyPair::generate(&mut rng),
            MailboxKeyPair::generate(&mut rng),
            PrekeyStore::generate(&mut rng),
        );
        let fetched = FetchedBundle {
            mailbox: bob.mailbox().id(),
            signed_bundle: bob.prekeys().unwrap().bundle(bob.identity()).encode(),
            one_time: None,
            one_time_pq: None,
        };
        let (bob_id, bob_mb) = (bob.identity().public(), bob.mailbox().public());
        let first = alice
            .seal_to(
                &bob_id,
                &bob_mb,
                Some(&fetched),
                &text(&mut rng, "hi"),
                &mut rng,
            )
            .unwrap();
        let got = bob.open(&first).unwrap().unwrap();
        assert_eq!(got.from_mailbox, alice.mailbox().public());

        // Bob answers, so Alice's next message is a plain ratchet message.
        let (alice_id, alice_mb) = (alice.identity().public(), alice.mailbox().public());
        let answer = bob
            .seal_to(
                &alice_id,
                &alice_mb,
                None,
                &text(&mut rng, "hello"),
                &mut rng,
            )
            .unwrap();
        assert!(alice.open(&answer).unwrap().is_some());

        // A later message whose sealed sender claims another mailbox: the
        // ratchet message is genuine, the claim is not believed.
        let second = alice
            .seal_to(&bob_id, &bob_mb, None, &text(&mut rng, "again"), &mut rng)
            .unwrap();
        let mut content = sealed::open(bob.mailbox(), &second).unwrap();
        let elsewhere = MailboxKeyPair::generate(&mut rng).public();
        content.sender.mailbox = elsewhere;
        let forged = sealed::seal(&bob_mb, &content, &mut rng).unwrap();
        let got = bob.open(&forged).unwrap().unwrap();
        assert_eq!(got.from_mailbox, alice.mailbox().public());
        assert_ne!(got.from_mailbox, elsewhere);

        // And state round-trips with the mailbox of record.
        let bob2 = Endpoint::decode(&bob.encode().unwrap()).unwrap();
        assert!(bob2.has_session(&alice.identity().public()));
    }

    fn round_trip(store: &PrekeyStore) -> PrekeyStore {
        let mut w = Writer::new();
        store.write(&mut w).unwrap();
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let back = PrekeyStore::read(&mut r).unwrap();
        r.finish("prekeys").unwrap();
        back
    }

    /// One-time prekey ids are random (the lowest id says nothing about how
    /// many sessions a device had), never repeat an id held, and a device
    /// past its cap drops its oldest keys instead of making no more.
    #[test]
    fn one_time_prekeys_have_random_ids_and_no_lifetime_cap() {
        let mut rng = ChaCha20Rng::from_seed([10; 32]);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut store = PrekeyStore::generate(&mut rng);
        let first = store.generate_one_time(100, UnixTime(1000), &mut rng);
        let ids: BTreeSet<u32> = first.iter().map(|k| k.id).collect();
        assert_eq!(ids.len(), 100);
        assert!(
            *ids.first().unwrap() > 1000,
            "not a counter: {:?}",
            ids.first()
        );
        let pq = store.generate_one_time_pq(3, UnixTime(1000), &identity, &mut rng);
        for k in &pq {
            k.verify(&identity.public()).unwrap();
        }
        // Far more than the cap, batch after batch: the store stays at the
        // cap, keeps the newest, and never stops making keys.
        let mut newest = Vec::new();
        for round in 0..(3 * MAX_ONE_TIME_PREKEYS / 100) as u64 {
            newest = store.generate_one_time(100, UnixTime(2000 + round), &mut rng);
            assert_eq!(newest.len(), 100);
        }
        assert_eq!(store.one_time_count(), MAX_ONE_TIME_PREKEYS);
        for k in &newest {
            assert!(store.one_time.contains_key(&k.id));
        }
        assert!(first.iter().all(|k| !store.one_time.contains_key(&k.id)));
        assert_eq!(store.one_time_pq_count(), 3);
        // Saved and loaded with their dates.
        let back = round_trip(&store);
        assert_eq!(back.one_time_count(), MAX_ONE_TIME_PREKEYS);
        assert_eq!(back.newest_one_time_at(), store.newest_one_time_at());
        assert_eq!(back.one_time_pq_count(), 3);
    }

    #[test]
    fn signed_prekeys_rotate_on_schedule_and_go_after_the_grace() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let mut store = PrekeyStore::generate(&mut rng);
        // First sync: dated, not replaced.
        assert!(!store.rotate_if_due(UnixTime(5000), &mut rng));
        assert_eq!(store.signed_prekey_created_at(), UnixTime(5000));
        let week = SIGNED_PREKEY_ROTATION_SECS;
        assert!(!store.rotate_if_due(UnixTime(5000 + week - 1), &mut rng));
        assert!(store.rotate_if_due(UnixTime(5000 + week), &mut rng));
        assert!(store.rotate_if_due(UnixTime(5000 + 2 * week), &mut rng));
        assert_eq!(store.generations(), 3);
        let back = round_trip(&store);
        assert_eq!(back.generations(), 3);
        assert_eq!(back.signed_prekey_created_at(), UnixTime(5000 + 2 * week));
        // The first pair was replaced at 5000 + week, the second at 5000 + 2 weeks.
        let grace = SIGNED_PREKEY_GRACE_SECS;
        assert!(!store.expire(UnixTime(5000 + week + grace - 1)));
        assert!(store.expire(UnixTime(5000 + week + grace)));
        assert_eq!(store.generations(), 2);
        assert!(store.expire(UnixTime(5000 + 2 * week + grace)));
        assert_eq!(store.generations(), 1);
        // The current pair stays, however old.
        assert!(!store.expire(UnixTime(u64::MAX)));
        assert_eq!(store.generations(), 1);
        // Rotations faster than the grace keep at most the cap.
        for i in 0..20 {
            store.rotate(UnixTime(1_000_000 + i), &mut rng);
        }
        assert_eq!(store.generations(), MAX_SIGNED_PREKEY_GENERATIONS);
    }

    #[test]
    fn saved_prekeys_are_decoded_strictly() {
        let mut rng = ChaCha20Rng::from_seed([12; 32]);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut store = PrekeyStore::generate(&mut rng);
        store.generate_one_time(2, UnixTime(7), &mut rng);
        store.generate_one_time_pq(2, UnixTime(7), &identity, &mut rng);
        let mut w = Writer::new();
        store.write(&mut w).unwrap();
        let good = w.into_bytes();
        let read = |b: &[u8]| {
            let mut r = Reader::new(b);
            PrekeyStore::read(&mut r).and_then(|s| r.finish("prekeys").map(|()| s))
        };
        read(&good).unwrap();
        // No generation, or more than the cap.
        let mut none = good.clone();
        none[0] = 0;
        assert!(read(&none).is_err());
        let mut many = good.clone();
        many[0] = MAX_SIGNED_PREKEY_GENERATIONS as u8 + 1;
        assert!(read(&many).is_err());
        // The same one-time prekey twice.
        let key = OneTimePreKey::generate(9, &mut rng).encode();
        let mut w = Writer::new();
        w.u8(1).u64(1);
        w.vec_u16(&SignedPreKey::generate(1, &mut rng).encode(), 256, "s")
            .unwrap();
        w.vec_u16(&PqPreKey::generate(1, &mut rng).encode(), 65535, "p")
            .unwrap();
        w.u16(2);
        for _ in 0..2 {
            w.u64(1);
            w.vec_u16(&key, 256, "k").unwrap();
        }
        w.u16(0);
        assert!(read(&w.into_bytes()).is_err());
        // Trailing bytes.
        let mut long = good;
        long.push(0);
        assert!(read(&long).is_err());
    }
}
