//! Search: folding, accents, multi-word queries, ordering, limits, the
//! index kept up to date, and only what this device decrypted.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::UnixTime;
use crate::client::counselor::Note;
use crate::client::{Author, Entry, EntryKind};
use crate::directory::{DeviceId, TeamId};
use crate::ids::{Language, MailboxId, MessageId};
use crate::keys::{IdentityKeyPair, MailboxKeyPair};
use crate::message::MessageText;

const T0: u64 = 1_800_000_000;

/// A conversation with the given seeker messages (one minute apart from
/// `at`), and no notes.
fn conv(at: u64, messages: &[&str]) -> Conversation {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let history = messages
        .iter()
        .enumerate()
        .map(|(i, m)| Entry {
            id: MessageId([i as u8 + 1; 16]),
            at: UnixTime(at + 60 * i as u64),
            author: Author::Seeker,
            kind: EntryKind::Text(MessageText::new(*m)),
        })
        .collect();
    Conversation {
        seeker: IdentityKeyPair::generate(&mut rng).public(),
        seeker_mailbox: MailboxKeyPair::generate(&mut rng).public(),
        team: TeamId(1),
        language: Language::Es,
        status: Status::Open,
        history,
        notes: Vec::new(),
        unread: false,
        kept_until: None,
        read_receipt_for: None,
        answers: crate::intake::IntakeAnswers::none(),
    }
}

fn id(n: u16) -> MailboxId {
    let mut b = [0u8; 32];
    b[..2].copy_from_slice(&n.to_be_bytes());
    MailboxId::from_bytes(b)
}

fn inbox(map: &BTreeMap<MailboxId, Conversation>) -> Inbox<'_> {
    Inbox {
        conversations: map,
        directory: None,
        me: Some(DeviceId(1)),
    }
}

fn find(map: &BTreeMap<MailboxId, Conversation>, q: &str) -> SearchResults {
    SearchIndex::new().search(inbox(map), &Query::parse(q).unwrap(), InboxFilter::All)
}

fn ids(r: &SearchResults) -> Vec<MailboxId> {
    r.hits.iter().map(|h| h.conversation).collect()
}

#[test]
fn folding_removes_case_and_accents_in_every_inbox_language() {
    assert_eq!(fold("Niños"), "ninos");
    assert_eq!(fold("RÉFUGIÉ à Montréal"), "refugie a montreal");
    assert_eq!(fold("Ayiti, m'ap chèche èd"), "ayiti, m'ap cheche ed");
    assert_eq!(fold("Straße Œuvre Æsop"), "strasse oeuvre aesop");
    assert_eq!(fold("l’asile"), "l'asile");
    // Combining marks (decomposed input) fold like precomposed letters.
    assert_eq!(
        fold("nin\u{0303}os re\u{0301}fugie\u{0301}"),
        "ninos refugie"
    );
    // Scripts without accents or case pass through.
    assert_eq!(fold("لاجئ 难民"), "لاجئ 难民");
}

#[test]
fn offsets_point_back_into_the_original_text() {
    let (f, map) = fold_with_offsets("Añ ß");
    assert_eq!(f, "an ss");
    assert_eq!(map, vec![0, 1, 3, 4, 4]);
}

#[test]
fn an_unaccented_query_finds_accented_text_and_the_other_way_round() {
    let mut m = BTreeMap::new();
    m.insert(
        id(1),
        conv(T0, &["Tengo dos niños y estamos en la frontera"]),
    );
    m.insert(id(2), conv(T0, &["Je suis réfugié depuis mars"]));
    m.insert(id(3), conv(T0, &["Mwen bezwen èd pou timoun yo"]));
    assert_eq!(ids(&find(&m, "ninos")), vec![id(1)]);
    assert_eq!(ids(&find(&m, "NIÑOS")), vec![id(1)]);
    assert_eq!(ids(&find(&m, "refugie")), vec![id(2)]);
    assert_eq!(ids(&find(&m, "réfugié")), vec![id(2)]);
    assert_eq!(ids(&find(&m, "ed timoun")), vec![id(3)]);
    // A word being typed matches already.
    assert_eq!(ids(&find(&m, "refu")), vec![id(2)]);
    assert_eq!(find(&m, "asile").total, 0);
}

