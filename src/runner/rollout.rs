//! Rollout control for an irreversible change (issue 11): which instances a run
//! touches (`--only`/`--exclude`), in which groups (`--waves`), a canary first,
//! an error budget (`--max-errors`), and a maintenance window (`--window`).
//!
//! Everything here is plain data and pure decisions; the dispatcher applies
//! them (it never starts an Open the rollout forbids) and `runner::run`
//! sequences the phases: canary, then each wave, each fully verified before the
//! next begins.

use std::fmt;
use std::str::FromStr;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};

use crate::journal::InstanceRow;

/// `KEY=VALUE`: KEY is `Region`, `Account` or a label column (case-insensitive), VALUE exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub key: String,
    pub value: String,
}

impl FromStr for Match {
    type Err = String;
    fn from_str(s: &str) -> Result<Match, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE (for example Env=staging)"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "{s:?} is not KEY=VALUE: both sides must be non-empty"
            ));
        }
        Ok(Match {
            key: k.to_string(),
            value: v.to_string(),
        })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl Match {
    /// Whether `row` has this KEY with this VALUE (`Region`, `Account`, or a
    /// label column).
    pub fn matches(&self, row: &InstanceRow) -> bool {
        if self.key.eq_ignore_ascii_case("region") {
            return row.region == self.value;
        }
        if self.key.eq_ignore_ascii_case("account") {
            // A row imported before accounts (journal version < 8) may keep
            // its `Account` column as a label: the selection still means it.
            return match &row.account {
                Some(a) => *a == self.value,
                None => label(row, &self.key).is_some_and(|v| v == self.value),
            };
        }
        label(row, &self.key).is_some_and(|v| v == self.value)
    }
}

/// The value of label column `key` (case-insensitive name) of `row`.
fn label(row: &InstanceRow, key: &str) -> Option<String> {
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.labels).ok()?;
    labels
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// What a run may touch. An instance is selected when, for every KEY named by
/// `--only`, it has one of the values given for that KEY, and it matches no
/// `--exclude`. Everything else stays as it is in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub only: Vec<Match>,
    pub exclude: Vec<Match>,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.only.is_empty() && self.exclude.is_empty()
    }

    pub fn selects(&self, row: &InstanceRow) -> bool {
        if self.exclude.iter().any(|m| m.matches(row)) {
            return false;
        }
        let mut keys: Vec<&str> = self.only.iter().map(|m| m.key.as_str()).collect();
        keys.sort_unstable_by_key(|k| k.to_ascii_lowercase());
        keys.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        keys.iter().all(|k| {
            self.only
                .iter()
                .filter(|m| m.key.eq_ignore_ascii_case(k))
                .any(|m| m.matches(row))
        })
    }
}

/// `--waves Env=staging,Env=prod`: groups run one after another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waves(pub Vec<Match>);

impl FromStr for Waves {
    type Err = String;
    fn from_str(s: &str) -> Result<Waves, String> {
        let waves = s
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(Match::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if waves.is_empty() {
            return Err("--waves needs at least one KEY=VALUE".into());
        }
        Ok(Waves(waves))
    }
}

/// A number, or a percentage of the instances the run will touch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Count(u64),
    Percent(f64),
}

impl FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Amount, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage like 5%"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{s:?}: a percentage is between 0% and 100%"));
            }
            return Ok(Amount::Percent(p));
        }
        s.parse()
            .map(Amount::Count)
            .map_err(|_| format!("{s:?} is not a number (N) or a percentage (N%)"))
    }
}

impl Amount {
    /// The amount for `of` instances: a percentage rounds up, so `1%` of 10 is 1.
    pub fn of(self, of: u64) -> u64 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => ((of as f64) * p / 100.0).ceil() as u64,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The error budget when `--max-errors` is not given: the larger of 10 and 5 %
/// of the instances the run touches.
pub fn default_budget(touched: u64) -> u64 {
    10.max(Amount::Percent(5.0).of(touched))
}

/// Write-path errors seen against the budget (SSM's `MaxErrors`: once more
/// errors than the budget have been seen, no new Open starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBudget {
    pub limit: u64,
    pub errors: u64,
    pub by_code: BTreeMap<String, u64>,
}

