//! `northstar counselor`: a counselor device at a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use northstar_core::client::counselor::{Conversation, Counselor, Event, Status};
use northstar_core::client::{Author, EntryKind, FetchedBundle};
use northstar_core::directory::{DeviceId, OrgPublicKey, PartnerId};
use northstar_core::ids::MailboxId;
use northstar_core::sealed::Envelope;
use northstar_core::state::StateKind;
use northstar_core::wire::{Reader, Writer};
use rand_core::OsRng;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::home::{Home, Input};
use crate::relay::Relay;
use crate::{Out, now, parse_org};

/// Below this many one-time prekeys on the relay, a sync uploads more.
const PREKEY_LOW_WATER: u32 = 20;
/// A sync tops the relay up to this many one-time prekeys.
const PREKEY_TARGET: u32 = 100;

#[derive(clap::Args)]
pub struct Args {
    /// Where this device's encrypted files live (default ~/.northstar/counselor).
    #[arg(long, env = "NORTHSTAR_COUNSELOR_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create this device's keys (asks for a passphrase); prints the public keys for the administrator.
    Init {
        /// The organisation's public key (64 hex digits), as the administrator published it.
        #[arg(long, env = "NORTHSTAR_ORG")]
        org: String,
    },
    /// Print this device's public keys again.
    Export,
    /// Fetch the directory, publish prekeys and read new messages.
    Sync,
    /// List conversations.
    Inbox {
        /// all, open, unread, claimed, mine or resolved.
        #[arg(long, default_value = "all")]
        filter: String,
    },
    /// Show one conversation (id or a unique prefix of it).
    Show { conversation: String },
    /// Take a conversation.
    Claim { conversation: String },
    /// Answer the seeker (message from --message or standard input).
    Reply {
        conversation: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Hand a conversation to a colleague's device.
    HandOff {
        conversation: String,
        #[arg(long)]
        to: u32,
    },
    /// Add a private note for colleagues.
    Note {
        conversation: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Mark a conversation answered and closed.
    Resolve { conversation: String },
    /// Open a resolved conversation again.
    Reopen { conversation: String },
    /// Refer the seeker to a partner organisation.
    Refer {
        conversation: String,
        #[arg(long)]
        partner: u16,
        #[arg(long)]
        message: Option<String>,
    },
    /// List the team's canned answers.
    Canned,
    /// Save a canned answer and share it with the team (message from --message or standard input).
    SaveAnswer {
        /// The conversation it was written in.
        conversation: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Stay connected and print new messages as they arrive.
    Watch {
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
    },
}

const DEVICE_STATE_VERSION: u8 = 1;

struct Device {
    org: OrgPublicKey,
    counselor: Counselor,
}

impl Device {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut w = Writer::new();
        w.u8(DEVICE_STATE_VERSION).bytes(self.org.as_bytes());
        w.vec_u32(
            &self.counselor.encode().map_err(|e| anyhow!("{e}"))?,
            1 << 22,
            "counselor",
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok(Zeroizing::new(w.into_bytes()))
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || anyhow!("this device's saved state is damaged");
        let mut r = Reader::new(bytes);
        r.version(DEVICE_STATE_VERSION, "device state")
            .map_err(|_| bad())?;
        let org =
            OrgPublicKey::from_bytes(r.array("org").map_err(|_| bad())?).map_err(|_| bad())?;
        let counselor =
            Counselor::decode(r.vec_u32(1 << 22, "counselor").map_err(|_| bad())?, &org)
                .map_err(|_| bad())?;
        r.finish("device state").map_err(|_| bad())?;
        Ok(Device { org, counselor })
    }
}

struct Session {
    home: Home,
    key: northstar_core::state::StateKey,
    device: Device,
    relay: Relay,
}

impl Session {
    fn save(&self) -> Result<()> {
        self.home.save(
            &self.key,
            StateKind::Counselor,
            &self.device.encode()?,
            &mut OsRng,
        )
    }
}

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let home = Home::new(
        args.home
            .unwrap_or_else(|| crate::default_home("counselor")),
    );
    let mut input = Input::new();
    if let Cmd::Init { org } = &args.cmd {
        let org = parse_org(org)?;
        let pass = input.secret("New device passphrase: ")?;
        if pass.len() < 8 {
            bail!("the passphrase must have at least 8 characters");
        }
        let device = Device {
            org,
            counselor: Counselor::generate(&mut OsRng),
        };
        home.create(
            pass.as_bytes(),
            StateKind::Counselor,
            &device.encode()?,
            &mut OsRng,
        )?;
        return print_export(&device, out);
    }
    let pass = input.secret("Device passphrase: ")?;
    let key = home.unlock(pass.as_bytes())?;
    let device = Device::decode(&home.load(&key, StateKind::Counselor)?)?;
    if let Cmd::Export = args.cmd {
        return print_export(&device, out);
    }
    let relay = Relay::connect(relay_url).await?;
    let mut s = Session {
        home,
        key,
        device,
        relay,
    };
    let events = sync(&mut s).await?;
    let c = &s.device.counselor;
    match args.cmd {
        Cmd::Init { .. } | Cmd::Export => unreachable!("handled above"),
        Cmd::Sync => {
            let shown: Vec<Value> = events.iter().map(|e| event_json(c, e)).collect();
            out.print(json!({ "events": shown }), || {
                if events.is_empty() {
                    return "Up to date: no new messages.".into();
                }
                events
                    .iter()
                    .map(|e| event_text(c, e))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Cmd::Inbox { filter } => {
            let me = c.device().ok().map(|d| d.id);
            let keep = |conv: &Conversation| match filter.as_str() {
                "all" => true,
                "open" => conv.status == Status::Open,
                "unread" => conv.unread,
                "claimed" => matches!(conv.status, Status::Claimed(_)),
                "mine" => me.is_some_and(|m| conv.status == Status::Claimed(m)),
                "resolved" => conv.status == Status::Resolved,
                _ => false,
            };
            if !["all", "open", "unread", "claimed", "mine", "resolved"].contains(&filter.as_str())
            {
                bail!("--filter must be one of all, open, unread, claimed, mine, resolved");
            }
            let rows: Vec<(&MailboxId, &Conversation)> =
                c.conversations().iter().filter(|(_, v)| keep(v)).collect();
            out.print(json!({ "conversations": rows.iter().map(|(id, v)| conv_json(c, id, v)).collect::<Vec<_>>() }), || {
                if rows.is_empty() {
                    return "No conversations.".into();
                }
                rows.iter()
                    .map(|(id, v)| format!("{}  {:<16} {:<24} {}{}", short(id), status_text(c, v.status), team_slug(c, v), v.language.tag(), if v.unread { "  (new)" } else { "" }))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Cmd::Show { conversation } => {
            let id = find(c, &conversation)?;
            let v = c
                .conversation(&id)
                .ok_or_else(|| anyhow!("unknown conversation"))?;
            out.print(conv_json(c, &id, v), || show_text(c, &id, v));
            s.device.counselor.mark_read(&id);
            s.save()?;
        }
        Cmd::Claim { conversation } => act(&mut s, out, &conversation, Act::Claim).await?,
        Cmd::Reply {
            conversation,
            message,
        } => {
            let text = input.message(message)?;
            act(&mut s, out, &conversation, Act::Reply(text)).await?
        }
        Cmd::HandOff { conversation, to } => {
            act(&mut s, out, &conversation, Act::HandOff(DeviceId(to))).await?
        }
        Cmd::Note {
            conversation,
            message,
        } => {
            let text = input.message(message)?;
            act(&mut s, out, &conversation, Act::Note(text)).await?
        }
        Cmd::Resolve { conversation } => act(&mut s, out, &conversation, Act::Resolve).await?,
        Cmd::Reopen { conversation } => act(&mut s, out, &conversation, Act::Reopen).await?,
        Cmd::Refer {
            conversation,
            partner,
            message,
        } => {
            let text = input.message(message)?;
            act(
                &mut s,
                out,
                &conversation,
                Act::Refer(PartnerId(partner), text),
            )
            .await?
        }
        Cmd::Canned => {
            let list = c.canned_answers();
            out.print(
                json!({ "canned": list.iter().map(|a| json!({"title": a.title.as_str(), "text": a.text.as_str()})).collect::<Vec<_>>() }),
                || {
                    if list.is_empty() {
                        return "No canned answers yet.".into();
                    }
                    list.iter().map(|a| format!("{}: {}", a.title.as_str(), a.text.as_str())).collect::<Vec<_>>().join("\n")
                },
            );
        }
        Cmd::SaveAnswer {
            conversation,
            title,
            message,
        } => {
            let text = input.message(message)?;
            act(&mut s, out, &conversation, Act::Canned(title, text)).await?
        }
        Cmd::Watch { seconds } => {
            let c = &s.device.counselor;
            for e in &events {
                out.print(event_json(c, e), || event_text(c, e));
            }
            let deadline = seconds.map(|x| tokio::time::Instant::now() + Duration::from_secs(x));
            loop {
                let next = s.relay.next_delivery();
                let d = match deadline {
                    Some(t) => match tokio::time::timeout_at(t, next).await {
                        Ok(d) => d?,
                        Err(_) => break,
                    },
                    None => next.await?,
                };
                let got = receive(&mut s, vec![d]).await?;
                let c = &s.device.counselor;
                for e in &got {
                    out.print(event_json(c, e), || event_text(c, e));
                }
            }
        }
    }
    Ok(())
}

/// Fetches and checks the directory, registers the mailbox, tops up
/// prekeys, and reads everything stored.
async fn sync(s: &mut Session) -> Result<Vec<Event>> {
    let dir = s.relay.fetch_directory(s.device.org.as_ed25519()).await?;
    s.device
        .counselor
        .set_directory(&dir, &s.device.org)
        .map_err(|e| anyhow!("the relay's directory was refused ({e}); the relay may be serving a forged or outdated one"))?;
    s.relay.register(s.device.counselor.mailbox(), true).await?;
    let bundle = s
        .device
        .counselor
        .prekey_bundle()
        .map_err(|e| anyhow!("{e}"))?
        .encode();
    let held = s.relay.upload_prekeys(bundle.clone(), &[]).await?;
    if held < PREKEY_LOW_WATER {
        let fresh = s
            .device
            .counselor
            .new_one_time_prekeys((PREKEY_TARGET - held) as usize, &mut OsRng)
            .map_err(|e| anyhow!("{e}"))?;
        // Keep the secrets before the relay can hand the public halves out.
        s.save()?;
        s.relay.upload_prekeys(bundle, &fresh).await?;
    }
    let pending = s.relay.subscribe().await?;
    let events = receive(s, pending).await?;
    s.save()?;
    Ok(events)
}

/// Opens deliveries, saves, then acknowledges them (so a crash in between
/// means a redelivery, which is dropped as a duplicate — never a loss).
async fn receive(s: &mut Session, deliveries: Vec<crate::relay::Delivery>) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for d in deliveries {
        match s.device.counselor.receive(&d.envelope) {
            Ok(Some(e)) => events.push(e),
            Ok(None) => {}
            Err(e) => eprintln!("northstar: skipped a message that could not be read ({e})"),
        }
        ids.push(d.id);
    }
    if !ids.is_empty() {
        s.save()?;
        s.relay.ack(ids).await?;
    }
    Ok(events)
}

enum Act {
    Claim,
    Reply(String),
    HandOff(DeviceId),
    Note(String),
    Resolve,
    Reopen,
    Refer(PartnerId, String),
    Canned(String, String),
}

async fn act(s: &mut Session, out: &Out, conversation: &str, what: Act) -> Result<()> {
    let id = find(&s.device.counselor, conversation)?;
    let mut bundles: Vec<FetchedBundle> = Vec::new();
    for mailbox in s
        .device
        .counselor
        .missing_bundles(&id)
        .map_err(|e| anyhow!("{e}"))?
    {
        bundles.push(s.relay.fetch_prekeys(mailbox).await?);
    }
    let c = &mut s.device.counselor;
    let (t, rng) = (now(), &mut OsRng);
    let result = match &what {
        Act::Claim => c.claim(&id, &bundles, t, rng),
        Act::Reply(text) => c.reply(&id, text, &bundles, t, rng),
        Act::HandOff(to) => c.hand_off(&id, *to, &bundles, t, rng),
        Act::Note(text) => c.note(&id, text, &bundles, t, rng),
        Act::Resolve => c.resolve(&id, &bundles, t, rng),
        Act::Reopen => c.reopen(&id, &bundles, t, rng),
        Act::Refer(p, text) => c.refer(&id, *p, text, &bundles, t, rng),
        Act::Canned(title, text) => c.add_canned_answer(&id, title, text, &bundles, t, rng),
    };
    let envelopes = result.map_err(|e| match e {
        northstar_core::Error::Client(northstar_core::client::ClientError::ClaimedByOther {
            by,
        }) => {
            anyhow!(
                "{} has claimed this conversation; ask them to hand it off",
                label(&s.device.counselor, DeviceId(by))
            )
        }
        e => anyhow!("{e}"),
    })?;
    // Save before sending: a ratchet key is never used twice, even if the
    // deposit then fails.
    s.save()?;
    deposit(s.relay_url(), envelopes).await?;
    let done = match what {
        Act::Claim => "Claimed.",
        Act::Reply(_) => "Reply sent.",
        Act::HandOff(_) => "Handed off.",
        Act::Note(_) => "Note added.",
        Act::Resolve => "Resolved.",
        Act::Reopen => "Reopened.",
        Act::Refer(..) => "Referral sent.",
        Act::Canned(..) => "Canned answer saved and shared with the team.",
    };
    out.print(json!({ "ok": true, "conversation": id.to_hex() }), || {
        done.into()
    });
    Ok(())
}

impl Session {
    fn relay_url(&self) -> &str {
        self.relay.url()
    }
}

/// Deposits over a second connection, not authenticated to any mailbox, so
/// the relay cannot tie the deposit to this device's mailbox.
pub async fn deposit(relay_url: &str, envelopes: Vec<Envelope>) -> Result<()> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let mut d = Relay::connect(relay_url).await?;
    d.deposit(envelopes).await
}

fn find(c: &Counselor, prefix: &str) -> Result<MailboxId> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.len() < 6 {
        bail!("give at least 6 characters of the conversation id");
    }
    let matches: Vec<&MailboxId> = c
        .conversations()
        .keys()
        .filter(|k| k.to_hex().starts_with(&p))
        .collect();
    match matches.as_slice() {
        [one] => Ok(**one),
        [] => bail!("no conversation starts with {p}"),
        _ => bail!("several conversations start with {p}; give more characters"),
    }
}

fn short(id: &MailboxId) -> String {
    id.to_hex()[..12].to_owned()
}

fn label(c: &Counselor, d: DeviceId) -> String {
    c.directory()
        .and_then(|x| x.device(d))
        .map(|x| x.label.clone())
        .unwrap_or_else(|| format!("device {}", d.0))
}

fn status_text(c: &Counselor, s: Status) -> String {
    match s {
        Status::Open => "open".into(),
        Status::Claimed(d) => format!("claimed by {}", label(c, d)),
        Status::Resolved => "resolved".into(),
    }
}

fn status_json(s: Status) -> Value {
    match s {
        Status::Open => json!({"state": "open"}),
        Status::Claimed(d) => json!({"state": "claimed", "by": d.0}),
        Status::Resolved => json!({"state": "resolved"}),
    }
}

fn team_slug(c: &Counselor, v: &Conversation) -> String {
    c.directory()
        .and_then(|d| d.team(v.team))
        .map(|t| t.slug.clone())
        .unwrap_or_else(|| format!("team {}", v.team.0))
}

fn author_text(c: &Counselor, a: Author) -> String {
    match a {
        Author::Seeker => "seeker".into(),
        Author::Counselor(d) => label(c, d),
    }
}

fn entry_text(k: &EntryKind) -> String {
    match k {
        EntryKind::Text(t) => t.as_str().to_owned(),
        EntryKind::Referral { partner, text } => {
            format!("[referral to partner {}] {}", partner.0, text.as_str())
        }
    }
}

fn conv_json(c: &Counselor, id: &MailboxId, v: &Conversation) -> Value {
    json!({
        "id": id.to_hex(),
        "team": team_slug(c, v),
        "language": v.language.tag(),
        "status": status_json(v.status),
        "unread": v.unread,
        "messages": v.history.iter().map(|e| json!({
            "author": match e.author { Author::Seeker => json!("seeker"), Author::Counselor(d) => json!(d.0) },
            "at": e.at.0,
            "text": entry_text(&e.kind),
        })).collect::<Vec<_>>(),
        "notes": v.notes.iter().map(|n| json!({"by": n.by.0, "at": n.at.0, "text": n.text.as_str()})).collect::<Vec<_>>(),
    })
}

fn show_text(c: &Counselor, id: &MailboxId, v: &Conversation) -> String {
    let mut s = format!(
        "Conversation {}  team {}  language {}  {}\n",
        short(id),
        team_slug(c, v),
        v.language.tag(),
        status_text(c, v.status)
    );
    for e in &v.history {
        s += &format!("  {}: {}\n", author_text(c, e.author), entry_text(&e.kind));
    }
    for n in &v.notes {
        s += &format!("  [note by {}] {}\n", label(c, n.by), n.text.as_str());
    }
    s.trim_end().to_owned()
}

fn event_json(c: &Counselor, e: &Event) -> Value {
    match e {
        Event::NewConversation { conversation } => {
            json!({"event": "new", "conversation": conversation.to_hex()})
        }
        Event::Message {
            conversation,
            entry,
        } => {
            json!({"event": "message", "conversation": conversation.to_hex(), "author": author_text(c, entry.author), "text": entry_text(&entry.kind)})
        }
        Event::StatusChanged {
            conversation,
            status,
            by,
        } => {
            json!({"event": "status", "conversation": conversation.to_hex(), "status": status_json(*status), "by": by.0})
        }
        Event::Note { conversation, note } => {
            json!({"event": "note", "conversation": conversation.to_hex(), "by": note.by.0, "text": note.text.as_str()})
        }
        Event::Deleted { conversation } => {
            json!({"event": "deleted", "conversation": conversation.to_hex()})
        }
        Event::CannedAnswer { title, by } => {
            json!({"event": "canned", "title": title.as_str(), "by": by.0})
        }
    }
}

fn event_text(c: &Counselor, e: &Event) -> String {
    match e {
        Event::NewConversation { conversation } => {
            let v = c.conversation(conversation);
            format!(
                "{}  new conversation{}",
                short(conversation),
                v.map(|v| format!(" ({})", team_slug(c, v)))
                    .unwrap_or_default()
            )
        }
        Event::Message {
            conversation,
            entry,
        } => format!(
            "{}  {}: {}",
            short(conversation),
            author_text(c, entry.author),
            entry_text(&entry.kind)
        ),
        Event::StatusChanged {
            conversation,
            status,
            ..
        } => format!("{}  now {}", short(conversation), status_text(c, *status)),
        Event::Note { conversation, note } => format!(
            "{}  note by {}: {}",
            short(conversation),
            label(c, note.by),
            note.text.as_str()
        ),
        Event::Deleted { conversation } => {
            format!("{}  deleted at the seeker's request", short(conversation))
        }
        Event::CannedAnswer { title, by } => {
            format!(
                "canned answer {:?} shared by {}",
                title.as_str(),
                label(c, *by)
            )
        }
    }
}

fn print_export(device: &Device, out: &Out) -> Result<()> {
    let export = hex::encode(device.counselor.public().encode());
    out.print(json!({ "device": export }), || {
        format!("Give this to the administrator (public keys only):\n{export}")
    });
    Ok(())
}
