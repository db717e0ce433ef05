//! `northstar admin`: the organisation key, teams, counselor devices,
//! partners, and the signed directory.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use northstar_core::client::counselor::DevicePublic;
use northstar_core::client::saved::AdminState;
use northstar_core::directory::{
    DEFAULT_DIRECTORY_LIFETIME_SECS, DeviceEntry, DeviceId, Directory, MAX_DIRECTORY_LIFETIME_SECS,
    OrgSigningKey, Partner, PartnerId,
};
use northstar_core::driver::{Command, Config, Driver};
use northstar_core::intake::{Choice, Localized, Meaning, Question, QuestionId, QuestionKind};
use northstar_core::state::{StateKind, check_new_passphrase};
use rand_core::OsRng;
use serde_json::json;

use crate::Out;
use crate::home::{Home, Input};
use crate::shell::{self, Shell, fail, now};

#[derive(clap::Args)]
pub struct Args {
    /// Where the encrypted administrator files live (default $NORTHSTAR_HOME/admin, else ~/.northstar/admin).
    #[arg(long, env = "NORTHSTAR_ADMIN_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create the organisation key with the default teams.
    ///
    /// Asks for a new passphrase twice (when standard input is not a
    /// terminal: its first two lines, which must match).
    Init,
    /// Print the organisation's public key and fingerprint.
    Fingerprint,
    /// List teams, devices and partners of the directory being prepared.
    Show,
    /// Add a counselor device (its exported public keys) to a team.
    AddDevice {
        /// Team slug, e.g. unaccompanied-minors (see `show`).
        #[arg(long)]
        team: String,
        /// A pseudonym colleagues see (never a real name).
        #[arg(long)]
        label: String,
        /// The device's public keys, as printed by `northstar counselor init`.
        #[arg(long)]
        device: String,
    },
    /// Remove a counselor device from every team.
    RemoveDevice {
        #[arg(long)]
        device: u32,
    },
    /// Add a partner organisation seekers can be referred to.
    AddPartner {
        #[arg(long)]
        name: String,
        #[arg(long)]
        contact: String,
    },
    /// Show the intake questions (the organisation's catalog, with every
    /// translation) and which questions each team asks, as JSON with
    /// --json: the form `set-questions` reads back.
    Questions,
    /// Replace the intake-question catalog from a JSON file (the
    /// `questions` list printed by `northstar --json admin questions`).
    /// Teams keep their lists, which must still name questions of the catalog.
    SetQuestions {
        #[arg(long)]
        file: PathBuf,
    },
    /// Set which intake questions a team asks, in order (catalog ids,
    /// comma separated; an empty list asks none). A "who are you writing
    /// for" question must come first.
    TeamQuestions {
        /// Team slug (see `show`).
        #[arg(long)]
        team: String,
        /// e.g. 1,2,3,4,5,6
        #[arg(long, allow_hyphen_values = true)]
        questions: String,
    },
    /// Sign the directory (next version) and publish it to the relay.
    ///
    /// Every client refuses a directory once it expires, so run this again
    /// well before then (a timer; see docs/DEPLOY.md), even when nothing
    /// changed.
    Publish {
        /// Days until clients refuse this directory (1 to 366). The choice
        /// is kept for later publishes; the first default is 30 days.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DIRECTORY_LIFETIME_SECS / DAY))]
        lifetime_days: Option<u64>,
        /// Days a conversation is kept after the seeker's last message, on
        /// every counselor device, in the seeker's saved state and on the
        /// relay (1 to 366; the relay keeps a state at most its
        /// state_max_hours, 90 days by default). Kept for later publishes;
        /// the first default is 90 days.
        #[arg(long, value_parser = clap::value_parser!(u64).range(
            northstar_core::directory::MIN_RETENTION_SECS / DAY
                ..=northstar_core::directory::MAX_RETENTION_SECS / DAY
        ))]
        retention_days: Option<u64>,
    },
    /// Sign a release of the seeker's web page (file hashes, CSP, the
    /// organisation key and the --relay URLs) and write the directory to
    /// serve (docs/WEB_CLIENT.md, "Signed releases").
    WebRelease(crate::web::ReleaseArgs),
}

const DAY: u64 = 24 * 3600;
const _: () = assert!(DEFAULT_DIRECTORY_LIFETIME_SECS == 30 * DAY);

