//! What the seeker can see (encrypted receipts) and disappearing
//! conversations (retention and "keep this case longer"), in memory: a
//! seeker, two counselors of one team and a third device of another team
//! (docs/PROTOCOL.md §6.6).

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::counselor::{Counselor, Event, Status};
use super::seeker::{Received, Seeker};
use super::{ClientError, FetchedBundle};
use crate::UnixTime;
use crate::codename::Codename;
use crate::directory::{
    DeviceEntry, DeviceId, Directory, OrgSigningKey, Partner, PartnerId, SignedDirectory, TeamId,
    VerifiedDirectory,
};
use crate::error::Error;
use crate::message::Language;
use crate::sealed::Envelope;

const NOW: UnixTime = UnixTime(1_800_000_000);
const DAY: u64 = 24 * 3600;
/// The retention these tests sign into the directory.
const RETENTION: u64 = 30 * DAY;

struct World {
    rng: ChaCha20Rng,
    org: OrgSigningKey,
    dir: Directory,
    verified: VerifiedDirectory,
    a: Counselor,
    b: Counselor,
    c: Counselor,
}

fn bundle_of(c: &mut Counselor, rng: &mut ChaCha20Rng) -> FetchedBundle {
    let otk = c.new_one_time_prekeys(1, NOW, rng).unwrap()[0].encode();
    let opq = c.new_one_time_pq_prekeys(1, NOW, rng).unwrap()[0].encode();
    FetchedBundle {
        mailbox: c.mailbox().id(),
        signed_bundle: c.prekey_bundle().unwrap().encode(),
        one_time: Some(otk),
        one_time_pq: Some(opq),
    }
}

fn world() -> World {
    let mut rng = ChaCha20Rng::from_seed([0x5e; 32]);
    let org = OrgSigningKey::generate(&mut rng);
    let a = Counselor::generate(&mut rng);
    let b = Counselor::generate(&mut rng);
    let c = Counselor::generate(&mut rng);
    let mut dir = Directory::new(org.public(), 1, NOW);
    dir.retention_secs = RETENTION;
    let mut teams = Directory::default_teams();
    let entry = |id: u32, label: &str, k: &Counselor| DeviceEntry {
        id: DeviceId(id),
        label: label.into(),
        identity: k.public().identity,
        mailbox: k.public().mailbox,
    };
    teams[0].devices = vec![entry(1, "ana", &a), entry(2, "ben", &b)];
    teams[1].devices = vec![entry(3, "cy", &c)];
    dir.teams = teams;
    dir.partners = vec![Partner {
        id: PartnerId(1),
        name: "Shelter North".into(),
        contact: "+1 555 0100".into(),
    }];
    let bytes = dir.sign(&org).unwrap().encode();
    let verified = SignedDirectory::decode(&bytes)
        .unwrap()
        .verify(&org.public(), None, NOW)
        .unwrap();
    let mut w = World {
        rng,
        org,
        dir,
        verified,
        a,
        b,
        c,
    };
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        k.set_directory(&bytes, &w.org.public(), NOW).unwrap();
    }
    w
}

/// Bundles for the colleagues device `who` (0 = A, 1 = B, 2 = C) has no
/// session with yet, for a team action on `conv`.
fn colleague_bundles(
    w: &mut World,
    who: usize,
    conv: &crate::ids::MailboxId,
) -> Vec<FetchedBundle> {
    let missing = [&w.a, &w.b, &w.c][who].missing_bundles(conv).unwrap();
    let mut out = Vec::new();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        if missing.contains(&k.mailbox().id()) {
            out.push(bundle_of(k, &mut w.rng));
        }
    }
    out
}

fn to(envs: &[Envelope], c: &Counselor) -> Vec<Envelope> {
    envs.iter()
        .filter(|e| *e.recipient() == c.mailbox().id())
        .cloned()
        .collect()
}

fn deliver(envs: &[Envelope], c: &mut Counselor) -> Vec<Event> {
    to(envs, c)
        .iter()
        .filter_map(|e| c.receive(e).unwrap())
        .collect()
}

