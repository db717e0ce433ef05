//! Search in the counselor inbox, over what this device has decrypted.
//!
//! Nothing is indexed on the relay, nothing is sent anywhere, and nothing
//! here is saved: the search reads the conversations the device holds (the
//! messages both ways, private notes, status, claim, team, referrals), and
//! keeps, in memory only, a folded copy of each conversation's searchable
//! text ([`SearchIndex`]). The copy is zeroized when dropped, refreshed
//! conversation by conversation as they change, and dropped when the
//! driver closes (the inbox locks).
//!
//! Matching:
//! - text is *folded* before comparing ([`fold`]): lower case, accents and
//!   other diacritics removed, typographic apostrophes made plain, so
//!   "ninos" finds "niños" and "refugie" finds "Réfugié";
//! - a query is split on white space into terms; a conversation matches
//!   when **every** term occurs in it (anywhere: terms may match different
//!   parts), each as a substring, so a word matches while it is being typed;
//! - results are ordered by most recent activity (last message or note)
//!   first, at most [`MAX_SEARCH_RESULTS`] of them, each with a short
//!   snippet of the part that matched and which part it was ([`Field`]).
//!
//! What is searchable is decided in one place, [`for_each_part`]: a new kind
//! of decrypted content (the seeker's intake answers) is one more line there.

use std::collections::BTreeMap;

use memchr::memmem;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::counselor::{Conversation, Counselor, MAX_NOTES, Status};
use super::{Author, EntryKind};
use crate::directory::{DeviceId, DirectoryVersion, VerifiedDirectory};
use crate::error::ApiMisuse;
use crate::ids::{Language, MailboxId, MessageId};
use crate::intake::ShownAnswer;

/// Most results one search returns (the newest first). A screen shows far
/// fewer; past this many the counselor types another word. Bounds the work
/// spent on snippets and what the page draws per keystroke.
pub const MAX_SEARCH_RESULTS: usize = 50;

/// Longest query in UTF-8 bytes: a few words or a detail a seeker gave
/// (a name, a town, a date), never a paragraph.
pub const MAX_QUERY_LEN: usize = 200;

/// Most terms in one query (each is one more pass over the matches).
pub const MAX_QUERY_TERMS: usize = 8;

/// Characters of context a snippet keeps before the match.
pub const SNIPPET_BEFORE_CHARS: usize = 30;

/// Characters a snippet keeps in all (before, match and after).
pub const SNIPPET_CHARS: usize = 100;

/// Separates the parts of a conversation in its folded text. Terms never
/// hold white space, so no match spans two parts.
const PART_SEPARATOR: char = '\n';

/// Status words searched as the status of a conversation, in the four
/// languages of the counselor inbox (the words of `c.status.*` in
/// web-client/static/i18n.js), English first.
const STATUS_WORDS: [(&str, [&str; 4]); 4] = [
    ("open", ["open", "abierta", "ouverte", "louvri"]),
    ("unread", ["unread", "no leída", "non lue", "poko li"]),
    (
        "claimed",
        [
            "claimed",
            "asignada",
            "prise en charge",
            "gen moun ki pran l",
        ],
    ),
    ("resolved", ["resolved", "resuelta", "résolue", "rezoud"]),
];

/// Which part of a conversation a match was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A message the seeker wrote.
    SeekerMessage,
    /// A message a counselor sent to the seeker.
    CounselorMessage,
    /// A referral to a partner organisation (its name or message).
    Referral,
    /// A private note between counselors.
    Note,
    /// The status, and who claimed it.
    Status,
    /// The team (topic) the conversation is filed under.
    Team,
    /// The name of a file sent either way.
    Attachment,
    /// An answer to the intake questions (a choice's label or a short text).
    Intake,
}

impl Field {
    /// A stable name for shells (JSON, CSS classes, i18n keys).
    pub fn name(self) -> &'static str {
        match self {
            Field::SeekerMessage => "seeker-message",
            Field::CounselorMessage => "counselor-message",
            Field::Referral => "referral",
            Field::Note => "note",
            Field::Status => "status",
            Field::Team => "team",
            Field::Attachment => "attachment",
            Field::Intake => "intake",
        }
    }
}

/// Which conversations to show, besides the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InboxFilter {
    /// Every conversation.
    #[default]
    All,
    /// Nobody has taken it yet (read or not).
    Open,
    /// Something arrived that this device has not shown yet.
    Unread,
    /// Someone has taken it.
    Claimed,
    /// This device has taken it.
    Mine,
    /// Answered and closed.
    Resolved,
}