pub async fn run(args: Args, relay_url: &str, out: &Out) -> Result<()> {
    let home = Home::new(args.home.unwrap_or_else(|| crate::default_home("admin")));
    let mut input = Input::new();
    if let Cmd::Init = args.cmd {
        let pass = input.secret("New administrator passphrase: ")?;
        check_new_passphrase(&pass).map_err(|e| anyhow!("{e}"))?;
        // Asked twice, from a terminal or not: a mistyped passphrase here
        // locks the organisation key away for good.
        let again = input.secret("Repeat the passphrase: ")?;
        if *again != *pass {
            bail!("the passphrases differ; nothing was created");
        }
        let key = OrgSigningKey::generate(&mut OsRng);
        let mut draft = Directory::new(key.public(), 0, now());
        draft.teams = Directory::default_teams();
        let state = AdminState { key, draft };
        home.create(
            pass.as_bytes(),
            StateKind::Admin,
            &state.encode().map_err(|e| anyhow!("{e}"))?,
            &mut OsRng,
        )?;
        return print_fingerprint(&state, out);
    }
    let pass = input.secret("Administrator passphrase: ")?;
    let skey = home.unlock(pass.as_bytes())?;
    let mut state = AdminState::decode(&home.load(&skey, StateKind::Admin)?)
        .map_err(|_| anyhow!("the administrator state is damaged"))?;
    match args.cmd {
        Cmd::Init => unreachable!("handled above"),
        Cmd::Fingerprint => print_fingerprint(&state, out),
        Cmd::Show => {
            let d = &state.draft;
            let teams: Vec<_> = d
                .teams
                .iter()
                .map(|t| {
                    json!({ "id": t.id.0, "slug": t.slug, "name": t.names.en,
                        "devices": t.devices.iter().map(|x| json!({"id": x.id.0, "label": x.label})).collect::<Vec<_>>() })
                })
                .collect();
            let partners: Vec<_> = d
                .partners
                .iter()
                .map(|p| json!({"id": p.id.0, "name": p.name, "contact": p.contact}))
                .collect();
            out.print(
                json!({ "serial": d.serial, "expires_at": (d.serial > 0).then_some(d.expires_at.0),
                    "lifetime_days": d.lifetime_secs() / DAY, "retention_days": d.retention_secs / DAY,
                    "teams": teams, "partners": partners }),
                || {
                    let mut s = format!(
                        "Directory version {} (publish makes {}, valid for {} days)\n",
                        d.serial,
                        d.serial + 1,
                        d.lifetime_secs() / DAY
                    );
                    s += &format!(
                        "Conversations are deleted {} days after the seeker's last message.\n",
                        d.retention_secs / DAY
                    );
                    if d.serial > 0 {
                        s += &format!(
                            "Version {} expires {}: publish again before then.\n",
                            d.serial,
                            crate::utc(d.expires_at.0)
                        );
                    }
                    for t in &d.teams {
                        s += &format!("team {:<3} {:<28} {}\n", t.id.0, t.slug, t.names.en);
                        for x in &t.devices {
                            s += &format!("    device {:<4} {}\n", x.id.0, x.label);
                        }
                    }
                    for p in &d.partners {
                        s += &format!("partner {:<3} {} — {}\n", p.id.0, p.name, p.contact);
                    }
                    s.trim_end().to_owned()
                },
            );
            Ok(())
        }
        Cmd::AddDevice {
            team,
            label,
            device,
        } => {
            let bytes = hex::decode(device.trim()).map_err(|_| {
                anyhow!(
                    "--device must be the hexadecimal text printed by `northstar counselor init`"
                )
            })?;
            let public = DevicePublic::decode(&bytes)
                .map_err(|_| anyhow!("--device is not a valid device export"))?;
            let d = &mut state.draft;
            let team_id = d
                .teams
                .iter()
                .find(|t| t.slug == team)
                .map(|t| t.id)
                .ok_or_else(|| anyhow!("no team called {team:?} (see `northstar admin show`)"))?;
            // The same device in several teams keeps one id.
            let existing = d
                .teams
                .iter()
                .flat_map(|t| &t.devices)
                .find(|x| x.identity == public.identity)
                .map(|x| x.id);
            let id = existing.unwrap_or_else(|| {
                DeviceId(
                    d.teams
                        .iter()
                        .flat_map(|t| &t.devices)
                        .map(|x| x.id.0)
                        .max()
                        .unwrap_or(0)
                        + 1,
                )
            });
            if d.teams
                .iter()
                .any(|t| t.id == team_id && t.devices.iter().any(|x| x.id == id))
            {
                bail!("that device is already in team {team}");
            }
            d.add_device(
                team_id,
                DeviceEntry {
                    id,
                    label: label.clone(),
                    identity: public.identity,
                    mailbox: public.mailbox,
                },
            )
            .map_err(|e| anyhow!("{e}"))?;
            d.validate().map_err(|e| anyhow!("{e}"))?;
            save(&home, &skey, &state)?;
            out.print(json!({ "device": id.0, "team": team }), || format!("Added device {} ({label}) to {team}. Run `northstar admin publish` to make it live.", id.0));
            Ok(())
        }
        Cmd::RemoveDevice { device } => {
            if !state.draft.remove_device(DeviceId(device)) {
                bail!("no device {device} in the directory");
            }
            save(&home, &skey, &state)?;
            out.print(json!({ "removed": device }), || {
                format!("Removed device {device}. Run `northstar admin publish` to make it live.")
            });
            Ok(())
        }
        Cmd::AddPartner { name, contact } => {
            let d = &mut state.draft;
            let id = PartnerId(d.partners.iter().map(|p| p.id.0).max().unwrap_or(0) + 1);
            d.partners.push(Partner {
                id,
                name: name.clone(),
                contact,
            });
            d.validate().map_err(|e| anyhow!("{e}"))?;
            save(&home, &skey, &state)?;
            out.print(json!({ "partner": id.0 }), || {
                format!("Added partner {} ({name}).", id.0)
            });
            Ok(())
        }
        Cmd::WebRelease(a) => crate::web::release(&state.key, a, relay_url, out),
        Cmd::Questions => {
            let d = &state.draft;
            let teams: Vec<_> = d
                .teams
                .iter()
                .map(|t| json!({"slug": t.slug, "questions": t.questions.iter().map(|q| q.0).collect::<Vec<_>>()}))
                .collect();
            out.print(
                json!({ "questions": d.questions.iter().map(question_json).collect::<Vec<_>>(), "teams": teams }),
                || {
                    let mut s = String::new();
                    for q in &d.questions {
                        s += &format!(
                            "question {:<3} {:<10} {:<16} {}\n",
                            q.id.0,
                            q.kind.name(),
                            q.meaning.name(),
                            q.prompt.en
                        );
                        for c in &q.choices {
                            s += &format!("    choice {:<3} {}\n", c.id, c.label.en);
                        }
                    }
                    for t in &d.teams {
                        let ids: Vec<String> = t.questions.iter().map(|q| q.0.to_string()).collect();
                        s += &format!("team {:<28} asks {}\n", t.slug, if ids.is_empty() { "nothing".into() } else { ids.join(", ") });
                    }
                    s.trim_end().to_owned()
                },
            );
            Ok(())
        }
        Cmd::SetQuestions { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| anyhow!("not JSON: {e}"))?;
            let list = v.get("questions").unwrap_or(&v).as_array().ok_or_else(|| {
                anyhow!("expected a list of questions (or {{\"questions\": [...]}})")
            })?;
            let questions = list
                .iter()
                .map(question_of_json)
                .collect::<Result<Vec<_>>>()?;
            let n = questions.len();
            state.draft.questions = questions;
            state.draft.validate().map_err(|e| anyhow!("{e}"))?;
            save(&home, &skey, &state)?;
            out.print(json!({ "questions": n }), || {
                format!("The catalog now has {n} questions. Run `northstar admin publish` to make it live.")
            });
            Ok(())
        }
        Cmd::TeamQuestions { team, questions } => {
            let ids = questions
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| {
                    x.parse::<u16>().map(QuestionId).map_err(|_| {
                        anyhow!("--questions must be question numbers separated by commas")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let t = state
                .draft
                .teams
                .iter_mut()
                .find(|t| t.slug == team)
                .ok_or_else(|| anyhow!("no team called {team:?} (see `northstar admin show`)"))?;
            t.questions = ids.clone();
            state.draft.validate().map_err(|e| anyhow!("{e}"))?;
            save(&home, &skey, &state)?;
            out.print(json!({ "team": team, "questions": ids.iter().map(|q| q.0).collect::<Vec<_>>() }), || {
                format!("Team {team} now asks {} questions. Run `northstar admin publish` to make it live.", ids.len())
            });
            Ok(())
        }
        Cmd::Publish {
            lifetime_days,
            retention_days,
        } => {
            let mut next = state
                .draft
                .successor(now())
                .ok_or_else(|| anyhow!("the directory version cannot grow further"))?;
            if let Some(days) = lifetime_days {
                next.set_lifetime(days * DAY);
            }
            if let Some(days) = retention_days {
                next.retention_secs = days * DAY;
            }
            let signed = next
                .sign(&state.key)
                .map_err(|e| anyhow!("cannot sign the directory: {e}"))?;
            let config = Config {
                relays: shell::relays(relay_url),
                org: state.key.public(),
            };
            let mut sh = Shell::new(Driver::new(config, shell::seed()), None);
            let id = sh
                .driver
                .command(Command::Publish { directory: signed }, now())
                .map_err(fail)?;
            sh.run(id, &mut |_, _| {})
                .await
                .map_err(|e| anyhow!("publishing the directory failed: {}", shell::explain(&e)))?;
            sh.close().await?;
            state.draft = next;
            save(&home, &skey, &state)?;
            let serial = state.draft.serial;
            let expires_at = state.draft.expires_at;
            out.print(
                json!({ "published": serial, "expires_at": expires_at.0 }),
                || {
                    format!(
                        "Published directory version {serial}. Clients refuse it from {}: publish again before then.",
                        crate::utc(expires_at.0)
                    )
                },
            );
            Ok(())
        }
    }
}

fn print_fingerprint(state: &AdminState, out: &Out) -> Result<()> {
    let public = state.key.public();
    let hexkey = hex::encode(public.as_bytes());
    let fp = public.fingerprint();
    out.print(json!({ "org_key": hexkey, "fingerprint": fp }), || {
        format!("Organisation key: {hexkey}\nFingerprint:      {fp}\nPublish both on the organisation's own channels; every client pins the key.")
    });
    Ok(())
}

/// Seals and writes the administrator's state.
fn save(home: &Home, key: &northstar_core::state::StateKey, state: &AdminState) -> Result<()> {
    let plain = state.encode().map_err(|e| anyhow!("{e}"))?;
    home.save(key, StateKind::Admin, &plain, &mut OsRng)
}

fn localized_json(l: &Localized) -> serde_json::Value {
    json!({"en": l.en, "es": l.es, "fr": l.fr, "ht": l.ht})
}

fn question_json(q: &Question) -> serde_json::Value {
    json!({
        "id": q.id.0,
        "kind": q.kind.name(),
        "meaning": q.meaning.name(),
        "prompt": localized_json(&q.prompt),
        "prompt_other": localized_json(&q.prompt_other),
        "choices": q.choices.iter().map(|c| json!({"id": c.id, "label": localized_json(&c.label)})).collect::<Vec<_>>(),
    })
}

fn localized_of_json(v: &serde_json::Value, what: &str) -> Result<Localized> {
    let get = |lang: &str| -> Result<String> {
        match v.get(lang) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(x) => x
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{what}.{lang} must be text")),
        }
    };
    Ok(Localized {
        en: get("en")?,
        es: get("es")?,
        fr: get("fr")?,
        ht: get("ht")?,
    })
}

/// One question of a catalog file (the form `admin questions --json` prints).
fn question_of_json(v: &serde_json::Value) -> Result<Question> {
    let id = v
        .get("id")
        .and_then(|x| x.as_u64())
        .and_then(|x| u16::try_from(x).ok())
        .ok_or_else(|| anyhow!("every question needs a numeric id"))?;
    let name = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let kind = QuestionKind::from_name(name("kind")).ok_or_else(|| {
        anyhow!("question {id}: kind must be yes_no, single, multiple or short_text")
    })?;
    let meaning = match name("meaning") {
        "" => Meaning::Other,
        m => {
            Meaning::from_name(m).ok_or_else(|| anyhow!("question {id}: unknown meaning {m:?}"))?
        }
    };
    let choices = match v.get("choices") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(list) => list
            .as_array()
            .ok_or_else(|| anyhow!("question {id}: choices must be a list"))?
            .iter()
            .map(|c| {
                Ok(Choice {
                    id: c
                        .get("id")
                        .and_then(|x| x.as_u64())
                        .and_then(|x| u8::try_from(x).ok())
                        .ok_or_else(|| {
                            anyhow!("question {id}: every choice needs an id from 0 to 255")
                        })?,
                    label: localized_of_json(
                        c.get("label").unwrap_or(&serde_json::Value::Null),
                        "label",
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(Question {
        id: QuestionId(id),
        kind,
        meaning,
        prompt: localized_of_json(
            v.get("prompt").unwrap_or(&serde_json::Value::Null),
            "prompt",
        )?,
        prompt_other: localized_of_json(
            v.get("prompt_other").unwrap_or(&serde_json::Value::Null),
            "prompt_other",
        )?,
        choices,
    })
}
