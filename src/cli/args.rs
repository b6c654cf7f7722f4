//! The flags (SPEC §3), parsed by clap; `job::setup` validates them into a
//! `RunConfig` once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::output::LogFormat;
use crate::api::EndpointPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "fleetcrypt",
    version,
    about = "Turn on storage encryption (TDE) for a fleet of TencentDB for MySQL instances, safely, at the API rate limit, with an audit trail."
)]
pub struct Cli {
    /// Before the subcommand.
    #[command(flatten)]
    pub top: TopFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// The flags that may come before the subcommand (SPEC §3). `--journal`,
/// `--profile`, `--endpoint` and `--resolve` may also come after it, on the
/// subcommands they mean something to (so `emulator --help` does not list
/// them); the logging flags go anywhere.
#[derive(Debug, Clone, Args)]
pub struct TopFlags {
    #[command(flatten)]
    pub journal: JournalFlag,
    #[command(flatten)]
    pub cloud: CloudFlags,
    /// Log lines as text or as JSON objects (for jq and log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        display_order = 900
    )]
    pub log_format: LogFormat,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 901)]
    pub verbose: u8,
    /// Less output: warnings and the summary only.
    #[arg(short, long, global = true, display_order = 902)]
    pub quiet: bool,
}

/// `--journal`, on the subcommands that read or write one.
#[derive(Debug, Clone, Default, Args)]
pub struct JournalFlag {
    /// The SQLite journal [default: fleetcrypt.db].
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
}

/// `--journal` on a subcommand that uses none: accepted after it as before
/// the subcommand (SPEC §3: scripts may pass it to every subcommand), and
/// ignored; not in its help.
#[derive(Debug, Clone, Default, Args)]
pub struct NoJournal {
    #[arg(long, value_name = "PATH", hide = true)]
    pub journal: Option<PathBuf>,
}

/// The same for the credential and endpoint flags on a subcommand that calls
/// no API.
#[derive(Debug, Clone, Default, Args)]
pub struct NoCloud {
    #[arg(long, value_name = "NAME", hide = true)]
    pub profile: Option<String>,
    #[arg(long, value_name = "URL", hide = true)]
    pub endpoint: Option<String>,
    #[arg(long, value_name = "NAME:PORT:ADDR", hide = true)]
    pub resolve: Vec<String>,
}

/// Both, on a subcommand that uses neither.
#[derive(Debug, Clone, Default, Args)]
pub struct Elsewhere {
    #[command(flatten)]
    pub journal: NoJournal,
    #[command(flatten)]
    pub cloud: NoCloud,
}

impl From<&NoJournal> for JournalFlag {
    fn from(n: &NoJournal) -> JournalFlag {
        JournalFlag {
            journal: n.journal.clone(),
        }
    }
}

impl From<&NoCloud> for CloudFlags {
    fn from(n: &NoCloud) -> CloudFlags {
        CloudFlags {
            profile: n.profile.clone(),
            endpoint: n.endpoint.clone(),
            resolve: n.resolve.clone(),
        }
    }
}

impl CloudFlags {
    /// These, with `other`'s where these give none.
    fn or(self, other: CloudFlags) -> CloudFlags {
        CloudFlags {
            profile: self.profile.or(other.profile),
            endpoint: self.endpoint.or(other.endpoint),
            resolve: other.resolve.into_iter().chain(self.resolve).collect(),
        }
    }
}

/// Credentials and where the API is, on the subcommands that call it.
#[derive(Debug, Clone, Default, Args)]
pub struct CloudFlags {
    /// tccli profile: reads ~/.tccli/NAME.credential (also TCCLI_PROFILE).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Base URL for every API call (default https://cdb.intl.tencentcloudapi.com; `{region}` is replaced per instance).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Pin a host name to an address, as curl does: NAME:PORT:ADDR (repeatable).
    #[arg(long, value_name = "NAME:PORT:ADDR")]
    pub resolve: Vec<String>,
}

/// What every command sees of the flags above: the subcommand's own value
/// where it gave one, else the one before the subcommand, else the default.
#[derive(Debug, Clone)]
pub struct Global {
    pub profile: Option<String>,
    pub journal: PathBuf,
    pub endpoint: Option<String>,
    pub resolve: Vec<String>,
    pub log_format: LogFormat,
    pub verbose: u8,
    pub quiet: bool,
}

/// The journal when none is given.
pub const DEFAULT_JOURNAL: &str = "fleetcrypt.db";

