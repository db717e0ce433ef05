//! `northstar seeker`: ask a question without an account, come back with
//! the codename only.

use anyhow::{Result, anyhow, bail};
use northstar_core::client::seeker::Seeker;
use northstar_core::client::{Author, EntryKind};
use northstar_core::codename::{Codename, SeekerSecrets};
use northstar_core::directory::{IntakePolicy, OrgPublicKey, SignedDirectory, VerifiedDirectory};
use northstar_core::frame::ErrorCode;
use northstar_core::message::Language;
use rand_core::OsRng;
use serde_json::json;

use crate::counselor::deposit;
use crate::home::Input;
use crate::relay::{Relay, RelayRefused};
use crate::{Out, now, parse_org};

/// How long the relay keeps a seeker's saved conversation after each visit
/// (30 days); the relay caps it with its own limit and says the expiry.
const STATE_TTL_HOURS: u32 = 30 * 24;

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
    },
    /// Come back: read the conversation (asks for the codename).
    Read,
    /// Write again (asks for the codename; message from --message or standard input).
    Write {
        #[arg(long)]
        message: Option<String>,
    },
    /// Delete everything: asks the team to delete the conversation, then removes your mailbox and saved conversation from the relay.
    Delete,
}

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let org = parse_org(&args.org)?;
    let mut input = Input::new();
    match args.cmd {
        Cmd::Topics => {
            let mut relay = Relay::connect(relay_url).await?;
            let dir = directory(&mut relay, &org).await?;
            let teams: Vec<_> = dir
                .teams()
                .iter()
                .filter(|t| !t.devices.is_empty())
                .collect();
            out.print(json!({ "topics": teams.iter().map(|t| json!({"slug": t.slug, "name": t.names.en})).collect::<Vec<_>>() }), || {
                teams.iter().map(|t| format!("{:<28} {}", t.slug, t.names.en)).collect::<Vec<_>>().join("\n")
            });
            Ok(())
        }
        Cmd::Start {
            team,
            language,
            message,
        } => {
            let language = Language::from_tag(&language)
                .ok_or_else(|| anyhow!("--language must be en, es, fr or ht"))?;
            let text = input.message(message)?;
            let mut relay = Relay::connect(relay_url).await?;
            let dir = directory(&mut relay, &org).await?;
            let team = dir.teams().iter().find(|t| t.slug == team).ok_or_else(|| {
                anyhow!("no topic called {team:?} (see `northstar seeker topics`)")
            })?;
            if team.devices.is_empty() {
                bail!("nobody answers that topic yet; choose another");
            }
            let codename = Codename::generate(&mut OsRng);
            let secrets = derive(&codename, &org)?;
            let mut seeker = Seeker::new(&secrets);
            relay.register(seeker.mailbox(), false).await?;
            let mut bundles = Vec::new();
            for r in dir.intake_set(team.id).map_err(|e| anyhow!("{e}"))? {
                bundles.push(relay.fetch_prekeys(r.device.mailbox.id()).await?);
            }
            let envelopes = seeker
                .start(&dir, team.id, language, &text, &bundles, now(), &mut OsRng)
                .map_err(|e| anyhow!("{e}"))?;
            let expires = relay
                .put_state(
                    seeker.save(&mut OsRng).map_err(|e| anyhow!("{e}"))?,
                    STATE_TTL_HOURS,
                )
                .await?;
            deposit(relay_url, envelopes).await?;
            let words = codename.to_zeroizing_string();
            let narrowed = dir.intake_policy() == IntakePolicy::TeamOnly;
            out.print(json!({ "codename": words.as_str(), "expires_at": expires, "relay_learns_topic": narrowed }), || {
                let mut s = String::new();
                if narrowed {
                    s += "Note: this organisation routes messages to the chosen team only, so the relay learns the topic you chose.\n";
                }
                s += &format!("Your message was sent.\n\nYour codename (write it down; it is shown only once):\n\n    {}\n\nCome back with `northstar seeker read` and this codename. Your conversation is kept until {} unless you return.", words.as_str(), crate::utc(expires));
                s
            });
            Ok(())
        }
        Cmd::Read | Cmd::Write { .. } | Cmd::Delete => {
            let typed = input.secret("Codename: ")?;
            let codename = Codename::parse(&typed)
                .map_err(|e| anyhow!("that codename is not valid ({e}); check each word"))?;
            let secrets = derive(&codename, &org)?;
            let mut relay = Relay::connect(relay_url).await?;
            let dir = directory(&mut relay, &org).await?;
            let mut seeker = open(&mut relay, &secrets).await?;
            let deliveries = relay.subscribe().await?;
            let mut ids = Vec::new();
            for d in deliveries {
                if let Err(e) = seeker.receive(&d.envelope) {
                    eprintln!("northstar: skipped a message that could not be read ({e})");
                }
                ids.push(d.id);
            }
            let mut expires = relay
                .put_state(
                    seeker.save(&mut OsRng).map_err(|e| anyhow!("{e}"))?,
                    STATE_TTL_HOURS,
                )
                .await?;
            relay.ack(ids).await?;
            match args.cmd {
                Cmd::Write { message } => {
                    let text = input.message(message)?;
                    let envelopes = seeker
                        .write(&text, now(), &mut OsRng)
                        .map_err(|e| anyhow!("{e}"))?;
                    expires = relay
                        .put_state(
                            seeker.save(&mut OsRng).map_err(|e| anyhow!("{e}"))?,
                            STATE_TTL_HOURS,
                        )
                        .await?;
                    deposit(relay_url, envelopes).await?;
                    out.print(json!({ "ok": true, "expires_at": expires }), || {
                        "Your message was sent.".into()
                    });
                }
                Cmd::Delete => {
                    let envelopes = seeker
                        .request_deletion(now(), &mut OsRng)
                        .map_err(|e| anyhow!("{e}"))?;
                    deposit(relay_url, envelopes).await?;
                    relay.delete_mailbox().await?;
                    out.print(json!({ "deleted": true }), || "Everything is deleted: your mailbox and saved conversation are gone from the relay, and the team was asked to delete their copy.".into());
                }
                _ => {
                    let conv = seeker
                        .conversation()
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
                                s += &format!("{who}: {}\n", entry_text(&dir, &e.kind));
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
            Ok(())
        }
    }
}

fn derive(codename: &Codename, org: &OrgPublicKey) -> Result<SeekerSecrets> {
    codename
        .derive(org.as_ed25519())
        .map_err(|e| anyhow!("cannot derive keys from the codename: {e}"))
}

async fn directory(relay: &mut Relay, org: &OrgPublicKey) -> Result<VerifiedDirectory> {
    let bytes = relay.fetch_directory(org.as_ed25519()).await?;
    SignedDirectory::decode(&bytes)
        .and_then(|d| d.verify(org, None).map_err(Into::into))
        .map_err(|e| anyhow!("the directory from the relay is not signed by this organisation ({e}); do not continue"))
}

/// Authenticates to the codename's mailbox and restores the saved state.
async fn open(relay: &mut Relay, secrets: &SeekerSecrets) -> Result<Seeker> {
    let not_found = || {
        anyhow!(
            "no conversation found for this codename; check the words (a codename that is not written exactly gives a different, empty mailbox)"
        )
    };
    let keys = secrets.mailbox_keys();
    match relay.auth(&keys).await {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.downcast_ref::<RelayRefused>(),
                Some(RelayRefused(
                    ErrorCode::UnknownMailbox | ErrorCode::AuthFailed
                ))
            ) =>
        {
            return Err(not_found());
        }
        Err(e) => return Err(e),
    }
    let (blob, _) = relay.get_state().await?.ok_or_else(not_found)?;
    Seeker::restore(secrets, &blob)
        .map_err(|_| anyhow!("the saved conversation could not be opened with this codename"))
}

fn entry_text(dir: &VerifiedDirectory, k: &EntryKind) -> String {
    match k {
        EntryKind::Text(t) => t.as_str().to_owned(),
        EntryKind::Referral { partner, text } => match dir.partner(*partner) {
            Some(p) => format!("{} — referral to {} ({})", text.as_str(), p.name, p.contact),
            None => format!("{} — referral to a partner organisation", text.as_str()),
        },
    }
}
