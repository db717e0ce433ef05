//! The organisation-signed team directory (docs/PROTOCOL.md §"Directory").
//!
//! The organisation's Ed25519 key is the root of trust: its public key (and
//! the human [`OrgPublicKey::fingerprint`]) is pinned in every client. The
//! administrator, offline, lists the teams, each counselor device's identity
//! and mailbox keys, and the partner organisations, and signs the result.
//! The relay stores the newest signed directory per organisation key and
//! hands it to anyone; clients accept it only through
//! [`SignedDirectory::verify`], which refuses a wrong key, a bad signature,
//! a rollback to an older serial, a second, different directory under a
//! serial already seen, and an expired directory. The expiry is signed: a
//! relay that keeps serving an old directory (one still listing a device
//! the administrator removed) can do so at most until it expires, so the
//! administrator re-signs before then (`northstar admin publish`).
//!
//! The directory is **public** (the relay and every seeker can read it):
//! device labels must be pseudonyms, never a counselor's name.
//!
//! ```text
//! The directory also carries the intake questions (`crate::intake`): one
//! catalog for the organisation, and per team the questions its seekers
//! are asked before they write.
//!
//! signed    = version:u8 (=1) || dir_len:u32 || directory[dir_len] || signature[64]
//! signature = Ed25519(org_sk, "northstar/v1/directory" || directory)
//! digest    = SHA-256("northstar/v1/directory-digest" || directory)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::UnixTime;
use crate::error::{DecodeError, Error};
use crate::ids::MailboxId;
pub use crate::ids::{DeviceId, PartnerId, TeamId};
use crate::intake::{
    MAX_QUESTION_LEN, MAX_QUESTIONS, MAX_QUESTIONS_PER_TEAM, Question, QuestionId,
};
use crate::keys::{IdentityPublic, MailboxPublic, Signature};
pub use crate::keys::{OrgPublicKey, OrgSigningKey};
use crate::wire::{Reader, Writer};

/// Version byte of an encoded [`Directory`] (2: with a signed expiry; 3:
/// with the intake questions and the retention).
pub const DIRECTORY_VERSION: u8 = 3;
/// Version byte of an encoded [`SignedDirectory`].
pub const SIGNED_DIRECTORY_VERSION: u8 = 1;
/// Version byte of an encoded [`DirectoryVersion`].
pub const DIRECTORY_VERSION_RECORD_VERSION: u8 = 1;

/// Signature domain: the signed message is this prefix followed by the
/// directory bytes, so a directory signature can never be confused with any
/// other signature the organisation key makes.
pub const SIGNATURE_DOMAIN: &[u8] = b"northstar/v1/directory";
/// Digest domain (the digest identifies one exact directory).
pub const DIGEST_DOMAIN: &[u8] = b"northstar/v1/directory-digest";

/// Most teams. The default topics are six; 16 leaves room for an
/// organisation to split or add topics without the picker becoming a wall.
pub const MAX_TEAMS: usize = 16;
/// Most devices in one team (a large team's counselors, a few devices each).
pub const MAX_DEVICES_PER_TEAM: usize = 64;
/// Most device entries summed over all teams. Each is a PQXDH session for a
/// seeker under the default intake policy, so this also bounds a seeker's
/// fan-out; 192 keeps the whole directory under [`MAX_DIRECTORY_LEN`].
pub const MAX_DEVICE_ENTRIES: usize = 192;
/// Most partner organisations a counselor can refer to.
pub const MAX_PARTNERS: usize = 32;
/// Longest team slug (ASCII `a-z`, `0-9`, `-`): a short stable handle for scripts.
pub const MAX_SLUG_LEN: usize = 32;
/// Longest team display name in one language, UTF-8 bytes.
pub const MAX_TEAM_NAME_LEN: usize = 120;
/// Longest device label, UTF-8 bytes (a pseudonym such as "Desk 3").
pub const MAX_DEVICE_LABEL_LEN: usize = 48;
/// Longest partner name, UTF-8 bytes.
pub const MAX_PARTNER_NAME_LEN: usize = 120;
/// Longest partner contact text (address, phone, web), UTF-8 bytes.
pub const MAX_PARTNER_CONTACT_LEN: usize = 400;
/// Largest encoded directory (128 KiB; 64 KiB before the intake questions,
/// whose catalog at its maximum takes about 51 KB more): fits one relay
/// frame comfortably (the relay's default frame limit is 2 MiB); the maxima
/// above are chosen so that a directory at every maximum fits (checked at
/// compile time). A real directory is far smaller (the default catalog of six
/// questions is 4 253 bytes).
pub const MAX_DIRECTORY_LEN: usize = 128 * 1024;
/// Largest encoded signed directory.
pub const MAX_SIGNED_DIRECTORY_LEN: usize = 1 + 4 + MAX_DIRECTORY_LEN + 64;
/// Directory `issued_at` precision: the hour, like every time the relay sees.
pub const ISSUED_AT_PRECISION_SECS: u64 = 3600;
/// How long a directory the administrator signs stays valid unless they
/// choose otherwise (30 days): clients refuse it from its `expires_at` on,
/// so a relay can freeze a client on an old directory (one still listing a
/// removed device) for at most this long. The administrator re-signs well
/// before (a timer running `northstar admin publish`, docs/DEPLOY.md).
pub const DEFAULT_DIRECTORY_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// Longest lifetime a directory may carry (a year): beyond it the expiry
/// would no longer bound how long a relay can serve a stale directory.
pub const MAX_DIRECTORY_LIFETIME_SECS: u64 = 366 * 24 * 3600;
/// How long a conversation is kept after the seeker's last message unless
/// the organisation chooses otherwise (90 days): long enough to come back
/// for an answer and to follow a referral, short enough that a seized
/// device or relay holds only recent conversations. Counselor devices, the
/// seeker's saved state and the relay all delete a conversation then
/// (docs/PROTOCOL.md §6.6).
pub const DEFAULT_RETENTION_SECS: u64 = 90 * 24 * 3600;
/// Shortest retention an organisation may set (one day): a seeker must be
/// able to come back at least once for the answer.
pub const MIN_RETENTION_SECS: u64 = 24 * 3600;
/// Longest retention an organisation may set (a year): beyond it,
/// "disappearing" would no longer mean anything. The relay keeps a saved
/// state at most its own `state_max_hours` (90 days by default), so an
/// organisation that sets more must raise that limit on its relay too.
pub const MAX_RETENTION_SECS: u64 = 366 * 24 * 3600;
/// Retention precision: the hour, like every time the relay stores.
pub const RETENTION_PRECISION_SECS: u64 = 3600;

const WORST_CASE_LEN: usize = {
    let header = 1 + 32 + 8 + 8 + 8 + 1 + 8 + 2 + 2;
    let team =
        2 + (2 + MAX_SLUG_LEN) + 4 * (2 + MAX_TEAM_NAME_LEN) + 2 + 2 + 2 * MAX_QUESTIONS_PER_TEAM;
    let device = 4 + (2 + MAX_DEVICE_LABEL_LEN) + IdentityPublic::LEN + MailboxPublic::LEN;
    let partner = 2 + (2 + MAX_PARTNER_NAME_LEN) + (2 + MAX_PARTNER_CONTACT_LEN);
    let questions = 2 + MAX_QUESTIONS * MAX_QUESTION_LEN;
    header + MAX_TEAMS * team + MAX_DEVICE_ENTRIES * device + MAX_PARTNERS * partner + questions
};
const _: () = assert!(WORST_CASE_LEN <= MAX_DIRECTORY_LEN);

/// Errors of this module.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The directory is signed by, or names, another organisation than the pinned one.
    #[error("directory belongs to another organisation")]
    WrongOrganisation,
    /// The signature does not verify.
    #[error("directory signature is invalid")]
    BadSignature,
    /// Older than the directory already accepted.
    #[error("directory serial {got} is older than {previous} already accepted")]
    Rollback { got: u64, previous: u64 },
    /// Same serial as the directory already accepted, different contents.
    #[error("a different directory with serial {serial} was already accepted")]
    ConflictingSerial { serial: u64 },
    /// The directory's signed expiry has passed: the administrator has not
    /// signed a newer one, or the relay withholds it.
    #[error("the directory expired at {expires_at} (Unix time) and no newer one was served")]
    Expired { expires_at: u64 },
    /// A team id the directory does not list.
    #[error("team {team} is not in the directory")]
    UnknownTeam { team: u16 },
    /// Signing with a key that is not the directory's organisation key.
    #[error("the signing key does not match the directory's organisation key")]
    SignerMismatch,
    /// The directory breaks a rule (duplicate id, bad slug, …).
    #[error("invalid directory: {what}")]
    Invalid { what: &'static str },
}

