//! The counselor inbox's search over [`INBOX_CONVERSATIONS`] realistic
//! conversations (issue 20 item 5): a few messages both ways and notes
//! each, in the inbox's four languages with their accents, statuses and
//! teams mixed, generated from a fixed seed.
//!
//! Operations (see [`crate::OPERATIONS`]):
//! - `core/inbox_search_keystroke_10k`: one keystroke of a counselor
//!   typing [`KEYSTROKES`] — the query so far, over the warm index, with
//!   snippets of the first [`MAX_SEARCH_RESULTS`] hits; each run is the
//!   next keystroke, round the sequence;
//! - `core/inbox_search_index_build_10k`: the index built from nothing
//!   (the first keystroke after unlocking);
//! - `core/inbox_search_after_new_message_10k`: a new message arrives in
//!   one conversation, then the next keystroke (the index refreshes that
//!   conversation only).
//!
//! [`MAX_SEARCH_RESULTS`]: northstar_core::client::search::MAX_SEARCH_RESULTS

use std::collections::BTreeMap;
use std::hint::black_box;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use northstar_core::UnixTime;
use northstar_core::client::counselor::{Conversation, Note, Status};
use northstar_core::client::search::{Inbox, InboxFilter, Query, SearchIndex};
use northstar_core::client::{Author, Entry, EntryKind};
use northstar_core::directory::{
    DeviceId, OrgPublicKey, SignedDirectory, TeamId, VerifiedDirectory,
};
use northstar_core::ids::{Language, MailboxId, MessageId};
use northstar_core::keys::{IdentityKeyPair, MailboxKeyPair};
use northstar_core::message::MessageText;

use crate::{DIRECTORY_DEVICES, Operation, ok, sample_directory};

/// Conversations in the benchmarked inbox.
pub const INBOX_CONVERSATIONS: usize = 10_000;

/// What a counselor types, one keystroke at a time: the query after each
/// keystroke (a place, then a word without its accent, then a note's word).
pub const KEYSTROKES: &[&str] = &[
    "t",
    "ti",
    "tij",
    "tiju",
    "tijua",
    "tijuan",
    "tijuana",
    "tijuana ",
    "tijuana n",
    "tijuana ni",
    "tijuana nin",
    "tijuana nino",
    "tijuana ninos",
    "r",
    "re",
    "ref",
    "refu",
    "refug",
    "refugi",
    "refugie",
    "p",
    "pl",
    "pla",
    "plat",
    "platt",
    "platts",
    "plattsb",
    "plattsbu",
    "plattsbur",
    "plattsburg",
    "plattsburgh",
];

const WORDS_ES: &[&str] = &[
    "tengo",
    "años",
    "estoy",
    "solo",
    "sola",
    "con",
    "mis",
    "niños",
    "mi",
    "madre",
    "esposa",
    "necesito",
    "ayuda",
    "asilo",
    "frontera",
    "documentos",
    "pasaporte",
    "miedo",
    "dónde",
    "puedo",
    "pedir",
    "refugio",
    "Canadá",
    "Estados",
    "Unidos",
    "policía",
    "abogado",
    "cita",
    "mañana",
    "dinero",
    "trabajo",
    "familia",
    "hermano",
    "escuela",
    "enfermo",
    "médico",
];
const WORDS_FR: &[&str] = &[
    "je",
    "suis",
    "réfugié",
    "réfugiée",
    "avec",
    "mes",
    "enfants",
    "demande",
    "d'asile",
    "frontière",
    "documents",
    "passeport",
    "peur",
    "où",
    "puis",
    "aller",
    "Québec",
    "Montréal",
    "avocat",
    "rendez-vous",
    "demain",
    "argent",
    "travail",
    "famille",
    "frère",
    "école",
    "malade",
    "médecin",
    "hébergement",
    "logement",
    "aide",
    "sécurité",
];
const WORDS_HT: &[&str] = &[
    "mwen", "gen", "timoun", "yo", "bezwen", "èd", "azil", "fwontyè", "papye", "paspò", "pè",
    "kote", "kapab", "ale", "Kanada", "Etazini", "avoka", "randevou", "demen", "lajan", "travay",
    "fanmi", "frè", "lekòl", "malad", "doktè", "lojman", "sekirite", "m'ap", "chèche",
];
const WORDS_EN: &[&str] = &[
    "I",
    "am",
    "years",
    "old",
    "alone",
    "with",
    "my",
    "children",
    "need",
    "help",
    "asylum",
    "border",
    "documents",
    "passport",
    "afraid",
    "where",
    "can",
    "apply",
    "Canada",
    "United",
    "States",
    "lawyer",
    "appointment",
    "tomorrow",
    "money",
    "work",
    "family",
    "brother",
    "school",
    "sick",
    "doctor",
    "shelter",
    "safe",
];
const PLACES: &[&str] = &[
    "Tijuana",
    "Plattsburgh",
    "Lacolle",
    "Buffalo",
    "Toronto",
    "Montréal",
    "Ciudad Juárez",
    "Port-au-Prince",
    "Nogales",
    "Burlington",
];
const NOTES: &[&str] = &[
    "Called the shelter; a bed may be free on Friday.",
    "Asked about the earlier claim in the U.S.; waiting for the date.",
    "Minor: check who travels with them before anything else.",
    "Shared the list of legal clinics near the border.",
    "Follow up tomorrow morning about the documents.",
];

