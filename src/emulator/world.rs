//! The emulated cloud: instances, KMS keys, and the ground truth of what was
//! done to them, which tests compare with the journal.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Instance roles as `DescribeDBInstances.InstanceType` numbers them.
pub const MASTER: i64 = 1;
pub const READ_ONLY: i64 = 3;

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub region: String,
    pub zone: String,
    pub instance_type: i64,
    pub status: i64,
    pub init_flag: i64,
    pub supports_encryption: bool,
    pub needs_upgrade: bool,
    pub tags: Vec<(String, String)>,
    /// Ground truth: encryption applied (irreversible).
    pub encrypted: bool,
    /// When `Encryption` starts reading `YES` (propagation delay).
    pub visible_at: Option<Instant>,
    /// Until when `Encryption` reads `""` after the apply (`blank_after_apply`).
    pub blank_until: Option<Instant>,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    /// Open calls that reached the instance (past auth and rate limit).
    pub open_calls: u32,
    /// Of those, how many arrived when it was already encrypted.
    pub open_calls_when_encrypted: u32,
    /// Open calls that arrived with no `NO` read in between, taken after the
    /// previous call was fully settled: the re-sends a careful client never makes.
    pub blind_open_calls: u32,
    /// Open calls that arrived while an earlier Open for this instance was still
    /// being worked on (see `opens_in_progress`).
    pub overlapping_open_calls: u32,
    /// Opens accepted and not finished: from their acceptance until their answer
    /// is produced, including a hang and a pending background apply.
    pub opens_in_progress: u32,
    /// Background applications scheduled and not yet done.
    pub pending_apply: u32,
    /// Whether a settled NO was read since the last Open: a `NO` taken while no
    /// Open was in progress and no apply was pending.
    pub no_read_since_last_open: bool,
    /// For generated fleets: the custom key (id, region) the owner means to use.
    pub planned_key: Option<(String, String)>,
    /// The account that owns it, as the SecretId that may see it (several
    /// accounts, issue 12): any other credential is told it does not exist.
    /// `None`: every accepted credential sees it.
    pub owner: Option<String>,
}

impl Instance {
    pub fn new(id: &str, region: &str) -> Self {
        Instance {
            id: id.to_string(),
            name: id.to_string(),
            region: region.to_string(),
            zone: format!("{region}-1"),
            instance_type: MASTER,
            status: 1,
            init_flag: 1,
            supports_encryption: true,
            needs_upgrade: false,
            tags: Vec::new(),
            encrypted: false,
            visible_at: None,
            blank_until: None,
            key_id: None,
            key_region: None,
            open_calls: 0,
            open_calls_when_encrypted: 0,
            blind_open_calls: 0,
            overlapping_open_calls: 0,
            opens_in_progress: 0,
            pending_apply: 0,
            no_read_since_last_open: true,
            planned_key: None,
            owner: None,
        }
    }

    pub fn pre_encrypted(mut self) -> Self {
        self.encrypted = true;
        self.key_id = Some("KMS-CDB".into());
        self.key_region = Some(self.region.clone());
        self
    }

    pub fn encryption_visible(&self, now: Instant) -> bool {
        self.encrypted && self.visible_at.is_none_or(|t| now >= t)
    }

    /// What `DescribeDBInstanceInfo` says in `Encryption` at `now`: `""` during
    /// the blank period after the apply, then `YES` once visible, `NO` before.
    pub fn encryption_reading(&self, now: Instant) -> &'static str {
        if self.encrypted && self.blank_until.is_some_and(|t| now < t) {
            ""
        } else if self.encryption_visible(now) {
            "YES"
        } else {
            "NO"
        }
    }

    /// Marks the encryption applied at `now` (idempotent: the first apply wins).
    pub fn apply_encryption(&mut self, now: Instant, propagation: Duration, blank: Duration) {
        if !self.encrypted {
            self.encrypted = true;
            self.visible_at = Some(now + propagation);
            self.blank_until = (!blank.is_zero()).then(|| now + blank);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub region: String,
    pub state: String,
}

/// All instances and keys.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub instances: BTreeMap<String, Instance>,
    /// Keyed by (region, key id).
    pub keys: HashMap<(String, String), Key>,
}

/// Shares for `--generate N`.
#[derive(Debug, Clone)]
pub struct Generate {
    pub count: usize,
    pub regions: Vec<String>,
    pub share_encrypted: f64,
    pub share_unsupported: f64,
    pub share_needs_upgrade: f64,
    pub share_custom_key: f64,
    /// Of the custom keys, the share that are Disabled.
    pub share_disabled_key: f64,
    /// Read-only and DR instances beside the masters (for `discover`).
    pub share_replicas: f64,
    pub seed: u64,
}

