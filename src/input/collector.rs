//! The row checks: each row of a CSV or list is validated (defaults applied)
//! and either collected as a problem with its line, or kept.

use std::io::{BufRead, BufReader, Read};

use super::bytes::{sniff_csv, StripCr};
use super::problem::Problem;
use super::regions::is_known_region;
use super::validate::{attrs_hash, Defaults, Entry};
use crate::model::{InstanceId, InstanceSpec};

/// What happens to a good row: pass 1 indexes it, pass 2 emits it.
pub(super) enum Sink<'a> {
    /// Every good row's entry, in file order (duplicates resolved after the pass).
    Check { seen: Vec<Entry> },
    Emit {
        keep: &'a [Entry],
        chunk: Vec<InstanceSpec>,
        size: usize,
        flush: &'a mut dyn FnMut(Vec<InstanceSpec>) -> std::io::Result<()>,
        error: Option<std::io::Error>,
    },
}

/// One row's fields as written (before defaults and checks).
#[derive(Default)]
struct Raw<'r> {
    id: &'r str,
    region: &'r str,
    key_id: &'r str,
    key_region: &'r str,
    /// The tccli profile (empty: the run's own credentials).
    account: &'r str,
    labels: Vec<(String, String)>,
}

pub(super) struct Collector<'a> {
    file: String,
    pub(super) problems: Vec<Problem>,
    /// The accounts good rows name, and whether any row names none.
    pub(super) accounts: std::collections::BTreeSet<String>,
    pub(super) unnamed: bool,
    defaults: &'a Defaults,
    pub(super) sink: Sink<'a>,
}

impl<'a> Collector<'a> {
    pub(super) fn new(file: &str, defaults: &'a Defaults) -> Self {
        Collector {
            file: file.to_string(),
            problems: Vec::new(),
            accounts: Default::default(),
            unnamed: false,
            defaults,
            sink: Sink::Check { seen: Vec::new() },
        }
    }

