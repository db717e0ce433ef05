//! The sender loop every target shares: pre-built frames deposited either
//! closed-loop (a fixed number in flight) or open-loop (on a schedule),
//! replies matched to messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::run::{Run, histogram};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A sender's reply, as its target reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The deposit of this message index was acknowledged (committed).
    Accepted(usize),
    /// An error reply to a deposit.
    Refused,
    /// A frame that does not parse.
    Garbled,
    /// Not a reply (a push, a ping).
    Ignore,
}

/// When a sender deposits.
#[derive(Debug, Clone)]
pub enum Pacing {
    /// As fast as replies come back.
    Closed,
    /// One deposit every `period`, the first at `offset` after the start.
    Open { period: Duration, offset: Duration },
}

/// What one sender does.
#[derive(Debug, Clone)]
pub struct SenderPlan {
    /// Message index of its first frame.
    pub base: usize,
    /// Most deposits awaiting their reply.
    pub inflight: usize,
    pub pacing: Pacing,
}

fn ticker(pacing: &Pacing, start: Instant) -> Option<Interval> {
    match pacing {
        Pacing::Closed => None,
        Pacing::Open { period, offset } => {
            let mut t = tokio::time::interval_at(start + *offset, *period);
            // Behind schedule: catch up, and latency counts from the scheduled time.
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            Some(t)
        }
    }
}

/// Deposits `frames` until the deadline, then collects the outstanding
/// replies (until they are in or the run is stopped). Returns the
/// deposit -> acknowledgement latencies.
pub async fn sender(
    ws: Ws,
    plan: SenderPlan,
    frames: Vec<Message>,
    run: Arc<Run>,
    mut classify: impl FnMut(Message) -> Reply,
) -> Histogram<u64> {
    let (mut sink, mut stream) = ws.split();
    let slots = Arc::new(Semaphore::new(plan.inflight));
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (slots, run, sent, done) = (slots.clone(), run.clone(), sent.clone(), done.clone());
        tokio::spawn(async move {
            let total = frames.len();
            let mut frames = frames.into_iter();
            let mut ticker = ticker(&plan.pacing, run.start);
            let mut next = 0usize;
            'outer: while next < total {
                let scheduled = match ticker.as_mut() {
                    Some(t) => tokio::select! {
                        at = t.tick() => at,
                        _ = tokio::time::sleep_until(run.deadline) => break,
                    },
                    None => Instant::now(),
                };
                let permit = tokio::select! {
                    p = slots.acquire() => p,
                    _ = tokio::time::sleep_until(run.deadline) => break,
                };
                let Ok(permit) = permit else { break };
                permit.forget();
                if Instant::now() >= run.deadline {
                    break;
                }
                loop {
                    let Some(frame) = frames.next() else {
                        break 'outer;
                    };
                    let at = if ticker.is_some() {
                        scheduled
                    } else {
                        Instant::now()
                    };
                    run.mark_sent(plan.base + next, at);
                    next += 1;
                    sent.store(next, Ordering::Release);
                    if sink.feed(frame).await.is_err() {
                        break 'outer;
                    }
                    // Closed loop: fill every free slot before flushing.
                    if ticker.is_some() || next >= total {
                        break;
                    }
                    match slots.try_acquire() {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            let _ = sink.flush().await;
            if next >= total && Instant::now() < run.deadline {
                run.exhausted.fetch_add(1, Ordering::Relaxed);
            }
            done.store(true, Ordering::Release);
            sink
        })
    };
    let mut acks = histogram();
    let mut replies = 0usize;
    loop {
        let all_in = done.load(Ordering::Acquire) && replies >= sent.load(Ordering::Acquire);
        if run.stopped() || all_in {
            break;
        }
        let msg = match tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        let now = Instant::now();
        let reply = classify(msg);
        if matches!(reply, Reply::Accepted(_) | Reply::Refused) {
            replies += 1;
            slots.add_permits(1);
        }
        match reply {
            Reply::Accepted(idx) => run.mark_acked(idx, now, &mut acks),
            Reply::Refused | Reply::Garbled => run.error(),
            Reply::Ignore => {}
        }
    }
    if let Ok(mut sink) = writer.await {
        let _ = sink.close().await;
    }
    acks
}
