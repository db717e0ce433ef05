//! wasm-bindgen bridge of northstar-core for the browser client.
//!
//! A thin layer: it turns JavaScript values into core types and back, and
//! holds the secrets in WebAssembly memory behind opaque handles. Every
//! protocol decision is the core's (`northstar_core::client`); the order of
//! relay requests lives in `web-client/static/core.js`, mirroring the CLI.
//!
//! - [`SeekerHandle`] — keys from the codename (Argon2id), the conversation,
//!   the state blob saved on the relay.
//! - [`CounselorHandle`] — a counselor device: keys, the key store (a random
//!   state key under the passphrase) and the device state sealed under that
//!   state key, the team inbox and every team action.
//! - [`DirectoryHandle`] — a directory verified against the pinned key.
//! - `encode_frame` / `decode_frame` — relay frames as plain JS objects;
//!   `deposit_batch_hash` and `pow_solve_range` — a sliced proof of work.
//!
//! Errors are `Error` objects whose `code` property (and message prefix
//! before the first `:`) is one of `codename-invalid`, `codename-not-found`,
//! `passphrase-wrong`, `passphrase-short`, `directory-refused`, `internal`.
//! No message carries a secret.
#![forbid(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;

use core::fmt::Display;

use js_sys::{Array, Object, Reflect, Uint8Array};
use northstar_core::UnixTime;
use northstar_core::client::counselor::{Counselor, Event, Status};
use northstar_core::client::seeker::Seeker;
use northstar_core::client::{Author, ClientError, Entry, EntryKind, FetchedBundle};
use northstar_core::codename::{Codename, SeekerSecrets};
use northstar_core::directory::{
    DeviceId, IntakePolicy, OrgPublicKey, PartnerId, SignedDirectory, TeamId, VerifiedDirectory,
};
use northstar_core::frame::{self, ClientFrame, OneTimePrekey, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::{Ed25519Public, MailboxKeyPair};
use northstar_core::message::Language;
use northstar_core::sealed::Envelope;
use northstar_core::state::{KeyStore, StateKey, StateKind};
use northstar_core::wire::{Reader, Writer};
use rand_core::OsRng;
use wasm_bindgen::prelude::*;

// ------------------------------------------------------------------ helpers

/// An `Error` with a stable `code` (also the message prefix).
fn fail(code: &str, msg: impl Display) -> JsValue {
    let e = js_sys::Error::new(&format!("{code}: {msg}"));
    let _ = Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

fn internal(e: impl Display) -> JsValue {
    fail("internal", e)
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &JsValue::from_str(k), &v.into());
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

fn get_str(o: &JsValue, k: &str) -> Result<String, JsValue> {
    get(o, k)
        .as_string()
        .ok_or_else(|| internal(format!("{k} must be a string")))
}

fn get_bytes(o: &JsValue, k: &str) -> Result<Vec<u8>, JsValue> {
    let v = get(o, k);
    if v.is_instance_of::<Uint8Array>() {
        Ok(Uint8Array::from(v).to_vec())
    } else {
        Err(internal(format!("{k} must be a Uint8Array")))
    }
}

fn bytes(b: &[u8]) -> Uint8Array {
    Uint8Array::from(b)
}

fn to_hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(H[usize::from(x >> 4)]));
        s.push(char::from(H[usize::from(x & 15)]));
    }
    s
}

fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (val(s[2 * i])? << 4) | val(s[2 * i + 1])?;
    }
    Some(out)
}

fn parse_org(hex: &str) -> Result<OrgPublicKey, JsValue> {
    from_hex32(hex)
        .and_then(|b| OrgPublicKey::from_bytes(b).ok())
        .ok_or_else(|| internal("the configured organisation key is not 64 hex digits"))
}

fn mailbox_id(hex: &str) -> Result<MailboxId, JsValue> {
    MailboxId::from_hex(hex).ok_or_else(|| internal("not a mailbox id"))
}

fn challenge32(c: &[u8]) -> Result<[u8; 32], JsValue> {
    c.try_into()
        .map_err(|_| internal("a challenge is 32 bytes"))
}

fn now_of(now: f64) -> UnixTime {
    UnixTime(if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    })
}

fn language(tag: &str) -> Result<Language, JsValue> {
    Language::from_tag(tag).ok_or_else(|| internal("language must be en, es, fr or ht"))
}

fn envelopes_out(envs: Vec<Envelope>) -> Array {
    envs.iter()
        .map(|e| JsValue::from(bytes(&e.encode())))
        .collect()
}

