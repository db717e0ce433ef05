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