/// Which counselor devices a seeker's opening message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum IntakePolicy {
    /// Every device of every team: the relay cannot tell the topic from the
    /// set of recipient mailboxes (DESIGN.md, "What the relay must not learn").
    #[default]
    AllDevices = 1,
    /// Only the chosen team's devices. The relay learns the team from the
    /// recipients; clients must say so plainly before the seeker writes.
    TeamOnly = 2,
}

/// A team's display name in each client language (English required, the
/// others fall back to English when empty).
pub type TeamNames = crate::intake::Localized;

/// One counselor device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    pub id: DeviceId,
    /// A pseudonym shown to colleagues (public: never a real name).
    pub label: String,
    /// The device's identity keys (PQXDH and prekey signatures).
    pub identity: IdentityPublic,
    /// The device's mailbox on the relay.
    pub mailbox: MailboxPublic,
}

/// A team: a topic seekers pick and the devices that answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    /// ASCII handle (`a-z`, `0-9`, `-`), for scripts and the CLI.
    pub slug: String,
    pub names: TeamNames,
    pub devices: Vec<DeviceEntry>,
    /// The intake questions its seekers are asked, in order: ids of the
    /// directory's [`Directory::questions`] catalog (at most
    /// [`MAX_QUESTIONS_PER_TEAM`]; every one can be skipped).
    pub questions: Vec<QuestionId>,
}

/// A partner organisation counselors refer seekers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    pub id: PartnerId,
    pub name: String,
    /// How to reach them (address, phone, web), shown to the seeker.
    pub contact: String,
}

/// The directory content, before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    /// The organisation key that must sign it.
    pub org: OrgPublicKey,
    /// Strictly increasing with every new version the administrator signs.
    pub serial: u64,
    /// When it was signed, on the hour.
    pub issued_at: UnixTime,
    /// From when clients refuse it, on the hour: after `issued_at`, at most
    /// [`MAX_DIRECTORY_LIFETIME_SECS`] later.
    pub expires_at: UnixTime,
    pub intake: IntakePolicy,
    /// Seconds a conversation is kept after the seeker's last message, on
    /// every counselor device, in the seeker's saved state and on the
    /// relay: a whole number of hours between [`MIN_RETENTION_SECS`] and
    /// [`MAX_RETENTION_SECS`] (default [`DEFAULT_RETENTION_SECS`]).
    pub retention_secs: u64,
    pub teams: Vec<Team>,
    pub partners: Vec<Partner>,
    /// The organisation's intake questions, which teams refer to by id
    /// (public, like everything here: never a question whose wording is
    /// itself sensitive).
    pub questions: Vec<Question>,
}

mod intake_tag {
    pub const ALL_DEVICES: u8 = 1;
    pub const TEAM_ONLY: u8 = 2;
}

impl Directory {
    /// A directory with no team, device or partner, and the default intake
    /// question catalog (which [`Directory::default_teams`] refer to),
    /// `issued_at` floored to the hour, valid for
    /// [`DEFAULT_DIRECTORY_LIFETIME_SECS`].
    pub fn new(org: OrgPublicKey, serial: u64, issued_at: UnixTime) -> Self {
        let issued_at = issued_at.floor_hour();
        Directory {
            org,
            serial,
            issued_at,
            expires_at: UnixTime(issued_at.0.saturating_add(DEFAULT_DIRECTORY_LIFETIME_SECS)),
            intake: IntakePolicy::default(),
            retention_secs: DEFAULT_RETENTION_SECS,
            teams: Vec::new(),
            partners: Vec::new(),
            questions: crate::intake::default_questions(),
        }
    }

