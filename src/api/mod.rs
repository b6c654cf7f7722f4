//! The Tencent Cloud API 3.0 client: a leaf module that knows nothing of the
//! journal or the runner.

pub mod cdb;
pub mod classify;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod kms;
pub mod sign;
mod transport;

pub use classify::{classify, CallKind, Failure, Outcome};
pub use client::{Answer, Called, Client, ClientOptions, Gate};
pub use credentials::{Credentials, Secret};
pub use endpoint::{Endpoint, EndpointPolicy, Service};
