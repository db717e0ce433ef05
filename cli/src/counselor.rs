//! `northstar counselor`: a counselor device at a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use northstar_core::client::counselor::{Conversation, Counselor, Event, Status};
use northstar_core::client::saved::DeviceState;
use northstar_core::client::{Author, EntryKind};
use northstar_core::directory::{DeviceId, PartnerId};
use northstar_core::driver::{
    Command, Config, Driver, DriverError, Event as DriverEvent, TeamAction,
};
use northstar_core::ids::MailboxId;
use northstar_core::state::check_new_passphrase;
use rand_core::OsRng;
use serde_json::{Value, json};

use crate::home::{Home, Input};
use crate::shell::{self, Shell, fail, now};
use crate::{Out, parse_org};

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
    /// Open the inbox in the browser, served by this binary on 127.0.0.1
    /// (its key store stays in the browser, for that local address).
    Web(crate::inbox_web::Args),
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

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let home = Home::new(
        args.home
            .unwrap_or_else(|| crate::default_home("counselor")),
    );
    if let Cmd::Web(w) = args.cmd {
        return crate::inbox_web::run(w, relay_url, out).await;
    }
    let mut input = Input::new();
    if let Cmd::Init { org } = &args.cmd {
        let org = parse_org(org)?;
        let pass = input.secret("New device passphrase: ")?;
        check_new_passphrase(&pass).map_err(|e| anyhow!("{e}"))?;
        let device = DeviceState::generate(org, &mut OsRng);
        if home.exists() {
            bail!("that home already holds keys; use another --home or remove it first");
        }
        let key = home.create_key_store(pass.as_bytes(), &mut OsRng)?;
        home.write_sealed(
            &device
                .seal(&key, &mut OsRng)
                .map_err(|e| anyhow!("cannot encrypt the state: {e}"))?,
        )?;
        return print_export(&device.counselor, out);
    }
    let pass = input.secret("Device passphrase: ")?;
    let key = home.unlock(pass.as_bytes())?;
    let (file, sealed) = home.device_file()?;
    let device = DeviceState::open(&key, &sealed)
        .map_err(|_| anyhow!("this device's saved state is damaged"))?;
    if let Cmd::Export = args.cmd {
        return print_export(&device.counselor, out);
    }
    let config = Config {
        relays: shell::relays(relay_url),
        org: device.org,
    };
    drop(device);
    let driver = Driver::counselor(config, shell::seed(), key, &sealed).map_err(fail)?;
    let mut sh = Shell::new(driver, Some(file));
    let mut events: Vec<Event> = Vec::new();
    let id = sh.driver.command(Command::Sync, now()).map_err(fail)?;
    sh.run(id, &mut |_, e| {
        if let DriverEvent::Team(e) = e {
            events.push(e.clone());
        }
    })
    .await
    .map_err(fail)?;
    match args.cmd {
        Cmd::Init { .. } | Cmd::Export | Cmd::Web(_) => unreachable!("handled above"),
        Cmd::Sync => {
            sh.driver.with_counselor(|c| {
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
            });
        }
        Cmd::Inbox { filter } => {
            if !["all", "open", "unread", "claimed", "mine", "resolved"].contains(&filter.as_str())
            {
                bail!("--filter must be one of all, open, unread, claimed, mine, resolved");
            }
            sh.driver.with_counselor(|c| {
                let me = c.device().ok().map(|d| d.id);
                let keep = |conv: &Conversation| match filter.as_str() {
                    "open" => conv.status == Status::Open,
                    "unread" => conv.unread,
                    "claimed" => matches!(conv.status, Status::Claimed(_)),
                    "mine" => me.is_some_and(|m| conv.status == Status::Claimed(m)),
                    "resolved" => conv.status == Status::Resolved,
                    _ => true,
                };
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
            });
        }
        Cmd::Show { conversation } => {
            let id = sh
                .driver
                .with_counselor(|c| find(c, &conversation))
                .ok_or_else(|| anyhow!("not a counselor device"))??;
            sh.driver
                .with_counselor(|c| match c.conversation(&id) {
                    Some(v) => {
                        out.print(conv_json(c, &id, v), || show_text(c, &id, v));
                        Ok(())
                    }
                    None => Err(anyhow!("unknown conversation")),
                })
                .ok_or_else(|| anyhow!("not a counselor device"))??;
            sh.driver.mark_read(&id).map_err(fail)?;
        }
        Cmd::Canned => {
            sh.driver.with_counselor(|c| {
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
            });
        }
        Cmd::Watch { seconds } => {
            sh.driver.with_counselor(|c| {
                for e in &events {
                    out.print(event_json(c, e), || event_text(c, e));
                }
            });
            let until = seconds.map(|x| tokio::time::Instant::now() + Duration::from_secs(x));
            sh.watch(until, &mut |d, e| {
                if let DriverEvent::Team(e) = e {
                    d.with_counselor(|c| out.print(event_json(c, e), || event_text(c, e)));
                }
            })
            .await?;
        }
        Cmd::Claim { conversation } => {
            act(&mut sh, out, &conversation, TeamAction::Claim, "Claimed.").await?
        }
        Cmd::Reply {
            conversation,
            message,
        } => {
            let text = input.message(message)?;
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Reply { text },
                "Reply sent.",
            )
            .await?
        }
        Cmd::HandOff { conversation, to } => {
            let to = DeviceId(to);
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::HandOff { to },
                "Handed off.",
            )
            .await?
        }
        Cmd::Note {
            conversation,
            message,
        } => {
            let text = input.message(message)?;
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Note { text },
                "Note added.",
            )
            .await?
        }
        Cmd::Resolve { conversation } => {
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Resolve,
                "Resolved.",
            )
            .await?
        }
        Cmd::Reopen { conversation } => {
            act(&mut sh, out, &conversation, TeamAction::Reopen, "Reopened.").await?
        }
        Cmd::Refer {
            conversation,
            partner,
            message,
        } => {
            let text = input.message(message)?;
            let partner = PartnerId(partner);
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Refer { partner, text },
                "Referral sent.",
            )
            .await?
        }
        Cmd::SaveAnswer {
            conversation,
            title,
            message,
        } => {
            let text = input.message(message)?;
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::SaveCanned { title, text },
                "Canned answer saved and shared with the team.",
            )
            .await?
        }
    }
    sh.close().await?;
    crate::report_unreadable(sh.unreadable, "kept in this device's quarantine")
}

