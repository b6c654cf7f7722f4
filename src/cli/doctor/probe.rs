//! The few signed reads behind the checklist: one per endpoint in use
//! (credentials, reachability, latency, the server's clock), kms
//! `GetServiceStatus` per region used and cam `ListAttachedRolePolicies` for
//! the CDB service role. None of these actions is one a run sends, and each
//! leaves through a strict sliding log per (endpoint, action) at the lower of
//! `--rate` and the action's documented limit, so they cannot take a run's
//! quota or break a limit however many regions there are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::checklist::{mask_secret_id, skew_level, Checklist, Level, SKEW_FAIL_SECS};
use crate::api::cam::{
    ListAttachedRolePoliciesResponse, LIST_ATTACHED_ROLE_POLICIES, MYSQL_ROLE, MYSQL_ROLE_POLICY,
    ROLE_NOT_EXIST,
};
use crate::api::cdb::DESCRIBE_DB_INSTANCES;
use crate::api::kms::{GetServiceStatusResponse, GET_SERVICE_STATUS};
use crate::api::{Answer, Called, Client, Endpoint, EndpointPolicy, Failure, Service};
use crate::model::hint;
use crate::runner::limiter::SlidingLog;

/// The region an endpoint read is sent for when no region is known.
const PROBE_REGION: &str = "ap-guangzhou";

/// The documented limit of each action the probe sends (reference §3.5, §5.5, §5.6).
fn documented_limit(action: &str) -> u32 {
    match action {
        DESCRIBE_DB_INSTANCES => 100,
        GET_SERVICE_STATUS => 100,
        LIST_ATTACHED_ROLE_POLICIES => 10,
        _ => 20,
    }
}

/// What the probe looks at.
pub(super) struct Scope<'a> {
    pub client: &'a Client,
    pub policy: &'a EndpointPolicy,
    /// Instance regions and key regions in use (KMS must be on in each).
    pub regions: &'a BTreeSet<String>,
    /// Where the credentials were found, for the checklist.
    pub source: &'a str,
    /// Requests per second per action per endpoint, as the run's `--rate`.
    pub rate: u32,
    /// The run's limiter margin on the 1-second window.
    pub margin: Duration,
}

/// What the probe measured, for the ETA.
#[derive(Debug, Default)]
pub(super) struct Measured {
    /// Read latency per cdb endpoint host that answered.
    pub latency: BTreeMap<String, Duration>,
    /// How many requests the probe sent.
    pub requests: u32,
}

/// How an answer that is an API error bears on the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The API refused the credentials themselves (key, signature, token, clock).
    Credentials,
    /// The credentials are fine but may not do this (CAM permission).
    Permission,
    Other,
}

fn refused(code: &str) -> Refused {
    let within = |p: &str| code == p || code.starts_with(&format!("{p}."));
    if code == "AuthFailure.UnauthorizedOperation"
        || within("UnauthorizedOperation")
        || within("OperationDenied")
    {
        Refused::Permission
    } else if within("AuthFailure") {
        Refused::Credentials
    } else {
        Refused::Other
    }
}

fn code_and_message(f: &Failure) -> String {
    format!("{}: {}", f.code(), f.message())
}

struct Probe<'a> {
    scope: &'a Scope<'a>,
    logs: HashMap<(String, &'static str), SlidingLog>,
    /// (server minus local in ms, the answer's latency) for every dated answer.
    clocks: Vec<(i64, Duration)>,
    requests: u32,
}

impl Probe<'_> {
    /// One call, paced by its (endpoint, action) sliding log, retried twice
    /// when throttled (another client shares the quota).
    async fn call<R: DeserializeOwned>(
        &mut self,
        ep: &Endpoint,
        service: Service,
        action: &'static str,
        region: Option<&str>,
        params: &Value,
    ) -> Called<Answer<R>> {
        let rate = self.scope.rate.min(documented_limit(action));
        let mut attempt = 0;
        loop {
            let window = Duration::from_secs(1) + self.scope.margin;
            let log = self
                .logs
                .entry((ep.host.clone(), action))
                .or_insert_with(|| SlidingLog::new(rate as usize, window));
            let free = log.next_free(Instant::now());
            tokio::time::sleep_until(free.into()).await;
            let called: Called<Answer<R>> = self
                .scope
                .client
                .call(ep, service, action, region, params)
                .await;
            self.requests += 1;
            // Where the request was written: as late as it could have left, so
            // the log is never looser than the server's count.
            if let Some(log) = self.logs.get_mut(&(ep.host.clone(), action)) {
                log.record(called.written_at.max(called.sent_at));
            }
            if let Some(server) = called.server_date {
                // The Date header has whole seconds: its midpoint, against the
                // local time halfway through the exchange.
                let local = called.sent_at_ms + called.latency.as_millis() as i64 / 2;
                self.clocks
                    .push((server * 1000 + 500 - local, called.latency));
            }
            let throttled = matches!(&called.result,
                Err(Failure::Api { code, .. }) if code.starts_with("RequestLimitExceeded"));
            if throttled && attempt < 2 {
                attempt += 1;
                tokio::time::sleep(window).await;
                continue;
            }
            return called;
        }
    }

    /// The skew from the most precise (fastest) dated answer, in whole seconds.
    fn skew(&self) -> Option<(i64, usize)> {
        let (ms, _) = self.clocks.iter().min_by_key(|(_, latency)| *latency)?;
        Some(((*ms as f64 / 1000.0).round() as i64, self.clocks.len()))
    }
}