impl Cli {
    /// The flags as the command sees them (see [`Global`]).
    pub fn global(&self) -> Global {
        let (journal, cloud): (JournalFlag, CloudFlags) = match &self.command {
            Command::Plan(PlanArgs { job, .. })
            | Command::Run(RunArgs { job, .. })
            | Command::Resume(job) => (job.journal.clone(), job.cloud.clone()),
            Command::Doctor(d) => (d.journal.clone(), d.cloud.clone()),
            Command::Status { journal, cloud, .. }
            | Command::Report { journal, cloud, .. }
            | Command::RetryFailed { journal, cloud, .. } => (journal.clone(), cloud.into()),
            Command::Journal {
                command: JournalCommand::Verify { journal, cloud },
                journal: outer,
                cloud: outer_cloud,
            } => (
                JournalFlag {
                    journal: journal.journal.clone().or_else(|| outer.journal.clone()),
                },
                CloudFlags::from(cloud).or(outer_cloud.into()),
            ),
            Command::Discover(DiscoverArgs { journal, cloud, .. })
            | Command::Call { journal, cloud, .. } => (journal.into(), cloud.clone()),
            Command::Demo { elsewhere, .. }
            | Command::Emulator { elsewhere, .. }
            | Command::Completions { elsewhere, .. }
            | Command::Man { elsewhere } => {
                ((&elsewhere.journal).into(), (&elsewhere.cloud).into())
            }
        };
        let top = &self.top;
        Global {
            profile: cloud.profile.clone().or_else(|| top.cloud.profile.clone()),
            journal: journal
                .journal
                .clone()
                .or_else(|| top.journal.journal.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL)),
            endpoint: cloud
                .endpoint
                .clone()
                .or_else(|| top.cloud.endpoint.clone()),
            resolve: top
                .cloud
                .resolve
                .iter()
                .chain(&cloud.resolve)
                .cloned()
                .collect(),
            log_format: top.log_format,
            verbose: top.verbose,
            quiet: top.quiet,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job against the embedded emulator (no account, no network).
    #[command(
        after_help = "Examples:\n  fleetcrypt demo\n  fleetcrypt demo --rate 10 --report /tmp/demo.html --keep-journal /tmp/demo.db"
    )]
    Demo {
        #[command(flatten)]
        args: DemoArgs,
        #[command(flatten)]
        elsewhere: Elsewhere,
    },
    /// Validate the input and run the preflight reads only; sends no write.
    #[command(
        after_help = "Examples:\n  fleetcrypt plan --instances fleet.csv\n  fleetcrypt plan --instances fleet.csv --only Env=staging"
    )]
    Plan(PlanArgs),
    /// Import the input into the journal and drive every instance to a terminal state.
    #[command(
        after_help = "Examples:\n  fleetcrypt run --instances fleet.csv --canary 5\n  fleetcrypt run --instances fleet.csv --waves Env=staging,Env=prod --max-errors 2%\n  fleetcrypt run --instances fleet.csv --window 01:00-05:00 --window-tz Asia/Shanghai"
    )]
    Run(RunArgs),
    /// Check the set-up before a run: credentials, endpoints, clock skew, KMS,
    /// the role MySQL_QCSRole, the journal, the quota and the ETA (exit 0 / 1 / 3).
    #[command(
        after_help = "Examples:\n  fleetcrypt doctor\n  fleetcrypt --profile prod doctor --instances fleet.csv"
    )]
    Doctor(super::doctor::DoctorArgs),
    /// Continue the journal's unfinished instances (same as `run` with no new input).
    #[command(
        after_help = "Examples:\n  fleetcrypt resume\n  fleetcrypt --journal /var/lib/fleetcrypt/fleet.db resume --only Env=prod"
    )]
    Resume(JobArgs),
    /// Counts per state, rate, ETA and failures (read-only; works beside a live run).
    #[command(
        after_help = "Examples:\n  fleetcrypt status\n  watch -n 10 fleetcrypt status\n  fleetcrypt status --json | jq .verification"
    )]
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        journal: JournalFlag,
        #[command(flatten)]
        cloud: NoCloud,
    },
    /// Audit report from the journal.
    #[command(
        after_help = "Examples:\n  fleetcrypt report --format html -o report.html\n  fleetcrypt report --format csv -o instances.csv"
    )]
    Report {
        #[arg(long, value_enum)]
        format: crate::report::Format,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        journal: JournalFlag,
        #[command(flatten)]
        cloud: NoCloud,
    },
    /// Put failed instances back to pending (logged as events).
    #[command(
        after_help = "Examples:\n  fleetcrypt retry-failed --code InternalError.KmsError && fleetcrypt resume"
    )]
    RetryFailed {
        /// Only instances whose last error code is CODE (or starts with CODE.).
        #[arg(long)]
        code: Option<String>,
        #[command(flatten)]
        journal: JournalFlag,
        #[command(flatten)]
        cloud: NoCloud,
    },
    /// List master instances with DescribeDBInstances into an input CSV.
    #[command(
        after_help = "Examples:\n  fleetcrypt discover --region ap-guangzhou,ap-shanghai -o fleet.csv\n  fleetcrypt discover --region ap-guangzhou --tag env=staging"
    )]
    Discover(DiscoverArgs),
    /// The local CDB + KMS API emulator.
    #[command(
        after_help = "Examples:\n  fleetcrypt emulator --listen 127.0.0.1:8080 --generate 500\n  fleetcrypt emulator --listen 127.0.0.1:8080 --fleet fleet.csv --propagation 5s..20s"
    )]
    Emulator {
        #[command(flatten)]
        args: super::emulator_cmd::EmulatorArgs,
        #[command(flatten)]
        elsewhere: Elsewhere,
    },
    /// One signed API call; the response JSON goes to standard output.
    #[command(
        after_help = "Examples:\n  fleetcrypt call cdb DescribeDBInstanceInfo '{\"InstanceId\":\"cdb-abcd1234\"}' --region ap-guangzhou"
    )]
    Call {
        /// Product: cdb or kms (others with --api-version).
        service: String,
        /// Action, e.g. DescribeDBInstanceInfo.
        action: String,
        /// Request parameters as a JSON object.
        #[arg(default_value = "{}")]
        json: String,
        /// X-TC-Region (default TENCENTCLOUD_REGION).
        #[arg(long)]
        region: Option<String>,
        /// API version for a service fleetcrypt does not know.
        #[arg(long)]
        api_version: Option<String>,
        /// Request timeout.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        cloud: CloudFlags,
        #[command(flatten)]
        journal: NoJournal,
    },
    /// The journal's tamper-evident event chain.
    #[command(after_help = "Examples:\n  fleetcrypt journal verify")]
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
        #[command(flatten)]
        journal: JournalFlag,
        #[command(flatten)]
        cloud: NoCloud,
    },
    /// Shell completions for bash, zsh or fish, on standard output.
    #[command(
        after_help = "Examples:\n  fleetcrypt completions bash > /etc/bash_completion.d/fleetcrypt\n  fleetcrypt completions zsh > ~/.zfunc/_fleetcrypt\n  fleetcrypt completions fish > ~/.config/fish/completions/fleetcrypt.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        #[command(flatten)]
        elsewhere: Elsewhere,
    },
    /// The manual page (roff), on standard output.
    #[command(after_help = "Examples:\n  fleetcrypt man > fleetcrypt.1 && man ./fleetcrypt.1")]
    Man {
        #[command(flatten)]
        elsewhere: Elsewhere,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check the event chain: exit 0 intact, 1 broken (names the first bad event).
    Verify {
        #[command(flatten)]
        journal: JournalFlag,
        #[command(flatten)]
        cloud: NoCloud,
    },
}