/// A team action on the conversation named by `prefix`.
async fn act(
    sh: &mut Shell,
    out: &Out,
    prefix: &str,
    action: TeamAction,
    done: &str,
) -> Result<()> {
    let id = sh
        .driver
        .with_counselor(|c| find(c, prefix))
        .ok_or_else(|| anyhow!("not a counselor device"))??;
    let cmd = sh
        .driver
        .command(
            Command::Team {
                conversation: id,
                action,
            },
            now(),
        )
        .map_err(fail)?;
    match sh.run(cmd, &mut |_, _| {}).await {
        Ok(_) => {}
        Err(DriverError::ClaimedByOther { by }) => {
            let who = sh
                .driver
                .with_counselor(|c| label(c, by))
                .unwrap_or_default();
            bail!("{who} has claimed this conversation; ask them to hand it off");
        }
        Err(e) => return Err(fail(e)),
    }
    out.print(json!({ "ok": true, "conversation": id.to_hex() }), || {
        done.into()
    });
    Ok(())
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

fn print_export(counselor: &Counselor, out: &Out) -> Result<()> {
    let export = hex::encode(counselor.public().encode());
    out.print(json!({ "device": export }), || {
        format!("Give this to the administrator (public keys only):\n{export}")
    });
    Ok(())
}
