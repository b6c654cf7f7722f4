//! The Tencent Cloud API 3.0 client: a leaf module that knows nothing of the
//! journal or the runner.

pub mod cdb;
mod classify;
mod client;
pub(crate) mod credentials;
mod endpoint;
pub mod kms;
pub mod sign;
mod stamp;
mod transport;

pub use classify::{after_settled_no, classify, stops_run, CallKind, Failure, Outcome};
pub use client::{parse_envelope, Answer, Called, Client, ClientOptions, Gate};
pub use credentials::{Credentials, Secret};
pub use endpoint::{Endpoint, EndpointError, EndpointPolicy, Service};
