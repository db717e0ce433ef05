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
use crate::CryptoRng;
use crate::error::{DecodeError, Error};
use crate::ids::MessageId;
use crate::keys::{
    IdentityKeyPair, IdentityPublic, MailboxKeyPair, MailboxPublic, OneTimePreKey,
    OneTimePreKeyPublic, PqPreKey, SignedPreKey,
};
use crate::message::AppMessage;
use crate::pqxdh::{self, InitialHeader, SignedPreKeyBundle};
use crate::ratchet::{RatchetError, Session};
use crate::sealed::{self, Envelope, SealedBody, SealedContent, SenderInfo};
use crate::wire::{Reader, Writer};

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

/// Most one-time prekeys a device keeps unused (bounds saved state; the
/// relay's own per-mailbox cap is of the same order).
pub const MAX_ONE_TIME_PREKEYS: usize = 1000;

/// Saved-state format version of an endpoint.
pub const ENDPOINT_STATE_VERSION: u8 = 1;

/// The prekeys a counselor device answers session starts with.
#[derive(Debug)]
pub struct PrekeyStore {
    signed: SignedPreKey,
    pq: PqPreKey,
    /// Unused one-time prekeys, saved encoded so a failed session start can
    /// reload the key instead of losing it.
    one_time: BTreeMap<u32, Zeroizing<Vec<u8>>>,
    next_one_time_id: u32,
}

impl PrekeyStore {
    /// Fresh signed, ML-KEM and no one-time prekeys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        PrekeyStore {
            signed: SignedPreKey::generate(1, rng),
            pq: PqPreKey::generate(1, rng),
            one_time: BTreeMap::new(),
            next_one_time_id: 1,
        }
    }

    /// The bundle to upload (signed by the identity's Ed25519 key).
    pub fn bundle(&self, identity: &IdentityKeyPair) -> SignedPreKeyBundle {
        SignedPreKeyBundle::build(identity, &self.signed, &self.pq)
    }

    /// Makes up to `count` new one-time prekeys (bounded by
    /// [`MAX_ONE_TIME_PREKEYS`] kept) and returns their public halves to upload.
    pub fn generate_one_time(
        &mut self,
        count: usize,
        rng: &mut impl CryptoRng,
    ) -> Vec<OneTimePreKeyPublic> {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(self.one_time.len());
        let mut out = Vec::new();
        for _ in 0..count.min(room) {
            let id = self.next_one_time_id;
            self.next_one_time_id = self.next_one_time_id.wrapping_add(1).max(1);
            let key = OneTimePreKey::generate(id, rng);
            out.push(key.public());
            self.one_time.insert(id, key.encode());
        }
        out
    }

    /// Unused one-time prekeys held.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }

    fn write(&self, w: &mut Writer) -> Result<(), Error> {
        w.vec_u16(
            &self.signed.encode(),
            usize::from(u16::MAX),
            "signed prekey",
        )?;
        w.vec_u16(&self.pq.encode(), usize::from(u16::MAX), "pq prekey")?;
        w.u32(self.next_one_time_id);
        w.count_u16(
            self.one_time.len(),
            MAX_ONE_TIME_PREKEYS,
            "one-time prekeys",
        )?;
        for v in self.one_time.values() {
            w.vec_u16(v, 256, "one-time prekey")?;
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let signed = SignedPreKey::decode(r.vec_u16(usize::from(u16::MAX), "signed prekey")?)?;
        let pq = PqPreKey::decode(r.vec_u16(usize::from(u16::MAX), "pq prekey")?)?;
        let next_one_time_id = r.u32("next one-time id")?;
        let n = r.count_u16(MAX_ONE_TIME_PREKEYS, "one-time prekeys")?;
        let mut one_time = BTreeMap::new();
        for _ in 0..n {
            let bytes = r.vec_u16(256, "one-time prekey")?;
            let key = OneTimePreKey::decode(bytes)?;
            one_time.insert(key.id, Zeroizing::new(bytes.to_vec()));
        }
        Ok(PrekeyStore {
            signed,
            pq,
            one_time,
            next_one_time_id,
        })
    }
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

    fn start_session(
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
        let bundle = SignedPreKeyBundle::decode(&fetched.signed_bundle)?.verify_for(to)?;
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
        if header.signed_prekey_id() != store.signed.id {
            return Err(ClientError::UnknownPrekey {
                which: "signed",
                id: header.signed_prekey_id(),
            }
            .into());
        }
        if header.pq_prekey_id() != store.pq.id {
            return Err(ClientError::UnknownPrekey {
                which: "ml-kem",
                id: header.pq_prekey_id(),
            }
            .into());
        }
        // Reload the one-time prekey from its saved copy: it is deleted from
        // the store only once the first message has decrypted.
        let otk = match header.one_time_prekey_id() {
            None => None,
            Some(id) => {
                let bytes = store.one_time.get(&id).ok_or(ClientError::UnknownPrekey {
                    which: "one-time",
                    id,
                })?;
                Some(OneTimePreKey::decode(bytes)?)
            }
        };
        let (sk, ad) = pqxdh::respond(&self.identity, &store.signed, &store.pq, otk, header)?;
        let mut session = Session::respond(
            sk.into_bytes(),
            ad.as_bytes().to_vec(),
            store.signed.key.to_bytes(),
        );
        let pt = session.decrypt(ratchet_message)?;
        Ok((
            pt,
            Commit::New {
                session: Box::new(session),
                one_time_used: header.one_time_prekey_id(),
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
                mailbox,
            } => {
                if let (Some(id), Some(store)) = (one_time_used, self.prekeys.as_mut()) {
                    store.one_time.remove(&id);
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
    /// version:u8 (=1) || identity:vec16 || mailbox:vec16
    ///   || has_prekeys:u8 || [prekey store]
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
}
