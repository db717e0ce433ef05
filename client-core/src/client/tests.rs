//! A whole conversation in memory: a seeker, two counselors of one team and
//! a third device of another team, with the intake set, claims, copies,
//! hand-off, notes, referral, resolve, saved state and deletion.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::counselor::{Counselor, Event, Status};
use super::seeker::Seeker;
use super::{Author, ClientError, EntryKind, FetchedBundle};
use crate::UnixTime;
use crate::codename::Codename;
use crate::directory::{
    DeviceEntry, DeviceId, Directory, OrgSigningKey, Partner, PartnerId, SignedDirectory, TeamId,
    VerifiedDirectory,
};
use crate::error::Error;
use crate::message::Language;
use crate::sealed::Envelope;

pub(crate) const NOW: UnixTime = UnixTime(1_800_000_000);

pub(crate) struct World {
    pub(crate) rng: ChaCha20Rng,
    pub(crate) org: OrgSigningKey,
    pub(crate) dir: VerifiedDirectory,
    pub(crate) dir_bytes: Vec<u8>,
    pub(crate) a: Counselor,
    pub(crate) b: Counselor,
    pub(crate) c: Counselor,
}

/// The bundle the relay hands out, with a one-time prekey of each kind
/// (`with_otk`) or, as when the relay ran out or withholds them, none.
pub(crate) fn bundle_of(c: &mut Counselor, rng: &mut ChaCha20Rng, with_otk: bool) -> FetchedBundle {
    let (one_time, one_time_pq) = if with_otk {
        let otk = c.new_one_time_prekeys(1, NOW, rng).unwrap()[0].encode();
        let opq = c.new_one_time_pq_prekeys(1, NOW, rng).unwrap()[0].encode();
        (Some(otk), Some(opq))
    } else {
        (None, None)
    };
    FetchedBundle {
        mailbox: c.mailbox().id(),
        signed_bundle: c.prekey_bundle().unwrap().encode(),
        one_time,
        one_time_pq,
    }
}

pub(crate) fn world() -> World {
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let org = OrgSigningKey::generate(&mut rng);
    let a = Counselor::generate(&mut rng);
    let b = Counselor::generate(&mut rng);
    let c = Counselor::generate(&mut rng);
    let mut dir = Directory::new(org.public(), 1, NOW);
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
    let signed = dir.sign(&org).unwrap();
    let dir_bytes = signed.encode();
    let verified = SignedDirectory::decode(&dir_bytes)
        .unwrap()
        .verify(&org.public(), None, NOW)
        .unwrap();
    let mut w = World {
        rng,
        org,
        dir: verified,
        dir_bytes,
        a,
        b,
        c,
    };
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        k.set_directory(&w.dir_bytes, &w.org.public(), NOW).unwrap();
    }
    w
}

fn to<'a>(envs: &'a [Envelope], c: &Counselor) -> Vec<&'a Envelope> {
    envs.iter()
        .filter(|e| *e.recipient() == c.mailbox().id())
        .collect()
}

pub(crate) fn deliver(envs: &[Envelope], c: &mut Counselor) -> Vec<Event> {
    let mine: Vec<Envelope> = to(envs, c).into_iter().cloned().collect();
    mine.iter().filter_map(|e| c.receive(e).unwrap()).collect()
}

#[test]
fn whole_conversation() {
    let mut w = world();
    let codename = Codename::generate(Language::En, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, false),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let team = TeamId(1);
    let envs = seeker
        .start(
            &w.dir,
            team,
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "Tengo 17 años y estoy solo.",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    // Default intake: every device of the organisation, not just the team.
    assert_eq!(envs.len(), 3);
    let conv = seeker.mailbox().id();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let ev = deliver(&envs, k);
        assert_eq!(ev, vec![Event::NewConversation { conversation: conv }]);
        let c = k.conversation(&conv).unwrap();
        assert_eq!(
            c.team, team,
            "filed under the team named inside the ciphertext"
        );
        assert_eq!(c.language, Language::Es);
        assert_eq!(c.status, Status::Open);
    }
    // A delivered twice is a duplicate, not a second message.
    let again = to(&envs, &w.a)[0].clone();
    assert_eq!(w.a.receive(&again).unwrap(), None);

    // Ana claims: Ben and Cy see it claimed; Ben cannot reply over her.
    let missing = w.a.missing_bundles(&conv).unwrap();
    assert_eq!(missing.len(), 2);
    let cb = vec![
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let claim = w.a.claim(&conv, &cb, NOW, &mut w.rng).unwrap();
    assert!(w.a.missing_bundles(&conv).unwrap().is_empty());
    for k in [&mut w.b, &mut w.c] {
        let ev = deliver(&claim, k);
        assert_eq!(
            ev,
            vec![Event::StatusChanged {
                conversation: conv,
                status: Status::Claimed(DeviceId(1)),
                by: DeviceId(1)
            }]
        );
    }
    let err = w.b.reply(&conv, "hola", &[], NOW, &mut w.rng).unwrap_err();
    assert_eq!(err, Error::Client(ClientError::ClaimedByOther { by: 1 }));

    // Ana answers: the seeker reads it, colleagues get a copy.
    let reply =
        w.a.reply(&conv, "Estamos aquí para ayudarte.", &[], NOW, &mut w.rng)
            .unwrap();
    assert_eq!(to(&reply, &w.b).len(), 1);
    let seeker_envs: Vec<Envelope> = reply
        .iter()
        .filter(|e| *e.recipient() == conv)
        .cloned()
        .collect();
    assert_eq!(seeker_envs.len(), 1);
    let entry = seeker.receive(&seeker_envs[0]).unwrap().unwrap();
    assert_eq!(entry.author, Author::Counselor(DeviceId(1)));
    assert!(
        matches!(&entry.kind, EntryKind::Text(t) if t.as_str() == "Estamos aquí para ayudarte.")
    );
    for k in [&mut w.b, &mut w.c] {
        let ev = deliver(&reply, k);
        assert!(
            matches!(&ev[..], [Event::Message { entry, .. }] if entry.author == Author::Counselor(DeviceId(1)))
        );
        assert_eq!(k.conversation(&conv).unwrap().history.len(), 2);
    }

    // The seeker leaves; comes back with only the codename and the blob.
    let blob = seeker.save(&mut w.rng).unwrap();
    drop(seeker);
    let again = Codename::parse(&codename.to_zeroizing_string().to_uppercase()).unwrap();
    let secrets2 = again.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::restore(&secrets2, &blob).unwrap();
    assert_eq!(seeker.conversation().unwrap().history.len(), 2);
    let follow = seeker
        .write("¿Qué debo llevar?", &[], NOW, &mut w.rng)
        .unwrap();
    assert_eq!(follow.len(), 3);
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let ev = deliver(&follow, k);
        assert!(
            matches!(&ev[..], [Event::Message { entry, .. }] if entry.author == Author::Seeker)
        );
    }

    // A wrong codename cannot open the blob.
    let other = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    assert!(Seeker::restore(&other, &blob).is_err());

    // Private note: colleagues see it, the seeker gets nothing.
    let note =
        w.a.note(&conv, "Needs shelter info", &[], NOW, &mut w.rng)
            .unwrap();
    assert!(note.iter().all(|e| *e.recipient() != conv));
    assert!(matches!(
        &deliver(&note, &mut w.b)[..],
        [Event::Note { .. }]
    ));

    // Hand-off to Ben: Ben can now answer and refer.
    let hand =
        w.a.hand_off(&conv, DeviceId(2), &[], NOW, &mut w.rng)
            .unwrap();
    deliver(&hand, &mut w.b);
    deliver(&hand, &mut w.c);
    assert_eq!(
        w.b.conversation(&conv).unwrap().status,
        Status::Claimed(DeviceId(2))
    );
    // Ben has sessions with Ana (she started one) but not with Cy yet.
    let missing = w.b.missing_bundles(&conv).unwrap();
    assert_eq!(missing, vec![w.c.mailbox().id()]);
    let cb = vec![bundle_of(&mut w.c, &mut w.rng, true)];
    let refer =
        w.b.refer(
            &conv,
            PartnerId(1),
            "They have beds tonight.",
            &cb,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let s: Vec<Envelope> = refer
        .iter()
        .filter(|e| *e.recipient() == conv)
        .cloned()
        .collect();
    let entry = seeker.receive(&s[0]).unwrap().unwrap();
    assert!(matches!(
        entry.kind,
        EntryKind::Referral {
            partner: PartnerId(1),
            ..
        }
    ));
    assert!(matches!(
        &deliver(&refer, &mut w.a)[..],
        [Event::Message { .. }]
    ));
    assert!(matches!(
        &deliver(&refer, &mut w.c)[..],
        [Event::Message { .. }]
    ));

    // A canned answer saved by Ben reaches Ana and Cy (team-wide) and survives saving.
    let canned =
        w.b.add_canned_answer(
            &conv,
            "Shelter",
            "Call Shelter North tonight.",
            &[],
            NOW,
            &mut w.rng,
        )
        .unwrap();
    assert!(
        canned.iter().all(|e| *e.recipient() != conv),
        "never sent to the seeker"
    );
    for k in [&mut w.a, &mut w.c] {
        let ev = deliver(&canned, k);
        assert!(matches!(
            &ev[..],
            [Event::CannedAnswer {
                by: DeviceId(2),
                ..
            }]
        ));
        assert_eq!(k.canned_answers().len(), 1);
        assert_eq!(
            k.canned_answers()[0].text.as_str(),
            "Call Shelter North tonight."
        );
    }
    assert!(
        w.b.add_canned_answer(&conv, " ", "x", &[], NOW, &mut w.rng)
            .is_err()
    );

    // Resolve, seen by all.
    let res = w.b.resolve(&conv, &[], NOW, &mut w.rng).unwrap();
    deliver(&res, &mut w.a);
    deliver(&res, &mut w.c);
    for k in [&w.a, &w.b, &w.c] {
        assert_eq!(k.conversation(&conv).unwrap().status, Status::Resolved);
    }

    // Counselor state survives save/restore.
    let saved = w.a.encode().unwrap();
    let a2 = Counselor::decode(&saved, &w.org.public()).unwrap();
    assert_eq!(a2.conversation(&conv), w.a.conversation(&conv));
    assert_eq!(a2.canned_answers(), w.a.canned_answers());

    // Delete everything: every device forgets the conversation.
    let del = seeker.request_deletion(&[], NOW, &mut w.rng).unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        assert_eq!(
            deliver(&del, k),
            vec![Event::Deleted { conversation: conv }]
        );
        assert!(k.conversation(&conv).is_none());
    }
}

