//! When to read an accepted Open back (issue 10).
//!
//! `DescribeDBInstanceInfo` is the binding quota: every read that answers `NO`
//! for an accepted attempt ("not visible yet") takes a slot from another
//! instance. So the first verification read goes where it is likely to say
//! `YES`: at a high quantile (1 − [`MISS_TARGET`]) of how long, after an
//! accepted answer, this endpoint has taken to show `YES`, learned from this
//! run's own first reads.
//!
//! The policy, per endpoint:
//! - **Start** from the documented 10 s ([`START`]). Until [`WARM_UP`] first
//!   reads have been seen, only one instance in four is read at the estimate;
//!   the others wait twice as long (waiting costs latency, not quota, and the
//!   pipeline keeps the quota busy meanwhile).
//! - **Learn** by stochastic approximation of a quantile (Robbins–Monro, in
//!   log space, gain g = 0.5): a first read that says `NO` raises the
//!   estimate by a factor `e^(g(1 − α))` (1.6), one that says `YES` lowers it
//!   by `e^(−gα)` (2.5 %), so it settles where a share `α` of first reads miss.
//!   Feedback comes one estimate late, so a first read counts only when it
//!   was taken within a factor two of today's estimate: a burst of misses
//!   scheduled at an early, small estimate cannot blow it up, and a burst of
//!   hits scheduled at a large one cannot sink it, yet the estimate can halve
//!   or double within one round of feedback.
//! - **After a miss**, the next read goes to the latest of: one second later,
//!   one and a half times the time elapsed, the current estimate, and the
//!   longest delay a missed instance has needed so far (the ceiling, which
//!   also caps the estimate). A miss then costs one more read, rarely two.
//!
//! Every delay is also bounded by the verify deadline by the caller, and a
//! `YES` counts whenever it is read; a `NO` for an accepted attempt only ever
//! means "look again" until that deadline (SPEC §1), so the schedule never
//! decides anything about safety, only about the quota.

use std::time::Duration;

/// Where the estimate starts: the documented time for `Encryption` to turn `YES`.
pub const START: Duration = Duration::from_secs(10);
/// The share of first reads meant to miss (answer `NO`).
pub const MISS_TARGET: f64 = 0.05;
/// First reads seen before the estimate is trusted for every instance.
pub const WARM_UP: u32 = 8;
/// The learning rate, in log space.
const GAIN: f64 = 0.5;
/// The shortest first-read delay (a backend that shows `YES` at once).
const FLOOR: Duration = Duration::from_millis(50);
/// The shortest gap between two reads of one instance.
const MIN_GAP: Duration = Duration::from_secs(1);

/// One endpoint's schedule.
#[derive(Debug, Clone)]
pub struct VerifySchedule {
    estimate: Duration,
    /// The longest accepted-answer → `YES` delay a missed instance needed,
    /// slowly forgotten (1 % per new one).
    ceiling: Option<Duration>,
    /// First reads observed.
    seen: u32,
    /// First reads handed out (for the warm-up's one-in-four).
    handed: u64,
}

impl Default for VerifySchedule {
    fn default() -> Self {
        VerifySchedule {
            estimate: START,
            ceiling: None,
            seen: 0,
            handed: 0,
        }
    }
}

impl VerifySchedule {
    /// A schedule that starts from `start` instead of [`START`].
    pub fn starting_at(start: Duration) -> Self {
        VerifySchedule {
            estimate: start.max(FLOOR),
            ..VerifySchedule::default()
        }
    }

    /// A schedule that starts from what an earlier run on this journal saw
    /// (on resume): the p90 of its accepted-Open → `YES` delays, which sits
    /// near where that run's estimate had settled (most of its first reads
    /// found `YES` at the estimate). With at least [`WARM_UP`] of them there is
    /// no warm-up; the estimate goes on learning from this run as usual.
    pub fn learned_from(n: u64, p90: Duration) -> Self {
        VerifySchedule {
            estimate: p90.max(FLOOR),
            seen: n.min(WARM_UP as u64) as u32,
            ..VerifySchedule::default()
        }
    }

    /// The current estimate of the (1 − α) quantile.
    pub fn estimate(&self) -> Duration {
        self.estimate
    }

    /// How long after an accepted answer to take the first read.
    pub fn first_read(&mut self) -> Duration {
        self.handed += 1;
        if self.seen < WARM_UP && self.handed % 4 != 1 {
            return self.estimate * 2;
        }
        self.estimate
    }

    /// A first read taken `used` after the accepted answer said `yes` or not.
    pub fn observe_first(&mut self, used: Duration, yes: bool) {
        self.seen = self.seen.saturating_add(1);
        // Taken at an estimate too far from today's: says too little about it.
        let relevant = if yes {
            used <= self.estimate * 2
        } else {
            used * 2 >= self.estimate
        };
        if !relevant {
            return;
        }
        let factor = if yes {
            (-GAIN * MISS_TARGET).exp()
        } else {
            (GAIN * (1.0 - MISS_TARGET)).exp()
        };
        let mut next = self.estimate.mul_f64(factor).max(FLOOR);
        if let Some(c) = self.ceiling {
            next = next.min(c.max(FLOOR));
        }
        self.estimate = next;
    }

    /// An instance whose first read missed read `YES` `took` after its accepted answer.
    pub fn observe_late_yes(&mut self, took: Duration) {
        self.ceiling = Some(match self.ceiling {
            Some(c) => c.mul_f64(0.99).max(took),
            None => took,
        });
    }