fn envelopes_in(list: &Array) -> Result<Vec<Envelope>, JsValue> {
    list.iter()
        .map(|v| {
            if !v.is_instance_of::<Uint8Array>() {
                return Err(internal("an envelope must be a Uint8Array"));
            }
            Envelope::decode(&Uint8Array::from(v).to_vec()).map_err(internal)
        })
        .collect()
}

/// `[{mailbox: hex, signedBundle: Uint8Array, oneTime: Uint8Array | null}]`
fn bundles_in(list: &Array) -> Result<Vec<FetchedBundle>, JsValue> {
    list.iter()
        .map(|b| {
            let ot = get(&b, "oneTime");
            let one_time = if ot.is_instance_of::<Uint8Array>() {
                Some(
                    Uint8Array::from(ot)
                        .to_vec()
                        .as_slice()
                        .try_into()
                        .map_err(|_| internal("a one-time prekey is 36 bytes"))?,
                )
            } else {
                None
            };
            Ok(FetchedBundle {
                mailbox: mailbox_id(&get_str(&b, "mailbox")?)?,
                signed_bundle: get_bytes(&b, "signedBundle")?,
                one_time,
            })
        })
        .collect()
}

fn client_error(e: northstar_core::Error) -> JsValue {
    internal(e)
}

fn sign_frame(
    keys: &MailboxKeyPair,
    request_id: u32,
    challenge: &[u8],
    register: Option<bool>,
) -> Result<Vec<u8>, JsValue> {
    let c = challenge32(challenge)?;
    let id = keys.id();
    let f = match register {
        Some(pow_required) => ClientFrame::Register {
            keys: keys.public(),
            pow_required,
            signature: keys.sign(&frame::register_message(&c, &id, pow_required)),
        },
        None => ClientFrame::Auth {
            mailbox: id,
            signature: keys.sign(&frame::auth_message(&c, &id)),
        },
    };
    f.encode(request_id).map_err(internal)
}

fn entry_text(dir: Option<&VerifiedDirectory>, k: &EntryKind) -> (String, Option<u16>) {
    match k {
        EntryKind::Text(t) => (t.as_str().to_owned(), None),
        EntryKind::Referral { partner, text } => {
            let p = dir.and_then(|d| d.partner(*partner));
            let s = match p {
                Some(p) => format!("{}\n\n{} — {}", text.as_str(), p.name, p.contact),
                None => text.as_str().to_owned(),
            };
            (s, Some(partner.0))
        }
    }
}

fn device_label(dir: Option<&VerifiedDirectory>, d: DeviceId) -> String {
    dir.and_then(|x| x.device(d))
        .map(|x| x.label.clone())
        .unwrap_or_else(|| format!("device {}", d.0))
}

/// A state key from the 32 bytes a key store holds. The zeroizing buffer
/// `StateKey::from_bytes` takes is built through its `Default` (this crate
/// does not name the zeroize crate).
fn state_key_from(plain: &[u8]) -> Option<StateKey> {
    fn fill<T: core::ops::DerefMut<Target = [u8; 32]>>(z: &mut T, b: &[u8; 32]) {
        z.copy_from_slice(b);
    }
    let b: &[u8; 32] = plain.try_into().ok()?;
    let mut z = Default::default();
    fill(&mut z, b);
    Some(StateKey::from_bytes(z))
}

// ------------------------------------------------------------------ free functions

/// The organisation key's short human fingerprint (to compare with the
/// one the organisation publishes).
#[wasm_bindgen]
pub fn org_fingerprint(org_hex: &str) -> Result<String, JsValue> {
    Ok(parse_org(org_hex)?.fingerprint())
}

/// A fresh codename (seven words), from the browser's CSPRNG.
#[wasm_bindgen]
pub fn generate_codename() -> String {
    Codename::generate(&mut OsRng)
        .to_zeroizing_string()
        .as_str()
        .to_owned()
}

/// Checks a typed codename without deriving keys (cheap).
#[wasm_bindgen]
pub fn check_codename(codename: &str) -> Result<(), JsValue> {
    Codename::parse(codename)
        .map(|_| ())
        .map_err(|e| fail("codename-invalid", e))
}

/// A directory from the relay, verified against the pinned organisation key.
#[wasm_bindgen]
#[derive(Debug)]
pub struct DirectoryHandle {
    dir: VerifiedDirectory,
}