#[test]
fn colleagues_starting_sessions_at_once_converge() {
    let mut w = world();
    let codename = Codename::generate(Language::En, &mut w.rng);
    let mut seeker = Seeker::new(&codename.derive(w.org.public().as_ed25519()).unwrap());
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let envs = seeker
        .start(
            &w.dir,
            TeamId(2),
            Language::En,
            &crate::intake::IntakeAnswers::none(),
            "hello",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        deliver(&envs, k);
    }
    // Ana and Ben each write a note before seeing the other's: two sessions.
    let ab = vec![
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let ba = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let na = w.a.note(&conv, "from ana", &ab, NOW, &mut w.rng).unwrap();
    let nb = w.b.note(&conv, "from ben", &ba, NOW, &mut w.rng).unwrap();
    assert_eq!(deliver(&nb, &mut w.a).len(), 1);
    assert_eq!(deliver(&na, &mut w.b).len(), 1);
    // Both keep talking and every message still opens.
    for i in 0..4 {
        let x =
            w.a.note(&conv, &format!("a{i}"), &[], NOW, &mut w.rng)
                .unwrap();
        assert_eq!(deliver(&x, &mut w.b).len(), 1);
        let y =
            w.b.note(&conv, &format!("b{i}"), &[], NOW, &mut w.rng)
                .unwrap();
        assert_eq!(deliver(&y, &mut w.a).len(), 1);
    }
}

#[test]
fn outsiders_and_tampering_are_refused_without_changing_state() {
    let mut w = world();
    let mut seeker = Seeker::new(
        &Codename::generate(Language::En, &mut w.rng)
            .derive(w.org.public().as_ed25519())
            .unwrap(),
    );
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let envs = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::Fr,
            &crate::intake::IntakeAnswers::none(),
            "bonjour",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    // A tampered envelope fails and does not create the conversation.
    let original = to(&envs, &w.a)[0].clone();
    let mut ct = original.ciphertext().to_vec();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    let bad = Envelope::from_parts(*original.recipient(), ct).unwrap();
    assert!(w.a.receive(&bad).is_err());
    assert!(w.a.conversation(&conv).is_none());
    // The real one still works afterwards (the one-time prekey was kept).
    assert!(w.a.receive(&original).unwrap().is_some());

    // A stranger (not in the directory) cannot send team events, and a
    // seeker cannot be sent a session start.
    let mut stranger = Counselor::generate(&mut w.rng);
    stranger
        .set_directory(&w.dir_bytes, &w.org.public(), NOW)
        .unwrap();
    assert!(stranger.claim(&conv, &[], NOW, &mut w.rng).is_err());

    // Envelopes addressed elsewhere are refused.
    let for_b = to(&envs, &w.b)[0].clone();
    assert!(w.a.receive(&for_b).is_err());

    // A seeker who has not started cannot write.
    let mut fresh = Seeker::new(
        &Codename::generate(Language::En, &mut w.rng)
            .derive(w.org.public().as_ed25519())
            .unwrap(),
    );
    assert_eq!(
        fresh.write("x", &[], NOW, &mut w.rng).unwrap_err(),
        Error::Client(ClientError::NoConversation)
    );
    // Missing bundle for an intake device: a clear error, nothing sent.
    let err = fresh
        .start(
            &w.dir,
            TeamId(1),
            Language::En,
            &crate::intake::IntakeAnswers::none(),
            "x",
            &bundles[..1],
            NOW,
            &mut w.rng,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Client(ClientError::MissingBundle { .. })
    ));
    assert!(fresh.conversation().is_none());
}

