//! `northstar seeker`: ask a question without an account, come back with
//! the codename only.

use anyhow::{Result, anyhow, bail};
use northstar_core::client::{Author, EntryKind};
use northstar_core::codename::{Codename, SeekerSecrets};
use northstar_core::directory::{IntakePolicy, OrgPublicKey, VerifiedDirectory};
use northstar_core::driver::{Command, Config, Driver, DriverError, Event, Outcome, check_message};
use northstar_core::message::Language;
use rand_core::OsRng;
use serde_json::json;

use std::path::PathBuf;

use northstar_core::attachment::AttachmentRef;

use crate::attach;
use crate::home::Input;
use crate::shell::{self, Shell, fail, now};
use crate::term::{block, one_line};
use crate::{Out, parse_org};

#[derive(clap::Args)]
pub struct Args {
    /// The organisation's public key (64 hex digits), from its own website or leaflet.
    #[arg(long, env = "NORTHSTAR_ORG")]
    org: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// List the topics you can write to.
    Topics,
    /// Start a conversation; prints your codename ONCE — write it down.
    Start {
        /// The topic's short name (see `topics`).
        #[arg(long)]
        team: String,
        /// Your language: en, es, fr or ht.
        #[arg(long, default_value = "en")]
        language: String,
        /// Your question (or give it on standard input).
        #[arg(long)]
        message: Option<String>,
        /// Also send this file (a document or a photo, at most 10 MB) after the question.
        #[arg(long)]
        attach: Option<PathBuf>,
    },
    /// Come back: read the conversation (asks for the codename).
    Read,
    /// Write again (asks for the codename; message from --message or standard input).
    Write {
        #[arg(long)]
        message: Option<String>,
        /// Send this file (at most 10 MB); with it, a message is sent only if --message is given.
        #[arg(long)]
        attach: Option<PathBuf>,
    },
    /// Save a file of the conversation (asks for the codename).
    SaveAttachment {
        /// Which file: 1 for the first file of the conversation (as `read` numbers them).
        #[arg(long, default_value_t = 1)]
        file: usize,
        /// Where to save it (a folder keeps the file's own name).
        #[arg(long)]
        out: PathBuf,
    },
    /// Delete everything: asks the team to delete the conversation, then removes your mailbox and saved conversation from the relay.
    ///
    /// Asks for the codename, then for confirmation (type `yes`; when
    /// standard input is not a terminal, its second line). Cannot be undone.
    Delete {
        /// Do not ask for confirmation (for scripts).
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let org = parse_org(&args.org)?;
    let mut input = Input::new();
    let config = Config {
        relays: shell::relays(relay_url),
        org,
    };
    let mut sh = Shell::new(Driver::new(config, shell::seed()), None);
    let mut ignore = |_: &Driver, _: &Event| {};
    match args.cmd {
        Cmd::Topics => {
            let id = sh.driver.command(Command::Directory, now()).map_err(fail)?;
            sh.run(id, &mut ignore).await.map_err(fail)?;
            let dir = sh
                .driver
                .directory()
                .ok_or_else(|| anyhow!("no directory"))?;
            let teams: Vec<_> = dir
                .teams()
                .iter()
                .filter(|t| !t.devices.is_empty())
                .collect();
            out.print(json!({ "topics": teams.iter().map(|t| json!({"slug": t.slug, "name": t.names.en})).collect::<Vec<_>>() }), || {
                teams.iter().map(|t| format!("{:<28} {}", one_line(&t.slug), one_line(&t.names.en))).collect::<Vec<_>>().join("\n")
            });
        }
        Cmd::Start {
            team: slug,
            language,
            message,
            attach: file,
        } => {
            let language = Language::from_tag(&language)
                .ok_or_else(|| anyhow!("--language must be en, es, fr or ht"))?;
            let text = input.message(message)?;
            check_message(&text).map_err(fail)?;
            let file = file.as_deref().map(attach::open).transpose()?;
            if let Some((info, size, _)) = &file {
                northstar_core::driver::attach::check_size(*size).map_err(fail)?;
                eprintln!("northstar: {}", attach::notice(info));
            }
            let codename = Codename::generate(language, &mut OsRng);
            let secrets = derive(&codename, &org)?;
            let id = sh
                .driver
                .command(
                    Command::SeekerStart {
                        secrets: Box::new(secrets),
                        team_slug: slug.clone(),
                        language,
                        text,
                    },
                    now(),
                )
                .map_err(fail)?;
            let outcome = sh.run(id, &mut ignore).await.map_err(|e| match e {
                DriverError::UnknownTopic => {
                    anyhow!("no topic called {slug:?} (see `northstar seeker topics`)")
                }
                e => fail(e),
            })?;
            let Outcome::Started { mut expires_at } = outcome else {
                bail!("unexpected outcome");
            };
            if let Some((info, size, f)) = file {
                match attach::send(&mut sh, f, Command::SeekerAttach { info, size }).await {
                    Ok(Outcome::Attached { expires_at: e }) => expires_at = e,
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "northstar: your question was sent, but the file was not: {}",
                        shell::explain(&e)
                    ),
                }
            }
            sh.close().await?;
            let expires = expires_at.0;
            let words = codename.to_zeroizing_string();
            let narrowed = sh
                .driver
                .directory()
                .is_some_and(|d| d.intake_policy() == IntakePolicy::TeamOnly);
            out.print(json!({ "codename": words.as_str(), "expires_at": expires, "relay_learns_topic": narrowed }), || {
                let mut s = String::new();
                if narrowed {
                    s += "Note: this organisation routes messages to the chosen team only, so the relay learns the topic you chose.\n";
                }
                s += &format!("Your message was sent.\n\nYour codename (write it down; it is shown only once):\n\n    {}\n\nCome back with `northstar seeker read` and this codename. Your conversation is kept until {} unless you return.", words.as_str(), crate::utc(expires));
                s
            });
        }
        Cmd::Read | Cmd::Write { .. } | Cmd::Delete { .. } | Cmd::SaveAttachment { .. } => {
            let typed = input.secret("Codename: ")?;
            let codename = Codename::parse(&typed)
                .map_err(|e| anyhow!("that codename is not valid ({e}); check each word"))?;
            let mut file = None;
            let text = match &args.cmd {
                Cmd::Write {
                    message,
                    attach: Some(path),
                } => {
                    let (info, size, f) = attach::open(path)?;
                    northstar_core::driver::attach::check_size(size).map_err(fail)?;
                    eprintln!("northstar: {}", attach::notice(&info));
                    file = Some((info, size, f));
                    match message {
                        Some(m) => {
                            check_message(m).map_err(fail)?;
                            Some(m.clone())
                        }
                        None => None,
                    }
                }
                Cmd::Write { message, .. } => {
                    let t = input.message(message.clone())?;
                    check_message(&t).map_err(fail)?;
                    Some(t)
                }
                Cmd::Delete { yes: false } => {
                    let answer = input.line(
                        "This deletes your conversation for good, here and with the team. Type yes to delete: ",
                    )?;
                    if !answer.trim().eq_ignore_ascii_case("yes") {
                        bail!("nothing was deleted (answer yes, or add --yes)");
                    }
                    None
                }
                _ => None,
            };
            let secrets = derive(&codename, &org)?;
            let id = sh
                .driver
                .command(
                    Command::SeekerOpen {
                        secrets: Box::new(secrets),
                    },
                    now(),
                )
                .map_err(fail)?;
            let Outcome::Opened { expires_at } = sh.run(id, &mut ignore).await.map_err(fail)?
            else {
                bail!("unexpected outcome");
            };
            let mut expires = expires_at.0;
            match args.cmd {
                Cmd::Write { .. } => {
                    if let Some(text) = text {
                        let id = sh
                            .driver
                            .command(Command::SeekerWrite { text }, now())
                            .map_err(fail)?;
                        if let Outcome::Sent { expires_at } =
                            sh.run(id, &mut ignore).await.map_err(fail)?
                        {
                            expires = expires_at.0;
                        }
                    }
                    let with_file = file.is_some();
                    if let Some((info, size, f)) = file
                        && let Outcome::Attached { expires_at } =
                            attach::send(&mut sh, f, Command::SeekerAttach { info, size })
                                .await
                                .map_err(fail)?
                    {
                        expires = expires_at.0;
                    }
                    out.print(json!({ "ok": true, "expires_at": expires }), || {
                        if with_file {
                            "Sent.".into()
                        } else {
                            "Your message was sent.".into()
                        }
                    });
                }
                Cmd::SaveAttachment { file, out: path } => {
                    let conv = sh
                        .driver
                        .seeker_conversation()
                        .ok_or_else(|| anyhow!("no conversation found for this codename"))?;
                    let reference = nth_attachment(conv.history.iter().map(|e| &e.kind), file)?;
                    let saved = attach::save(&mut sh, reference, &path).await?;
                    out.print(json!({ "saved": saved.display().to_string() }), || {
                        format!("Saved to {}.", saved.display())
                    });
                }
                Cmd::Delete { .. } => {
                    let id = sh
                        .driver
                        .command(Command::SeekerDelete, now())
                        .map_err(fail)?;
                    sh.run(id, &mut ignore).await.map_err(fail)?;
                    out.print(json!({ "deleted": true }), || "Everything is deleted: your mailbox and saved conversation are gone from the relay, and the team was asked to delete their copy.".into());
                }
                _ => {
                    let dir = sh
                        .driver
                        .directory()
                        .ok_or_else(|| anyhow!("no directory"))?;
                    let conv = sh
                        .driver
                        .seeker_conversation()
                        .ok_or_else(|| anyhow!("no conversation found for this codename"))?;
                    let messages: Vec<_> = conv
                        .history
                        .iter()
                        .map(|e| json!({ "from": match e.author { Author::Seeker => "you", Author::Counselor(_) => "counselor" }, "at": e.at.0, "text": entry_text(&dir, &e.kind) }))
                        .collect();
                    out.print(
                        json!({ "messages": messages, "expires_at": expires }),
                        || {
                            let mut s = String::new();
                            for e in &conv.history {
                                let who = match e.author {
                                    Author::Seeker => "You",
                                    Author::Counselor(_) => "Counselor",
                                };
                                s += &format!(
                                    "{who} ({}):\n    {}\n",
                                    crate::utc(e.at.0),
                                    block(&entry_text(&dir, &e.kind), "    ")
                                );
                            }
                            if conv.history.iter().all(|e| e.author == Author::Seeker) {
                                s += "(No answer yet. Come back later.)\n";
                            }
                            s += &format!(
                                "Kept until {} unless you come back.",
                                crate::utc(expires)
                            );
                            s
                        },
                    );
                }
            }
            sh.close().await?;
        }
    }
    crate::report_unreadable(sh.unreadable, "left on the relay until they expire")
}