    /// After a `NO` read `elapsed` after the accepted answer: how much longer to wait.
    pub fn follow_up(&self, elapsed: Duration) -> Duration {
        let at = (elapsed + MIN_GAP)
            .max(elapsed.mul_f64(1.5))
            .max(self.estimate)
            .max(self.ceiling.unwrap_or(Duration::ZERO));
        at - elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    /// Feeds first reads of delays drawn uniformly from `lo..hi` seconds, with
    /// immediate feedback. Over the second half: the geometric mean of the
    /// estimate, the share of first reads that missed, and the reads per instance.
    fn learn(lo: f64, hi: f64, n: usize) -> (Duration, f64, f64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut v = VerifySchedule::default();
        let (mut misses, mut reads, mut log_sum) = (0, 0, 0.0);
        for k in 0..n {
            let d = rng.random_range(lo..hi);
            let mut at = v.first_read();
            let second_half = k >= n / 2;
            let yes = at.as_secs_f64() >= d;
            v.observe_first(at, yes);
            if second_half {
                log_sum += v.estimate().as_secs_f64().ln();
                reads += 1;
                misses += usize::from(!yes);
            }
            if !yes {
                while at.as_secs_f64() < d {
                    at += v.follow_up(at);
                    reads += usize::from(second_half);
                }
                v.observe_late_yes(at);
            }
        }
        let half = (n - n / 2) as f64;
        (
            s((log_sum / half).exp()),
            misses as f64 / half,
            reads as f64 / half,
        )
    }

    /// On resume the schedule starts where the journal saw YES, without the
    /// warm-up once it has seen enough; with too little, the warm-up remains.
    #[test]
    fn a_schedule_learned_from_the_journal_skips_the_warm_up() {
        let mut v = VerifySchedule::learned_from(40, s(3.0));
        assert_eq!(v.estimate(), s(3.0));
        assert!((0..8).all(|_| v.first_read() == s(3.0)));
        let mut v = VerifySchedule::learned_from(2, s(3.0));
        let reads: Vec<Duration> = (0..4).map(|_| v.first_read()).collect();
        assert_eq!(reads, [s(3.0), s(6.0), s(6.0), s(6.0)]);
        assert_eq!(VerifySchedule::learned_from(9, s(0.0)).estimate(), FLOOR);
    }

    #[test]
    fn settles_near_the_target_quantile() {
        // Uniform 5–20 s: the 95th percentile is 19.25 s. A miss raises the
        // estimate by a factor 1.6, so it saws around that; what matters is
        // that few first reads miss and each miss costs about one more read.
        let (q, miss, reads) = learn(5.0, 20.0, 4000);
        assert!(q > s(15.0) && q < s(24.0), "{q:?}");
        assert!(miss > 0.01 && miss < 0.12, "{miss}");
        assert!(reads < 1.15, "{reads} verification reads per instance");
    }

    #[test]
    fn a_backend_that_shows_yes_at_once_is_read_at_once() {
        let (q, miss, reads) = learn(0.0, 0.001, 600);
        assert!(q <= s(0.2), "{q:?}");
        assert_eq!(miss, 0.0);
        assert_eq!(reads, 1.0);
    }

    #[test]
    fn warm_up_reads_one_in_four_at_the_estimate() {
        let mut v = VerifySchedule::default();
        let first: Vec<Duration> = (0..8).map(|_| v.first_read()).collect();
        assert_eq!(first.iter().filter(|d| **d == START).count(), 2);
        assert_eq!(first.iter().filter(|d| **d == START * 2).count(), 6);
        for _ in 0..WARM_UP {
            v.observe_first(START, true);
        }
        let after = v.first_read();
        assert!(after < START, "{after:?}");
        assert_eq!(v.first_read(), after);
    }

    #[test]
    fn reads_far_from_todays_estimate_are_ignored() {
        let up = (GAIN * (1.0 - MISS_TARGET)).exp();
        let mut v = VerifySchedule::default();
        // A flood of misses scheduled at 10 s: they count until the estimate
        // is past twice that, then say nothing new.
        for _ in 0..50 {
            v.observe_first(START, false);
        }
        assert_eq!(v.estimate(), START.mul_f64(up * up));
        // A hit at today's estimate lowers it a little.
        let raised = v.estimate();
        v.observe_first(raised, true);
        assert!(v.estimate() < raised);
        // A hit read later than twice today's estimate says nothing of it.
        let e = v.estimate();
        v.observe_first(e * 3, true);
        assert_eq!(v.estimate(), e);
        // A flood of hits at an old, large estimate brings it down to half of
        // that, not further, within one round.
        let mut v = VerifySchedule::default();
        for _ in 0..500 {
            v.observe_first(START, true);
        }
        let e = v.estimate();
        assert!(e < START / 2 && e > START / 3, "{e:?}");
    }

    #[test]
    fn the_ceiling_caps_the_estimate_and_places_follow_ups() {
        let mut v = VerifySchedule::default();
        v.observe_late_yes(s(12.0));
        v.observe_first(START, false);
        assert_eq!(v.estimate(), s(12.0), "capped by the ceiling");
        let mut v = VerifySchedule::default();
        v.observe_first(START, false);
        assert_eq!(
            v.estimate(),
            START.mul_f64((0.5f64 * 0.95).exp()),
            "no ceiling yet"
        );
        let mut v = VerifySchedule::default();
        v.observe_late_yes(s(12.0));
        // After a miss at 12 s: at least a second later, at least 1.5 × 12 s.
        assert_eq!(v.follow_up(s(12.0)), s(6.0));
        // Early misses wait for the estimate or the ceiling.
        assert_eq!(v.follow_up(s(2.0)), s(10.0));
        // The ceiling is forgotten slowly, and rises at once.
        v.observe_late_yes(s(1.0));
        assert_eq!(v.follow_up(s(0.0)), s(12.0 * 0.99).max(v.estimate()));
        v.observe_late_yes(s(30.0));
        assert_eq!(v.follow_up(s(0.0)), s(30.0));
    }
}
