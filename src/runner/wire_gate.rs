//! The limiter's last word, taken at the wire (SPEC §1 "Rate limits"): a
//! strict sliding log of the times requests really left, per (credential,
//! endpoint, action).

use std::time::{Duration, Instant};

use super::limiter::SlidingLog;

/// The limiter's last word, taken at the wire: the client calls [`WireGate::admit`]
/// once a connection is open and ready, writes the request as soon as it
/// returns, and reports the moment the write left with [`Gate::sent`]. A
/// strict sliding log of the actual send times per (credential, endpoint,
/// action); the dispatcher's [`super::limiter::Limiter`] paces and orders the requests before
/// they get here.
///
/// Between admission and that report, a request counts as leaving *now*: a
/// request admitted first but written late (a starved thread, a busy runtime)
/// still holds its place in the window, so a later one cannot slip in beside it.
/// Stamping at admission instead let 21 requests into a sliding second under
/// CPU load.
///
/// [`Gate::sent`]: crate::api::Gate::sent
pub struct WireGate {
    state: std::sync::Mutex<Wire>,
    /// Woken when an admitted request reports its send time.
    reported: tokio::sync::Notify,
}

/// The log of reported sends, and how many admitted requests have not reported yet.
#[derive(Debug)]
struct Wire {
    log: SlidingLog,
    unreported: usize,
}

/// Why a request may not leave yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Ask again at this time.
    Until(Instant),
    /// Every place in the window is held by a request still being written.
    ForASend,
}

impl WireGate {
    /// `rate` sends per sliding window of one second plus `margin`.
    pub fn new(rate: u32, margin: Duration) -> Self {
        WireGate {
            state: std::sync::Mutex::new(Wire {
                log: SlidingLog::new(rate.max(1) as usize, Duration::from_secs(1) + margin),
                unreported: 0,
            }),
            reported: tokio::sync::Notify::new(),
        }
    }

    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a send slot now, or says when to ask again. The slot is held as
    /// "leaving now" until [`WireGate::report`] gives its send time.
    pub fn try_admit(&self, now: Instant) -> Result<(), Wait> {
        let mut w = self.wire();
        let cap = w.log.cap();
        if w.unreported >= cap {
            return Err(Wait::ForASend);
        }
        // The unreported ones are the most recent sends; the one that must have
        // left the window is the (cap - unreported)-th most recent reported one.
        if let Some(free) = w.log.nth_newest_leaves(cap - w.unreported) {
            if free > now {
                return Err(Wait::Until(free));
            }
        }
        w.unreported += 1;
        Ok(())
    }

    /// An admitted request left at `at` (or never left, and `at` is when that was
    /// known: a later time only makes the gate stricter).
    pub fn report(&self, at: Instant) {
        {
            let mut w = self.wire();
            w.unreported = w.unreported.saturating_sub(1);
            w.log.record(at);
        }
        self.reported.notify_waiters();
    }
}

