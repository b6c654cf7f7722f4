//! Logging and progress: tracing to stderr (text or JSON), an indicatif bar on
//! a terminal that is suspended while a log line prints, plain periodic lines
//! otherwise.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::runner::Counters;

static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn bar_slot() -> &'static Mutex<Option<ProgressBar>> {
    BAR.get_or_init(|| Mutex::new(None))
}

/// Writes log lines to stderr, suspending the progress bar around each.
#[derive(Clone, Copy)]
pub struct SuspendingStderr;

pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = bar_slot().lock().unwrap().clone();
        match bar {
            Some(b) => b.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for SuspendingStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up tracing once; `verbosity` is -q (-1) .. -vv (2).
pub fn init_logging(format: LogFormat, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("FLEETCRYPT_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "fleetcrypt={default},hyper=warn,reqwest=warn,axum=warn,{}",
            if verbosity > 1 { "debug" } else { "warn" }
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SuspendingStderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Shows progress until dropped: a bar on a terminal, a log line every 10 s otherwise.
pub struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(counters: Arc<Counters>, quiet: bool) -> Progress {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_terminal = std::io::stderr().is_terminal() && !quiet;
        let bar = on_terminal.then(|| {
            let b = ProgressBar::new(counters.total.load(Relaxed));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} instances  {msg}",
                )
                .unwrap(),
            );
            b
        });
        *bar_slot().lock().unwrap() = bar.clone();
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let mut last_line = Instant::now();
            let start_done = counters.done();
            while !s.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let done = counters.done();
                let total = counters.total.load(Relaxed);
                let failed = counters.failed.load(Relaxed);
                if let Some(b) = &bar {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let rate = (done - start_done) as f64 / secs;
                    let eta = if rate > 0.0 {
                        format!("{:.0}s", (total - done) as f64 / rate)
                    } else {
                        "-".into()
                    };
                    b.set_length(total);
                    b.set_position(done);
                    b.set_message(format!(
                        "{rate:.1}/s  ETA {eta}  failed {failed}  in flight {}  throttled {}{}",
                        counters.in_flight.load(Relaxed),
                        counters.throttled.load(Relaxed),
                        paused(&counters)
                            .map(|p| format!("  paused until {p}"))
                            .unwrap_or_default()
                    ));
                } else if !quiet && last_line.elapsed() >= Duration::from_secs(10) {
                    last_line = Instant::now();
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let rate = (done - start_done) as f64 / secs;
                    let eta = if rate > 0.0 {
                        format!("{:.0}s", (total - done) as f64 / rate)
                    } else {
                        "unknown".into()
                    };
                    tracing::info!(
                        done,
                        total,
                        failed,
                        instances_per_s = format!("{rate:.2}"),
                        eta = %eta,
                        in_flight = counters.in_flight.load(Relaxed),
                        paused_until = paused(&counters),
                        "progress"
                    );
                }
            }
            if let Some(b) = &bar {
                b.set_position(counters.done());
                b.finish_and_clear();
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }

    pub async fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        *bar_slot().lock().unwrap() = None;
    }
}

/// Outside the maintenance window: when Opens resume (RFC 3339, UTC).
fn paused(counters: &Counters) -> Option<String> {
    let ms = counters
        .paused_until_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    (ms > 0).then(|| crate::report::iso(ms as i64))
}