// ---------------------------------------------------------------------------
// Attacks on who a conversation belongs to (PROTOCOL.md §2.4, §6.3).
// ---------------------------------------------------------------------------

/// An opening from `identity` claiming `mailbox` (whose keys it holds), to
/// device `to`, as an `Endpoint` would seal it.
fn opening_from(
    identity: crate::keys::IdentityKeyPair,
    mailbox: crate::keys::MailboxKeyPair,
    to: &mut Counselor,
    rng: &mut ChaCha20Rng,
    text: &str,
) -> Envelope {
    use crate::ids::MessageId;
    use crate::message::{AppMessage, Body, MessageText};
    let bundle = bundle_of(to, rng, false);
    let mut ep = super::endpoint::Endpoint::without_prekeys(identity, mailbox);
    let msg = AppMessage::new(
        MessageId::random(rng),
        NOW,
        Body::Opening {
            team: TeamId(1),
            language: Language::En,
            answers: crate::intake::IntakeAnswers::none(),
            text: MessageText::new(text),
        },
    );
    let p = to.public();
    ep.seal_to(&p.identity, &p.mailbox, Some(&bundle), &msg, rng)
        .unwrap()
}

/// Re-addresses a session start to another mailbox (header and sender info
/// changed consistently, re-sealed): what the relay or a removed device,
/// knowing only the victim's *public* mailbox keys, can forge.
fn claiming(
    env: &Envelope,
    sender_mailbox: &crate::keys::MailboxKeyPair,
    victim: crate::keys::MailboxPublic,
    to: &Counselor,
    rng: &mut ChaCha20Rng,
) -> Envelope {
    use crate::pqxdh::InitialHeader;
    use crate::sealed::{self, SealedBody, SealedContent, SenderInfo};
    // The forger made this content itself; the test reads it back with the
    // recipient's key only for convenience.
    let _ = sender_mailbox;
    let content = sealed::open(to.mailbox(), env).unwrap();
    let SealedBody::PreKey {
        header,
        ratchet_message,
    } = content.body
    else {
        panic!("a session start");
    };
    let mut h = header.encode();
    h[65..97].copy_from_slice(&victim.auth.0);
    h[97..129].copy_from_slice(&victim.seal.0);
    let forged = SealedContent {
        sender: SenderInfo {
            identity: content.sender.identity,
            mailbox: victim,
        },
        body: SealedBody::PreKey {
            header: Box::new(InitialHeader::decode(&h).unwrap()),
            ratchet_message,
        },
    };
    sealed::seal(&to.public().mailbox, &forged, rng).unwrap()
}

#[test]
fn forged_opening_naming_a_victims_mailbox_changes_nothing() {
    let mut w = world();
    let victim = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    // The victim's conversation exists.
    let genuine = opening_from(
        victim.identity_keys(),
        victim.mailbox_keys(),
        &mut w.a,
        &mut w.rng,
        "I need help.",
    );
    w.a.receive(&genuine).unwrap();
    let before = w.a.encode().unwrap();
    // A forger with its own identity and mailbox names the victim's mailbox.
    let forger_mb = crate::keys::MailboxKeyPair::generate(&mut w.rng);
    let own = opening_from(
        crate::keys::IdentityKeyPair::generate(&mut w.rng),
        crate::keys::MailboxKeyPair::decode(&forger_mb.encode()).unwrap(),
        &mut w.a,
        &mut w.rng,
        "Forget everything I said.",
    );
    let forged = claiming(
        &own,
        &forger_mb,
        victim.mailbox_keys().public(),
        &w.a,
        &mut w.rng,
    );
    let err = w.a.receive(&forged).unwrap_err();
    assert_eq!(err, Error::Pqxdh(crate::pqxdh::PqxdhError::BadMailboxProof));
    assert!(
        *w.a.encode().unwrap() == *before,
        "a refused opening changes nothing"
    );
    let conv = w.a.conversation(&victim.mailbox_keys().id()).unwrap();
    assert_eq!(conv.history.len(), 1);
}

#[test]
fn relay_delivering_a_forged_opening_first_cannot_take_the_conversation_over() {
    let mut w = world();
    let victim = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    let forger_mb = crate::keys::MailboxKeyPair::generate(&mut w.rng);
    let own = opening_from(
        crate::keys::IdentityKeyPair::generate(&mut w.rng),
        crate::keys::MailboxKeyPair::decode(&forger_mb.encode()).unwrap(),
        &mut w.a,
        &mut w.rng,
        "first, forged",
    );
    let forged = claiming(
        &own,
        &forger_mb,
        victim.mailbox_keys().public(),
        &w.a,
        &mut w.rng,
    );
    // The forged opening arrives before the seeker's own.
    assert!(w.a.receive(&forged).is_err());
    assert!(w.a.conversation(&victim.mailbox_keys().id()).is_none());
    let genuine = opening_from(
        victim.identity_keys(),
        victim.mailbox_keys(),
        &mut w.a,
        &mut w.rng,
        "I need help.",
    );
    w.a.receive(&genuine).unwrap();
    let conv = w.a.conversation(&victim.mailbox_keys().id()).unwrap();
    assert_eq!(conv.seeker, victim.identity_keys().public());
    assert_eq!(conv.history.len(), 1);
}

#[test]
fn an_opening_from_another_identity_for_a_known_mailbox_is_refused() {
    let mut w = world();
    let victim = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    let genuine = opening_from(
        victim.identity_keys(),
        victim.mailbox_keys(),
        &mut w.a,
        &mut w.rng,
        "I need help.",
    );
    w.a.receive(&genuine).unwrap();
    let before = w.a.encode().unwrap();
    // Even holding the mailbox key, another identity cannot write into the
    // conversation (conversations are identity and mailbox together).
    let other = opening_from(
        crate::keys::IdentityKeyPair::generate(&mut w.rng),
        victim.mailbox_keys(),
        &mut w.a,
        &mut w.rng,
        "someone else",
    );
    assert_eq!(
        w.a.receive(&other).unwrap_err(),
        Error::Client(ClientError::WrongSeeker)
    );
    assert!(
        *w.a.encode().unwrap() == *before,
        "a refused opening changes nothing"
    );
}

// ---------------------------------------------------------------------------
// Forward secrecy of the opening (PROTOCOL.md §2.3, §6.3): what a device
// state seized later still opens.
// ---------------------------------------------------------------------------

