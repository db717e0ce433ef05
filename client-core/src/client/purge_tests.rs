//! A counselor's resolve-and-purge (docs/PROTOCOL.md §6.7): the seeker is
//! told the case is resolved, every device of the team deletes it, the
//! files it references are listed with their delete tokens, and a replayed
//! opening cannot bring it back.

use super::ClientError;
use super::counselor::{Counselor, Event, Status};
use super::tests::{NOW, deliver, missing_for, seeker_with_conversation, world};
use crate::UnixTime;
use crate::attachment::{AttachmentSealer, FileInfo, FileName, MediaType};
use crate::error::Error;

#[test]
fn a_purge_deletes_the_case_on_every_device_and_lists_its_blobs_first() {
    let mut w = world();
    let (mut seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    // The seeker sends a file; every device of the intake set holds its
    // reference.
    let mut sealer = AttachmentSealer::new(
        5,
        FileInfo {
            name: FileName::sanitize("id.jpg"),
            media_type: MediaType::sanitize("image/jpeg"),
        },
        &mut w.rng,
    )
    .unwrap();
    sealer.seal_next(b"photo").unwrap();
    let reference = sealer.finish().unwrap();
    let later = UnixTime(NOW.0 + 60);
    let file = seeker
        .attach(reference.clone(), &[], later, &mut w.rng)
        .unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        deliver(&file, k);
    }
    // What a purge deletes on the relay: the blob, with the token that
    // derives its id.
    let blobs = w.b.purge_blobs(&conv).unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].0, reference.blob_id);
    assert!(blobs[0].1.opens(&reference.blob_id));

    // Ben purges: gone from his device at once.
    let bundles = missing_for(&mut w, 1, &conv);
    let purge =
        w.b.purge(&conv, &bundles, UnixTime(NOW.0 + 120), &mut w.rng)
            .unwrap();
    assert!(w.b.conversation(&conv).is_none());
    // The colleagues' devices delete it on the event.
    for k in [&mut w.a, &mut w.c] {
        let ev = deliver(&purge, k);
        assert!(
            matches!(&ev[..], [Event::Purged { conversation, .. }] if *conversation == conv),
            "{ev:?}"
        );
        assert!(k.conversation(&conv).is_none());
    }
    // Ben's own copy of the event changes nothing.
    assert!(deliver(&purge, &mut w.b).is_empty());
    // The seeker is told the case is resolved (and keeps its own copy).
    for env in purge.iter().filter(|e| *e.recipient() == conv) {
        seeker.receive_any(env).unwrap();
    }
    assert!(seeker.conversation().unwrap().status().resolved);
    assert!(seeker.conversation().is_some());
    // The seeker's next message (or a replayed opening) cannot bring the
    // case back on any device.
    let again = seeker
        .write("¿Hola?", &[], UnixTime(NOW.0 + 180), &mut w.rng)
        .unwrap();
    for k in [&mut w.a, &mut w.b, &mut w.c] {
        let me = k.mailbox().id();
        for env in again.iter().filter(|e| *e.recipient() == me) {
            assert!(k.receive(env).is_err());
        }
        assert!(k.conversation(&conv).is_none());
    }
    // The tombstone survives a save and a restore.
    let restored = Counselor::decode(&w.a.encode().unwrap(), &w.org.public()).unwrap();
    assert!(restored.conversation(&conv).is_none());
    assert!(restored.attachment_blobs(&conv).is_err());
}

#[test]
fn a_purge_is_refused_while_a_colleague_holds_the_claim() {
    let mut w = world();
    let (seeker, _) = seeker_with_conversation(&mut w);
    let conv = seeker.mailbox().id();
    let bundles = missing_for(&mut w, 0, &conv);
    let claim = w.a.claim(&conv, &bundles, NOW, &mut w.rng).unwrap();
    deliver(&claim, &mut w.b);
    assert_eq!(
        w.b.conversation(&conv).unwrap().status,
        Status::Claimed(crate::directory::DeviceId(1))
    );
    let refused = w.b.purge_blobs(&conv).unwrap_err();
    assert!(
        matches!(refused, Error::Client(ClientError::ClaimedByOther { .. })),
        "{refused:?}"
    );
    let bundles = missing_for(&mut w, 1, &conv);
    assert!(w.b.purge(&conv, &bundles, NOW, &mut w.rng).is_err());
    assert!(w.b.conversation(&conv).is_some(), "nothing was deleted");
}