    /// How long the directory is valid after it is issued, in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        self.expires_at.0.saturating_sub(self.issued_at.0)
    }

    /// Sets the expiry `secs` after `issued_at` (the administrator's
    /// choice; [`Directory::validate`] refuses one that is not a whole
    /// number of hours, zero, or longer than [`MAX_DIRECTORY_LIFETIME_SECS`]).
    pub fn set_lifetime(&mut self, secs: u64) {
        self.expires_at = UnixTime(self.issued_at.0.saturating_add(secs));
    }

    /// The next version for the administrator to edit and sign: same
    /// content and lifetime, serial + 1, issued at `now` (floored to the
    /// hour) and so expiring one lifetime after `now`. `None` when the
    /// serial is exhausted.
    pub fn successor(&self, now: UnixTime) -> Option<Directory> {
        let mut next = self.clone();
        next.serial = self.serial.checked_add(1)?;
        next.issued_at = now.floor_hour();
        next.set_lifetime(self.lifetime_secs());
        Some(next)
    }

    /// Removes a device from every team (a lost or retired device). Returns
    /// whether it was listed.
    pub fn remove_device(&mut self, id: DeviceId) -> bool {
        let mut found = false;
        for team in &mut self.teams {
            let before = team.devices.len();
            team.devices.retain(|d| d.id != id);
            found |= team.devices.len() != before;
        }
        found
    }

    /// Adds a device to a team (validation happens when signing).
    pub fn add_device(&mut self, team: TeamId, device: DeviceEntry) -> Result<(), DirectoryError> {
        let t = self
            .teams
            .iter_mut()
            .find(|t| t.id == team)
            .ok_or(DirectoryError::UnknownTeam { team: team.0 })?;
        t.devices.push(device);
        Ok(())
    }

    /// The default topics (DESIGN.md), ids 1–6, with no devices yet.
    /// Translations are a first draft to be reviewed by native speakers.
    pub fn default_teams() -> Vec<Team> {
        let t = |id: u16, slug: &str, en: &str, es: &str, fr: &str, ht: &str| Team {
            id: TeamId(id),
            slug: slug.to_owned(),
            names: TeamNames {
                en: en.to_owned(),
                es: es.to_owned(),
                fr: fr.to_owned(),
                ht: ht.to_owned(),
            },
            devices: Vec::new(),
            questions: crate::intake::default_team_questions(),
        };
        vec![
            t(
                1,
                "unaccompanied-minors",
                "Unaccompanied minors",
                "Menores no acompañados",
                "Mineurs non accompagnés",
                "Timoun ki poukont yo",
            ),
            t(
                2,
                "crossing-the-border",
                "Crossing the border",
                "Cruzar la frontera",
                "Traverser la frontière",
                "Travèse fwontyè a",
            ),
            t(
                3,
                "safe-third-country",
                "Safe Third Country Agreement eligibility",
                "Elegibilidad según el Acuerdo de Tercer País Seguro",
                "Admissibilité selon l'Entente sur les tiers pays sûrs",
                "Kalifikasyon dapre Akò Twazyèm Peyi ki An Sekirite a",
            ),
            t(
                4,
                "earlier-asylum-claims",
                "Earlier asylum claims in the U.S., U.K., Australia or New Zealand",
                "Solicitudes de asilo anteriores en EE. UU., Reino Unido, Australia o Nueva Zelanda",
                "Demandes d'asile antérieures aux États-Unis, au Royaume-Uni, en Australie ou en Nouvelle-Zélande",
                "Demann azil ou te deja fè Ozetazini, nan Wayòm Ini, Ostrali oswa Nouvèl Zeland",
            ),
            t(
                5,
                "us-citizens",
                "U.S. citizens",
                "Ciudadanos de EE. UU.",
                "Citoyens américains",
                "Sitwayen ameriken",
            ),
            t(
                6,
                "newcomer-services-canada",
                "Newcomer services in Canada",
                "Servicios para recién llegados en Canadá",
                "Services aux nouveaux arrivants au Canada",
                "Sèvis pou moun ki fèk rive nan Kanada",
            ),
        ]
    }

    /// The default intake questions every default team asks
    /// ([`crate::intake::default_questions`]).
    pub fn default_questions() -> Vec<Question> {
        crate::intake::default_questions()
    }

    /// The questions a team asks, in order (empty for an unknown team).
    pub fn questions_of(&self, team: TeamId) -> Vec<&Question> {
        questions_of(&self.questions, &self.teams, team)
    }

    /// Checks every rule a directory must satisfy (both when signing and
    /// when decoding): counts and lengths within their maxima, `issued_at`
    /// and `expires_at` on the hour, `expires_at` after `issued_at` by at
    /// most [`MAX_DIRECTORY_LIFETIME_SECS`], unique team ids and slugs, slugs in `[a-z0-9-]+`, an
    /// English name for every team, unique device ids per team, one device
    /// id ↔ one set of keys across teams, no two devices sharing a mailbox
    /// or identity key, unique partner ids, non-empty partner names, and the
    /// intake questions' rules ([`crate::intake::validate_catalog`]).
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let invalid = |what| Err(DirectoryError::Invalid { what });
        if !self.issued_at.0.is_multiple_of(ISSUED_AT_PRECISION_SECS) {
            return invalid("issued_at is not on the hour");
        }
        if !self.expires_at.0.is_multiple_of(ISSUED_AT_PRECISION_SECS) {
            return invalid("expires_at is not on the hour");
        }
        if self.expires_at <= self.issued_at {
            return invalid("expires_at is not after issued_at");
        }
        if self.lifetime_secs() > MAX_DIRECTORY_LIFETIME_SECS {
            return invalid("lifetime too long");
        }
        if !(MIN_RETENTION_SECS..=MAX_RETENTION_SECS).contains(&self.retention_secs) {
            return invalid("retention out of range");
        }
        if !self.retention_secs.is_multiple_of(RETENTION_PRECISION_SECS) {
            return invalid("retention is not whole hours");
        }
        if self.teams.len() > MAX_TEAMS {
            return invalid("too many teams");
        }
        if self.partners.len() > MAX_PARTNERS {
            return invalid("too many partners");
        }
        let mut team_ids = BTreeSet::new();
        let mut slugs = BTreeSet::new();
        let mut devices: BTreeMap<DeviceId, &DeviceEntry> = BTreeMap::new();
        let mut entries = 0usize;
        for team in &self.teams {
            if !team_ids.insert(team.id) {
                return invalid("duplicate team id");
            }
            if !slugs.insert(team.slug.as_str()) {
                return invalid("duplicate team slug");
            }
            if team.slug.is_empty()
                || team.slug.len() > MAX_SLUG_LEN
                || !team
                    .slug
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return invalid("team slug");
            }
            if team.names.en.is_empty() {
                return invalid("team has no English name");
            }
            if team.names.all().iter().any(|n| n.len() > MAX_TEAM_NAME_LEN) {
                return invalid("team name too long");
            }
            if team.devices.len() > MAX_DEVICES_PER_TEAM {
                return invalid("too many devices in a team");
            }
            entries += team.devices.len();
            if entries > MAX_DEVICE_ENTRIES {
                return invalid("too many device entries");
            }
            let mut in_team = BTreeSet::new();
            for d in &team.devices {
                if !in_team.insert(d.id) {
                    return invalid("device listed twice in a team");
                }
                if d.label.len() > MAX_DEVICE_LABEL_LEN {
                    return invalid("device label too long");
                }
                match devices.get(&d.id) {
                    Some(seen) if *seen != d => {
                        return invalid("device id with two different entries");
                    }
                    Some(_) => {}
                    None => {
                        devices.insert(d.id, d);
                    }
                }
            }
        }
        let mut mailboxes = BTreeSet::new();
        let mut identities = BTreeSet::new();
        for d in devices.values() {
            if !mailboxes.insert(d.mailbox.id()) {
                return invalid("two devices share a mailbox");
            }
            if !identities.insert((d.identity.x25519.0, d.identity.ed25519.0)) {
                return invalid("two devices share an identity key");
            }
        }
        let mut partner_ids = BTreeSet::new();
        for p in &self.partners {
            if !partner_ids.insert(p.id) {
                return invalid("duplicate partner id");
            }
            if p.name.is_empty() || p.name.len() > MAX_PARTNER_NAME_LEN {
                return invalid("partner name");
            }
            if p.contact.len() > MAX_PARTNER_CONTACT_LEN {
                return invalid("partner contact too long");
            }
        }
        crate::intake::validate_catalog(
            &self.questions,
            self.teams.iter().map(|t| t.questions.as_slice()),
        )
        .map_err(|what| DirectoryError::Invalid { what })?;
        Ok(())
    }

    /// Encodes the directory (after [`Directory::validate`]).
    ///
    /// ```text
    /// directory = version:u8 (=3) || org_pk[32] || serial:u64 || issued_at:u64
    ///             || expires_at:u64 || intake:u8 (1 all devices, 2 team only)
    ///             || retention_secs:u64 || team_count:u16 || team*  || partner_count:u16 || partner*
    ///             || question_count:u16 || question*   (intake::Question::write)
    /// team      = id:u16 || slug:str16 || name_en:str16 || name_es:str16
    ///             || name_fr:str16 || name_ht:str16 || device_count:u16 || device*
    ///             || team_question_count:u16 || question_id:u16*
    /// device    = id:u32 || label:str16 || identity_x25519[32] || identity_ed25519[32]
    ///             || mailbox_auth_ed25519[32] || mailbox_seal_x25519[32]
    /// partner   = id:u16 || name:str16 || contact:str16
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let mut w = Writer::new();
        w.u8(DIRECTORY_VERSION)
            .bytes(self.org.as_bytes())
            .u64(self.serial)
            .u64(self.issued_at.0)
            .u64(self.expires_at.0)
            .u8(self.intake as u8)
            .u64(self.retention_secs);
        w.count_u16(self.teams.len(), MAX_TEAMS, "teams")?;
        for team in &self.teams {
            w.u16(team.id.0);
            w.vec_u16(team.slug.as_bytes(), MAX_SLUG_LEN, "team slug")?;
            for name in team.names.all() {
                w.vec_u16(name.as_bytes(), MAX_TEAM_NAME_LEN, "team name")?;
            }
            w.count_u16(team.devices.len(), MAX_DEVICES_PER_TEAM, "devices")?;
            for d in &team.devices {
                w.u32(d.id.0);
                w.vec_u16(d.label.as_bytes(), MAX_DEVICE_LABEL_LEN, "device label")?;
                d.identity.write(&mut w);
                d.mailbox.write(&mut w);
            }
            w.count_u16(
                team.questions.len(),
                MAX_QUESTIONS_PER_TEAM,
                "team questions",
            )?;
            for q in &team.questions {
                w.u16(q.0);
            }
        }
        w.count_u16(self.partners.len(), MAX_PARTNERS, "partners")?;
        for p in &self.partners {
            w.u16(p.id.0);
            w.vec_u16(p.name.as_bytes(), MAX_PARTNER_NAME_LEN, "partner name")?;
            w.vec_u16(
                p.contact.as_bytes(),
                MAX_PARTNER_CONTACT_LEN,
                "partner contact",
            )?;
        }
        w.count_u16(self.questions.len(), MAX_QUESTIONS, "questions")?;
        for q in &self.questions {
            q.write(&mut w)?;
        }
        if w.len() > MAX_DIRECTORY_LEN {
            return Err(Error::TooLongToEncode {
                what: "directory",
                max: MAX_DIRECTORY_LEN,
                got: w.len(),
            });
        }
        Ok(w.into_bytes())
    }

    /// Strictly decodes and validates a directory (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DIRECTORY_LEN {
            return Err(DecodeError::TooLong {
                what: "directory",
                max: MAX_DIRECTORY_LEN,
                got: bytes.len(),
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        r.version(DIRECTORY_VERSION, "directory")?;
        let org = OrgPublicKey::from_bytes(r.array("organisation key")?)?;
        let serial = r.u64("serial")?;
        let issued_at = UnixTime(r.u64("issued_at")?);
        let expires_at = UnixTime(r.u64("expires_at")?);
        let intake = match r.u8("intake policy")? {
            intake_tag::ALL_DEVICES => IntakePolicy::AllDevices,
            intake_tag::TEAM_ONLY => IntakePolicy::TeamOnly,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "intake policy",
                    tag,
                }
                .into());
            }
        };
        let retention_secs = r.u64("retention")?;
        let team_count = r.count_u16(MAX_TEAMS, "teams")?;
        let mut teams = Vec::with_capacity(team_count);
        let mut entries = 0usize;
        for _ in 0..team_count {
            let id = TeamId(r.u16("team id")?);
            let slug = r.str_u16(MAX_SLUG_LEN, "team slug")?.to_owned();
            let names = TeamNames {
                en: r.str_u16(MAX_TEAM_NAME_LEN, "team name")?.to_owned(),
                es: r.str_u16(MAX_TEAM_NAME_LEN, "team name")?.to_owned(),
                fr: r.str_u16(MAX_TEAM_NAME_LEN, "team name")?.to_owned(),
                ht: r.str_u16(MAX_TEAM_NAME_LEN, "team name")?.to_owned(),
            };
            let device_count = r.count_u16(MAX_DEVICES_PER_TEAM, "devices")?;
            entries += device_count;
            if entries > MAX_DEVICE_ENTRIES {
                return Err(DecodeError::TooLong {
                    what: "device entries",
                    max: MAX_DEVICE_ENTRIES,
                    got: entries,
                }
                .into());
            }
            let mut devices = Vec::with_capacity(device_count);
            for _ in 0..device_count {
                devices.push(DeviceEntry {
                    id: DeviceId(r.u32("device id")?),
                    label: r.str_u16(MAX_DEVICE_LABEL_LEN, "device label")?.to_owned(),
                    identity: IdentityPublic::read(&mut r)?,
                    mailbox: MailboxPublic::read(&mut r)?,
                });
            }
            let n = r.count_u16(MAX_QUESTIONS_PER_TEAM, "team questions")?;
            let mut questions = Vec::with_capacity(n);
            for _ in 0..n {
                questions.push(QuestionId(r.u16("question id")?));
            }
            teams.push(Team {
                id,
                slug,
                names,
                devices,
                questions,
            });
        }
        let partner_count = r.count_u16(MAX_PARTNERS, "partners")?;
        let mut partners = Vec::with_capacity(partner_count);
        for _ in 0..partner_count {
            partners.push(Partner {
                id: PartnerId(r.u16("partner id")?),
                name: r.str_u16(MAX_PARTNER_NAME_LEN, "partner name")?.to_owned(),
                contact: r
                    .str_u16(MAX_PARTNER_CONTACT_LEN, "partner contact")?
                    .to_owned(),
            });
        }
        let question_count = r.count_u16(MAX_QUESTIONS, "questions")?;
        let mut questions = Vec::with_capacity(question_count);
        for _ in 0..question_count {
            questions.push(Question::read(&mut r)?);
        }
        r.finish("directory")?;
        let dir = Directory {
            org,
            serial,
            issued_at,
            expires_at,
            intake,
            retention_secs,
            teams,
            partners,
            questions,
        };
        dir.validate()?;
        Ok(dir)
    }

    /// Signs the directory with the organisation key (which must be `self.org`).
    pub fn sign(&self, key: &OrgSigningKey) -> Result<SignedDirectory, Error> {
        if key.public() != self.org {
            return Err(DirectoryError::SignerMismatch.into());
        }
        let bytes = self.encode()?;
        let signature = key.sign(&signed_message(&bytes));
        Ok(SignedDirectory {
            bytes,
            dir: self.clone(),
            signature,
        })
    }
}