/// The cdb endpoint of every region in use, with the region its read goes for.
fn cdb_endpoints(
    policy: &EndpointPolicy,
    regions: &BTreeSet<String>,
) -> Result<BTreeMap<String, (Endpoint, String)>, String> {
    let mut out = BTreeMap::new();
    let fallback = [PROBE_REGION.to_string()];
    let regions: Vec<&String> = if regions.is_empty() {
        fallback.iter().collect()
    } else {
        regions.iter().collect()
    };
    for region in regions {
        let ep = policy
            .resolve(Service::Cdb, region)
            .map_err(|e| e.to_string())?;
        out.entry(ep.host.clone())
            .or_insert_with(|| (ep, region.clone()));
    }
    Ok(out)
}

/// Runs the probe into `list`: credentials, endpoints, clock, KMS, the role.
pub(super) async fn probe(scope: &Scope<'_>, list: &mut Checklist) -> Measured {
    let mut p = Probe {
        scope,
        logs: HashMap::new(),
        clocks: Vec::new(),
        requests: 0,
    };
    let mut measured = Measured::default();
    let secret_id = mask_secret_id(scope.client.secret_id());
    let who = format!("from {}, SecretId {secret_id}", scope.source);
    let endpoints = match cdb_endpoints(scope.policy, scope.regions) {
        Ok(e) => e,
        Err(e) => {
            list.push_fix(Level::Fail, "endpoint", e, "check --endpoint");
            return measured;
        }
    };

    // One read per endpoint: the credentials, the network, the latency, the clock.
    let mut endpoint_items = Checklist {
        account: list.account.clone(),
        ..Checklist::default()
    };
    let mut accepted_by = None;
    let mut credentials_refused: Option<Failure> = None;
    for (host, (ep, region)) in &endpoints {
        let what = format!("endpoint {host}");
        let called: Called<Answer<Value>> = p
            .call(
                ep,
                Service::Cdb,
                DESCRIBE_DB_INSTANCES,
                Some(region),
                &json!({"Limit": 1}),
            )
            .await;
        let ms = called.latency.as_millis();
        match &called.result {
            Ok(_) => {
                measured.latency.insert(host.clone(), called.latency);
                accepted_by.get_or_insert_with(|| host.clone());
                endpoint_items.push(
                    Level::Pass,
                    what,
                    format!("DescribeDBInstances ({region}) answered in {ms} ms"),
                );
            }
            Err(f @ Failure::NotSent(_)) => endpoint_items.push_fix(
                Level::Fail,
                what,
                format!("cannot reach the API at {host}: {}", f.message()),
                "check --endpoint (and --resolve), DNS, proxies and the network",
            ),
            Err(f @ Failure::Api { code, .. }) => match refused(code) {
                Refused::Credentials => {
                    endpoint_items.push(
                        Level::Skipped,
                        what,
                        format!("reachable ({ms} ms), but the credentials were refused"),
                    );
                    credentials_refused.get_or_insert_with(|| f.clone());
                }
                Refused::Permission => {
                    measured.latency.insert(host.clone(), called.latency);
                    accepted_by.get_or_insert_with(|| host.clone());
                    endpoint_items.push_fix(
                        Level::Warn,
                        what,
                        format!("reachable ({ms} ms), but {}", code_and_message(f)),
                        "grant the sub-account read access to CDB (e.g. the preset policy QcloudCDBReadOnlyAccess)",
                    );
                }
                Refused::Other => {
                    measured.latency.insert(host.clone(), called.latency);
                    accepted_by.get_or_insert_with(|| host.clone());
                    endpoint_items.push_fix(
                        Level::Warn,
                        what,
                        format!(
                            "reachable ({ms} ms), but it answered {}",
                            code_and_message(f)
                        ),
                        "try again; if it persists, look at the code above",
                    );
                }
            },
            Err(f) => endpoint_items.push_fix(
                Level::Warn,
                what,
                format!("no usable answer: {}", code_and_message(f)),
                "check --endpoint and the network; the run retries such answers",
            ),
        }
    }
    match (&credentials_refused, &accepted_by) {
        (Some(f), _) => {
            list.credentials_failed = true;
            let fix = match f.code().as_str() {
                "AuthFailure.SignatureExpire" => "the local clock is more than 5 minutes off Tencent Cloud's: fix NTP".to_string(),
                "AuthFailure.SecretIdNotFound" | "AuthFailure.InvalidSecretId" => "the SecretId is unknown or disabled: check it for typos and stray spaces, and its status in the CAM console (API keys)".to_string(),
                "AuthFailure.SignatureFailure" => "the SecretKey does not match the SecretId: check the key (and that it is the pair's own)".to_string(),
                "AuthFailure.TokenFailure" => "the session token is missing, wrong or expired: refresh TENCENTCLOUD_TOKEN / the profile's token".to_string(),
                code => hint(code).unwrap_or("check the credentials").to_string(),
            };
            list.push_fix(
                Level::Fail,
                "credentials",
                format!("{who}: the API refused them: {}", code_and_message(f)),
                fix,
            );
        }
        (None, Some(host)) => list.push(
            Level::Pass,
            "credentials",
            format!("{who}: accepted by {host}"),
        ),
        (None, None) => list.push_fix(
            Level::Warn,
            "credentials",
            format!("{who}: not verified, no endpoint answered"),
            "fix the endpoint first",
        ),
    }
    list.items.append(&mut endpoint_items.items);

    // The clock goes here, read once every answer is in (error answers count too).
    let clock_at = list.items.len();
    if list.credentials_failed {
        for what in ["KMS", "role"] {
            list.push(
                Level::Skipped,
                what,
                "not checked: the credentials were refused",
            );
        }
    } else {
        kms(&mut p, list).await;
        role(&mut p, list).await;
    }
    let mut clock_item = Checklist {
        account: list.account.clone(),
        ..Checklist::default()
    };
    clock(&p, &mut clock_item);
    list.items.splice(clock_at..clock_at, clock_item.items);
    measured.requests = p.requests;
    measured
}