fn derive(codename: &Codename, org: &OrgPublicKey) -> Result<SeekerSecrets> {
    codename
        .derive(org.as_ed25519())
        .map_err(|e| anyhow!("cannot derive keys from the codename: {e}"))
}

/// The `n`-th file (from 1) of a conversation.
pub fn nth_attachment<'a>(
    kinds: impl Iterator<Item = &'a EntryKind>,
    n: usize,
) -> Result<AttachmentRef> {
    kinds
        .filter_map(|k| match k {
            EntryKind::Attachment(a) => Some(a.clone()),
            _ => None,
        })
        .nth(n.wrapping_sub(1))
        .ok_or_else(|| anyhow!("there is no file number {n} in this conversation"))
}

/// How a file shows in a conversation.
pub fn attachment_text(a: &AttachmentRef) -> String {
    format!(
        "[file] {} ({}, {} KB) — save it with save-attachment",
        one_line(a.info.name.as_str()),
        a.info.media_type.as_str(),
        u64::from(a.size).div_ceil(1024)
    )
}

fn entry_text(dir: &VerifiedDirectory, k: &EntryKind) -> String {
    match k {
        EntryKind::Attachment(a) => attachment_text(a),
        EntryKind::Text(t) => t.as_str().to_owned(),
        EntryKind::Referral { partner, text } => match dir.partner(*partner) {
            Some(p) => format!("{} — referral to {} ({})", text.as_str(), p.name, p.contact),
            None => format!("{} — referral to a partner organisation", text.as_str()),
        },
    }
}
