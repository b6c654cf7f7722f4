//! The emulator's knobs: credentials, rate limits, latency, faults, timing.

use std::collections::HashMap;
use std::time::Duration;

use crate::api::cam::LIST_ATTACHED_ROLE_POLICIES;
use crate::api::cdb::*;
use crate::api::kms::{DESCRIBE_KEY, GET_SERVICE_STATUS};
use crate::api::Secret;

/// The CDB service role `MySQL_QCSRole` as CAM shows it (`ListAttachedRolePolicies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleState {
    /// The role exists with `QcloudAccessForMySQLRole` attached (the seed's precondition).
    #[default]
    Attached,
    /// The role exists without that policy.
    NoPolicy,
    /// There is no such role (`InvalidParameter.RoleNotExist`).
    Missing,
}

impl RoleState {
    pub const ALL: [RoleState; 3] = [RoleState::Attached, RoleState::NoPolicy, RoleState::Missing];

    pub fn name(self) -> &'static str {
        match self {
            RoleState::Attached => "attached",
            RoleState::NoPolicy => "no-policy",
            RoleState::Missing => "missing",
        }
    }

    pub fn parse(name: &str) -> Result<RoleState, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("{name:?}: expected attached, no-policy or missing"))
    }
}

/// A latency range; each answer waits a uniform draw from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub min: Duration,
    pub max: Duration,
}

impl Latency {
    pub const ZERO: Latency = Latency {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };
    /// Always exactly `d`.
    pub fn fixed(d: Duration) -> Self {
        Latency { min: d, max: d }
    }
    pub fn between(min: Duration, max: Duration) -> Self {
        Latency {
            min,
            max: max.max(min),
        }
    }
    pub fn scaled(self, f: f64) -> Self {
        Latency {
            min: self.min.mul_f64(f),
            max: self.max.mul_f64(f),
        }
    }
}

/// Probabilities (0..=1) of each fault, drawn once per accepted request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Open answers `InternalError` but the encryption is applied in the background.
    pub internal_applied: f64,
    /// Open answers `InternalError` and nothing is applied.
    pub internal: f64,
    /// Open answers `InternalError.KmsError`, nothing applied.
    pub kms_error: f64,
    /// Open answers HTTP 502 with an HTML page, nothing applied.
    pub bad_gateway: f64,
    /// The connection is dropped mid-answer after the encryption was applied.
    pub reset_applied: f64,
    /// The connection is dropped mid-answer, nothing applied.
    pub reset: f64,
    /// The call hangs past the client's timeout; applied at the start of the hang.
    pub hang_applied: f64,
    /// The call hangs past the client's timeout; nothing applied.
    pub hang: f64,
    /// The call hangs past the client's timeout and the backend applies the
    /// encryption at the *end* of the hang, long after the client gave up, then
    /// answers `InternalError` to whoever is still listening. A client that
    /// re-sends after a `NO` read taken during the hang sends a second Open on
    /// an instance that is about to be encrypted.
    pub hang_late: f64,
    /// HTTP 200 with a truncated JSON body; applied.
    pub malformed: f64,
    /// `DescribeDBInstanceInfo` answers `InternalError`.
    pub describe_internal: f64,
}

impl Faults {
    /// How many faults `open_total` adds up (the ones drawn on an Open).
    pub const OPEN_FAULTS: usize = 10;

