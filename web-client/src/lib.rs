//! wasm-bindgen bridge of northstar-core for the browser client.
//!
//! A bridge, not an API: it turns JavaScript values into core types and
//! back, and keeps the secrets in WebAssembly memory behind an opaque
//! handle. What the client *does* — every relay request sequence, batching,
//! proof of work requests, saving before sending, reconnection, error kinds
//! — is client-core's driver (`northstar_core::driver`), the same one the
//! CLI runs. `web-client/static/core.js` is the shell around it: it opens
//! the sockets, stores the sealed state, runs the proof of work and the
//! timer, and hands every result back.
//!
//! - [`WebDriver`] — one `Driver`: for a seeker or a public look-up
//!   (`WebDriver.seeker`), or for a counselor device (`WebDriver.unlock`,
//!   `WebDriver.enrol`). Commands return the command id; the inputs
//!   (`connected`, `frame`, `closed`, `workDone`, `timeout`) take `now` in
//!   seconds; `outputs()` drains what the shell must do next, in order, as
//!   plain objects; `nextTimeout()` says when to call `timeout`; the getters
//!   read the state the pages show.
//! - `org_fingerprint`, `generate_codename`, `check_codename`,
//!   `check_new_passphrase`, `check_message` — small pure helpers.
//! - `pow_solve_range` — a slice of a proof of work the driver asked for,
//!   so the page stays responsive between slices.
//!
//! Thrown errors and failed commands carry a stable `code`, one per
//! [`DriverError`] kind (see [`driver_error_code`]), plus `codename-invalid`,
//! `passphrase-wrong`, `passphrase-short` and `internal` for what the bridge
//! itself checks. No message carries a secret.
#![forbid(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;

use core::fmt::Display;
use core::ops::DerefMut;

use js_sys::{Array, Object, Reflect, Uint8Array};
use northstar_core::UnixTime;
use northstar_core::attachment::{AttachmentRef, FileInfo, FileName, MediaType};
use northstar_core::client::counselor::{self as team, Counselor, Status};
use northstar_core::client::inbox::{InboxOrder, IntakeFilter};
use northstar_core::client::saved::DeviceState;
use northstar_core::client::search::InboxFilter;
use northstar_core::client::{Author, Entry, EntryKind};
use northstar_core::codename::{Codename, CodenameError};
use northstar_core::directory::{DirectoryError, IntakePolicy, VerifiedDirectory};
use northstar_core::driver::{
    Command, Config, ConnId, ConnKind, Connection, Driver, DriverError, Event, Outcome, Output,
    ReadId, TeamAction, Work, WorkId,
};
use northstar_core::error::ApiMisuse;
use northstar_core::ids::{DeviceId, Language, MailboxId, PartnerId, TeamId};
use northstar_core::intake::{
    Answer, IntakeAnswers, IntakeSummary, Localized, QuestionId, ShownAnswer,
};
use northstar_core::keys::OrgPublicKey;
use northstar_core::state::{KeyStore, StateKey};
use rand_core::{OsRng, RngCore};
use wasm_bindgen::prelude::*;

// ------------------------------------------------------------------ helpers

/// An `Error` with a stable `code` (also the message prefix).
fn fail(code: &str, msg: impl Display) -> JsValue {
    let e = js_sys::Error::new(&format!("{code}: {msg}"));
    set(&e, "code", code);
    e.into()
}

fn internal(e: impl Display) -> JsValue {
    fail("internal", e)
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &JsValue::from_str(k), &v.into());
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
    MailboxId::from_hex(hex).ok_or_else(|| internal("not a conversation id"))
}

fn now_of(now: f64) -> UnixTime {
    UnixTime(if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    })
}

/// Connection, work and command ids cross as numbers (far below 2^53).
fn id_of(x: f64) -> u64 {
    if x.is_finite() && x >= 0.0 {
        x as u64
    } else {
        0
    }
}

fn language(tag: &str) -> Result<Language, JsValue> {
    Language::from_tag(tag).ok_or_else(|| internal("language must be en, es, fr or ht"))
}