#[wasm_bindgen]
impl DirectoryHandle {
    #[wasm_bindgen(js_name = verify)]
    pub fn verify(signed: &[u8], org_hex: &str) -> Result<DirectoryHandle, JsValue> {
        let org = parse_org(org_hex)?;
        let dir = SignedDirectory::decode(signed)
            .and_then(|d| d.verify(&org, None).map_err(Into::into))
            .map_err(|e| fail("directory-refused", e))?;
        Ok(DirectoryHandle { dir })
    }

    /// Teams that have at least one device: `[{id, slug, label}]`, the label in `lang`.
    pub fn topics(&self, lang: &str) -> Array {
        let lang = Language::from_tag(lang).unwrap_or(Language::En);
        self.dir
            .teams()
            .iter()
            .filter(|t| !t.devices.is_empty())
            .map(|t| {
                let o = Object::new();
                set(&o, "id", t.id.0);
                set(&o, "slug", t.slug.as_str());
                set(&o, "label", t.names.get(lang));
                JsValue::from(o)
            })
            .collect()
    }

    /// True when the organisation narrowed the intake set (the relay learns the team).
    pub fn topic_visible_to_relay(&self) -> bool {
        self.dir.intake_policy() == IntakePolicy::TeamOnly
    }

    /// The device mailboxes (hex) a first message to `team` goes to.
    pub fn intake_mailboxes(&self, team: u16) -> Result<Array, JsValue> {
        let set = self.dir.intake_set(TeamId(team)).map_err(internal)?;
        Ok(set
            .iter()
            .map(|r| JsValue::from_str(&r.device.mailbox.id().to_hex()))
            .collect())
    }
}

/// Encodes a client frame from `{type, ...}`: `challenge`, `subscribe`,
/// `get_state`, `delete_state`, `delete_mailbox`, `fetch_directory {org}`,
/// `fetch_prekeys {mailbox}`, `ack {ids}`, `put_state {ttlHours, blob}`,
/// `deposit {nonce, envelopes}`. (Auth, Register and UploadPrekeys need keys:
/// the handles build them.)
#[wasm_bindgen]
pub fn encode_frame(request_id: u32, f: JsValue) -> Result<Vec<u8>, JsValue> {
    let frame = match get_str(&f, "type")?.as_str() {
        "challenge" => ClientFrame::Challenge,
        "subscribe" => ClientFrame::Subscribe,
        "get_state" => ClientFrame::GetState,
        "delete_state" => ClientFrame::DeleteState,
        "delete_mailbox" => ClientFrame::DeleteMailbox,
        "fetch_directory" => ClientFrame::FetchDirectory {
            org_key: Ed25519Public(*parse_org(&get_str(&f, "org")?)?.as_bytes()),
        },
        "fetch_prekeys" => ClientFrame::FetchPrekeys {
            mailbox: mailbox_id(&get_str(&f, "mailbox")?)?,
        },
        "ack" => ClientFrame::Ack {
            ids: Array::from(&get(&f, "ids"))
                .iter()
                .map(|v| {
                    v.as_string()
                        .and_then(|s| EnvelopeId::from_hex(&s))
                        .ok_or_else(|| internal("not an envelope id"))
                })
                .collect::<Result<_, _>>()?,
        },
        "put_state" => ClientFrame::PutState {
            ttl_hours: get(&f, "ttlHours").as_f64().unwrap_or(720.0) as u32,
            blob: get_bytes(&f, "blob")?,
        },
        "deposit" => ClientFrame::Deposit {
            pow_nonce: get(&f, "nonce").as_f64().map(|n| n as u64),
            envelopes: envelopes_in(&Array::from(&get(&f, "envelopes")))?,
        },
        other => return Err(internal(format!("unknown frame type {other}"))),
    };
    frame.encode(request_id).map_err(internal)
}

