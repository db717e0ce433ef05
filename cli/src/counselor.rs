//! `northstar counselor`: a counselor device at a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use northstar_core::client::counselor::{Conversation, Counselor, Event, Status};
use northstar_core::client::inbox::{InboxOrder, IntakeFilter};
use northstar_core::client::saved::DeviceState;
use northstar_core::client::search::{Field, InboxFilter, Snippet};
use northstar_core::client::{Author, EntryKind};
use northstar_core::directory::{DeviceId, PartnerId, VerifiedDirectory};
use northstar_core::driver::{
    Command, Config, Driver, DriverError, Event as DriverEvent, TeamAction,
};
use northstar_core::ids::{Language, MailboxId};
use northstar_core::intake::{IntakeSummary, ShownAnswer};
use northstar_core::state::check_new_passphrase;
use rand_core::OsRng;
use serde_json::{Value, json};

use crate::home::{Home, Input};
use crate::shell::{self, Shell, fail, now};
use crate::term::{block, one_line};
use crate::{Out, parse_org};

#[derive(clap::Args)]
pub struct Args {
    /// Where this device's encrypted files live (default $NORTHSTAR_HOME/counselor, else ~/.northstar/counselor).
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
        /// newest, minors-first or urgent-first (by the intake answers).
        #[arg(long, default_value = "newest")]
        sort: String,
        /// Only those who answered that they (or the person they help) are 18 or under and alone in the U.S.
        #[arg(long)]
        minors: bool,
        /// Only those who chose the most urgent level.
        #[arg(long)]
        urgent: bool,
        /// Only those writing for someone else (a lawyer, a social worker, a friend).
        #[arg(long)]
        for_someone_else: bool,
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
        /// Send the seeker this file (at most 10 MB); with it, a message is sent only if --message is given.
        #[arg(long)]
        attach: Option<PathBuf>,
    },
    /// Save a file of a conversation.
    SaveAttachment {
        conversation: String,
        /// Which file: 1 for the first file of the conversation.
        #[arg(long, default_value_t = 1)]
        file: usize,
        /// Where to save it (a folder keeps the file's own name).
        #[arg(long)]
        out: PathBuf,
    },
    /// Hand a conversation to a colleague (see `colleagues`).
    HandOff {
        conversation: String,
        /// The colleague's label, or their device number.
        #[arg(long)]
        to: String,
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
    /// Refer the seeker to a partner organisation (see `partners`).
    Refer {
        conversation: String,
        /// The partner's name, or its number.
        #[arg(long)]
        partner: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// List the team's canned answers.
    Canned,
    /// List the colleagues' devices (labels and numbers) a conversation can be handed to.
    Colleagues,
    /// List the partner organisations a seeker can be referred to.
    Partners,
    /// Save a canned answer and share it with the team (message from --message or standard input).
    SaveAnswer {
        /// The conversation it was written in.
        conversation: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Search the conversations this device holds (messages, notes, status,
    /// team); the words are read at a prompt or from standard input, never
    /// from the command line. Every word must match; case and accents are
    /// ignored. Nothing is sent to the relay.
    Search {
        /// all, open, unread, claimed, mine or resolved.
        #[arg(long, default_value = "all")]
        filter: String,
    },
    /// Keep a case past the organisation's retention (an explicit choice,
    /// logged on every device of the team; see `kept`).
    Keep {
        conversation: String,
        /// Keep it until this day (YYYY-MM-DD, UTC), at most a year from now.
        #[arg(long)]
        until: String,
        /// Why (kept in the log every device of the team shows).
        #[arg(long)]
        reason: String,
    },
    /// List every choice to keep a case longer that this device knows of.
    Kept,
    /// Stay connected and print new messages as they arrive.
    Watch {
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Resolve a conversation and delete it everywhere the team can reach:
    /// its files on the relay, this device's copy and every colleague's.
    /// The seeker is told it is resolved and keeps its own copy until its
    /// retention. Cannot be undone; refused without --yes.
    Purge {
        conversation: String,
        /// Confirm: delete the conversation for the whole team, for good.
        #[arg(long)]
        yes: bool,
    },
}

impl Cmd {
    /// Commands that only read what the device saved: they still work,
    /// from the last sync, while the relay cannot be reached.
    fn reads_only(&self) -> bool {
        matches!(
            self,
            Cmd::Inbox { .. }
                | Cmd::Show { .. }
                | Cmd::Canned
                | Cmd::Colleagues
                | Cmd::Partners
                | Cmd::Search { .. }
                | Cmd::Kept
        )
    }
}

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let home = Home::new(
        args.home
            .unwrap_or_else(|| crate::default_home("counselor")),
    );
    if let Cmd::Web(w) = args.cmd {
        return crate::inbox_web::run(w, relay_url, out).await;
    }
    if let Cmd::Purge { yes: false, .. } = &args.cmd {
        bail!(
            "nothing was deleted: a purge deletes the conversation and its files for the whole team, for good (add --yes)"
        );
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
    // The search words: a seeker's detail can be one, so they come from the
    // terminal or standard input, never from the command line.
    let query = match &args.cmd {
        Cmd::Search { filter } => {
            let filter = inbox_filter(filter)?;
            Some((input.line("Search: ")?, filter))
        }
        _ => None,
    };
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
    let synced = sh
        .run(id, &mut |_, e| {
            if let DriverEvent::Team(e) = e {
                events.push(e.clone());
            }
        })
        .await;
    match synced {
        Ok(_) => {}
        // What this device saved can be read without the relay.
        Err(e @ (DriverError::Network | DriverError::NoRelay)) if args.cmd.reads_only() => {
            eprintln!(
                "northstar: {}; showing what this device saved at its last sync.",
                shell::explain(&e)
            );
        }
        Err(e) => return Err(fail(e)),
    }
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
        Cmd::Inbox {
            filter,
            sort,
            minors,
            urgent,
            for_someone_else,
        } => {
            let filter = inbox_filter(&filter)?;
            let order = InboxOrder::from_name(&sort).ok_or_else(|| {
                anyhow!("--sort must be one of newest, minors-first, urgent-first")
            })?;
            let intake = IntakeFilter {
                minors,
                urgent,
                for_someone_else,
            };
            sh.driver.with_counselor(|c| {
                let me = c.device().ok().map(|d| d.id);
                let keep = |conv: &Conversation| filter.keeps(conv, me);
                // The core's order and intake filters, as in the browser.
                let ids = c.inbox(order, &intake);
                let rows: Vec<(&MailboxId, &Conversation)> = ids
                    .iter()
                    .filter_map(|id| c.conversations().get_key_value(id))
                    .filter(|(_, v)| keep(v))
                    .collect();
                out.print(json!({ "conversations": rows.iter().map(|(id, v)| conv_json(c, id, v)).collect::<Vec<_>>() }), || {
                    if rows.is_empty() {
                        return "No conversations.".into();
                    }
                    inbox_text(c, &rows)
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
                        list.iter().map(|a| format!("{}: {}", one_line(a.title.as_str()), one_line(a.text.as_str()))).collect::<Vec<_>>().join("\n")
                    },
                );
            });
        }
        Cmd::Colleagues => {
            sh.driver.with_counselor(|c| {
                let me = c.device().ok().map(|d| d.id);
                let list: Vec<_> = c
                    .directory()
                    .map(|d| d.devices())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| Some(d.id) != me)
                    .map(|d| (d.id.0, d.label.clone()))
                    .collect();
                out.print(
                    json!({ "colleagues": list.iter().map(|(id, label)| json!({"id": id, "label": label})).collect::<Vec<_>>() }),
                    || {
                        if list.is_empty() {
                            return "No colleagues in the directory yet.".into();
                        }
                        let mut s = format!("{:>6}  LABEL", "DEVICE");
                        for (id, label) in &list {
                            s += &format!("\n{id:>6}  {}", one_line(label));
                        }
                        s
                    },
                );
            });
        }
        Cmd::Partners => {
            let list: Vec<_> = sh
                .driver
                .directory()
                .map(|d| d.partners().to_vec())
                .unwrap_or_default();
            out.print(
                json!({ "partners": list.iter().map(|p| json!({"id": p.id.0, "name": p.name, "contact": p.contact})).collect::<Vec<_>>() }),
                || {
                    if list.is_empty() {
                        return "No partner organisations in the directory yet.".into();
                    }
                    let mut s = format!("{:>7}  {:<28} CONTACT", "PARTNER", "NAME");
                    for p in &list {
                        s += &format!("\n{:>7}  {:<28} {}", p.id.0, one_line(&p.name), one_line(&p.contact));
                    }
                    s
                },
            );
        }
        Cmd::Search { .. } => {
            let (words, filter) = query.ok_or_else(|| anyhow!("no search words"))?;
            let found = sh
                .driver
                .search(words.trim(), filter)
                .map_err(|e| match e {
                    DriverError::Core(northstar_core::Error::Misuse(m)) => anyhow!("{m}"),
                    e => fail(e),
                })?;
            sh.driver.with_counselor(|c| {
                let rows: Vec<(&MailboxId, &Conversation, Option<&Snippet>)> = found
                    .hits
                    .iter()
                    .filter_map(|h| {
                        Some((&h.conversation, c.conversation(&h.conversation)?, h.snippet.as_ref()))
                    })
                    .collect();
                out.print(
                    json!({
                        "total": found.total,
                        "conversations": rows.iter().map(|(id, v, s)| {
                            let mut j = conv_json(c, id, v);
                            j["match"] = s.map_or(Value::Null, |s| json!({
                                "field": s.field.name(),
                                "before": s.before,
                                "matched": s.matched,
                                "after": s.after,
                            }));
                            j
                        }).collect::<Vec<_>>(),
                    }),
                    || {
                        if rows.is_empty() {
                            return "No conversation matches.".into();
                        }
                        let plain: Vec<(&MailboxId, &Conversation)> =
                            rows.iter().map(|(id, v, _)| (*id, *v)).collect();
                        let mut s = inbox_text(c, &plain);
                        s += "\n\nWHERE IT MATCHED";
                        for (id, _, m) in &rows {
                            if let Some(m) = m {
                                s += &format!(
                                    "\n{:<12}  {:<17}  {}[{}]{}",
                                    short(id),
                                    field_text(m.field),
                                    one_line(&m.before),
                                    one_line(&m.matched),
                                    one_line(&m.after)
                                );
                            }
                        }
                        if found.total > rows.len() {
                            s += &format!(
                                "\n\n{} of {} matching conversations shown (newest first); add a word to narrow it down.",
                                rows.len(),
                                found.total
                            );
                        }
                        s
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
            attach: None,
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
        Cmd::Reply {
            conversation,
            message,
            attach: Some(path),
        } => {
            let (info, size, f) = crate::attach::open(&path)?;
            northstar_core::driver::attach::check_size(size).map_err(fail)?;
            if let Some(text) = message {
                act(
                    &mut sh,
                    out,
                    &conversation,
                    TeamAction::Reply { text },
                    "Reply sent.",
                )
                .await?;
            }
            let id = sh
                .driver
                .with_counselor(|c| find(c, &conversation))
                .ok_or_else(|| anyhow!("not a counselor device"))??;
            crate::attach::send(
                &mut sh,
                f,
                Command::CounselorAttach {
                    conversation: id,
                    info,
                    size,
                },
            )
            .await
            .map_err(fail)?;
            out.print(json!({ "ok": true, "conversation": id.to_hex() }), || {
                "File sent.".into()
            });
        }
        Cmd::SaveAttachment {
            conversation,
            file,
            out: path,
        } => {
            let id = sh
                .driver
                .with_counselor(|c| find(c, &conversation))
                .ok_or_else(|| anyhow!("not a counselor device"))??;
            let history = sh
                .driver
                .with_counselor(|c| c.conversation(&id).map(|v| v.history.clone()))
                .flatten()
                .ok_or_else(|| anyhow!("no such conversation"))?;
            let reference = crate::seeker::nth_attachment(history.iter().map(|e| &e.kind), file)?;
            let saved = crate::attach::save(&mut sh, reference, &path).await?;
            out.print(json!({ "saved": saved.display().to_string() }), || {
                format!("Saved to {}.", saved.display())
            });
        }
        Cmd::HandOff { conversation, to } => {
            let to = sh
                .driver
                .with_counselor(|c| colleague(c, &to))
                .ok_or_else(|| anyhow!("not a counselor device"))??;
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
        Cmd::Purge { conversation, .. } => {
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Purge,
                "Resolved and deleted: its files on the relay, this device's copy, and (as they sync) every colleague's.",
            )
            .await?
        }
        Cmd::Keep {
            conversation,
            until,
            reason,
        } => {
            let until = parse_day(&until)?;
            act(
                &mut sh,
                out,
                &conversation,
                TeamAction::Keep { until, reason },
                &format!(
                    "Kept until {} (logged on every device of the team).",
                    crate::utc(until.0)
                ),
            )
            .await?
        }
        Cmd::Kept => {
            sh.driver.with_counselor(|c| {
                let log: Vec<_> = c.keep_log().collect();
                out.print(
                    json!({ "kept": log.iter().map(|k| json!({
                        "conversation": k.conversation.to_hex(),
                        "by": k.by.0,
                        "at": k.at.0,
                        "until": k.until.0,
                        "reason": k.reason.as_str(),
                    })).collect::<Vec<_>>() }),
                    || {
                        if log.is_empty() {
                            return "No case has been kept longer.".into();
                        }
                        log.iter()
                            .map(|k| {
                                format!(
                                    "{}  {} kept until {} by {}: {}",
                                    crate::utc(k.at.0),
                                    short(&k.conversation),
                                    crate::utc(k.until.0),
                                    one_line(&label(c, k.by)),
                                    one_line(k.reason.as_str())
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    },
                );
            });
        }
        Cmd::Refer {
            conversation,
            partner,
            message,
        } => {
            let partner = partner_named(sh.driver.directory().as_ref(), &partner)?;
            let text = input.message(message)?;
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

/// When a conversation last changed (its newest entry).
fn updated_at(v: &Conversation) -> u64 {
    v.history.last().map_or(0, |e| e.at.0)
}

/// The inbox as a table: a header row, then one row per conversation with
/// its last message's date and the start of that message.
fn inbox_text(c: &Counselor, rows: &[(&MailboxId, &Conversation)]) -> String {
    const PREVIEW: usize = 48;
    let mut s = format!(
        "{:<12}  {:<3}  {:<20}  {:<24}  {:<4}  {:<20}  {:<22}  LAST MESSAGE",
        "ID", "NEW", "STATUS", "TOPIC", "LANG", "UPDATED", "INTAKE"
    );
    for (id, v) in rows {
        let preview = v
            .history
            .last()
            .map(|e| {
                let text = one_line(&entry_text(&e.kind));
                let mut p: String = text.chars().take(PREVIEW).collect();
                if text.chars().count() > PREVIEW {
                    p.push('…');
                }
                format!("{}: {p}", one_line(&author_text(c, e.author)))
            })
            .unwrap_or_default();
        s += &format!(
            "\n{:<12}  {:<3}  {:<20}  {:<24}  {:<4}  {:<20}  {:<22}  {}",
            short(id),
            if v.unread { "*" } else { "" },
            one_line(&status_text(c, v.status)),
            one_line(&team_slug(c, v)),
            v.language.tag(),
            crate::utc(updated_at(v)),
            c.intake_summary(id, Language::En)
                .map(|s| intake_flags(&s))
                .unwrap_or_default(),
            preview
        );
    }
    s
}

/// A colleague named by label (case-insensitive) or device number.
fn colleague(c: &Counselor, name: &str) -> Result<DeviceId> {
    let dir = c
        .directory()
        .ok_or_else(|| anyhow!("no directory yet: run `northstar counselor sync`"))?;
    let name = name.trim();
    if let Ok(n) = name.parse::<u32>() {
        return dir.device(DeviceId(n)).map(|d| d.id).ok_or_else(|| {
            anyhow!("no device {n} in the directory (see `northstar counselor colleagues`)")
        });
    }
    let found: Vec<DeviceId> = dir
        .devices()
        .into_iter()
        .filter(|d| {
            d.label.eq_ignore_ascii_case(name) || d.label.to_lowercase() == name.to_lowercase()
        })
        .map(|d| d.id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no colleague called {name:?} (see `northstar counselor colleagues`)"),
        _ => bail!(
            "several devices are called {name:?}; give the device number (see `northstar counselor colleagues`)"
        ),
    }
}

/// A partner named by name (case-insensitive) or number.
fn partner_named(dir: Option<&VerifiedDirectory>, name: &str) -> Result<PartnerId> {
    let dir = dir.ok_or_else(|| anyhow!("no directory yet: run `northstar counselor sync`"))?;
    let name = name.trim();
    if let Ok(n) = name.parse::<u16>() {
        return dir.partner(PartnerId(n)).map(|p| p.id).ok_or_else(|| {
            anyhow!("no partner {n} in the directory (see `northstar counselor partners`)")
        });
    }
    let found: Vec<PartnerId> = dir
        .partners()
        .iter()
        .filter(|p| p.name.to_lowercase() == name.to_lowercase())
        .map(|p| p.id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no partner called {name:?} (see `northstar counselor partners`)"),
        _ => bail!(
            "several partners are called {name:?}; give the partner number (see `northstar counselor partners`)"
        ),
    }
}

/// The `--filter` named `name`.
fn inbox_filter(name: &str) -> Result<InboxFilter> {
    InboxFilter::from_name(name).ok_or_else(|| {
        anyhow!("--filter must be one of all, open, unread, claimed, mine, resolved")
    })
}

/// Where a search matched, for the table.
fn field_text(f: Field) -> &'static str {
    match f {
        Field::SeekerMessage => "seeker's message",
        Field::CounselorMessage => "reply",
        Field::Referral => "referral",
        Field::Note => "private note",
        Field::Status => "status",
        Field::Team => "topic",
        Field::Attachment => "file name",
        Field::Intake => "intake answer",
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

/// A day given as YYYY-MM-DD, as the Unix time of its end (midnight UTC
/// after it): a case kept "until 2027-03-01" is kept through that day.
fn parse_day(day: &str) -> Result<northstar_core::UnixTime> {
    let parts: Vec<&str> = day.trim().split('-').collect();
    let bad = || anyhow!("--until must be a day as YYYY-MM-DD");
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of `utc`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(northstar_core::UnixTime(
        u64::try_from(days + 1).map_err(|_| bad())? * 86_400,
    ))
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
        EntryKind::Attachment(a) => crate::seeker::attachment_text(a),
        EntryKind::Text(t) => t.as_str().to_owned(),
        EntryKind::Referral { partner, text } => {
            format!("[referral to partner {}] {}", partner.0, text.as_str())
        }
    }
}

fn conv_json(c: &Counselor, id: &MailboxId, v: &Conversation) -> Value {
    json!({
        "id": id.to_hex(),
        "deletion_at": c.deletion_at(id).map(|t| t.0),
        "kept_until": v.kept_until.map(|t| t.0),
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
        "intake": intake_json(c.intake_summary(id, Language::En).unwrap_or_default()),
    })
}

/// The intake summary for scripts: the flags the inbox sorts and filters
/// on, and each answer with its question.
fn intake_json(s: IntakeSummary) -> Value {
    json!({
        "for_someone_else": s.for_someone_else,
        "minor": s.minor,
        "urgency": s.urgency,
        "urgent": s.urgent,
        "asylum_elsewhere": s.asylum_elsewhere,
        "us_citizen": s.us_citizen,
        "in_canada": s.in_canada,
        "answers": s.lines.iter().map(|l| json!({
            "question": l.question.0,
            "meaning": l.meaning.name(),
            "prompt": l.prompt,
            "answer": answer_text(&l.answer),
            "recognised": l.answer != ShownAnswer::Unrecognised,
        })).collect::<Vec<_>>(),
    })
}

fn answer_text(a: &ShownAnswer) -> String {
    match a {
        ShownAnswer::Declined => "prefers not to say".into(),
        ShownAnswer::YesNo(true) => "yes".into(),
        ShownAnswer::YesNo(false) => "no".into(),
        ShownAnswer::Choices(v) => v.join(", "),
        ShownAnswer::Text(t) => t.clone(),
        ShownAnswer::Unrecognised => "(an answer this directory cannot read)".into(),
    }
}

/// The short flags of the inbox table: MINOR, URGENT, FOR OTHER.
fn intake_flags(s: &IntakeSummary) -> String {
    let mut f = Vec::new();
    if s.minor == Some(true) {
        f.push("MINOR");
    }
    if s.urgent == Some(true) {
        f.push("URGENT");
    }
    if s.for_someone_else == Some(true) {
        f.push("FOR-OTHER");
    }
    f.join(",")
}

fn show_text(c: &Counselor, id: &MailboxId, v: &Conversation) -> String {
    let mut s = format!(
        "Conversation {}  team {}  language {}  {}\n",
        short(id),
        team_slug(c, v),
        v.language.tag(),
        status_text(c, v.status)
    );
    // The intake answers first: what the counselor needs to know before reading.
    if let Some(sum) = c.intake_summary(id, Language::En)
        && !sum.lines.is_empty()
    {
        if sum.for_someone_else == Some(true) {
            s += "  Written by someone helping another person: the answers describe that person.\n";
        }
        s += "  Intake answers:\n";
        for l in &sum.lines {
            let q = if l.prompt.is_empty() {
                format!("question {}", l.question.0)
            } else {
                one_line(&l.prompt)
            };
            s += &format!("    {q}\n      {}\n", one_line(&answer_text(&l.answer)));
        }
    }
    if let Some(t) = c.deletion_at(id) {
        s += &format!(
            "  Deleted from this device on {}{}\n",
            crate::utc(t.0),
            if v.kept_until.is_some_and(|k| k >= t) {
                " (kept longer by a counselor's choice)"
            } else {
                " (the organisation's retention after the seeker's last message)"
            }
        );
    }
    for e in &v.history {
        s += &format!(
            "  {} {}:\n      {}\n",
            crate::utc(e.at.0),
            one_line(&author_text(c, e.author)),
            block(&entry_text(&e.kind), "      ")
        );
    }
    for n in &v.notes {
        s += &format!(
            "  {} [note by {}]\n      {}\n",
            crate::utc(n.at.0),
            one_line(&label(c, n.by)),
            block(n.text.as_str(), "      ")
        );
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
            reopened,
        } => {
            json!({"event": "message", "conversation": conversation.to_hex(), "author": author_text(c, entry.author), "text": entry_text(&entry.kind), "reopened": reopened})
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
        Event::Expired { conversation } => {
            json!({"event": "expired", "conversation": conversation.to_hex()})
        }
        Event::Kept {
            conversation,
            until,
            by,
        } => {
            json!({"event": "kept", "conversation": conversation.to_hex(), "until": until.0, "by": by.0})
        }
        Event::Purged { conversation, by } => {
            json!({"event": "purged", "conversation": conversation.to_hex(), "by": by.0})
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
            reopened,
        } => format!(
            "{}  {}: {}{}",
            short(conversation),
            one_line(&author_text(c, entry.author)),
            one_line(&entry_text(&entry.kind)),
            if *reopened {
                "\n    (it was resolved: the seeker wrote again, so it is open again)"
            } else {
                ""
            }
        ),
        Event::StatusChanged {
            conversation,
            status,
            ..
        } => format!(
            "{}  now {}",
            short(conversation),
            one_line(&status_text(c, *status))
        ),
        Event::Note { conversation, note } => format!(
            "{}  note by {}: {}",
            short(conversation),
            one_line(&label(c, note.by)),
            one_line(note.text.as_str())
        ),
        Event::Deleted { conversation } => {
            format!("{}  deleted at the seeker's request", short(conversation))
        }
        Event::CannedAnswer { title, by } => {
            format!(
                "canned answer \"{}\" shared by {}",
                one_line(title.as_str()),
                one_line(&label(c, *by))
            )
        }
        Event::Expired { conversation } => format!(
            "{}  deleted: the organisation's retention has passed",
            short(conversation)
        ),
        Event::Kept {
            conversation,
            until,
            by,
        } => format!(
            "{}  kept until {} by {}",
            short(conversation),
            crate::utc(until.0),
            one_line(&label(c, *by))
        ),
        Event::Purged { conversation, by } => format!(
            "{}  resolved and deleted by {}",
            short(conversation),
            one_line(&label(c, *by))
        ),
    }
}

fn print_export(counselor: &Counselor, out: &Out) -> Result<()> {
    let export = hex::encode(counselor.public().encode());
    out.print(json!({ "device": export }), || {
        format!("Give this to the administrator (public keys only):\n{export}")
    });
    Ok(())
}
