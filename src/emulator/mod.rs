//! A local stand-in for the CDB and KMS APIs (SPEC §5): real wire format,
//! verified signatures, per-quota rate limits, latency, fault injection, and a
//! ground-truth view at `GET /__emulator/state`. It reuses `api::sign` to verify
//! and keeps its own world; the runner never knows it talks to it.
//!
//! # Layout
//! - `server`: start, stop, the router, and the state shared under one lock.
//! - `request`: one request from arrival to answer, and the rate limit.
//! - `auth`: the Authorization header, the token and the TC3 signature.
//! - `reads` and `open`: the actions; `open` also injects the Open's faults.
//! - `account`: the account-wide answers behind the seed's preconditions
//!   (KMS on per region, the CDB service role's policy).
//! - `bad_answers`: malformed and misleading answers, by kind.
//! - `wire`: the JSON envelope and error body every answer uses.
//! - `config` and `world`: what to emulate, and the instances and keys.

mod account;
mod auth;
mod bad_answers;
mod config;
mod open;
mod reads;
mod request;
mod server;
mod wire;
mod world;

pub use config::{BadAnswer, BadAnswerKind, EmulatorConfig, Faults, Latency, RoleState};
pub use server::Emulator;
pub use world::{Generate, GroundTruth, Instance, World};
