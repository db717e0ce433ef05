//! A token bucket: the per-connection message-rate limit.
//!
//! A connection starts with `burst` tokens; every frame costs one; tokens
//! come back at `per_second`. A frame arriving with no token is answered
//! `rate_limited` and not executed. Time is passed in, so tests need no clock.

use std::time::{Duration, Instant};

/// The bucket's clock: tokio's, so a test that pauses time moves it too
/// (without paused time it is `Instant::now()`).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            tokens: capacity,
            per_second: f64::from(per_second),
            last: now,
        }
    }

    /// A full bucket refilled at `per_minute` tokens a minute (for limits
    /// far below one a second, such as prekey fetches).
    pub fn per_minute(per_minute: u32, burst: u32, now: Instant) -> Self {
        let mut b = Self::new(0, burst, now);
        b.per_second = f64::from(per_minute) / 60.0;
        b
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed: Duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        // 100 ms at 10/s gives one token back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(b.try_take(t2));
        }
        assert!(!b.try_take(t2));
    }

    #[test]
    fn per_minute_refills_slowly() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(6, 2, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // Six a minute: one every ten seconds.
        assert!(!b.try_take(t0 + Duration::from_secs(9)));
        assert!(b.try_take(t0 + Duration::from_secs(10)));
        assert!(!b.try_take(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
    }
}
