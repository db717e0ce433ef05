//! The shell around client-core's driver: tokio-tungstenite sockets, proof
//! of work on a blocking thread, the clock, and (for a counselor device) the
//! file the sealed state lives in. It moves bytes; every request sequence,
//! batch, retry and error kind is the driver's (`northstar_core::driver`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use northstar_core::UnixTime;
use northstar_core::directory::DirectoryError;
use northstar_core::driver::{
    CommandId, ConnId, Driver, DriverError, Event, Outcome, Output, Work, WorkId,
};
use northstar_core::frame::ErrorCode;
use northstar_core::pow;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use zeroize::Zeroizing;

use crate::home::DeviceFile;

/// How long closing waits for the sockets to send what is still queued.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// How long opening one WebSocket may take before the driver is told it failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

enum Input {
    Connected(ConnId),
    Frame(ConnId, Vec<u8>),
    Closed(ConnId),
    Work(WorkId, u64),
}

/// A driver with its sockets.
pub struct Shell {
    pub driver: Driver,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Vec<u8>>>,
    /// The socket tasks, awaited on close so that what was queued last (the
    /// acknowledgements) reaches the relay before the process exits.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    /// A counselor device's state file, with its lock.
    device: Option<DeviceFile>,
    /// Messages that could not be read during this run (exit code).
    pub unreadable: u32,
    /// The file being attached (`Output::ReadFile` reads slices of it).
    pub file_in: Option<std::fs::File>,
    /// The file being downloaded (`Output::WriteFile` appends to it).
    pub file_out: Option<std::fs::File>,
}

/// The current time, for the core (which reads no clock), moved forward
/// by `NORTHSTAR_TEST_CLOCK_OFFSET_SECS` seconds in a debug build only (the
/// end-to-end retention test; a release build refuses the variable, see
/// [`check_test_clock`]).
pub fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_add(test_clock_offset()),
    )
}