impl Default for Generate {
    fn default() -> Self {
        Generate {
            count: 100,
            regions: vec![
                "ap-guangzhou".into(),
                "ap-shanghai".into(),
                "ap-singapore".into(),
            ],
            share_encrypted: 0.1,
            share_unsupported: 0.02,
            share_needs_upgrade: 0.02,
            share_custom_key: 0.2,
            share_disabled_key: 0.1,
            share_replicas: 0.0,
            seed: 42,
        }
    }
}

const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_id(rng: &mut StdRng, prefix: &str) -> String {
    let mut s = String::from(prefix);
    for _ in 0..8 {
        s.push(ID_CHARS[rng.random_range(0..ID_CHARS.len())] as char);
    }
    s
}

/// A deterministic UUID-shaped key id.
pub fn random_key_id(rng: &mut StdRng) -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap())
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl World {
    pub fn add_instance(&mut self, inst: Instance) {
        self.instances.insert(inst.id.clone(), inst);
    }

    pub fn add_key(&mut self, id: &str, region: &str, state: &str) {
        self.keys.insert(
            (region.to_string(), id.to_string()),
            Key {
                id: id.to_string(),
                region: region.to_string(),
                state: state.to_string(),
            },
        );
    }

    /// A random fleet with the given shares; the same seed gives the same world.
    pub fn generate(g: &Generate) -> World {
        let mut rng = StdRng::seed_from_u64(g.seed);
        let mut world = World::default();
        let regions = if g.regions.is_empty() {
            vec!["ap-guangzhou".to_string()]
        } else {
            g.regions.clone()
        };
        // One custom key per region, and a disabled one.
        let mut enabled_keys = HashMap::new();
        let mut disabled_keys = HashMap::new();
        for r in &regions {
            let k = random_key_id(&mut rng);
            world.add_key(&k, r, "Enabled");
            enabled_keys.insert(r.clone(), k);
            let d = random_key_id(&mut rng);
            world.add_key(&d, r, "Disabled");
            disabled_keys.insert(r.clone(), d);
        }
        let mut made = 0;
        while made < g.count {
            let id = random_id(&mut rng, "cdb-");
            if world.instances.contains_key(&id) {
                continue;
            }
            let region = regions[made % regions.len()].clone();
            let mut inst = Instance::new(&id, &region);
            inst.name = format!("fleet-{made:05}");
            inst.tags = vec![
                (
                    "env".into(),
                    if made % 3 == 0 { "staging" } else { "prod" }.into(),
                ),
                ("team".into(), format!("team-{}", made % 7)),
            ];
            if rng.random_bool(g.share_custom_key.clamp(0.0, 1.0)) {
                let key = if rng.random_bool(g.share_disabled_key.clamp(0.0, 1.0)) {
                    &disabled_keys[&region]
                } else {
                    &enabled_keys[&region]
                };
                inst.planned_key = Some((key.clone(), region.clone()));
            }
            if rng.random_bool(g.share_encrypted.clamp(0.0, 1.0)) {
                inst = inst.pre_encrypted();
            } else if rng.random_bool(g.share_unsupported.clamp(0.0, 1.0)) {
                inst.supports_encryption = false;
            } else if rng.random_bool(g.share_needs_upgrade.clamp(0.0, 1.0)) {
                inst.needs_upgrade = true;
            }
            world.add_instance(inst);
            made += 1;
            if rng.random_bool(g.share_replicas.clamp(0.0, 1.0)) {
                let ro_id = random_id(&mut rng, "cdbro-");
                let mut ro = Instance::new(&ro_id, &region);
                ro.instance_type = READ_ONLY;
                world.add_instance(ro);
            }
        }
        world
    }

    /// The masters as an input CSV (InstanceId, Region, KeyId, KeyRegion, Name), with each
    /// instance's planned custom key: the fleet file an operator would hand to `run`.
    pub fn fleet_csv(&self) -> String {
        let mut out = String::from("InstanceId,Region,KeyId,KeyRegion,Name\n");
        for i in self
            .instances
            .values()
            .filter(|i| i.instance_type == MASTER)
        {
            let (k, kr) = i.planned_key.clone().unwrap_or_default();
            out.push_str(&format!("{},{},{k},{kr},{}\n", i.id, i.region, i.name));
        }
        out
    }

    /// The custom keys `generate` made: (region, enabled key, disabled key).
    pub fn keys_by_region(&self) -> Vec<(String, String, String)> {
        let mut regions: Vec<String> = self.keys.keys().map(|(r, _)| r.clone()).collect();
        regions.sort();
        regions.dedup();
        regions
            .into_iter()
            .filter_map(|r| {
                let find = |state: &str| {
                    let mut ks: Vec<&Key> = self
                        .keys
                        .values()
                        .filter(|k| k.region == r && k.state == state)
                        .collect();
                    ks.sort_by(|a, b| a.id.cmp(&b.id));
                    ks.first().map(|k| k.id.clone())
                };
                Some((r.clone(), find("Enabled")?, find("Disabled")?))
            })
            .collect()
    }
}

