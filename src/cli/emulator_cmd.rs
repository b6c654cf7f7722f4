//! `fleetcrypt emulator`: the emulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::args::parse_duration;
use super::error::{CliError, CliResult, Done};
use crate::api::Secret;
use crate::emulator::{
    BadAnswer, Emulator, EmulatorConfig, Faults, Generate, Latency, RoleState, World,
};
use crate::input::{self, Defaults};

#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Emulate this fleet (an input CSV or list), unencrypted unless a row says Encryption=YES.
    #[arg(long, conflicts_with = "generate")]
    pub fleet: Option<PathBuf>,
    /// Generate a random fleet of N master instances.
    #[arg(long)]
    pub generate: Option<usize>,
    /// Regions for --generate (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ap-guangzhou,ap-shanghai,ap-singapore"
    )]
    pub regions: Vec<String>,
    /// Share of generated instances already encrypted.
    #[arg(long, default_value_t = 0.1)]
    pub share_encrypted: f64,
    /// Share of generated instances that do not support encryption.
    #[arg(long, default_value_t = 0.02)]
    pub share_unsupported: f64,
    /// Share of generated instances that need a kernel upgrade first.
    #[arg(long, default_value_t = 0.02)]
    pub share_needs_upgrade: f64,
    /// Share of generated instances whose fleet row names a custom KMS key.
    #[arg(long, default_value_t = 0.2)]
    pub share_custom_key: f64,
    /// Of those, the share whose key is Disabled.
    #[arg(long, default_value_t = 0.1)]
    pub share_disabled_key: f64,
    /// Write the generated fleet (with planned keys) as an input CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_fleet: Option<PathBuf>,
    /// Share of generated read-only replicas beside the masters.
    #[arg(long, default_value_t = 0.0)]
    pub share_replicas: f64,
    /// Accepted SecretId (default TENCENTCLOUD_SECRET_ID, else one is generated and printed).
    #[arg(long)]
    pub secret_id: Option<String>,
    /// Accepted SecretKey (default TENCENTCLOUD_SECRET_KEY).
    #[arg(long, value_parser = |s: &str| Ok::<_, String>(Secret::new(s)))]
    pub secret_key: Option<Secret>,
    /// Also accept the credentials of this tccli profile
    /// (~/.tccli/NAME.credential; repeatable): a rehearsal of several
    /// accounts. With --fleet, the rows whose Account names it belong to it,
    /// and any other credential is told they do not exist.
    #[arg(long, value_name = "NAME")]
    pub accept_profile: Vec<String>,
    /// Per-action limit per (Host, SecretId) and sliding second: ACTION=N (0 = none; repeatable).
    #[arg(long, value_name = "ACTION=N")]
    pub rate_limit: Vec<String>,
    /// The same limit for every action.
    #[arg(long)]
    pub rate_limit_all: Option<u32>,
    /// Latency of an action: ACTION=MIN..MAX, e.g. OpenDBInstanceEncryption=1s..10s (repeatable).
    #[arg(long, value_name = "ACTION=MIN..MAX")]
    pub latency: Vec<String>,
    /// No latency at all.
    #[arg(long)]
    pub instant: bool,
    /// Fault probability: NAME=P, e.g. internal-applied=0.05 (repeatable). Open
    /// faults: internal-applied (InternalError, applied in the background within
    /// --apply-within), internal, kms-error, bad-gateway, reset-applied, reset,
    /// hang-applied (hangs --hang-for, applied at the start), hang (nothing
    /// applied), hang-late (hangs --hang-for and applies at the END of the hang,
    /// after the client gave up, then answers InternalError), malformed.
    /// Describe: describe-internal.
    #[arg(long, value_name = "NAME=P")]
    pub fault: Vec<String>,
    /// Spread this total probability evenly over every Open fault (hang-late
    /// included), plus a quarter of it on describe-internal.
    #[arg(long)]
    pub faults_mixed: Option<f64>,
    /// Answer badly: KIND[@ACTION]=P (repeatable; the first that fires wins).
    /// With @ACTION only that action (OpenDBInstanceEncryption,
    /// DescribeDBInstanceInfo, DescribeDBFeatures, DescribeDBInstances,
    /// DescribeKey), else every action the kind fits. Kinds: truncated-json,
    /// missing-response (no Response envelope), error-without-code, oversize (a
    /// valid body over the client's 16 MiB cap), non-json-200 (HTML under
    /// application/json), slow-drip (headers, then a byte every 100 ms, never
    /// complete), request-id-number; wrong types for one field:
    /// encryption-number|-null|-bool|-object (DescribeDBInstanceInfo),
    /// support-encryption-string, need-upgrade-string (DescribeDBFeatures),
    /// key-state-number (DescribeKey). An Open given a bad answer has been
    /// applied (like InternalError after success); a bad read changes nothing.
    #[arg(long, value_name = "KIND[@ACTION]=P", value_parser = BadAnswer::parse)]
    pub bad_answer: Vec<BadAnswer>,
    /// Require this X-TC-Token (session token) with the accepted SecretId
    /// (default TENCENTCLOUD_TOKEN; none: a token is not checked).
    #[arg(long, value_parser = |s: &str| Ok::<_, String>(Secret::new(s)))]
    pub token: Option<Secret>,
    /// The backend's timing (boxed: keeps the `Command` enum small).
    #[command(flatten)]
    pub timing: Box<TimingArgs>,
    /// The account's set-up, as `fleetcrypt doctor` checks it.
    #[command(flatten)]
    pub account: Box<AccountArgs>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The backend's timing knobs, all scaled by `--time-scale`.
