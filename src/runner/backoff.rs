//! Retry delays: exponential and capped (backon's schedule), with *full* jitter
//! drawn over `[0, envelope]` (AWS "full jitter"), which spreads retries of many
//! instances that failed together. backon's own jitter only adds `[0, delay)`
//! on top of the delay, so the draw is ours. Stateless in the attempt number,
//! so a resumed run computes the same envelope.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The upper bound for retry number `n` (0-based): `min(cap, base * 2^n)`.
    pub fn envelope(&self, n: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(n.min(64) as usize)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A full-jitter delay for retry number `n`.
    pub fn delay(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let env = self.envelope(n);
        if env.is_zero() {
            return env;
        }
        rng.random_range(Duration::ZERO..=env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn envelope_doubles_then_caps() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let env: Vec<u64> = (0..8).map(|n| b.envelope(n).as_secs()).collect();
        assert_eq!(env, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.envelope(1000), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_stays_within_the_envelope_and_spreads() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..1000).map(|_| b.delay(3, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(400))
            .count();
        assert!((350..650).contains(&low), "{low}");
    }
}
