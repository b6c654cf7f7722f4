//! `status`: what a journal holds now, also beside a live run (read-only). One
//! typed [`Status`], rendered as text or as JSON.

use std::collections::BTreeMap;
use std::fmt;

use rusqlite::Connection;
use serde::Serialize;

use super::args::Global;
use super::commands::read_error;
use super::error::{CliError, CliResult, Done};
use crate::journal::{read, schema, JournalLock};
use crate::model::{hint, now_ms, RolloutEvent, State};

#[derive(Debug, Serialize)]
pub(super) struct Status {
    journal: String,
    total: u64,
    /// Every state, with 0 for the empty ones.
    counts: BTreeMap<&'static str, u64>,
    /// Instances not yet terminal.
    pending: u64,
    /// Whether a live process holds the journal's writer lock.
    running: bool,
    last_run: Option<LastRun>,
    instances_per_s_last_minute: f64,
    eta_s: Option<u64>,
    max_requests_in_1s_window: BTreeMap<String, u64>,
    verification: VerificationSummary,
    /// Per account (issue 12), when any instance names one.
    accounts: Vec<AccountSummary>,
    /// The last run's rollout (issue 11): wave, canary, error budget, window.
    rollout: Option<RolloutStatus>,
    failures: Vec<FailureSummary>,
}

#[derive(Debug, Default, Serialize)]
struct RolloutStatus {
    /// The wave under way or last started: "2/2 Env=prod".
    wave: Option<String>,
    canary: Option<&'static str>,
    errors: u64,
    budget: Option<u64>,
    budget_left: Option<u64>,
    /// Outside the maintenance window: no new Open until then (RFC 3339).
    paused_until: Option<String>,
    /// Why the run stopped starting Opens, if it did.
    halted: Option<String>,
    /// Every milestone, as a timeline.
    events: Vec<String>,
}

impl RolloutStatus {
    fn of(events: &[(i64, RolloutEvent)]) -> Option<RolloutStatus> {
        if events.is_empty() {
            return None;
        }
        let mut s = RolloutStatus::default();
        for (at, e) in events {
            s.events
                .push(format!("{}  {}", crate::report::iso(*at), e.describe()));
            match e {
                RolloutEvent::Plan { budget, .. } => s.budget = Some(*budget),
                RolloutEvent::CanaryStarted { .. } => s.canary = Some("running"),
                RolloutEvent::CanaryPassed { .. } => s.canary = Some("passed"),
                RolloutEvent::CanaryFailed { .. } => {
                    s.canary = Some("failed");
                    s.halted = Some("the canary failed".into());
                }
                RolloutEvent::WaveStarted {
                    index, of, wave, ..
                } => s.wave = Some(format!("{index}/{of} {wave}")),
                RolloutEvent::WaveFinished { index, of, wave } => {
                    s.wave = Some(format!("{index}/{of} {wave} (finished)"))
                }
                RolloutEvent::WindowPaused { until, .. } => s.paused_until = Some(until.clone()),
                RolloutEvent::WindowOpened { .. } => s.paused_until = None,
                RolloutEvent::OutsideWindow { next_open, .. } => {
                    s.halted = Some(format!(
                        "outside the maintenance window (next opens {next_open})"
                    ))
                }
                RolloutEvent::ErrorCounted { errors, budget, .. } => {
                    s.errors = *errors;
                    s.budget = Some(*budget);
                }
                RolloutEvent::BudgetSpent { top_code, .. } => {
                    s.halted = Some(format!("the error budget is spent (most: {top_code})"))
                }
            }
        }
        s.budget_left = s.budget.map(|b| b.saturating_sub(s.errors));
        Some(s)
    }
}

/// How the `DescribeDBInstanceInfo` quota went on verification (issue 10): the
/// same figures as the report's.
#[derive(Debug, Serialize)]
struct VerificationSummary {
    describe_reads: u64,
    reads_per_instance: f64,
    polls: u64,
    poll_share_of_describe_quota: f64,
    /// Per endpoint: from an accepted Open's send to the read that saw `YES`.
    delay_to_yes_ms: BTreeMap<String, DelaySummary>,
}

#[derive(Debug, Serialize)]
struct DelaySummary {
    n: u64,
    p50: i64,
    p90: i64,
}

