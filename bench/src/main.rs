//! `northstar-bench`: drives a running relay with a mailbox workload and
//! reports throughput, latency, losses and the relay's CPU and memory.
//!
//! R recipients each authenticate and subscribe to their mailbox; S senders
//! deposit padded 1 KiB sealed envelopes (all built and sealed before the
//! timed phase) to random recipients; recipients acknowledge what they get.
//! The same workload runs on Northstar (`--target northstar`), on a bare
//! WebSocket server speaking the same frames (`--target bare`, see
//! `bare-relay`) and on a nostr relay (`--target nostr`: kind-4 events with
//! 1 KiB content tagged to the recipient, `#p` subscriptions).
//! docs/BENCHMARKS.md has the method and the figures; scripts/bench runs it all.

mod load;
mod northstar;
mod nostr;
mod proc;
mod run;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::Instant;

use load::{Pacing, Reply, SenderPlan, Ws};
use run::{Run, histogram};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// The Northstar relay (binary frames, registered mailboxes).
    Northstar,
    /// `bare-relay` (same frames, no checks, no store or one batched SQLite writer).
    Bare,
    /// A NIP-01 nostr relay (kind-4 events, `#p` subscriptions).
    Nostr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// S = R = 100, 32 deposits in flight per sender, 20 s.
    Saturation,
    /// Open loop: 1,000 msg/s in total from S = R = 100, 20 s.
    Rate,
    /// One sender, one recipient, one deposit in flight, 20 s.
    Lockstep,
    /// 1,000 connections: S = R = 500, one deposit in flight each, 20 s.
    Connections,
    /// 10,000 idle authenticated, subscribed connections; relay memory before and after.
    Idle,
}

/// Mailbox load generator for relay benchmarks (docs/BENCHMARKS.md).
///
/// A scenario sets defaults; any flag below overrides them. Prints a
/// human summary on stderr and, with --json, one JSON object on stdout.
#[derive(Parser, Debug)]
#[command(name = "northstar-bench", version)]
struct Args {
    /// What speaks at the other end.
    #[arg(long, value_enum, default_value = "northstar")]
    target: Target,
    /// WebSocket URL of the relay; repeat for several nodes (connections are spread round robin).
    #[arg(long, required = true)]
    relay: Vec<String>,
    /// Workload preset.
    #[arg(long, value_enum, default_value = "saturation")]
    scenario: Scenario,
    /// Sender connections (S).
    #[arg(long)]
    senders: Option<usize>,
    /// Recipient connections (R), each subscribed to its own mailbox.
    #[arg(long)]
    recipients: Option<usize>,
    /// Deposits each sender keeps awaiting their acknowledgement.
    #[arg(long)]
    inflight: Option<usize>,
    /// Timed phase, seconds (no deposit starts after it).
    #[arg(long)]
    duration: Option<f64>,
    /// Open loop: total deposits per second over all senders (0 = closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: messages pre-built = max-rate x duration (a sender that runs out is reported as exhausted).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Idle scenario: connections to open.
    #[arg(long)]
    idle: Option<usize>,
    /// Seconds allowed after the timed phase for outstanding acknowledgements and deliveries.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 200)]
    setup_concurrency: usize,
    /// PID of the relay process (repeat for several nodes): CPU and peak RSS from /proc.
    #[arg(long)]
    relay_pid: Vec<u32>,
    /// CPU to pin the load generator to once everything is built (building
    /// and sealing use every CPU the process may run on; the timed phase
    /// runs on this one only).
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// Recipients acknowledge each delivery at once in an `Ack` of its own
    /// (as a client that saves and acknowledges message by message), instead
    /// of everything received so far in one `Ack`.
    #[arg(long)]
    ack_each: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The effective workload.
#[derive(Debug, Clone)]
struct Workload {
    senders: usize,
    recipients: usize,
    inflight: usize,
    duration: Duration,
    rate: f64,
    per_sender: usize,
}

fn workload(a: &Args) -> Result<Workload> {
    let (s, r, inflight, rate) = match a.scenario {
        Scenario::Saturation => (100, 100, 32, 0.0),
        Scenario::Rate => (100, 100, 1024, 1000.0),
        Scenario::Lockstep => (1, 1, 1, 0.0),
        Scenario::Connections => (500, 500, 1, 0.0),
        Scenario::Idle => (0, 0, 0, 0.0),
    };
    let senders = a.senders.unwrap_or(s);
    let recipients = a.recipients.unwrap_or(r);
    let inflight = a.inflight.unwrap_or(inflight).max(1);
    let rate = a.rate.unwrap_or(rate);
    let secs = a.duration.unwrap_or(20.0);
    if senders == 0 || recipients == 0 || secs <= 0.0 {
        bail!("need at least one sender, one recipient and a positive duration");
    }
    let default_max = match (a.target, a.scenario) {
        (Target::Nostr, _) => 3_000.0,
        (_, Scenario::Lockstep) => 5_000.0,
        _ => 40_000.0,
    };
    let total = if rate > 0.0 {
        rate * secs + senders as f64
    } else {
        a.max_rate.unwrap_or(default_max) * secs
    };
    let per_sender = (total / senders as f64).ceil().max(1.0) as usize;
    Ok(Workload {
        senders,
        recipients,
        inflight,
        duration: Duration::from_secs_f64(secs),
        rate,
        per_sender,
    })
}

/// Relay CPU ticks and memory, summed over the given processes.
#[derive(Debug, Clone, Copy, Default)]
struct RelaySample {
    ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn sample(pids: &[u32]) -> Result<RelaySample> {
    let mut s = RelaySample::default();
    for &pid in pids {
        s.ticks += proc::cpu_ticks(pid)?;
        s.rss_kib += proc::status_kib(pid, "VmRSS")?;
        s.hwm_kib += proc::status_kib(pid, "VmHWM")?;
    }
    Ok(s)
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0,
    })
}

