//! The client's side of the rate limit: a [`Gate`] admits each request onto
//! the wire and hears when it really left.

use std::time::Instant;

use futures::future::BoxFuture;

/// Admits a request onto the wire. The client calls [`Gate::admit`] once a
/// connection to the endpoint is open and ready, writes the request as soon as it
/// returns, and then calls [`Gate::sent`] exactly once for that admission.
pub trait Gate: Send + Sync {
    fn admit(&self) -> BoxFuture<'_, ()>;
    /// The admitted request's first write returned at `at`: its bytes are with the
    /// kernel. When it never left (or the call was dropped), `at` is the moment
    /// that was known, which is later than any write could have been.
    fn sent(&self, at: Instant);
}

/// One admission not yet reported to its gate; reports "now" if dropped unreported.
pub(super) struct Admission<'a> {
    gate: &'a dyn Gate,
    reported: bool,
}

impl<'a> Admission<'a> {
    pub(super) async fn take(gate: &'a dyn Gate) -> Admission<'a> {
        gate.admit().await;
        Admission {
            gate,
            reported: false,
        }
    }

    pub(super) fn report(mut self, at: Instant) {
        self.reported = true;
        self.gate.sent(at);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.gate.sent(Instant::now());
        }
    }
}
