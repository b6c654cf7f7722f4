//! What every report format shares: the overview numbers and the time series.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::Connection;

use crate::journal::{chain, read, sql_list};
use crate::model::{Disposition, EventKind, State};

/// ISO 8601 UTC with milliseconds.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub generated_at: String,
    pub journal: String,
    pub tool_version: &'static str,
    pub counts: BTreeMap<State, u64>,
    pub total: u64,
    pub pending: u64,
    pub limit_per_s: Option<i64>,
    pub max_window: BTreeMap<String, u64>,
    pub chain_head: String,
    pub runs: Vec<read::RunRow>,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub verification: read::Verification,
    /// Per account (issue 12); empty when no instance names one.
    pub accounts: Vec<(Option<String>, Tally)>,
}

pub fn overview(conn: &Connection, journal: &Path) -> rusqlite::Result<Overview> {
    let counts = read::counts(conn)?;
    let total = counts.values().sum();
    let pending = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let runs = read::runs(conn)?;
    let limit_per_s = runs.iter().rev().find_map(|r| r.rate_limit);
    let (first_ms, last_ms) =
        conn.query_row("SELECT MIN(at_ms), MAX(at_ms) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(Overview {
        generated_at: iso(crate::model::now_ms()),
        journal: journal.display().to_string(),
        tool_version: env!("CARGO_PKG_VERSION"),
        counts,
        total,
        pending,
        limit_per_s,
        max_window: read::max_requests_in_1s_window(conn)?,
        chain_head: chain::head(conn)?,
        runs,
        first_ms,
        last_ms,
        verification: read::verification(conn)?,
        accounts: by_account(conn)?,
    })
}

/// Per-bucket values over the run, for the charts.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub start_ms: i64,
    pub bucket_ms: i64,
    /// action -> the busiest second within each bucket.
    pub requests: BTreeMap<String, Vec<u64>>,
    /// state -> instances that reached it, cumulative, at the end of each bucket.
    pub reached: BTreeMap<&'static str, Vec<u64>>,
    pub buckets: usize,
}

/// Bins requests per second (peak per bucket) and state arrivals over time, in at most `max_points` buckets.
pub fn series(conn: &Connection, max_points: usize) -> rusqlite::Result<Series> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        &format!(
            "SELECT MIN(sent_at_ms), MAX(COALESCE(sent_at_ms, at_ms)) FROM events WHERE sent_at_ms IS NOT NULL OR kind IN ({})",
            sql_list(
                [
                    EventKind::VerifiedEncrypted,
                    EventKind::FoundAlreadyEncrypted,
                    EventKind::PreflightFailed,
                    EventKind::GaveUp,
                    EventKind::AttemptAnswered,
                ]
                .map(EventKind::as_str)
            )
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Series::default());
    };
    let start = lo - lo % 1000;
    let span_s = ((hi - start) / 1000 + 1).max(1);
    let per_bucket_s = ((span_s as usize).div_ceil(max_points.max(1))).max(1) as i64;
    let buckets = (span_s / per_bucket_s + 1) as usize;
    let mut s = Series {
        start_ms: start,
        bucket_ms: per_bucket_s * 1000,
        buckets,
        ..Series::default()
    };
    let mut stmt = conn.prepare(
        "SELECT action, sent_at_ms / 1000 AS sec, count(*) FROM events WHERE sent_at_ms IS NOT NULL AND action IS NOT NULL GROUP BY action, endpoint, sec",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let action: String = r.get(0)?;
        let sec: i64 = r.get(1)?;
        let n: u64 = r.get(2)?;
        let b =
            (((sec * 1000 - start) / 1000) / per_bucket_s).clamp(0, buckets as i64 - 1) as usize;
        let v = s.requests.entry(action).or_insert_with(|| vec![0; buckets]);
        v[b] = v[b].max(n);
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT to_state, at_ms FROM events WHERE to_state IN ({}) AND from_state IS NOT to_state ORDER BY at_ms",
        sql_list(State::TERMINAL.map(State::as_str))
    ))?;
    let mut rows = stmt.query([])?;
    let mut increments: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for st in State::TERMINAL {
        increments.insert(st.as_str(), vec![0; buckets]);
    }
    while let Some(r) = rows.next()? {
        let st: String = r.get(0)?;
        let at: i64 = r.get(1)?;
        let b = ((at - start) / s.bucket_ms).clamp(0, buckets as i64 - 1) as usize;
        if let Some(v) = increments
            .iter_mut()
            .find(|(k, _)| **k == st)
            .map(|(_, v)| v)
        {
            v[b] += 1;
        }
    }
    for (k, v) in increments {
        let mut acc = 0;
        s.reached.insert(
            k,
            v.into_iter()
                .map(|x| {
                    acc += x;
                    acc
                })
                .collect(),
        );
    }
    Ok(s)
}