#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Requests per second per action per endpoint (never more in any sliding second).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub rate: u32,
    /// Requests in flight at once (rate x latency: 20/s x 10 s needs 200).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub max_in_flight: u32,
    /// Per-request timeout.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long the server may still be working on an Open after it was sent,
    /// whatever the client saw (a timeout does not stop the backend). Until then a
    /// read of Encryption=NO does not count and nothing is re-sent; a YES ends it
    /// early. Monotonic clock; after a restart, a fresh window. At least 10s + --timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Allow --settle below 10s + --timeout: only against a server whose worst case
    /// is known to be shorter (the emulator in tests and rehearsals).
    #[arg(long, hide = true)]
    pub allow_short_settle: bool,
    /// Open attempts per instance before it fails.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// How long to wait for Encryption=YES after an accepted request.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub verify_deadline: Duration,
    /// Where the verification schedule starts (how long after an accepted Open
    /// the first read goes, until the run has learned the endpoint's delay):
    /// for rehearsals against a server known to be faster.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub verify_first_read: Duration,
    /// Send each instance's calls to cdb.<region>.tencentcloudapi.com (one quota per region).
    #[arg(long)]
    pub regional_endpoints: bool,
    /// Check custom KMS keys with kms DescribeKey before the request (the default).
    #[arg(long, overrides_with = "no_check_kms", hide = true)]
    pub check_kms: bool,
    /// Do not check custom KMS keys before the request (by default each key is
    /// checked, and a disabled one fails its instances with no Open sent).
    #[arg(long)]
    pub no_check_kms: bool,
    /// No confirmation prompt.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Skip the short doctor check before anything is sent (credentials, the
    /// endpoints, the clock, KMS in the regions used, the role MySQL_QCSRole).
    #[arg(long)]
    pub no_doctor: bool,
    /// Margin added to the limiter's 1-second window for network jitter.
    #[arg(long, default_value = "15ms", value_parser = parse_duration, hide = true)]
    pub rate_margin: Duration,
    #[command(flatten)]
    pub rollout: super::rollout_args::RolloutArgs,
    #[command(flatten)]
    pub journal: JournalFlag,
    #[command(flatten)]
    pub cloud: CloudFlags,
}

