//! The saved formats of the clients that keep local state: a counselor
//! device and the administrator. One encode and one decode each, used by
//! every shell (the CLI's files, the browser's IndexedDB); the shell only
//! stores the sealed bytes. Layouts in docs/PROTOCOL.md §5.5 and §5.6.

use zeroize::Zeroizing;

use super::counselor::Counselor;
use crate::directory::{Directory, OrgPublicKey, OrgSigningKey};
use crate::error::DecodeError;
use crate::limits::MAX_ENVELOPE_LEN;
use crate::sealed::Envelope;
use crate::state::{MAX_LOCAL_STATE_PLAINTEXT_LEN, StateKey, StateKind};
use crate::wire::{Reader, Writer};
use crate::{CryptoRng, Error};

/// Version byte of [`DeviceState`].
pub const DEVICE_STATE_VERSION: u8 = 2;

/// Version byte of [`AdminState`].
pub const ADMIN_STATE_VERSION: u8 = 1;

/// Most envelopes a device keeps in quarantine (messages it could not
/// read). Each is kept so that it is never lost silently and can be looked
/// at or retried; beyond this the oldest is dropped and counted, so a flood
/// of junk cannot grow the saved state without bound.
pub const MAX_QUARANTINE: usize = 64;

/// Longest encoded organisation signing key in the admin state.
const MAX_ORG_KEY_LEN: usize = 1024;

/// Why a delivered envelope could not be read. Stable on disk (the tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UnreadableReason {
    /// The sealed layer did not open (not for this mailbox, or tampered).
    Sealed = 1,
    /// No session with the sender and no valid session start.
    NoSession = 2,
    /// The ratchet refused it (too many skipped keys, bad header, …).
    Ratchet = 3,
    /// It decrypted but is not a valid message, or not allowed from its sender.
    Invalid = 4,
    /// Anything else the client refused.
    Other = 5,
}

impl UnreadableReason {
    /// Classifies the error a receive returned.
    pub fn of(e: &Error) -> Self {
        use crate::client::ClientError;
        match e {
            Error::Sealed(_) => UnreadableReason::Sealed,
            Error::Pqxdh(_)
            | Error::Client(ClientError::UnknownSender | ClientError::UnknownPrekey { .. }) => {
                UnreadableReason::NoSession
            }
            Error::Ratchet(_) => UnreadableReason::Ratchet,
            Error::Decode(_)
            | Error::Client(
                ClientError::NotAllowed | ClientError::WrongSeeker | ClientError::UnlistedSender,
            ) => UnreadableReason::Invalid,
            _ => UnreadableReason::Other,
        }
    }

    /// A short stable name (for logs, JSON and translations).
    pub fn name(self) -> &'static str {
        match self {
            UnreadableReason::Sealed => "not-sealed-to-this-device",
            UnreadableReason::NoSession => "no-session",
            UnreadableReason::Ratchet => "ratchet-refused",
            UnreadableReason::Invalid => "invalid-message",
            UnreadableReason::Other => "refused",
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            1 => UnreadableReason::Sealed,
            2 => UnreadableReason::NoSession,
            3 => UnreadableReason::Ratchet,
            4 => UnreadableReason::Invalid,
            5 => UnreadableReason::Other,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "unreadable reason",
                    tag,
                });
            }
        })
    }
}

/// A delivered envelope the device could not read, kept instead of dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub reason: UnreadableReason,
    pub envelope: Envelope,
}

/// Everything a counselor device saves: the pinned organisation key, the
/// device (keys, prekeys, sessions, directory, inbox) and its quarantine.
#[derive(Debug)]
pub struct DeviceState {
    pub org: OrgPublicKey,
    pub counselor: Counselor,
    pub quarantine: Vec<Quarantined>,
    /// Unreadable envelopes dropped because the quarantine was full.
    pub quarantine_dropped: u32,
    /// Envelopes saved but not yet acknowledged by the relay (a team action
    /// whose deposit was cut off): sent again at the next sync, never lost.
    pub outbox: Vec<Envelope>,
}

/// Most envelopes waiting in a device's outbox: a few actions' fan-outs to
/// the largest team.
pub const MAX_OUTBOX: usize = 1024;

/// Most bytes of envelopes waiting in a device's outbox (a few long replies
/// to a large team), well inside the local state limit.
pub const MAX_OUTBOX_BYTES: usize = 16 << 20;

impl DeviceState {
    /// A new device with fresh keys.
    pub fn generate(org: OrgPublicKey, rng: &mut impl CryptoRng) -> Self {
        DeviceState {
            org,
            counselor: Counselor::generate(rng),
            quarantine: Vec::new(),
            quarantine_dropped: 0,
            outbox: Vec::new(),
        }
    }