fn questions_of<'a>(catalog: &'a [Question], teams: &[Team], team: TeamId) -> Vec<&'a Question> {
    teams
        .iter()
        .find(|t| t.id == team)
        .map(|t| {
            t.questions
                .iter()
                .filter_map(|id| catalog.iter().find(|q| q.id == *id))
                .collect()
        })
        .unwrap_or_default()
}

fn signed_message(dir_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + dir_bytes.len());
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(dir_bytes);
    m
}

/// Which directory was accepted last: its serial and digest. Clients keep it
/// (in their state) and pass it to the next [`SignedDirectory::verify`]; the
/// relay keeps it per organisation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryVersion {
    pub serial: u64,
    /// SHA-256("northstar/v1/directory-digest" || directory bytes).
    pub digest: [u8; 32],
}

impl DirectoryVersion {
    /// Encoded length.
    pub const LEN: usize = 1 + 8 + 32;

    /// `version:u8 (=1) || serial:u64 || digest[32]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::LEN);
        w.u8(DIRECTORY_VERSION_RECORD_VERSION)
            .u64(self.serial)
            .bytes(&self.digest);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(DIRECTORY_VERSION_RECORD_VERSION, "directory version")?;
        let serial = r.u64("directory serial")?;
        let digest = r.array("directory digest")?;
        r.finish("directory version")?;
        Ok(DirectoryVersion { serial, digest })
    }

    /// Refuses what cannot follow `previous`: an older serial, or the same
    /// serial with different contents. The same directory again is fine.
    pub fn check_successor_of(
        &self,
        previous: Option<&DirectoryVersion>,
    ) -> Result<(), DirectoryError> {
        let Some(prev) = previous else {
            return Ok(());
        };
        if self.serial < prev.serial {
            return Err(DirectoryError::Rollback {
                got: self.serial,
                previous: prev.serial,
            });
        }
        if self.serial == prev.serial && self.digest != prev.digest {
            return Err(DirectoryError::ConflictingSerial {
                serial: self.serial,
            });
        }
        Ok(())
    }
}

/// A directory with its signature, as stored on the relay. Not yet trusted:
/// only [`SignedDirectory::verify`] turns it into a [`VerifiedDirectory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDirectory {
    /// The exact signed bytes (re-encoding is never relied on).
    bytes: Vec<u8>,
    dir: Directory,
    signature: Signature,
}

impl SignedDirectory {
    /// `version:u8 (=1) || dir_len:u32 || directory || signature[64]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + 4 + self.bytes.len() + 64);
        // bytes.len() <= MAX_DIRECTORY_LEN (checked when made or decoded).
        w.u8(SIGNED_DIRECTORY_VERSION)
            .u32(self.bytes.len() as u32)
            .bytes(&self.bytes)
            .bytes(&self.signature.0);
        w.into_bytes()
    }

    /// Strictly decodes (the directory inside is decoded and validated too;
    /// the signature is *not* checked here).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_SIGNED_DIRECTORY_LEN {
            return Err(DecodeError::TooLong {
                what: "signed directory",
                max: MAX_SIGNED_DIRECTORY_LEN,
                got: bytes.len(),
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        r.version(SIGNED_DIRECTORY_VERSION, "signed directory")?;
        let dir_bytes = r.vec_u32(MAX_DIRECTORY_LEN, "directory")?;
        let signature = Signature(r.array("directory signature")?);
        r.finish("signed directory")?;
        let dir = Directory::decode(dir_bytes)?;
        Ok(SignedDirectory {
            bytes: dir_bytes.to_vec(),
            dir,
            signature,
        })
    }

    /// The organisation key the directory names (unverified: for the relay
    /// to find the stored version to compare with).
    pub fn claimed_org(&self) -> OrgPublicKey {
        self.dir.org
    }

    /// Serial and digest of this directory (unverified).
    pub fn version(&self) -> DirectoryVersion {
        let mut h = Sha256::new();
        h.update(DIGEST_DOMAIN);
        h.update(&self.bytes);
        DirectoryVersion {
            serial: self.dir.serial,
            digest: h.finalize().into(),
        }
    }

    fn signature_ok(&self) -> bool {
        self.dir
            .org
            .as_ed25519()
            .verify(&signed_message(&self.bytes), &self.signature)
    }

    /// Verifies against the pinned organisation key and the last accepted
    /// version, at `now`: refuses another organisation, a bad signature, a
    /// rollback, a different directory under an accepted serial, and (last)
    /// a directory whose signed expiry has passed.
    pub fn verify(
        &self,
        pinned: &OrgPublicKey,
        previous: Option<&DirectoryVersion>,
        now: UnixTime,
    ) -> Result<VerifiedDirectory, DirectoryError> {
        let verified = self.verify_stored(pinned)?;
        verified.version.check_successor_of(previous)?;
        verified.check_not_expired(now)?;
        Ok(verified)
    }

    /// Verifies a directory this client accepted before and reads back from
    /// its own saved state: organisation and signature only. Its expiry is
    /// checked where it is used (a counselor device's state must open after
    /// its directory expired, to be refreshed by the next sync).
    pub(crate) fn verify_stored(
        &self,
        pinned: &OrgPublicKey,
    ) -> Result<VerifiedDirectory, DirectoryError> {
        if self.dir.org != *pinned {
            return Err(DirectoryError::WrongOrganisation);
        }
        if !self.signature_ok() {
            return Err(DirectoryError::BadSignature);
        }
        Ok(VerifiedDirectory {
            signed: self.clone(),
            version: self.version(),
            _checked: SignatureChecked(()),
        })
    }

    /// For the relay, which pins no key: verifies the signature under the key
    /// the directory names, and that it may follow `previous` (the version
    /// the relay stores for that key). Returns the version to store.
    pub fn verify_self_signed(
        &self,
        previous: Option<&DirectoryVersion>,
    ) -> Result<DirectoryVersion, DirectoryError> {
        if !self.signature_ok() {
            return Err(DirectoryError::BadSignature);
        }
        let version = self.version();
        version.check_successor_of(previous)?;
        Ok(version)
    }
}