#[derive(Debug, Clone, Args)]
pub struct TimingArgs {
    /// Delay before Encryption reads YES after being applied: DUR, or MIN..MAX
    /// for a uniform draw per instance (e.g. 5s..20s).
    #[arg(long, default_value = "0s", value_parser = parse_range, value_name = "DUR|MIN..MAX")]
    pub propagation: Latency,
    /// For this long after an instance's encryption is applied,
    /// DescribeDBInstanceInfo answers "Encryption": "" (neither YES nor NO);
    /// then the usual rule (YES once --propagation has passed, NO before).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DUR")]
    pub blank_after_apply: Duration,
    /// Faults that apply in the background do so within this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub apply_within: Duration,
    /// How long a hung call holds its connection (after its latency). 20s is
    /// past the client's default 15s timeout, while the worst case (Open
    /// latency up to 10s, plus the hang) stays under its default 60s settle
    /// window, so a careful client can still be safe against hang-late.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub hang_for: Duration,
    /// Largest accepted difference between a request's X-TC-Timestamp and the
    /// emulator's clock (Tencent Cloud: 5 minutes; larger for a client whose
    /// clock is deliberately moved, as in the clock-jump rehearsal).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub max_skew: Duration,
    /// Multiply every latency and delay (0.1 = ten times faster), including
    /// --propagation, --blank-after-apply, --apply-within and --hang-for.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

/// The account's set-up behind the seed's preconditions, which `fleetcrypt
/// doctor` (and the short check at the start of `run`) reads.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// Turn KMS off: kms GetServiceStatus answers ServiceEnabled=false
    /// (InvalidType 0, not purchased) in these regions (comma-separated), or in
    /// every region when no region is given.
    #[arg(long, value_name = "REGIONS", num_args = 0..=1, default_missing_value = "*", value_delimiter = ',')]
    pub kms_off: Vec<String>,
    /// What cam ListAttachedRolePolicies shows for the CDB service role
    /// MySQL_QCSRole: attached (its preset policy QcloudAccessForMySQLRole is
    /// attached), no-policy (the role without it) or missing (no such role:
    /// InvalidParameter.RoleNotExist).
    #[arg(long, default_value = "attached", value_parser = RoleState::parse, value_name = "STATE")]
    pub mysql_role: RoleState,
    /// CAM refuses the caller: ListAttachedRolePolicies answers
    /// AuthFailure.UnauthorizedOperation, as for a sub-account without CAM read access.
    #[arg(long)]
    pub cam_denied: bool,
    /// Run the emulator's clock this far ahead of the host's (a leading - for
    /// behind, e.g. -90s): in its Date header and in its X-TC-Timestamp check
    /// (--max-skew), so a client's clock skew can be rehearsed.
    #[arg(long, default_value = "0s", value_parser = parse_offset, value_name = "[-]DUR", allow_hyphen_values = true)]
    pub clock_offset: i64,
}