    /// Sets a fault by its command-line name (`internal-applied=0.05`).
    pub fn set(&mut self, name: &str, p: f64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("fault probability must be within 0..1, got {p}"));
        }
        let slot = match name {
            "internal-applied" => &mut self.internal_applied,
            "internal" => &mut self.internal,
            "kms-error" => &mut self.kms_error,
            "bad-gateway" | "502" => &mut self.bad_gateway,
            "reset-applied" => &mut self.reset_applied,
            "reset" => &mut self.reset,
            "hang-applied" => &mut self.hang_applied,
            "hang" => &mut self.hang,
            "hang-late" => &mut self.hang_late,
            "malformed" => &mut self.malformed,
            "describe-internal" => &mut self.describe_internal,
            _ => return Err(format!("unknown fault {name:?}; known: internal-applied, internal, kms-error, bad-gateway, reset-applied, reset, hang-applied, hang, hang-late, malformed, describe-internal")),
        };
        *slot = p;
        Ok(())
    }

    /// Spreads a total probability evenly over the Open faults (`open_total()`
    /// equals `total`), and a quarter of it on Describe.
    pub fn mixed(total: f64) -> Self {
        let each = total / Self::OPEN_FAULTS as f64;
        Faults {
            internal_applied: each,
            internal: each,
            kms_error: each,
            bad_gateway: each,
            reset_applied: each,
            reset: each,
            hang_applied: each,
            hang: each,
            hang_late: each,
            malformed: each,
            describe_internal: total / 4.0,
        }
    }

    pub fn open_total(&self) -> f64 {
        self.internal_applied
            + self.internal
            + self.kms_error
            + self.bad_gateway
            + self.reset_applied
            + self.reset
            + self.hang_applied
            + self.hang
            + self.hang_late
            + self.malformed
    }
}

/// A bad answer the emulator can give instead of a well-formed one: the shapes a
/// careful client must survive without a panic, without reading a `NO` into them
/// (a read) and without treating them as a refusal (a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAnswerKind {
    /// HTTP 200, a JSON body cut off mid-object (its first half says `Encryption: "NO"`).
    TruncatedJson,
    /// HTTP 200, valid JSON with the answer's fields but no `Response` envelope.
    MissingResponse,
    /// HTTP 200, `Response.Error` with a `Message` but no `Code`.
    ErrorWithoutCode,
    /// HTTP 200, a valid JSON answer (saying `NO`) over the client's 16 MiB body cap.
    Oversize,
    /// HTTP 200, `Content-Type: application/json`, an HTML body.
    NonJson200,
    /// HTTP 200 headers, then a body that trickles a byte every 100 ms and never
    /// completes (only the client's timeout ends it).
    SlowDrip,
    /// `Encryption` as a number (`0`). DescribeDBInstanceInfo only.
    EncryptionNumber,
    /// `Encryption: null`. DescribeDBInstanceInfo only.
    EncryptionNull,
    /// `Encryption: false`. DescribeDBInstanceInfo only.
    EncryptionBool,
    /// `Encryption: {"Value": "NO"}`. DescribeDBInstanceInfo only.
    EncryptionObject,
    /// `IsSupportEncryption` as a string (`"true"`). DescribeDBFeatures only.
    SupportEncryptionString,
    /// `EncryptionNeedUpgrade` as a string (`"false"`). DescribeDBFeatures only.
    NeedUpgradeString,
    /// `RequestId` as a number; the rest of the answer as usual. Every action.
    RequestIdNumber,
    /// `KeyMetadata.KeyState` as a number. kms DescribeKey only.
    KeyStateNumber,
}