#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// CSV (InstanceId[,Region,KeyId,KeyRegion,Account,...]) or instance list; - for stdin.
    #[arg(long, value_name = "FILE")]
    pub instances: String,
    #[command(flatten)]
    pub rows: RowArgs,
}

/// How input rows are read: defaults for empty cells, and the account column.
/// Shared by the jobs' input and `doctor`.
#[derive(Debug, Clone, Default, Args)]
pub struct RowArgs {
    /// Region for rows that leave it empty (default TENCENTCLOUD_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// KMS key for rows that leave it empty.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Region of --key-id.
    #[arg(long)]
    pub key_region: Option<String>,
    /// The input column that names each row's account: a tccli profile
    /// (~/.tccli/NAME.credential) whose credentials, and quota, work on it.
    /// Default: a column named Account, when there is one; empty cells use
    /// the run's own credentials.
    #[arg(long, value_name = "NAME")]
    pub account_column: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub job: JobArgs,
    /// Same as `plan`.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The fleet to emulate (default: the embedded samples/fleet.csv).
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "fleetcrypt-demo-report.html")]
    pub report: PathBuf,
    /// Requests per second per action.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Keep the demo journal at this path instead of a temporary one.
    #[arg(long)]
    pub keep_journal: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    /// Regions to list (`--region a b`, `--region a,b` or repeated).
    #[arg(long, required = true, value_delimiter = ',', num_args = 1..)]
    pub region: Vec<String>,
    /// Only instances with this tag (K=V, repeatable; all must match).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Write the CSV to FILE instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cloud: CloudFlags,
    #[command(flatten)]
    pub journal: NoJournal,
}

/// `15s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (e.g. 15s, 500ms, 2m): {e}"))
}