impl ErrorBudget {
    pub fn new(limit: u64) -> ErrorBudget {
        ErrorBudget {
            limit,
            ..ErrorBudget::default()
        }
    }

    /// Counts one error; answers whether the budget is now spent.
    pub fn count(&mut self, code: &str) -> bool {
        self.errors += 1;
        *self.by_code.entry(code.to_string()).or_default() += 1;
        self.spent()
    }

    pub fn spent(&self) -> bool {
        self.errors > self.limit
    }

    /// The most frequent code (the first in code order among equals).
    pub fn top_code(&self) -> Option<&str> {
        let max = self.by_code.values().max()?;
        self.by_code
            .iter()
            .find(|(_, n)| *n == max)
            .map(|(c, _)| c.as_str())
    }
}

/// What to do after a canary passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CanaryThen {
    /// Stop with exit 0; `fleetcrypt resume` continues.
    #[default]
    Stop,
    /// Go on with the rest at once.
    Continue,
}

/// `--window HH:MM-HH:MM` in a time zone: Opens start only inside it. Crossing
/// midnight (22:00-04:00) is allowed; equal ends mean all day.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub tz: WindowTz,
}

/// The window's time zone: the system's local time, or a named IANA zone.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowTz {
    Local,
    Named(chrono_tz::Tz),
}

impl WindowTz {
    pub fn parse(name: &str) -> Result<WindowTz, String> {
        name.parse::<chrono_tz::Tz>()
            .map(WindowTz::Named)
            .map_err(|_| {
                format!("unknown time zone {name:?} (an IANA name like Asia/Shanghai or UTC)")
            })
    }

    /// From `--window-tz`, else local time (which follows `TZ`, an IANA name or
    /// a POSIX string like `CST-8`, as the C library does).
    pub fn from_flag_or_env(flag: Option<&str>) -> Result<WindowTz, String> {
        flag.map_or(Ok(WindowTz::Local), WindowTz::parse)
    }
}

impl fmt::Display for WindowTz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowTz::Local => write!(f, "local time"),
            WindowTz::Named(tz) => write!(f, "{tz}"),
        }
    }
}

impl Window {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(s: &str, tz: WindowTz) -> Result<Window, String> {
        let bad = || format!("--window {s:?} is not HH:MM-HH:MM (for example 22:00-04:00)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| bad());
        Ok(Window {
            start: t(a)?,
            end: t(b)?,
            tz,
        })
    }

    fn contains_time(&self, t: NaiveTime) -> bool {
        if self.start == self.end {
            true
        } else if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// Whether `at` is inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.contains_time(self.local_time(at))
    }

    fn local_time(&self, at: DateTime<Utc>) -> NaiveTime {
        match &self.tz {
            WindowTz::Local => at.with_timezone(&chrono::Local).time(),
            WindowTz::Named(tz) => at.with_timezone(tz).time(),
        }
    }

    /// The next moment at or after `at` when the window opens (`at` itself when
    /// inside it).
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.contains(at) {
            return at;
        }
        self.next_at(at, self.start)
    }

    /// When the window `at` is in closes (`None` outside it, or all day).
    pub fn closes(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end || !self.contains(at) {
            return None;
        }
        Some(self.next_at(at, self.end))
    }

    /// The first moment after `at` when the zone's clock reads `t`: the days'
    /// `t` converted by the zone database, so a daylight-saving change is its
    /// business (a `t` that a change skips on some day is not on that day).
    fn next_at(&self, at: DateTime<Utc>, t: NaiveTime) -> DateTime<Utc> {
        let on = |date: chrono::NaiveDate| -> Option<DateTime<Utc>> {
            let naive = date.and_time(t);
            match &self.tz {
                WindowTz::Local => chrono::Local
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|d| d.with_timezone(&Utc)),
                WindowTz::Named(tz) => tz
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|d| d.with_timezone(&Utc)),
            }
        };
        let today = match &self.tz {
            WindowTz::Local => at.with_timezone(&chrono::Local).date_naive(),
            WindowTz::Named(tz) => at.with_timezone(tz).date_naive(),
        };
        (-1..3)
            .filter_map(|d| on(today + ChronoDuration::days(d)))
            .find(|x| *x > at)
            // Three days without that time cannot happen; an hour is a safe answer.
            .unwrap_or(at + ChronoDuration::hours(1))
    }
}
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} ({})",
            self.start.format("%H:%M"),
            self.end.format("%H:%M"),
            self.tz
        )
    }
}

