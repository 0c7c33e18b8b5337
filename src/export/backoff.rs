//! Exponential backoff with jitter for retried deliveries, and the small random number
//! generator behind the jitter.

#![forbid(unsafe_code)]

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::{Duration, Instant},
};

/// Exponential backoff with jitter for retried deliveries.
///
/// The delay before retry `n` (1-based, counting consecutive failures against the endpoint)
/// is `d = min(max, initial · 2^(n-1))`, then shortened by a random fraction of up to
/// `jitter · d` so that many processes restarted together do not retry in lock-step. A batch
/// is given up after `max_attempts` attempts in total (the first one included).
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "a backoff does nothing until given to an exporter"]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    max_attempts: u32,
    jitter: f64,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, 5 attempts, jitter 0.5.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10), max_attempts: 5, jitter: 0.5 }
    }
}

impl Backoff {
    /// The default: 100 ms doubling up to 10 s, 5 attempts, jitter 0.5.
    pub fn new() -> Self {
        Backoff::default()
    }

    /// Delay before the first retry (default 100 ms).
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// Cap on any one delay (default 10 s).
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Attempts per batch, the first included (default 5; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Largest fraction of a delay removed at random, `0.0..=1.0` (default 0.5: each delay
    /// lies in `[d/2, d]`). `0.0` makes delays exact.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        self
    }

    /// Attempts per batch.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The un-jittered delay before retry `n` (1-based): `min(max, initial · 2^(n-1))`.
    pub fn base_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(32);
        self.initial.saturating_mul(1u32 << shift.min(31)).min(self.max)
    }

    /// The jittered delay before retry `n`, with `unit` a random number in `[0, 1)`.
    pub fn delay_with(&self, n: u32, unit: f64) -> Duration {
        self.base_delay(n).mul_f64(1.0 - self.jitter * unit.clamp(0.0, 1.0))
    }

    pub(crate) fn delay(&self, n: u32, rng: &mut Rng) -> Duration {
        self.delay_with(n, rng.unit())
    }
}

/// xorshift64* seeded from std's per-process random hasher keys: jitter needs spread, not
/// cryptographic quality, and this keeps `rand` out of the library's dependencies.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        Rng(h.finish() | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::new().initial(Duration::from_millis(100)).max(Duration::from_secs(1)).jitter(0.0);
        let d: Vec<u64> = (1..=6).map(|n| b.base_delay(n).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(1));
        assert_eq!(b.delay_with(3, 0.99), Duration::from_millis(400));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::new().initial(Duration::from_millis(100)).jitter(0.5);
        let mut rng = Rng::new();
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(2, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(200)));
        // Spread, not a constant: jitter exists to de-synchronise retries.
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*max - *min > Duration::from_millis(50), "{min:?}..{max:?}");
    }

    #[test]
    fn rng_is_uniformish() {
        let mut rng = Rng::new();
        let xs: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
