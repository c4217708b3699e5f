//! Per-address limit on verification, so one client cannot hog the pages or the CRM budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct IpLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl IpLimiter {
    pub fn new(per_minute: f64, burst: u32) -> Self {
        Self {
            per_second: per_minute / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// True when `ip` may make one more request now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let now = Instant::now();
        if buckets.len() > 100_000 {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (level, at)| {
                *level - now.duration_since(*at).as_secs_f64() * rate > 0.0 && *level <= burst
            });
        }
        let (level, at) = buckets.entry(ip).or_insert((0.0, now));
        *level = (*level - now.duration_since(*at).as_secs_f64() * self.per_second).max(0.0);
        *at = now;
        if *level + 1.0 > self.burst {
            return false;
        }
        *level += 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_limited_alone() {
        let l = IpLimiter::new(60.0, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a)));
        assert!(!l.allow(a));
        assert!(l.allow(b));
    }
}
