//! The two passes over an input: `validate` streams the file once and keeps
//! only a duplicate index; `Validated::read_chunks` streams the unique rows
//! again, in chunks, for the journal to import.

use std::io::Read;

use super::bytes::Tee;
use super::collector::{Collector, Sink};
use super::problem::{open_problem, InputError, Problem};
use crate::model::InstanceSpec;

/// Values for rows that leave a column empty (`--region`, `--key-id`,
/// `--key-region`), and which column names the account.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub region: Option<String>,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    /// `--account-column NAME`: the column that names each row's tccli
    /// profile (it must be in the header). `None`: an `Account` column, if any.
    pub account_column: Option<String>,
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
    /// The accounts the rows name (tccli profiles), each once.
    accounts: std::collections::BTreeSet<String>,
    /// Some row names no account (it uses the run's own credentials).
    unnamed: bool,
}

/// (id key, line, hash of Region/KeyId/KeyRegion/Account): 24 bytes a row, the whole index.
pub(super) type Entry = (u64, u64, u64);

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

    /// The accounts (tccli profiles) the rows name, in name order.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(String::as_str)
    }

    /// Whether some row names no account: the run's own credentials work on it.
    pub fn has_unnamed(&self) -> bool {
        self.unnamed
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

/// Validates an in-memory input (tests): panics on a problem.
#[cfg(test)]
pub(super) fn validate_bytes(s: &str, defaults: &Defaults) -> Validated {
    let bytes = s.as_bytes().to_vec();
    check(
        "test",
        bytes.as_slice(),
        Source::Bytes(bytes.clone()),
        defaults,
    )
    .unwrap()
}

fn check(
    name: &str,
    reader: impl Read,
    source: Source,
    defaults: &Defaults,
) -> Result<Validated, InputError> {
    let mut c = Collector::new(name, defaults);
    c.read_all(reader);
    let (accounts, unnamed) = (std::mem::take(&mut c.accounts), c.unnamed);
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
                        "duplicate InstanceId cdb-{} conflicts with line {} (different Region, KeyId, KeyRegion or Account)",
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
        accounts,
        unnamed,
    })
}

pub(super) fn attrs_hash(spec: &InstanceSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&spec.region, &spec.key_id, &spec.key_region, &spec.account).hash(&mut h);
    h.finish()
}