/// What of `envs` is for the seeker, taken in; the results in order.
fn seeker_takes(envs: &[Envelope], seeker: &mut Seeker) -> Vec<Option<Received>> {
    let me = seeker.mailbox().id();
    envs.iter()
        .filter(|e| *e.recipient() == me)
        .map(|e| seeker.receive_any(e).unwrap())
        .collect()
}

/// A seeker who opened a conversation with team 1, received by every device.
fn started(w: &mut World) -> (Seeker, crate::ids::MailboxId) {
    let codename = Codename::generate(Language::Es, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng),
        bundle_of(&mut w.b, &mut w.rng),
        bundle_of(&mut w.c, &mut w.rng),
    ];
    let envs = seeker
        .start(
            &w.verified,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "Tengo 17 años.",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        assert_eq!(
            deliver(&envs, k),
            vec![Event::NewConversation { conversation: conv }]
        );
    }
    (seeker, conv)
}

fn latest_seeker_id(c: &Counselor, conv: &crate::ids::MailboxId) -> crate::ids::MessageId {
    c.conversation(conv)
        .unwrap()
        .history
        .iter()
        .rev()
        .find(|e| e.author == super::Author::Seeker)
        .unwrap()
        .id
}

#[test]
fn the_seeker_sees_reached_read_answered_referred_and_resolved() {
    let mut w = world();
    let (mut seeker, conv) = started(&mut w);
    fn seeker_status(s: &Seeker) -> super::seeker::ConversationStatus {
        s.conversation().unwrap().status()
    }
    let s0 = seeker_status(&seeker);
    assert_eq!((s0.reached, s0.devices), (0, 3));
    assert!(!s0.read && !s0.answered && !s0.resolved && s0.referred.is_empty());

    // Each device says it received the opening: reached 1, 2, 3 of 3.
    let opening = latest_seeker_id(&w.a, &conv);
    for (n, k) in [&mut w.a, &mut w.b, &mut w.c].into_iter().enumerate() {
        let env = k
            .delivered_receipt(&conv, &[opening], NOW, &mut w.rng)
            .unwrap()
            .expect("an open conversation: every device answers");
        assert_eq!(
            seeker.receive_any(&env).unwrap(),
            Some(Received::Status),
            "device {n}"
        );
        assert_eq!(seeker_status(&seeker).reached, n + 1);
    }
    // The same receipt again changes nothing (each device counts once).
    let again =
        w.a.delivered_receipt(&conv, &[opening], NOW, &mut w.rng)
            .unwrap()
            .unwrap();
    assert_eq!(seeker.receive_any(&again).unwrap(), None);

    // A counselor on device A opens the case: one read receipt, not two.
    let read = w.a.read_receipt(&conv, NOW, &mut w.rng).unwrap().unwrap();
    assert!(w.a.read_receipt(&conv, NOW, &mut w.rng).unwrap().is_none());
    assert_eq!(seeker.receive_any(&read).unwrap(), Some(Received::Status));
    assert!(seeker_status(&seeker).read);

    // A claims (and B and C learn it): from now on only A sends receipts.
    let b = colleague_bundles(&mut w, 0, &conv);
    let claim = w.a.claim(&conv, &b, NOW, &mut w.rng).unwrap();
    deliver(&claim, &mut w.b);
    deliver(&claim, &mut w.c);
    assert_eq!(
        w.b.conversation(&conv).unwrap().status,
        Status::Claimed(DeviceId(1))
    );

    // The seeker writes again: the status follows the new message.
    let t1 = UnixTime(NOW.0 + 3600);
    let envs = seeker.write("¿Hay noticias?", &[], t1, &mut w.rng).unwrap();
    let s1 = seeker_status(&seeker);
    assert_eq!((s1.reached, s1.read), (0, false));
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        deliver(&envs, k);
    }
    let second = latest_seeker_id(&w.a, &conv);
    assert!(
        w.b.delivered_receipt(&conv, &[second], t1, &mut w.rng)
            .unwrap()
            .is_none(),
        "a colleague holds the case: B stays quiet"
    );
    assert!(
        w.b.read_receipt(&conv, t1, &mut w.rng).unwrap().is_none(),
        "and sends no read receipt either"
    );
    // A receipt about the older message does not count for the new one.
    let old =
        w.a.delivered_receipt(&conv, &[opening], t1, &mut w.rng)
            .unwrap()
            .unwrap();
    assert_eq!(seeker.receive_any(&old).unwrap(), None);
    let env =
        w.a.delivered_receipt(&conv, &[second], t1, &mut w.rng)
            .unwrap()
            .unwrap();
    seeker.receive_any(&env).unwrap();
    assert_eq!(seeker_status(&seeker).reached, 1);

    // Answered: a reply after the seeker's latest message.
    let reply =
        w.a.reply(&conv, "Sí, hay opciones.", &[], t1, &mut w.rng)
            .unwrap();
    seeker_takes(&reply, &mut seeker);
    assert!(seeker_status(&seeker).answered);
    // Referred: with the partner, whose name and contact the page takes
    // from the directory.
    let refer =
        w.a.refer(&conv, PartnerId(1), "Pueden ayudarle.", &[], t1, &mut w.rng)
            .unwrap();
    seeker_takes(&refer, &mut seeker);
    assert_eq!(seeker_status(&seeker).referred, vec![PartnerId(1)]);
    let partner = w.verified.partner(PartnerId(1)).unwrap();
    assert_eq!(
        (partner.name.as_str(), partner.contact.as_str()),
        ("Shelter North", "+1 555 0100")
    );
    // Resolved, then reopened, by receipts that only the seeker gets.
    let resolve = w.a.resolve(&conv, &[], t1, &mut w.rng).unwrap();
    assert_eq!(
        seeker_takes(&resolve, &mut seeker),
        vec![Some(Received::Status)]
    );
    assert!(seeker_status(&seeker).resolved);
    let reopen = w.a.reopen(&conv, &[], t1, &mut w.rng).unwrap();
    seeker_takes(&reopen, &mut seeker);
    assert!(!seeker_status(&seeker).resolved);
    w.a.resolve(&conv, &[], t1, &mut w.rng)
        .map(|e| seeker_takes(&e, &mut seeker))
        .unwrap();

    let s = seeker_status(&seeker);
    // Read was about the first message; nobody opened the case since the
    // second (the seeker sees "answered" and "resolved").
    assert!(s.resolved && s.answered && !s.read);
    assert_eq!(s.reached, 1);
}