/// The relays and the pinned key: `relays` is an array of WebSocket URLs.
fn config(relays: &Array, org_hex: &str) -> Result<Config, JsValue> {
    let relays = relays
        .iter()
        .map(|v| {
            v.as_string()
                .ok_or_else(|| internal("a relay URL must be a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        relays,
        org: parse_org(org_hex)?,
    })
}

/// 32 bytes from the browser's CSPRNG, in the zeroizing buffer the caller
/// names (this crate does not depend on the zeroize crate itself).
fn random32<T: DerefMut<Target = [u8; 32]>>(mut z: T) -> T {
    OsRng.fill_bytes(&mut *z);
    z
}

/// A state key from the 32 bytes a key store holds.
fn state_key_from(plain: &[u8]) -> Option<StateKey> {
    fn fill<T: DerefMut<Target = [u8; 32]>>(mut z: T, b: &[u8; 32]) -> T {
        z.copy_from_slice(b);
        z
    }
    let b: &[u8; 32] = plain.try_into().ok()?;
    Some(StateKey::from_bytes(fill(Default::default(), b)))
}

/// The stable code of each driver error kind (core.js puts them in the
/// page's words).
pub fn driver_error_code(e: &DriverError) -> &'static str {
    match e {
        DriverError::NoRelay => "no-relay",
        DriverError::Network => "network",
        DriverError::Protocol => "protocol",
        DriverError::UnsupportedVersion { .. } => "unsupported-version",
        DriverError::Relay { .. } => "relay",
        DriverError::TooLargeForRelay { .. } => "too-large-for-relay",
        DriverError::NoDirectory => "no-directory",
        // Not a forgery: the organisation has not re-signed in time, or the
        // relay withholds the newer directory. The page says so plainly.
        DriverError::DirectoryRefused(DirectoryError::Expired { .. }) => "directory-expired",
        DriverError::DirectoryRefused(_) => "directory-refused",
        DriverError::CodenameNotFound => "codename-not-found",
        DriverError::StateDoesNotOpen => "state-does-not-open",
        DriverError::UnknownTopic => "unknown-topic",
        DriverError::NobodyAnswers => "nobody-answers",
        DriverError::DeviceWithoutKeys => "device-without-keys",
        DriverError::NotInDirectory => "not-in-directory",
        DriverError::ClaimedByOther { .. } => "claimed-by-other",
        DriverError::NotSentYet { .. } => "not-sent-yet",
        DriverError::EmptyMessage => "empty-message",
        DriverError::MessageTooLong { .. } => "message-too-long",
        DriverError::OtherOrganisation => "other-organisation",
        DriverError::Misuse { .. } => "misuse",
        DriverError::Core(_) => "core",
        DriverError::AttachmentTooLarge { .. } => "attachment-too-large",
        DriverError::FileUnreadable => "file-unreadable",
        DriverError::ImageUnreadable => "image-unreadable",
        DriverError::ImageUnsupported => "image-unsupported",
        DriverError::AttachmentDamaged => "attachment-damaged",
        DriverError::AttachmentGone => "attachment-gone",
        _ => "internal",
    }
}

/// The fields of a driver error beside its code: `relayCode` (the relay's
/// error name), `size`/`max`, `len`/`max`, `by` (the colleague's label),
/// and for `not-sent-yet` the same fields of its cause under `cause`.
fn error_details(o: &Object, e: &DriverError, dir: Option<&VerifiedDirectory>) {
    set(o, "code", driver_error_code(e));
    match e {
        DriverError::NotSentYet { cause } => {
            let c = Object::new();
            error_details(&c, cause, dir);
            set(o, "cause", c);
        }
        DriverError::Relay { code } => set(o, "relayCode", code.name()),
        DriverError::TooLargeForRelay { size, max } => {
            set(o, "size", *size as f64);
            set(o, "max", *max as f64);
        }
        DriverError::MessageTooLong { len, max } => {
            set(o, "len", *len as f64);
            set(o, "max", *max as f64);
        }
        DriverError::AttachmentTooLarge { size, max } => {
            set(o, "size", *size as f64);
            set(o, "max", *max as f64);
        }
        DriverError::ClaimedByOther { by } => set(o, "by", device_label(dir, *by)),
        _ => {}
    }
}

/// A driver error thrown as an `Error` (a command refused at once).
fn throw_driver(e: &DriverError, dir: Option<&VerifiedDirectory>) -> JsValue {
    let err = js_sys::Error::new(&format!("{}: {e}", driver_error_code(e)));
    error_details(&err, e, dir);
    err.into()
}

fn entry_text(dir: Option<&VerifiedDirectory>, k: &EntryKind) -> String {
    match k {
        EntryKind::Attachment(a) => a.info.name.as_str().to_owned(),
        EntryKind::Text(t) => t.as_str().to_owned(),
        EntryKind::Referral { partner, text } => match dir.and_then(|d| d.partner(*partner)) {
            Some(p) => format!("{}\n\n{} — {}", text.as_str(), p.name, p.contact),
            None => text.as_str().to_owned(),
        },
    }
}

fn device_label(dir: Option<&VerifiedDirectory>, d: DeviceId) -> String {
    dir.and_then(|x| x.device(d))
        .map(|x| x.label.clone())
        .unwrap_or_else(|| format!("device {}", d.0))
}

fn team_label(dir: Option<&VerifiedDirectory>, team: TeamId) -> String {
    dir.and_then(|d| d.team(team))
        .map(|t| t.names.en.clone())
        .unwrap_or_else(|| format!("team {}", team.0))
}

fn team_slug(dir: Option<&VerifiedDirectory>, team: TeamId) -> String {
    dir.and_then(|d| d.team(team))
        .map(|t| t.slug.clone())
        .unwrap_or_default()
}

/// `{id, from: "seeker"|"counselor", text, at}` (seconds).
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
    set(&o, "text", entry_text(dir, &e.kind));
    set(&o, "at", e.at.0 as f64);
    if let EntryKind::Attachment(a) = &e.kind {
        set(&o, "attachment", attachment_info(a));
    }
    o
}

/// `{name, type, size, image}` of a file in a conversation (`image`: a
/// photo whose metadata was removed before it was sent).
fn attachment_info(a: &AttachmentRef) -> Object {
    let o = Object::new();
    set(&o, "name", a.info.name.as_str());
    set(&o, "type", a.info.media_type.as_str());
    set(&o, "size", f64::from(a.size));
    set(&o, "image", a.info.media_type.is_strippable_image());
    o
}

/// The file of entry `message_id` (hex) in `history`.
fn attachment_in(history: &[Entry], message_id: &str) -> Result<AttachmentRef, JsValue> {
    history
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::Attachment(a) if to_hex(&e.id.0) == message_id => Some(a.clone()),
            _ => None,
        })
        .ok_or_else(|| fail("misuse", "no such file in this conversation"))
}

/// The name and type a shell gives for a file it attaches.
fn file_info(name: &str, media_type: &str) -> FileInfo {
    FileInfo {
        name: FileName::sanitize(name),
        media_type: MediaType::sanitize(media_type),
    }
}

fn outcome(o: &Outcome) -> Object {
    let x = Object::new();
    let kind = match o {
        Outcome::Directory => "directory",
        Outcome::Started { expires_at } => {
            set(&x, "expiresAt", expires_at.0 as f64);
            "started"
        }
        Outcome::Opened { expires_at } => {
            set(&x, "expiresAt", expires_at.0 as f64);
            "opened"
        }
        Outcome::Sent { expires_at } => {
            set(&x, "expiresAt", expires_at.0 as f64);
            "sent"
        }
        Outcome::Deleted => "deleted",
        Outcome::Synced => "synced",
        Outcome::Acted => "acted",
        Outcome::Published { serial } => {
            set(&x, "serial", *serial as f64);
            "published"
        }
        Outcome::Attached { expires_at } => {
            set(&x, "expiresAt", expires_at.0 as f64);
            "attached"
        }
        Outcome::Fetched { size } => {
            set(&x, "size", *size as f64);
            "fetched"
        }
    };
    set(&x, "kind", kind);
    x
}

/// A team-inbox change: `{kind: "message"|"update"|"canned", id?, topic?,
/// topicLabel?, reopened?}` (`reopened`: a seeker's message opened a
/// resolved conversation again).
fn team_event(o: &Object, e: &team::Event, c: Option<&Counselor>) {
    let (kind, id) = match e {
        team::Event::NewConversation { conversation } => ("message", Some(conversation)),
        team::Event::Message {
            conversation,
            reopened,
            ..
        } => {
            // The seeker wrote on a resolved conversation: open again.
            set(o, "reopened", *reopened);
            ("message", Some(conversation))
        }
        team::Event::StatusChanged { conversation, .. }
        | team::Event::Note { conversation, .. }
        | team::Event::Deleted { conversation }
        | team::Event::Expired { conversation }
        | team::Event::Kept { conversation, .. }
        | team::Event::Purged { conversation, .. } => ("update", Some(conversation)),
        team::Event::CannedAnswer { .. } => ("canned", None),
    };
    set(o, "kind", kind);
    if let Some(id) = id {
        set(o, "id", id.to_hex());
        if let Some(conv) = c.and_then(|c| c.conversation(id)) {
            let dir = c.and_then(Counselor::directory);
            set(o, "topic", team_slug(dir, conv.team));
            set(o, "topicLabel", team_label(dir, conv.team));
        }
    }
}

// ------------------------------------------------------------------ free functions

