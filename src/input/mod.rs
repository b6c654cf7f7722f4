//! Input files (SPEC §4): a CSV with a header row, or a plain instance list.
//! Every problem is collected and reported at once with `file:line`, and a file
//! with any problem yields no instances at all, so nothing is ever sent for
//! half a file.
//!
//! Large files are never held in memory: [`validate`] streams the file once and
//! keeps only a duplicate index (a valid id packs exactly into a `u64`), then
//! [`Validated::read_chunks`] streams the unique rows again in chunks, for the
//! journal to import. Standard input is spooled to a temporary file for the
//! second pass.

mod regions;

use std::fmt;
use std::io::{BufRead, BufReader, Read};

pub use regions::{is_known_region, KNOWN_REGIONS};

use crate::model::InstanceId;
pub use crate::model::InstanceSpec;

/// Values for rows that leave a column empty (`--region`, `--key-id`, `--key-region`).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub region: Option<String>,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
}

/// One problem in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: u64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // The file as a whole (cannot open or read it): no line to name.
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// All the problems of a file; a file with any problem is rejected whole.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InputError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{n} problem{} in the input; nothing was sent:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i == 50 {
                writeln!(f, "  … and {} more", n - 50)?;
                break;
            }
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Where the rows come from, readable twice.
enum Source {
    Path(std::path::PathBuf),
    Spooled(tempfile::NamedTempFile),
    Bytes(Vec<u8>),
}

/// A file that passed validation: its duplicate index and a way to read it again.
pub struct Validated {
    name: String,
    source: Source,
    defaults: Defaults,
    /// (id key, first line, attributes hash), sorted by id key, one entry per instance.
    keep: Vec<Entry>,
}

/// (id key, line, hash of Region/KeyId/KeyRegion): 24 bytes a row, the whole index.
type Entry = (u64, u64, u64);

impl std::fmt::Debug for Validated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Validated({}, {} instances)", self.name, self.keep.len())
    }
}

impl Validated {
    /// Unique instances in the file.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Streams the unique rows (exact duplicates merged into their first line) in
    /// chunks of `size`, in file order.
    pub fn read_chunks(
        &self,
        size: usize,
        mut f: impl FnMut(Vec<InstanceSpec>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let reader: Box<dyn Read> = match &self.source {
            Source::Path(p) => Box::new(std::fs::File::open(p)?),
            Source::Spooled(t) => Box::new(t.reopen()?),
            Source::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        };
        let mut c = Collector::new(&self.name, &self.defaults);
        c.sink = Sink::Emit {
            keep: &self.keep,
            chunk: Vec::with_capacity(size.min(1 << 16)),
            size: size.max(1),
            flush: &mut f,
            error: None,
        };
        c.read_all(reader);
        if let Sink::Emit {
            chunk,
            flush,
            error,
            ..
        } = c.sink
        {
            if let Some(e) = error {
                return Err(e);
            }
            if !chunk.is_empty() {
                flush(chunk)?;
            }
        }
        Ok(())
    }

    /// Every unique row at once (small inputs: the demo, the emulator's fleet).
    pub fn collect(&self) -> std::io::Result<Vec<InstanceSpec>> {
        let mut all = Vec::with_capacity(self.len());
        self.read_chunks(1 << 16, |chunk| {
            all.extend(chunk);
            Ok(())
        })?;
        Ok(all)
    }
}

fn open_problem(file: &str, e: impl std::fmt::Display) -> InputError {
    InputError {
        problems: vec![Problem {
            file: file.to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        }],
    }
}

/// Checks `path` (`-` for standard input) in one streaming pass.
pub fn validate(path: &str, defaults: &Defaults) -> Result<Validated, InputError> {
    if path == "-" {
        let spool = tempfile::NamedTempFile::new().map_err(|e| open_problem("<stdin>", e))?;
        let tee = Tee {
            inner: std::io::stdin().lock(),
            copy: spool.reopen().map_err(|e| open_problem("<stdin>", e))?,
        };
        return check("<stdin>", tee, Source::Spooled(spool), defaults);
    }
    let file = std::fs::File::open(path).map_err(|e| InputError {
        problems: vec![Problem {
            file: path.to_string(),
            line: 0,
            message: format!("cannot open: {e}"),
        }],
    })?;
    check(path, file, Source::Path(path.into()), defaults)
}

/// Reads all of `path` (`-` for standard input): for inputs that fit in memory.
pub fn load(path: &str, defaults: &Defaults) -> Result<Vec<InstanceSpec>, InputError> {
    let v = validate(path, defaults)?;
    v.collect().map_err(|e| open_problem(path, e))
}

/// Parses an in-memory input named `name` in messages.
pub fn parse(
    name: &str,
    mut reader: impl Read,
    defaults: &Defaults,
) -> Result<Vec<InstanceSpec>, InputError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| open_problem(name, e))?;
    let v = check(
        name,
        bytes.as_slice(),
        Source::Bytes(bytes.clone()),
        defaults,
    )?;
    v.collect().map_err(|e| open_problem(name, e))
}

