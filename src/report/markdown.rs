//! `report --format md`: summary, rate kept, failures grouped by code with hints, timeline.

use std::io::Write;

use rusqlite::Connection;

use super::data::{iso, timeline, Overview};
use super::ReportError;
use crate::journal::read;
use crate::model::{hint, State};

/// Markdown table cells: no pipes or newlines from user data.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn write(conn: &Connection, o: &Overview, out: &mut dyn Write) -> Result<(), ReportError> {
    summary(out, o)?;
    ambiguous_and_rate(out, conn, o)?;
    failures(out, conn)?;
    writeln!(out, "## Timeline (UTC)\n")?;
    for (t, what) in timeline(conn)? {
        writeln!(out, "- {} — {}", iso(t), cell(&what))?;
    }
    writeln!(out, "\n## Instances\n")?;
    writeln!(out, "| instance | region | key | state | attempts | last RequestId | last error | verified at |\n|---|---|---|---|---:|---|---|---|")?;
    read::for_each_instance(conn, |r| {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(r.instance_id.as_str()),
            cell(&r.region),
            cell(
                &r.key_id
                    .clone()
                    .map(|k| format!("{k} ({})", r.key_region.clone().unwrap_or_default()))
                    .unwrap_or_else(|| "default (KMS-CDB)".into())
            ),
            r.state,
            r.attempts,
            cell(r.last_request_id.as_deref().unwrap_or("")),
            cell(r.last_error_code.as_deref().unwrap_or("")),
            r.verified_at_ms.map(iso).unwrap_or_default()
        )
    })??;
    Ok(())
}

/// Who made the report from which journal, and the counts per state.
fn summary(out: &mut dyn Write, o: &Overview) -> std::io::Result<()> {
    writeln!(out, "# fleetcrypt audit report\n")?;
    writeln!(out, "- Generated: {}", o.generated_at)?;
    writeln!(out, "- Journal: `{}`", o.journal)?;
    writeln!(out, "- Tool version: {}", o.tool_version)?;
    writeln!(
        out,
        "- Journal chain head: `{}` (verify with `fleetcrypt journal verify`)",
        o.chain_head
    )?;
    if let (Some(a), Some(b)) = (o.first_ms, o.last_ms) {
        writeln!(out, "- Activity: {} to {}", iso(a), iso(b))?;
    }
    writeln!(out, "\n## Summary\n")?;
    writeln!(out, "| state | instances |\n|---|---:|")?;
    for (label, n) in [
        ("encrypted", o.counts[&State::Encrypted]),
        ("already_encrypted", o.counts[&State::AlreadyEncrypted]),
        ("failed", o.counts[&State::Failed]),
        ("pending (not finished)", o.pending),
        ("**total**", o.total),
    ] {
        writeln!(out, "| {label} | {n} |")?;
    }
    if !o.accounts.is_empty() {
        writeln!(out, "\n## Accounts\n")?;
        writeln!(
            out,
            "Each account (a tccli profile) signed its own requests and had its own rate limit.\n"
        )?;
        writeln!(out, "| account | encrypted | already encrypted | failed | not finished | total |\n|---|---:|---:|---:|---:|---:|")?;
        for (a, t) in &o.accounts {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(super::data::account_name(a.as_deref())),
                t.encrypted,
                t.already_encrypted,
                t.failed,
                t.pending,
                t.total()
            )?;
        }
    }
    Ok(())
}

/// How ambiguous Open answers were settled, and the busiest second per action.
fn ambiguous_and_rate(
    out: &mut dyn Write,
    conn: &Connection,
    o: &Overview,
) -> Result<(), ReportError> {
    let ambiguous = read::ambiguous_answers(conn)?;
    let n: u64 = ambiguous.iter().map(|(_, n)| n).sum();
    writeln!(
        out,
        "\n{n} ambiguous answer(s) to OpenDBInstanceEncryption were each verified with DescribeDBInstanceInfo before anything was re-sent: a YES at any time ended the attempt, and a NO counted only once the attempt had settled (--settle after it was sent, the longest the server may still work on a call after the client gave up; after a restart, a fresh window), never an answer other than exactly YES or NO{}",
        if n == 0 { ".".to_string() } else {
            format!(": {}.", ambiguous.iter().map(|(c, n)| format!("`{}` x{n}", cell(c))).collect::<Vec<_>>().join(", "))
        }
    )?;
    writeln!(out, "\n## Rate limit kept\n")?;
    writeln!(
        out,
        "Configured limit: {} requests per second per action and endpoint (and account). Busiest sliding second seen in the journal's send times:\n",
        o.limit_per_s.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
    )?;
    writeln!(
        out,
        "| action | max requests in any 1 s window |\n|---|---:|"
    )?;
    for (a, n) in &o.max_window {
        writeln!(out, "| {a} | {n} |")?;
    }
    verification(out, o)?;
    Ok(())
}

/// How the `DescribeDBInstanceInfo` quota went: reads per instance, polls, delay to YES.
fn verification(out: &mut dyn Write, o: &Overview) -> std::io::Result<()> {
    let v = &o.verification;
    writeln!(out, "\n## Verification reads\n")?;
    writeln!(
        out,
        "{} DescribeDBInstanceInfo reads for {} instances ({:.2} per instance; the preflight and one verification make 2). {} of them ({:.1} % of that quota) were polls of an attempt that did not show YES yet.\n",
        v.reads,
        o.total,
        v.reads_per_instance(o.total),
        v.polls,
        100.0 * v.poll_share()
    )?;
    if !v.delay_to_yes.is_empty() {
        writeln!(
            out,
            "| endpoint | accepted Open sent → YES read: instances | median | p90 |\n|---|---:|---:|---:|"
        )?;
        for (e, d) in &v.delay_to_yes {
            writeln!(
                out,
                "| {} | {} | {:.1} s | {:.1} s |",
                cell(e),
                d.n,
                d.p50_ms as f64 / 1000.0,
                d.p90_ms as f64 / 1000.0
            )?;
        }
    }
    Ok(())
}

fn failures(out: &mut dyn Write, conn: &Connection) -> Result<(), ReportError> {
    writeln!(out, "\n## Failures by error code\n")?;
    let failures = read::failures_by_code(conn)?;
    if failures.is_empty() {
        writeln!(out, "No failures.")?;
    }
    for read::FailureGroup {
        code,
        count: n,
        instances: ids,
        message: msg,
    } in failures
    {
        writeln!(out, "### `{}` — {n} instance(s)\n", cell(&code))?;
        writeln!(out, "Last message: {}\n", cell(&msg))?;
        if let Some(h) = hint(&code) {
            writeln!(out, "Hint: {h}\n")?;
        }
        writeln!(
            out,
            "Instances: {}\n",
            ids.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}