    /// Keeps envelopes to deposit (saved before they are sent).
    /// Deletes the conversations whose retention has passed at `now`
    /// ([`Counselor::expire`]) and what the outbox still holds for their
    /// seekers. Returns the conversations deleted.
    pub fn expire(&mut self, now: crate::UnixTime) -> Vec<crate::ids::MailboxId> {
        let gone = self.counselor.expire(now);
        if !gone.is_empty() {
            self.outbox.retain(|e| !gone.contains(e.recipient()));
        }
        gone
    }

    /// Drops what the outbox still holds for the seeker of a conversation
    /// deleted by a purge ([`Counselor::purge`], or a colleague's `Purge`).
    pub fn drop_queued_for(&mut self, conversation: &crate::ids::MailboxId) {
        self.outbox.retain(|e| e.recipient() != conversation);
    }

    pub fn queue(&mut self, envelopes: &[Envelope]) -> Result<(), Error> {
        let bytes: usize = self
            .outbox
            .iter()
            .chain(envelopes)
            .map(Envelope::encoded_len)
            .sum();
        if self.outbox.len() + envelopes.len() > MAX_OUTBOX || bytes > MAX_OUTBOX_BYTES {
            return Err(crate::ApiMisuse::OutboxFull { max: MAX_OUTBOX }.into());
        }
        self.outbox.extend_from_slice(envelopes);
        Ok(())
    }

    /// Forgets envelopes the relay acknowledged.
    pub fn sent(&mut self, envelopes: &[Envelope]) {
        self.outbox.retain(|e| !envelopes.contains(e));
    }

    /// Keeps an envelope that could not be read.
    pub fn quarantine(&mut self, reason: UnreadableReason, envelope: Envelope) {
        if self.quarantine.len() >= MAX_QUARANTINE {
            self.quarantine.remove(0);
            self.quarantine_dropped = self.quarantine_dropped.saturating_add(1);
        }
        self.quarantine.push(Quarantined { reason, envelope });
    }

    /// ```text
    /// version:u8 (=2) || org[32] || counselor:vec32 (Counselor::encode)
    ///   || quarantine:u16 || (reason:u8 || envelope:vec32)* || dropped:u32
    ///   || outbox:u16 || envelope:vec32*
    /// ```
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut w = Writer::new();
        w.u8(DEVICE_STATE_VERSION).bytes(self.org.as_bytes());
        w.vec_u32(
            &self.counselor.encode()?,
            MAX_LOCAL_STATE_PLAINTEXT_LEN,
            "counselor",
        )?;
        w.count_u16(self.quarantine.len(), MAX_QUARANTINE, "quarantine")?;
        for q in &self.quarantine {
            w.u8(q.reason as u8);
            w.vec_u32(
                &q.envelope.encode(),
                MAX_ENVELOPE_LEN,
                "quarantined envelope",
            )?;
        }
        w.u32(self.quarantine_dropped);
        w.count_u16(self.outbox.len(), MAX_OUTBOX, "outbox")?;
        for e in &self.outbox {
            w.vec_u32(&e.encode(), MAX_ENVELOPE_LEN, "outbox envelope")?;
        }
        Ok(Zeroizing::new(w.into_bytes()))
    }

    /// Strictly decodes what [`DeviceState::encode`] wrote; the directory
    /// inside is verified again against the saved organisation key.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(DEVICE_STATE_VERSION, "device state")?;
        let org = OrgPublicKey::from_bytes(r.array("org")?)?;
        let counselor =
            Counselor::decode(r.vec_u32(MAX_LOCAL_STATE_PLAINTEXT_LEN, "counselor")?, &org)?;
        let n = r.count_u16(MAX_QUARANTINE, "quarantine")?;
        let mut quarantine = Vec::with_capacity(n);
        for _ in 0..n {
            let reason = UnreadableReason::from_tag(r.u8("unreadable reason")?)?;
            let envelope = Envelope::decode(r.vec_u32(MAX_ENVELOPE_LEN, "quarantined envelope")?)?;
            quarantine.push(Quarantined { reason, envelope });
        }
        let quarantine_dropped = r.u32("quarantine dropped")?;
        let n = r.count_u16(MAX_OUTBOX, "outbox")?;
        let mut outbox = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            outbox.push(Envelope::decode(
                r.vec_u32(MAX_ENVELOPE_LEN, "outbox envelope")?,
            )?);
        }
        r.finish("device state")?;
        Ok(DeviceState {
            org,
            counselor,
            quarantine,
            quarantine_dropped,
            outbox,
        })
    }

    /// Encrypts the encoding under the device's state key.
    pub fn seal(&self, key: &StateKey, rng: &mut impl CryptoRng) -> Result<Vec<u8>, Error> {
        key.seal(StateKind::Counselor, &self.encode()?, rng)
    }

    /// Opens a sealed device state.
    pub fn open(key: &StateKey, sealed: &[u8]) -> Result<Self, Error> {
        Self::decode(&key.open(StateKind::Counselor, sealed)?)
    }
}