fn check(
    name: &str,
    reader: impl Read,
    source: Source,
    defaults: &Defaults,
) -> Result<Validated, InputError> {
    let mut c = Collector::new(name, defaults);
    c.read_all(reader);
    let Sink::Check { seen: mut rows } = c.sink else {
        unreachable!("a checking collector")
    };
    let mut problems = c.problems;
    // Duplicates: sort by (id, line); the first line of each id is kept, a later line with
    // the same attributes is merged, one with different attributes is a problem.
    rows.sort_unstable();
    let mut i = 0;
    while i < rows.len() {
        let first = rows[i];
        let mut j = i + 1;
        while j < rows.len() && rows[j].0 == first.0 {
            if rows[j].2 != first.2 {
                problems.push(Problem {
                    file: name.to_string(),
                    line: rows[j].1,
                    message: format!(
                        "duplicate InstanceId cdb-{} conflicts with line {} (different Region, KeyId or KeyRegion)",
                        String::from_utf8_lossy(&first.0.to_be_bytes()),
                        first.1
                    ),
                });
            }
            j += 1;
        }
        i = j;
    }
    rows.dedup_by_key(|e| e.0);
    rows.shrink_to_fit();
    let seen = rows;
    if problems.is_empty() && seen.is_empty() {
        problems.push(Problem {
            file: name.to_string(),
            line: 1,
            message: "no instances in the input".into(),
        });
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(InputError { problems });
    }
    Ok(Validated {
        name: name.to_string(),
        source,
        defaults: defaults.clone(),
        keep: seen,
    })
}

/// Copies what is read from `inner` into `copy` (stdin's spool for the second pass).
struct Tee<R> {
    inner: R,
    copy: std::fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.copy, &buf[..n])?;
        Ok(n)
    }
}

fn attrs_hash(spec: &InstanceSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&spec.region, &spec.key_id, &spec.key_region).hash(&mut h);
    h.finish()
}

/// Streams bytes with every `\r` that precedes a `\n` removed.
struct StripCr<R> {
    inner: R,
    raw: Box<[u8]>,
    ready: Vec<u8>,
    pos: usize,
    pending_cr: bool,
}

impl<R: Read> StripCr<R> {
    fn new(inner: R) -> Self {
        StripCr {
            inner,
            raw: vec![0; 1 << 16].into_boxed_slice(),
            ready: Vec::with_capacity(1 << 16),
            pos: 0,
            pending_cr: false,
        }
    }
}

