//! `report --format html`: one self-contained file (inline CSS and SVG, a few
//! lines of inline script for search and sort, nothing from the network), all
//! text escaped, readable printed to PDF.
//!
//! It reads well at any size: the tables wrap inside the page (a wider one
//! scrolls inside its own box), the charts have round value ticks and clock
//! times on the time axis (`axis.rs`), and above [`FULL_TABLE_MAX`] instances
//! the page counts the instances per region and label and lists only those
//! not confirmed encrypted, so a 100,000-instance report stays a few hundred
//! kilobytes and opens at once; the CSV and JSON reports keep every row.
//!
//! Each section is one function that appends to the page, in page order in
//! [`write`].

use std::fmt::Write as _;
use std::io::Write;

use rusqlite::Connection;

use super::axis::{span_text, time_ticks, value_ticks};
use super::data::{by_label, by_region, iso, series, timeline, Overview, Series, Tally};
use super::ReportError;
use crate::journal::{read, InstanceRow};
use crate::model::{hint, State};

/// Up to this many instances, the page lists every one (a browser lays out
/// 2,000 rows in well under a second); above it, the instances are counted per
/// region and label and only those not confirmed encrypted are listed.
pub const FULL_TABLE_MAX: u64 = 2_000;
/// Above [`FULL_TABLE_MAX`], at most this many instances not confirmed
/// encrypted are listed one by one.
pub const ATTENTION_ROWS_MAX: usize = 1_000;
/// Instance ids shown per failure group, followed by "and N more".
pub const FAILURE_EXAMPLES: usize = 10;
/// Label names with more values than this (a name per instance) are not grouped.
const LABEL_VALUES_MAX: usize = 24;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root{--ink:#1d2330;--muted:#5b6475;--line:#dde2ea;--ok:#1f8a4c;--info:#2f6fb3;--bad:#c0392b;--warn:#b7791f;--bg:#f6f8fb}
*{box-sizing:border-box}body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);margin:0;background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
.meta{color:var(--muted);font-size:12.5px}.meta code{font-size:11.5px;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:20px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .n{font-size:26px;font-weight:650}.card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.ok .n{color:var(--ok)}.card.info .n{color:var(--info)}.card.bad .n{color:var(--bad)}.card.warn .n{color:var(--warn)}
.panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:10px 0;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td{overflow-wrap:break-word}
table.instances{table-layout:fixed;min-width:900px}table.instances td{overflow-wrap:anywhere}table.instances th{white-space:normal}table.instances td:nth-child(6) code{word-break:break-all}
.table-box{overflow-x:auto;max-width:100%}.table-box+.table-box{margin-top:14px}table.tally{width:auto;min-width:60%}pre.cmd{background:#eef2f7;border-radius:6px;padding:8px 10px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;margin:6px 0}
th{background:#eef2f7;font-weight:600;cursor:pointer;user-select:none;white-space:nowrap}td.num,th.num{text-align:right}
.state{white-space:nowrap;display:inline-block;padding:1px 7px;border-radius:10px;font-size:11.5px;font-weight:600}
.s-encrypted{background:#e3f4ea;color:var(--ok)}.s-already_encrypted{background:#e6eef8;color:var(--info)}.s-failed{background:#fbe7e4;color:var(--bad)}
.s-pending,.s-requesting,.s-verifying,.s-retry_wait{background:#fdf3e1;color:var(--warn)}
.ok-note{color:var(--ok);font-weight:600}.bad-note{color:var(--bad);font-weight:600}
input[type=search]{width:100%;padding:7px 10px;border:1px solid var(--line);border-radius:6px;margin:4px 0 10px;font:inherit}
svg text{font:11px -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:var(--muted)}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
td:first-child code{white-space:nowrap}ul.timeline{margin:0;padding-left:18px;max-height:28em;overflow-y:auto}ul.timeline li{margin:2px 0}code{font-family:ui-monospace,Menlo,Consolas,monospace}
@media print{ul.timeline{max-height:none;overflow:visible}body{background:#fff}main{padding:0;max-width:none}.panel,.card{break-inside:avoid}input[type=search]{display:none}th{cursor:default}h2{break-after:avoid}}
"#;

const SCRIPT: &str = r#"
(function(){var q=document.getElementById('q'),t=document.getElementById('instances');if(!q||!t)return;var b=t.tBodies[0];
q.addEventListener('input',function(){var v=q.value.toLowerCase();for(var i=0;i<b.rows.length;i++){var r=b.rows[i];r.style.display=r.textContent.toLowerCase().indexOf(v)>=0?'':'none';}});
var hs=t.tHead.rows[0].cells;for(var k=0;k<hs.length;k++)(function(k){var asc=true;hs[k].addEventListener('click',function(){var rows=Array.prototype.slice.call(b.rows);var num=hs[k].classList.contains('num');
rows.sort(function(x,y){var a=x.cells[k].textContent,c=y.cells[k].textContent;if(num){a=+a;c=+c;}return (a<c?-1:a>c?1:0)*(asc?1:-1);});asc=!asc;rows.forEach(function(r){b.appendChild(r);});});})(k);})();
"#;

const COLORS: [&str; 6] = [
    "#2f6fb3", "#1f8a4c", "#b7791f", "#8e44ad", "#16a085", "#7f8c8d",
];

/// Thousands separated by commas: `100,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The plot area of a chart, in SVG units.
struct Plot {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
    /// The value at the top of the value axis (its last round tick).
    y_max: f64,
}

impl Plot {
    fn y(&self, v: f64) -> f64 {
        self.top + self.h - v / self.y_max * self.h
    }
}

fn polyline(values: &[u64], p: &Plot, color: &str) -> String {
    if values.is_empty() {
        return String::new();
    }
    let n = values.len().max(2) as f64 - 1.0;
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", p.left + i as f64 / n * p.w, p.y(*v as f64)))
        .collect();
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"/>",
        pts.join(" ")
    )
}

/// The value axis: a grid line and a label at each round tick.
fn value_axis(svg: &mut String, p: &Plot, ticks: &[u64]) {
    for t in ticks {
        let y = p.y(*t as f64);
        let _ = write!(
            svg,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e9ef\"/><text class=\"y-tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            p.left,
            p.left + p.w,
            p.left - 6.0,
            y + 4.0,
            thousands(*t)
        );
    }
}

/// The time axis: clock times (UTC) on round steps, and what the axis spans.
fn time_axis(svg: &mut String, p: &Plot, s: &Series) {
    let bottom = p.top + p.h;
    if s.buckets == 0 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\">no requests in the journal yet</text>",
            p.left,
            bottom + 34.0
        );
        return;
    }
    // Bucket i is drawn at its start time, the last one at the right edge.
    let end_ms = s.start_ms + (s.buckets.max(2) as i64 - 1) * s.bucket_ms;
    let x = |t: i64| p.left + (t - s.start_ms) as f64 / (end_ms - s.start_ms) as f64 * p.w;
    let (_, ticks) = time_ticks(s.start_ms, end_ms, 8);
    for (t, label) in &ticks {
        let xt = x(*t);
        let _ = write!(
            svg,
            "<line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#eef1f5\"/><line x1=\"{xt:.1}\" x2=\"{xt:.1}\" y1=\"{bottom}\" y2=\"{}\" stroke=\"#9aa3b2\"/><text class=\"x-tick\" x=\"{xt:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            p.top,
            bottom,
            bottom + 4.0,
            bottom + 16.0,
            esc(label)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\">UTC, from {} over {}</text>",
        p.left,
        bottom + 34.0,
        esc(&iso(s.start_ms)),
        esc(&span_text(end_ms - s.start_ms))
    );
}

fn chart(
    title: &str,
    lines: &[(String, Vec<u64>, &str)],
    limit: Option<u64>,
    s: &Series,
) -> String {
    let max = lines
        .iter()
        .flat_map(|(_, v, _)| v.iter().copied())
        .chain(limit)
        .max()
        .unwrap_or(0);
    let y_ticks = value_ticks(max, 5);
    let p = Plot {
        left: 64.0,
        top: 10.0,
        w: 930.0,
        h: 190.0,
        y_max: *y_ticks.last().unwrap_or(&1) as f64,
    };
    let mut svg = format!(
        "<svg viewBox=\"0 0 {} {}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        p.left + p.w + 16.0,
        p.top + p.h + 42.0,
        esc(title)
    );
    value_axis(&mut svg, &p, &y_ticks);
    time_axis(&mut svg, &p, s);
    if let Some(l) = limit {
        let y = p.y(l as f64);
        // Above the line, or below it when the line is the top of the chart.
        let label_y = if y - 4.0 < p.top + 12.0 {
            y + 13.0
        } else {
            y - 4.0
        };
        let _ = write!(svg, "<line x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{label_y:.1}\" text-anchor=\"end\" style=\"fill:#c0392b\">limit {l}/s</text>", p.left, p.left + p.w, p.left + p.w - 4.0);
    }
    for (_, v, color) in lines {
        svg.push_str(&polyline(v, &p, color));
    }
    svg.push_str("</svg>");
    let legend: String = lines
        .iter()
        .map(|(name, _, c)| format!("<span><i style=\"background:{c}\"></i>{}</span>", esc(name)))
        .collect();
    format!("<div class=\"legend\">{legend}</div>{svg}")
}

pub fn write(conn: &Connection, o: &Overview, out: &mut dyn Write) -> Result<(), ReportError> {
    let s = series(conn, 480)?;
    let mut h = String::with_capacity(1 << 16);
    header(&mut h, o);
    accounts_table(&mut h, o);
    ambiguous_note(&mut h, conn, o)?;
    rate_chart(&mut h, o, &s);
    states_chart(&mut h, &s);
    failures_table(&mut h, conn, o)?;
    timeline_list(&mut h, conn)?;
    if o.total <= FULL_TABLE_MAX {
        out.write_all(h.as_bytes())?;
        every_instance(out, conn, o)?;
    } else {
        instances_grouped(&mut h, conn, o)?;
        out.write_all(h.as_bytes())?;
        instances_not_encrypted(out, conn, o)?;
    }
    writeln!(out, "</main><script>{SCRIPT}</script></body></html>")?;
    Ok(())
}

/// The page head, who made the report from which journal, and the count cards.
fn header(h: &mut String, o: &Overview) {
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>fleetcrypt audit report</title><style>{CSS}</style></head><body><main>"
    );
    let _ = write!(
        h,
        "<h1>Storage encryption audit report</h1><div class=\"meta\">Generated {} by fleetcrypt {} from journal <code>{}</code><br>Journal chain head <code>{}</code> — <code>fleetcrypt journal verify</code> re-checks every event against it.</div>",
        esc(&o.generated_at),
        esc(o.tool_version),
        esc(&o.journal),
        esc(&o.chain_head)
    );
    let cards = [
        ("ok", "encrypted", o.counts[&State::Encrypted]),
        (
            "info",
            "already encrypted",
            o.counts[&State::AlreadyEncrypted],
        ),
        ("bad", "failed", o.counts[&State::Failed]),
        ("warn", "not finished", o.pending),
        ("", "total", o.total),
    ];
    h.push_str("<div class=\"cards\">");
    for (class, label, n) in cards {
        let _ = write!(h, "<div class=\"card {class}\"><div class=\"n\">{}</div><div class=\"l\">{label}</div></div>", thousands(n));
    }
    h.push_str("</div>");
    let done_ok = o.counts[&State::Encrypted] + o.counts[&State::AlreadyEncrypted];
    if o.total > 0 && done_ok == o.total {
        h.push_str("<p class=\"ok-note\">Every instance in the journal has storage encryption enabled, each confirmed by a DescribeDBInstanceInfo read.</p>");
    } else if o.total > 0 {
        let _ = write!(h, "<p class=\"bad-note\">{} of {} instances are not confirmed encrypted; see the failures below.</p>", thousands(o.total - done_ok), thousands(o.total));
    }
}

/// Several accounts in one run (issue 12): each one's instances, on its own quota.
fn accounts_table(h: &mut String, o: &Overview) {
    if o.accounts.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Accounts ({})</h2><div class=\"panel\"><p class=\"meta\">Each account (a tccli profile) signed its own requests and had its own rate limit.</p>",
        o.accounts.len()
    );
    tally_table(
        h,
        "account",
        o.accounts
            .iter()
            .map(|(a, t)| (esc(super::data::account_name(a.as_deref())), *t)),
    );
    h.push_str("</div>");
}

/// How many Open answers were ambiguous, and how each was settled.
fn ambiguous_note(h: &mut String, conn: &Connection, o: &Overview) -> Result<(), ReportError> {
    let ambiguous = read::ambiguous_answers(conn)?;
    let n: u64 = ambiguous.iter().map(|(_, n)| n).sum();
    let codes: Vec<String> = ambiguous
        .iter()
        .map(|(c, n)| format!("<code>{}</code> ×{n}", esc(c)))
        .collect();
    let _ = write!(
        h,
        "<p>{n} ambiguous answer(s) to OpenDBInstanceEncryption were each verified with DescribeDBInstanceInfo before anything was re-sent: a YES at any time ended the attempt, and a NO counted only once the attempt had settled (--settle after it was sent, the longest the server may still work on a call after the client gave up; after a restart, a fresh window), never an answer other than exactly YES or NO{}</p>",
        if codes.is_empty() { ".".to_string() } else { format!(": {}.", codes.join(", ")) }
    );
    verification_note(h, o);
    Ok(())
}

/// How the `DescribeDBInstanceInfo` quota went: reads per instance, polls, delay to YES.
fn verification_note(h: &mut String, o: &Overview) {
    let v = &o.verification;
    let _ = write!(
        h,
        "<p>{} DescribeDBInstanceInfo reads for {} instances ({:.2} per instance; the preflight and one verification make 2); {} ({:.1} % of that quota) were polls of an attempt that did not show YES yet.",
        v.reads,
        o.total,
        v.reads_per_instance(o.total),
        v.polls,
        100.0 * v.poll_share()
    );
    for (e, d) in &v.delay_to_yes {
        let _ = write!(
            h,
            " At <code>{}</code>, an accepted Open showed YES {:.1} s after it was sent (median of {}; p90 {:.1} s).",
            esc(e),
            d.p50_ms as f64 / 1000.0,
            d.n,
            d.p90_ms as f64 / 1000.0
        );
    }
    h.push_str("</p>");
}

/// Requests per second per action, against the limit.
fn rate_chart(h: &mut String, o: &Overview, s: &Series) {
    let limit = o.limit_per_s.map(|l| l.max(0) as u64);
    let lines: Vec<(String, Vec<u64>, &str)> = s
        .requests
        .iter()
        .enumerate()
        .map(|(i, (a, v))| (a.clone(), v.clone(), COLORS[i % COLORS.len()]))
        .collect();
    let _ = write!(
        h,
        "<h2>Requests per second against the limit</h2><div class=\"panel\">"
    );
    let window: Vec<String> = o
        .max_window
        .iter()
        .map(|(a, n)| format!("{} <b>{n}</b>", esc(a)))
        .collect();
    let _ = write!(
        h,
        "<div class=\"meta\">Busiest sliding second per action (from the journal's send times, per endpoint and account): {}. Limit: {} per action and endpoint, for each account.</div>",
        if window.is_empty() { "none".to_string() } else { window.join(", ") },
        limit.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
    );
    h.push_str(&chart("requests per second", &lines, limit, s));
    h.push_str("</div>");
}

/// Instances reaching a final state over time.
fn states_chart(h: &mut String, s: &Series) {
    let state_lines: Vec<(String, Vec<u64>, &str)> = [
        ("encrypted", "#1f8a4c"),
        ("already_encrypted", "#2f6fb3"),
        ("failed", "#c0392b"),
    ]
    .iter()
    .filter_map(|(k, c)| s.reached.get(k).map(|v| (k.to_string(), v.clone(), *c)))
    .collect();
    let _ = write!(
        h,
        "<h2>Instances reaching a final state over time</h2><div class=\"panel\">{}</div>",
        chart("instances", &state_lines, None, s)
    );
}

/// Failed instances per error code, with the hint, a count and a few ids (all
/// of them are in the CSV and JSON reports).
fn failures_table(h: &mut String, conn: &Connection, o: &Overview) -> Result<(), ReportError> {
    h.push_str("<h2>Failures by error code</h2>");
    let failures = read::failures_by_code(conn)?;
    if failures.is_empty() {
        h.push_str("<div class=\"panel\">No failures.</div>");
        return Ok(());
    }
    h.push_str("<div class=\"panel table-box\"><table class=\"failures\"><thead><tr><th>error code</th><th class=\"num\">instances</th><th>last message and hint</th><th>instances</th></tr></thead><tbody>");
    let mut cut = false;
    for read::FailureGroup {
        code,
        count: n,
        instances: ids,
        message: msg,
    } in &failures
    {
        let shown = ids.len().min(FAILURE_EXAMPLES);
        let more = if ids.len() > shown {
            cut = true;
            format!(" and {} more", thousands((ids.len() - shown) as u64))
        } else {
            String::new()
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td>{}{}</td><td>{}{more}</td></tr>",
            esc(code),
            thousands(*n),
            esc(msg),
            hint(code).map(|x| format!("<br><i>Hint: {}</i>", esc(x))).unwrap_or_default(),
            esc(&ids[..shown].join(", "))
        );
    }
    h.push_str("</tbody></table>");
    if cut {
        let _ = write!(
            h,
            "<p class=\"meta\">Every failed instance, with its error, is in the CSV report: <code>{}</code></p>",
            esc(&full_list_command(o))
        );
    }
    h.push_str("</div>");
    Ok(())
}

fn timeline_list(h: &mut String, conn: &Connection) -> Result<(), ReportError> {
    h.push_str("<h2>Timeline (UTC)</h2><div class=\"panel\"><ul class=\"timeline\">");
    for (t, what) in timeline(conn)? {
        let _ = write!(h, "<li><code>{}</code> — {}</li>", esc(&iso(t)), esc(&what));
    }
    h.push_str("</ul></div>");

    Ok(())
}

/// The command that writes every instance, one row each.
fn full_list_command(o: &Overview) -> String {
    format!(
        "fleetcrypt --journal {} report --format csv -o instances.csv",
        shell_quote(&o.journal)
    )
}

/// A word the shell takes as it is: plain paths bare, anything else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Fixed column widths: the table is as wide as its box whatever the text in
/// it (a long value wraps inside its cell), and the browser lays it out from
/// the first row. Below 900 px the box scrolls sideways instead.
const INSTANCE_HEAD: &str = "<colgroup><col style=\"width:10%\"><col style=\"width:10%\"><col style=\"width:9%\"><col style=\"width:12%\"><col style=\"width:7%\"><col style=\"width:12%\"><col style=\"width:16%\"><col style=\"width:11%\"><col style=\"width:13%\"></colgroup><thead><tr><th>instance</th><th>region</th><th>key</th><th>state</th><th class=\"num\">attempts</th><th>last RequestId</th><th>last error</th><th>verified at</th><th>labels</th></tr></thead>";

/// Up to [`FULL_TABLE_MAX`] instances: every one, with search and sort.
fn every_instance(out: &mut dyn Write, conn: &Connection, o: &Overview) -> Result<(), ReportError> {
    write!(
        out,
        "<h2>Instances ({})</h2><div class=\"panel table-box\">{SEARCH}<table id=\"instances\" class=\"instances\">{INSTANCE_HEAD}<tbody>",
        thousands(o.total)
    )?;
    read::for_each_instance(conn, |r| instance_row(out, &r))??;
    write!(out, "</tbody></table></div>")?;
    Ok(())
}

const SEARCH: &str = "<input type=\"search\" id=\"q\" placeholder=\"Filter by id, region, state, error, label…\" aria-label=\"filter instances\">";

/// Above [`FULL_TABLE_MAX`] instances: counts per region and label, and where the full list is.
fn instances_grouped(h: &mut String, conn: &Connection, o: &Overview) -> Result<(), ReportError> {
    let _ = write!(
        h,
        "<h2>Instances ({})</h2><div class=\"panel\"><p class=\"large-note\">This journal holds {} instances, more than the {} this page lists one by one: it counts them per region and label below and lists only those not confirmed encrypted, so it opens quickly. The full list, one row per instance, is in the CSV and JSON reports:</p><pre class=\"cmd\"><code>{}</code></pre>",
        thousands(o.total),
        thousands(o.total),
        thousands(FULL_TABLE_MAX),
        esc(&full_list_command(o))
    );
    let regions = by_region(conn)?;
    tally_table(h, "region", regions.iter().map(|(r, t)| (esc(r), *t)));
    let labels = by_label(conn, LABEL_VALUES_MAX)?;
    if !labels.grouped.is_empty() {
        tally_table(
            h,
            "label",
            labels
                .grouped
                .iter()
                .map(|(k, v, t)| (format!("{}={}", esc(k), esc(v)), *t)),
        );
    }
    if !labels.too_many_values.is_empty() {
        let names: Vec<String> = labels
            .too_many_values
            .iter()
            .map(|(k, n)| format!("<code>{}</code> ({} values)", esc(k), thousands(*n as u64)))
            .collect();
        let _ = write!(
            h,
            "<p class=\"meta\">Not counted per value (more than {LABEL_VALUES_MAX} values): {}.</p>",
            names.join(", ")
        );
    }
    h.push_str("</div>");
    Ok(())
}

/// One row per group (already escaped): its instances per kind of outcome.
fn tally_table(h: &mut String, what: &str, rows: impl Iterator<Item = (String, Tally)>) {
    let _ = write!(
        h,
        "<div class=\"table-box\"><table class=\"tally\"><thead><tr><th>{what}</th><th class=\"num\">encrypted</th><th class=\"num\">already encrypted</th><th class=\"num\">failed</th><th class=\"num\">not finished</th><th class=\"num\">total</th></tr></thead><tbody>"
    );
    for (name, t) in rows {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            thousands(t.encrypted),
            thousands(t.already_encrypted),
            thousands(t.failed),
            thousands(t.pending),
            thousands(t.total())
        );
    }
    h.push_str("</tbody></table></div>");
}

/// Above [`FULL_TABLE_MAX`] instances: the failed and unfinished ones, up to
/// [`ATTENTION_ROWS_MAX`], with search and sort.
fn instances_not_encrypted(
    out: &mut dyn Write,
    conn: &Connection,
    o: &Overview,
) -> Result<(), ReportError> {
    let not_encrypted = o.counts[&State::Failed] + o.pending;
    write!(
        out,
        "<h2>Instances not confirmed encrypted ({})</h2><div class=\"panel table-box\">",
        thousands(not_encrypted)
    )?;
    if not_encrypted == 0 {
        write!(out, "None: every instance is confirmed encrypted.</div>")?;
        return Ok(());
    }
    write!(
        out,
        "{SEARCH}<table id=\"instances\" class=\"instances\">{INSTANCE_HEAD}<tbody>"
    )?;
    let mut listed = 0;
    read::for_each_instance(conn, |r| {
        if listed >= ATTENTION_ROWS_MAX
            || matches!(r.state, State::Encrypted | State::AlreadyEncrypted)
        {
            return Ok(());
        }
        listed += 1;
        instance_row(out, &r)
    })??;
    write!(out, "</tbody></table>")?;
    if not_encrypted > listed as u64 {
        write!(
            out,
            "<p class=\"more\">The first {} are listed, and {} more are not: every instance is in the CSV report (<code>{}</code>).</p>",
            thousands(listed as u64),
            thousands(not_encrypted - listed as u64),
            esc(&full_list_command(o))
        )?;
    }
    write!(out, "</div>")?;
    Ok(())
}

fn instance_row(out: &mut dyn Write, r: &InstanceRow) -> std::io::Result<()> {
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&r.labels).unwrap_or_default();
    let labels: Vec<String> = r
        .account
        .iter()
        .map(|a| format!("account={}", esc(a)))
        .chain(
            labels
                .iter()
                .map(|(k, v)| format!("{}={}", esc(k), esc(v.as_str().unwrap_or("")))),
        )
        .collect();
    let key = match (&r.key_id, &r.key_region) {
        (Some(k), Some(kr)) => format!("{} ({})", esc(k), esc(kr)),
        _ => "default".into(),
    };
    let err = match (&r.last_error_code, &r.last_error_message) {
        (Some(c), Some(m)) => format!("<code>{}</code> {}", esc(c), esc(m)),
        (Some(c), None) => format!("<code>{}</code>", esc(c)),
        _ => String::new(),
    };
    // The date and the time may go on two lines.
    let verified = r
        .verified_at_ms
        .map(|t| iso(t).replacen('T', "T<wbr>", 1))
        .unwrap_or_default();
    write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><span class=\"state s-{}\">{}</span></td><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.instance_id.as_str()),
            esc(&r.region),
            key,
            r.state.as_str(),
            r.state.as_str(),
            r.attempts,
            esc(r.last_request_id.as_deref().unwrap_or("")),
            err,
            verified,
            labels.join("<br>")
        )
}

#[cfg(test)]
mod tests {
    use super::{esc, shell_quote, thousands};

    #[test]
    fn numbers_and_commands_read_plainly() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(shell_quote("/var/lib/fleet/j.db"), "/var/lib/fleet/j.db");
        assert_eq!(shell_quote("my fleet/it's.db"), r"'my fleet/it'\''s.db'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }
}