impl VerificationSummary {
    fn of(v: read::Verification, total: u64) -> VerificationSummary {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        VerificationSummary {
            describe_reads: v.reads,
            reads_per_instance: round(v.reads_per_instance(total)),
            polls: v.polls,
            poll_share_of_describe_quota: round(v.poll_share()),
            delay_to_yes_ms: v
                .delay_to_yes
                .into_iter()
                .map(|(e, d)| {
                    (
                        e,
                        DelaySummary {
                            n: d.n,
                            p50: d.p50_ms,
                            p90: d.p90_ms,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// One account's instances: `account` is its tccli profile, `None` the run's
/// own credentials.
#[derive(Debug, Serialize)]
struct AccountSummary {
    account: Option<String>,
    total: u64,
    #[serde(flatten)]
    tally: crate::report::Tally,
}

#[derive(Debug, Serialize)]
struct LastRun {
    id: i64,
    command: String,
    started_at: String,
    ended_at: Option<String>,
    exit_code: Option<i64>,
}

#[derive(Debug, Serialize)]
struct FailureSummary {
    code: String,
    count: u64,
    examples: Vec<String>,
    message: String,
    hint: Option<&'static str>,
}

impl Status {
    fn gather(conn: &Connection, global: &Global) -> rusqlite::Result<Status> {
        let by_state = read::counts(conn)?;
        let total: u64 = by_state.values().sum();
        let pending: u64 = by_state
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let now = now_ms();
        let runs = read::runs(conn)?;
        let last = runs.last();
        // Over the last minute, or since the current run started if that is more recent.
        let since = last
            .filter(|r| r.ended_at_ms.is_none())
            .map_or(now - 60_000, |r| r.started_at_ms.max(now - 60_000));
        let recent = read::finished_since(conn, since)?;
        let rate = recent as f64 / ((now - since).max(1000) as f64 / 1000.0);
        let failures = read::failures_by_code(conn)?
            .into_iter()
            .map(|g| FailureSummary {
                hint: hint(&g.code),
                examples: g.instances.into_iter().take(5).collect(),
                code: g.code,
                count: g.count,
                message: g.message,
            })
            .collect();
        Ok(Status {
            journal: global.journal.display().to_string(),
            total,
            counts: State::ALL
                .iter()
                .map(|s| (s.as_str(), by_state.get(s).copied().unwrap_or(0)))
                .collect(),
            pending,
            running: JournalLock::is_held(&global.journal),
            last_run: last.map(|r| LastRun {
                id: r.id,
                command: r.command.clone(),
                started_at: crate::report::iso(r.started_at_ms),
                ended_at: r.ended_at_ms.map(crate::report::iso),
                exit_code: r.exit_code,
            }),
            instances_per_s_last_minute: (rate * 100.0).round() / 100.0,
            eta_s: (rate > 0.0).then(|| (pending as f64 / rate).round() as u64),
            max_requests_in_1s_window: read::max_requests_in_1s_window(conn)?,
            verification: VerificationSummary::of(read::verification(conn)?, total),
            accounts: crate::report::by_account(conn)?
                .into_iter()
                .map(|(account, tally)| AccountSummary {
                    account,
                    total: tally.total(),
                    tally,
                })
                .collect(),
            rollout: RolloutStatus::of(&read::rollout_events(conn, last.map(|r| r.id))?),
            failures,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "journal {} — {} instance(s){}",
            self.journal,
            self.total,
            if self.running {
                ", a run is in progress"
            } else {
                ""
            }
        )?;
        for (state, n) in State::ALL
            .iter()
            .map(|s| (s.as_str(), self.counts[s.as_str()]))
        {
            writeln!(f, "  {state:<18} {n:>7}")?;
        }
        writeln!(
            f,
            "rate (last minute): {} instances/s   ETA: {}",
            self.instances_per_s_last_minute,
            self.eta_s
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into())
        )?;
        if !self.accounts.is_empty() {
            writeln!(
                f,
                "  {:<28} {:>9} {:>9} {:>7} {:>12} {:>7}",
                "account", "encrypted", "already", "failed", "not finished", "total"
            )?;
            for a in &self.accounts {
                let t = &a.tally;
                writeln!(
                    f,
                    "  {:<28} {:>9} {:>9} {:>7} {:>12} {:>7}",
                    crate::report::account_name(a.account.as_deref()),
                    t.encrypted,
                    t.already_encrypted,
                    t.failed,
                    t.pending,
                    a.total
                )?;
            }
        }
        if let Some(r) = &self.rollout {
            match (&r.paused_until, self.running) {
                (Some(until), true) => writeln!(
                    f,
                    "paused until {until}: outside the maintenance window, no new Open starts"
                )?,
                (Some(until), false) => writeln!(
                    f,
                    "the last run was paused until {until} (outside the maintenance window) when it ended"
                )?,
                _ => {}
            }
            if let Some(w) = &r.wave {
                writeln!(f, "wave: {w}")?;
            }
            if let Some(c) = r.canary {
                writeln!(f, "canary: {c}")?;
            }
            if let (Some(b), Some(left)) = (r.budget, r.budget_left) {
                writeln!(f, "error budget: {} of {b} used, {left} left", r.errors)?;
            }
            if let Some(h) = &r.halted {
                writeln!(f, "stopped starting Opens: {h}")?;
            }
        }
        let v = &self.verification;
        if v.describe_reads > 0 {
            writeln!(
                f,
                "verification: {} DescribeDBInstanceInfo read(s), {:.2} per instance; {} poll(s) ({:.1} % of that quota)",
                v.describe_reads,
                v.reads_per_instance,
                v.polls,
                v.poll_share_of_describe_quota * 100.0
            )?;
            for (endpoint, d) in &v.delay_to_yes_ms {
                writeln!(
                    f,
                    "  delay to YES at {endpoint}: median {:.1} s, p90 {:.1} s ({} instance(s))",
                    d.p50 as f64 / 1000.0,
                    d.p90 as f64 / 1000.0,
                    d.n
                )?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f, "failures:")?;
            for x in &self.failures {
                writeln!(f, "  {:<32} {:>5}  {}", x.code, x.count, x.message)?;
            }
        }
        Ok(())
    }
}

pub(super) fn status(global: &Global, as_json: bool) -> CliResult {
    let conn = schema::open_reader(&global.journal).map_err(CliError::usage)?;
    let status = Status::gather(&conn, global).map_err(|e| read_error(global, &e))?;
    if as_json {
        say!(
            "{}",
            serde_json::to_string_pretty(&status).expect("a status serializes")
        );
    } else {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{status}");
    }
    Ok(Done::Ok)
}