impl InboxFilter {
    /// Every filter with its name, in the order the shells list them.
    pub const ALL: [(InboxFilter, &'static str); 6] = [
        (InboxFilter::All, "all"),
        (InboxFilter::Open, "open"),
        (InboxFilter::Unread, "unread"),
        (InboxFilter::Claimed, "claimed"),
        (InboxFilter::Mine, "mine"),
        (InboxFilter::Resolved, "resolved"),
    ];

    /// The filter called `name` (`all`, `open`, `unread`, `claimed`,
    /// `mine`, `resolved`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// Whether `conv` is shown under this filter on device `me`.
    pub fn keeps(self, conv: &Conversation, me: Option<DeviceId>) -> bool {
        self.keeps_status(conv.status, conv.unread, me)
    }

    fn keeps_status(self, status: Status, unread: bool, me: Option<DeviceId>) -> bool {
        match self {
            InboxFilter::All => true,
            InboxFilter::Open => status == Status::Open,
            InboxFilter::Unread => unread,
            InboxFilter::Claimed => matches!(status, Status::Claimed(_)),
            InboxFilter::Mine => me.is_some_and(|m| status == Status::Claimed(m)),
            InboxFilter::Resolved => status == Status::Resolved,
        }
    }
}

/// A parsed query: its folded terms (zeroized on drop: a term can be a
/// seeker's detail), and a substring finder for each.
pub struct Query {
    terms: Vec<Zeroizing<String>>,
    finders: Vec<memmem::Finder<'static>>,
}

impl core::fmt::Debug for Query {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Query(terms={})", self.terms.len())
    }
}

impl Query {
    /// Folds `text` and splits it into terms on white space. Refuses a
    /// query over [`MAX_QUERY_LEN`] bytes or [`MAX_QUERY_TERMS`] terms.
    /// An empty query (nothing but white space) matches every conversation.
    pub fn parse(text: &str) -> Result<Self, ApiMisuse> {
        if text.len() > MAX_QUERY_LEN {
            return Err(ApiMisuse::QueryTooLong {
                max: MAX_QUERY_LEN,
                got: text.len(),
            });
        }
        let mut folded = Zeroizing::new(String::with_capacity(text.len()));
        fold_into(text, &mut folded);
        let mut terms: Vec<Zeroizing<String>> = Vec::new();
        for t in folded.split_whitespace() {
            // A term inside another adds nothing ("ref refugie").
            if terms.iter().any(|x| x.contains(t)) {
                continue;
            }
            terms.retain(|x| !t.contains(x.as_str()));
            terms.push(Zeroizing::new(t.to_owned()));
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(ApiMisuse::QueryTooManyTerms {
                max: MAX_QUERY_TERMS,
                got: terms.len(),
            });
        }
        // The longest term first: the most selective, so the others are
        // looked for in fewer conversations.
        terms.sort_by_key(|t| core::cmp::Reverse(t.len()));
        let finders = terms
            .iter()
            .map(|t| memmem::Finder::new(t.as_bytes()).into_owned())
            .collect();
        Ok(Query { terms, finders })
    }

    /// Whether the query has no term (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    fn matches(&self, folded: &str) -> bool {
        self.finders
            .iter()
            .all(|f| f.find(folded.as_bytes()).is_some())
    }

    /// Whether every conversation matching `self` matches `earlier` too:
    /// each term of `earlier` lies within a term of `self` (the counselor
    /// typed on), so only `earlier`'s matches need looking at.
    fn narrows(&self, earlier: &[Zeroizing<String>]) -> bool {
        earlier
            .iter()
            .all(|e| self.terms.iter().any(|t| t.contains(e.as_str())))
    }
}

/// A short extract of the part that matched: `before` + `matched` + `after`
/// is the extract, on one line, with `…` where it was cut.
/// Zeroized on drop, like the messages it is cut from.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Snippet {
    #[zeroize(skip)]
    pub field: Field,
    pub before: String,
    pub matched: String,
    pub after: String,
}

impl core::fmt::Debug for Snippet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Snippet({:?}, ..)", self.field)
    }
}

/// One conversation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub conversation: MailboxId,
    /// Its most recent activity (message or note), what results are ordered by.
    pub updated_at: u64,
    /// Where the query matched (`None` for an empty query).
    pub snippet: Option<Snippet>,
}

/// What a search found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SearchResults {
    /// The matching conversations, most recent activity first, at most
    /// [`MAX_SEARCH_RESULTS`].
    pub hits: Vec<SearchHit>,
    /// How many conversations matched in all (more than `hits.len()` when
    /// the list was cut).
    pub total: usize,
}