fn words(lang: Language) -> &'static [&'static str] {
    match lang {
        Language::Es => WORDS_ES,
        Language::Fr => WORDS_FR,
        Language::Ht => WORDS_HT,
        _ => WORDS_EN,
    }
}

fn pick<'a>(rng: &mut ChaCha20Rng, list: &[&'a str]) -> &'a str {
    list[rng.next_u32() as usize % list.len()]
}

/// A message of `min..min+spread` words in `lang`, sometimes naming a place.
fn sentence(rng: &mut ChaCha20Rng, lang: Language, min: u32, spread: u32) -> String {
    let n = min + rng.next_u32() % spread;
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        if rng.next_u32().is_multiple_of(40) {
            s.push_str(pick(rng, PLACES));
        } else {
            s.push_str(pick(rng, words(lang)));
        }
    }
    s.push('.');
    s
}

/// The benchmarked inbox: [`INBOX_CONVERSATIONS`] conversations, each with
/// 2 to 8 messages (the seeker's and the counselors', 8 to 40 words) and 0
/// to 3 notes, in the four languages, over the six default teams, a
/// quarter claimed, a fifth resolved; and the directory their labels come
/// from.
pub fn sample_inbox() -> (BTreeMap<MailboxId, Conversation>, VerifiedDirectory) {
    let (bytes, org): (Vec<u8>, OrgPublicKey) = ok("directory", sample_directory());
    let dir = ok(
        "directory verify",
        ok("directory decode", SignedDirectory::decode(&bytes)).verify(
            &org,
            None,
            UnixTime(1_800_000_000),
        ),
    );
    let mut rng = ChaCha20Rng::from_seed([0x5e; 32]);
    let seeker = IdentityKeyPair::generate(&mut rng).public();
    let seeker_mailbox = MailboxKeyPair::generate(&mut rng).public();
    let mut inbox = BTreeMap::new();
    let t0 = 1_800_000_000u64;
    for i in 0..INBOX_CONVERSATIONS {
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let lang = Language::ALL[i % 4];
        let start = t0 + 60 * u64::from(rng.next_u32() % 500_000);
        let messages = 2 + rng.next_u32() % 7;
        let history = (0..messages)
            .map(|k| {
                let mut mid = [0u8; 16];
                rng.fill_bytes(&mut mid);
                let author = if k % 2 == 0 {
                    Author::Seeker
                } else {
                    Author::Counselor(DeviceId(1 + rng.next_u32() % DIRECTORY_DEVICES))
                };
                Entry {
                    id: MessageId(mid),
                    at: UnixTime(start + 3600 * u64::from(k)),
                    author,
                    kind: EntryKind::Text(MessageText::new(sentence(&mut rng, lang, 8, 33))),
                }
            })
            .collect();
        let notes = (0..rng.next_u32() % 4)
            .map(|k| Note {
                by: DeviceId(1 + rng.next_u32() % DIRECTORY_DEVICES),
                at: UnixTime(start + 1800 + 3600 * u64::from(k)),
                text: MessageText::new(pick(&mut rng, NOTES)),
            })
            .collect();
        let status = match rng.next_u32() % 20 {
            0..=4 => Status::Claimed(DeviceId(1 + rng.next_u32() % DIRECTORY_DEVICES)),
            5..=8 => Status::Resolved,
            _ => Status::Open,
        };
        inbox.insert(
            MailboxId::from_bytes(id),
            Conversation {
                seeker,
                seeker_mailbox,
                team: TeamId(1 + (i % 6) as u16),
                language: lang,
                status,
                history,
                notes,
                unread: rng.next_u32().is_multiple_of(3),
                // Half the seekers answered where they asked for asylum
                // before (default question 3): searched through the directory.
                answers: if i % 2 == 0 {
                    northstar_core::intake::IntakeAnswers::new(vec![(
                        northstar_core::intake::QuestionId(3),
                        northstar_core::intake::Answer::Choices(vec![1 + (i % 3) as u8]),
                    )])
                    // Always valid (one choice of a default question).
                    .unwrap_or_else(|_| northstar_core::intake::IntakeAnswers::none())
                } else {
                    northstar_core::intake::IntakeAnswers::none()
                },
                kept_until: None,
                read_receipt_for: None,
            },
        );
    }
    (inbox, dir)
}

