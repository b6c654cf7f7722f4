//! The table printed at the end of a run, read back from the journal.

use std::path::Path;
use std::time::Duration;

use crate::journal::{read, schema};
use crate::model::{hint, State};

/// The table printed at the end of a run; `report_hint` names the report command
/// (not for the demo, whose journal is temporary).
pub(super) fn print(path: &Path, elapsed: Duration, rate: u32, report_hint: bool) {
    let Ok(conn) = schema::open_reader(path) else {
        return;
    };
    let Ok(counts) = read::counts(&conn) else {
        return;
    };
    let total: u64 = counts.values().sum();
    let pending: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let mut out = String::new();
    out.push_str(&format!(
        "\nfleetcrypt: {} instance(s) in {}, this run took {:.1}s\n",
        total,
        path.display(),
        elapsed.as_secs_f64()
    ));
    out.push_str("  state               count\n");
    for (label, n) in [
        ("encrypted", counts[&State::Encrypted]),
        ("already_encrypted", counts[&State::AlreadyEncrypted]),
        ("failed", counts[&State::Failed]),
        ("pending", pending),
    ] {
        out.push_str(&format!("  {label:<18} {n:>6}\n"));
    }
    out.push_str(&format!("  {:<18} {:>6}\n", "total", total));
    if let Ok(windows) = read::max_requests_in_1s_window(&conn) {
        let parts: Vec<String> = windows.iter().map(|(a, n)| format!("{a} {n}")).collect();
        if !parts.is_empty() {
            out.push_str(&format!(
                "  busiest second per action (limit {rate}): {}\n",
                parts.join(", ")
            ));
        }
    }
    if let Ok(ambiguous) = read::ambiguous_answers(&conn) {
        let n: u64 = ambiguous.iter().map(|(_, n)| n).sum();
        if n > 0 {
            let parts: Vec<String> = ambiguous.iter().map(|(c, n)| format!("{c} x{n}")).collect();
            out.push_str(&format!(
                "  {n} ambiguous answer(s) verified with a read before anything was re-sent: {}\n",
                parts.join(", ")
            ));
        }
    }
    if let Ok(failures) = read::failures_by_code(&conn) {
        failures_by_code(&mut out, failures);
    }
    if report_hint {
        out.push_str(&format!(
            "Audit report: fleetcrypt --journal {} report --format html -o report.html\n",
            path.display()
        ));
    }
    {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{out}");
    }
}

/// Failed instances grouped by error code: a few ids, the first message, the hint.
fn failures_by_code(out: &mut String, failures: Vec<read::FailureGroup>) {
    if failures.is_empty() {
        return;
    }
    out.push_str("Failures by error code:\n");
    for read::FailureGroup {
        code,
        count: n,
        instances: ids,
        message: msg,
    } in failures
    {
        let shown: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
        out.push_str(&format!(
            "  {code:<32} {n:>5}  e.g. {}{}\n    {msg}\n",
            shown.join(", "),
            if ids.len() > 3 { ", …" } else { "" }
        ));
        if let Some(h) = hint(&code) {
            out.push_str(&format!("    hint: {h}\n"));
        }
    }
}