impl<R: Read> Read for StripCr<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.ready.len() {
            self.ready.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                if !self.pending_cr {
                    return Ok(0);
                }
                self.pending_cr = false;
                self.ready.push(b'\r');
                break;
            }
            for &b in &self.raw[..n] {
                if self.pending_cr {
                    self.pending_cr = false;
                    if b != b'\n' {
                        self.ready.push(b'\r');
                    }
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    self.ready.push(b);
                }
            }
        }
        let k = out.len().min(self.ready.len() - self.pos);
        out[..k].copy_from_slice(&self.ready[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// A file is CSV when its first meaningful line names the `InstanceId` column.
fn sniff_csv(reader: &mut BufReader<impl Read>) -> std::io::Result<bool> {
    let buf = reader.fill_buf()?;
    let text = String::from_utf8_lossy(buf);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        return Ok(line.split(',').any(|f| {
            f.trim()
                .trim_matches('"')
                .eq_ignore_ascii_case("instanceid")
        }));
    }
    Ok(false)
}

/// What happens to a good row: pass 1 indexes it, pass 2 emits it.
enum Sink<'a> {
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

struct Collector<'a> {
    file: String,
    problems: Vec<Problem>,
    defaults: &'a Defaults,
    sink: Sink<'a>,
}

impl<'a> Collector<'a> {
    fn new(file: &str, defaults: &'a Defaults) -> Self {
        Collector {
            file: file.to_string(),
            problems: Vec::new(),
            defaults,
            sink: Sink::Check { seen: Vec::new() },
        }
    }

    fn read_all(&mut self, reader: impl Read) {
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
            Sink::Check { seen } => seen.push((key, line, attrs_hash(&spec))),
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
    fn row(
        &mut self,
        line: u64,
        id: &str,
        region: &str,
        key_id: &str,
        key_region: &str,
        labels: Vec<(String, String)>,
    ) {
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
        match &region {
            None => {
                self.problem(
                    line,
                    format!(
                        "{id}: no region (give a Region column, --region, or TENCENTCLOUD_REGION)"
                    ),
                );
                ok = false;
            }
            Some(r) if !is_known_region(r) => {
                self.problem(line, format!("{id}: unknown region {r:?}"));
                ok = false;
            }
            _ => {}
        }
        match (&key_id, &key_region) {
            (Some(k), None) => {
                self.problem(
                    line,
                    format!("{id}: KeyId {k} is given without a KeyRegion"),
                );
                ok = false;
            }
            (None, Some(_)) => {
                self.problem(line, format!("{id}: KeyRegion is given without a KeyId"));
                ok = false;
            }
            (Some(k), Some(kr)) => {
                if k.chars().any(char::is_whitespace) || k.len() > 128 {
                    self.problem(line, format!("{id}: KeyId {k:?} is not a key id"));
                    ok = false;
                }
                if !is_known_region(kr) {
                    self.problem(line, format!("{id}: unknown KeyRegion {kr:?}"));
                    ok = false;
                }
            }
            (None, None) => {}
        }
        if let (true, Ok(id)) = (ok, parsed) {
            self.accept(InstanceSpec {
                id,
                region: region.unwrap_or_default(),
                key_id,
                key_region,
                labels,
                line,
            });
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
        let known = [Some(id_col), region_col, key_col, key_region_col];
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
                    let (id, region, key, key_region) = (
                        get(Some(id_col)).to_string(),
                        get(region_col).to_string(),
                        get(key_col).to_string(),
                        get(key_region_col).to_string(),
                    );
                    self.row(line, &id, &region, &key, &key_region, labels);
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
            self.row(n, id, region, "", "", Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Vec<InstanceSpec>, InputError> {
        parse("fleet.csv", s.as_bytes(), &Defaults::default())
    }

    #[test]
    fn csv_with_bom_crlf_any_case_and_labels() {
        let s = "\u{feff}Team,instanceid,REGION,KeyId,keyregion\r\nblue,cdb-abcd1234,ap-guangzhou,,\r\nred,cdb-efgh5678,ap-shanghai,23e80852-1e38-11e9-b129-5cb9019b4b01,ap-shanghai\r\n";
        let v = parse_str(s).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "cdb-abcd1234");
        assert_eq!(v[0].region, "ap-guangzhou");
        assert_eq!(v[0].key_id, None);
        assert_eq!(v[0].labels, vec![("Team".to_string(), "blue".to_string())]);
        assert_eq!((v[0].line, v[1].line), (2, 3), "{v:?}");
        assert_eq!(v[1].key_region.as_deref(), Some("ap-shanghai"));
        assert_eq!(v[1].line, 3);
    }

    #[test]
    fn list_with_comments_and_regions() {
        let s = "# fleet\n\ncdb-abcd1234 ap-guangzhou\n  cdb-efgh5678   ap-tokyo # tokyo one\n";
        let v = parse("list.txt", s.as_bytes(), &Defaults::default()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].region, "ap-tokyo");
        assert_eq!(v[1].line, 4);
    }

    #[test]
    fn defaults_fill_empty_cells() {
        let d = Defaults {
            region: Some("ap-beijing".into()),
            key_id: None,
            key_region: None,
        };
        let v = parse("l", "cdb-abcd1234\n".as_bytes(), &d).unwrap();
        assert_eq!(v[0].region, "ap-beijing");
    }

    #[test]
    fn all_problems_at_once_with_lines() {
        let s = "InstanceId,Region,KeyId,KeyRegion\n\
                 cdb-ABCD1234,ap-guangzhou,,\n\
                 cdb-abcd1234,ap-nowhere,,\n\
                 cdb-efgh5678,ap-guangzhou,key-1,\n\
                 cdb-ijkl9012,ap-guangzhou,,\n\
                 cdb-ijkl9012,ap-shanghai,,\n\
                 cdbro-mnop3456,ap-guangzhou,,\n\
                 cdb-qrst7890,ap-guangzhou\n";
        let err = parse_str(s).unwrap_err();
        let text = err.to_string();
        let lines: Vec<u64> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 6, 7, 8], "{text}");
        assert!(
            text.contains("fleet.csv:2: InstanceId \"cdb-ABCD1234\""),
            "{text}"
        );
        assert!(
            text.contains("fleet.csv:3: cdb-abcd1234: unknown region \"ap-nowhere\""),
            "{text}"
        );
        assert!(
            text.contains("fleet.csv:4: cdb-efgh5678: KeyId key-1 is given without a KeyRegion"),
            "{text}"
        );
        assert!(
            text.contains("fleet.csv:6: duplicate InstanceId cdb-ijkl9012 conflicts with line 5"),
            "{text}"
        );
        assert!(text.contains("read-only"), "{text}");
        assert!(text.contains("fleet.csv:8: expected 4 fields"), "{text}");
        assert!(text.contains("nothing was sent"), "{text}");
    }