impl crate::api::Gate for WireGate {
    fn admit(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                // Registered before the check, so a report in between is not missed.
                let reported = self.reported.notified();
                match self.try_admit(Instant::now()) {
                    Ok(()) => return,
                    Err(Wait::Until(at)) => tokio::time::sleep_until(at.into()).await,
                    Err(Wait::ForASend) => reported.await,
                }
            }
        })
    }

    fn sent(&self, at: Instant) {
        self.report(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The most sends in any sliding window (the model's statistic); `times` sorted.
    fn count_max_in_window(times: &[Instant], window: Duration) -> usize {
        let t0 = times.first().copied().unwrap_or_else(Instant::now);
        crate::model::max_in_window(
            times
                .iter()
                .map(|t| t.duration_since(t0).as_micros() as u64),
            window.as_micros() as u64,
        )
    }

    #[test]
    fn the_wire_gate_admits_rate_per_sliding_second_plus_margin() {
        // The last word before the server: whatever the dispatcher let through,
        // a 21st request waits until the 1st has left the window (1 s + margin).
        let g = WireGate::new(20, Duration::from_millis(10));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(g.try_admit(t0).is_ok());
        g.report(t0);
        for i in 1..20 {
            assert!(g.try_admit(ms(100)).is_ok(), "refused at {i}");
            g.report(ms(100));
        }
        assert_eq!(g.try_admit(ms(500)), Err(Wait::Until(ms(1010))));
        assert!(g.try_admit(ms(1010)).is_ok());
        g.report(ms(1010));
        assert_eq!(g.try_admit(ms(1010)), Err(Wait::Until(ms(1110))));
    }

    #[test]
    fn a_request_written_late_keeps_its_place_in_the_window() {
        // Request 0 is admitted at t0 but its thread is starved: it reaches the
        // wire 50 ms later. Counted at its admission, the 3rd request could leave
        // at t0 + 1 s: 3 sends (10, 50, 1000 ms) inside one second at cap 2.
        let g = WireGate::new(2, Duration::ZERO);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(g.try_admit(t0).is_ok()); // request 0: admitted, not yet written
        assert!(g.try_admit(ms(10)).is_ok()); // request 1
                                              // Both may leave at any moment: no place is free, whatever the time.
        assert_eq!(g.try_admit(ms(20)), Err(Wait::ForASend));
        assert_eq!(g.try_admit(ms(5000)), Err(Wait::ForASend));
        g.report(ms(10)); // request 1 written at once
                          // Request 0 still counts as the newest send; request 1 is the cap-th newest.
        assert_eq!(g.try_admit(ms(20)), Err(Wait::Until(ms(1010))));
        g.report(ms(50)); // request 0 written, 50 ms after its admission
        assert_eq!(g.try_admit(ms(1000)), Err(Wait::Until(ms(1010))));
        assert!(g.try_admit(ms(1010)).is_ok());
        assert_eq!(g.try_admit(ms(1020)), Err(Wait::Until(ms(1050))));
        g.report(ms(1010));
        assert_eq!(g.try_admit(ms(1020)), Err(Wait::Until(ms(1050))));
    }

    #[tokio::test]
    async fn a_waiter_is_woken_when_a_held_place_reports() {
        use crate::api::Gate;
        let g = std::sync::Arc::new(WireGate::new(1, Duration::from_millis(5)));
        g.admit().await; // held, not reported
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            g2.admit().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "admitted beside an unreported request"
        );
        let sent = Instant::now();
        g.sent(sent);
        let admitted = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was never woken")
            .unwrap();
        assert!(admitted >= sent + Duration::from_secs(1));
    }

    proptest! {
        /// Whatever the delays between admission and the write, no sliding window
        /// holds more than the cap of *written* sends.
        #[test]
        fn written_sends_never_exceed_the_cap(
            cap in 1usize..8,
            asks in proptest::collection::vec((0u64..300, 0u64..200), 1..120),
        ) {
            let window = Duration::from_millis(1000);
            let g = WireGate::new(cap as u32, Duration::ZERO);
            let t0 = Instant::now();
            let mut now = t0;
            // Admitted requests not yet written: their write times.
            let mut in_flight: Vec<Instant> = Vec::new();
            let mut written: Vec<Instant> = Vec::new();
            for (gap, delay) in asks {
                now += Duration::from_millis(gap);
                loop {
                    // Writes due by now happen first, in time order.
                    in_flight.sort();
                    while in_flight.first().is_some_and(|w| *w <= now) {
                        let w = in_flight.remove(0);
                        g.report(w);
                        written.push(w);
                    }
                    match g.try_admit(now) {
                        Ok(()) => { in_flight.push(now + Duration::from_millis(delay)); break; }
                        Err(Wait::Until(t)) => { prop_assert!(t > now); now = t; }
                        Err(Wait::ForASend) => { now = *in_flight.iter().min().unwrap(); }
                    }
                }
            }
            written.extend(in_flight);
            written.sort();
            prop_assert!(count_max_in_window(&written, window) <= cap);
        }
    }
}