impl BadAnswerKind {
    pub const ALL: [BadAnswerKind; 14] = [
        BadAnswerKind::TruncatedJson,
        BadAnswerKind::MissingResponse,
        BadAnswerKind::ErrorWithoutCode,
        BadAnswerKind::Oversize,
        BadAnswerKind::NonJson200,
        BadAnswerKind::SlowDrip,
        BadAnswerKind::EncryptionNumber,
        BadAnswerKind::EncryptionNull,
        BadAnswerKind::EncryptionBool,
        BadAnswerKind::EncryptionObject,
        BadAnswerKind::SupportEncryptionString,
        BadAnswerKind::NeedUpgradeString,
        BadAnswerKind::RequestIdNumber,
        BadAnswerKind::KeyStateNumber,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BadAnswerKind::TruncatedJson => "truncated-json",
            BadAnswerKind::MissingResponse => "missing-response",
            BadAnswerKind::ErrorWithoutCode => "error-without-code",
            BadAnswerKind::Oversize => "oversize",
            BadAnswerKind::NonJson200 => "non-json-200",
            BadAnswerKind::SlowDrip => "slow-drip",
            BadAnswerKind::EncryptionNumber => "encryption-number",
            BadAnswerKind::EncryptionNull => "encryption-null",
            BadAnswerKind::EncryptionBool => "encryption-bool",
            BadAnswerKind::EncryptionObject => "encryption-object",
            BadAnswerKind::SupportEncryptionString => "support-encryption-string",
            BadAnswerKind::NeedUpgradeString => "need-upgrade-string",
            BadAnswerKind::RequestIdNumber => "request-id-number",
            BadAnswerKind::KeyStateNumber => "key-state-number",
        }
    }

    pub fn parse(name: &str) -> Option<BadAnswerKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this kind can be an answer to `action` (a field kind only fits the
    /// action whose answer has that field).
    pub fn fits(self, action: &str) -> bool {
        match self {
            BadAnswerKind::EncryptionNumber
            | BadAnswerKind::EncryptionNull
            | BadAnswerKind::EncryptionBool
            | BadAnswerKind::EncryptionObject => action == DESCRIBE_DB_INSTANCE_INFO,
            BadAnswerKind::SupportEncryptionString | BadAnswerKind::NeedUpgradeString => {
                action == DESCRIBE_DB_FEATURES
            }
            BadAnswerKind::KeyStateNumber => action == DESCRIBE_KEY,
            _ => true,
        }
    }
}

/// `KIND[@ACTION]=P`: answer `ACTION` (every action KIND fits when omitted) with
/// a KIND bad answer with probability P. On an Open the encryption is applied
/// first (like the real `InternalError` after success), so ground truth is
/// "encrypted" whatever the client made of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BadAnswer {
    pub kind: BadAnswerKind,
    pub action: Option<String>,
    pub p: f64,
}

impl BadAnswer {
    pub fn new(kind: BadAnswerKind, action: Option<&str>, p: f64) -> BadAnswer {
        BadAnswer {
            kind,
            action: action.map(str::to_string),
            p,
        }
    }

    /// Parses `KIND[@ACTION]=P`.
    pub fn parse(spec: &str) -> Result<BadAnswer, String> {
        let (lhs, p) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected KIND[@ACTION]=P"))?;
        let p: f64 = p
            .parse()
            .map_err(|_| format!("{spec:?}: bad probability"))?;
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{spec:?}: probability must be within 0..1"));
        }
        let (kind, action) = match lhs.split_once('@') {
            Some((k, a)) => (k, Some(a)),
            None => (lhs, None),
        };
        let kind = BadAnswerKind::parse(kind).ok_or_else(|| {
            let known: Vec<&str> = BadAnswerKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown bad answer {kind:?}; known: {}", known.join(", "))
        })?;
        if let Some(a) = action {
            const ACTIONS: [&str; 5] = [
                OPEN_DB_INSTANCE_ENCRYPTION,
                DESCRIBE_DB_INSTANCE_INFO,
                DESCRIBE_DB_FEATURES,
                DESCRIBE_DB_INSTANCES,
                DESCRIBE_KEY,
            ];
            if !ACTIONS.contains(&a) {
                return Err(format!(
                    "{spec:?}: unknown action {a:?}; known: {}",
                    ACTIONS.join(", ")
                ));
            }
            if !kind.fits(a) {
                return Err(format!("{spec:?}: {} does not fit {a}", kind.name()));
            }
        }
        Ok(BadAnswer::new(kind, action, p))
    }

    pub fn applies_to(&self, action: &str) -> bool {
        self.kind.fits(action) && self.action.as_deref().is_none_or(|a| a == action)
    }
}