/// The attack: a compelled relay withholds one-time prekeys (so a seeker's
/// opening rests on the signed prekeys alone), logs the opening, and the
/// device's state is seized later. Once the device has rotated its signed
/// prekeys and the grace period has passed, the seized state no longer
/// holds the secrets the logged opening needs; within the grace, it still
/// opens (so openings sealed to the previous bundle while it was still
/// handed out are not lost).
#[test]
fn a_device_state_seized_after_rotation_and_grace_cannot_open_a_logged_opening() {
    use super::endpoint::{SIGNED_PREKEY_GRACE_SECS, SIGNED_PREKEY_ROTATION_SECS};

    let mut w = world();
    // The device's first sync dates its signed prekeys: bundle v1.
    assert!(!w.a.rotate_prekeys_if_due(NOW, &mut w.rng).unwrap());
    let v1 = w.a.prekey_bundle().unwrap();
    let mut seeker = Seeker::new(
        &Codename::generate(Language::En, &mut w.rng)
            .derive(w.org.public().as_ed25519())
            .unwrap(),
    );
    // No one-time prekeys handed out, of either kind.
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, false),
        bundle_of(&mut w.b, &mut w.rng, false),
        bundle_of(&mut w.c, &mut w.rng, false),
    ];
    let envs = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "Tengo 17 años y estoy solo.",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let conv = seeker.mailbox().id();
    // The relay logs the opening and never delivers it.
    let logged = to(&envs, &w.a)[0].clone();

    // A week later the device's sync replaces bundle v1 with v2.
    let rotated_at = UnixTime(NOW.0 + SIGNED_PREKEY_ROTATION_SECS);
    assert!(
        !w.a.rotate_prekeys_if_due(UnixTime(rotated_at.0 - 1), &mut w.rng)
            .unwrap()
    );
    assert!(w.a.rotate_prekeys_if_due(rotated_at, &mut w.rng).unwrap());
    let v2 = w.a.prekey_bundle().unwrap();
    assert_ne!(v2.signed_prekey_id, v1.signed_prekey_id);
    assert_ne!(v2.signed_prekey, v1.signed_prekey);
    assert_ne!(v2.pq_prekey, v1.pq_prekey);
    assert_eq!(w.a.prekey_status().unwrap().signed_prekey_generations, 2);
    let seize = |c: &Counselor| {
        Counselor::decode(&c.encode().unwrap(), &w.org.public()).expect("a saved state decodes")
    };

    // Seized within the grace period: v1 is still there, the logged
    // opening still opens (this is the window the threat model states).
    let in_grace = UnixTime(rotated_at.0 + SIGNED_PREKEY_GRACE_SECS - 1);
    assert!(!w.a.expire_prekeys(in_grace).unwrap());
    let mut seized = seize(&w.a);
    assert_eq!(
        seized.receive(&logged).unwrap(),
        Some(Event::NewConversation { conversation: conv })
    );

    // Seized once the grace has passed: v1's secrets are gone.
    let after_grace = UnixTime(rotated_at.0 + SIGNED_PREKEY_GRACE_SECS);
    assert!(w.a.expire_prekeys(after_grace).unwrap());
    assert_eq!(w.a.prekey_status().unwrap().signed_prekey_generations, 1);
    let mut seized = seize(&w.a);
    let err = seized.receive(&logged).unwrap_err();
    assert_eq!(
        err,
        Error::Client(ClientError::UnknownPrekey {
            which: "signed",
            id: v1.signed_prekey_id
        })
    );
    assert!(seized.conversation(&conv).is_none());
    // Nor can the device itself.
    assert!(w.a.receive(&logged).is_err());

    // The device is fine: an opening sealed to v2 opens.
    let mut later = Seeker::new(
        &Codename::generate(Language::En, &mut w.rng)
            .derive(w.org.public().as_ed25519())
            .unwrap(),
    );
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, false),
        bundle_of(&mut w.b, &mut w.rng, false),
        bundle_of(&mut w.c, &mut w.rng, false),
    ];
    let envs = later
        .start(
            &w.dir,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "hola",
            &bundles,
            after_grace,
            &mut w.rng,
        )
        .unwrap();
    let mut seized = seize(&w.a);
    assert!(matches!(
        seized.receive(to(&envs, &w.a)[0]).unwrap(),
        Some(Event::NewConversation { .. })
    ));
}

/// A one-time prekey the relay handed out to someone who never used it (a
/// drainer, or a relay logging the opening and withholding it) cannot be
/// known as spent by the device: its secret, of either kind, is deleted
/// once it is `ONE_TIME_PREKEY_MAX_AGE_SECS` old, and an opening made with
/// it then no longer opens.
#[test]
fn one_time_prekeys_handed_out_but_never_used_are_deleted_at_their_maximum_age() {
    use super::endpoint::ONE_TIME_PREKEY_MAX_AGE_SECS;

    let mut w = world();
    assert!(!w.a.rotate_prekeys_if_due(NOW, &mut w.rng).unwrap());
    let mut seeker = Seeker::new(
        &Codename::generate(Language::En, &mut w.rng)
            .derive(w.org.public().as_ed25519())
            .unwrap(),
    );
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let envs = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "hola",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    let logged = to(&envs, &w.a)[0].clone();
    let status = w.a.prekey_status().unwrap();
    assert_eq!((status.one_time, status.one_time_pq), (1, 1));
    // Within its maximum age (and with the signed prekeys never rotated,
    // a device that did not sync), the secrets are kept...
    let old = UnixTime(NOW.0 + ONE_TIME_PREKEY_MAX_AGE_SECS - 1);
    assert!(!w.a.expire_prekeys(old).unwrap());
    let mut copy = Counselor::decode(&w.a.encode().unwrap(), &w.org.public()).unwrap();
    assert!(copy.receive(&logged).unwrap().is_some());
    // ...then both are deleted, used or not.
    let expired = UnixTime(NOW.0 + ONE_TIME_PREKEY_MAX_AGE_SECS);
    assert!(w.a.expire_prekeys(expired).unwrap());
    let status = w.a.prekey_status().unwrap();
    assert_eq!((status.one_time, status.one_time_pq), (0, 0));
    assert!(matches!(
        w.a.receive(&logged).unwrap_err(),
        Error::Client(ClientError::UnknownPrekey { .. })
    ));
    // The current signed prekeys are never deleted, however old.
    assert_eq!(status.signed_prekey_generations, 1);
    assert!(w.a.prekey_bundle().is_ok());
}

// ---------------------------------------------------------------------------
// Attacks with the directory: a removed (seized) device, a relay serving an
// old or expired directory (PROTOCOL.md §5.2, §6.2, §6.3).
// ---------------------------------------------------------------------------

/// The administrator's next directory: `edit` applied to `dir`'s content,
/// serial + 1, issued at `now`; verified as a client at `now` would after
/// `dir`.
fn next_directory(
    w: &World,
    dir: &VerifiedDirectory,
    now: UnixTime,
    edit: impl FnOnce(&mut Directory),
) -> (VerifiedDirectory, Vec<u8>) {
    let mut next = dir.directory().successor(now).unwrap();
    edit(&mut next);
    let bytes = next.sign(&w.org).unwrap().encode();
    let verified = SignedDirectory::decode(&bytes)
        .unwrap()
        .verify(&w.org.public(), Some(&dir.version()), now)
        .unwrap();
    (verified, bytes)
}

/// A seeker who opened a conversation with team 1 (every device: a, b, c),
/// each device holding it.
pub(crate) fn seeker_with_conversation(w: &mut World) -> (Seeker, crate::codename::SeekerSecrets) {
    let secrets = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let envs = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::Es,
            &crate::intake::IntakeAnswers::none(),
            "Necesito ayuda.",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        deliver(&envs, k);
    }
    assert_eq!(seeker.directory_version(), Some(w.dir.version()));
    (seeker, secrets)
}