/// Everything `run`/`resume` were told about the rollout.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    pub selection: Selection,
    pub waves: Option<Waves>,
    pub canary: Option<Amount>,
    pub canary_then: CanaryThen,
    /// `None`: [`default_budget`].
    pub max_errors: Option<Amount>,
    pub window: Option<Window>,
    pub exit_outside_window: bool,
    /// Opens unanswered per endpoint at the start of each phase; each accepted
    /// answer lets one more be unanswered (SSM-style concurrency ramp). `None`:
    /// no ramp.
    pub ramp_start: Option<usize>,
}

impl Rollout {
    /// Whether the run touches `row` (its selection and waves): the exit code is
    /// about the instances a run was asked to finish.
    pub fn touches(&self, row: &InstanceRow) -> bool {
        self.selection.selects(row)
            && self
                .waves
                .as_ref()
                .is_none_or(|w| w.0.iter().any(|m| m.matches(row)))
    }

    /// What shapes a run in `plan_only` mode: the selection only (canary,
    /// waves and the window shape when Opens go, and a plan sends none).
    pub fn for_run(&self, plan_only: bool) -> Rollout {
        if plan_only {
            Rollout {
                selection: self.selection.clone(),
                ..Rollout::default()
            }
        } else {
            self.clone()
        }
    }

    /// Whether the run touches every instance (no selection, no waves).
    pub fn touches_everything(&self) -> bool {
        self.selection.is_everything() && self.waves.is_none()
    }
}