/// The test clock's offset in seconds (0 in release builds).
fn test_clock_offset() -> u64 {
    if !cfg!(debug_assertions) {
        return 0;
    }
    static OFFSET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("NORTHSTAR_TEST_CLOCK_OFFSET_SECS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Refuses the test clock variable in a release build.
pub fn check_test_clock() -> Result<()> {
    if !cfg!(debug_assertions) && std::env::var_os("NORTHSTAR_TEST_CLOCK_OFFSET_SECS").is_some() {
        anyhow::bail!("NORTHSTAR_TEST_CLOCK_OFFSET_SECS is for test builds only; unset it");
    }
    Ok(())
}

/// 32 bytes from the operating system for the driver's CSPRNG.
pub fn seed() -> Zeroizing<[u8; 32]> {
    use rand_core::RngCore;
    let mut s = Zeroizing::new([0u8; 32]);
    rand_core::OsRng.fill_bytes(&mut *s);
    s
}

/// The relay URLs from `--relay` (comma-separated, tried in order).
pub fn relays(arg: &str) -> Vec<String> {
    arg.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Shell {
    pub fn new(driver: Driver, device: Option<DeviceFile>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Shell {
            driver,
            conns: HashMap::new(),
            tasks: Vec::new(),
            tx,
            rx,
            device,
            unreadable: 0,
            file_in: None,
            file_out: None,
        }
    }

    /// Runs a command to its end, handing every other event to `on_event`.
    pub async fn run(
        &mut self,
        command: CommandId,
        on_event: &mut dyn FnMut(&Driver, &Event),
    ) -> Result<Outcome, DriverError> {
        let mut result = None;
        loop {
            self.drain(&mut |d, e| match e {
                Event::Done {
                    command: c,
                    outcome,
                } if *c == command => {
                    result = Some(Ok(outcome.clone()));
                }
                Event::Failed { command: c, error } if *c == command => {
                    result = Some(Err(error.clone()));
                }
                other => on_event(d, other),
            })
            .map_err(|_| DriverError::Misuse {
                what: "the device state could not be saved",
            })?;
            if let Some(r) = result.take() {
                return r;
            }
            self.next_input().await;
        }
    }

    /// Keeps receiving until `until` (or forever), handing events to `on_event`.
    pub async fn watch(
        &mut self,
        until: Option<tokio::time::Instant>,
        on_event: &mut dyn FnMut(&Driver, &Event),
    ) -> Result<()> {
        if let Some(d) = self.device.as_mut() {
            d.release();
        }
        loop {
            self.drain(on_event)?;
            let next = self.next_input();
            match until {
                Some(t) => {
                    if tokio::time::timeout_at(t, next).await.is_err() {
                        return Ok(());
                    }
                }
                None => next.await,
            }
        }
    }

    /// Closes every connection, carrying out what the driver still queued
    /// (a last save).
    pub async fn close(&mut self) -> Result<()> {
        self.driver.close();
        self.drain(&mut |_, _| {})?;
        // Each socket task sends what is still queued, then closes; give
        // them a bounded time to do so before the process ends.
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(CLOSE_FLUSH, futures_util::future::join_all(tasks)).await;
        Ok(())
    }

    /// Waits for one input (a socket, a solved proof of work, or the
    /// driver's timer) and feeds it to the driver, under the device lock.
    async fn next_input(&mut self) {
        let wake = self.driver.poll_timeout().map(|t| {
            let secs = t.0.saturating_sub(now().0);
            tokio::time::Instant::now() + Duration::from_secs(secs)
        });
        let input = match wake {
            Some(at) => tokio::time::timeout_at(at, self.rx.recv())
                .await
                .unwrap_or_default(),
            None => self.rx.recv().await,
        };
        if let Some(d) = self.device.as_mut()
            && let Ok(Some(newer)) = d.acquire()
        {
            // Another process saved the device meanwhile: continue from its copy.
            if let Err(e) = self.driver.reload_counselor(&newer) {
                eprintln!(
                    "northstar: the device state changed on disk and could not be reloaded ({e})"
                );
            }
        }
        let t = now();
        match input {
            Some(Input::Connected(c)) => self.driver.handle_connected(c, t),
            Some(Input::Frame(c, b)) => self.driver.handle_frame(c, &b, t),
            Some(Input::Closed(c)) => {
                self.conns.remove(&c);
                self.driver.handle_closed(c, t)
            }
            Some(Input::Work(w, n)) => self.driver.handle_work(w, n, t),
            None => self.driver.handle_timeout(t),
        }
    }

    /// Carries out every queued output, in order.
    fn drain(&mut self, on_event: &mut dyn FnMut(&Driver, &Event)) -> Result<()> {
        let mut events = Vec::new();
        while let Some(out) = self.driver.poll_output() {
            match out {
                Output::Connect { conn, url, .. } => self.connect(conn, url),
                Output::Send { conn, frame } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.send(frame);
                    }
                }
                Output::Close { conn } => {
                    self.conns.remove(&conn);
                }
                Output::Persist { sealed } => match self.device.as_mut() {
                    Some(d) => d.save(&sealed)?,
                    None => {
                        anyhow::bail!("the driver asked to save state this client does not keep")
                    }
                },
                Output::Work { work, job } => self.solve(work, job),
                Output::ReadFile { read, offset, len } => {
                    let bytes = self.file_in.as_ref().and_then(|f| {
                        use std::os::unix::fs::FileExt;
                        let mut buf = Zeroizing::new(vec![0u8; len]);
                        f.read_exact_at(&mut buf, offset).ok().map(|()| buf)
                    });
                    self.driver.handle_read(read, bytes, now());
                }
                Output::WriteFile { data, .. } => {
                    use std::io::Write;
                    let ok = self
                        .file_out
                        .as_mut()
                        .is_some_and(|f| f.write_all(&data.0).is_ok());
                    if !ok {
                        anyhow::bail!("cannot write the file being saved");
                    }
                }
                Output::Event(e) => {
                    if matches!(e, Event::Unreadable { .. }) {
                        self.unreadable += 1;
                    }
                    if let Event::PartlyRefused { refused, of, code } = &e {
                        eprintln!(
                            "northstar: sent, but {refused} of its {of} copies did not get through ({})",
                            explain_code(*code)
                        );
                    }
                    events.push(e);
                }
            }
        }
        for e in &events {
            on_event(&self.driver, e);
        }
        if let Some(d) = self.device.as_mut()
            && !d.held()
        {
            d.release();
        }
        Ok(())
    }

    fn solve(&self, work: WorkId, job: Work) {
        let tx = self.tx.clone();
        let Work::ProofOfWork {
            challenge,
            batch_hash,
            difficulty,
        } = job;
        tokio::task::spawn_blocking(move || {
            if let Ok(nonce) = pow::solve(&challenge, &batch_hash, difficulty) {
                let _ = tx.send(Input::Work(work, nonce));
            }
        });
    }

    fn connect(&mut self, conn: ConnId, url: String) {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.conns.insert(conn, out_tx);
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let ws = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await
            {
                Ok(Ok((ws, _))) => ws,
                _ => {
                    let _ = tx.send(Input::Closed(conn));
                    return;
                }
            };
            let _ = tx.send(Input::Connected(conn));
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    out = out_rx.recv() => match out {
                        Some(frame) => {
                            if sink.send(Message::Binary(frame.into())).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            return;
                        }
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Binary(b))) => {
                            let _ = tx.send(Input::Frame(conn, b.to_vec()));
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = tx.send(Input::Closed(conn));
        });
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(task);
    }
}