/// The devices the seeker writes to, as a sorted set of ids (their order on
/// the wire is the canonical mailbox order, checked in directory.rs).
fn recipients(seeker: &Seeker) -> Vec<u32> {
    let mut ids: Vec<u32> = seeker
        .conversation()
        .unwrap()
        .counselors
        .iter()
        .map(|c| c.device.0)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_removed_devices_message_to_the_seeker_is_refused() {
    let mut w = world();
    let (mut seeker, secrets) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    // Ben's device is seized; whoever holds it answers the seeker.
    let colleagues = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let from_ben: Vec<Envelope> =
        w.b.reply(&conv, "Soy Ben.", &colleagues, NOW, &mut w.rng)
            .unwrap()
            .into_iter()
            .filter(|e| *e.recipient() == conv)
            .collect();
    assert_eq!(from_ben.len(), 1);
    // The administrator removes it; the seeker's next visit takes the
    // directory and rebuilds its recipients.
    let (v2, _) = next_directory(&w, &w.dir, NOW, |d| assert!(d.remove_device(DeviceId(2))));
    assert_eq!(recipients(&seeker), vec![1, 2, 3]);
    assert!(seeker.accept_directory(&v2).unwrap(), "a newer version");
    assert_eq!(recipients(&seeker), vec![1, 3]);
    // Ben's message is refused, and changes nothing.
    assert_eq!(
        seeker.receive(&from_ben[0]).unwrap_err(),
        Error::Client(ClientError::UnlistedSender)
    );
    assert_eq!(seeker.conversation().unwrap().history.len(), 1);
    assert_eq!(
        seeker.receive(&from_ben[0]).unwrap_err(),
        Error::Client(ClientError::UnlistedSender),
        "refused again: nothing was consumed"
    );
    // Ana's still reaches the seeker.
    let colleagues = vec![
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let from_ana: Vec<Envelope> =
        w.a.reply(&conv, "Soy Ana.", &colleagues, NOW, &mut w.rng)
            .unwrap()
            .into_iter()
            .filter(|e| *e.recipient() == conv)
            .collect();
    let entry = seeker.receive(&from_ana[0]).unwrap().unwrap();
    assert_eq!(entry.author, Author::Counselor(DeviceId(1)));
    // The next message goes to Ana and Cy only.
    let next = seeker.write("¿Hay alguien?", &[], NOW, &mut w.rng).unwrap();
    assert_eq!(next.len(), 2);
    assert!(to(&next, &w.b).is_empty(), "nothing for the removed device");
    assert_eq!(to(&next, &w.a).len(), 1);
    assert_eq!(to(&next, &w.c).len(), 1);
    // Saved and restored, the seeker keeps the version it accepted.
    let blob = seeker.save(&mut w.rng).unwrap();
    let restored = Seeker::restore(&secrets, &blob).unwrap();
    assert_eq!(restored.directory_version(), Some(v2.version()));
    assert_eq!(recipients(&restored), vec![1, 3]);
    // Listed again (the device recovered and re-added), the very same
    // message opens: refusing it had not touched the session.
    let (v3, _) = next_directory(&w, &v2, NOW, |d| {
        let ben = w.dir.device(DeviceId(2)).unwrap().clone();
        d.add_device(TeamId(1), ben).unwrap();
    });
    assert!(seeker.accept_directory(&v3).unwrap());
    let entry = seeker.receive(&from_ben[0]).unwrap().unwrap();
    assert_eq!(entry.author, Author::Counselor(DeviceId(2)));
}

#[test]
fn the_seeker_refuses_a_rolled_back_directory() {
    let mut w = world();
    let (mut seeker, _) = seeker_with_conversation(&mut w);
    let (v2, _) = next_directory(&w, &w.dir, NOW, |d| assert!(d.remove_device(DeviceId(2))));
    assert!(seeker.accept_directory(&v2).unwrap());
    // The same directory again is no change.
    assert!(!seeker.accept_directory(&v2).unwrap());
    // The version before it (still listing the removed device) is refused,
    // and the recipients stay those of version 2.
    assert_eq!(
        seeker.accept_directory(&w.dir).unwrap_err(),
        Error::Directory(crate::directory::DirectoryError::Rollback {
            got: 1,
            previous: 2
        })
    );
    assert_eq!(recipients(&seeker), vec![1, 3]);
    assert_eq!(seeker.directory_version(), Some(v2.version()));
    // So is another directory under serial 2.
    let (other2, _) = next_directory(&w, &w.dir, NOW, |d| d.partners.clear());
    assert_eq!(
        seeker.accept_directory(&other2).unwrap_err(),
        Error::Directory(crate::directory::DirectoryError::ConflictingSerial { serial: 2 })
    );
}

#[test]
fn a_device_added_later_is_sent_the_conversation_with_the_seekers_next_message() {
    let mut w = world();
    let (mut seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    let mut dee = Counselor::generate(&mut w.rng);
    let (v2, bytes) = next_directory(&w, &w.dir, NOW, |d| {
        d.add_device(
            TeamId(1),
            DeviceEntry {
                id: DeviceId(4),
                label: "dee".into(),
                identity: dee.public().identity,
                mailbox: dee.public().mailbox,
            },
        )
        .unwrap();
    });
    dee.set_directory(&bytes, &w.org.public(), NOW).unwrap();
    assert!(seeker.accept_directory(&v2).unwrap());
    assert_eq!(recipients(&seeker), vec![1, 2, 3, 4]);
    assert_eq!(seeker.missing_bundles(), vec![dee.mailbox().id()]);
    // Without its bundle (no keys uploaded yet) the new device is left out.
    let without = seeker.write("uno", &[], NOW, &mut w.rng).unwrap();
    assert_eq!(without.len(), 3);
    assert!(to(&without, &dee).is_empty());
    // With it, the new device gets a session and the conversation: the
    // message arrives as its opening.
    let bundle = bundle_of(&mut dee, &mut w.rng, true);
    let with = seeker.write("dos", &[bundle], NOW, &mut w.rng).unwrap();
    assert_eq!(with.len(), 4);
    assert_eq!(
        deliver(&with, &mut dee),
        vec![Event::NewConversation { conversation: conv }]
    );
    let c = dee.conversation(&conv).unwrap();
    assert_eq!((c.team, c.language), (TeamId(1), Language::Es));
    assert!(matches!(&c.history[0].kind, EntryKind::Text(t) if t.as_str() == "dos"));
    assert!(seeker.missing_bundles().is_empty());
    // Later messages are plain messages of that conversation.
    let three = seeker.write("tres", &[], NOW, &mut w.rng).unwrap();
    let ev = deliver(&three, &mut dee);
    assert!(matches!(&ev[..], [Event::Message { conversation, .. }] if *conversation == conv));
    // The others got every message once, as messages.
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let mut all = without.clone();
        all.extend(with.iter().cloned());
        all.extend(three.iter().cloned());
        let ev = deliver(&all, k);
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|e| matches!(e, Event::Message { .. })));
    }
}