/// Decodes a server frame into `{requestId, type, ...}`.
#[wasm_bindgen]
pub fn decode_frame(b: &[u8]) -> Result<JsValue, JsValue> {
    let (rid, f) = ServerFrame::decode(b).map_err(|e| internal(e.error))?;
    let o = Object::new();
    set(&o, "requestId", rid);
    let ty = match f {
        ServerFrame::Hello {
            pow_challenge,
            pow_difficulty,
            ..
        } => {
            set(&o, "powChallenge", bytes(&pow_challenge));
            set(&o, "powDifficulty", pow_difficulty);
            "hello"
        }
        ServerFrame::Ok => "ok",
        ServerFrame::Challenge { challenge } => {
            set(&o, "challenge", bytes(&challenge));
            "challenge"
        }
        ServerFrame::Deposited {
            accepted,
            next_pow_challenge,
        } => {
            set(&o, "accepted", accepted);
            set(&o, "powChallenge", bytes(&next_pow_challenge));
            "deposited"
        }
        ServerFrame::Subscribed { pending } => {
            set(&o, "pending", pending);
            "subscribed"
        }
        ServerFrame::Deliver {
            id,
            expires_at,
            envelope,
        } => {
            set(&o, "id", id.to_hex());
            set(&o, "expiresAt", expires_at.0 as f64);
            set(&o, "envelope", bytes(&envelope.encode()));
            "deliver"
        }
        ServerFrame::Acked { deleted } => {
            set(&o, "deleted", deleted);
            "acked"
        }
        ServerFrame::Directory { directory } => {
            set(&o, "directory", bytes(&directory));
            "directory"
        }
        ServerFrame::PrekeysStored { one_time_count } => {
            set(&o, "oneTimeCount", one_time_count);
            "prekeys_stored"
        }
        ServerFrame::Prekeys {
            signed_bundle,
            one_time,
        } => {
            set(&o, "signedBundle", bytes(&signed_bundle));
            set(
                &o,
                "oneTime",
                one_time.map_or(JsValue::NULL, |k| bytes(&k.to_bytes()).into()),
            );
            "prekeys"
        }
        ServerFrame::StateStored { expires_at } => {
            set(&o, "expiresAt", expires_at.0 as f64);
            "state_stored"
        }
        ServerFrame::State { expires_at, blob } => {
            set(&o, "expiresAt", expires_at.0 as f64);
            set(&o, "blob", bytes(&blob));
            "state"
        }
        ServerFrame::Error { code } => {
            set(&o, "code", code.name());
            "error"
        }
        _ => "unknown",
    };
    set(&o, "type", ty);
    Ok(o.into())
}

/// The hash a deposit's proof of work covers.
#[wasm_bindgen]
pub fn deposit_batch_hash(envelopes: &Array) -> Result<Vec<u8>, JsValue> {
    Ok(frame::deposit_batch_hash(&envelopes_in(envelopes)?).to_vec())
}

