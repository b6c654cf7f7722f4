//! # fleetcrypt
//!
//! Turns on storage encryption (TDE) for a fleet of TencentDB for MySQL
//! instances, at the fastest pace the API allows, and proves afterwards what it
//! did. The data path reads straight down:
//! `input → journal → runner (api) → journal → report`.
//!
//! # Layout
//! - [`model`]: the shared vocabulary at the bottom: `InstanceId`, the
//!   instance `State`s, the journal's `EventKind`s, how an Open ended
//!   (`Disposition`), the API `Action`s, fleetcrypt's own error codes with the
//!   operator hint for every code, and the sliding-window statistic. Uses no
//!   other part.
//! - [`input`]: the CSV or instance list, validated whole with `file:line`
//!   for every problem, streamed so a million rows never sit in memory.
//! - [`api`]: TC3-HMAC-SHA256 signing, credentials (secrets that never print),
//!   the HTTP/1.1 transport and client, the one `classify` table that turns an
//!   answer into a decision, typed CDB/KMS models. A leaf: it knows nothing of
//!   the journal.
//! - [`journal`]: the SQLite write-ahead journal: instances and their states,
//!   the pure transition function, one writer thread that commits each fact
//!   (and the attempt *before* its request leaves), an append-only hash-chained
//!   event log, migrations, and the reads `status` and reports use. Records
//!   facts, calls nothing.
//! - [`runner`]: the dispatcher that owns every decision (what is due, which
//!   bucket has quota), the per-instance steps that carry out SPEC §1 (verify
//!   before re-sending, settle windows on the monotonic clock), the strict
//!   sliding-window limiters, retry backoff and shutdown.
//! - [`report`]: CSV, JSON, Markdown and HTML audit reports, read from the
//!   journal alone.
//! - [`emulator`]: a local stand-in for the CDB and KMS APIs (wire format,
//!   verified signatures, rate limits, latency, faults) with a ground-truth
//!   view, for the demo, the tests and the benchmarks.
//! - [`cli`]: flags into validated configs, the one job driver behind `run`,
//!   `resume`, `plan` and `demo`, the smaller commands, and the one place an
//!   ending becomes an exit code (SPEC §3). The only part that maps one part's
//!   types to another's.
//!
//! `tests/architecture.rs` checks from the source that each part uses only the
//! parts listed here.

pub mod api;
pub mod cli;
pub mod emulator;
pub mod input;
pub mod journal;
pub mod model;
pub mod report;
pub mod runner;