/// The organisation key's short human fingerprint (to compare with the
/// one the organisation publishes).
#[wasm_bindgen]
pub fn org_fingerprint(org_hex: &str) -> Result<String, JsValue> {
    Ok(parse_org(org_hex)?.fingerprint())
}

/// Verifies a signed web release (docs/WEB_CLIENT.md, "Signed releases")
/// at `now` (Unix seconds): `{orgKey, fingerprint, relays, csp, version,
/// issuedAt, expiresAt, files: {path: sha256 base64url}, wasm: [..]}`, or
/// an `Error` with code `release-invalid` and a one-line reason.
#[wasm_bindgen]
pub fn verify_release(text: &str, now: f64) -> Result<JsValue, JsValue> {
    let now = if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    };
    let r = northstar_core::webrelease::verify(text, None, now)
        .map_err(|e| fail("release-invalid", e))?;
    let o = Object::new();
    set(
        &o,
        "orgKey",
        MailboxId::from_bytes(*r.org.as_bytes()).to_hex(),
    );
    set(&o, "fingerprint", r.org.fingerprint());
    let relays: Array = r.relays.iter().map(|u| JsValue::from_str(u)).collect();
    set(&o, "relays", relays);
    set(&o, "csp", r.csp.as_str());
    set(&o, "index", r.index.as_str());
    set(&o, "version", r.version.as_str());
    set(&o, "issuedAt", r.issued_at as f64);
    set(&o, "expiresAt", r.expires_at as f64);
    let files = Object::new();
    for (p, h) in &r.files {
        set(&files, p, northstar_core::webrelease::b64url(h));
    }
    set(&o, "files", files);
    let wasm: Array = r
        .wasm
        .iter()
        .map(|h| JsValue::from_str(&northstar_core::webrelease::b64url(h)))
        .collect();
    set(&o, "wasm", wasm);
    Ok(o.into())
}

/// A fresh codename in the seeker's language (`"en"`, `"es"`, `"fr"` or
/// `"ht"`: that language's word list, nine or eleven words with the two
/// check words), from the browser's CSPRNG.
#[wasm_bindgen]
pub fn generate_codename(language: &str) -> Result<String, JsValue> {
    let language = Language::from_tag(language).ok_or_else(|| {
        fail(
            "misuse",
            format_args!("unknown language {language:?} (en, es, fr or ht)"),
        )
    })?;
    Ok(Codename::generate(language, &mut OsRng)
        .to_zeroizing_string()
        .as_str()
        .to_owned())
}

/// Checks a typed codename without deriving keys (cheap).
#[wasm_bindgen]
pub fn check_codename(codename: &str) -> Result<(), JsValue> {
    Codename::parse(codename).map(|_| ()).map_err(codename_fail)
}

/// A codename that does not parse, as an error the page can explain in
/// the seeker's language: `code` is `codename-invalid` and `reason` one of
/// `word-count` (with `expected`, `got`), `unknown-word` or `wrong-word`
/// (with a 1-based `position`), `mismatch` or `too-long`. No word is echoed.
fn codename_fail(e: CodenameError) -> JsValue {
    let v = fail("codename-invalid", &e);
    let o: &Object = v.unchecked_ref();
    match e {
        CodenameError::WrongWordCount { expected, got } => {
            set(o, "reason", "word-count");
            set(o, "expected", expected as u32);
            set(o, "got", got as u32);
        }
        CodenameError::UnknownWord { position } => {
            set(o, "reason", "unknown-word");
            set(o, "position", position as u32);
        }
        CodenameError::WrongWord { position } => {
            set(o, "reason", "wrong-word");
            set(o, "position", position as u32);
        }
        CodenameError::Mismatch => set(o, "reason", "mismatch"),
        CodenameError::InputTooLong { .. } => set(o, "reason", "too-long"),
        _ => set(o, "reason", "invalid"),
    }
    v
}

/// The core's one rule for a message a person typed (not empty or white
/// space only, not over the protocol's limit), for a page to check as the
/// person writes; every command applies it again before anything is sent.
/// Throws `empty-message`, or `message-too-long` with `len` and `max` (bytes).
#[wasm_bindgen]
pub fn check_message(text: &str) -> Result<(), JsValue> {
    northstar_core::driver::check_message(text).map_err(|e| throw_driver(&e, None))
}

/// Checks a new counselor passphrase against the core's one rule (at
/// least `MIN_PASSPHRASE_CHARS` characters), before any key is made.
#[wasm_bindgen]
pub fn check_new_passphrase(passphrase: &str) -> Result<(), JsValue> {
    northstar_core::state::check_new_passphrase(passphrase).map_err(|e| fail("passphrase-short", e))
}

