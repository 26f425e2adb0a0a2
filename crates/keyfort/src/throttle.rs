//! Bounded bookkeeping of failed attempts, for everything an anonymous caller can try over
//! and over: administrator and customer sign-ins.
//!
//! Every structure here has a fixed capacity, so that an attacker who cycles through names
//! or addresses cannot grow the server's memory: what does not fit is not tracked (the
//! global and per-address limits still hold), and entries expire.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A map with a capacity and a time to live per entry.
pub struct BoundedMap<K, V> {
    entries: HashMap<K, (Instant, V)>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: HashMap::new(), capacity, ttl }
    }

    /// The live entry for `key`, if any.
    pub fn get(&self, key: &K, now: Instant) -> Option<&V> {
        self.entries.get(key).filter(|(touched, _)| now.duration_since(*touched) < self.ttl).map(|(_, v)| v)
    }

    /// The entry for `key`, created with `make` if needed and touched now. `None` when the
    /// map is full of live entries: the caller then does without per-key state.
    pub fn entry(&mut self, key: K, now: Instant, make: impl FnOnce() -> V) -> Option<&mut V> {
        if let Some((touched, _)) = self.entries.get(&key) {
            if now.duration_since(*touched) >= self.ttl {
                self.entries.remove(&key);
            }
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let ttl = self.ttl;
            self.entries.retain(|_, (touched, _)| now.duration_since(*touched) < ttl);
            if self.entries.len() >= self.capacity {
                return None;
            }
        }
        let slot = self.entries.entry(key).or_insert_with(|| (now, make()));
        slot.0 = now;
        Some(&mut slot.1)
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How repeated failures for one name lock it: a few are free, then a lock that doubles
/// with every further failure up to a maximum.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub free_failures: u32,
    pub first_lock: Duration,
    pub max_lock: Duration,
}

impl LockoutPolicy {
    /// How long a name is locked after its `failures`-th failure in a row, if at all.
    pub fn lock_after(&self, failures: u32) -> Option<Duration> {
        let doublings = failures.checked_sub(self.free_failures)?.min(16);
        Some(self.first_lock.saturating_mul(2u32.saturating_pow(doublings)).min(self.max_lock))
    }
}

/// The failures of one name.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

impl Failures {
    /// How long the name stays locked, if it is.
    pub fn locked_for(&self, now: Instant) -> Option<Duration> {
        self.locked_until?.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub fn record(&mut self, policy: &LockoutPolicy, now: Instant) {
        self.count += 1;
        if let Some(lock) = policy.lock_after(self.count) {
            self.locked_until = Some(now + lock);
        }
    }
}

/// A token bucket: `burst` attempts at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    burst: f64,
    per_second: f64,
    updated: Instant,
}

impl RateLimit {
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { tokens: burst, burst, per_second, updated: Instant::now() }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.per_second > 0.0 { (1.0 - self.tokens) / self.per_second } else { 60.0 };
        Err(Duration::from_secs_f64(wait.max(0.001)))
    }
}

/// Failures counted in a fixed window per key (a peer address), with a cap per window.
#[derive(Debug, Clone)]
pub struct Window {
    started: Instant,
    count: u32,
}

impl Window {
    pub fn new(now: Instant) -> Self {
        Self { started: now, count: 0 }
    }

    /// Whether `cap` failures were already seen in the window of length `length`; if so,
    /// how long until the window ends.
    pub fn exhausted(&mut self, cap: u32, length: Duration, now: Instant) -> Option<Duration> {
        if now.duration_since(self.started) >= length {
            *self = Window::new(now);
        }
        (self.count >= cap).then(|| (self.started + length).saturating_duration_since(now).max(Duration::from_secs(1)))
    }

    pub fn record(&mut self) {
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_tracks_nothing_new_until_entries_expire() {
        let start = Instant::now();
        let mut map = BoundedMap::new(2, Duration::from_secs(10));
        *map.entry("a", start, || 0).unwrap() += 1;
        *map.entry("b", start, || 0).unwrap() += 1;
        assert!(map.entry("c", start, || 0).is_none(), "full of live entries");
        assert_eq!(map.get(&"a", start), Some(&1));
        let later = start + Duration::from_secs(11);
        assert!(map.get(&"a", later).is_none(), "expired");
        assert!(map.entry("c", later, || 0).is_some(), "expired entries make room");
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn locks_double_up_to_the_maximum() {
        let policy =
            LockoutPolicy { free_failures: 3, first_lock: Duration::from_secs(30), max_lock: Duration::from_secs(100) };
        let now = Instant::now();
        let mut failures = Failures::default();
        failures.record(&policy, now);
        failures.record(&policy, now);
        assert!(failures.locked_for(now).is_none());
        failures.record(&policy, now);
        assert_eq!(failures.locked_for(now), Some(Duration::from_secs(30)));
        failures.record(&policy, now);
        assert_eq!(failures.locked_for(now), Some(Duration::from_secs(60)));
        failures.record(&policy, now);
        assert_eq!(failures.locked_for(now), Some(Duration::from_secs(100)));
        assert!(failures.locked_for(now + Duration::from_secs(101)).is_none());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = RateLimit::new(2.0, 3);
        for _ in 0..3 {
            bucket.take(start).unwrap();
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        bucket.take(start + Duration::from_millis(500)).unwrap();
    }

    #[test]
    fn a_window_caps_failures_then_resets() {
        let start = Instant::now();
        let mut window = Window::new(start);
        for _ in 0..2 {
            assert!(window.exhausted(2, Duration::from_secs(60), start).is_none());
            window.record();
        }
        assert!(window.exhausted(2, Duration::from_secs(60), start).is_some());
        assert!(window.exhausted(2, Duration::from_secs(60), start + Duration::from_secs(61)).is_none());
    }
}