#[test]
fn a_removed_devices_team_event_is_refused() {
    let mut w = world();
    let (seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    // Ben's seized device, still holding the old directory, claims.
    let colleagues = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let claim = w.b.claim(&conv, &colleagues, NOW, &mut w.rng).unwrap();
    let (_, bytes) = next_directory(&w, &w.dir, NOW, |d| assert!(d.remove_device(DeviceId(2))));
    w.a.set_directory(&bytes, &w.org.public(), NOW).unwrap();
    let before = w.a.encode().unwrap();
    let for_a = to(&claim, &w.a)[0].clone();
    assert_eq!(
        w.a.receive(&for_a).unwrap_err(),
        Error::Client(ClientError::UnlistedSender)
    );
    assert!(
        *w.a.encode().unwrap() == *before,
        "no session kept, no one-time prekey spent, no status changed"
    );
    assert_eq!(w.a.conversation(&conv).unwrap().status, Status::Open);
    // Cy, who has not fetched the new directory yet, still takes it.
    assert_eq!(deliver(&claim, &mut w.c).len(), 1);
}

#[test]
fn an_expired_directory_is_refused() {
    let mut w = world();
    let (seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    let expiry = w.dir.expires_at();
    assert_eq!(
        expiry.0,
        NOW.0 + crate::directory::DEFAULT_DIRECTORY_LIFETIME_SECS
    );
    let expired = Error::Directory(crate::directory::DirectoryError::Expired {
        expires_at: expiry.0,
    });
    // A device offered the directory it holds, after its expiry, refuses it
    // — and refuses to act on the one it holds.
    assert_eq!(
        w.a.set_directory(&w.dir_bytes, &w.org.public(), expiry)
            .unwrap_err(),
        expired
    );
    let bundles = vec![
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let before = w.a.encode().unwrap();
    assert_eq!(
        w.a.claim(&conv, &bundles, expiry, &mut w.rng).unwrap_err(),
        expired
    );
    assert_eq!(
        w.a.reply(&conv, "hola", &bundles, expiry, &mut w.rng)
            .unwrap_err(),
        expired
    );
    assert!(*w.a.encode().unwrap() == *before, "nothing sealed");
    // The state still opens (the next sync replaces the directory).
    let again = Counselor::decode(&before, &w.org.public()).unwrap();
    assert_eq!(again.directory().unwrap().expires_at(), expiry);
    // A seeker cannot be handed one either: verification refuses it.
    assert_eq!(
        SignedDirectory::decode(&w.dir_bytes)
            .unwrap()
            .verify(&w.org.public(), seeker.directory_version().as_ref(), expiry)
            .unwrap_err(),
        crate::directory::DirectoryError::Expired {
            expires_at: expiry.0
        }
    );
    // A fresh one, signed later, is taken and acted on.
    let (_, bytes) = next_directory(&w, &w.dir, expiry, |_| {});
    w.a.set_directory(&bytes, &w.org.public(), expiry).unwrap();
    assert!(w.a.claim(&conv, &bundles, expiry, &mut w.rng).is_ok());
}

/// The replayed-opening negative vector (`crate::vectors`): a counselor
/// device's state (§6.3) that holds the tombstone of a deleted
/// conversation, its organisation key, and the conversation's logged
/// opening, sent without one-time prekeys.
pub(crate) fn replayed_opening_case() -> (
    zeroize::Zeroizing<Vec<u8>>,
    crate::directory::OrgPublicKey,
    Vec<u8>,
) {
    let mut w = world();
    let secrets = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, false),
        bundle_of(&mut w.b, &mut w.rng, false),
        bundle_of(&mut w.c, &mut w.rng, false),
    ];
    let opening = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::En,
            &crate::intake::IntakeAnswers::none(),
            "help",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    deliver(&opening, &mut w.a);
    let delete = seeker.request_deletion(&[], NOW, &mut w.rng).unwrap();
    deliver(&delete, &mut w.a);
    let replay = to(&opening, &w.a)[0].encode();
    (w.a.encode().unwrap(), w.org.public(), replay)
}

/// The attack: the relay logged a seeker's opening (sent without a one-time
/// prekey, which the relay can withhold) and replays it after the seeker
/// deleted everything, to bring the conversation back onto the devices.
#[test]
fn a_replayed_opening_cannot_bring_back_a_deleted_conversation() {
    let mut w = world();
    let secrets = Codename::generate(Language::En, &mut w.rng)
        .derive(w.org.public().as_ed25519())
        .unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, false),
        bundle_of(&mut w.b, &mut w.rng, false),
        bundle_of(&mut w.c, &mut w.rng, false),
    ];
    let opening = seeker
        .start(
            &w.dir,
            TeamId(1),
            Language::En,
            &crate::intake::IntakeAnswers::none(),
            "help",
            &bundles,
            NOW,
            &mut w.rng,
        )
        .unwrap();
    deliver(&opening, &mut w.a);
    let conv = seeker.mailbox().id();
    assert!(w.a.conversation(&conv).is_some());
    let delete = seeker.request_deletion(&[], NOW, &mut w.rng).unwrap();
    deliver(&delete, &mut w.a);
    assert!(w.a.conversation(&conv).is_none());
    let before = w.a.encode().unwrap();
    for env in to(&opening, &w.a) {
        assert_eq!(
            w.a.receive(env).unwrap_err(),
            Error::Client(ClientError::Deleted)
        );
    }
    assert!(w.a.conversation(&conv).is_none(), "nothing came back");
    // The tombstone survives a save and a restore.
    let again = Counselor::decode(&w.a.encode().unwrap(), &w.org.public()).unwrap();
    assert!(*again.encode().unwrap() == *before);
}