#[test]
fn receipts_survive_the_seekers_saved_state() {
    let mut w = world();
    let codename = Codename::generate(Language::Ht, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng),
        bundle_of(&mut w.b, &mut w.rng),
        bundle_of(&mut w.c, &mut w.rng),
    ];
    let envs = seeker
        .start(
            &w.verified,
            TeamId(1),
            Language::Ht,
            &crate::intake::IntakeAnswers::none(),
            "Bonjou",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    deliver(&envs, &mut w.a);
    let id = latest_seeker_id(&w.a, &conv);
    let env =
        w.a.delivered_receipt(&conv, &[id], NOW, &mut w.rng)
            .unwrap()
            .unwrap();
    seeker.receive_any(&env).unwrap();
    let read = w.a.read_receipt(&conv, NOW, &mut w.rng).unwrap().unwrap();
    seeker.receive_any(&read).unwrap();
    let blob = seeker.save(&mut w.rng).unwrap();
    let back = Seeker::restore(&secrets, &blob).unwrap();
    assert_eq!(
        back.conversation().unwrap().receipts,
        seeker.conversation().unwrap().receipts
    );
    let s = back.conversation().unwrap().status();
    assert_eq!((s.reached, s.devices, s.read), (1, 3, true));
    // The deletion date the page shows: the retention after the opening.
    assert_eq!(
        back.conversation().unwrap().deletion_at(RETENTION),
        Some(UnixTime(crate::message::sent_at_of(NOW).0 + RETENTION))
    );
}

