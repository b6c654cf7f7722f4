//! The quota a run gets and the time it needs (SPEC §1 "what bounds speed").
//! `DescribeDBInstanceInfo` is the binding quota: each instance costs one
//! preflight read, and each one that needs an Open a verification read more,
//! so one endpoint finishes at most `rate / 2` instances a second.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one endpoint (API access region, its own quota) will have to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Instances that will need an Open (two reads each).
    pub opens: u64,
    /// Instances that need only their preflight read (already encrypted, or
    /// refused by preflight).
    pub others: u64,
    /// The measured latency of a read on this endpoint, if one was measured.
    pub latency: Option<Duration>,
}

/// Per endpoint host, in name order.
pub type Endpoints = BTreeMap<String, Load>;

/// The unit a quota applies to, as the ETA names it: an endpoint host, and
/// the account when it is not the run's own (each account has its own quota).
pub fn unit(host: &str, account: Option<&str>) -> String {
    match account {
        Some(a) => format!("{host} (account {a})"),
        None => host.to_string(),
    }
}

/// Instances a second one endpoint can finish at `rate` reads a second.
pub fn per_second(rate: u32) -> f64 {
    rate as f64 / 2.0
}

/// How long one endpoint needs at `rate` `DescribeDBInstanceInfo` a second:
/// every read the load costs, at the rate, plus one read's latency (the last
/// answer still has to come back). Zero for no work.
pub fn eta(load: &Load, rate: u32) -> Duration {
    let reads = 2 * load.opens + load.others;
    if reads == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(reads as f64 / rate.max(1) as f64) + load.latency.unwrap_or_default()
}

/// `12.3 s`, `4 min 05 s`, `2 h 07 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// The ETA lines: one per endpoint, and the whole run (the endpoints work in
/// parallel, each on its own quota, so the slowest one decides).
pub fn render(endpoints: &Endpoints, rate: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut slowest = Duration::ZERO;
    for (host, load) in endpoints {
        let t = eta(load, rate);
        slowest = slowest.max(t);
        let latency = load
            .latency
            .map(|l| format!("{} ms", l.as_millis()))
            .unwrap_or_else(|| "not measured".into());
        lines.push(format!(
            "{host}: {} instance(s) need an Open, {} only a read; read latency {latency}; ETA {}",
            load.opens,
            load.others,
            human(t)
        ));
    }
    if endpoints.len() > 1 {
        lines.push(format!(
            "whole run ({} endpoints in parallel): ETA {}",
            endpoints.len(),
            human(slowest)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_reads_per_open_bound_an_endpoint_at_half_the_rate() {
        assert_eq!(per_second(20), 10.0);
        // 1,000 Opens at 20 reads/s: 2,000 reads, 100 s, plus the last answer.
        let load = Load {
            opens: 1000,
            others: 0,
            latency: Some(Duration::from_millis(250)),
        };
        assert_eq!(eta(&load, 20), Duration::from_millis(100_250));
        // Already-encrypted instances cost their preflight read only.
        let load = Load {
            opens: 10,
            others: 20,
            latency: None,
        };
        assert_eq!(eta(&load, 20), Duration::from_secs(2));
        assert_eq!(eta(&Load::default(), 20), Duration::ZERO);
        // Half the rate, twice the time.
        let load = Load {
            opens: 100,
            ..Load::default()
        };
        assert_eq!(eta(&load, 10), 2 * eta(&load, 20));
    }

    #[test]
    fn the_slowest_endpoint_decides_the_whole_run() {
        let mut e = Endpoints::new();
        e.insert(
            "cdb.ap-guangzhou.tencentcloudapi.com".into(),
            Load {
                opens: 200,
                others: 0,
                latency: Some(Duration::from_millis(80)),
            },
        );
        e.insert(
            "cdb.ap-shanghai.tencentcloudapi.com".into(),
            Load {
                opens: 50,
                others: 4,
                latency: None,
            },
        );
        let lines = render(&e, 20);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].contains("200 instance(s) need an Open")
                && lines[0].contains("80 ms")
                && lines[0].ends_with("ETA 20.1 s"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("not measured") && lines[1].ends_with("ETA 5.2 s"),
            "{lines:?}"
        );
        assert_eq!(lines[2], "whole run (2 endpoints in parallel): ETA 20.1 s");
        assert_eq!(human(Duration::from_secs(245)), "4 min 05 s");
        assert_eq!(human(Duration::from_secs(7620)), "2 h 07 min");
    }
}
