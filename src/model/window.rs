//! The statistic both sides of the rate contract measure: the largest number of
//! events in any sliding 1-second window. The emulator feeds it arrivals as
//! they come; the report feeds it the journal's send times in order.

use std::collections::VecDeque;

/// Counts events in a sliding window of `width` (same unit as the times pushed)
/// and remembers the largest count seen. Times may come slightly out of order
/// (the emulator stamps arrivals before it takes its lock): an event is placed
/// where its time belongs, and every window it falls in is counted.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    width: u64,
    /// Sorted; kept for two widths behind the newest, for late arrivals.
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

    /// Events in the window ending at `end`: `(end - width, end]`.
    fn count_ending(&self, end: u64) -> usize {
        let upto = self.times.partition_point(|t| *t <= end);
        let from = self.times.partition_point(|t| t + self.width <= end);
        upto.saturating_sub(from)
    }

    /// Forgets events no window ending at or after `newest - width` can hold.
    fn expire(&mut self) {
        let Some(&newest) = self.times.back() else {
            return;
        };
        while let Some(&front) = self.times.front() {
            if front + 2 * self.width <= newest {
                self.times.pop_front();
            } else {
                break;
            }
        }
    }

    /// How many events are in the window ending at `now`, without recording one.
    pub fn count_at(&mut self, now: u64) -> usize {
        self.count_ending(now)
    }

    /// The busiest window that would hold an event at `t`, counting it, without
    /// recording it: the window ending at `t`, and (for a late arrival) those
    /// ending at later events.
    pub fn busiest_with(&self, t: u64) -> usize {
        let pos = self.times.partition_point(|x| *x <= t);
        self.times
            .range(pos..)
            .take_while(|e| **e < t + self.width)
            .map(|e| self.count_ending(*e))
            .fold(self.count_ending(t), usize::max)
            + 1
    }

    /// Records an event at `now`; returns the count in the window ending at it,
    /// including it. The largest count of any window holding it goes into [`Self::max`].
    pub fn push(&mut self, now: u64) -> usize {
        let pos = self.times.partition_point(|t| *t <= now);
        self.times.insert(pos, now);
        let here = self.count_ending(now);
        // Windows ending at later events (a late arrival) also hold this one.
        let later = self
            .times
            .range(pos + 1..)
            .take_while(|t| **t < now + self.width)
            .map(|t| self.count_ending(*t))
            .max()
            .unwrap_or(0);
        self.max = self.max.max(here).max(later);
        self.expire();
        here
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
    fn a_late_arrival_counts_in_every_window_it_falls_in() {
        let mut w = SlidingWindow::new(1000);
        for t in [100, 600, 1150] {
            w.push(t);
        }
        assert_eq!(w.max(), 2);
        // Stamped at 90 but recorded last: the windows ending at 100 and 600 hold it.
        assert_eq!(w.push(90), 1);
        assert_eq!(w.max(), 3);
        assert_eq!(w.count_at(1150), 2);
        // In order or not, the same statistic.
        let mut times = vec![5, 990, 400, 1200, 1001, 30, 2500, 1999];
        let mut w = SlidingWindow::new(1000);
        for t in &times {
            w.push(*t);
        }
        times.sort();
        assert_eq!(w.max(), max_in_window(times, 1000));
    }

    #[test]
    fn busiest_with_counts_the_later_windows_a_late_arrival_falls_in() {
        let mut w = SlidingWindow::new(1000);
        for t in [100, 600, 1050] {
            w.push(t);
        }
        // In order: the window ending at the new event.
        assert_eq!(w.busiest_with(1200), 3);
        // Stamped at 90 (recorded last): the window ending at 1050, (50, 1050],
        // holds 100, 600, 1050 and it.
        assert_eq!(w.busiest_with(90), 4);
        assert_eq!(w.busiest_with(60), 4);
        // At 40 it is outside that window; the one ending at 600 holds 100, 600 and it.
        assert_eq!(w.busiest_with(40), 3);
        let mut w = SlidingWindow::new(1000);
        for t in [100, 600, 1050, 1060] {
            w.push(t);
        }
        assert_eq!(w.busiest_with(55), 4);
        assert_eq!(w.busiest_with(45), 3);
        assert_eq!(w.count_at(1060), 4, "busiest_with records nothing");
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