/// Everything that shapes the emulator's behaviour.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Accepted `(SecretId, SecretKey)` pairs (an operator may rehearse with real ones).
    pub credentials: Vec<(String, Secret)>,
    /// Requests per sliding second per (action, Host, SecretId); 0 = unlimited.
    pub rate_limits: HashMap<String, u32>,
    /// Latency per action; actions not listed answer at once.
    pub latency: HashMap<String, Latency>,
    pub faults: Faults,
    /// Delay between the encryption being applied and `Encryption` reading `YES`,
    /// drawn per instance, uniformly from the range, when it is applied.
    pub propagation: Latency,
    /// For this long after an instance's encryption is applied,
    /// `DescribeDBInstanceInfo` answers `"Encryption": ""` (neither YES nor NO);
    /// afterwards the normal rule (`YES` once `propagation` has passed, `NO`
    /// before). Zero (the default) turns it off.
    pub blank_after_apply: Duration,
    /// For faults that apply in the background: applied within this long after the answer.
    pub apply_within: Duration,
    /// How long a hung call holds the connection before answering (after its
    /// latency). Default 20 s: a hang must outlast the client's default 15 s
    /// timeout to be a hang at all, yet the server's worst case (Open latency up
    /// to 10 s, plus the hang) must stay under the client's default 60 s settle
    /// window; with a longer hang a `hang-late` call could apply after every
    /// `NO` a client may trust, and no client could be safe.
    pub hang_for: Duration,
    /// Largest accepted |timestamp - now| (Tencent: 5 minutes).
    pub max_skew: Duration,
    /// Bad answers by probability (see [`BadAnswer`]); the first that fires wins.
    pub bad_answers: Vec<BadAnswer>,
    /// Session tokens by SecretId: a request with one of these SecretIds must
    /// carry exactly this `X-TC-Token` (`AuthFailure.TokenFailure` otherwise).
    /// SecretIds not listed take requests with or without a token.
    pub tokens: HashMap<String, Secret>,
    /// Regions whose KMS service is off (`GetServiceStatus` answers
    /// `ServiceEnabled: false`); `*` turns it off everywhere.
    pub kms_off: Vec<String>,
    /// What `ListAttachedRolePolicies` shows for `MySQL_QCSRole`.
    pub mysql_role: RoleState,
    /// CAM refuses the caller (`AuthFailure.UnauthorizedOperation`), as for a
    /// sub-account without `cam:ListAttachedRolePolicies`.
    pub cam_denied: bool,
    /// The emulator's clock runs this many seconds ahead (negative: behind) of
    /// the host's: in its `Date` header and in its signature timestamp check.
    pub clock_offset_secs: i64,
    pub seed: u64,
}

/// The documented per-action limits (reference §3.5).
pub fn documented_rate_limits() -> HashMap<String, u32> {
    [
        (OPEN_DB_INSTANCE_ENCRYPTION, 20),
        (DESCRIBE_DB_INSTANCE_INFO, 20),
        (DESCRIBE_DB_FEATURES, 20),
        (DESCRIBE_DB_INSTANCES, 100),
        (DESCRIBE_KEY, 20),
        (GET_SERVICE_STATUS, 100),
        (LIST_ATTACHED_ROLE_POLICIES, 10),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect()
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let mut latency = HashMap::new();
        latency.insert(
            OPEN_DB_INSTANCE_ENCRYPTION.to_string(),
            Latency::between(Duration::from_millis(500), Duration::from_secs(10)),
        );
        for a in [
            DESCRIBE_DB_INSTANCE_INFO,
            DESCRIBE_DB_FEATURES,
            DESCRIBE_DB_INSTANCES,
            DESCRIBE_KEY,
            GET_SERVICE_STATUS,
            LIST_ATTACHED_ROLE_POLICIES,
        ] {
            latency.insert(
                a.to_string(),
                Latency::between(Duration::from_millis(20), Duration::from_millis(150)),
            );
        }
        EmulatorConfig {
            credentials: Vec::new(),
            rate_limits: documented_rate_limits(),
            latency,
            faults: Faults::default(),
            propagation: Latency::ZERO,
            blank_after_apply: Duration::ZERO,
            apply_within: Duration::from_secs(2),
            hang_for: Duration::from_secs(20),
            max_skew: Duration::from_secs(300),
            bad_answers: Vec::new(),
            tokens: HashMap::new(),
            kms_off: Vec::new(),
            mysql_role: RoleState::Attached,
            cam_denied: false,
            clock_offset_secs: 0,
            seed: 42,
        }
    }
}

