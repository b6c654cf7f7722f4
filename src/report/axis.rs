//! Chart axes a person can read: value ticks on round numbers (1, 2 or 5 × 10^k)
//! and time ticks on round clock times, labelled in the unit the span calls for.
//! Pure functions of the data range, so the choices are unit-tested here.

/// Ticks from 0 to the first round number at or above `max`, about `target`
/// steps apart, each step 1, 2 or 5 × 10^k (and at least 1: the charts count
/// whole requests and instances). `max` 0 still gives an axis, 0 and 1.
pub fn value_ticks(max: u64, target: usize) -> Vec<u64> {
    let step = nice_step(max.max(1) as f64 / target.max(1) as f64);
    let top = max.div_ceil(step).max(1) * step;
    (0..=top / step).map(|i| i * step).collect()
}

/// The smallest 1, 2 or 5 × 10^k at or above `raw`, at least 1.
fn nice_step(raw: f64) -> u64 {
    if raw <= 1.0 {
        return 1;
    }
    let mut magnitude = 1u64;
    while (magnitude as f64) * 10.0 < raw {
        magnitude *= 10;
    }
    // raw is in (magnitude, 10 × magnitude].
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s as f64 >= raw)
        .unwrap_or(10 * magnitude)
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The steps a time axis may use: each divides the next unit evenly, so the
/// ticks fall on times a clock shows (…:15, …:30, 06:00, midnight).
const TIME_STEPS: [i64; 21] = [
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    30 * DAY,
];

/// How a time tick is written, chosen from the step between ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// `14:05:30`: steps under a minute.
    Seconds,
    /// `14:05`: steps of a minute up to half a day; a tick on a new day also
    /// names the day (`Dec 01 00:00`).
    Minutes,
    /// `Dec 01`: steps of a day or more.
    Days,
}

impl TimeUnit {
    fn of_step(step_ms: i64) -> TimeUnit {
        if step_ms < MINUTE {
            TimeUnit::Seconds
        } else if step_ms < DAY {
            TimeUnit::Minutes
        } else {
            TimeUnit::Days
        }
    }
}

/// Time ticks over `[start_ms, end_ms]` (UTC): at most about `target` of
/// them, on multiples of the smallest step in [`TIME_STEPS`] that keeps their
/// number within `target`, each with its label.
pub fn time_ticks(start_ms: i64, end_ms: i64, target: usize) -> (TimeUnit, Vec<(i64, String)>) {
    let span = (end_ms - start_ms).max(1);
    let target = target.max(2) as i64;
    let step = TIME_STEPS
        .into_iter()
        .find(|s| span / s < target)
        .unwrap_or_else(|| {
            let last = TIME_STEPS[TIME_STEPS.len() - 1];
            (span / target / last + 1) * last
        });
    let unit = TimeUnit::of_step(step);
    let mut ticks = Vec::new();
    let mut t = start_ms.div_euclid(step) * step;
    if t < start_ms {
        t += step;
    }
    // The chart names its start date; a tick on a later day names its own.
    let mut previous_day =
        chrono::DateTime::from_timestamp_millis(start_ms).map(|d| d.date_naive());
    while t <= end_ms {
        let Some(at) = chrono::DateTime::from_timestamp_millis(t) else {
            break;
        };
        let day = at.date_naive();
        let label = match unit {
            TimeUnit::Seconds => at.format("%H:%M:%S").to_string(),
            TimeUnit::Minutes if previous_day != Some(day) => at.format("%b %d %H:%M").to_string(),
            TimeUnit::Minutes => at.format("%H:%M").to_string(),
            TimeUnit::Days => at.format("%b %d").to_string(),
        };
        previous_day = Some(day);
        ticks.push((t, label));
        t += step;
    }
    (unit, ticks)
}