    #[test]
    fn exact_duplicates_are_merged() {
        let s = "InstanceId,Region\ncdb-abcd1234,ap-guangzhou\ncdb-abcd1234,ap-guangzhou\n";
        let v = parse_str(s).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].line, 2);
    }

    #[test]
    fn empty_inputs_are_errors() {
        assert!(parse_str("").is_err());
        assert!(parse_str("InstanceId,Region\n").is_err());
        assert!(parse_str("# only a comment\n").is_err());
        let e = parse_str("Region,Name\nap-guangzhou,x\n");
        // No InstanceId column: read as a list, whose first word is not an id.
        assert!(e.is_err());
    }

    #[test]
    fn missing_region_is_reported() {
        let err = parse_str("InstanceId\ncdb-abcd1234\n").unwrap_err();
        assert!(err.to_string().contains("no region"), "{err}");
    }

    #[test]
    fn strip_cr_across_chunk_boundaries() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || out.is_empty() {
                    return Ok(0);
                }
                out[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut s = String::new();
        StripCr::new(OneByte(b"a\r\nb\rc\r"))
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "a\nb\rc\r");
    }

    proptest::proptest! {
        /// Whatever bytes arrive, parsing never panics, and good rows keep their line numbers.
        #[test]
        fn parse_never_panics(s in ".{0,400}") {
            let _ = parse_str(&s);
            let _ = parse("l", s.as_bytes(), &Defaults::default());
        }
    }
}