/// Proof that a signature was checked; only this module can make one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SignatureChecked(());

/// One device a seeker's opening message goes to, and the team it is filed under
/// on the seeker's side (the chosen team if the device belongs to it,
/// otherwise the first team listing the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntakeRecipient<'a> {
    pub device: &'a DeviceEntry,
    pub team: TeamId,
}

/// A directory whose signature, organisation and freshness were checked.
/// Only [`SignedDirectory::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDirectory {
    signed: SignedDirectory,
    version: DirectoryVersion,
    _checked: SignatureChecked,
}

impl VerifiedDirectory {
    pub fn directory(&self) -> &Directory {
        &self.signed.dir
    }

    /// The signed form, to store and verify again later.
    pub fn signed(&self) -> &SignedDirectory {
        &self.signed
    }

    /// Keep this and pass it to the next verification.
    pub fn version(&self) -> DirectoryVersion {
        self.version
    }

    pub fn org(&self) -> OrgPublicKey {
        self.signed.dir.org
    }

    pub fn serial(&self) -> u64 {
        self.signed.dir.serial
    }

    /// From when clients refuse this directory.
    pub fn expires_at(&self) -> UnixTime {
        self.signed.dir.expires_at
    }

    /// [`DirectoryError::Expired`] from `expires_at` on.
    pub fn check_not_expired(&self, now: UnixTime) -> Result<(), DirectoryError> {
        if now >= self.expires_at() {
            return Err(DirectoryError::Expired {
                expires_at: self.expires_at().0,
            });
        }
        Ok(())
    }

    pub fn intake_policy(&self) -> IntakePolicy {
        self.signed.dir.intake
    }

    /// How long a conversation is kept after the seeker's last message.
    pub fn retention_secs(&self) -> u64 {
        self.signed.dir.retention_secs
    }

    pub fn teams(&self) -> &[Team] {
        &self.signed.dir.teams
    }

    pub fn team(&self, id: TeamId) -> Option<&Team> {
        self.teams().iter().find(|t| t.id == id)
    }

    pub fn partners(&self) -> &[Partner] {
        &self.signed.dir.partners
    }

    pub fn partner(&self, id: PartnerId) -> Option<&Partner> {
        self.partners().iter().find(|p| p.id == id)
    }

    /// The organisation's intake-question catalog.
    pub fn questions(&self) -> &[Question] {
        &self.signed.dir.questions
    }

    /// The questions a team asks its seekers, in order (empty for a team
    /// the directory does not list).
    pub fn questions_of(&self, team: TeamId) -> Vec<&Question> {
        questions_of(self.questions(), self.teams(), team)
    }

    /// Every distinct device, in directory order.
    pub fn devices(&self) -> Vec<&DeviceEntry> {
        let mut seen = BTreeSet::new();
        self.teams()
            .iter()
            .flat_map(|t| t.devices.iter())
            .filter(|d| seen.insert(d.id))
            .collect()
    }

    pub fn device(&self, id: DeviceId) -> Option<&DeviceEntry> {
        self.teams()
            .iter()
            .flat_map(|t| t.devices.iter())
            .find(|d| d.id == id)
    }

    /// The device owning a mailbox (to tell whether a sender is a colleague).
    pub fn device_by_mailbox(&self, mailbox: &MailboxId) -> Option<&DeviceEntry> {
        self.teams()
            .iter()
            .flat_map(|t| t.devices.iter())
            .find(|d| d.mailbox.id() == *mailbox)
    }

    /// The device with this identity key.
    pub fn device_by_identity(&self, identity: &IdentityPublic) -> Option<&DeviceEntry> {
        self.teams()
            .iter()
            .flat_map(|t| t.devices.iter())
            .find(|d| d.identity == *identity)
    }

    /// The teams a device belongs to.
    pub fn teams_of(&self, device: DeviceId) -> Vec<TeamId> {
        self.teams()
            .iter()
            .filter(|t| t.devices.iter().any(|d| d.id == device))
            .map(|t| t.id)
            .collect()
    }

    /// The devices a seeker who chose `team` writes to, each once: under
    /// [`IntakePolicy::AllDevices`] every device of the organisation, under
    /// [`IntakePolicy::TeamOnly`] the chosen team's devices.
    pub fn intake_set(&self, team: TeamId) -> Result<Vec<IntakeRecipient<'_>>, DirectoryError> {
        let chosen = self
            .team(team)
            .ok_or(DirectoryError::UnknownTeam { team: team.0 })?;
        let mut out: Vec<IntakeRecipient<'_>> = chosen
            .devices
            .iter()
            .map(|device| IntakeRecipient { device, team })
            .collect();
        if self.intake_policy() == IntakePolicy::AllDevices {
            let mut seen: BTreeSet<DeviceId> = out.iter().map(|r| r.device.id).collect();
            for t in self.teams() {
                for device in &t.devices {
                    if seen.insert(device.id) {
                        out.push(IntakeRecipient { device, team: t.id });
                    }
                }
            }
        }
        // One canonical order that depends on nothing secret (not on the
        // chosen team): prekeys are fetched and envelopes deposited in it.
        out.sort_by_key(|r| r.device.mailbox.id());
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::Ed25519Public;
    use crate::keys::X25519Public;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// When the tests verify: the hour the sample directories are issued.
    const NOW: UnixTime = UnixTime(1_800_000_000);

    fn ed_pub(seed: u8) -> Ed25519Public {
        Ed25519Public(
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
        )
    }

    pub(crate) fn device(id: u32) -> DeviceEntry {
        let b = id as u8;
        DeviceEntry {
            id: DeviceId(id),
            label: format!("Desk {id}"),
            identity: IdentityPublic {
                x25519: X25519Public([b; 32]),
                ed25519: ed_pub(b),
            },
            mailbox: MailboxPublic {
                auth: ed_pub(b.wrapping_add(100)),
                seal: X25519Public([b.wrapping_add(100); 32]),
            },
        }
    }

    /// A small directory with the default teams, shared devices and a partner.
    pub(crate) fn sample(key: &OrgSigningKey, serial: u64) -> Directory {
        let mut d = Directory::new(key.public(), serial, UnixTime(1_800_000_123));
        d.teams = Directory::default_teams();
        d.teams[0].devices = vec![device(1), device(2)];
        d.teams[1].devices = vec![device(2), device(3)];
        d.teams[2].devices = vec![device(4)];
        d.partners = vec![Partner {
            id: PartnerId(1),
            name: "Shelter Partners".into(),
            contact: "+1 555 0100, shelter.example".into(),
        }];
        d
    }

    fn keys() -> (OrgSigningKey, OrgSigningKey) {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        (
            OrgSigningKey::generate(&mut rng),
            OrgSigningKey::generate(&mut rng),
        )
    }