#[test]
fn a_forged_receipt_from_a_device_the_directory_no_longer_lists_is_refused() {
    let mut w = world();
    let (mut seeker, conv) = started(&mut w);
    let opening = latest_seeker_id(&w.c, &conv);
    // The administrator removes device C; the seeker takes the new directory.
    let mut next = w.dir.successor(NOW).unwrap();
    assert!(next.remove_device(DeviceId(3)));
    let bytes = next.sign(&w.org).unwrap().encode();
    let verified = SignedDirectory::decode(&bytes)
        .unwrap()
        .verify(&w.org.public(), Some(&w.verified.version()), NOW)
        .unwrap();
    seeker.accept_directory(&verified).unwrap();
    // C (seized, or its operator compelled) claims the case was read and
    // resolved: the seeker takes none of it.
    for env in [
        w.c.read_receipt(&conv, NOW, &mut w.rng).unwrap().unwrap(),
        w.c.delivered_receipt(&conv, &[opening], NOW, &mut w.rng)
            .unwrap()
            .unwrap(),
    ] {
        assert!(matches!(
            seeker.receive_any(&env),
            Err(Error::Client(ClientError::UnlistedSender))
        ));
    }
    let s = seeker.conversation().unwrap().status();
    assert_eq!((s.reached, s.read, s.resolved), (0, false, false));
}

#[test]
fn a_receipt_the_relay_alters_or_invents_is_refused() {
    let mut w = world();
    let (mut seeker, conv) = started(&mut w);
    let read = w.a.read_receipt(&conv, NOW, &mut w.rng).unwrap().unwrap();
    // The relay flips a byte of the sealed receipt.
    let mut bytes = read.encode();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    let altered = Envelope::decode(&bytes).unwrap();
    assert!(seeker.receive_any(&altered).is_err());
    // The relay seals its own "resolved" receipt to the seeker's mailbox
    // key (public): with no session behind it, it is refused.
    let outsider = Counselor::generate(&mut w.rng);
    let forged = crate::sealed::seal(
        &seeker.mailbox().public(),
        &crate::sealed::SealedContent {
            sender: crate::sealed::SenderInfo {
                identity: outsider.public().identity,
                mailbox: outsider.public().mailbox,
            },
            body: crate::sealed::SealedBody::Ratchet {
                ratchet_message: vec![6; 200],
            },
        },
        &mut w.rng,
    )
    .unwrap();
    assert!(seeker.receive_any(&forged).is_err());
    let s = seeker.conversation().unwrap().status();
    assert!(!s.read && !s.resolved);
    // The genuine one still counts.
    assert_eq!(seeker.receive_any(&read).unwrap(), Some(Received::Status));
}

#[test]
fn retention_deletes_a_conversation_with_a_moved_clock_unless_kept() {
    let mut w = world();
    let (_seeker, conv) = started(&mut w);
    let due = UnixTime(crate::message::sent_at_of(NOW).0 + RETENTION);
    for k in [&w.a, &w.b, &w.c] {
        assert_eq!(k.deletion_at(&conv), Some(due));
    }
    // A counselor on A keeps the case for 60 more days: every device logs it.
    let until = UnixTime(due.0 + 60 * DAY);
    let t = UnixTime(NOW.0 + 3600);
    assert!(matches!(
        w.a.keep(
            &conv,
            UnixTime(t.0 - 7200),
            "court date",
            &[],
            t,
            &mut w.rng
        ),
        Err(Error::Misuse(crate::ApiMisuse::KeepOutOfRange))
    ));
    assert!(w.a.keep(&conv, until, "  ", &[], t, &mut w.rng).is_err());
    let b = colleague_bundles(&mut w, 0, &conv);
    let envs =
        w.a.keep(&conv, until, "Court date in June.", &b, t, &mut w.rng)
            .unwrap();
    assert_eq!(
        deliver(&envs, &mut w.b),
        vec![Event::Kept {
            conversation: conv,
            until,
            by: DeviceId(1)
        }]
    );
    for k in [&w.a, &w.b] {
        let log: Vec<_> = k.keep_log().collect();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].by, DeviceId(1));
        assert_eq!(log[0].until, until);
        assert_eq!(log[0].reason.as_str(), "Court date in June.");
        assert_eq!(k.deletion_at(&conv), Some(until));
    }
    // The clock moves to one second before the retention: nothing goes.
    assert!(w.a.expire(UnixTime(due.0 - 1)).is_empty());
    // At the retention: kept on A and B; gone from C, whose copy of the
    // choice the relay held back (C deletes on its own schedule).
    assert_eq!(w.c.expire(due), vec![conv]);
    assert!(w.a.expire(due).is_empty());
    assert!(w.b.expire(due).is_empty());
    // Past the kept date, gone everywhere, and a replayed opening is refused.
    assert_eq!(w.a.expire(until), vec![conv]);
    assert_eq!(w.b.expire(until), vec![conv]);
    assert!(w.a.conversation(&conv).is_none());
    let saved = Counselor::decode(&w.a.encode().unwrap(), &w.org.public()).unwrap();
    assert!(saved.conversation(&conv).is_none());
    // The keep log stays (it is the device's record of the choice).
    assert_eq!(saved.keep_log().count(), 1);
}