/// A driver error in the command line's words.
pub fn explain(e: &DriverError) -> String {
    match e {
        DriverError::NoRelay => "no relay is configured (use --relay or NORTHSTAR_RELAY)".into(),
        DriverError::Network => {
            "cannot reach the relay (check --relay and the network, then try again)".into()
        }
        DriverError::Protocol => "the relay answered something unexpected; try again".into(),
        DriverError::UnsupportedVersion { relay, ours } => format!(
            "unsupported version: the relay speaks protocol version {relay} and this northstar version {ours}; one of the two must be updated"
        ),
        DriverError::Relay { code } => explain_code(*code).into(),
        DriverError::TooLargeForRelay { size, max } => format!(
            "this message is too large for the relay ({size} bytes; it accepts {max} bytes in one frame)"
        ),
        DriverError::NoDirectory => {
            "the relay has no directory for this organisation yet (the administrator must publish one)".into()
        }
        DriverError::DirectoryRefused(DirectoryError::Expired { expires_at }) => format!(
            "the organisation's team directory expired on {}, and the relay offers no newer one, so nothing was sent or read. The organisation must sign a new one (its administrator runs `northstar admin publish`); if it has, this relay is withholding it — try again later or through another relay",
            crate::utc(*expires_at)
        ),
        DriverError::DirectoryRefused(e) => format!(
            "the relay's directory was refused ({e}); the relay may be serving a forged or outdated one — do not continue"
        ),
        DriverError::CodenameNotFound => "no conversation found for this codename; check the words (a codename that is not written exactly gives a different, empty mailbox)".into(),
        DriverError::StateDoesNotOpen => {
            "the saved conversation could not be opened with this codename".into()
        }
        DriverError::UnknownTopic => {
            "no such topic (see `northstar seeker topics`)".into()
        }
        DriverError::NobodyAnswers => "nobody answers that topic yet; choose another".into(),
        DriverError::DeviceWithoutKeys => {
            "a counselor device has not uploaded its keys yet; try again later".into()
        }
        DriverError::NotInDirectory => "this device is not in the team directory yet: give the administrator the keys from `northstar counselor export`".into(),
        DriverError::ClaimedByOther { by } => format!(
            "device {} has claimed this conversation; ask them to hand it off",
            by.0
        ),
        DriverError::NotSentYet { cause } => format!(
            "not sent yet ({}); it is saved and will be sent the next time (seeker read or write, counselor sync)",
            explain(cause)
        ),
        DriverError::EmptyMessage => "the message is empty; write something first".into(),
        DriverError::MessageTooLong { len, max } => format!(
            "the message is too long: it is {len} bytes, and one message holds at most {max} bytes (about {max} letters of plain English, or {} accented or non-Latin letters); nothing was sent — shorten it or send it in parts",
            max / 2
        ),
        DriverError::OtherOrganisation => "this device belongs to another organisation (check NORTHSTAR_ORG and --home)".into(),
        DriverError::Misuse { what } => (*what).into(),
        DriverError::AttachmentTooLarge { size, max } => format!(
            "the file is too big to send ({} MB; at most {} MB); nothing was sent",
            size.div_ceil(1024 * 1024),
            max / (1024 * 1024)
        ),
        DriverError::ImageUnreadable => "the picture seems damaged, so it was not sent (its hidden details could not be removed safely); take the photo again".into(),
        DriverError::ImageUnsupported => "this kind of photo (HEIC, WebP, TIFF or GIF) cannot be cleaned of where and when it was taken, so it was not sent; send it as a JPEG (for example a screenshot, or a photo taken with the camera in JPEG)".into(),
        DriverError::AttachmentDamaged => "the file arrived damaged or altered, so it was not saved".into(),
        DriverError::AttachmentGone => "the file is no longer on the relay (it expired or the conversation was deleted)".into(),
        e => e.to_string(),
    }
}

fn explain_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RateLimited => {
            "the relay is rate limiting this connection; wait a moment and try again"
        }
        ErrorCode::QuotaExceeded => "the recipient's mailbox is full; try again later",
        ErrorCode::TooManyBlobs => {
            "this conversation holds as many files as the relay allows; wait until older ones expire"
        }
        ErrorCode::AttachmentTooLarge => "the file is larger than this relay accepts",
        ErrorCode::UnknownMailbox => "the relay does not know that mailbox",
        ErrorCode::AuthFailed => "the relay refused the mailbox key",
        ErrorCode::DirectoryRollback => {
            "the relay already has a newer directory from this organisation"
        }
        ErrorCode::DirectoryInvalid => "the relay refused the directory as invalid",
        ErrorCode::PowRequired | ErrorCode::PowInvalid => "the relay refused the proof of work",
        ErrorCode::ServerBusy => "the relay is busy; try again in a moment",
        ErrorCode::NotFound => "the relay has nothing stored for that",
        ErrorCode::StateTooLarge => "the saved conversation is too large for the relay",
        ErrorCode::BatchTooLarge | ErrorCode::FrameTooLarge => {
            "the relay refused a request as too large"
        }
        _ => "the relay refused the request",
    }
}

/// Maps a driver failure to the command's error.
pub fn fail(e: DriverError) -> anyhow::Error {
    anyhow::anyhow!(explain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_directory_is_explained_apart_from_a_forged_one() {
        let expired = explain(&DriverError::DirectoryRefused(DirectoryError::Expired {
            expires_at: 1_798_394_400,
        }));
        assert!(
            expired.contains("expired on 2026-12-27 18:00 UTC"),
            "{expired}"
        );
        assert!(expired.contains("northstar admin publish"), "{expired}");
        assert!(!expired.contains('\n'));
        let rollback = explain(&DriverError::DirectoryRefused(DirectoryError::Rollback {
            got: 1,
            previous: 2,
        }));
        assert!(rollback.contains("do not continue"), "{rollback}");
    }
}
