//! The statistic both sides of the rate contract measure: the largest number of
//! events in any sliding 1-second window. The emulator feeds it arrivals as
//! they come; the report feeds it the journal's send times in order.

use std::collections::VecDeque;

/// Counts events in a sliding window of `width` (same unit as the times pushed)
/// and remembers the largest count seen. Times must be pushed in non-decreasing order.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    width: u64,
    times: VecDeque<u64>,
    max: usize,
}

impl SlidingWindow {
    pub fn new(width: u64) -> Self {
        SlidingWindow {
            width,
            times: VecDeque::new(),
            max: 0,
        }
    }

    /// Drops events that left the window ending at `now` (the window is `(now - width, now]`).
    fn expire(&mut self, now: u64) {
        while let Some(&front) = self.times.front() {
            if front + self.width <= now {
                self.times.pop_front();
            } else {
                break;
            }
        }
    }

    /// How many events are in the window ending at `now`, without recording one.
    pub fn count_at(&mut self, now: u64) -> usize {
        self.expire(now);
        self.times.len()
    }

    /// Records an event at `now`; returns the count in the window including it.
    pub fn push(&mut self, now: u64) -> usize {
        self.expire(now);
        self.times.push_back(now);
        self.max = self.max.max(self.times.len());
        self.times.len()
    }

    /// The largest count seen in any window.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// The largest number of `times` (sorted ascending) that fall in any window of `width`.
pub fn max_in_window(times: impl IntoIterator<Item = u64>, width: u64) -> usize {
    let mut w = SlidingWindow::new(width);
    for t in times {
        w.push(t);
    }
    w.max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open() {
        // 1000 ms apart: never in the same 1-second window.
        assert_eq!(max_in_window([0, 1000, 2000], 1000), 1);
        // 999 ms apart: together.
        assert_eq!(max_in_window([0, 999], 1000), 2);
    }

    #[test]
    fn counts_bursts_anywhere() {
        let mut times: Vec<u64> = (0..20).map(|i| i * 50).collect();
        assert_eq!(max_in_window(times.clone(), 1000), 20);
        times.push(990); // a late one catches up
        times.sort();
        assert_eq!(max_in_window(times, 1000), 21);
    }

    #[test]
    fn count_at_does_not_record() {
        let mut w = SlidingWindow::new(1000);
        w.push(0);
        w.push(10);
        assert_eq!(w.count_at(500), 2);
        assert_eq!(w.count_at(1005), 1);
        assert_eq!(w.max(), 2);
    }
}