/// A span written for a person: `45 s`, `12 min`, `2 h 47 min`, `3 d 4 h`.
pub fn span_text(ms: i64) -> String {
    let s = ms.max(0) / SECOND;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ticks_are_round_numbers() {
        assert_eq!(value_ticks(22, 5), [0, 5, 10, 15, 20, 25]);
        assert_eq!(
            value_ticks(95_094, 5),
            [0, 20_000, 40_000, 60_000, 80_000, 100_000]
        );
        assert_eq!(value_ticks(20, 5), [0, 5, 10, 15, 20]);
        assert_eq!(value_ticks(100_000, 5), value_ticks(95_094, 5));
        assert_eq!(value_ticks(3, 5), [0, 1, 2, 3]);
        assert_eq!(value_ticks(0, 5), [0, 1]);
        assert_eq!(value_ticks(1, 5), [0, 1]);
        assert_eq!(value_ticks(48, 5), [0, 10, 20, 30, 40, 50]);
        assert_eq!(value_ticks(120, 5), [0, 50, 100, 150]);
        assert_eq!(value_ticks(1_766, 5), [0, 500, 1000, 1500, 2000]);
    }

    #[test]
    fn value_ticks_hold_for_any_max() {
        for max in (0..2_000).chain([9_999, 10_001, 123_456, 99_999_999]) {
            let t = value_ticks(max, 5);
            let step = t[1];
            let mantissa = step / 10u64.pow(step.ilog10());
            assert!([1, 2, 5].contains(&mantissa), "{max}: step {step}");
            assert_eq!(t[0], 0);
            assert!(*t.last().unwrap() >= max, "{max}: {t:?}");
            assert!(t.last().unwrap() - step < max.max(1), "{max}: {t:?}");
            assert!((2..=11).contains(&t.len()), "{max}: {t:?}");
            assert!(t.windows(2).all(|w| w[1] - w[0] == step));
        }
    }

    const T0: i64 = 1_764_470_412_345; // 2025-11-30T02:40:12.345Z

    fn labels(start: i64, end: i64) -> (TimeUnit, Vec<String>) {
        let (unit, t) = time_ticks(start, end, 8);
        assert!(t.iter().all(|(at, _)| (start..=end).contains(at)));
        (unit, t.into_iter().map(|(_, l)| l).collect())
    }

    #[test]
    fn time_labels_take_their_unit_from_the_span() {
        // 40 s: every 10 s (every 5 s would make 9 ticks), with seconds.
        assert_eq!(
            labels(T0, T0 + 40 * SECOND),
            (
                TimeUnit::Seconds,
                ["02:40:20", "02:40:30", "02:40:40", "02:40:50"]
                    .map(String::from)
                    .to_vec()
            )
        );
        // The 48-instance demo runs about 2 minutes: every 30 s, on the half minute.
        assert_eq!(
            labels(T0, T0 + 2 * MINUTE).1,
            ["02:40:30", "02:41:00", "02:41:30", "02:42:00"].map(String::from)
        );
        // 100,000 instances at 10/s: 2 h 47 min, every 30 min on the clock.
        assert_eq!(
            labels(T0, T0 + 10_000 * SECOND),
            (
                TimeUnit::Minutes,
                ["03:00", "03:30", "04:00", "04:30", "05:00"]
                    .map(String::from)
                    .to_vec()
            )
        );
        // Overnight across midnight: the new day is named where it starts.
        let evening = T0 + 20 * HOUR; // 22:40
        let (unit, l) = labels(evening, evening + 9 * HOUR);
        assert_eq!(unit, TimeUnit::Minutes);
        assert_eq!(
            l,
            ["Dec 01 00:00", "02:00", "04:00", "06:00"].map(String::from)
        );
        let (_, l) = labels(evening - 4 * HOUR, evening + 9 * HOUR);
        assert_eq!(
            l,
            ["20:00", "22:00", "Dec 01 00:00", "02:00", "04:00", "06:00"].map(String::from)
        );
        // A resumed job over ten days: days.
        let (unit, l) = labels(T0, T0 + 10 * DAY);
        assert_eq!(unit, TimeUnit::Days);
        assert_eq!(l.first().unwrap(), "Dec 02");
        assert!(l.len() <= 8);
    }

    #[test]
    fn time_ticks_are_never_too_many_or_too_few() {
        for span in [1, 999, 7_000, 61_000, 3_599_000, 86_400_000, 400 * DAY] {
            let (_, t) = time_ticks(T0, T0 + span, 8);
            assert!(t.len() <= 8, "{span}: {t:?}");
            // Over a few seconds or more there is more than one tick.
            if span >= 7_000 {
                assert!(t.len() >= 3, "{span}: {t:?}");
            }
        }
    }

    #[test]
    fn spans_read_in_their_unit() {
        assert_eq!(span_text(40_500), "40 s");
        assert_eq!(span_text(125_000), "2 min 5 s");
        assert_eq!(span_text(10_000_000), "2 h 46 min");
        assert_eq!(span_text(3 * DAY + 4 * HOUR), "3 d 4 h");
    }
}