/// The default first ramp: four Opens unanswered per endpoint.
pub const RAMP_START: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn row(region: &str, labels: &str) -> InstanceRow {
        InstanceRow {
            instance_id: "cdb-00000001".parse().unwrap(),
            seq: 1,
            region: region.into(),
            key_id: None,
            key_region: None,
            labels: labels.into(),
            state: State::Pending,
            attempts: 0,
            budget_base: 0,
            kms_errors: 0,
            cleared_to_send: false,
            last_sent_at_ms: None,
            settles_at_ms: None,
            last_outcome: None,
            next_attempt_at_ms: None,
            last_request_id: None,
            last_error_code: None,
            last_error_message: None,
            verified_at_ms: None,
            account: None,
        }
    }

    fn sel(only: &[&str], exclude: &[&str]) -> Selection {
        Selection {
            only: only.iter().map(|s| s.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn account_selects_the_account_and_a_label_only_without_one() {
        let a = InstanceRow {
            account: Some("prod-a".into()),
            ..row("ap-guangzhou", r#"{"Team":"a"}"#)
        };
        let b = InstanceRow {
            account: Some("prod-b".into()),
            ..row("ap-guangzhou", r#"{"Account":"prod-a"}"#)
        };
        let own = row("ap-guangzhou", r#"{"Team":"a"}"#);
        // A row from before accounts, with the column kept as a label.
        let old = row("ap-guangzhou", r#"{"Account":"prod-a"}"#);
        let s = sel(&["account=prod-a"], &[]);
        assert!(s.selects(&a) && !s.selects(&b) && !s.selects(&own) && s.selects(&old));
        let s = sel(&[], &["Account=prod-a"]);
        assert!(!s.selects(&a) && s.selects(&b) && s.selects(&own) && !s.selects(&old));
    }

    #[test]
    fn a_selection_ands_keys_and_ors_values_of_one_key() {
        let staging_gz = row("ap-guangzhou", r#"{"Env":"staging","Team":"a"}"#);
        let prod_gz = row("ap-guangzhou", r#"{"Env":"prod","Team":"a"}"#);
        let staging_sh = row("ap-shanghai", r#"{"Env":"staging"}"#);
        let s = sel(&["env=staging"], &[]);
        assert!(s.selects(&staging_gz) && !s.selects(&prod_gz) && s.selects(&staging_sh));
        let s = sel(&["Env=staging", "Region=ap-guangzhou"], &[]);
        assert!(s.selects(&staging_gz) && !s.selects(&prod_gz) && !s.selects(&staging_sh));
        let s = sel(&["Env=staging", "Env=prod"], &[]);
        assert!(s.selects(&staging_gz) && s.selects(&prod_gz));
        let s = sel(&[], &["Team=a"]);
        assert!(!s.selects(&staging_gz) && s.selects(&staging_sh));
        assert!(sel(&[], &[]).selects(&prod_gz));
        // A label the row does not have never matches.
        assert!(!sel(&["Owner=x"], &[]).selects(&staging_gz));
    }

    #[test]
    fn amounts_and_the_default_budget() {
        assert_eq!("5".parse::<Amount>().unwrap().of(100), 5);
        assert_eq!("5%".parse::<Amount>().unwrap().of(100), 5);
        assert_eq!("1%".parse::<Amount>().unwrap().of(10), 1);
        assert_eq!("2.5%".parse::<Amount>().unwrap().of(1000), 25);
        assert!("x".parse::<Amount>().is_err() && "150%".parse::<Amount>().is_err());
        assert_eq!(default_budget(100), 10);
        assert_eq!(default_budget(10_000), 500);
        assert!("Env".parse::<Match>().is_err() && "=x".parse::<Match>().is_err());
        assert_eq!("Env=staging, Env=prod".parse::<Waves>().unwrap().0.len(), 2);
    }

    #[test]
    fn the_budget_is_spent_past_its_limit_and_names_the_top_code() {
        let mut b = ErrorBudget::new(2);
        assert!(!b.count("InternalError.KmsError"));
        assert!(!b.count("InternalError.UnknownError"));
        assert!(b.count("InternalError.KmsError"));
        assert_eq!(b.top_code(), Some("InternalError.KmsError"));
        assert_eq!(ErrorBudget::new(0).top_code(), None);
        assert!(ErrorBudget::new(0).count("x"));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_across_midnight_in_a_named_zone() {
        let tz = WindowTz::parse("Asia/Shanghai").unwrap();
        let w = Window::parse("22:00-04:00", tz).unwrap();
        // 13:30 UTC is 21:30 in Shanghai (UTC+8): outside; opens at 14:00 UTC.
        assert!(!w.contains(utc("2026-11-30T13:30:00Z")));
        assert_eq!(
            w.next_open(utc("2026-11-30T13:30:00Z")),
            utc("2026-11-30T14:00:00Z")
        );
        // 23:00 and 03:59 Shanghai are inside; 04:00 is not.
        assert!(w.contains(utc("2026-11-30T15:00:00Z")));
        assert!(w.contains(utc("2026-11-30T19:59:00Z")));
        assert!(!w.contains(utc("2026-11-30T20:00:00Z")));
        assert_eq!(
            w.closes(utc("2026-11-30T15:00:00Z")),
            Some(utc("2026-11-30T20:00:00Z"))
        );
        // After the end: the next evening.
        assert_eq!(
            w.next_open(utc("2026-11-30T20:00:00Z")),
            utc("2026-12-01T14:00:00Z")
        );
        let day = Window::parse("09:00-17:00", WindowTz::parse("UTC").unwrap()).unwrap();
        assert!(day.contains(utc("2026-11-30T09:00:00Z")));
        assert!(!day.contains(utc("2026-11-30T17:00:00Z")));
        assert_eq!(
            day.next_open(utc("2026-11-30T18:00:00Z")),
            utc("2026-12-01T09:00:00Z")
        );
        assert!(Window::parse("25:00-04:00", WindowTz::Local).is_err());
        assert!(Window::parse("22:00", WindowTz::Local).is_err());
        assert!(WindowTz::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn a_window_follows_daylight_saving_time() {
        // New York, 2026-03-08: clocks go from 02:00 to 03:00 (EST → EDT).
        let w = Window::parse("01:00-05:00", WindowTz::parse("America/New_York").unwrap()).unwrap();
        // 07:30 UTC is 03:30 EDT: inside (the window is four wall-clock hours).
        assert!(w.contains(utc("2026-03-08T07:30:00Z")));
        // 09:00 UTC is 05:00 EDT: outside; next open 01:00 EDT = 05:00 UTC.
        assert!(!w.contains(utc("2026-03-08T09:00:00Z")));
        assert_eq!(
            w.next_open(utc("2026-03-08T09:00:00Z")),
            utc("2026-03-09T05:00:00Z")
        );
    }
}