/// Issue 17, item 5: the relay stores the seeker's state and serves an old
/// copy. The restored sessions stand at chain positions already used (the
/// counselor devices deleted those keys). The first message after the
/// restore goes on new sessions, so it is read, and it reuses no key.
#[test]
fn a_seeker_state_rolled_back_by_the_relay_still_gets_its_next_message_read() {
    use crate::sealed::{self, SealedBody};
    let mut w = world();
    let (mut seeker, secrets) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    // A reply, so the sessions are established (plain ratchet messages).
    let colleagues = vec![
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    let reply =
        w.a.reply(&conv, "¿Dónde está?", &colleagues, NOW, &mut w.rng)
            .unwrap();
    for env in &reply {
        if *env.recipient() == conv {
            seeker.receive(env).unwrap();
        }
    }
    let old_blob = seeker.save(&mut w.rng).unwrap();
    let live = Seeker::restore(&secrets, &old_blob).unwrap();
    // Visit one: the seeker writes; every device reads it.
    let mut visit_one = live;
    let bundles: Vec<FetchedBundle> = [&mut w.a, &mut w.b, &mut w.c]
        .into_iter()
        .map(|k| bundle_of(k, &mut w.rng, true))
        .collect();
    assert_eq!(visit_one.missing_bundles().len(), 3);
    let first = visit_one
        .write("I am seventeen and alone here.", &bundles, NOW, &mut w.rng)
        .unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let ev = deliver(&first, k);
        assert!(matches!(&ev[..], [Event::Message { conversation, .. }] if *conversation == conv));
    }
    // Visit two: the relay serves the older blob again.
    let mut rolled_back = Seeker::restore(&secrets, &old_blob).unwrap();
    assert_eq!(
        rolled_back.missing_bundles().len(),
        3,
        "a restored state opens new sessions"
    );
    let bundles: Vec<FetchedBundle> = [&mut w.a, &mut w.b, &mut w.c]
        .into_iter()
        .map(|k| bundle_of(k, &mut w.rng, true))
        .collect();
    let second = rolled_back
        .write("my aunt lives in Montreal, QC.", &bundles, NOW, &mut w.rng)
        .unwrap();
    assert!(rolled_back.missing_bundles().is_empty());
    // Both arrive, at every device, in the one conversation.
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let ev = deliver(&second, k);
        assert!(
            matches!(&ev[..], [Event::Message { conversation, .. }] if *conversation == conv),
            "the message from the rolled-back state is read: {ev:?}"
        );
        let texts: Vec<String> = k
            .conversation(&conv)
            .unwrap()
            .history
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Text(t) => Some(t.as_str().to_owned()),
                _ => None,
            })
            .collect();
        assert!(texts.contains(&"I am seventeen and alone here.".to_owned()));
        assert!(texts.contains(&"my aunt lives in Montreal, QC.".to_owned()));
    }
    // No key was reused: each message started its own session (its own
    // PQXDH secret and ratchet), so neither ratchet message shares a
    // message key with the other.
    let header_of = |env: &Envelope| match sealed::open(w.a.mailbox(), env).unwrap().body {
        SealedBody::PreKey { header, .. } => header.encode(),
        SealedBody::Ratchet { .. } => panic!("sent on a restored session"),
    };
    let (h1, h2) = (
        header_of(to(&first, &w.a)[0]),
        header_of(to(&second, &w.a)[0]),
    );
    assert_ne!(h1, h2, "two different session starts");
    // Messages after the first on a new session are sent on it, and the
    // counselor's reply goes there and is read.
    let third = rolled_back.write("gracias", &[], NOW, &mut w.rng).unwrap();
    assert_eq!(deliver(&third, &mut w.a).len(), 1);
    let reply =
        w.a.reply(&conv, "Le escribimos mañana.", &[], NOW, &mut w.rng)
            .unwrap();
    let got: Vec<_> = reply
        .iter()
        .filter(|e| *e.recipient() == conv)
        .filter_map(|e| rolled_back.receive(e).unwrap())
        .collect();
    assert_eq!(got.len(), 1);
}

/// Without a bundle (the relay withholds it) a restored state falls back to
/// its restored session; the counselor refuses the reused position as a
/// replay and nothing is readable from it (the body key is salted per
/// message: `ratchet::tests::a_rolled_back_state_never_reuses_a_body_key_with_a_nonce`).
#[test]
fn a_relay_withholding_bundles_from_a_rolled_back_seeker_gets_only_a_refused_replay() {
    let mut w = world();
    let (mut seeker, secrets) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    let old_blob = seeker.save(&mut w.rng).unwrap();
    let first = seeker.write("uno", &[], NOW, &mut w.rng).unwrap();
    assert_eq!(deliver(&first, &mut w.a).len(), 1);
    let mut rolled_back = Seeker::restore(&secrets, &old_blob).unwrap();
    let second = rolled_back.write("dos", &[], NOW, &mut w.rng).unwrap();
    assert_eq!(second.len(), 3, "still written to every device");
    let before = w.a.encode().unwrap();
    for env in to(&second, &w.a) {
        assert_eq!(w.a.receive(env).unwrap(), None, "dropped as a replay");
    }
    assert!(*w.a.encode().unwrap() == *before);
    assert_eq!(w.a.conversation(&conv).unwrap().history.len(), 2);
}

/// Bundles of the colleagues device `from` (0 Ana, 1 Ben, 2 Cy) has no
/// session with yet for `conv`.
pub(crate) fn missing_for(
    w: &mut World,
    from: usize,
    conv: &crate::ids::MailboxId,
) -> Vec<FetchedBundle> {
    let missing = [&w.a, &w.b, &w.c][from].missing_bundles(conv).unwrap();
    let mut out = Vec::new();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        if missing.contains(&k.mailbox().id()) {
            out.push(bundle_of(k, &mut w.rng, true));
        }
    }
    out
}

#[test]
fn a_seekers_message_on_a_resolved_conversation_opens_it_again_on_every_device() {
    let mut w = world();
    let (mut seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        k.mark_read(&conv);
    }
    // Ben resolves; everyone sees it resolved.
    let later = UnixTime(NOW.0 + 60);
    let bundles = missing_for(&mut w, 1, &conv);
    let res = w.b.resolve(&conv, &bundles, later, &mut w.rng).unwrap();
    deliver(&res, &mut w.a);
    deliver(&res, &mut w.c);
    // The seeker writes again afterwards: open again, unread, and said so.
    let follow = seeker
        .write(
            "Sigo aquí, ¿me ayudan?",
            &[],
            UnixTime(NOW.0 + 120),
            &mut w.rng,
        )
        .unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let ev = deliver(&follow, k);
        assert!(
            matches!(&ev[..], [Event::Message { reopened: true, entry, .. }] if entry.author == Author::Seeker),
            "{ev:?}"
        );
        let c = k.conversation(&conv).unwrap();
        assert_eq!(c.status, Status::Open);
        assert!(c.unread);
    }
    // The same message delivered again changes nothing.
    w.a.mark_read(&conv);
    let again = to(&follow, &w.a)[0].clone();
    assert_eq!(w.a.receive(&again).unwrap(), None);
    assert!(!w.a.conversation(&conv).unwrap().unread);
}