fn clock(p: &Probe<'_>, list: &mut Checklist) {
    let Some((skew, answers)) = p.skew() else {
        list.push_fix(
            Level::Warn,
            "clock",
            "cannot check: no answer carried a Date header",
            "make sure the local clock is synchronised (NTP): the API refuses signatures 5 minutes off",
        );
        return;
    };
    let direction = match skew {
        0 => "in step with".to_string(),
        s if s > 0 => format!("{s} s behind"),
        s => format!("{} s ahead of", -s),
    };
    let found = format!(
        "the local clock is {direction} the server's (Date header of {answers} answer(s); warn at 60 s, fail at {SKEW_FAIL_SECS} s, the API refuses 300 s)"
    );
    match skew_level(skew) {
        Level::Pass => list.push(Level::Pass, "clock", found),
        level => list.push_fix(
            level,
            "clock",
            found,
            "synchronise the local clock (NTP, e.g. `chronyc makestep` or `timedatectl set-ntp true`)",
        ),
    }
}

/// KMS must be on in every region used (`GetServiceStatus`, region-scoped).
async fn kms(p: &mut Probe<'_>, list: &mut Checklist) {
    if p.scope.regions.is_empty() {
        list.push_fix(
            Level::Warn,
            "KMS",
            "not checked: no region known",
            "pass --instances FILE or --region R (or set TENCENTCLOUD_REGION)",
        );
        return;
    }
    for region in p.scope.regions {
        let what = format!("KMS in {region}");
        let ep = match p.scope.policy.resolve(Service::Kms, region) {
            Ok(ep) => ep,
            Err(e) => {
                list.push_fix(Level::Fail, what, e.to_string(), "check --endpoint");
                continue;
            }
        };
        let called: Called<Answer<GetServiceStatusResponse>> = p
            .call(
                &ep,
                Service::Kms,
                GET_SERVICE_STATUS,
                Some(region),
                &json!({}),
            )
            .await;
        match called.result {
            Ok(a) if a.data.service_enabled => list.push(
                Level::Pass,
                what,
                "enabled (kms GetServiceStatus)",
            ),
            Ok(a) => list.push_fix(
                Level::Fail,
                what,
                format!(
                    "not enabled (kms GetServiceStatus: ServiceEnabled false, {})",
                    a.data.invalid_reason()
                ),
                format!("activate Key Management Service for the account (KMS console, region {region}); CDB cannot encrypt without it"),
            ),
            Err(f) => {
                let permission = matches!(&f, Failure::Api { code, .. } if refused(code) != Refused::Other);
                list.push_fix(
                    Level::Warn,
                    what,
                    format!("cannot check: {}", code_and_message(&f)),
                    if permission {
                        "grant kms:GetServiceStatus, or confirm in the KMS console that KMS is enabled"
                    } else {
                        "confirm in the KMS console that KMS is enabled"
                    },
                );
            }
        }
    }
}