/// Runs `n` set-up futures, `limit` at a time, keeping their order.
async fn setup_all<T, F>(n: usize, limit: usize, make: impl Fn(usize) -> F) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>>,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < n || !pending.is_empty() {
        while next < n && pending.len() < limit.max(1) {
            let f = make(next);
            let i = next;
            pending.push(async move { (i, f.await) });
            next += 1;
        }
        if let Some((i, r)) = pending.next().await {
            out[i] = Some(r.with_context(|| format!("setting up connection {i}"))?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

fn url(a: &Args, i: usize) -> &str {
    &a.relay[i % a.relay.len()]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let report = if args.scenario == Scenario::Idle {
        idle(&args).await?
    } else {
        load_run(&args).await?
    };
    if args.json {
        println!("{report}");
    }
    Ok(())
}

/// Pins this (the runtime's only) thread to `cpu`.
fn pin(cpu: Option<usize>) -> Result<()> {
    if let Some(id) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        bail!("cannot pin the load generator to CPU {id}");
    }
    Ok(())
}

async fn idle(a: &Args) -> Result<serde_json::Value> {
    pin(a.pin_cpu)?;
    let n = a.idle.unwrap_or(10_000);
    let loadavg = proc::loadavg();
    let before = sample(&a.relay_pid).ok();
    let t0 = Instant::now();
    let conns: Vec<Ws> = match a.target {
        Target::Nostr => {
            setup_all(n, a.setup_concurrency, |i| async move {
                nostr::subscriber(url(a, i), &nostr::new_recipient()).await
            })
            .await?
        }
        Target::Northstar | Target::Bare => {
            setup_all(n, a.setup_concurrency, |i| async move {
                northstar::subscriber(url(a, i), &northstar::new_mailbox()).await
            })
            .await?
        }
    };
    let setup = t0.elapsed();
    // Let allocations settle, then read the relay's memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sample(&a.relay_pid).ok();
    let per_conn = match (before, after) {
        (Some(b), Some(af)) => Some((af.rss_kib as f64 - b.rss_kib as f64) / n as f64),
        _ => None,
    };
    let report = json!({
        "target": format!("{:?}", a.target).to_lowercase(),
        "scenario": "idle",
        "relays": a.relay,
        "connections": conns.len(),
        "setup_s": setup.as_secs_f64(),
        "relay_rss_before_kib": before.map(|s| s.rss_kib),
        "relay_rss_after_kib": after.map(|s| s.rss_kib),
        "relay_peak_rss_kib": after.map(|s| s.hwm_kib),
        "per_connection_kib": per_conn,
        "loadavg": loadavg,
    });
    eprintln!(
        "idle {:?}: {} connections up in {:.1} s; relay RSS {} -> {} KiB ({} KiB per connection); load {}",
        a.target,
        conns.len(),
        setup.as_secs_f64(),
        before.map(|s| s.rss_kib).unwrap_or(0),
        after.map(|s| s.rss_kib).unwrap_or(0),
        per_conn
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "?".into()),
        report["loadavg"].as_str().unwrap_or("")
    );
    drop(conns);
    Ok(report)
}

type Classify = Box<dyn FnMut(Message) -> Reply + Send>;
type SpawnRecipient = Box<dyn Fn(Ws, Arc<Run>) -> JoinHandle<Histogram<u64>>>;

/// Everything ready before the timed phase.
struct Prepared {
    /// Per sender, its pre-built frames.
    frames: Vec<Vec<Message>>,
    recipients: Vec<Ws>,
    senders: Vec<Ws>,
    /// The reply reader of the sender whose first message index is given.
    classify: Box<dyn Fn(usize) -> Classify>,
    spawn_recipient: SpawnRecipient,
}

async fn prepare(a: &Args, w: &Workload) -> Result<Prepared> {
    let w = w.clone();
    match a.target {
        Target::Nostr => {
            let keys: Vec<String> = (0..w.recipients).map(|_| nostr::new_recipient()).collect();
            let built = nostr::prebuild(&keys, w.senders, w.per_sender)?;
            let keys = &keys;
            let recipients = setup_all(w.recipients, a.setup_concurrency, |i| async move {
                nostr::subscriber(url(a, i), &keys[i]).await
            })
            .await?;
            let senders = setup_all(w.senders, a.setup_concurrency, |i| async move {
                nostr::connect(url(a, i + w.recipients)).await
            })
            .await?;
            let index = built.index.clone();
            let index2 = built.index.clone();
            Ok(Prepared {
                frames: built.frames,
                recipients,
                senders,
                classify: Box::new(move |_| Box::new(nostr::classify(index2.clone())) as Classify),
                spawn_recipient: Box::new(move |ws, run| {
                    tokio::spawn(nostr::recipient(ws, index.clone(), run))
                }),
            })
        }
        Target::Northstar | Target::Bare => {
            let boxes: Vec<_> = (0..w.recipients)
                .map(|_| northstar::new_mailbox())
                .collect();
            let publics: Vec<_> = boxes.iter().map(|b| b.public()).collect();
            let built = northstar::prebuild(&publics, w.senders, w.per_sender)?;
            let boxes = &boxes;
            let recipients = setup_all(w.recipients, a.setup_concurrency, |i| async move {
                northstar::subscriber(url(a, i), &boxes[i]).await
            })
            .await?;
            let senders = setup_all(w.senders, a.setup_concurrency, |i| async move {
                northstar::connect(url(a, i + w.recipients)).await
            })
            .await?;
            let index = built.index.clone();
            let ack_each = a.ack_each;
            Ok(Prepared {
                frames: built.frames,
                recipients,
                senders,
                classify: Box::new(|base| Box::new(northstar::classify(base)) as Classify),
                spawn_recipient: Box::new(move |ws, run| {
                    tokio::spawn(northstar::recipient(ws, index.clone(), run, ack_each))
                }),
            })
        }
    }
}

async fn load_run(a: &Args) -> Result<serde_json::Value> {
    let w = workload(a)?;
    let loadavg_before = proc::loadavg();
    let t0 = std::time::Instant::now();
    // Build and seal (or sign) every message, then connect, before the clock starts.
    let t = prepare(a, &w).await?;
    let prebuild_s = t0.elapsed().as_secs_f64();
    pin(a.pin_cpu)?;
    let messages = w.senders * w.per_sender;
    eprintln!(
        "{:?} {:?}: {} messages built and {} connections up in {prebuild_s:.1} s; running {:.0} s",
        a.target,
        a.scenario,
        messages,
        w.senders + w.recipients,
        w.duration.as_secs_f64()
    );

    for &pid in &a.relay_pid {
        proc::reset_peak_rss(pid);
    }
    let before = sample(&a.relay_pid).ok();
    let run = Run::new(messages, w.duration);
    let rtasks: Vec<_> = t
        .recipients
        .into_iter()
        .map(|ws| (t.spawn_recipient)(ws, run.clone()))
        .collect();
    let mut stasks = Vec::new();
    for (s, (ws, mine)) in t.senders.into_iter().zip(t.frames).enumerate() {
        let pacing = if w.rate > 0.0 {
            let period = Duration::from_secs_f64(w.senders as f64 / w.rate);
            Pacing::Open {
                period,
                // Spread the senders' ticks evenly over one period.
                offset: period.mul_f64(s as f64 / w.senders as f64),
            }
        } else {
            Pacing::Closed
        };
        let base = s * w.per_sender;
        let plan = SenderPlan {
            base,
            inflight: w.inflight,
            pacing,
        };
        stasks.push(tokio::spawn(load::sender(
            ws,
            plan,
            mine,
            run.clone(),
            (t.classify)(base),
        )));
    }
    tokio::time::sleep_until(run.deadline).await;
    let at_deadline = sample(&a.relay_pid).ok();
    // Drain: outstanding replies and deliveries.
    let drain_end = Instant::now() + Duration::from_secs_f64(a.drain);
    while Instant::now() < drain_end && !(stasks.iter().all(|t| t.is_finished()) && run.settled()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = sample(&a.relay_pid).ok();
    run.stop.store(true, Ordering::Relaxed);
    let mut acks = histogram();
    for t in stasks {
        if let Ok(h) = t.await {
            let _ = acks.add(&h);
        }
    }
    let mut deliveries = histogram();
    for t in rtasks {
        if let Ok(h) = t.await {
            let _ = deliveries.add(&h);
        }
    }
    report(
        a,
        &w,
        &run,
        &acks,
        &deliveries,
        before,
        at_deadline,
        after,
        prebuild_s,
        &loadavg_before,
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &Args,
    w: &Workload,
    run: &Run,
    acks: &Histogram<u64>,
    deliveries: &Histogram<u64>,
    before: Option<RelaySample>,
    at_deadline: Option<RelaySample>,
    after: Option<RelaySample>,
    prebuild_s: f64,
    loadavg_before: &str,
) -> Result<serde_json::Value> {
    let secs = w.duration.as_secs_f64();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let acked_per_s = get(&run.acked_in_window) as f64 / secs;
    let delivered_per_s = get(&run.delivered_in_window) as f64 / secs;
    let cpu = match (before, at_deadline) {
        (Some(b), Some(d)) => {
            Some((d.ticks - b.ticks) as f64 / proc::TICKS_PER_SECOND / secs * 100.0)
        }
        _ => None,
    };
    let lost = run.lost();
    let r = json!({
        "target": format!("{:?}", a.target).to_lowercase(),
        "scenario": format!("{:?}", a.scenario).to_lowercase(),
        "ack_each": a.ack_each,
        "relays": a.relay,
        "senders": w.senders,
        "recipients": w.recipients,
        "inflight": w.inflight,
        "duration_s": secs,
        "offered_rate": w.rate,
        "messages_prebuilt": w.senders * w.per_sender,
        "prepare_s": prebuild_s,
        "deposits_sent": get(&run.deposits_sent),
        "deposits_acked": get(&run.deposits_acked),
        "deliveries": get(&run.deliveries),
        "duplicates": get(&run.duplicates),
        "lost": lost,
        "unknown_deliveries": get(&run.unknown),
        "error_frames": get(&run.error_frames),
        "exhausted_senders": get(&run.exhausted),
        "acked_per_s": acked_per_s,
        "delivered_per_s": delivered_per_s,
        "ack_latency": percentiles(acks),
        "delivery_latency": percentiles(deliveries),
        "relay_cpu_percent": cpu,
        "relay_peak_rss_kib": after.map(|s| s.hwm_kib),
        "relay_rss_kib": after.map(|s| s.rss_kib),
        "loadavg_before": loadavg_before,
        "loadavg_after": proc::loadavg(),
    });
    eprintln!(
        "  acked {acked_per_s:.0}/s, delivered {delivered_per_s:.0}/s; sent {} acked {} delivered {} dup {} lost {} errors {} exhausted {}",
        r["deposits_sent"],
        r["deposits_acked"],
        r["deliveries"],
        r["duplicates"],
        lost,
        r["error_frames"],
        r["exhausted_senders"]
    );
    let lat = |v: &serde_json::Value| {
        format!(
            "p50 {} p99 {} p99.9 {} ms",
            v["p50_ms"], v["p99_ms"], v["p999_ms"]
        )
    };
    eprintln!(
        "  deposit->ack {}; deposit->delivery {}",
        lat(&r["ack_latency"]),
        lat(&r["delivery_latency"])
    );
    eprintln!(
        "  relay CPU {} %, peak RSS {} KiB; load {} -> {}",
        cpu.map(|c| format!("{c:.0}")).unwrap_or_else(|| "?".into()),
        r["relay_peak_rss_kib"],
        loadavg_before,
        r["loadavg_after"].as_str().unwrap_or("")
    );
    Ok(r)
}
