//! A client-side leaky bucket matching the portal's own (2 req/s drain, 50 burst by default), so
//! this process stays under the limit instead of collecting `QUERY_LIMIT_EXCEEDED` answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LeakyBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    level: f64,
    at: Instant,
    /// While set, everyone waits: the portal said we were over its limit.
    paused_until: Option<Instant>,
}

impl LeakyBucket {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            capacity: f64::from(burst.max(1)),
            state: Mutex::new(BucketState {
                level: 0.0,
                at: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Reserves one request; returns how long to wait before sending it.
    fn reserve(&self) -> Duration {
        let mut s = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        let drained = now.duration_since(s.at).as_secs_f64() * self.rate;
        s.level = (s.level - drained).max(0.0);
        s.at = now;
        let pause = s
            .paused_until
            .filter(|until| *until > now)
            .map_or(Duration::ZERO, |until| until - now);
        s.level += 1.0;
        let over = s.level - self.capacity;
        let wait = if over > 0.0 {
            Duration::from_secs_f64(over / self.rate)
        } else {
            Duration::ZERO
        };
        wait.max(pause)
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a request only if it can go now; for callers that would rather answer "busy".
    pub fn try_acquire(&self) -> bool {
        let mut s = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        let drained = now.duration_since(s.at).as_secs_f64() * self.rate;
        s.level = (s.level - drained).max(0.0);
        s.at = now;
        if s.paused_until.is_some_and(|u| u > now) || s.level + 1.0 > self.capacity {
            return false;
        }
        s.level += 1.0;
        true
    }

    /// The portal refused us: treat the bucket as full and hold everyone for `pause`.
    pub fn back_off(&self, pause: Duration) {
        let mut s = self.state.lock().expect("limiter lock");
        let until = Instant::now() + pause;
        s.level = s.level.max(self.capacity);
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_free_then_requests_are_spaced_by_the_rate() {
        let bucket = LeakyBucket::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(), Duration::ZERO);
        }
        let wait = bucket.reserve();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        let wait = bucket.reserve();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000),
            "{wait:?}"
        );
    }

    #[test]
    fn try_acquire_refuses_when_full() {
        let bucket = LeakyBucket::new(1.0, 2);
        assert!(bucket.try_acquire());
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
    }

    #[test]
    fn back_off_holds_every_caller() {
        let bucket = LeakyBucket::new(100.0, 100);
        bucket.back_off(Duration::from_millis(300));
        assert!(bucket.reserve() >= Duration::from_millis(250));
        assert!(!bucket.try_acquire());
    }
}
