//! Wall-clock milliseconds since the Unix epoch: what the journal stores for the
//! audit. Safety decisions never use these (they use `Instant`, SPEC §1).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}