/// Bytes of text the sample inbox holds (messages and notes), to compare
/// with the index's folded copy.
pub fn text_bytes(inbox: &BTreeMap<MailboxId, Conversation>) -> usize {
    inbox
        .values()
        .map(|c| {
            c.history
                .iter()
                .map(|e| match &e.kind {
                    EntryKind::Text(t) => t.len(),
                    EntryKind::Referral { text, .. } => text.len(),
                    EntryKind::Attachment(a) => a.info.name.as_str().len(),
                })
                .sum::<usize>()
                + c.notes.iter().map(|n| n.text.len()).sum::<usize>()
        })
        .sum()
}

fn inbox_of<'a>(
    map: &'a BTreeMap<MailboxId, Conversation>,
    dir: &'a VerifiedDirectory,
) -> Inbox<'a> {
    Inbox {
        conversations: map,
        directory: Some(dir),
        me: Some(DeviceId(1)),
    }
}

/// One keystroke over the warm index (see the module documentation).
pub(crate) fn keystroke() -> Operation {
    let (map, dir) = sample_inbox();
    let mut index = SearchIndex::new();
    index.refresh(inbox_of(&map, &dir));
    let mut k = 0;
    Box::new(move || {
        let q = ok("query", Query::parse(KEYSTROKES[k % KEYSTROKES.len()]));
        k += 1;
        black_box(index.search(inbox_of(&map, &dir), &q, InboxFilter::All));
    })
}

/// The index built from nothing.
pub(crate) fn index_build() -> Operation {
    let (map, dir) = sample_inbox();
    Box::new(move || {
        let mut index = SearchIndex::new();
        index.refresh(inbox_of(&map, &dir));
        black_box(index.len());
    })
}

/// A message arrives in one conversation, then a keystroke.
pub(crate) fn after_new_message() -> Operation {
    let (mut map, dir) = sample_inbox();
    let mut index = SearchIndex::new();
    index.refresh(inbox_of(&map, &dir));
    let ids: Vec<MailboxId> = map.keys().copied().collect();
    let mut rng = ChaCha20Rng::from_seed([0x5f; 32]);
    let mut k = 0usize;
    Box::new(move || {
        let id = ids[k % ids.len()];
        if let Some(c) = map.get_mut(&id) {
            let mut mid = [0u8; 16];
            rng.fill_bytes(&mut mid);
            let lang = c.language;
            c.history.push(Entry {
                id: MessageId(mid),
                at: UnixTime(1_900_000_000 + k as u64 * 60),
                author: Author::Seeker,
                kind: EntryKind::Text(MessageText::new(sentence(&mut rng, lang, 8, 33))),
            });
            // Keep the inbox the same size over the runs.
            if c.history.len() > 12 {
                c.history.remove(0);
            }
        }
        let q = ok("query", Query::parse(KEYSTROKES[k % KEYSTROKES.len()]));
        k += 1;
        black_box(index.search(inbox_of(&map, &dir), &q, InboxFilter::All));
    })
}