/// Tries nonces `start .. start + count`; the nonce found, or `undefined`
/// (call again with the next slice, yielding to the event loop between).
#[wasm_bindgen]
pub fn pow_solve_range(
    challenge: &[u8],
    batch_hash: &[u8],
    difficulty: u8,
    start: f64,
    count: f64,
) -> Result<Option<f64>, JsValue> {
    let c = challenge32(challenge)?;
    let h: [u8; 32] = batch_hash
        .try_into()
        .map_err(|_| internal("a batch hash is 32 bytes"))?;
    match northstar_core::pow::solve_range(&c, &h, difficulty, start as u64, count as u64) {
        Ok(n) => Ok(Some(n as f64)),
        Err(northstar_core::pow::PowError::NotFound) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

// ------------------------------------------------------------------ seeker

/// A seeker: secrets derived from the codename, and the conversation.
#[wasm_bindgen]
#[derive(Debug)]
pub struct SeekerHandle {
    secrets: SeekerSecrets,
    seeker: Seeker,
}

#[wasm_bindgen]
impl SeekerHandle {
    /// Derives every key from the codename (Argon2id, about a second).
    pub fn derive(codename: &str, org_hex: &str) -> Result<SeekerHandle, JsValue> {
        let org = parse_org(org_hex)?;
        let c = Codename::parse(codename).map_err(|e| fail("codename-invalid", e))?;
        let secrets = c.derive(org.as_ed25519()).map_err(internal)?;
        let seeker = Seeker::new(&secrets);
        Ok(SeekerHandle { secrets, seeker })
    }

    /// Replaces the conversation with the saved blob from the relay.
    pub fn restore(&mut self, blob: &[u8]) -> Result<(), JsValue> {
        self.seeker = Seeker::restore(&self.secrets, blob).map_err(|_| {
            fail(
                "codename-not-found",
                "the saved conversation does not open with this codename",
            )
        })?;
        Ok(())
    }

    /// The whole state, encrypted under the codename's state key.
    pub fn save(&self) -> Result<Vec<u8>, JsValue> {
        self.seeker.save(&mut OsRng).map_err(client_error)
    }

    /// `Register` (no proof of work needed to write to a seeker).
    pub fn register_frame(&self, request_id: u32, challenge: &[u8]) -> Result<Vec<u8>, JsValue> {
        sign_frame(self.seeker.mailbox(), request_id, challenge, Some(false))
    }

    pub fn auth_frame(&self, request_id: u32, challenge: &[u8]) -> Result<Vec<u8>, JsValue> {
        sign_frame(self.seeker.mailbox(), request_id, challenge, None)
    }

    /// The opening message to the intake set: envelopes (Uint8Array[]).
    pub fn start(
        &mut self,
        dir: &DirectoryHandle,
        team: u16,
        lang: &str,
        text: &str,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let envs = self
            .seeker
            .start(
                &dir.dir,
                TeamId(team),
                language(lang)?,
                text,
                &bundles_in(bundles)?,
                now_of(now),
                &mut OsRng,
            )
            .map_err(client_error)?;
        Ok(envelopes_out(envs))
    }

    pub fn write(&mut self, text: &str, now: f64) -> Result<Array, JsValue> {
        let envs = self
            .seeker
            .write(text, now_of(now), &mut OsRng)
            .map_err(client_error)?;
        Ok(envelopes_out(envs))
    }

    pub fn request_deletion(&mut self, now: f64) -> Result<Array, JsValue> {
        let envs = self
            .seeker
            .request_deletion(now_of(now), &mut OsRng)
            .map_err(client_error)?;
        Ok(envelopes_out(envs))
    }

    /// Takes in a delivered envelope: the new message, or `null`.
    pub fn receive(&mut self, envelope: &[u8], dir: &DirectoryHandle) -> Result<JsValue, JsValue> {
        let env = Envelope::decode(envelope).map_err(internal)?;
        Ok(match self.seeker.receive(&env).map_err(client_error)? {
            Some(e) => seeker_message(&e, Some(&dir.dir)).into(),
            None => JsValue::NULL,
        })
    }

    /// `{team, language, messages: [{id, from, text, at}]}` or `null`.
    pub fn conversation(&self, dir: &DirectoryHandle) -> JsValue {
        let Some(c) = self.seeker.conversation() else {
            return JsValue::NULL;
        };
        let o = Object::new();
        set(&o, "team", c.team.0);
        set(&o, "language", c.language.tag());
        let msgs: Array = c
            .history
            .iter()
            .map(|e| JsValue::from(seeker_message(e, Some(&dir.dir))))
            .collect();
        set(&o, "messages", msgs);
        o.into()
    }
}

fn seeker_message(e: &Entry, dir: Option<&VerifiedDirectory>) -> Object {
    let o = Object::new();
    set(&o, "id", to_hex(&e.id.0));
    set(
        &o,
        "from",
        match e.author {
            Author::Seeker => "seeker",
            Author::Counselor(_) => "counselor",
        },
    );
    set(&o, "text", entry_text(dir, &e.kind).0);
    set(&o, "at", e.at.0 as f64);
    o
}

// ------------------------------------------------------------------ counselor

const DEVICE_STATE_VERSION: u8 = 1;
const MAX_COUNSELOR_STATE: usize = 1 << 22;
const MIN_PASSPHRASE_LEN: usize = 8;

/// A counselor device, unlocked.
#[wasm_bindgen]
#[derive(Debug)]
pub struct CounselorHandle {
    org: OrgPublicKey,
    counselor: Counselor,
    key: Option<StateKey>,
}

#[wasm_bindgen]
impl CounselorHandle {
    /// A new device with fresh keys, for the organisation `org_hex`.
    pub fn generate(org_hex: &str) -> Result<CounselorHandle, JsValue> {
        Ok(CounselorHandle {
            org: parse_org(org_hex)?,
            counselor: Counselor::generate(&mut OsRng),
            key: None,
        })
    }

    /// The public keys (hex) to give the administrator (`admin add-device --device`).
    pub fn public_hex(&self) -> String {
        to_hex(&self.counselor.public().encode())
    }

    /// A new key store: a random state key sealed under the passphrase
    /// (Argon2id). Keep the returned bytes and then `seal_state()`'s.
    pub fn create_key_store(&mut self, passphrase: &str) -> Result<Vec<u8>, JsValue> {
        if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(fail(
                "passphrase-short",
                "the passphrase must have at least 8 characters",
            ));
        }
        let key = StateKey::generate(&mut OsRng);
        let store =
            KeyStore::seal(passphrase.as_bytes(), key.as_bytes(), &mut OsRng).map_err(internal)?;
        self.key = Some(key);
        Ok(store)
    }

    /// Opens a stored device: the key store with the passphrase, then the
    /// sealed device state with the state key inside it.
    pub fn unlock(
        key_store: &[u8],
        sealed_state: &[u8],
        passphrase: &str,
    ) -> Result<CounselorHandle, JsValue> {
        let plain = KeyStore::open(passphrase.as_bytes(), key_store)
            .map_err(|_| fail("passphrase-wrong", "the key store did not open"))?;
        let key = state_key_from(&plain)
            .ok_or_else(|| internal("the key store holds an unexpected key"))?;
        let state = key
            .open(StateKind::Counselor, sealed_state)
            .map_err(|_| internal("the saved device state does not open"))?;
        let bad = |_| internal("the saved device state is damaged");
        let mut r = Reader::new(&state);
        r.version(DEVICE_STATE_VERSION, "device state")
            .map_err(bad)?;
        let org = OrgPublicKey::from_bytes(r.array("org").map_err(bad)?).map_err(bad)?;
        let counselor = Counselor::decode(
            r.vec_u32(MAX_COUNSELOR_STATE, "counselor").map_err(bad)?,
            &org,
        )
        .map_err(|_| internal("the saved device state is damaged"))?;
        r.finish("device state").map_err(bad)?;
        Ok(CounselorHandle {
            org,
            counselor,
            key: Some(key),
        })
    }

    /// The device state (same layout as the CLI's), sealed under the state key.
    pub fn seal_state(&self) -> Result<Vec<u8>, JsValue> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| internal("no key store yet"))?;
        let mut w = Writer::new();
        w.u8(DEVICE_STATE_VERSION).bytes(self.org.as_bytes());
        w.vec_u32(
            &self.counselor.encode().map_err(client_error)?,
            MAX_COUNSELOR_STATE,
            "counselor",
        )
        .map_err(client_error)?;
        let mut plain = w.into_bytes();
        let sealed = key.seal(StateKind::Counselor, &plain, &mut OsRng);
        plain.fill(0);
        sealed.map_err(client_error)
    }

    /// The pinned organisation key (hex) this device was created for.
    pub fn org_hex(&self) -> String {
        to_hex(self.org.as_bytes())
    }

    /// Loads a directory from the relay (checked against the pinned key; no rollback).
    pub fn set_directory(&mut self, signed: &[u8]) -> Result<(), JsValue> {
        self.counselor
            .set_directory(signed, &self.org)
            .map_err(|e| fail("directory-refused", e))
    }

    /// True once the administrator has added this device to the directory.
    pub fn in_directory(&self) -> bool {
        self.counselor.device().is_ok()
    }

    /// `Register` with proof of work required from depositors.
    pub fn register_frame(&self, request_id: u32, challenge: &[u8]) -> Result<Vec<u8>, JsValue> {
        sign_frame(self.counselor.mailbox(), request_id, challenge, Some(true))
    }

    pub fn auth_frame(&self, request_id: u32, challenge: &[u8]) -> Result<Vec<u8>, JsValue> {
        sign_frame(self.counselor.mailbox(), request_id, challenge, None)
    }

    /// `UploadPrekeys` with the signed bundle and `count` new one-time
    /// prekeys. Save the state (`seal_state`) before sending it.
    pub fn prekeys_frame(&mut self, request_id: u32, count: u32) -> Result<Vec<u8>, JsValue> {
        let bundle = self.counselor.prekey_bundle().map_err(client_error)?;
        let fresh = if count > 0 {
            self.counselor
                .new_one_time_prekeys(count as usize, &mut OsRng)
                .map_err(client_error)?
        } else {
            Vec::new()
        };
        ClientFrame::UploadPrekeys {
            signed_bundle: bundle.encode(),
            one_time: fresh
                .iter()
                .map(|k| OneTimePrekey {
                    id: k.id,
                    public: k.key,
                })
                .collect(),
        }
        .encode(request_id)
        .map_err(internal)
    }

    /// Takes in a delivered envelope: `{type: "message"|"update", id}` or `null`.
    pub fn receive(&mut self, envelope: &[u8]) -> Result<JsValue, JsValue> {
        let env = Envelope::decode(envelope).map_err(internal)?;
        let Some(ev) = self.counselor.receive(&env).map_err(client_error)? else {
            return Ok(JsValue::NULL);
        };
        let (ty, id) = match ev {
            Event::NewConversation { conversation } => ("message", conversation),
            Event::Message { conversation, .. } => ("message", conversation),
            Event::StatusChanged { conversation, .. } => ("update", conversation),
            Event::Note { conversation, .. } => ("update", conversation),
            Event::Deleted { conversation } => ("update", conversation),
            Event::CannedAnswer { .. } => {
                let o = Object::new();
                set(&o, "type", "canned");
                return Ok(o.into());
            }
        };
        let o = Object::new();
        set(&o, "type", ty);
        set(&o, "id", id.to_hex());
        if let Some(c) = self.counselor.conversation(&id) {
            set(&o, "topicLabel", self.team_label(c.team));
        }
        Ok(o.into())
    }

    fn team_label(&self, team: TeamId) -> String {
        self.counselor
            .directory()
            .and_then(|d| d.team(team))
            .map(|t| t.names.en.clone())
            .unwrap_or_else(|| format!("team {}", team.0))
    }

    fn me(&self) -> Option<DeviceId> {
        self.counselor.device().ok().map(|d| d.id)
    }

    fn item(&self, id: &MailboxId) -> Option<Object> {
        let c = self.counselor.conversation(id)?;
        let dir = self.counselor.directory();
        let o = Object::new();
        set(&o, "id", id.to_hex());
        set(
            &o,
            "topic",
            dir.and_then(|d| d.team(c.team))
                .map(|t| t.slug.clone())
                .unwrap_or_default(),
        );
        set(&o, "topicLabel", self.team_label(c.team));
        set(&o, "language", c.language.tag());
        let status = match c.status {
            Status::Resolved => "resolved",
            Status::Claimed(_) => "claimed",
            Status::Open if c.unread => "unread",
            Status::Open => "open",
        };
        set(&o, "status", status);
        set(&o, "unread", c.unread);
        if let Status::Claimed(d) = c.status {
            set(&o, "claimedBy", device_label(dir, d));
            set(&o, "mine", Some(d) == self.me());
        } else {
            set(&o, "mine", false);
        }
        let last = c.history.last();
        set(
            &o,
            "preview",
            last.map(|e| {
                entry_text(dir, &e.kind)
                    .0
                    .chars()
                    .take(120)
                    .collect::<String>()
            })
            .unwrap_or_default(),
        );
        set(&o, "updatedAt", last.map_or(0.0, |e| e.at.0 as f64));
        Some(o)
    }

    /// Every conversation, newest first: `InboxItem[]` (docs/WEB_CLIENT.md).
    pub fn inbox(&self) -> Array {
        let mut rows: Vec<(u64, Object)> = self
            .counselor
            .conversations()
            .iter()
            .filter_map(|(id, c)| Some((c.history.last().map_or(0, |e| e.at.0), self.item(id)?)))
            .collect();
        rows.sort_by_key(|r| core::cmp::Reverse(r.0));
        rows.into_iter().map(|(_, o)| JsValue::from(o)).collect()
    }

    /// One conversation with its entries and notes (`Case`); marks it read.
    pub fn open_case(&mut self, id: &str) -> Result<JsValue, JsValue> {
        let id = mailbox_id(id)?;
        self.counselor.mark_read(&id);
        let o = self
            .item(&id)
            .ok_or_else(|| internal("unknown conversation"))?;
        let c = self
            .counselor
            .conversation(&id)
            .ok_or_else(|| internal("unknown conversation"))?;
        let dir = self.counselor.directory();
        let mut entries: Vec<(u64, Object)> = Vec::new();
        for e in &c.history {
            let x = Object::new();
            set(&x, "id", to_hex(&e.id.0));
            match e.author {
                Author::Seeker => set(&x, "kind", "seeker"),
                Author::Counselor(d) => {
                    set(&x, "kind", "counselor");
                    set(&x, "author", device_label(dir, d));
                }
            }
            set(&x, "text", entry_text(dir, &e.kind).0);
            set(&x, "at", e.at.0 as f64);
            entries.push((e.at.0, x));
        }
        for (i, n) in c.notes.iter().enumerate() {
            let x = Object::new();
            set(&x, "id", format!("note-{i}"));
            set(&x, "kind", "note");
            set(&x, "author", device_label(dir, n.by));
            set(&x, "text", n.text.as_str());
            set(&x, "at", n.at.0 as f64);
            entries.push((n.at.0, x));
        }
        entries.sort_by_key(|(at, _)| *at);
        let arr: Array = entries.into_iter().map(|(_, x)| JsValue::from(x)).collect();
        set(&o, "entries", arr);
        Ok(o.into())
    }

    /// Colleague mailboxes (hex) whose prekey bundles a team action on `id` needs.
    pub fn missing_bundles(&self, id: &str) -> Result<Array, JsValue> {
        Ok(self
            .counselor
            .missing_bundles(&mailbox_id(id)?)
            .map_err(client_error)?
            .iter()
            .map(|m| JsValue::from_str(&m.to_hex()))
            .collect())
    }

    pub fn claim(&mut self, id: &str, bundles: &Array, now: f64) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self.counselor.claim(&id, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    pub fn reply(
        &mut self,
        id: &str,
        text: &str,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self.counselor.reply(&id, text, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    pub fn hand_off(
        &mut self,
        id: &str,
        to: u32,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self
            .counselor
            .hand_off(&id, DeviceId(to), &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    pub fn note(
        &mut self,
        id: &str,
        text: &str,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self.counselor.note(&id, text, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    pub fn resolve(&mut self, id: &str, bundles: &Array, now: f64) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self.counselor.resolve(&id, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    /// Saves a canned answer and shares it with the team: envelopes to deposit.
    pub fn add_canned(
        &mut self,
        id: &str,
        title: &str,
        text: &str,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self
            .counselor
            .add_canned_answer(&id, title, text, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    /// The team's canned answers: `[{id, title, text}]`.
    pub fn canned(&self) -> Array {
        self.counselor
            .canned_answers()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let x = Object::new();
                set(&x, "id", i.to_string());
                set(&x, "title", a.title.as_str());
                set(&x, "text", a.text.as_str());
                JsValue::from(x)
            })
            .collect()
    }

    pub fn reopen(&mut self, id: &str, bundles: &Array, now: f64) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self.counselor.reopen(&id, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    pub fn refer(
        &mut self,
        id: &str,
        partner: u16,
        text: &str,
        bundles: &Array,
        now: f64,
    ) -> Result<Array, JsValue> {
        let (id, b) = (mailbox_id(id)?, bundles_in(bundles)?);
        let r = self
            .counselor
            .refer(&id, PartnerId(partner), text, &b, now_of(now), &mut OsRng);
        self.done(r)
    }

    fn done(&self, r: Result<Vec<Envelope>, northstar_core::Error>) -> Result<Array, JsValue> {
        match r {
            Ok(envs) => Ok(envelopes_out(envs)),
            Err(northstar_core::Error::Client(ClientError::ClaimedByOther { by })) => Err(fail(
                "claimed-by-other",
                format!(
                    "{} has claimed this conversation",
                    device_label(self.counselor.directory(), DeviceId(by))
                ),
            )),
            Err(e) => Err(client_error(e)),
        }
    }

    /// `{name, deviceId, teams: [{id, label}]}` (after a directory is loaded).
    pub fn whoami(&self) -> JsValue {
        let o = Object::new();
        let dir = self.counselor.directory();
        match self.counselor.device() {
            Ok(d) => {
                set(&o, "name", d.label.as_str());
                set(&o, "deviceId", d.id.0);
                let teams: Array = dir
                    .map(|x| x.teams_of(d.id))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let x = Object::new();
                        set(&x, "id", t.0);
                        set(&x, "label", self.team_label(t));
                        JsValue::from(x)
                    })
                    .collect();
                set(&o, "teams", teams);
            }
            Err(_) => {
                set(&o, "name", "");
                set(&o, "teams", Array::new());
            }
        }
        o.into()
    }

    /// The other devices of the directory: `[{id, name}]`.
    pub fn colleagues(&self) -> Array {
        let me = self.me();
        self.counselor
            .directory()
            .map(|d| d.devices())
            .unwrap_or_default()
            .into_iter()
            .filter(|d| Some(d.id) != me)
            .map(|d| {
                let x = Object::new();
                set(&x, "id", d.id.0.to_string());
                set(&x, "name", d.label.as_str());
                JsValue::from(x)
            })
            .collect()
    }

    /// Partner organisations: `[{id, name}]`.
    pub fn partners(&self) -> Array {
        self.counselor
            .directory()
            .map(|d| d.partners().to_vec())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let x = Object::new();
                set(&x, "id", p.id.0.to_string());
                set(&x, "name", p.name.as_str());
                JsValue::from(x)
            })
            .collect()
    }
}