impl EmulatorConfig {
    /// The emulator's clock, Unix seconds: the host's plus `clock_offset_secs`.
    pub fn now_unix(&self) -> i64 {
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        host + self.clock_offset_secs
    }

    /// Whether KMS is on in `region` (`GetServiceStatus`).
    pub fn kms_enabled(&self, region: &str) -> bool {
        !self.kms_off.iter().any(|r| r == "*" || r == region)
    }

    /// No latency anywhere: for tests and throughput benchmarks.
    pub fn instant(mut self) -> Self {
        self.latency.clear();
        self
    }

    /// Multiplies every latency, the background-apply window, the hang time,
    /// the propagation delay and the blank-after-apply period.
    pub fn time_scaled(mut self, f: f64) -> Self {
        for l in self.latency.values_mut() {
            *l = l.scaled(f);
        }
        self.apply_within = self.apply_within.mul_f64(f);
        self.hang_for = self.hang_for.mul_f64(f);
        self.propagation = self.propagation.scaled(f);
        self.blank_after_apply = self.blank_after_apply.mul_f64(f);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_spreads_the_total_over_every_open_fault() {
        let f = Faults::mixed(0.2);
        assert!((f.open_total() - 0.2).abs() < 1e-12, "{}", f.open_total());
        assert!((f.hang_late - 0.02).abs() < 1e-12);
        assert_eq!(f.hang_late, f.internal_applied);
        let mut g = Faults::default();
        g.set("hang-late", 0.5).unwrap();
        assert_eq!(g.hang_late, 0.5);
        assert!(g.set("hang-late", 1.5).is_err());
        assert!(g.set("nope", 0.1).unwrap_err().contains("hang-late"));
    }

    #[test]
    fn bad_answer_specs_parse_and_target_actions() {
        let b = BadAnswer::parse("slow-drip@OpenDBInstanceEncryption=0.5").unwrap();
        assert_eq!(b.kind, BadAnswerKind::SlowDrip);
        assert!(b.applies_to(OPEN_DB_INSTANCE_ENCRYPTION));
        assert!(!b.applies_to(DESCRIBE_DB_INSTANCE_INFO));
        let b = BadAnswer::parse("encryption-null=1").unwrap();
        assert!(b.applies_to(DESCRIBE_DB_INSTANCE_INFO));
        assert!(!b.applies_to(OPEN_DB_INSTANCE_ENCRYPTION));
        assert!(BadAnswer::parse("encryption-null@DescribeDBFeatures=1").is_err());
        assert!(BadAnswer::parse("oversize@Nope=1").is_err());
        assert!(BadAnswer::parse("oversize=2").is_err());
        assert!(BadAnswer::parse("nope=0.1")
            .unwrap_err()
            .contains("slow-drip"));
        for k in BadAnswerKind::ALL {
            assert_eq!(BadAnswerKind::parse(k.name()), Some(k));
        }
    }

    #[test]
    fn hang_defaults_fit_between_the_client_timeout_and_its_settle_window() {
        let c = EmulatorConfig::default();
        let open = c.latency[OPEN_DB_INSTANCE_ENCRYPTION];
        assert!(
            c.hang_for > Duration::from_secs(15),
            "past the 15 s timeout"
        );
        assert!(
            open.max + c.hang_for < Duration::from_secs(60),
            "worst case under the 60 s settle window"
        );
        assert_eq!(c.blank_after_apply, Duration::ZERO);
        let s = EmulatorConfig {
            blank_after_apply: Duration::from_secs(4),
            ..EmulatorConfig::default()
        }
        .time_scaled(0.5);
        assert_eq!(s.blank_after_apply, Duration::from_secs(2));
        assert_eq!(s.hang_for, Duration::from_secs(10));
    }
}