#[test]
fn every_word_must_match_somewhere_in_the_conversation() {
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["Tengo 17 años", "Estoy en Tijuana"]));
    m.insert(id(2), conv(T0, &["Tengo 17 años", "Estoy en Montréal"]));
    m.insert(id(3), conv(T0, &["Estoy en Tijuana con mi madre"]));
    // Words in different messages of one conversation.
    assert_eq!(ids(&find(&m, "anos tijuana")), vec![id(1)]);
    assert_eq!(ids(&find(&m, "  tijuana   17 ")), vec![id(1)]);
    let mut both = ids(&find(&m, "tijuana"));
    both.sort();
    assert_eq!(both, vec![id(1), id(3)]);
    assert_eq!(find(&m, "tijuana montreal").total, 0);
}

#[test]
fn a_note_status_and_team_are_searched_and_the_snippet_says_where() {
    let mut m = BTreeMap::new();
    let mut c = conv(T0, &["Necesito ayuda"]);
    c.notes.push(Note {
        by: DeviceId(2),
        at: UnixTime(T0 + 600),
        text: MessageText::new("Called the shelter in Plattsburgh; a bed is free on Friday."),
    });
    c.status = Status::Resolved;
    m.insert(id(1), c);
    m.insert(id(2), conv(T0, &["Hola"]));
    let r = find(&m, "plattsburgh");
    assert_eq!(ids(&r), vec![id(1)]);
    let s = r.hits[0].snippet.clone().unwrap();
    assert_eq!(s.field, Field::Note);
    assert_eq!(s.matched, "Plattsburgh");
    assert_eq!(s.before, "Called the shelter in ");
    assert_eq!(s.after, "; a bed is free on Friday.");
    // The status, in the inbox's languages.
    for q in ["resolved", "resuelta", "resolue", "rezoud"] {
        let r = find(&m, q);
        assert_eq!(ids(&r), vec![id(1)], "{q}");
        assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Status);
    }
    // A word in a message and one in the note: the part with the most words is shown.
    let r = find(&m, "bed friday ayuda");
    assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Note);
}

#[test]
fn a_long_match_is_cut_to_a_one_line_snippet_around_it() {
    let mut m = BTreeMap::new();
    let long = format!(
        "{}\nThe important word is asylum,\nthen {}",
        "before ".repeat(30),
        "after ".repeat(40)
    );
    m.insert(id(1), conv(T0, &[long.as_str()]));
    let s = find(&m, "asylum").hits[0].snippet.clone().unwrap();
    assert_eq!(s.field, Field::SeekerMessage);
    assert_eq!(s.matched, "asylum");
    assert!(s.before.starts_with('…') && s.before.ends_with("word is "));
    assert!(s.after.ends_with('…'));
    let all = format!("{}{}{}", s.before, s.matched, s.after);
    assert!(!all.contains('\n'));
    assert!(all.chars().count() <= SNIPPET_CHARS + 2);
}

#[test]
fn the_snippet_keeps_the_original_accents_of_the_match() {
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["Somos cinco: mis niños y mi esposa."]));
    let s = find(&m, "ninos").hits[0].snippet.clone().unwrap();
    assert_eq!(
        (s.before.as_str(), s.matched.as_str()),
        ("Somos cinco: mis ", "niños")
    );
    assert_eq!(s.after, " y mi esposa.");
    // A match ending inside a folded character takes the whole character.
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["Straße"]));
    let s = find(&m, "stras").hits[0].snippet.clone().unwrap();
    assert_eq!(s.matched, "Straß");
}

#[test]
fn results_are_newest_activity_first_and_bounded() {
    let mut m = BTreeMap::new();
    let n = MAX_SEARCH_RESULTS as u16 + 25;
    for i in 0..n {
        // Shuffled times: i * 7 mod n minutes.
        let at = T0 + 60 * ((u64::from(i) * 7) % u64::from(n));
        m.insert(id(i), conv(at, &["Necesito asilo"]));
    }
    // A note counts as activity.
    let old = m.get_mut(&id(0)).unwrap();
    old.notes.push(Note {
        by: DeviceId(1),
        at: UnixTime(T0 + 1_000_000),
        text: MessageText::new("follow up"),
    });
    let r = find(&m, "asilo");
    assert_eq!(r.total, n as usize);
    assert_eq!(r.hits.len(), MAX_SEARCH_RESULTS);
    assert_eq!(r.hits[0].conversation, id(0));
    assert!(
        r.hits
            .windows(2)
            .all(|w| w[0].updated_at >= w[1].updated_at)
    );
    // The hits are the newest ones.
    let mut all: Vec<u64> = m.values().map(updated_at).collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    let got: Vec<u64> = r.hits.iter().map(|h| h.updated_at).collect();
    assert_eq!(got, all[..MAX_SEARCH_RESULTS]);
}

