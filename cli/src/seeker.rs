//! `northstar seeker`: ask a question without an account, come back with
//! the codename only.

use anyhow::{Result, anyhow, bail};
use northstar_core::client::{Author, EntryKind};
use northstar_core::codename::{Codename, SeekerSecrets};
use northstar_core::directory::{IntakePolicy, OrgPublicKey, VerifiedDirectory};
use northstar_core::driver::{Command, Config, Driver, DriverError, Event, Outcome, check_message};
use northstar_core::intake::{
    Answer, FOR_WHOM_SOMEONE_ELSE, IntakeAnswers, Meaning, Question, QuestionKind,
};
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
        /// Ask the topic's intake questions first (all optional; see
        /// `questions`): at the terminal, or one line of standard input
        /// each, before the message. An empty
        /// line skips a question, `-` is "prefer not to say"; a choice is
        /// its number (see `questions`), several choices are numbers
        /// separated by commas, yes/no is `yes` or `no`.
        #[arg(long)]
        questions: bool,
    },
    /// Show a topic's intake questions (all optional), with their choices' numbers.
    Questions {
        /// The topic's short name (see `topics`).
        #[arg(long)]
        team: String,
        /// en, es, fr or ht.
        #[arg(long, default_value = "en")]
        language: String,
        /// The wording for someone writing on another person's behalf.
        #[arg(long)]
        for_someone_else: bool,
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
        Cmd::Questions {
            team: slug,
            language,
            for_someone_else,
        } => {
            let language = Language::from_tag(&language)
                .ok_or_else(|| anyhow!("--language must be en, es, fr or ht"))?;
            let id = sh.driver.command(Command::Directory, now()).map_err(fail)?;
            sh.run(id, &mut ignore).await.map_err(fail)?;
            let dir = sh
                .driver
                .directory()
                .ok_or_else(|| anyhow!("no directory"))?;
            let questions = team_questions(&dir, &slug)?;
            out.print(
                json!({ "questions": questions.iter().map(|q| question_json(q, language, for_someone_else)).collect::<Vec<_>>() }),
                || {
                    if questions.is_empty() {
                        return "This topic asks no questions.".into();
                    }
                    questions
                        .iter()
                        .map(|q| question_text(q, language, for_someone_else))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        Cmd::Start {
            team: slug,
            language,
            message,
            questions,
            attach: file,
        } => {
            let language = Language::from_tag(&language)
                .ok_or_else(|| anyhow!("--language must be en, es, fr or ht"))?;
            let answers = if questions {
                let id = sh.driver.command(Command::Directory, now()).map_err(fail)?;
                sh.run(id, &mut ignore).await.map_err(fail)?;
                let dir = sh
                    .driver
                    .directory()
                    .ok_or_else(|| anyhow!("no directory"))?;
                let asked = team_questions(&dir, &slug)?;
                ask_questions(&mut input, &asked, language)?
            } else {
                IntakeAnswers::none()
            };
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
                        answers,
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
                    let status = sh.driver.seeker_status();
                    let deletion = sh.driver.seeker_deletion_at();
                    let status_json = status.as_ref().map(|st| {
                        json!({
                            "reached": st.reached,
                            "devices": st.devices,
                            "read": st.read,
                            "answered": st.answered,
                            "referred": st.referred.iter().map(|p| match dir.partner(*p) {
                                Some(x) => json!({ "name": x.name, "contact": x.contact }),
                                None => json!({ "partner": p.0 }),
                            }).collect::<Vec<_>>(),
                            "resolved": st.resolved,
                        })
                    });
                    out.print(
                        json!({ "messages": messages, "expires_at": expires, "status": status_json, "deletion_at": deletion.map(|t| t.0) }),
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
                            if let Some(st) = &status {
                                s += &format!(
                                    "Your last message reached {} of {} team devices{}.\n",
                                    st.reached,
                                    st.devices,
                                    if st.read { "; a counselor has read it" } else { "" }
                                );
                                if st.resolved {
                                    s += "The team has marked your question as resolved.\n";
                                }
                            }
                            if let Some(t) = deletion {
                                s += &format!(
                                    "This conversation will be deleted everywhere on {}.",
                                    crate::utc(t.0)
                                );
                            }
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

/// The questions the topic `slug` asks, in order.
fn team_questions<'a>(dir: &'a VerifiedDirectory, slug: &str) -> Result<Vec<&'a Question>> {
    let team = dir
        .teams()
        .iter()
        .find(|t| t.slug == slug)
        .ok_or_else(|| anyhow!("no topic called {slug:?} (see `northstar seeker topics`)"))?;
    Ok(dir.questions_of(team.id))
}

fn question_json(q: &Question, lang: Language, other: bool) -> serde_json::Value {
    json!({
        "id": q.id.0,
        "kind": q.kind.name(),
        "meaning": q.meaning.name(),
        "prompt": q.prompt(lang, other),
        "choices": q.choices.iter().enumerate().map(|(i, c)| json!({"number": i + 1, "id": c.id, "label": c.label.get(lang)})).collect::<Vec<_>>(),
    })
}

fn question_text(q: &Question, lang: Language, other: bool) -> String {
    let mut s = one_line(q.prompt(lang, other));
    match q.kind {
        QuestionKind::YesNo => s += "  [yes / no]",
        QuestionKind::ShortText => s += "  [a short answer]",
        QuestionKind::Single | QuestionKind::Multiple => {
            if q.kind == QuestionKind::Multiple {
                s += "  [one or more numbers, separated by commas]";
            }
            for (i, c) in q.choices.iter().enumerate() {
                s += &format!("\n    {}. {}", i + 1, one_line(c.label.get(lang)));
            }
        }
    }
    s
}

/// Asks each question (one line each; empty skips, `-` declines). The
/// "who are you writing for" answer switches the wording of the rest.
fn ask_questions(input: &mut Input, asked: &[&Question], lang: Language) -> Result<IntakeAnswers> {
    let mut answers = Vec::new();
    let mut other = false;
    if !asked.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!(
            "A few questions help the team answer you. Every one is optional: press Enter to skip, or type - for \"prefer not to say\"."
        );
    }
    for q in asked {
        let prompt = format!("{}\n> ", question_text(q, lang, other));
        loop {
            let line = input.line(&prompt)?;
            match parse_answer(q, line.trim()) {
                Ok(None) => break,
                Ok(Some(a)) => {
                    if q.meaning == Meaning::ForWhom {
                        other = a == Answer::Choice(FOR_WHOM_SOMEONE_ELSE);
                    }
                    answers.push((q.id, a));
                    break;
                }
                Err(e) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    eprintln!("{e}");
                }
                Err(e) => return Err(e),
            }
        }
    }
    IntakeAnswers::new(answers).map_err(fail_core)
}

fn fail_core(e: northstar_core::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// One typed answer: empty is skipped (`None`), `-` is "prefer not to say".
fn parse_answer(q: &Question, line: &str) -> Result<Option<Answer>> {
    if line.is_empty() {
        return Ok(None);
    }
    if line == "-" {
        return Ok(Some(Answer::Declined));
    }
    let choice = |n: &str| -> Result<u8> {
        n.trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| q.choices.get(i))
            .map(|c| c.id)
            .ok_or_else(|| anyhow!("{n:?} is not one of the numbers listed (press Enter to skip)"))
    };
    Ok(Some(match q.kind {
        QuestionKind::YesNo => match line.to_lowercase().as_str() {
            "y" | "yes" | "s" | "si" | "sí" | "oui" | "wi" => Answer::YesNo(true),
            "n" | "no" | "non" | "non." => Answer::YesNo(false),
            _ => bail!("answer yes or no (or press Enter to skip)"),
        },
        QuestionKind::Single => Answer::Choice(choice(line)?),
        QuestionKind::Multiple => Answer::Choices(
            line.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(choice)
                .collect::<Result<Vec<u8>>>()?,
        ),
        QuestionKind::ShortText => Answer::Text(northstar_core::message::MessageText::new(line)),
    }))
}