/// `90s`, `-5m`, `+2m`: whole seconds, signed.
fn parse_offset(s: &str) -> Result<i64, String> {
    let (sign, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    Ok(sign * parse_duration(magnitude)?.as_secs() as i64)
}

/// `DUR` or `MIN..MAX`.
fn parse_range(s: &str) -> Result<Latency, String> {
    let (lo, hi) = s.split_once("..").unwrap_or((s, s));
    let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
    if hi < lo {
        return Err(format!("{s:?}: the maximum is below the minimum"));
    }
    Ok(Latency::between(lo, hi))
}

fn parse_kv(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

fn config(args: &EmulatorArgs) -> Result<(EmulatorConfig, bool), String> {
    let mut c = EmulatorConfig {
        propagation: args.timing.propagation,
        blank_after_apply: args.timing.blank_after_apply,
        apply_within: args.timing.apply_within,
        hang_for: args.timing.hang_for,
        max_skew: args.timing.max_skew,
        kms_off: args.account.kms_off.clone(),
        mysql_role: args.account.mysql_role,
        cam_denied: args.account.cam_denied,
        clock_offset_secs: args.account.clock_offset,
        seed: args.seed,
        ..EmulatorConfig::default()
    };
    if args.instant {
        c = c.instant();
    }
    if let Some(n) = args.rate_limit_all {
        for v in c.rate_limits.values_mut() {
            *v = n;
        }
    }
    for r in &args.rate_limit {
        let (a, n) = parse_kv(r)?;
        c.rate_limits.insert(
            a.to_string(),
            n.parse().map_err(|_| format!("{r:?}: bad number"))?,
        );
    }
    for l in &args.latency {
        let (a, range) = parse_kv(l)?;
        c.latency.insert(a.to_string(), parse_range(range)?);
    }
    if let Some(total) = args.faults_mixed {
        c.faults = Faults::mixed(total);
    }
    for f in &args.fault {
        let (name, p) = parse_kv(f)?;
        c.faults.set(
            name,
            p.parse().map_err(|_| format!("{f:?}: bad probability"))?,
        )?;
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let id = args
        .secret_id
        .clone()
        .or_else(|| env("TENCENTCLOUD_SECRET_ID"));
    let key = args
        .secret_key
        .clone()
        .or_else(|| env("TENCENTCLOUD_SECRET_KEY").map(Secret::new));
    let generated = id.is_none() || key.is_none();
    let (id, key) = match (id, key) {
        (Some(i), Some(k)) => (i, k),
        _ => (
            format!(
                "AKIDemu{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            Secret::new(uuid::Uuid::new_v4().simple().to_string()),
        ),
    };
    let token = args
        .token
        .clone()
        .or_else(|| env("TENCENTCLOUD_TOKEN").map(Secret::new));
    if let Some(t) = token.filter(|_| !generated) {
        c.tokens.insert(id.clone(), t);
    }
    c.credentials = vec![(id, key)];
    for name in &args.accept_profile {
        crate::model::check_account_name(name)
            .map_err(|why| format!("--accept-profile {name:?} {why}"))?;
        let creds = crate::api::credentials::load(Some(name), &crate::api::credentials::ProcessEnv)
            .map_err(|e| format!("--accept-profile {name}: {e}"))?;
        if let Some(t) = creds.token {
            c.tokens.insert(creds.secret_id.clone(), t);
        }
        c.credentials.push((creds.secret_id, creds.secret_key));
    }
    c.bad_answers = args.bad_answer.clone();
    if args.timing.time_scale != 1.0 {
        c = c.time_scaled(args.timing.time_scale);
    }
    Ok((c, generated))
}

/// Gives each fleet row that names an account to that account's credential
/// (`--accept-profile`): the emulated cloud then shows it to that key only.
fn owned(
    mut world: World,
    specs: &[input::InstanceSpec],
    args: &EmulatorArgs,
    config: &EmulatorConfig,
) -> Result<World, String> {
    // The profiles' SecretIds follow the first (own) pair, in flag order.
    let ids: std::collections::HashMap<&str, &str> = args
        .accept_profile
        .iter()
        .map(String::as_str)
        .zip(config.credentials.iter().skip(1).map(|(id, _)| id.as_str()))
        .collect();
    for s in specs {
        let Some(account) = &s.account else { continue };
        let Some(id) = ids.get(account.as_str()) else {
            return Err(format!(
                "the fleet's line {} names account {account}: pass --accept-profile {account}",
                s.line
            ));
        };
        if let Some(inst) = world.instances.get_mut(s.id.as_str()) {
            inst.owner = Some(id.to_string());
        }
    }
    Ok(world)
}

pub(super) async fn run(args: EmulatorArgs) -> CliResult {
    let (config, generated) =
        config(&args).map_err(|e| CliError::usage(format!("emulator: {e}")))?;
    let world = match (&args.fleet, args.generate) {
        (Some(path), _) => match input::load(&path.display().to_string(), &Defaults::default()) {
            Ok(specs) => owned(
                super::demo::world_from_fleet(&specs),
                &specs,
                &args,
                &config,
            )
            .map_err(|e| CliError::usage(format!("emulator: {e}")))?,
            Err(e) => return Err(CliError::usage(format!("emulator: {e}"))),
        },
        (None, n) => World::generate(&Generate {
            count: n.unwrap_or(100),
            regions: args.regions.clone(),
            share_encrypted: args.share_encrypted,
            share_unsupported: args.share_unsupported,
            share_needs_upgrade: args.share_needs_upgrade,
            share_replicas: args.share_replicas,
            share_custom_key: args.share_custom_key,
            share_disabled_key: args.share_disabled_key,
            seed: args.seed,
        }),
    };
    if let Some(path) = &args.write_fleet {
        let written = crate::report::create_private(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, world.fleet_csv().as_bytes()));
        written.map_err(|e| {
            CliError::failed(format!("emulator: cannot write {}: {e}", path.display()))
        })?;
    }
    let instances = world.instances.len();
    let (id, key) = config.credentials[0].clone();
    let emu = Emulator::start(config, world, args.listen)
        .await
        .map_err(|e| {
            CliError::failed(format!("emulator: cannot listen on {}: {e}", args.listen))
        })?;
    say!(
        "fleetcrypt emulator listening on {} ({instances} instances)",
        emu.url()
    );
    if generated {
        // The emulator's own throwaway pair: printing it is how a user gets it.
        say!("export TENCENTCLOUD_SECRET_ID={id}");
        say!("export TENCENTCLOUD_SECRET_KEY={}", key.expose());
    }
    say!("ground truth: curl {}/__emulator/state", emu.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    emu.stop();
    Ok(Done::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn config_of(argv: &[&str]) -> EmulatorConfig {
        let cli =
            Cli::try_parse_from(std::iter::once("emulator").chain(argv.iter().copied())).unwrap();
        config(&cli.args).unwrap().0
    }

    #[test]
    fn new_knobs_parse_and_scale() {
        let c = config_of(&[]);
        assert_eq!(c.hang_for, Duration::from_secs(20));
        assert_eq!(c.blank_after_apply, Duration::ZERO);
        let c = config_of(&[
            "--blank-after-apply",
            "3s",
            "--fault",
            "hang-late=0.25",
            "--time-scale",
            "0.5",
        ]);
        assert_eq!(c.blank_after_apply, Duration::from_millis(1500));
        assert_eq!(c.hang_for, Duration::from_secs(10));
        assert_eq!(c.faults.hang_late, 0.25);
        let c = config_of(&["--faults-mixed", "0.1"]);
        assert!(c.faults.hang_late > 0.0);
    }

    #[test]
    fn account_switches_parse() {
        let c = config_of(&[]);
        assert!(c.kms_enabled("ap-guangzhou"));
        assert_eq!(c.mysql_role, RoleState::Attached);
        assert!(!c.cam_denied);
        assert_eq!(c.clock_offset_secs, 0);
        let c = config_of(&["--kms-off"]);
        assert!(!c.kms_enabled("ap-guangzhou") && !c.kms_enabled("eu-frankfurt"));
        let c = config_of(&[
            "--kms-off",
            "ap-shanghai,ap-tokyo",
            "--clock-offset",
            "-90s",
        ]);
        assert!(c.kms_enabled("ap-guangzhou"));
        assert!(!c.kms_enabled("ap-shanghai") && !c.kms_enabled("ap-tokyo"));
        assert_eq!(c.clock_offset_secs, -90);
        let c = config_of(&[
            "--mysql-role",
            "no-policy",
            "--cam-denied",
            "--clock-offset",
            "4m",
        ]);
        assert_eq!(c.mysql_role, RoleState::NoPolicy);
        assert!(c.cam_denied);
        assert_eq!(c.clock_offset_secs, 240);
        assert_eq!(
            config_of(&["--mysql-role", "missing"]).mysql_role,
            RoleState::Missing
        );
        assert!(parse_offset("soon").is_err());
    }
}