#[test]
fn queries_are_bounded() {
    assert!(Query::parse(&"a".repeat(MAX_QUERY_LEN)).is_ok());
    assert_eq!(
        Query::parse(&"a".repeat(MAX_QUERY_LEN + 1)).unwrap_err(),
        ApiMisuse::QueryTooLong {
            max: MAX_QUERY_LEN,
            got: MAX_QUERY_LEN + 1
        }
    );
    let words: Vec<String> = (0..=MAX_QUERY_TERMS).map(|i| format!("w{i}x")).collect();
    assert!(matches!(
        Query::parse(&words.join(" ")),
        Err(ApiMisuse::QueryTooManyTerms { .. })
    ));
    // Repeated or contained words count once.
    let q = Query::parse("ref refugie REFUGIE ref").unwrap();
    assert_eq!(q.terms.len(), 1);
    assert_eq!(format!("{q:?}"), "Query(terms=1)");
}

#[test]
fn an_empty_query_lists_the_filtered_inbox_newest_first() {
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["uno"]));
    let mut mine = conv(T0 + 60, &["dos"]);
    mine.status = Status::Claimed(DeviceId(1));
    m.insert(id(2), mine);
    let mut theirs = conv(T0 + 120, &["tres"]);
    theirs.status = Status::Claimed(DeviceId(2));
    theirs.unread = true;
    m.insert(id(3), theirs);
    let mut idx = SearchIndex::new();
    let q = Query::parse("   ").unwrap();
    let run = |idx: &mut SearchIndex, f| ids(&idx.search(inbox(&m), &q, f));
    assert_eq!(run(&mut idx, InboxFilter::All), vec![id(3), id(2), id(1)]);
    assert_eq!(run(&mut idx, InboxFilter::Claimed), vec![id(3), id(2)]);
    assert_eq!(run(&mut idx, InboxFilter::Mine), vec![id(2)]);
    assert_eq!(run(&mut idx, InboxFilter::Unread), vec![id(3)]);
    assert_eq!(run(&mut idx, InboxFilter::Open), vec![id(1)]);
    assert_eq!(
        run(&mut idx, InboxFilter::Resolved),
        Vec::<MailboxId>::new()
    );
    assert!(
        idx.search(inbox(&m), &q, InboxFilter::All).hits[0]
            .snippet
            .is_none()
    );
    // Filter and words together.
    let q = Query::parse("dos").unwrap();
    assert_eq!(
        ids(&idx.search(inbox(&m), &q, InboxFilter::Mine)),
        vec![id(2)]
    );
    assert_eq!(idx.search(inbox(&m), &q, InboxFilter::Open).total, 0);
    for (f, name) in InboxFilter::ALL {
        assert_eq!(InboxFilter::from_name(name), Some(f));
    }
    assert_eq!(InboxFilter::from_name("everything"), None);
}