    pub(super) fn read_all(&mut self, reader: impl Read) {
        // The csv crate counts CRLF lines one short; reading LF only keeps file:line exact.
        let mut reader = BufReader::with_capacity(1 << 16, StripCr::new(reader));
        if let Ok(head) = reader.fill_buf() {
            if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
                self.problem(
                    1,
                    "the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
                        .into(),
                );
                return;
            }
        }
        match sniff_csv(&mut reader) {
            Ok(true) => self.read_csv(reader),
            Ok(false) => self.read_list(reader),
            Err(e) => self.problem(0, format!("cannot read: {e}")),
        }
    }

    /// A row that passed every check.
    fn accept(&mut self, spec: InstanceSpec) {
        let key = spec.id.packed();
        let line = spec.line;
        match &mut self.sink {
            Sink::Check { seen } => {
                seen.push((key, line, attrs_hash(&spec)));
                match &spec.account {
                    Some(a) if !self.accounts.contains(a) => {
                        self.accounts.insert(a.clone());
                    }
                    Some(_) => {}
                    None => self.unnamed = true,
                }
            }
            Sink::Emit {
                keep,
                chunk,
                size,
                flush,
                error,
            } => {
                let first = keep
                    .binary_search_by_key(&key, |e| e.0)
                    .ok()
                    .map(|i| keep[i].1);
                if first == Some(line) && error.is_none() {
                    chunk.push(spec);
                    if chunk.len() >= *size {
                        if let Err(e) = flush(std::mem::take(chunk)) {
                            *error = Some(e);
                        }
                    }
                }
            }
        }
    }

    fn problem(&mut self, line: u64, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            message,
        });
    }

    /// Validates one row (defaults applied) and keeps it when it is good.
    fn row(&mut self, line: u64, raw: Raw<'_>) {
        let Raw {
            id,
            region,
            key_id,
            key_region,
            account,
            labels,
        } = raw;
        let id = id.trim();
        let mut ok = true;
        if id.is_empty() {
            self.problem(line, "InstanceId is empty".into());
            return;
        }
        let parsed = InstanceId::parse(id);
        if parsed.is_err() {
            let why = if id.starts_with("cdbro-") || id.starts_with("cdbrg-") {
                "is a read-only instance; encryption is enabled on its master (cdb-…)"
            } else {
                "is not a TencentDB for MySQL instance id (expected cdb- and 8 lower-case letters or digits)"
            };
            self.problem(line, format!("InstanceId {id:?} {why}"));
            ok = false;
        }
        // A bad id is quoted in the messages below (it may hold control characters).
        let quoted = format!("{id:?}");
        let id = if ok { id } else { quoted.as_str() };
        let pick = |v: &str, d: &Option<String>| {
            let v = v.trim();
            if v.is_empty() {
                d.clone()
            } else {
                Some(v.to_string())
            }
        };
        let region = pick(region, &self.defaults.region);
        let key_id = pick(key_id, &self.defaults.key_id);
        let key_region = pick(key_region, &self.defaults.key_region);
        ok &= self.check_region(line, id, region.as_deref());
        ok &= self.check_key(line, id, key_id.as_deref(), key_region.as_deref());
        let account = Some(account.trim()).filter(|a| !a.is_empty());
        if let Some(name) = account {
            if let Err(why) = crate::model::check_account_name(name) {
                self.problem(line, format!("{id}: Account {name:?} {why}"));
                ok = false;
            }
        }
        if let (true, Ok(id)) = (ok, parsed) {
            self.accept(InstanceSpec {
                id,
                region: region.unwrap_or_default(),
                key_id,
                key_region,
                account: account.map(str::to_string),
                labels,
                line,
            });
        }
    }

    /// Whether the row's region (after defaults) is given and known; a problem if not.
    fn check_region(&mut self, line: u64, id: &str, region: Option<&str>) -> bool {
        match region {
            None => {
                self.problem(
                    line,
                    format!(
                        "{id}: no region (give a Region column, --region, or TENCENTCLOUD_REGION)"
                    ),
                );
                false
            }
            Some(r) if !is_known_region(r) => {
                self.problem(line, format!("{id}: unknown region {r:?}"));
                false
            }
            _ => true,
        }
    }

    /// Whether the custom key (after defaults) is both given with its region, or neither.
    fn check_key(
        &mut self,
        line: u64,
        id: &str,
        key_id: Option<&str>,
        key_region: Option<&str>,
    ) -> bool {
        match (key_id, key_region) {
            (Some(k), None) => {
                self.problem(
                    line,
                    format!("{id}: KeyId {k} is given without a KeyRegion"),
                );
                false
            }
            (None, Some(_)) => {
                self.problem(line, format!("{id}: KeyRegion is given without a KeyId"));
                false
            }
            (Some(k), Some(kr)) => {
                let mut ok = true;
                if k.chars().any(char::is_whitespace) || k.len() > 128 {
                    self.problem(line, format!("{id}: KeyId {k:?} is not a key id"));
                    ok = false;
                }
                if !is_known_region(kr) {
                    self.problem(line, format!("{id}: unknown KeyRegion {kr:?}"));
                    ok = false;
                }
                ok
            }
            (None, None) => true,
        }
    }

    fn read_csv(&mut self, reader: impl Read) {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = match rdr.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                self.problem(1, format!("cannot read the header row: {e}"));
                return;
            }
        };
        let find = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
        };
        let Some(id_col) = find("instanceid") else {
            self.problem(1, "the header row has no InstanceId column".into());
            return;
        };
        let (region_col, key_col, key_region_col) =
            (find("region"), find("keyid"), find("keyregion"));
        // The account column: the one --account-column names (it must be there),
        // else an `Account` column when the file has one.
        let account_col = match &self.defaults.account_column {
            Some(name) => match find(name) {
                Some(i) => Some(i),
                None => {
                    self.problem(
                        1,
                        format!(
                            "the header row has no {name:?} column (named by --account-column)"
                        ),
                    );
                    return;
                }
            },
            None => find("account"),
        };
        if let (Some(name), Some(col)) = (&self.defaults.account_column, account_col) {
            if [Some(id_col), region_col, key_col, key_region_col].contains(&Some(col)) {
                self.problem(
                    1,
                    format!("--account-column {name:?} names a column fleetcrypt reads for something else; name the column that holds the tccli profile"),
                );
                return;
            }
        }
        let known = [
            Some(id_col),
            region_col,
            key_col,
            key_region_col,
            account_col,
        ];
        let label_cols: Vec<(usize, String)> = headers
            .iter()
            .enumerate()
            .filter(|(i, _)| !known.contains(&Some(*i)))
            .map(|(i, h)| (i, h.to_string()))
            .collect();
        let mut record = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map(|p| p.line()).unwrap_or(0);
                    if record.iter().all(str::is_empty) {
                        continue;
                    }
                    if record.len() != headers.len() {
                        self.problem(
                            line,
                            format!(
                                "expected {} fields as in the header, found {}",
                                headers.len(),
                                record.len()
                            ),
                        );
                        continue;
                    }
                    let get = |c: Option<usize>| c.and_then(|i| record.get(i)).unwrap_or("");
                    let labels = label_cols
                        .iter()
                        .map(|(i, h)| (h.clone(), record.get(*i).unwrap_or("").to_string()))
                        .collect();
                    let raw = Raw {
                        id: get(Some(id_col)),
                        region: get(region_col),
                        key_id: get(key_col),
                        key_region: get(key_region_col),
                        account: get(account_col),
                        labels,
                    };
                    self.row(line, raw);
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    self.problem(line, format!("unreadable CSV: {e}"));
                    if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                        break;
                    }
                }
            }
        }
    }

    fn read_list(&mut self, reader: BufReader<impl Read>) {
        if let Some(name) = &self.defaults.account_column {
            // Asked for an account per row, it would get the run's own
            // credentials for every row instead: say so, send nothing.
            self.problem(
                1,
                format!("--account-column {name:?} needs a CSV input with a header row; this file is an instance list (one id per line)"),
            );
            return;
        }
        let mut first_line_seen: Option<u64> = None;
        for (i, line) in reader.lines().enumerate() {
            let n = i as u64 + 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    self.problem(n, format!("unreadable line: {e}"));
                    break;
                }
            };
            let line = if n == 1 {
                line.trim_start_matches('\u{feff}').to_string()
            } else {
                line
            };
            let text = line.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            if first_line_seen.is_none() && (text.contains(',') || text.contains(';')) {
                // A list line never holds a comma: this is a CSV header without the column.
                self.problem(
                    n,
                    format!("this looks like a CSV header but has no InstanceId column: {text:?}"),
                );
                return;
            }
            first_line_seen = Some(n);
            let mut words = text.split_whitespace();
            let id = words.next().unwrap_or("");
            let region = words.next().unwrap_or("");
            if let Some(extra) = words.next() {
                self.problem(n, format!("unexpected {extra:?} after the id and region"));
                continue;
            }
            self.row(
                n,
                Raw {
                    id,
                    region,
                    ..Raw::default()
                },
            );
        }
    }
}