    #[test]
    fn sign_encode_decode_verify() {
        let (org, _) = keys();
        let d = sample(&org, 1);
        assert_eq!(d.issued_at.0 % 3600, 0);
        let signed = d.sign(&org).unwrap();
        let enc = signed.encode();
        let dec = SignedDirectory::decode(&enc).unwrap();
        assert_eq!(dec, signed);
        let v = dec.verify(&org.public(), None, NOW).unwrap();
        assert_eq!(v.directory(), &d);
        assert_eq!(v.serial(), 1);
        assert_eq!(v.teams().len(), 6);
        assert_eq!(v.partner(PartnerId(1)).unwrap().name, "Shelter Partners");
        assert_eq!(v.devices().len(), 4);
        assert_eq!(
            v.device_by_mailbox(&device(3).mailbox.id()).unwrap().id,
            DeviceId(3)
        );
        assert!(v.device_by_mailbox(&device(9).mailbox.id()).is_none());
        assert_eq!(v.teams_of(DeviceId(2)), vec![TeamId(1), TeamId(2)]);
        assert_eq!(
            v.device_by_identity(&device(4).identity).unwrap().id,
            DeviceId(4)
        );
        // The same directory again is accepted.
        dec.verify(&org.public(), Some(&v.version()), NOW).unwrap();
        assert_eq!(
            DirectoryVersion::decode(&v.version().encode()).unwrap(),
            v.version()
        );
    }

    /// A real key for vector devices (the `device` helper's keys are fakes).
    fn real_device(id: u32, rng: &mut ChaCha20Rng) -> DeviceEntry {
        let identity = crate::keys::IdentityKeyPair::generate(rng).public();
        let mailbox = crate::keys::MailboxKeyPair::generate(rng).public();
        DeviceEntry {
            id: DeviceId(id),
            label: format!("Desk {id}"),
            identity,
            mailbox,
        }
    }

    #[test]
    fn vectors() {
        let org = OrgSigningKey::from_seed(&[0x0a; 32]);
        let mut rng = ChaCha20Rng::from_seed([0xd1; 32]);
        let mut d = Directory::new(org.public(), 7, UnixTime(1_800_000_000));
        d.teams = Directory::default_teams();
        d.teams[0].devices = vec![real_device(1, &mut rng), real_device(2, &mut rng)];
        d.teams[3].devices = vec![d.teams[0].devices[1].clone(), real_device(3, &mut rng)];
        d.partners = vec![Partner {
            id: PartnerId(1),
            name: "Example Shelter Network".into(),
            contact: "https://shelter.example".into(),
        }];
        let signed = d.sign(&org).unwrap();
        let v = signed.verify(&org.public(), None, NOW).unwrap();
        let mut older = d.clone();
        older.serial = 6;
        let older = older.sign(&org).unwrap();
        let mut conflicting = d.clone();
        conflicting.partners.clear();
        let conflicting = conflicting.sign(&org).unwrap();
        let mut bad_sig = signed.encode();
        let n = bad_sig.len();
        bad_sig[n - 1] ^= 1;
        let other = OrgSigningKey::from_seed(&[0x0b; 32]);
        let intake: Vec<serde_json::Value> = v
            .intake_set(TeamId(4))
            .unwrap()
            .iter()
            .map(|r| serde_json::json!([r.device.id.0, r.team.0]))
            .collect();
        let json = serde_json::json!({
            "description": "Signed team directory (version 3: with the default intake-question catalog, ids 1-6, which every default team asks). Org signing seed 0x0a * 32; device keys from ChaCha20Rng::from_seed(0xd1 * 32) (identity x25519, identity ed25519, mailbox auth, mailbox seal per device, in order). Verify `signed` and each `reject` case at `verify_at` (Unix seconds) unless the case names its own `now`, against `previous` (the accepted version of `signed`).",
            "org_signing_seed": "0a".repeat(32),
            "org_public": hex::encode(org.public().as_bytes()),
            "fingerprint": org.public().fingerprint(),
            "directory": hex::encode(d.encode().unwrap()),
            "signed": hex::encode(signed.encode()),
            "serial": v.serial(),
            "issued_at": d.issued_at.0,
            "expires_at": d.expires_at.0,
            "verify_at": NOW.0,
            "digest": hex::encode(v.version().digest),
            "version_record": hex::encode(v.version().encode()),
            "intake_set_team_4": intake,
            "retention_secs": d.retention_secs,
            "reject": [
                { "case": "rollback (serial 6 after 7)", "signed": hex::encode(older.encode()), "error": "Rollback { got: 6, previous: 7 }" },
                { "case": "same serial, different contents", "signed": hex::encode(conflicting.encode()), "error": "ConflictingSerial { serial: 7 }" },
                { "case": "last signature byte flipped", "signed": hex::encode(&bad_sig), "error": "BadSignature" },
                { "case": "verified against org seed 0x0b * 32", "signed": hex::encode(signed.encode()), "pinned": hex::encode(other.public().as_bytes()), "error": "WrongOrganisation" },
                { "case": "verified at its expiry", "signed": hex::encode(signed.encode()), "now": d.expires_at.0, "error": format!("Expired {{ expires_at: {} }}", d.expires_at.0) },
            ],
        });
        let prev = v.version();
        assert_eq!(
            older.verify(&org.public(), Some(&prev), NOW),
            Err(DirectoryError::Rollback {
                got: 6,
                previous: 7
            })
        );
        assert_eq!(
            conflicting.verify(&org.public(), Some(&prev), NOW),
            Err(DirectoryError::ConflictingSerial { serial: 7 })
        );
        assert_eq!(
            SignedDirectory::decode(&bad_sig)
                .unwrap()
                .verify(&org.public(), Some(&prev), NOW),
            Err(DirectoryError::BadSignature)
        );
        assert_eq!(
            signed.verify(&other.public(), None, NOW),
            Err(DirectoryError::WrongOrganisation)
        );
        assert_eq!(
            d.expires_at.0,
            1_800_000_000 + DEFAULT_DIRECTORY_LIFETIME_SECS
        );
        assert_eq!(
            signed.verify(&org.public(), Some(&prev), d.expires_at),
            Err(DirectoryError::Expired {
                expires_at: d.expires_at.0
            })
        );
        crate::state::vectors::check("directory.json", &json);
    }

    #[test]
    fn retention_is_bounded_whole_hours_and_signed() {
        let org = OrgSigningKey::from_seed(&[0x0a; 32]);
        let mut d = Directory::new(org.public(), 1, UnixTime(1_800_000_000));
        assert_eq!(d.retention_secs, DEFAULT_RETENTION_SECS);
        for bad in [
            0,
            MIN_RETENTION_SECS - RETENTION_PRECISION_SECS,
            MAX_RETENTION_SECS + RETENTION_PRECISION_SECS,
            DEFAULT_RETENTION_SECS + 1,
        ] {
            d.retention_secs = bad;
            assert!(d.encode().is_err(), "{bad}");
        }
        d.retention_secs = 7 * 24 * 3600;
        let signed = d.sign(&org).unwrap();
        let v = signed.verify(&org.public(), None, NOW).unwrap();
        assert_eq!(v.retention_secs(), 7 * 24 * 3600);
        // The retention is covered by the signature: a relay that changes it
        // in transit breaks the signature.
        let mut bytes = signed.encode();
        let at = 1 + 4 + 1 + 32 + 8 + 8 + 8 + 1 + 7;
        assert_eq!(bytes[at], (7u64 * 24 * 3600).to_be_bytes()[7]);
        bytes[at - 1] ^= 1;
        assert!(
            SignedDirectory::decode(&bytes)
                .and_then(|s| Ok(s.verify(&org.public(), None, NOW)?))
                .is_err()
        );
        // An out-of-range retention in well-formed bytes is refused on decode.
        let mut enc = d.encode().unwrap();
        let off = 1 + 32 + 8 + 8 + 8 + 1;
        enc[off..off + 8].copy_from_slice(&1u64.to_be_bytes());
        assert!(Directory::decode(&enc).is_err());
    }

