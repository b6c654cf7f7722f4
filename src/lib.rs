//! # fleetcrypt
//!
//! Turns on storage encryption (TDE) for a fleet of TencentDB for MySQL
//! instances, at the fastest pace the API allows, and proves afterwards what it
//! did. The data path reads straight down:
//! `input → journal → runner (api) → journal → report`.
//!
//! # Layout
//! - [`api`]: TC3 signing, credentials, the HTTP client, error classification,
//!   typed CDB/KMS models. A leaf: it knows nothing of the journal.
//! - [`emulator`]: a local stand-in for the CDB and KMS APIs (wire format,
//!   signatures, rate limits, latency, faults) with a ground-truth view.
pub mod api;
pub mod cli;
pub mod emulator;
pub mod input;
pub mod journal;
pub mod model;
pub mod report;
pub mod runner;