/// Tries nonces `start .. start + count` of the proof of work a `work`
/// output asked for; the nonce found, or `undefined` (call again with the
/// next slice, yielding to the event loop between).
#[wasm_bindgen]
pub fn pow_solve_range(
    challenge: &[u8],
    batch_hash: &[u8],
    difficulty: u8,
    start: f64,
    count: f64,
) -> Result<Option<f64>, JsValue> {
    let c = challenge
        .try_into()
        .map_err(|_| internal("a challenge is 32 bytes"))?;
    let h: [u8; 32] = batch_hash
        .try_into()
        .map_err(|_| internal("a batch hash is 32 bytes"))?;
    match northstar_core::pow::solve_range(&c, &h, difficulty, id_of(start), id_of(count)) {
        Ok(n) => Ok(Some(n as f64)),
        Err(northstar_core::pow::PowError::NotFound) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

// ------------------------------------------------------------------ the driver

/// client-core's driver, for one seeker, public look-up or counselor device.
#[wasm_bindgen]
#[derive(Debug)]
pub struct WebDriver {
    driver: Driver,
    /// The pinned organisation key (a codename's keys are derived under it).
    org: OrgPublicKey,
}

#[wasm_bindgen]
impl WebDriver {
    /// A driver for a seeker, or for a public look-up of the topics.
    /// `relays`: WebSocket URLs tried in order; `org_hex`: the pinned key.
    pub fn seeker(relays: &Array, org_hex: &str) -> Result<WebDriver, JsValue> {
        let config = config(relays, org_hex)?;
        let org = config.org;
        Ok(WebDriver {
            driver: Driver::new(config, random32(Default::default())),
            org,
        })
    }

    /// A counselor device: opens the key store with the passphrase
    /// (Argon2id), then the sealed device state with the state key inside.
    /// Refuses a device of another organisation than `org_hex`.
    pub fn unlock(
        relays: &Array,
        org_hex: &str,
        key_store: &[u8],
        sealed_state: &[u8],
        passphrase: &str,
    ) -> Result<WebDriver, JsValue> {
        let config = config(relays, org_hex)?;
        let org = config.org;
        let plain = KeyStore::open(passphrase.as_bytes(), key_store)
            .map_err(|_| fail("passphrase-wrong", "the key store did not open"))?;
        let key = state_key_from(&plain)
            .ok_or_else(|| internal("the key store holds an unexpected key"))?;
        let driver = Driver::counselor(config, random32(Default::default()), key, sealed_state)
            .map_err(|e| throw_driver(&e, None))?;
        Ok(WebDriver { driver, org })
    }

    /// A new counselor device for `org_hex`: fresh keys, a key store (a
    /// random state key under the passphrase, Argon2id) and the first
    /// sealed device state. Returns `{keyStore, sealed, publicKeys}`; the
    /// public keys (hex) go to the administrator (`admin add-device`).
    pub fn enrol(org_hex: &str, passphrase: &str) -> Result<Object, JsValue> {
        let org = parse_org(org_hex)?;
        check_new_passphrase(passphrase)?;
        let key = StateKey::generate(&mut OsRng);
        let store =
            KeyStore::seal(passphrase.as_bytes(), key.as_bytes(), &mut OsRng).map_err(internal)?;
        let device = DeviceState::generate(org, &mut OsRng);
        let sealed = device.seal(&key, &mut OsRng).map_err(internal)?;
        let o = Object::new();
        set(&o, "keyStore", bytes(&store));
        set(&o, "sealed", bytes(&sealed));
        set(
            &o,
            "publicKeys",
            to_hex(&device.counselor.public().encode()),
        );
        Ok(o)
    }

    // -------------------------------------------------------------- commands

    fn command(&mut self, cmd: Command, now: f64) -> Result<f64, JsValue> {
        match self.driver.command(cmd, now_of(now)) {
            Ok(id) => Ok(id.0 as f64),
            Err(e) => Err(throw_driver(&e, self.driver.directory().as_ref())),
        }
    }

    /// Fetches and verifies the directory (the topics; a counselor's colleagues).
    pub fn directory(&mut self, now: f64) -> Result<f64, JsValue> {
        self.command(Command::Directory, now)
    }

    /// A seeker's first message: derives the keys from the codename
    /// (Argon2id, about a second, here), then starts the command.
    /// `answers` (optional): the intake answers, `[{question, declined:
    /// true} | {question, yes: bool} | {question, choice: id} | {question,
    /// choices: [id]} | {question, text}]`, skipped questions left out.
    #[wasm_bindgen(js_name = seekerStart)]
    pub fn seeker_start(
        &mut self,
        codename: &str,
        topic_slug: &str,
        lang: &str,
        text: &str,
        now: f64,
        answers: JsValue,
    ) -> Result<f64, JsValue> {
        let language = language(lang)?;
        let answers = answers_of(&answers)?;
        let secrets = self.derive(codename)?;
        self.command(
            Command::SeekerStart {
                secrets: Box::new(secrets),
                team_slug: topic_slug.to_owned(),
                language,
                answers,
                text: text.to_owned(),
            },
            now,
        )
    }

    /// A seeker comes back with the codename (Argon2id here, then the command).
    #[wasm_bindgen(js_name = seekerOpen)]
    pub fn seeker_open(&mut self, codename: &str, now: f64) -> Result<f64, JsValue> {
        let secrets = self.derive(codename)?;
        self.command(
            Command::SeekerOpen {
                secrets: Box::new(secrets),
            },
            now,
        )
    }

    fn derive(&self, codename: &str) -> Result<northstar_core::codename::SeekerSecrets, JsValue> {
        Codename::parse(codename)
            .map_err(codename_fail)?
            .derive(self.org.as_ed25519())
            .map_err(|e| fail("codename-invalid", e))
    }

    #[wasm_bindgen(js_name = seekerWrite)]
    pub fn seeker_write(&mut self, text: &str, now: f64) -> Result<f64, JsValue> {
        self.command(
            Command::SeekerWrite {
                text: text.to_owned(),
            },
            now,
        )
    }

    #[wasm_bindgen(js_name = seekerDelete)]
    pub fn seeker_delete(&mut self, now: f64) -> Result<f64, JsValue> {
        self.command(Command::SeekerDelete, now)
    }

    /// The seeker sends a file of `size` bytes: the driver asks for it in
    /// slices (`{type: "read"}` outputs, answered with `readDone`).
    #[wasm_bindgen(js_name = seekerAttach)]
    pub fn seeker_attach(
        &mut self,
        name: &str,
        media_type: &str,
        size: f64,
        now: f64,
    ) -> Result<f64, JsValue> {
        let info = file_info(name, media_type);
        self.command(
            Command::SeekerAttach {
                info,
                size: size as u64,
            },
            now,
        )
    }

    /// A counselor sends the seeker of conversation `id` a file.
    #[wasm_bindgen(js_name = counselorAttach)]
    pub fn counselor_attach(
        &mut self,
        id: &str,
        name: &str,
        media_type: &str,
        size: f64,
        now: f64,
    ) -> Result<f64, JsValue> {
        let conversation = mailbox_id(id)?;
        let info = file_info(name, media_type);
        self.command(
            Command::CounselorAttach {
                conversation,
                info,
                size: size as u64,
            },
            now,
        )
    }

    /// Downloads the file of message `message_id` (hex) of the seeker's
    /// conversation, or of counselor conversation `case_id`: `{type:
    /// "write"}` outputs carry its bytes in order; keep them only when the
    /// command is done.
    #[wasm_bindgen(js_name = fetchAttachment)]
    pub fn fetch_attachment(
        &mut self,
        case_id: Option<String>,
        message_id: &str,
        now: f64,
    ) -> Result<f64, JsValue> {
        let reference = match case_id {
            Some(id) => {
                let id = mailbox_id(&id)?;
                let history = self
                    .driver
                    .with_counselor(|c| c.conversation(&id).map(|v| v.history.clone()))
                    .flatten()
                    .ok_or_else(|| fail("misuse", "no such conversation"))?;
                attachment_in(&history, message_id)?
            }
            None => {
                let conv = self
                    .driver
                    .seeker_conversation()
                    .ok_or_else(|| fail("misuse", "no conversation is open"))?;
                attachment_in(&conv.history, message_id)?
            }
        };
        self.command(Command::FetchAttachment { reference }, now)
    }

    /// The shell read the file slice `read` (or could not: `null`).
    #[wasm_bindgen(js_name = readDone)]
    pub fn read_done(&mut self, read: f64, data: Option<Vec<u8>>, now: f64) {
        self.driver.handle_read(
            ReadId(read as u64),
            data.map(zeroize::Zeroizing::new),
            UnixTime(now as u64),
        );
    }

    /// A counselor device: directory, registration, prekeys, everything stored.
    pub fn sync(&mut self, now: f64) -> Result<f64, JsValue> {
        self.command(Command::Sync, now)
    }

    fn team(&mut self, id: &str, action: TeamAction, now: f64) -> Result<f64, JsValue> {
        let conversation = mailbox_id(id)?;
        self.command(
            Command::Team {
                conversation,
                action,
            },
            now,
        )
    }

    pub fn claim(&mut self, id: &str, now: f64) -> Result<f64, JsValue> {
        self.team(id, TeamAction::Claim, now)
    }

    pub fn reply(&mut self, id: &str, text: &str, now: f64) -> Result<f64, JsValue> {
        let text = text.to_owned();
        self.team(id, TeamAction::Reply { text }, now)
    }

    #[wasm_bindgen(js_name = handOff)]
    pub fn hand_off(&mut self, id: &str, to: u32, now: f64) -> Result<f64, JsValue> {
        self.team(id, TeamAction::HandOff { to: DeviceId(to) }, now)
    }

    pub fn note(&mut self, id: &str, text: &str, now: f64) -> Result<f64, JsValue> {
        let text = text.to_owned();
        self.team(id, TeamAction::Note { text }, now)
    }

    pub fn resolve(&mut self, id: &str, now: f64) -> Result<f64, JsValue> {
        self.team(id, TeamAction::Resolve, now)
    }

    pub fn reopen(&mut self, id: &str, now: f64) -> Result<f64, JsValue> {
        self.team(id, TeamAction::Reopen, now)
    }

    /// Resolves the case and deletes it for the whole team: its files on
    /// the relay, this device's copy and (on the event) every colleague's
    /// (docs/PROTOCOL.md §6.7). The page confirms first.
    pub fn purge(&mut self, id: &str, now: f64) -> Result<f64, JsValue> {
        self.team(id, TeamAction::Purge, now)
    }

    pub fn refer(&mut self, id: &str, partner: u16, text: &str, now: f64) -> Result<f64, JsValue> {
        let (partner, text) = (PartnerId(partner), text.to_owned());
        self.team(id, TeamAction::Refer { partner, text }, now)
    }

    #[wasm_bindgen(js_name = saveCanned)]
    pub fn save_canned(
        &mut self,
        id: &str,
        title: &str,
        text: &str,
        now: f64,
    ) -> Result<f64, JsValue> {
        let (title, text) = (title.to_owned(), text.to_owned());
        self.team(id, TeamAction::SaveCanned { title, text }, now)
    }

    /// Marks a conversation read on this device (a local change: a
    /// `persist` output follows).
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&mut self, id: &str) -> Result<(), JsValue> {
        let id = mailbox_id(id)?;
        self.driver
            .mark_read(&id)
            .map_err(|e| throw_driver(&e, None))
    }

    /// Continues from a newer sealed state another tab saved.
    pub fn reload(&mut self, sealed: &[u8]) -> Result<(), JsValue> {
        self.driver
            .reload_counselor(sealed)
            .map_err(|e| throw_driver(&e, None))
    }

    /// Stops receiving; `close` outputs follow for every connection.
    pub fn close(&mut self) {
        self.driver.close();
    }

    // -------------------------------------------------------------- inputs

    /// The WebSocket of connection `conn` opened.
    pub fn connected(&mut self, conn: f64, now: f64) {
        self.driver
            .handle_connected(ConnId(id_of(conn)), now_of(now));
    }

    /// A binary message arrived on connection `conn`.
    pub fn frame(&mut self, conn: f64, frame: &[u8], now: f64) {
        self.driver
            .handle_frame(ConnId(id_of(conn)), frame, now_of(now));
    }

    /// Connection `conn` closed, or could not be opened.
    pub fn closed(&mut self, conn: f64, now: f64) {
        self.driver.handle_closed(ConnId(id_of(conn)), now_of(now));
    }

    /// The proof of work `work` is solved with `nonce`.
    #[wasm_bindgen(js_name = workDone)]
    pub fn work_done(&mut self, work: f64, nonce: f64, now: f64) {
        self.driver
            .handle_work(WorkId(id_of(work)), id_of(nonce), now_of(now));
    }

    /// Time passed (at `nextTimeout()`, or any time).
    pub fn timeout(&mut self, now: f64) {
        self.driver.handle_timeout(now_of(now));
    }

    /// When to call `timeout` next (seconds), or `undefined`.
    #[wasm_bindgen(js_name = nextTimeout)]
    pub fn next_timeout(&self) -> Option<f64> {
        self.driver.poll_timeout().map(|t| t.0 as f64)
    }

    /// Whether a command or the receiver is still running.
    #[wasm_bindgen(js_name = isBusy)]
    pub fn is_busy(&self) -> bool {
        self.driver.is_busy()
    }

    // -------------------------------------------------------------- outputs

    /// Everything the shell must do now, in order:
    /// `{type: "connect", conn, kind: "mailbox"|"anonymous", url}`,
    /// `{type: "send", conn, frame}`, `{type: "close", conn}`,
    /// `{type: "persist", sealed}` (store it before carrying out the next),
    /// `{type: "work", work, challenge, batchHash, difficulty}`, and
    /// `{type: "event", event, ...}` with `event` one of
    /// `done {command, outcome: {kind, expiresAt?, serial?}}`,
    /// `failed {command, code, message, relayCode?, by?, size?, len?, max?}`,
    /// `seekerMessage {message: {id, from, text, at}}`,
    /// `team {kind: "message"|"update"|"canned", id?, topic?, topicLabel?}`,
    /// `unreadable {reason}`, `connection {state: "reconnecting"|"open"}`.
    pub fn outputs(&mut self) -> Array {
        let out = Array::new();
        while let Some(o) = self.driver.poll_output() {
            out.push(&self.output(o).into());
        }
        out
    }

    fn output(&self, out: Output) -> Object {
        let o = Object::new();
        match out {
            Output::Connect { conn, kind, url } => {
                set(&o, "type", "connect");
                set(&o, "conn", conn.0 as f64);
                let kind = match kind {
                    ConnKind::Mailbox => "mailbox",
                    ConnKind::Anonymous => "anonymous",
                };
                set(&o, "kind", kind);
                set(&o, "url", url);
            }
            Output::Send { conn, frame } => {
                set(&o, "type", "send");
                set(&o, "conn", conn.0 as f64);
                set(&o, "frame", bytes(&frame));
            }
            Output::Close { conn } => {
                set(&o, "type", "close");
                set(&o, "conn", conn.0 as f64);
            }
            Output::Persist { sealed } => {
                set(&o, "type", "persist");
                set(&o, "sealed", bytes(&sealed));
            }
            Output::Work { work, job } => {
                let Work::ProofOfWork {
                    challenge,
                    batch_hash,
                    difficulty,
                } = job;
                set(&o, "type", "work");
                set(&o, "work", work.0 as f64);
                set(&o, "challenge", bytes(&challenge));
                set(&o, "batchHash", bytes(&batch_hash));
                set(&o, "difficulty", difficulty);
            }
            Output::Event(e) => {
                set(&o, "type", "event");
                self.event(&o, e);
            }
            Output::ReadFile { read, offset, len } => {
                set(&o, "type", "read");
                set(&o, "read", read.0 as f64);
                set(&o, "offset", offset as f64);
                set(&o, "len", len as f64);
            }
            Output::WriteFile { command, data } => {
                set(&o, "type", "write");
                set(&o, "command", command.0 as f64);
                set(&o, "data", bytes(&data.0));
            }
        }
        o
    }

    fn event(&self, o: &Object, e: Event) {
        match e {
            Event::Done {
                command,
                outcome: x,
            } => {
                set(o, "event", "done");
                set(o, "command", command.0 as f64);
                set(o, "outcome", outcome(&x));
            }
            Event::Failed { command, error } => {
                set(o, "event", "failed");
                set(o, "command", command.0 as f64);
                set(o, "message", error.to_string());
                let dir = self.driver.directory();
                error_details(o, &error, dir.as_ref());
            }
            Event::SeekerStatus => {
                set(o, "event", "seekerStatus");
            }
            Event::SeekerMessage(entry) => {
                set(o, "event", "seekerMessage");
                let dir = self.driver.directory();
                set(o, "message", seeker_message(&entry, dir.as_ref()));
            }
            Event::Team(t) => {
                set(o, "event", "team");
                if self
                    .driver
                    .with_counselor(|c| team_event(o, &t, Some(c)))
                    .is_none()
                {
                    team_event(o, &t, None);
                }
            }
            Event::Unreadable { reason } => {
                set(o, "event", "unreadable");
                set(o, "reason", reason.name());
            }
            Event::PartlyRefused { refused, of, code } => {
                set(o, "event", "partlyRefused");
                set(o, "refused", refused as f64);
                set(o, "of", of as f64);
                set(o, "code", code.name());
            }
            Event::Progress {
                command,
                done,
                total,
            } => {
                set(o, "event", "progress");
                set(o, "command", command.0 as f64);
                set(o, "done", done as f64);
                set(o, "total", total as f64);
            }
            Event::Connection(c) => {
                set(o, "event", "connection");
                let state = match c {
                    Connection::Reconnecting => "reconnecting",
                    Connection::Connected => "open",
                };
                set(o, "state", state);
            }
        }
    }

    // -------------------------------------------------------------- getters

    /// Teams that have at least one device: `[{id, slug, label}]`, the
    /// label in `lang` (empty before the directory is fetched).
    pub fn topics(&self, lang: &str) -> Array {
        let lang = Language::from_tag(lang).unwrap_or(Language::En);
        let Some(dir) = self.driver.directory() else {
            return Array::new();
        };
        dir.teams()
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

    /// The intake questions of the topic `slug`, in order, in every
    /// language: `[{id, kind, meaning, prompt: {en, es, fr, ht},
    /// promptOther: {…}, choices: [{id, label: {…}}]}]` (empty before the
    /// directory is fetched or for a topic without questions).
    pub fn questions(&self, slug: &str) -> Array {
        let Some(dir) = self.driver.directory() else {
            return Array::new();
        };
        let Some(team) = dir.teams().iter().find(|t| t.slug == slug) else {
            return Array::new();
        };
        dir.questions_of(team.id)
            .into_iter()
            .map(|q| {
                let o = Object::new();
                set(&o, "id", q.id.0);
                set(&o, "kind", q.kind.name());
                set(&o, "meaning", q.meaning.name());
                set(&o, "prompt", localized(&q.prompt));
                set(&o, "promptOther", localized(&q.prompt_other));
                let choices: Array = q
                    .choices
                    .iter()
                    .map(|c| {
                        let x = Object::new();
                        set(&x, "id", c.id);
                        set(&x, "label", localized(&c.label));
                        JsValue::from(x)
                    })
                    .collect();
                set(&o, "choices", choices);
                JsValue::from(o)
            })
            .collect()
    }

    /// The inbox in the core's order, kept by its intake filters (the same
    /// implementation as `northstar counselor inbox`): `order` is
    /// "newest", "minors-first" or "urgent-first". `InboxItem[]`.
    #[wasm_bindgen(js_name = inboxSorted)]
    pub fn inbox_sorted(
        &self,
        order: &str,
        minors: bool,
        urgent: bool,
        for_someone_else: bool,
    ) -> Result<Array, JsValue> {
        let order = InboxOrder::from_name(order).ok_or_else(|| internal("unknown inbox order"))?;
        let filter = IntakeFilter {
            minors,
            urgent,
            for_someone_else,
        };
        Ok(self
            .driver
            .with_counselor(|c| {
                c.inbox(order, &filter)
                    .iter()
                    .filter_map(|id| item(c, id).map(JsValue::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The intake summary of one conversation in `lang`: `{forSomeoneElse,
    /// minor, urgent, urgency, asylumElsewhere, usCitizen, inCanada, lines:
    /// [{question, meaning, prompt, answer: {kind: "yes" | "no" |
    /// "declined" | "choices" | "text" | "unrecognised", values: [string]}}]}`
    /// (flags `null` when not answered).
    #[wasm_bindgen(js_name = caseIntake)]
    pub fn case_intake(&self, id: &str, lang: &str) -> Result<JsValue, JsValue> {
        let id = mailbox_id(id)?;
        let lang = Language::from_tag(lang).unwrap_or(Language::En);
        self.driver
            .with_counselor(|c| c.intake_summary(&id, lang))
            .flatten()
            .map(|s| JsValue::from(intake_object(&s)))
            .ok_or_else(|| internal("unknown conversation"))
    }

    /// True when the organisation narrowed the intake set (the relay learns the team).
    #[wasm_bindgen(js_name = topicVisibleToRelay)]
    pub fn topic_visible_to_relay(&self) -> bool {
        self.driver
            .directory()
            .is_some_and(|d| d.intake_policy() == IntakePolicy::TeamOnly)
    }

    /// The seeker's conversation: `{team, topic (slug), topicLabel,
    /// language, expiresAt, messages: [{id, from, text, at}]}`, or `null`.
    pub fn conversation(&self) -> JsValue {
        let Some(c) = self.driver.seeker_conversation() else {
            return JsValue::NULL;
        };
        let dir = self.driver.directory();
        let dir = dir.as_ref();
        let o = Object::new();
        set(&o, "team", c.team.0);
        set(&o, "topic", team_slug(dir, c.team));
        if let Some(t) = dir.and_then(|d| d.team(c.team)) {
            set(&o, "topicLabel", t.names.get(Language::En));
        }
        set(&o, "language", c.language.tag());
        if let Some(t) = self.driver.expires_at() {
            set(&o, "expiresAt", t.0 as f64);
        }
        let msgs: Array = c
            .history
            .iter()
            .map(|e| JsValue::from(seeker_message(e, dir)))
            .collect();
        set(&o, "messages", msgs);
        // Receipts and retention (issue 20 items 3-4): `status` is
        // `{reached, devices, read, answered, resolved, referred:
        // [{name, contact}]}`; `deletesAt` the Unix time of the deletion,
        // `retentionDays` the organisation's retention in days.
        let st = c.status();
        let so = Object::new();
        set(&so, "reached", st.reached as f64);
        set(&so, "devices", st.devices as f64);
        set(&so, "read", st.read);
        set(&so, "answered", st.answered);
        set(&so, "resolved", st.resolved);
        let referred: Array = st
            .referred
            .iter()
            .filter_map(|p| dir.and_then(|d| d.partner(*p)))
            .map(|p| {
                let x = Object::new();
                set(&x, "name", p.name.as_str());
                set(&x, "contact", p.contact.as_str());
                JsValue::from(x)
            })
            .collect();
        set(&so, "referred", referred);
        set(&o, "status", so);
        if let Some(t) = self.driver.seeker_deletion_at() {
            set(&o, "deletesAt", t.0 as f64);
        }
        if let Some(r) = self.driver.retention_secs() {
            set(&o, "retentionDays", (r / 86_400) as f64);
        }
        o.into()
    }

    /// Keeps a case past the organisation's retention until `until` (Unix
    /// seconds), for `reason`: logged on every device of the team.
    pub fn keep(&mut self, id: &str, until: f64, reason: &str, now: f64) -> Result<f64, JsValue> {
        let until = UnixTime(until.max(0.0) as u64);
        let reason = reason.to_owned();
        self.team(id, TeamAction::Keep { until, reason }, now)
    }

    /// The device's log of "keep this case longer" choices, oldest first:
    /// `[{id, by, at, until, reason}]`.
    #[wasm_bindgen(js_name = keepLog)]
    pub fn keep_log(&self) -> Array {
        self.driver
            .with_counselor(|c| {
                let dir = c.directory();
                c.keep_log()
                    .map(|k| {
                        let x = Object::new();
                        set(&x, "id", k.conversation.to_hex());
                        set(&x, "by", device_label(dir, k.by));
                        set(&x, "at", k.at.0 as f64);
                        set(&x, "until", k.until.0 as f64);
                        set(&x, "reason", k.reason.as_str());
                        JsValue::from(x)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every conversation of the counselor device, newest first (the
    /// core's order, as `inboxSorted("newest", …)`): `InboxItem[]`.
    pub fn inbox(&self) -> Array {
        self.driver
            .with_counselor(|c| {
                c.inbox(InboxOrder::Newest, &IntakeFilter::default())
                    .iter()
                    .filter_map(|id| item(c, id).map(JsValue::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One conversation with its entries and notes (`Case`).
    #[wasm_bindgen(js_name = openCase)]
    pub fn open_case(&self, id: &str) -> Result<JsValue, JsValue> {
        let id = mailbox_id(id)?;
        self.driver
            .with_counselor(|c| case(c, &id))
            .flatten()
            .map(JsValue::from)
            .ok_or_else(|| internal("unknown conversation"))
    }

    /// The team's canned answers: `[{id, title, text}]`.
    pub fn canned(&self) -> Array {
        self.driver
            .with_counselor(|c| {
                c.canned_answers()
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
            })
            .unwrap_or_default()
    }

    /// `{name, deviceId, teams: [{id, label}]}` (`name` empty before the
    /// device is in a directory).
    pub fn whoami(&self) -> JsValue {
        let o = Object::new();
        self.driver.with_counselor(|c| {
            let dir = c.directory();
            match c.device() {
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
                            set(&x, "label", team_label(dir, t));
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
        });
        o.into()
    }

    /// The other devices of the directory: `[{id, name}]`.
    pub fn colleagues(&self) -> Array {
        self.driver
            .with_counselor(|c| {
                let me = c.device().ok().map(|d| d.id);
                c.directory()
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
            })
            .unwrap_or_default()
    }

    /// Partner organisations: `[{id, name}]`.
    pub fn partners(&self) -> Array {
        let Some(dir) = self.driver.directory() else {
            return Array::new();
        };
        dir.partners()
            .iter()
            .map(|p| {
                let x = Object::new();
                set(&x, "id", p.id.0.to_string());
                set(&x, "name", p.name.as_str());
                JsValue::from(x)
            })
            .collect()
    }

    /// The counselor device's public keys (hex), for the administrator.
    #[wasm_bindgen(js_name = publicKeys)]
    pub fn public_keys(&self) -> Option<String> {
        self.driver.with_counselor(|c| to_hex(&c.public().encode()))
    }

    /// Searches the inbox (issue 20 item 5): every word of `query` must
    /// match, case and accents ignored, in the messages, private notes,
    /// status or topic this device decrypted; `filter` is `all`, `open`,
    /// `unread`, `claimed`, `mine` or `resolved`. Nothing goes to the relay.
    /// Returns `{total, items}`: at most 50 `InboxItem`s, most recent
    /// activity first, each with `match: {field, before, matched, after}`
    /// (`field`: `seeker-message`, `counselor-message`, `referral`, `note`,
    /// `status`, `team`). Throws code `query-too-long` over 200 bytes or 8
    /// words.
    #[wasm_bindgen(js_name = searchInbox)]
    pub fn search_inbox(&mut self, query: &str, filter: &str) -> Result<JsValue, JsValue> {
        let filter = InboxFilter::from_name(filter).ok_or_else(|| internal("unknown filter"))?;
        let found = match self.driver.search(query, filter) {
            Ok(f) => f,
            Err(DriverError::Core(northstar_core::Error::Misuse(
                e @ (ApiMisuse::QueryTooLong { .. } | ApiMisuse::QueryTooManyTerms { .. }),
            ))) => return Err(fail("query-too-long", e)),
            Err(e) => return Err(throw_driver(&e, None)),
        };
        let items: Array = self
            .driver
            .with_counselor(|c| {
                found
                    .hits
                    .iter()
                    .filter_map(|h| {
                        let o = item(c, &h.conversation)?;
                        if let Some(m) = &h.snippet {
                            let x = Object::new();
                            set(&x, "field", m.field.name());
                            set(&x, "before", m.before.as_str());
                            set(&x, "matched", m.matched.as_str());
                            set(&x, "after", m.after.as_str());
                            set(&o, "match", x);
                        }
                        Some(JsValue::from(o))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let o = Object::new();
        set(&o, "total", found.total as f64);
        set(&o, "items", items);
        Ok(o.into())
    }

    /// `{kept, dropped}`: unreadable messages the device keeps in
    /// quarantine, and how many it had to drop.
    pub fn quarantine(&self) -> JsValue {
        match self.driver.quarantine() {
            Some((kept, dropped)) => {
                let o = Object::new();
                set(&o, "kept", kept as f64);
                set(&o, "dropped", dropped);
                o.into()
            }
            None => JsValue::NULL,
        }
    }
}

/// An inbox row: `{id, topic, topicLabel, language, status, unread,
/// claimedBy?, mine, preview, updatedAt}` (docs/WEB_CLIENT.md `InboxItem`).
fn item(c: &Counselor, id: &MailboxId) -> Option<Object> {
    let v = c.conversation(id)?;
    let dir = c.directory();
    let me = c.device().ok().map(|d| d.id);
    let o = Object::new();
    set(&o, "id", id.to_hex());
    set(&o, "topic", team_slug(dir, v.team));
    set(&o, "topicLabel", team_label(dir, v.team));
    set(&o, "language", v.language.tag());
    let status = match v.status {
        Status::Resolved => "resolved",
        Status::Claimed(_) => "claimed",
        Status::Open if v.unread => "unread",
        Status::Open => "open",
    };
    set(&o, "status", status);
    set(&o, "unread", v.unread);
    if let Status::Claimed(d) = v.status {
        set(&o, "claimedBy", device_label(dir, d));
        set(&o, "mine", Some(d) == me);
    } else {
        set(&o, "mine", false);
    }
    let last = v.history.last();
    let preview: String = last
        .map(|e| entry_text(dir, &e.kind).chars().take(120).collect())
        .unwrap_or_default();
    set(&o, "preview", preview);
    set(&o, "updatedAt", last.map_or(0.0, |e| e.at.0 as f64));
    if let Some(s) = c.intake_summary(id, Language::En) {
        set(&o, "intake", intake_flags(&s));
    }
    Some(o)
}

/// The flags the inbox shows and filters on: `{forSomeoneElse, minor,
/// urgent, urgency}`, each `null` when not answered.
fn intake_flags(s: &IntakeSummary) -> Object {
    let o = Object::new();
    let opt = |b: Option<bool>| b.map_or(JsValue::NULL, JsValue::from);
    set(&o, "forSomeoneElse", opt(s.for_someone_else));
    set(&o, "minor", opt(s.minor));
    set(&o, "urgent", opt(s.urgent));
    set(
        &o,
        "urgency",
        s.urgency.map_or(JsValue::NULL, JsValue::from),
    );
    set(&o, "asylumElsewhere", opt(s.asylum_elsewhere));
    set(&o, "usCitizen", opt(s.us_citizen));
    set(&o, "inCanada", opt(s.in_canada));
    o
}

fn intake_object(s: &IntakeSummary) -> Object {
    let o = intake_flags(s);
    let lines: Array = s
        .lines
        .iter()
        .map(|l| {
            let x = Object::new();
            set(&x, "question", l.question.0);
            set(&x, "meaning", l.meaning.name());
            set(&x, "prompt", l.prompt.as_str());
            let a = Object::new();
            let (kind, values): (&str, Vec<String>) = match &l.answer {
                ShownAnswer::Declined => ("declined", vec![]),
                ShownAnswer::YesNo(true) => ("yes", vec![]),
                ShownAnswer::YesNo(false) => ("no", vec![]),
                ShownAnswer::Choices(v) => ("choices", v.clone()),
                ShownAnswer::Text(t) => ("text", vec![t.clone()]),
                ShownAnswer::Unrecognised => ("unrecognised", vec![]),
            };
            set(&a, "kind", kind);
            let values: Array = values.into_iter().map(JsValue::from).collect();
            set(&a, "values", values);
            set(&x, "answer", a);
            JsValue::from(x)
        })
        .collect();
    set(&o, "lines", lines);
    o
}

fn localized(l: &Localized) -> Object {
    let o = Object::new();
    for lang in Language::ALL {
        set(&o, lang.tag(), l.get(lang));
    }
    o
}

/// The seeker's answers from the page (see `WebDriver::seeker_start`);
/// `undefined` or `null` is none.
fn answers_of(v: &JsValue) -> Result<IntakeAnswers, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(IntakeAnswers::none());
    }
    let bad = || fail("internal", "malformed intake answers");
    let list: Array = v.clone().dyn_into().map_err(|_| bad())?;
    let get =
        |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let small = |x: JsValue, max: f64| -> Result<f64, JsValue> {
        x.as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= max)
            .ok_or_else(bad)
    };
    let mut out = Vec::new();
    for a in list.iter() {
        let q = QuestionId(small(get(&a, "question"), f64::from(u16::MAX))? as u16);
        let answer = if get(&a, "declined").as_bool() == Some(true) {
            Answer::Declined
        } else if let Some(b) = get(&a, "yes").as_bool() {
            Answer::YesNo(b)
        } else if !get(&a, "choice").is_undefined() {
            Answer::Choice(small(get(&a, "choice"), 255.0)? as u8)
        } else if !get(&a, "choices").is_undefined() {
            let cs: Array = get(&a, "choices").dyn_into().map_err(|_| bad())?;
            Answer::Choices(
                cs.iter()
                    .map(|c| small(c, 255.0).map(|n| n as u8))
                    .collect::<Result<Vec<u8>, JsValue>>()?,
            )
        } else if let Some(t) = get(&a, "text").as_string() {
            Answer::Text(northstar_core::message::MessageText::new(t))
        } else {
            return Err(bad());
        };
        out.push((q, answer));
    }
    IntakeAnswers::new(out).map_err(|e| fail("internal", e))
}

/// An inbox row with its entries and notes in time order: `Case`.
fn case(c: &Counselor, id: &MailboxId) -> Option<Object> {
    let o = item(c, id)?;
    let v = c.conversation(id)?;
    let dir = c.directory();
    let mut entries: Vec<(u64, Object)> = Vec::new();
    for e in &v.history {
        let x = Object::new();
        set(&x, "id", to_hex(&e.id.0));
        match e.author {
            Author::Seeker => set(&x, "kind", "seeker"),
            Author::Counselor(d) => {
                set(&x, "kind", "counselor");
                set(&x, "author", device_label(dir, d));
            }
        }
        set(&x, "text", entry_text(dir, &e.kind));
        set(&x, "at", e.at.0 as f64);
        if let EntryKind::Attachment(a) = &e.kind {
            set(&x, "attachment", attachment_info(a));
        }
        entries.push((e.at.0, x));
    }
    for (i, n) in v.notes.iter().enumerate() {
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
    // Retention: when the case leaves this device, and until when a
    // counselor kept it (if anyone did).
    if let Some(t) = c.deletion_at(id) {
        set(&o, "deletesAt", t.0 as f64);
    }
    if let Some(t) = v.kept_until {
        set(&o, "keptUntil", t.0 as f64);
    }
    Some(o)
}