    #[test]
    fn admin_helpers() {
        let (org, _) = keys();
        let d = sample(&org, 1);
        let mut next = d.successor(UnixTime(1_900_000_123)).unwrap();
        assert_eq!(next.serial, 2);
        assert_eq!(next.issued_at.0 % 3600, 0);
        // The same lifetime, from the new issue time.
        assert_eq!(next.lifetime_secs(), DEFAULT_DIRECTORY_LIFETIME_SECS);
        assert_eq!(
            next.expires_at.0,
            next.issued_at.0 + DEFAULT_DIRECTORY_LIFETIME_SECS
        );
        let mut week = d.clone();
        week.set_lifetime(7 * 24 * 3600);
        let after = week.successor(UnixTime(1_900_000_123)).unwrap();
        assert_eq!(after.expires_at.0, after.issued_at.0 + 7 * 24 * 3600);
        assert!(next.remove_device(DeviceId(2)));
        assert!(!next.remove_device(DeviceId(2)));
        assert!(next.add_device(TeamId(6), device(9)).is_ok());
        assert_eq!(
            next.add_device(TeamId(60), device(10)),
            Err(DirectoryError::UnknownTeam { team: 60 })
        );
        let v1 = d
            .sign(&org)
            .unwrap()
            .verify(&org.public(), None, NOW)
            .unwrap();
        let v2 = next
            .sign(&org)
            .unwrap()
            .verify(&org.public(), Some(&v1.version()), UnixTime(1_900_000_123))
            .unwrap();
        assert!(v2.device(DeviceId(2)).is_none());
        assert_eq!(v2.teams_of(DeviceId(9)), vec![TeamId(6)]);
        let mut last = d.clone();
        last.serial = u64::MAX;
        assert!(last.successor(UnixTime(0)).is_none());
    }

