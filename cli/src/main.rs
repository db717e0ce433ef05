//! `northstar`: the command-line client for administrators, counselors and
//! seekers, on northstar-core. Thin: the protocol lives in the core; this
//! binary reads secrets, keeps encrypted local files, and moves bytes to
//! and from the relay.
//!
//! Passphrases and codenames are read from a hidden prompt or, when standard
//! input is not a terminal, from its first line — never from arguments.

mod admin;
mod attach;
mod counselor;
mod home;
mod inbox_web;
mod seeker;
mod shell;
mod term;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use northstar_core::directory::OrgPublicKey;

/// What each command reads, shown by `--help` (and in README.md).
const AFTER_HELP: &str = "\
Secrets never go on the command line. A command asks for them at a hidden
prompt; when standard input is not a terminal, it reads them from standard
input instead, one per line, in this order:

  admin init                   1: new administrator passphrase  2: the same again
  admin (every other command)  1: administrator passphrase
  counselor init               1: new device passphrase
  counselor search             1: device passphrase  2: the search words
  counselor (every other)      1: device passphrase
  seeker start                 (no secret: the codename is made and printed once;
                               with --questions, one line per intake question
                               first: empty skips, - is «prefer not to say»)
  seeker read                  1: codename
  seeker write                 1: codename
  seeker delete                1: codename  2: yes (or give --yes)

A message (seeker start and write; counselor reply, note, refer and
save-answer) is the rest of standard input after those lines, or is typed at
the terminal after the prompt (end it with Ctrl-D). --message also works, but
puts the text in shell history and in the process list: avoid it for
anything personal. An empty message is refused, and so is one over 16384
bytes (about 16,000 letters, or 8,000 in accented or non-Latin scripts).

Environment:
  NORTHSTAR_RELAY           the relay URL(s) (as --relay)
  NORTHSTAR_ORG             the organisation key (seeker --org, counselor init --org)
  NORTHSTAR_HOME            where local files live: <NORTHSTAR_HOME>/admin and
                            <NORTHSTAR_HOME>/counselor (default ~/.northstar);
                            --home, NORTHSTAR_ADMIN_HOME and
                            NORTHSTAR_COUNSELOR_HOME name one role's directory

Exit status: 0 done, 1 failed (one sentence on standard error), 3 done but some
messages could not be read (kept; never dropped silently).";

#[derive(Parser)]
#[command(
    name = "northstar",
    version,
    about = "Northstar command-line client: admin, counselor and seeker",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The relay's WebSocket URL; several, separated by commas, are tried in
    /// order and failed over.
    #[arg(
        long,
        global = true,
        env = "NORTHSTAR_RELAY",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    relay: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// The organisation's administrator (holds the signing key, offline).
    Admin(admin::Args),
    /// A counselor device.
    Counselor(counselor::Args),
    /// A person asking for advice (no account: a codename).
    Seeker(seeker::Args),
    /// The web client's signed releases: check what a site serves.
    Web(web::Args),
}

/// Output settings shared by the commands.
#[derive(Debug)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints a JSON value (with `--json`) or the text lines, with every
    /// control character escaped ([`term::safe`]): text from the other side
    /// never reaches the terminal raw.
    pub fn print(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{}", term::safe(&t));
            }
        }
    }
}

/// Exit code of a command that worked but met messages it could not read.
pub const EXIT_UNREADABLE: u8 = 3;

/// Says how many delivered messages could not be read (they are never
/// dropped silently) and makes the exit code say so.
pub fn report_unreadable(count: u32, kept: &str) -> anyhow::Result<()> {
    if count > 0 {
        eprintln!("northstar: {count} message(s) could not be read; {kept}.");
        return Err(anyhow::Error::new(Unreadable(count)));
    }
    Ok(())
}

/// Marks the outcome of [`report_unreadable`] for the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0} message(s) could not be read")]
pub struct Unreadable(pub u32);

/// A Unix time as `YYYY-MM-DD HH:MM UTC` (civil-from-days, proleptic Gregorian).
pub fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Parses the organisation key given as 64 hex digits.
pub fn parse_org(hex: &str) -> anyhow::Result<OrgPublicKey> {
    let id = northstar_core::ids::MailboxId::from_hex(hex.trim())
        .ok_or_else(|| anyhow::anyhow!("the organisation key must be 64 hexadecimal digits"))?;
    OrgPublicKey::from_bytes(*id.as_bytes())
        .map_err(|_| anyhow::anyhow!("that is not a valid organisation key"))
}

/// Default home directory of a role: `$NORTHSTAR_HOME/<role>` or `~/.northstar/<role>`.
pub fn default_home(role: &str) -> PathBuf {
    let base = std::env::var_os("NORTHSTAR_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".northstar")))
        .unwrap_or_else(|| PathBuf::from(".northstar"));
    base.join(role)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("northstar: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        shell::check_test_clock()?;
        match cli.role {
            Role::Admin(a) => admin::run(a, &cli.relay, &out).await,
            Role::Counselor(c) => counselor::run(c, &cli.relay, &out).await,
            Role::Seeker(s) => seeker::run(s, &cli.relay, &out).await,
            Role::Web(w) => web::run(w, &out).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Unreadable>().is_some() => {
            if out.json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            ExitCode::from(EXIT_UNREADABLE)
        }
        Err(e) => {
            // One clear sentence: the outermost context, then the cause.
            let mut msg = e.to_string();
            if let Some(cause) = e.chain().nth(1) {
                msg = format!("{msg}: {cause}");
            }
            if out.json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("northstar: {}", term::safe(&msg));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(1_798_394_400), "2026-12-27 18:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
    }
}