/// Lower case, without diacritics: what both the text and the query are
/// compared as. Handles precomposed letters (`é`) and combining marks
/// (`e` + U+0301) alike; `ß`, `æ`, `œ` become `ss`, `ae`, `oe`; `’` and
/// `‘` become `'`. Scripts without case or accents pass unchanged.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_into(text, &mut out);
    out
}

fn fold_into(text: &str, out: &mut String) {
    for c in text.chars() {
        fold_char(c, out);
    }
}

/// Folds `text`, and for every byte of the result the offset of the
/// character of `text` it came from (to cut snippets from the original).
fn fold_with_offsets(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let before = out.len();
        fold_char(c, &mut out);
        map.resize(map.len() + (out.len() - before), i);
    }
    (out, map)
}

/// Whether `c` is a combining diacritical mark (dropped by folding).
fn is_combining(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// The base letters of the lower-case Latin letters with diacritics
/// (Latin-1 Supplement and Latin Extended-A), and a few ligatures.
fn base_of(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        '\u{2018}' | '\u{2019}' | '\u{02BC}' => "'",
        _ => return None,
    })
}

fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for l in c.to_lowercase() {
        if is_combining(l) {
            continue;
        }
        match base_of(l) {
            Some(s) => out.push_str(s),
            None => out.push(l),
        }
    }
}

/// What a search reads: a device's conversations, the directory their
/// labels come from, and which device is this one (for [`InboxFilter::Mine`]).
#[derive(Clone, Copy, Debug)]
pub struct Inbox<'a> {
    pub conversations: &'a BTreeMap<MailboxId, Conversation>,
    pub directory: Option<&'a VerifiedDirectory>,
    pub me: Option<DeviceId>,
}

impl<'a> Inbox<'a> {
    /// The inbox of a counselor device.
    pub fn of(counselor: &'a Counselor) -> Self {
        Inbox {
            conversations: counselor.conversations(),
            directory: counselor.directory(),
            me: counselor.device().ok().map(|d| d.id),
        }
    }
}

/// What the labels of a conversation's parts are read from.
struct Context<'a> {
    directory: Option<&'a VerifiedDirectory>,
}

impl Context<'_> {
    fn device_label(&self, d: DeviceId) -> Option<&str> {
        self.directory
            .and_then(|x| x.device(d))
            .map(|x| x.label.as_str())
    }
}

/// Calls `f` with every searchable part of `conv`, in the order a snippet
/// is chosen from: messages newest first, then notes newest first, then
/// status, then team. **The one place that says what is searchable.**
///
/// Intake answers are read against the directory (English labels, as
/// the counselor inbox shows them); yes/no answers and "prefer not to say"
/// are not searched (the inbox's filters sort by them).
fn for_each_part(conv: &Conversation, ctx: &Context<'_>, f: &mut dyn FnMut(Field, &str)) {
    for e in conv.history.iter().rev() {
        match (&e.kind, e.author) {
            (EntryKind::Text(t), Author::Seeker) => f(Field::SeekerMessage, t.as_str()),
            (EntryKind::Text(t), Author::Counselor(_)) => f(Field::CounselorMessage, t.as_str()),
            (EntryKind::Referral { partner, text }, _) => {
                f(Field::Referral, text.as_str());
                if let Some(p) = ctx.directory.and_then(|d| d.partner(*partner)) {
                    f(Field::Referral, &p.name);
                }
            }
            (EntryKind::Attachment(a), _) => f(Field::Attachment, a.info.name.as_str()),
        }
    }
    for n in conv.notes.iter().rev() {
        f(Field::Note, n.text.as_str());
    }
    if !conv.answers.is_empty()
        && let Some(d) = ctx.directory
    {
        let order = d
            .team(conv.team)
            .map(|t| t.questions.clone())
            .unwrap_or_default();
        let summary = crate::intake::summarize(&conv.answers, d.questions(), &order, Language::En);
        for line in &summary.lines {
            match &line.answer {
                ShownAnswer::Choices(labels) => {
                    for l in labels {
                        f(Field::Intake, l);
                    }
                }
                ShownAnswer::Text(t) => f(Field::Intake, t),
                _ => {}
            }
        }
    }
    let status = match conv.status {
        Status::Open => "open",
        Status::Claimed(_) => "claimed",
        Status::Resolved => "resolved",
    };
    // "claimed by ana" as one part, so "claimed ana" shows it; then the
    // status words in the other languages.
    let claimant = match conv.status {
        Status::Claimed(d) => ctx.device_label(d),
        _ => None,
    };
    for (key, words) in STATUS_WORDS {
        if key == status || (key == "unread" && conv.unread) {
            for (i, w) in words.into_iter().enumerate() {
                match claimant {
                    Some(label) if i == 0 && key == "claimed" => {
                        f(Field::Status, &format!("{w} by {label}"));
                    }
                    _ => f(Field::Status, w),
                }
            }
        }
    }
    // The team as counselors see it: its handle and its English name (the
    // inbox's label), not the seeker-facing translations, whose words
    // ("timoun", "menores") would match every conversation of the team.
    if let Some(team) = ctx.directory.and_then(|d| d.team(conv.team)) {
        f(Field::Team, &team.slug);
        f(Field::Team, team.names.get(Language::En));
    }
}