#[test]
fn the_index_follows_new_messages_notes_status_and_deletions() {
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["primero"]));
    m.insert(id(2), conv(T0, &["otro"]));
    let mut idx = SearchIndex::new();
    let q = |s: &str| Query::parse(s).unwrap();
    assert_eq!(
        idx.search(inbox(&m), &q("segundo"), InboxFilter::All).total,
        0
    );
    assert_eq!(idx.len(), 2);
    // A new message.
    let c = m.get_mut(&id(1)).unwrap();
    c.history.push(Entry {
        id: MessageId([9; 16]),
        at: UnixTime(T0 + 3600),
        author: Author::Seeker,
        kind: EntryKind::Text(MessageText::new("segundo mensaje")),
    });
    assert_eq!(
        ids(&idx.search(inbox(&m), &q("segundo"), InboxFilter::All)),
        vec![id(1)]
    );
    // A note, then another note replacing the oldest at the maximum.
    let c = m.get_mut(&id(2)).unwrap();
    for i in 0..MAX_NOTES {
        c.notes.push(Note {
            by: DeviceId(2),
            at: UnixTime(T0),
            text: MessageText::new(format!("nota {i}")),
        });
    }
    assert_eq!(
        ids(&idx.search(inbox(&m), &q("nota"), InboxFilter::All)),
        vec![id(2)]
    );
    let c = m.get_mut(&id(2)).unwrap();
    c.notes.remove(0);
    c.notes.push(Note {
        by: DeviceId(2),
        at: UnixTime(T0),
        text: MessageText::new("llamar al albergue"),
    });
    assert_eq!(
        ids(&idx.search(inbox(&m), &q("albergue"), InboxFilter::All)),
        vec![id(2)]
    );
    // A status change.
    m.get_mut(&id(2)).unwrap().status = Status::Resolved;
    assert_eq!(
        ids(&idx.search(inbox(&m), &q("resolved"), InboxFilter::All)),
        vec![id(2)]
    );
    // A deleted conversation leaves the index.
    m.remove(&id(1));
    assert_eq!(
        idx.search(inbox(&m), &q("segundo"), InboxFilter::All).total,
        0
    );
    assert_eq!(idx.len(), 1);
    assert!(idx.text_bytes() > 0);
    idx.clear();
    assert!(idx.is_empty());
    assert_eq!(format!("{idx:?}"), "SearchIndex { conversations: 0, .. }");
}

#[test]
fn debug_output_shows_no_query_or_snippet_text() {
    let mut m = BTreeMap::new();
    m.insert(id(1), conv(T0, &["Mi nombre es Rosa Quispe"]));
    let r = find(&m, "quispe");
    let shown = format!("{r:?} {:?}", Query::parse("quispe").unwrap());
    assert!(!shown.to_lowercase().contains("quispe"), "{shown}");
    assert!(!shown.contains("Rosa"), "{shown}");
}

/// The attack: look on one device for what only other devices decrypted.
/// A device's search reads its own decrypted conversations: a colleague's
/// note that never reached it, and an envelope sealed to another device
/// (which it cannot open), are not found; once the note arrives, it is.
#[test]
fn a_search_finds_only_what_this_device_decrypted() {
    use crate::client::tests::{NOW, deliver, missing_for, seeker_with_conversation, world};
    let mut w = world();
    let (seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    let q = Query::parse("plattsburgh").unwrap();
    let bundles = missing_for(&mut w, 0, &conv);
    let envs =
        w.a.note(
            &conv,
            "Shelter in Plattsburgh has a bed",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    // The author's own device finds its note.
    let mut on_a = SearchIndex::new();
    let r = on_a.search(Inbox::of(&w.a), &q, InboxFilter::All);
    assert_eq!(ids(&r), vec![conv]);
    assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Note);
    // Device c is handed the envelopes sealed to b: it cannot open them,
    // and its search finds nothing.
    let for_b: Vec<_> = envs
        .iter()
        .filter(|e| *e.recipient() == w.b.mailbox().id())
        .cloned()
        .collect();
    assert!(!for_b.is_empty());
    for e in &for_b {
        assert!(w.c.receive(e).is_err());
    }
    let mut on_c = SearchIndex::new();
    assert_eq!(on_c.search(Inbox::of(&w.c), &q, InboxFilter::All).total, 0);
    // b, before and after its own copy arrives.
    let mut on_b = SearchIndex::new();
    assert_eq!(on_b.search(Inbox::of(&w.b), &q, InboxFilter::All).total, 0);
    deliver(&envs, &mut w.b);
    let r = on_b.search(Inbox::of(&w.b), &q, InboxFilter::All);
    assert_eq!(ids(&r), vec![conv]);
    // The team's name and the claimant's label come from the directory.
    let r = on_b.search(
        Inbox::of(&w.b),
        &Query::parse("necesito").unwrap(),
        InboxFilter::All,
    );
    assert_eq!(
        r.hits[0].snippet.as_ref().unwrap().field,
        Field::SeekerMessage
    );
    let team = w.dir.team(TeamId(1)).unwrap().slug.clone();
    let r = on_b.search(
        Inbox::of(&w.b),
        &Query::parse(&team).unwrap(),
        InboxFilter::All,
    );
    assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Team);
}