/// `NAME:PORT:ADDR` as curl's --resolve.
pub fn parse_resolve(s: &str) -> Result<(String, SocketAddr), String> {
    let mut parts = s.splitn(3, ':');
    let (Some(name), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("--resolve {s:?}: expected NAME:PORT:ADDR"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--resolve {s:?}: bad port"))?;
    let ip: std::net::IpAddr = addr
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("--resolve {s:?}: bad address"))?;
    Ok((name.to_string(), SocketAddr::new(ip, port)))
}

impl Global {
    pub fn endpoint_policy(&self, regional: bool) -> EndpointPolicy {
        match &self.endpoint {
            Some(url) => EndpointPolicy::Custom(url.clone()),
            None if regional => EndpointPolicy::Regional,
            None => EndpointPolicy::Default,
        }
    }

    pub fn resolves(&self) -> Result<Vec<(String, SocketAddr)>, String> {
        self.resolve.iter().map(|r| parse_resolve(r)).collect()
    }
}

/// Runs the parsed command; returns the process exit code.
#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn global_of(args: &[&str]) -> Global {
        Cli::try_parse_from(args).unwrap().global()
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = global_of(&["fleetcrypt", "--journal", "a.db", "status"]);
        let b = global_of(&["fleetcrypt", "status", "--journal", "a.db"]);
        assert_eq!(
            (a.journal.as_path(), b.journal.as_path()),
            (Path::new("a.db"), Path::new("a.db"))
        );
        assert_eq!(
            global_of(&["fleetcrypt", "status"]).journal,
            Path::new(DEFAULT_JOURNAL)
        );
        for sub in [
            &["resume"][..],
            &["run", "--instances", "f.csv"],
            &["plan", "--instances", "f.csv"],
            &["doctor"],
            &["report", "--format", "json"],
            &["retry-failed"],
            &["journal", "verify"],
        ] {
            let mut after = vec!["fleetcrypt"];
            after.extend_from_slice(sub);
            after.extend(["--journal", "b.db"]);
            assert_eq!(global_of(&after).journal, Path::new("b.db"), "{sub:?}");
            let mut before = vec!["fleetcrypt", "--journal", "c.db", "-q"];
            before.extend_from_slice(sub);
            let g = global_of(&before);
            assert_eq!(g.journal, Path::new("c.db"), "{sub:?}");
            assert!(g.quiet);
        }
        for sub in [
            &["resume"][..],
            &["run", "--instances", "f.csv"],
            &["doctor"],
            &["discover", "--region", "ap-guangzhou"],
            &["call", "cdb", "DescribeDBInstances"],
        ] {
            let mut after = vec!["fleetcrypt", "--resolve", "a:1:127.0.0.1"];
            after.extend_from_slice(sub);
            after.extend([
                "--profile",
                "p",
                "--endpoint",
                "http://x",
                "--resolve",
                "b:2:127.0.0.1",
                "-v",
            ]);
            let g = global_of(&after);
            assert_eq!(g.profile.as_deref(), Some("p"), "{sub:?}");
            assert_eq!(g.endpoint.as_deref(), Some("http://x"), "{sub:?}");
            assert_eq!(g.resolve, ["a:1:127.0.0.1", "b:2:127.0.0.1"], "{sub:?}");
            assert_eq!(g.verbose, 1);
        }
        // Between `journal` and `verify` too.
        let g = global_of(&["fleetcrypt", "journal", "--journal", "d.db", "verify"]);
        assert_eq!(g.journal, Path::new("d.db"));
        let g = global_of(&[
            "fleetcrypt",
            "journal",
            "--journal",
            "d.db",
            "verify",
            "--journal",
            "e.db",
        ]);
        assert_eq!(g.journal, Path::new("e.db"));
        // The subcommand's own value wins over the one before it.
        let g = global_of(&[
            "fleetcrypt",
            "--endpoint",
            "http://a",
            "resume",
            "--endpoint",
            "http://b",
        ]);
        assert_eq!(g.endpoint.as_deref(), Some("http://b"));
    }

    #[test]
    fn flags_are_accepted_everywhere_but_shown_only_where_they_apply() {
        // SPEC §3: before or after any subcommand (a script may pass them to all).
        for args in [
            &[
                "fleetcrypt",
                "emulator",
                "--journal",
                "j.db",
                "--endpoint",
                "http://x",
            ][..],
            &[
                "fleetcrypt",
                "status",
                "--endpoint",
                "http://x",
                "--profile",
                "p",
            ],
            &[
                "fleetcrypt",
                "discover",
                "--region",
                "ap-guangzhou",
                "--journal",
                "j.db",
            ],
            &[
                "fleetcrypt",
                "demo",
                "--journal",
                "j.db",
                "--resolve",
                "a:1:127.0.0.1",
            ],
            &["fleetcrypt", "man", "--journal", "j.db"],
        ] {
            let g = global_of(args);
            assert!(
                g.journal == Path::new("j.db") || g.endpoint.is_some(),
                "{args:?}"
            );
        }
        let help = |sub: &str| {
            let mut c = Cli::command();
            c.build();
            c.find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string()
        };
        for flag in ["--journal", "--endpoint", "--resolve", "--profile"] {
            assert!(!help("emulator").contains(flag), "emulator: {flag}");
            assert!(!help("demo").contains(flag), "demo: {flag}");
            assert!(help("run").contains(flag), "run: {flag}");
            assert!(help("doctor").contains(flag), "doctor: {flag}");
        }
        assert!(help("status").contains("--journal") && !help("status").contains("--endpoint"));
        assert!(help("discover").contains("--endpoint") && !help("discover").contains("--journal"));
        for flag in ["--log-format", "--verbose", "--quiet"] {
            assert!(help("emulator").contains(flag), "emulator: {flag}");
        }
    }

    #[test]
    fn discover_takes_regions_every_way() {
        for args in [
            &[
                "fleetcrypt",
                "discover",
                "--region",
                "ap-guangzhou",
                "ap-shanghai",
            ][..],
            &[
                "fleetcrypt",
                "discover",
                "--region",
                "ap-guangzhou,ap-shanghai",
            ][..],
            &[
                "fleetcrypt",
                "discover",
                "--region",
                "ap-guangzhou",
                "--region",
                "ap-shanghai",
            ][..],
        ] {
            match Cli::try_parse_from(args).unwrap().command {
                Command::Discover(d) => assert_eq!(d.region, ["ap-guangzhou", "ap-shanghai"]),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn durations_and_resolve() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        let (n, a) = parse_resolve("cdb.ap-x.test:8080:127.0.0.1").unwrap();
        assert_eq!(n, "cdb.ap-x.test");
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        assert!(parse_resolve("nope").is_err());
    }
}
