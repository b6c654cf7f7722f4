//! A local stand-in for the CDB and KMS APIs (SPEC §5): real wire format,
//! verified signatures, per-quota rate limits, latency, fault injection, and a
//! ground-truth view at `GET /__emulator/state`. It reuses `api::sign` to verify
//! and keeps its own world; the runner never knows it talks to it.

mod config;
mod server;
mod world;

pub use config::{BadAnswer, BadAnswerKind, EmulatorConfig, Faults, Latency};
pub use server::Emulator;
pub use world::{Generate, GroundTruth, Instance, World};