#[test]
fn a_resolution_crossing_the_seekers_next_message_leaves_every_device_agreeing() {
    let mut w = world();
    let (mut seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    // Ben resolves at +60 without having seen the seeker's message of +180
    // (times are kept to the minute);
    // Ana gets the seeker's message first, Cy the resolution first.
    let bundles = missing_for(&mut w, 1, &conv);
    let res =
        w.b.resolve(&conv, &bundles, UnixTime(NOW.0 + 60), &mut w.rng)
            .unwrap();
    let follow = seeker
        .write("¿Hola?", &[], UnixTime(NOW.0 + 180), &mut w.rng)
        .unwrap();
    deliver(&follow, &mut w.a);
    deliver(&res, &mut w.a);
    deliver(&res, &mut w.c);
    deliver(&follow, &mut w.c);
    deliver(&follow, &mut w.b);
    for k in [&w.a, &w.b, &w.c] {
        let c = k.conversation(&conv).unwrap();
        assert_eq!(
            c.status,
            Status::Open,
            "the seeker's last message is unanswered"
        );
        assert!(c.unread);
    }
    // A resolution newer than the seeker's last message holds everywhere.
    let bundles = missing_for(&mut w, 0, &conv);
    let res =
        w.a.resolve(&conv, &bundles, UnixTime(NOW.0 + 240), &mut w.rng)
            .unwrap();
    deliver(&res, &mut w.b);
    deliver(&res, &mut w.c);
    for k in [&w.a, &w.b, &w.c] {
        assert_eq!(k.conversation(&conv).unwrap().status, Status::Resolved);
    }
}

/// Intake answers travel inside the opening, are kept with the
/// conversation (and across a save), are refused when they do not fit the
/// team's questions, and order and filter the inbox (issue 20).
#[test]
fn intake_answers_travel_and_order_the_inbox() {
    use crate::client::inbox::{InboxOrder, IntakeFilter};
    use crate::intake::{Answer, FOR_WHOM_SELF, FOR_WHOM_SOMEONE_ELSE, IntakeAnswers, QuestionId};
    let mut w = world();
    let q = QuestionId;
    // (answers, minute): a helper for an urgent minor, an adult writing
    // for themself with a low urgency, a seeker who skipped everything,
    // and one who declined the minor question.
    let cases = [
        (
            vec![
                (q(1), Answer::Choice(FOR_WHOM_SOMEONE_ELSE)),
                (q(2), Answer::YesNo(true)),
                (q(6), Answer::Choice(3)),
            ],
            1,
        ),
        (
            vec![
                (q(1), Answer::Choice(FOR_WHOM_SELF)),
                (q(2), Answer::YesNo(false)),
                (q(6), Answer::Choice(1)),
            ],
            3,
        ),
        (vec![], 4),
        (vec![(q(2), Answer::Declined), (q(6), Answer::Choice(2))], 2),
    ];
    let mut convs = Vec::new();
    for (answers, minute) in cases {
        let answers = IntakeAnswers::new(answers).unwrap();
        let codename = Codename::generate(Language::En, &mut w.rng);
        let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
        let mut seeker = Seeker::new(&secrets);
        let bundles = vec![
            bundle_of(&mut w.a, &mut w.rng, true),
            bundle_of(&mut w.b, &mut w.rng, true),
            bundle_of(&mut w.c, &mut w.rng, true),
        ];
        let at = UnixTime(NOW.0 + 60 * minute);
        let envs = seeker
            .start(
                &w.dir,
                TeamId(1),
                Language::Ht,
                &answers,
                "Bonjou.",
                &bundles,
                at,
                &mut w.rng,
            )
            .unwrap();
        assert_eq!(seeker.conversation().unwrap().answers, answers);
        deliver(&envs, &mut w.a);
        let id = seeker.mailbox().id();
        assert_eq!(w.a.conversation(&id).unwrap().answers, answers);
        convs.push(id);
    }
    // Kept across a save of the device.
    let back = Counselor::decode(&w.a.encode().unwrap(), &w.org.public()).unwrap();
    for id in &convs {
        assert_eq!(
            back.conversation(id).unwrap().answers,
            w.a.conversation(id).unwrap().answers
        );
    }
    let s = w.a.intake_summary(&convs[0], Language::En).unwrap();
    assert_eq!(s.for_someone_else, Some(true));
    assert_eq!(s.minor, Some(true));
    assert_eq!(s.urgent, Some(true));
    assert!(s.lines[1].prompt.contains("the person you are helping"));

    let all = IntakeFilter::default();
    let c = &convs;
    assert_eq!(
        w.a.inbox(InboxOrder::Newest, &all),
        vec![c[2], c[1], c[3], c[0]]
    );
    assert_eq!(
        w.a.inbox(InboxOrder::MinorsFirst, &all),
        vec![c[0], c[2], c[1], c[3]]
    );
    assert_eq!(
        w.a.inbox(InboxOrder::UrgentFirst, &all),
        vec![c[0], c[3], c[1], c[2]]
    );
    let only = |f: IntakeFilter| w.a.inbox(InboxOrder::Newest, &f);
    assert_eq!(
        only(IntakeFilter {
            for_someone_else: true,
            ..all
        }),
        vec![c[0]]
    );
    assert_eq!(
        only(IntakeFilter {
            minors: true,
            ..all
        }),
        vec![c[0]]
    );
    assert_eq!(
        only(IntakeFilter {
            urgent: true,
            ..all
        }),
        vec![c[0]]
    );
    assert_eq!(
        InboxOrder::from_name("urgent-first"),
        Some(InboxOrder::UrgentFirst)
    );
    assert_eq!(InboxOrder::from_name("oldest"), None);

    // A seeker's client refuses answers the team's questions do not take.
    let codename = Codename::generate(Language::En, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut seeker = Seeker::new(&secrets);
    let bundles = vec![
        bundle_of(&mut w.a, &mut w.rng, true),
        bundle_of(&mut w.b, &mut w.rng, true),
        bundle_of(&mut w.c, &mut w.rng, true),
    ];
    for bad in [
        vec![(q(1), Answer::Choice(7))],
        vec![(q(2), Answer::Choice(1))],
        vec![(q(77), Answer::YesNo(true))],
    ] {
        let bad = IntakeAnswers::new(bad).unwrap();
        assert!(
            seeker
                .start(
                    &w.dir,
                    TeamId(1),
                    Language::Es,
                    &bad,
                    "Hola.",
                    &bundles,
                    NOW,
                    &mut w.rng
                )
                .is_err()
        );
        assert!(seeker.conversation().is_none());
    }
}

/// A counselor device trusts no answer its directory cannot read: an
/// opening whose answers name an unknown question or a choice the question
/// does not offer is kept and shown as unrecognised, never sorted or
/// filtered on (the relay cannot forge one anyway; a seeker's own client
/// could).
#[test]
fn unrecognised_answers_are_not_trusted_for_sorting() {
    use crate::client::inbox::{InboxOrder, IntakeFilter};
    use crate::intake::{Answer, IntakeAnswers, QuestionId, ShownAnswer};
    let mut w = world();
    let codename = Codename::generate(Language::En, &mut w.rng);
    let secrets = codename.derive(w.org.public().as_ed25519()).unwrap();
    let mut ep =
        super::endpoint::Endpoint::without_prekeys(secrets.identity_keys(), secrets.mailbox_keys());
    let forged = IntakeAnswers::new(vec![
        (QuestionId(2), Answer::Choice(1)),
        (QuestionId(6), Answer::Choice(200)),
        (QuestionId(99), Answer::YesNo(true)),
    ])
    .unwrap();
    let msg = crate::message::AppMessage::new(
        crate::ids::MessageId::random(&mut w.rng),
        NOW,
        crate::message::Body::Opening {
            team: TeamId(1),
            language: Language::En,
            answers: forged,
            text: crate::message::MessageText::new("hi"),
        },
    );
    let bundle = bundle_of(&mut w.a, &mut w.rng, true);
    let p = w.a.public();
    let env = ep
        .seal_to(&p.identity, &p.mailbox, Some(&bundle), &msg, &mut w.rng)
        .unwrap();
    w.a.receive(&env).unwrap();
    let id = secrets.mailbox_keys().id();
    let s = w.a.intake_summary(&id, Language::En).unwrap();
    assert_eq!((s.minor, s.urgency, s.urgent), (None, None, None));
    assert_eq!(s.lines.len(), 3);
    assert!(
        s.lines
            .iter()
            .all(|l| l.answer == ShownAnswer::Unrecognised)
    );
    assert!(
        w.a.inbox(
            InboxOrder::Newest,
            &IntakeFilter {
                minors: true,
                ..Default::default()
            }
        )
        .is_empty()
    );
}