/// The role `MySQL_QCSRole` with `QcloudAccessForMySQLRole` attached (reference
/// §5.6). A caller that may not read CAM gets "cannot check", never "missing".
async fn role(p: &mut Probe<'_>, list: &mut Checklist) {
    let what = format!("role {MYSQL_ROLE}");
    let region = p.scope.regions.iter().next().cloned().unwrap_or_default();
    let ep = match p.scope.policy.resolve(Service::Cam, &region) {
        Ok(ep) => ep,
        Err(e) => {
            list.push_fix(Level::Fail, what, e.to_string(), "check --endpoint");
            return;
        }
    };
    let fix = format!(
        "attach the preset policy {MYSQL_POLICY} to the role {MYSQL_ROLE} (CAM console, Roles), or authorise KMS access on the CDB console's data encryption page, which creates the role with it",
        MYSQL_POLICY = MYSQL_ROLE_POLICY
    );
    let called: Called<Answer<ListAttachedRolePoliciesResponse>> = p
        .call(
            &ep,
            Service::Cam,
            LIST_ATTACHED_ROLE_POLICIES,
            None,
            &json!({"Page": 1, "Rp": 200, "RoleName": MYSQL_ROLE}),
        )
        .await;
    match called.result {
        Ok(a)
            if a.data
                .list
                .iter()
                .any(|p| p.policy_name == MYSQL_ROLE_POLICY) =>
        {
            list.push(
                Level::Pass,
                what,
                format!("{MYSQL_ROLE_POLICY} attached (cam ListAttachedRolePolicies)"),
            )
        }
        Ok(a) => {
            let names: Vec<&str> = a.data.list.iter().map(|p| p.policy_name.as_str()).collect();
            list.push_fix(
                Level::Fail,
                what,
                format!(
                    "the role exists without {MYSQL_ROLE_POLICY} (attached: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
                fix,
            );
        }
        Err(Failure::Api { code, message, .. })
            if code == ROLE_NOT_EXIST || code.ends_with("RoleNotExist") =>
        {
            list.push_fix(
                Level::Fail,
                what,
                format!("no such role ({code}: {message})"),
                fix,
            )
        }
        Err(f) => {
            let permission =
                matches!(&f, Failure::Api { code, .. } if refused(code) != Refused::Other);
            list.push_fix(
                Level::Warn,
                what,
                format!(
                    "cannot check: {}{}",
                    if permission { "the caller may not read CAM: " } else { "" },
                    code_and_message(&f)
                ),
                format!("grant cam:ListAttachedRolePolicies, or have an administrator confirm that {MYSQL_ROLE} has {MYSQL_ROLE_POLICY}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_key_itself_are_credential_failures() {
        for code in [
            "AuthFailure.SignatureFailure",
            "AuthFailure.SecretIdNotFound",
            "AuthFailure.SignatureExpire",
            "AuthFailure.TokenFailure",
            "AuthFailure",
        ] {
            assert_eq!(refused(code), Refused::Credentials, "{code}");
        }
        for code in [
            "AuthFailure.UnauthorizedOperation",
            "UnauthorizedOperation",
            "UnauthorizedOperation.DeleteApiKey",
            "OperationDenied",
        ] {
            assert_eq!(refused(code), Refused::Permission, "{code}");
        }
        for code in [
            "InternalError",
            "AuthFailureX",
            "InvalidParameter.RoleNotExist",
        ] {
            assert_eq!(refused(code), Refused::Other, "{code}");
        }
    }

    #[test]
    fn one_read_per_endpoint_host() {
        let regions: BTreeSet<String> = ["ap-guangzhou", "ap-shanghai"]
            .into_iter()
            .map(String::from)
            .collect();
        let one = cdb_endpoints(&EndpointPolicy::Default, &regions).unwrap();
        assert_eq!(one.len(), 1, "{one:?}");
        let two = cdb_endpoints(&EndpointPolicy::Regional, &regions).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two["cdb.ap-shanghai.tencentcloudapi.com"].1, "ap-shanghai");
        let none = cdb_endpoints(&EndpointPolicy::Default, &BTreeSet::new()).unwrap();
        assert_eq!(none.values().next().unwrap().1, PROBE_REGION);
    }
}