/// A timeline of notable moments: runs, and per run and minute what happened.
pub fn timeline(conn: &Connection) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    let runs = read::runs(conn)?;
    let last_id = runs.last().map(|r| r.id);
    for r in &runs {
        out.push((
            r.started_at_ms,
            format!(
                "run {} started: `{}` (pid {}, rate {})",
                r.id,
                r.command,
                r.pid,
                r.rate_limit
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        ));
        match (r.ended_at_ms, r.exit_code) {
            (Some(end), Some(code)) => {
                out.push((end, format!("run {} ended with exit code {code}", r.id)))
            }
            _ if Some(r.id) != last_id => out.push((
                r.started_at_ms,
                format!(
                    "run {} recorded no end: it was killed or crashed (the next run recovered its work)",
                    r.id
                ),
            )),
            _ => {}
        }
    }
    // The rollout's milestones (canary, waves, window pauses, error budget),
    // one line each; single error counts are left to `status` and the JSON.
    for (at, e) in read::rollout_events(conn, None)? {
        if !matches!(e, crate::model::RolloutEvent::ErrorCounted { .. }) {
            out.push((at, e.describe()));
        }
    }
    let milestones = EventKind::ALL.into_iter().filter(|k| k.is_milestone());
    let mut stmt = conn.prepare(&format!(
        "SELECT run_id, at_ms / 60000 AS minute, kind, count(*), MIN(at_ms) FROM events WHERE kind IN ({}) OR (kind = '{}' AND detail IN ({})) GROUP BY run_id, minute, kind ORDER BY run_id, minute",
        sql_list(milestones.map(EventKind::as_str)),
        EventKind::AttemptAnswered,
        sql_list([Disposition::Ambiguous, Disposition::Refused].map(Disposition::as_str)),
    ))?;
    let mut rows = stmt.query([])?;
    // Per run and minute: what happened, stamped with the group's first such event.
    let mut groups: BTreeMap<(Option<i64>, i64), (i64, Vec<String>)> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let run: Option<i64> = r.get(0)?;
        let minute: i64 = r.get(1)?;
        let kind: Option<EventKind> = r.get::<_, String>(2)?.parse().ok();
        let n: u64 = r.get(3)?;
        let first: i64 = r.get(4)?;
        let label = match kind {
            Some(EventKind::VerifiedEncrypted) => "verified encrypted",
            Some(EventKind::FoundAlreadyEncrypted) => "found already encrypted",
            Some(EventKind::PreflightFailed) => "failed preflight",
            Some(EventKind::GaveUp) => "failed after attempts",
            Some(EventKind::RetryScheduled) => "retries scheduled after a verified NO",
            Some(EventKind::AttemptRecovered) => {
                "attempts recovered after a crash (verified before anything else)"
            }
            Some(EventKind::ResetForRetry) => "reset for retry",
            _ => "ambiguous or refused answers",
        };
        let e = groups.entry((run, minute)).or_insert((first, Vec::new()));
        e.0 = e.0.min(first);
        e.1.push(format!("{n} {label}"));
    }
    for (_, (first, parts)) in groups {
        out.push((first, parts.join(", ")));
    }
    out.sort_by_key(|(t, _)| *t);
    Ok(out)
}

/// Instances per kind of outcome: one row of the grouped instance table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub encrypted: u64,
    pub already_encrypted: u64,
    pub failed: u64,
    /// Every state that is not final.
    pub pending: u64,
}

impl Tally {
    fn add(&mut self, state: State, n: u64) {
        match state {
            State::Encrypted => self.encrypted += n,
            State::AlreadyEncrypted => self.already_encrypted += n,
            State::Failed => self.failed += n,
            _ => self.pending += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.encrypted + self.already_encrypted + self.failed + self.pending
    }
}

/// Instances per account (issue 12; `None`: the run's own credentials), in
/// name order, the run's own last; empty when no instance names an account.
pub fn by_account(conn: &Connection) -> rusqlite::Result<Vec<(Option<String>, Tally)>> {
    let mut out: Vec<(Option<String>, Tally)> = read::counts_by_account(conn)?
        .into_iter()
        .map(|(account, counts)| {
            let mut t = Tally::default();
            for (state, n) in counts {
                t.add(state, n);
            }
            (account, t)
        })
        .collect();
    out.sort_by_key(|(a, _)| a.is_none());
    Ok(out)
}

/// How an account is shown: its profile name, or the run's own credentials.
pub fn account_name(account: Option<&str>) -> &str {
    account.unwrap_or("(the run's own credentials)")
}

/// Instances per region, in region order.
pub fn by_region(conn: &Connection) -> rusqlite::Result<Vec<(String, Tally)>> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    let mut stmt =
        conn.prepare("SELECT region, state, count(*) FROM instances GROUP BY region, state")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let state: State = r.get(1)?;
        out.entry(r.get(0)?).or_default().add(state, r.get(2)?);
    }
    Ok(out.into_iter().collect())
}

/// Instances per label value, for the label names with at most `max_values`
/// values (a team or an environment, not a name that every instance has its own of).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelTallies {
    /// (name, value, tally), by name then value.
    pub grouped: Vec<(String, String, Tally)>,
    /// Names with more values than that, with how many they have.
    pub too_many_values: Vec<(String, usize)>,
}

pub fn by_label(conn: &Connection, max_values: usize) -> rusqlite::Result<LabelTallies> {
    // Tallied here rather than by a GROUP BY: a label with a value per
    // instance would make SQLite sort one group per instance (0.5 s at 100,000).
    let mut names: HashMap<String, HashMap<String, Tally>> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT j.key, COALESCE(CAST(j.value AS TEXT), ''), instances.state FROM instances, json_each(instances.labels) AS j",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let name = r.get_ref(0)?.as_str()?;
        let value = r.get_ref(1)?.as_str()?;
        let state: State = r.get(2)?;
        let values = match names.get_mut(name) {
            Some(v) => v,
            None => names.entry(name.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(t) => t.add(state, 1),
            None => values.entry(value.to_string()).or_default().add(state, 1),
        }
    }
    let mut out = LabelTallies::default();
    let names: BTreeMap<String, HashMap<String, Tally>> = names.into_iter().collect();
    for (name, values) in names {
        if values.len() > max_values {
            out.too_many_values.push((name, values.len()));
        } else {
            let values: BTreeMap<String, Tally> = values.into_iter().collect();
            out.grouped.extend(
                values
                    .into_iter()
                    .map(|(value, tally)| (name.clone(), value, tally)),
            );
        }
    }
    Ok(out)
}
