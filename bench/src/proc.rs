//! What the kernel says about the relay process and the machine: CPU time
//! (`/proc/<pid>/stat`), resident memory (`/proc/<pid>/status`) and the
//! load average (`/proc/loadavg`).

use anyhow::{Context, Result, anyhow};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU ticks of `pid` (all its threads).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<u64>()
            .context("parsing /proc stat")
    };
    Ok(field(11)? + field(12)?)
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))?
        .parse()
        .context("parsing /proc status")
}

/// Resets the peak-RSS mark (`VmHWM`) of `pid` so the peak covers one run.
/// Best effort: needs the right to write `/proc/<pid>/clear_refs`.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
