//! Files for `--attach FILE` and `save-attachment`: the shell's side only
//! (open the file, tell the person what happens to it, write what the
//! driver downloads to a temporary file and keep it only once checked).
//! Reading in slices, cleaning images, sealing, uploading, resuming and
//! checking are the driver's (`northstar_core::driver::attach`).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use northstar_core::attachment::{AttachmentRef, FileInfo, FileName, MediaType};
use northstar_core::driver::{Command, CommandId, Driver, DriverError, Event, Outcome};

use crate::shell::{Shell, fail, now};

/// The media type a file name suggests (the driver trusts the content for
/// images whatever this says).
pub fn media_type_of(path: &Path) -> MediaType {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let t = match ext.as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "txt" => "text/plain",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "heic" => "image/heic",
        _ => "application/octet-stream",
    };
    MediaType::sanitize(t)
}

/// Opens a file to attach: its info, its size and the open file.
pub fn open(path: &Path) -> Result<(FileInfo, u64, File)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let name = FileName::sanitize(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let info = FileInfo {
        name,
        media_type: media_type_of(path),
    };
    Ok((info, size, file))
}

/// What the person is told before the file goes.
pub fn notice(info: &FileInfo) -> &'static str {
    if info.media_type.is_strippable_image() {
        "This photo is cleaned before it is sent: where and when it was taken, and which phone took it, are removed."
    } else {
        "This document is sent as it is. Documents can carry names (the author, in the file's properties); check it before sending if that matters."
    }
}

fn show_progress(command: CommandId, what: &str) -> impl FnMut(&Driver, &Event) {
    let what = what.to_owned();
    let mut last = u64::MAX;
    move |_, e| {
        if let Event::Progress {
            command: c,
            done,
            total,
        } = e
            && *c == command
        {
            let pct = if *total == 0 { 100 } else { done * 100 / total };
            if pct / 10 != last / 10 || last == u64::MAX {
                eprintln!("northstar: {what} {pct}%");
                last = pct;
            }
        }
    }
}

/// Runs an attach command (already built) with the file open for the
/// driver's reads.
pub async fn send(sh: &mut Shell, file: File, cmd: Command) -> Result<Outcome, DriverError> {
    sh.file_in = Some(file);
    let id = sh.driver.command(cmd, now());
    let result = match id {
        Ok(id) => sh.run(id, &mut show_progress(id, "sending file:")).await,
        Err(e) => Err(e),
    };
    sh.file_in = None;
    result
}

/// Downloads an attachment into `out` (a directory: the file's own name
/// inside it; otherwise the path itself), through a temporary file kept
/// only when the driver found it whole and genuine.
pub async fn save(sh: &mut Shell, reference: AttachmentRef, out: &Path) -> Result<PathBuf> {
    let target = if out.is_dir() {
        out.join(reference.info.name.as_str())
    } else {
        out.to_path_buf()
    };
    if target.exists() {
        return Err(anyhow!(
            "{} already exists; nothing was overwritten (choose another --out)",
            target.display()
        ));
    }
    let mut partial = target.clone().into_os_string();
    partial.push(".northstar-partial");
    let partial = PathBuf::from(partial);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    sh.file_out = Some(file);
    let id = sh
        .driver
        .command(Command::FetchAttachment { reference }, now())
        .map_err(fail)?;
    let result = sh.run(id, &mut show_progress(id, "receiving file:")).await;
    let file = sh.file_out.take();
    match result {
        Ok(Outcome::Fetched { .. }) => {
            if let Some(f) = file {
                f.sync_all().context("cannot write the file")?;
            }
            std::fs::rename(&partial, &target)
                .with_context(|| format!("cannot write {}", target.display()))?;
            Ok(target)
        }
        Ok(_) => {
            let _ = std::fs::remove_file(&partial);
            Err(anyhow!("unexpected outcome"))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(fail(e))
        }
    }
}
