//! The Tencent Cloud API 3.0 client: a leaf module that knows nothing of the
//! journal or the runner.

mod accounts;
pub mod cam;
pub mod cdb;
mod classify;
mod client;
pub(crate) mod credentials;
mod endpoint;
mod envelope;
mod gate;
pub mod kms;
pub mod sign;
mod stamp;
mod transport;

pub use accounts::Clients;
pub use classify::{after_settled_no, classify, stops_run, CallKind, Failure, Outcome};
pub use client::{http_date, Answer, Called, Client, ClientOptions};
pub use credentials::{Credentials, Secret};
pub use endpoint::{Endpoint, EndpointError, EndpointPolicy, Service};
pub use envelope::parse_envelope;
pub use gate::Gate;