/// When `conv` last changed for the counselor: its newest message or note.
pub fn updated_at(conv: &Conversation) -> u64 {
    let message = conv.history.iter().map(|e| e.at.0).max().unwrap_or(0);
    let note = conv.notes.iter().map(|n| n.at.0).max().unwrap_or(0);
    message.max(note)
}

/// What says whether a conversation's folded text is still current: every
/// change to a conversation adds a message or a note, or changes its
/// status, read flag or team. History and notes are append-only, their
/// oldest dropped past their maximum: below [`MAX_NOTES`] a new note
/// changes the count; at it, the last note's hash tells.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    history_len: usize,
    last_entry: Option<MessageId>,
    notes_len: usize,
    last_note: Option<(u32, u64, u64)>,
    status: Status,
    unread: bool,
    team: u16,
}

impl Stamp {
    fn of(conv: &Conversation) -> Self {
        let full = conv.notes.len() >= MAX_NOTES;
        Stamp {
            history_len: conv.history.len(),
            last_entry: conv.history.last().map(|e| e.id),
            notes_len: conv.notes.len(),
            last_note: conv.notes.last().map(|n| {
                let hash = if full {
                    fnv1a(n.text.as_str().as_bytes())
                } else {
                    0
                };
                (n.by.0, n.at.0, hash)
            }),
            status: conv.status,
            unread: conv.unread,
            team: conv.team.0,
        }
    }
}

/// FNV-1a, 64 bits: tells a replaced last note from the one before when
/// the notes are at their maximum (not a security function).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One conversation's folded searchable text.
struct Indexed {
    id: MailboxId,
    stamp: Stamp,
    updated_at: u64,
    text: Zeroizing<String>,
}

impl Indexed {
    fn build(id: MailboxId, conv: &Conversation, stamp: Stamp, ctx: &Context<'_>) -> Self {
        let mut text = Zeroizing::new(String::new());
        for_each_part(conv, ctx, &mut |_, part| {
            fold_into(part, &mut text);
            text.push(PART_SEPARATOR);
        });
        Indexed {
            id,
            stamp,
            updated_at: updated_at(conv),
            text,
        }
    }
}

/// The folded searchable text of every conversation of a device, kept in
/// memory while the inbox is unlocked, never saved; zeroized when dropped.
///
/// [`SearchIndex::search`] brings it up to date first (only the
/// conversations that changed since are folded again; all of them when the
/// directory, whose labels are searched, changed).
#[derive(Default)]
pub struct SearchIndex {
    /// In the order of the conversations' map (by mailbox id), so that
    /// both are walked side by side.
    entries: Vec<Indexed>,
    directory: Option<DirectoryVersion>,
    /// The previous query's terms and every conversation it matched (any
    /// filter; positions in `entries`), while nothing changed since: the
    /// next keystroke usually narrows it, and then only these are looked at.
    last: Option<(Vec<Zeroizing<String>>, Vec<usize>)>,
}