#[test]
fn typing_on_backspacing_and_new_words_give_what_a_fresh_search_gives() {
    let mut m = BTreeMap::new();
    let texts = [
        "Estoy en Tijuana con mis niños",
        "Je suis réfugié à Tijuana",
        "Mwen nan Tijuana",
        "Tengo 17 años",
        "refugio en Plattsburgh",
    ];
    for (i, t) in texts.iter().enumerate() {
        m.insert(id(i as u16), conv(T0 + 60 * i as u64, &[t]));
    }
    let typed = [
        "t",
        "ti",
        "tij",
        "tijuanax",
        "tijuana",
        "tijuana n",
        "tijuana ni",
        "tijuana",
        "refu",
        "refugi",
        "refugie",
        "refugi",
        "r",
        "",
        "ninos tijuana",
        "tijuana ninos",
    ];
    let mut idx = SearchIndex::new();
    for q in typed {
        let query = Query::parse(q).unwrap();
        let kept = idx.search(inbox(&m), &query, InboxFilter::All);
        let fresh = find(&m, q);
        assert_eq!(kept, fresh, "{q:?}");
    }
    // A filtered search leaves every match of the query for the next keystroke.
    let q = Query::parse("tij").unwrap();
    assert_eq!(idx.search(inbox(&m), &q, InboxFilter::Resolved).total, 0);
    let q = Query::parse("tiju").unwrap();
    assert_eq!(idx.search(inbox(&m), &q, InboxFilter::All).total, 3);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any text, any piece of its folded form as the query: the
    /// conversation is found, nothing panics (snippets are cut on
    /// character boundaries of the original), and the marked part folds
    /// to text containing the query.
    #[test]
    fn any_folded_piece_of_any_text_is_found_and_marked(
        text in "\\PC{0,60}",
        start in 0usize..80,
        len in 1usize..12,
    ) {
        let folded = fold(&text);
        let chars: Vec<char> = folded.chars().collect();
        let start = start.min(chars.len());
        let piece: String = chars[start..(start + len).min(chars.len())].iter().collect();
        let term = piece.split_whitespace().next().unwrap_or("").to_owned();
        let mut m = BTreeMap::new();
        m.insert(id(1), conv(T0, &[text.as_str()]));
        let r = find(&m, &term);
        if term.is_empty() || Query::parse(&term).is_err() {
            return Ok(());
        }
        proptest::prop_assert_eq!(r.total, 1);
        let s = r.hits[0].snippet.clone().unwrap();
        proptest::prop_assert!(fold(&s.matched).contains(&fold(&term)), "{:?} in {:?}", term, s.matched);
    }
}

#[test]
fn intake_answers_and_file_names_are_searched_and_the_snippet_says_where() {
    use crate::intake::{Answer, IntakeAnswers, QuestionId};
    let w = crate::client::tests::world();
    let mut m = BTreeMap::new();
    // Asked for asylum in Australia (default question 3, choice 3).
    let mut answered = conv(T0, &["Necesito saber mis opciones."]);
    answered.team = w.dir.teams()[0].id;
    answered.answers = IntakeAnswers::new(vec![(QuestionId(3), Answer::Choices(vec![3]))]).unwrap();
    m.insert(id(1), answered);
    // A file whose name is the only place the word appears.
    let mut with_file = conv(T0 + 60, &["Les mando el aviso."]);
    let mut reference = crate::attachment::tests::sample_ref();
    reference.info.name = crate::attachment::FileName::sanitize("aviso-de-comparecencia.pdf");
    with_file.history.push(Entry {
        id: MessageId([9; 16]),
        at: UnixTime(T0 + 120),
        author: Author::Seeker,
        kind: EntryKind::Attachment(reference),
    });
    m.insert(id(2), with_file);
    let inbox = Inbox {
        conversations: &m,
        directory: Some(&w.dir),
        me: Some(DeviceId(1)),
    };
    let mut index = SearchIndex::new();
    let r = index.search(inbox, &Query::parse("australia").unwrap(), InboxFilter::All);
    assert_eq!(ids(&r), vec![id(1)]);
    assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Intake);
    let inbox = Inbox {
        conversations: &m,
        directory: Some(&w.dir),
        me: Some(DeviceId(1)),
    };
    let r = index.search(
        inbox,
        &Query::parse("comparecencia").unwrap(),
        InboxFilter::All,
    );
    assert_eq!(ids(&r), vec![id(2)]);
    assert_eq!(r.hits[0].snippet.as_ref().unwrap().field, Field::Attachment);
    // Without the directory an answer cannot be read, so it is not found.
    assert_eq!(find(&m, "australia").total, 0);
}
