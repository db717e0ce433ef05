//! The bookkeeping every target shares: one slot per pre-built message
//! (when it was deposited, acknowledged, delivered), counters and latency
//! histograms.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Highest latency recorded, microseconds (longer ones are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

#[allow(clippy::panic)]
fn unreachable_histogram() -> Histogram<u64> {
    panic!("a 3-significant-figure histogram is always valid")
}

/// Records `d` (clamped to the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Shared state of one run.
#[derive(Debug)]
pub struct Run {
    /// Time zero.
    pub start: Instant,
    /// No deposit starts after this.
    pub deadline: Instant,
    /// Per message: nanoseconds after `start` it was (scheduled to be) deposited, +1; 0 = not sent.
    pub sent_at: Vec<AtomicU64>,
    /// Per message: whether the relay acknowledged the deposit.
    pub acked: Vec<AtomicBool>,
    /// Per message: how many times it was delivered.
    pub delivered: Vec<AtomicU32>,
    pub deposits_sent: AtomicU64,
    pub deposits_acked: AtomicU64,
    /// Acks received before the deadline (throughput).
    pub acked_in_window: AtomicU64,
    pub deliveries: AtomicU64,
    pub delivered_in_window: AtomicU64,
    pub duplicates: AtomicU64,
    /// Deliveries of envelopes this run did not deposit.
    pub unknown: AtomicU64,
    pub error_frames: AtomicU64,
    /// Senders that ran out of pre-built messages before the deadline.
    pub exhausted: AtomicU64,
    /// Set when every task must wind up.
    pub stop: AtomicBool,
}

impl Run {
    pub fn new(messages: usize, duration: Duration) -> Arc<Self> {
        let start = Instant::now();
        Arc::new(Run {
            start,
            deadline: start + duration,
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..messages).map(|_| AtomicBool::new(false)).collect(),
            delivered: (0..messages).map(|_| AtomicU32::new(0)).collect(),
            deposits_sent: AtomicU64::new(0),
            deposits_acked: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Marks message `idx` as deposited at `at`.
    pub fn mark_sent(&self, idx: usize, at: Instant) {
        let ns = u64::try_from(at.saturating_duration_since(self.start).as_nanos())
            .unwrap_or(u64::MAX - 1);
        if let Some(slot) = self.sent_at.get(idx) {
            slot.store(ns + 1, Ordering::Relaxed);
        }
        self.deposits_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// How long ago message `idx` was deposited.
    pub fn since_sent(&self, idx: usize, now: Instant) -> Option<Duration> {
        let ns = self.sent_at.get(idx)?.load(Ordering::Relaxed);
        if ns == 0 {
            return None;
        }
        let at = self.start + Duration::from_nanos(ns - 1);
        Some(now.saturating_duration_since(at))
    }

    /// Records the relay's acknowledgement of message `idx`.
    pub fn mark_acked(&self, idx: usize, now: Instant, h: &mut Histogram<u64>) {
        if self
            .acked
            .get(idx)
            .is_some_and(|a| a.swap(true, Ordering::Relaxed))
        {
            return;
        }
        self.deposits_acked.fetch_add(1, Ordering::Relaxed);
        if now <= self.deadline {
            self.acked_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = self.since_sent(idx, now) {
            record(h, d);
        }
    }

    /// Records a delivery of message `idx` (`None`: not one of ours).
    pub fn mark_delivered(&self, idx: Option<usize>, now: Instant, h: &mut Histogram<u64>) {
        let Some(slot) = idx.and_then(|i| self.delivered.get(i)) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot.fetch_add(1, Ordering::Relaxed) > 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if now <= self.deadline {
            self.delivered_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = idx.and_then(|i| self.since_sent(i, now)) {
            record(h, d);
        }
    }

    pub fn error(&self) {
        self.error_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Acknowledged deposits never delivered.
    pub fn lost(&self) -> u64 {
        self.acked
            .iter()
            .zip(&self.delivered)
            .filter(|(a, d)| a.load(Ordering::Relaxed) && d.load(Ordering::Relaxed) == 0)
            .count() as u64
    }

    /// Whether everything acknowledged so far has been delivered.
    pub fn settled(&self) -> bool {
        self.deliveries.load(Ordering::Relaxed) >= self.deposits_acked.load(Ordering::Relaxed)
    }
}

/// Every message of a run, built before the timed phase, and the index
/// from a message's id (as the target names it) to its number.
#[derive(Debug)]
pub struct Prebuilt<K> {
    /// `frames[s][i]`: sender `s`'s `i`-th message, number `s * per_sender + i`.
    pub frames: Vec<Vec<Message>>,
    pub index: Arc<HashMap<K, u32>>,
}

impl<K: Eq + Hash> Prebuilt<K> {
    /// Builds sender `s`'s messages and their ids with `build(s)` for every
    /// sender, on every CPU ([`par_build`]).
    pub fn build(
        senders: usize,
        per_sender: usize,
        build: impl Fn(usize) -> anyhow::Result<(Vec<Message>, Vec<(K, u32)>)> + Sync,
    ) -> anyhow::Result<Self>
    where
        K: Send,
    {
        let built = par_build(senders, build)?;
        let mut frames = Vec::with_capacity(senders);
        let mut index = HashMap::with_capacity(senders * per_sender);
        for (mine, ids) in built {
            frames.push(mine);
            index.extend(ids);
        }
        Ok(Prebuilt {
            frames,
            index: Arc::new(index),
        })
    }
}

/// Builds `n` items on every CPU this process may use (preparation only,
/// before the timed phase), keeping their order.
pub fn par_build<T: Send>(
    n: usize,
    build: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n.max(1));
    let build = &build;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| build(i).map(|v| (i, v)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a build thread panicked"))??,
            );
        }
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, v)| v).collect())
    })
}