/// Per-instance ground truth, as served at `/__emulator/state`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstanceTruth {
    pub region: String,
    pub instance_type: i64,
    pub encrypted: bool,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    pub open_calls: u32,
    pub open_calls_when_encrypted: u32,
    pub blind_open_calls: u32,
    /// Opens that arrived while an earlier Open for the same instance was still
    /// being worked on (hanging, in latency, or with its apply pending).
    pub overlapping_open_calls: u32,
}

/// Per-action counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActionTruth {
    /// Requests past authentication (accepted + throttled).
    pub seen: u64,
    pub accepted: u64,
    pub throttled: u64,
    /// Largest number of requests seen in any sliding 1-second window, for one
    /// (Host, SecretId) quota (the unit the limit applies to).
    pub max_in_1s_window: usize,
    /// The same for one Host over every credential together (several
    /// accounts each have their own quota, so this may exceed the limit).
    pub max_in_1s_window_all_credentials: usize,
    /// Answers given as a configured bad answer (`EmulatorConfig::bad_answers`).
    pub bad_answers: u64,
}

/// Everything the emulator knows happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroundTruth {
    pub instances: BTreeMap<String, InstanceTruth>,
    pub actions: BTreeMap<String, ActionTruth>,
    pub requests_total: u64,
    pub signature_failures: u64,
    pub auth_failures: u64,
}

impl GroundTruth {
    pub fn action(&self, name: &str) -> ActionTruth {
        self.actions.get(name).cloned().unwrap_or_default()
    }
    pub fn total_open_calls(&self) -> u64 {
        self.instances.values().map(|i| i.open_calls as u64).sum()
    }
    pub fn total_blind_open_calls(&self) -> u64 {
        self.instances
            .values()
            .map(|i| i.blind_open_calls as u64)
            .sum()
    }
    pub fn total_overlapping_open_calls(&self) -> u64 {
        self.instances
            .values()
            .map(|i| i.overlapping_open_calls as u64)
            .sum()
    }
    pub fn total_open_calls_when_encrypted(&self) -> u64 {
        self.instances
            .values()
            .map(|i| i.open_calls_when_encrypted as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_blank_then_follows_propagation() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut i = Instance::new("cdb-1", "ap-guangzhou");
        assert_eq!(i.encryption_reading(t0), "NO");
        // Blank shorter than propagation: "", then NO, then YES.
        i.apply_encryption(t0, ms(500), ms(200));
        assert_eq!(i.encryption_reading(t0 + ms(100)), "");
        assert_eq!(i.encryption_reading(t0 + ms(300)), "NO");
        assert_eq!(i.encryption_reading(t0 + ms(600)), "YES");
        // A second apply changes nothing.
        i.apply_encryption(t0 + ms(600), ms(500), ms(200));
        assert_eq!(i.encryption_reading(t0 + ms(700)), "YES");
        // Blank longer than propagation: "", then YES.
        let mut j = Instance::new("cdb-2", "ap-guangzhou");
        j.apply_encryption(t0, ms(100), ms(400));
        assert_eq!(j.encryption_reading(t0 + ms(200)), "");
        assert_eq!(j.encryption_reading(t0 + ms(500)), "YES");
        // No blank period configured: never "".
        let mut k = Instance::new("cdb-3", "ap-guangzhou");
        k.apply_encryption(t0, Duration::ZERO, Duration::ZERO);
        assert_eq!(k.encryption_reading(t0), "YES");
        assert_eq!(
            Instance::new("cdb-4", "ap-guangzhou")
                .pre_encrypted()
                .encryption_reading(t0),
            "YES"
        );
    }

    #[test]
    fn generation_is_deterministic_and_respects_shares() {
        let g = Generate {
            count: 1000,
            share_encrypted: 0.3,
            ..Generate::default()
        };
        let a = World::generate(&g);
        let b = World::generate(&g);
        assert_eq!(a.instances.len(), 1000);
        let ids_a: Vec<_> = a.instances.keys().collect();
        let ids_b: Vec<_> = b.instances.keys().collect();
        assert_eq!(ids_a, ids_b);
        let enc = a.instances.values().filter(|i| i.encrypted).count();
        assert!((200..400).contains(&enc), "{enc}");
        assert_eq!(a.keys_by_region().len(), 3);
        let custom = a
            .instances
            .values()
            .filter(|i| i.planned_key.is_some())
            .count();
        assert!(
            (120..280).contains(&custom),
            "share_custom_key 0.2 of 1000: {custom}"
        );
        let csv = a.fleet_csv();
        assert_eq!(csv.lines().count(), 1001);
        let parsed = crate::input::parse("fleet.csv", csv.as_bytes(), &Default::default()).unwrap();
        assert_eq!(parsed.iter().filter(|s| s.key_id.is_some()).count(), custom);
        assert!(a
            .instances
            .keys()
            .all(|id| id.len() == 12 && id.starts_with("cdb-")));
    }
}