/// The administrator's saved state: the organisation signing key and the
/// directory being prepared (the last published one plus edits).
#[derive(Debug)]
pub struct AdminState {
    pub key: OrgSigningKey,
    pub draft: Directory,
}

impl AdminState {
    /// ```text
    /// version:u8 (=1) || org_signing_key:vec16 || draft_directory:vec32
    /// ```
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut w = Writer::new();
        w.u8(ADMIN_STATE_VERSION);
        w.vec_u16(&self.key.encode(), MAX_ORG_KEY_LEN, "org key")?;
        w.vec_u32(
            &self.draft.encode()?,
            crate::directory::MAX_DIRECTORY_LEN,
            "directory",
        )?;
        Ok(Zeroizing::new(w.into_bytes()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(ADMIN_STATE_VERSION, "admin state")?;
        let key = OrgSigningKey::decode(r.vec_u16(MAX_ORG_KEY_LEN, "org key")?)?;
        let draft =
            Directory::decode(r.vec_u32(crate::directory::MAX_DIRECTORY_LEN, "directory")?)?;
        r.finish("admin state")?;
        Ok(AdminState { key, draft })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn device_state_round_trips_and_is_strict() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let org = OrgSigningKey::generate(&mut rng).public();
        let mut dev = DeviceState::generate(org, &mut rng);
        let env =
            Envelope::from_parts(crate::ids::MailboxId::from_bytes([9; 32]), vec![1; 64]).unwrap();
        for _ in 0..MAX_QUARANTINE + 2 {
            dev.quarantine(UnreadableReason::Ratchet, env.clone());
        }
        assert_eq!(dev.quarantine.len(), MAX_QUARANTINE);
        assert_eq!(dev.quarantine_dropped, 2);
        let bytes = dev.encode().unwrap();
        let back = DeviceState::decode(&bytes).unwrap();
        assert_eq!(back.encode().unwrap(), bytes);
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(DeviceState::decode(&long).is_err());
        let mut old = bytes.to_vec();
        old[0] = 1;
        assert!(DeviceState::decode(&old).is_err());
    }

    /// docs/vectors/saved.json: a device state and an admin state from
    /// fixed seeds, their encodings and the sealed device state.
    #[test]
    fn saved_state_vectors() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([0x5a; 32]);
        let org_key = OrgSigningKey::from_seed(&[0x0a; 32]);
        let mut dev = DeviceState::generate(org_key.public(), &mut rng);
        let env = Envelope::from_parts(crate::ids::MailboxId::from_bytes([7; 32]), vec![0xee; 48])
            .unwrap();
        dev.quarantine(UnreadableReason::NoSession, env);
        let encoded = dev.encode().unwrap();
        let key = StateKey::from_bytes(Zeroizing::new([0x42; 32]));
        let sealed = dev.seal(&key, &mut rng).unwrap();
        assert_eq!(
            DeviceState::open(&key, &sealed).unwrap().encode().unwrap(),
            encoded
        );
        let admin = AdminState {
            key: OrgSigningKey::from_seed(&[0x0a; 32]),
            draft: Directory::new(org_key.public(), 3, crate::UnixTime(1_800_000_000)),
        };
        let admin_encoded = admin.encode().unwrap();
        let json = serde_json::json!({
            "description": "Saved formats (PROTOCOL.md §6.4, §6.5). Device keys from ChaCha20Rng::from_seed(0x5a * 32) (Counselor::generate), then the sealing nonce from the same RNG; organisation seed 0x0a * 32; state key 0x42 * 32. The quarantined envelope is addressed to 0x07 * 32 with 48 bytes 0xee.",
            "device_state": hex::encode(encoded.as_slice()),
            "device_state_sealed": hex::encode(&sealed),
            "state_key": hex::encode([0x42u8; 32]),
            "admin_state": hex::encode(admin_encoded.as_slice()),
            "failures": [
                { "case": "device_state with one trailing byte", "error": "TrailingBytes" },
                { "case": "device_state with version byte 1", "error": "UnsupportedVersion" },
                { "case": "admin_state cut by one byte", "error": "UnexpectedEnd" }
            ],
        });
        crate::state::vectors::check("saved.json", &json);
    }

    #[test]
    fn admin_state_round_trips() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
        let key = OrgSigningKey::generate(&mut rng);
        let draft = Directory::new(key.public(), 0, crate::UnixTime(3600));
        let st = AdminState { key, draft };
        let bytes = st.encode().unwrap();
        let back = AdminState::decode(&bytes).unwrap();
        assert_eq!(back.encode().unwrap(), bytes);
        assert!(AdminState::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