impl core::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("conversations", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Conversations indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of folded text held (the index's memory, besides about 120
    /// bytes per conversation).
    pub fn text_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.text.len()).sum()
    }

    /// Forgets everything (the inbox locks).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.directory = None;
        self.last = None;
    }

    /// Brings the index up to date with the conversations of `inbox`.
    pub fn refresh(&mut self, inbox: Inbox<'_>) {
        let version = inbox.directory.map(|d| d.version());
        if version != self.directory {
            self.clear();
            self.directory = version;
        }
        let conversations = inbox.conversations;
        // Nothing changed (the usual case, keystroke after keystroke).
        if self.entries.len() == conversations.len()
            && self
                .entries
                .iter()
                .zip(conversations)
                .all(|(e, (id, c))| e.id == *id && e.stamp == Stamp::of(c))
        {
            return;
        }
        self.last = None;
        let ctx = Context {
            directory: inbox.directory,
        };
        let mut old = core::mem::take(&mut self.entries).into_iter().peekable();
        let mut entries = Vec::with_capacity(conversations.len());
        for (id, conv) in conversations {
            // Conversations deleted since (their text is zeroized as it goes).
            while old.next_if(|e| e.id < *id).is_some() {}
            let stamp = Stamp::of(conv);
            entries.push(match old.next_if(|e| e.id == *id && e.stamp == stamp) {
                Some(kept) => kept,
                None => Indexed::build(*id, conv, stamp, &ctx),
            });
        }
        self.entries = entries;
    }

    /// The conversations of `inbox` that match `query` and `filter`, most
    /// recent activity first, at most [`MAX_SEARCH_RESULTS`], each with a
    /// snippet of where it matched.
    pub fn search(
        &mut self,
        inbox: Inbox<'_>,
        query: &Query,
        filter: InboxFilter,
    ) -> SearchResults {
        self.refresh(inbox);
        let me = inbox.me;
        let entries = &self.entries;
        // Every conversation the query matches, whatever the filter.
        let matched: Vec<usize> = match &self.last {
            Some((terms, at)) if query.narrows(terms) => at
                .iter()
                .copied()
                .filter(|&i| query.matches(&entries[i].text))
                .collect(),
            _ => (0..entries.len())
                .filter(|&i| query.matches(&entries[i].text))
                .collect(),
        };
        let mut found: Vec<(u64, &MailboxId)> = matched
            .iter()
            .map(|&i| &entries[i])
            .filter(|e| filter.keeps_status(e.stamp.status, e.stamp.unread, me))
            .map(|e| (e.updated_at, &e.id))
            .collect();
        let total = found.len();
        // Newest first; ties in id order, so results are stable.
        let cut = MAX_SEARCH_RESULTS.min(found.len());
        if cut > 0 && cut < found.len() {
            found.select_nth_unstable_by(cut - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            found.truncate(cut);
        }
        found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let ctx = Context {
            directory: inbox.directory,
        };
        let hits = found
            .into_iter()
            .filter_map(|(updated_at, id)| {
                let conv = inbox.conversations.get(id)?;
                Some(SearchHit {
                    conversation: *id,
                    updated_at,
                    snippet: snippet(conv, &ctx, query),
                })
            })
            .collect();
        self.last = Some((query.terms.clone(), matched));
        SearchResults { hits, total }
    }
}

/// The snippet of the part of `conv` that holds the most terms of `query`
/// (the first such part in [`for_each_part`]'s order), cut around its
/// first match. `None` for an empty query.
fn snippet(conv: &Conversation, ctx: &Context<'_>, query: &Query) -> Option<Snippet> {
    if query.is_empty() {
        return None;
    }
    let mut best: Option<(usize, Snippet)> = None;
    for_each_part(conv, ctx, &mut |field, part| {
        let (folded, map) = fold_with_offsets(part);
        let mut count = 0;
        let mut first: Option<(usize, usize)> = None;
        for t in &query.terms {
            if let Some(at) = folded.find(t.as_str()) {
                count += 1;
                if first.is_none_or(|(a, _)| at < a) {
                    first = Some((at, at + t.len()));
                }
            }
        }
        let Some((start, end)) = first else { return };
        if best.as_ref().is_some_and(|(c, _)| *c >= count) {
            return;
        }
        // Back to the original text: the characters the match came from.
        let o_start = map[start];
        let o_end = map
            .get(end)
            .copied()
            .filter(|&e| e > map[end - 1])
            .unwrap_or_else(|| next_char_boundary(part, map[end - 1]));
        best = Some((count, cut(field, part, o_start, o_end)));
    });
    best.map(|(_, s)| s)
}

fn next_char_boundary(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(s.len(), |c| i + c.len_utf8())
}

/// A one-line snippet of `text` around `text[start..end]`.
fn cut(field: Field, text: &str, start: usize, end: usize) -> Snippet {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect()
    };
    let matched = one_line(&text[start..end]);
    let head = &text[..start];
    let n_before = head.chars().count();
    let mut before: String = head
        .chars()
        .skip(n_before.saturating_sub(SNIPPET_BEFORE_CHARS))
        .collect();
    if n_before > SNIPPET_BEFORE_CHARS {
        before.insert(0, '…');
    }
    let room = SNIPPET_CHARS.saturating_sub(before.chars().count() + matched.chars().count());
    let tail = &text[end..];
    let mut after: String = tail.chars().take(room).collect();
    if tail.chars().count() > room {
        after.push('…');
    }
    Snippet {
        field,
        before: one_line(&before).trim_start().to_owned(),
        matched,
        after: one_line(&after).trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests;