    #[test]
    fn intake_sets() {
        let (org, _) = keys();
        let mut d = sample(&org, 1);
        let v = d
            .sign(&org)
            .unwrap()
            .verify(&org.public(), None, NOW)
            .unwrap();
        let set = v.intake_set(TeamId(2)).unwrap();
        let mut ids: Vec<(u32, u16)> = set.iter().map(|r| (r.device.id.0, r.team.0)).collect();
        // In one canonical order (by mailbox id), the same whatever the topic.
        let order: Vec<MailboxId> = set.iter().map(|r| r.device.mailbox.id()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        let other: Vec<MailboxId> = v
            .intake_set(TeamId(1))
            .unwrap()
            .iter()
            .map(|r| r.device.mailbox.id())
            .collect();
        assert_eq!(order, other, "the order must not reveal the topic");
        ids.sort();
        assert_eq!(ids, vec![(1, 1), (2, 2), (3, 2), (4, 3)]);
        // A team with no devices still fans out to everyone by default.
        assert_eq!(v.intake_set(TeamId(6)).unwrap().len(), 4);
        assert_eq!(
            v.intake_set(TeamId(99)),
            Err(DirectoryError::UnknownTeam { team: 99 })
        );
        d.intake = IntakePolicy::TeamOnly;
        let v = d
            .sign(&org)
            .unwrap()
            .verify(&org.public(), None, NOW)
            .unwrap();
        let mut ids: Vec<u32> = v
            .intake_set(TeamId(2))
            .unwrap()
            .iter()
            .map(|r| r.device.id.0)
            .collect();
        ids.sort();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn refuses_wrong_org_bad_signature_and_tampering() {
        let (org, other) = keys();
        let signed = sample(&org, 1).sign(&org).unwrap();
        assert_eq!(
            signed.verify(&other.public(), None, NOW),
            Err(DirectoryError::WrongOrganisation)
        );
        // Another key cannot sign this org's directory.
        assert_eq!(
            sample(&org, 1).sign(&other).unwrap_err(),
            Error::Directory(DirectoryError::SignerMismatch)
        );
        // A directory naming `other` but signed by `org` (spliced signature).
        let forged = sample(&other, 1).sign(&other).unwrap();
        let mut spliced = forged.encode();
        let n = spliced.len();
        spliced[n - 64..].copy_from_slice(&signed.signature.0);
        let spliced = SignedDirectory::decode(&spliced).unwrap();
        assert_eq!(
            spliced.verify(&other.public(), None, NOW),
            Err(DirectoryError::BadSignature)
        );
        assert_eq!(
            spliced.verify_self_signed(None),
            Err(DirectoryError::BadSignature)
        );
        // Flip each byte: either the decode fails or verification does.
        let enc = signed.encode();
        for i in 0..enc.len() {
            let mut t = enc.clone();
            t[i] ^= 0x04;
            if let Ok(d) = SignedDirectory::decode(&t) {
                assert!(d.verify(&org.public(), None, NOW).is_err(), "byte {i}");
                assert!(d.verify_self_signed(None).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn refuses_rollback_and_conflicting_serial() {
        let (org, _) = keys();
        let v5 = sample(&org, 5).sign(&org).unwrap();
        let seen = v5.verify(&org.public(), None, NOW).unwrap().version();
        let v4 = sample(&org, 4).sign(&org).unwrap();
        assert_eq!(
            v4.verify(&org.public(), Some(&seen), NOW),
            Err(DirectoryError::Rollback {
                got: 4,
                previous: 5
            })
        );
        assert_eq!(
            v4.verify_self_signed(Some(&seen)),
            Err(DirectoryError::Rollback {
                got: 4,
                previous: 5
            })
        );
        let mut other5 = sample(&org, 5);
        other5.partners.clear();
        let other5 = other5.sign(&org).unwrap();
        assert_eq!(
            other5.verify(&org.public(), Some(&seen), NOW),
            Err(DirectoryError::ConflictingSerial { serial: 5 })
        );
        assert_eq!(
            other5.verify_self_signed(Some(&seen)),
            Err(DirectoryError::ConflictingSerial { serial: 5 })
        );
        let v6 = sample(&org, 6).sign(&org).unwrap();
        assert_eq!(v6.verify_self_signed(Some(&seen)).unwrap().serial, 6);
        v6.verify(&org.public(), Some(&seen), NOW).unwrap();
    }

    #[test]
    fn an_expired_directory_is_refused() {
        let (org, _) = keys();
        let d = sample(&org, 5);
        let signed = d.sign(&org).unwrap();
        let last_second = UnixTime(d.expires_at.0 - 1);
        let v = signed.verify(&org.public(), None, last_second).unwrap();
        assert_eq!(v.expires_at(), d.expires_at);
        assert_eq!(v.check_not_expired(last_second), Ok(()));
        let expired = DirectoryError::Expired {
            expires_at: d.expires_at.0,
        };
        assert_eq!(v.check_not_expired(d.expires_at), Err(expired.clone()));
        // Refused from its expiry on, even as the very directory accepted
        // before: a relay cannot keep a client on it for longer.
        for now in [d.expires_at, UnixTime(d.expires_at.0 + 3600 * 24 * 365)] {
            assert_eq!(
                signed.verify(&org.public(), None, now),
                Err(expired.clone())
            );
            assert_eq!(
                signed.verify(&org.public(), Some(&v.version()), now),
                Err(expired.clone())
            );
        }
        // The expiry is signed (it follows issued_at in the directory
        // bytes): a later expiry under the old signature does not verify.
        let enc = signed.encode();
        let at = 5 + 1 + 32 + 8 + 8;
        assert_eq!(enc[at..at + 8], d.expires_at.0.to_be_bytes());
        let mut later = d.clone();
        later.expires_at = UnixTime(d.expires_at.0 + 24 * 3600);
        let mut spliced = later.sign(&org).unwrap().encode();
        let n = spliced.len();
        spliced[n - 64..].copy_from_slice(&signed.encode()[n - 64..]);
        assert_eq!(
            SignedDirectory::decode(&spliced)
                .unwrap()
                .verify(&org.public(), None, NOW),
            Err(DirectoryError::BadSignature)
        );
        // A stale, expired directory offered after a newer one: the
        // rollback is what is reported.
        let v6 = sample(&org, 6).sign(&org).unwrap();
        let seen = v6.verify(&org.public(), None, NOW).unwrap().version();
        assert_eq!(
            signed.verify(&org.public(), Some(&seen), d.expires_at),
            Err(DirectoryError::Rollback {
                got: 5,
                previous: 6
            })
        );
        // What a client saved is read back whatever the time (its expiry is
        // checked where it is used).
        assert!(signed.verify_stored(&org.public()).is_ok());
        // The relay, which pins nothing, stores it regardless.
        assert!(signed.verify_self_signed(None).is_ok());
    }

    #[test]
    fn validation_rules() {
        let (org, _) = keys();
        let base = sample(&org, 1);
        let check = |f: &dyn Fn(&mut Directory)| {
            let mut d = base.clone();
            f(&mut d);
            d.validate()
        };
        assert!(check(&|_| {}).is_ok());
        assert!(check(&|d| d.issued_at = UnixTime(1)).is_err());
        assert!(check(&|d| d.expires_at = UnixTime(d.expires_at.0 + 1)).is_err());
        assert!(check(&|d| d.expires_at = d.issued_at).is_err());
        assert!(check(&|d| d.expires_at = UnixTime(d.issued_at.0 - 3600)).is_err());
        assert!(check(&|d| d.set_lifetime(3600)).is_ok());
        assert!(check(&|d| d.set_lifetime(MAX_DIRECTORY_LIFETIME_SECS)).is_ok());
        assert!(check(&|d| d.set_lifetime(MAX_DIRECTORY_LIFETIME_SECS + 3600)).is_err());
        assert!(check(&|d| d.teams[1].id = TeamId(1)).is_err());
        assert!(check(&|d| d.teams[1].slug = d.teams[0].slug.clone()).is_err());
        assert!(check(&|d| d.teams[0].slug = "Minors".into()).is_err());
        assert!(check(&|d| d.teams[0].slug = String::new()).is_err());
        assert!(check(&|d| d.teams[0].names.en = String::new()).is_err());
        assert!(check(&|d| d.teams[0].names.ht = "x".repeat(MAX_TEAM_NAME_LEN + 1)).is_err());
        assert!(check(&|d| d.teams[0].devices.push(device(1))).is_err());
        assert!(
            check(&|d| {
                let mut dup = device(3);
                dup.label = "changed".into();
                d.teams[2].devices.push(dup)
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                let mut dup = device(5);
                dup.mailbox = device(1).mailbox;
                d.teams[2].devices.push(dup)
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                let mut dup = device(5);
                dup.identity = device(1).identity;
                d.teams[2].devices.push(dup)
            })
            .is_err()
        );
        assert!(check(&|d| d.partners.push(d.partners[0].clone())).is_err());
        assert!(check(&|d| d.partners[0].name = String::new()).is_err());
        assert!(
            check(
                &|d| d.teams[0].devices = (10..10 + MAX_DEVICES_PER_TEAM as u32 + 1)
                    .map(device)
                    .collect()
            )
            .is_err()
        );
        // The signer refuses to sign an invalid directory.
        let mut bad = base.clone();
        bad.teams[1].id = TeamId(1);
        assert!(bad.sign(&org).is_err());
        // Names fall back to English.
        let mut t = base.teams[0].clone();
        t.names.ht = String::new();
        assert_eq!(
            t.names.get(crate::ids::Language::Ht),
            "Unaccompanied minors"
        );
        assert_eq!(
            t.names.get(crate::ids::Language::Es),
            "Menores no acompañados"
        );
    }

    #[test]
    fn directory_at_every_maximum_fits() {
        let (org, _) = keys();
        let mut d = Directory::new(org.public(), u64::MAX, UnixTime(0));
        let mut next = 0u32;
        for i in 0..MAX_TEAMS {
            let n = if i < 3 { MAX_DEVICES_PER_TEAM } else { 0 };
            let devices = (0..n)
                .map(|_| {
                    next += 1;
                    let mut e = device(next);
                    // Distinct keys for all 192 entries.
                    e.identity.x25519.0[1] = (next >> 8) as u8;
                    e.identity.x25519.0[0] = next as u8;
                    e.mailbox.seal.0[0] = next as u8;
                    e.mailbox.seal.0[1] = (next >> 8) as u8;
                    e.label = "l".repeat(MAX_DEVICE_LABEL_LEN);
                    e
                })
                .collect();
            d.teams.push(Team {
                id: TeamId(i as u16),
                slug: format!("{i:0>32}"),
                names: TeamNames {
                    en: "e".repeat(MAX_TEAM_NAME_LEN),
                    es: "s".repeat(MAX_TEAM_NAME_LEN),
                    fr: "f".repeat(MAX_TEAM_NAME_LEN),
                    ht: "h".repeat(MAX_TEAM_NAME_LEN),
                },
                devices,
                questions: (0..MAX_QUESTIONS_PER_TEAM as u16).map(QuestionId).collect(),
            });
        }
        let long = |c: &str, n: usize| {
            crate::intake::Localized::new(&c.repeat(n), &c.repeat(n), &c.repeat(n), &c.repeat(n))
        };
        d.questions = (0..MAX_QUESTIONS as u16)
            .map(|i| Question {
                id: QuestionId(i),
                kind: crate::intake::QuestionKind::Multiple,
                meaning: crate::intake::Meaning::Other,
                prompt: long("p", crate::intake::MAX_PROMPT_LEN),
                prompt_other: long("o", crate::intake::MAX_PROMPT_LEN),
                choices: (0..crate::intake::MAX_CHOICES as u8)
                    .map(|c| crate::intake::Choice {
                        id: c,
                        label: long("c", crate::intake::MAX_CHOICE_LABEL_LEN),
                    })
                    .collect(),
            })
            .collect();
        d.partners = (0..MAX_PARTNERS as u16)
            .map(|i| Partner {
                id: PartnerId(i),
                name: "n".repeat(MAX_PARTNER_NAME_LEN),
                contact: "c".repeat(MAX_PARTNER_CONTACT_LEN),
            })
            .collect();
        let signed = d.sign(&org).unwrap();
        let enc = signed.encode();
        assert!(enc.len() <= MAX_SIGNED_DIRECTORY_LEN);
        assert_eq!(enc.len(), 5 + WORST_CASE_LEN + 64);
        SignedDirectory::decode(&enc)
            .unwrap()
            .verify(&org.public(), None, UnixTime(0))
            .unwrap();
        // One more team does not.
        d.teams.push(Team {
            id: TeamId(999),
            slug: "x".into(),
            names: TeamNames {
                en: "x".into(),
                ..Default::default()
            },
            devices: vec![],
            questions: vec![],
        });
        assert!(d.sign(&org).is_err());
    }

    #[test]
    fn org_keys_encode_fingerprint_and_debug() {
        let (org, _) = keys();
        let enc = org.encode();
        assert_eq!(enc.len(), 33);
        let back = OrgSigningKey::decode(&enc).unwrap();
        assert_eq!(back.public(), org.public());
        assert!(OrgSigningKey::decode(&enc[..32]).is_err());
        let mut long = enc.to_vec();
        long.push(0);
        assert!(OrgSigningKey::decode(&long).is_err());
        assert_eq!(format!("{org:?}"), "OrgSigningKey(..)");
        let fp = org.public().fingerprint();
        assert_eq!(fp.len(), 8 * 5 + 7);
        assert!(
            fp.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_ne!(fp, keys().1.public().fingerprint());
        assert!(
            OrgPublicKey::from_bytes([0xff; 32]).is_err()
                || OrgPublicKey::from_bytes([2; 32]).is_err()
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedDirectory::decode(&bytes);
            let _ = Directory::decode(&bytes);
            let _ = DirectoryVersion::decode(&bytes);
            let _ = OrgSigningKey::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_near_valid(pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut rng = ChaCha20Rng::from_seed([5; 32]);
            let org = OrgSigningKey::generate(&mut rng);
            let mut enc = sample(&org, 1).sign(&org).unwrap().encode();
            let i = pos % enc.len();
            enc[i] = byte;
            enc.truncate(enc.len() - cut % 8);
            if let Ok(d) = SignedDirectory::decode(&enc) {
                let _ = d.verify(&org.public(), None, NOW);
            }
        }

        #[test]
        fn round_trips(serial in any::<u64>(), hours in 0u64..1_000_000,
                       lifetime_hours in 1u64..=MAX_DIRECTORY_LIFETIME_SECS / 3600, team_only in any::<bool>(),
                       label in "\\PC{0,12}", contact in "\\PC{0,40}") {
            let mut rng = ChaCha20Rng::from_seed([5; 32]);
            let org = OrgSigningKey::generate(&mut rng);
            let mut d = sample(&org, serial);
            d.issued_at = UnixTime(hours * 3600);
            d.set_lifetime(lifetime_hours * 3600);
            d.intake = if team_only { IntakePolicy::TeamOnly } else { IntakePolicy::AllDevices };
            d.teams[2].devices[0].label = label;
            d.partners[0].contact = contact;
            let signed = d.sign(&org).unwrap();
            let back = SignedDirectory::decode(&signed.encode()).unwrap();
            prop_assert_eq!(&back, &signed);
            prop_assert_eq!(Directory::decode(&d.encode().unwrap()).unwrap(), d);
        }
    }
}