#[test]
fn retention_deletes_an_unkept_conversation_and_a_replayed_opening_stays_gone() {
    let mut w = world();
    let codename = Codename::generate(Language::Es, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng),
        bundle_of(&mut w.b, &mut w.rng),
        bundle_of(&mut w.c, &mut w.rng),
    ];
    let envs = seeker
        .start(
            &w.verified,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "Hola",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    deliver(&envs, &mut w.a);
    let b = colleague_bundles(&mut w, 0, &conv);
    let note = w.a.note(&conv, "private", &b, NOW, &mut w.rng).unwrap();
    assert!(!note.is_empty());
    let due = UnixTime(crate::message::sent_at_of(NOW).0 + RETENTION);
    assert!(w.a.expire(UnixTime(due.0 - 1)).is_empty());
    assert_eq!(w.a.expire(due), vec![conv]);
    assert!(w.a.conversation(&conv).is_none());
    // The relay replays the opening: refused, nothing comes back.
    let replay = to(&envs, &w.a);
    assert!(w.a.receive(&replay[0]).is_err());
    assert!(w.a.conversations().is_empty());
}

#[test]
fn a_colleagues_keep_event_more_than_a_year_past_the_deletion_date_is_refused() {
    let mut w = world();
    let (_seeker, conv) = started(&mut w);
    let due = w.b.deletion_at(&conv).unwrap();
    // Device A (seized, say) asks the team to keep the case for ten years:
    // its own keep() refuses that, so it crafts the event through a long
    // but valid first keep, then one far beyond it.
    let b = colleague_bundles(&mut w, 0, &conv);
    let t = UnixTime(NOW.0 + 3600);
    assert!(matches!(
        w.a.keep(
            &conv,
            UnixTime(t.0 + 10 * 366 * DAY),
            "forever",
            &b,
            t,
            &mut w.rng
        ),
        Err(Error::Misuse(crate::ApiMisuse::KeepOutOfRange))
    ));
    // A keep a year from now is within the bound at B: applied and logged.
    let ok_until = UnixTime((t.0 + 360 * DAY) / 3600 * 3600);
    let envs =
        w.a.keep(&conv, ok_until, "hearing", &b, t, &mut w.rng)
            .unwrap();
    assert_eq!(deliver(&envs, &mut w.b).len(), 1);
    assert_eq!(w.b.deletion_at(&conv), Some(ok_until.max(due)));
    // A forged event far past that (a modified client on device A) is
    // refused by B: nothing logged, the date unchanged.
    let far = crate::message::AppMessage::new(
        crate::ids::MessageId([9; 16]),
        t,
        crate::message::Body::Team(crate::message::TeamEvent {
            conversation: conv,
            by: DeviceId(1),
            kind: crate::message::TeamEventKind::Keep {
                until: UnixTime((ok_until.0 + 2 * 366 * DAY) / 3600 * 3600),
                reason: "forever".into(),
            },
        }),
    );
    let b_identity = w.b.public();
    let env =
        w.a.seal_for_test(&b_identity.identity, &b_identity.mailbox, &far, &mut w.rng)
            .unwrap();
    assert_eq!(w.b.receive(&env).unwrap(), None);
    assert_eq!(w.b.keep_log().count(), 1);
    assert_eq!(w.b.deletion_at(&conv), Some(ok_until.max(due)));
}
