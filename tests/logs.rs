//! The log an operator follows: with `--log-format json -v`, every line a step
//! logs carries the instance, attempt, action, endpoint and (once answered) the
//! RequestId, so filtering on one `instance_id` (as `jq` would) shows that
//! instance's read, write-ahead, send, answer and verification, in order.

mod common;

use std::collections::BTreeMap;

use common::*;
use fleetcrypt::emulator::{Faults, Generate, World};
use fleetcrypt::model::State;
use serde_json::Value;

/// The messages an instance encrypted by one Open must show, in this order
/// (other lines may come between them).
const ONE_OPEN_STORY: &[&str] = &[
    "sending DescribeDBInstanceInfo",
    "answered DescribeDBInstanceInfo",
    "journaled EncryptionReadSettledNo",
    "journaled AttemptWritten",
    "sending OpenDBInstanceEncryption",
    "answered OpenDBInstanceEncryption",
    "journaled AttemptAnswered",
    "sending DescribeDBInstanceInfo",
    "answered DescribeDBInstanceInfo",
    "journaled EncryptionReadYes",
];

#[test]
fn one_instance_story_reads_in_order_from_the_json_log() {
    // Nothing that fails by design: the run must end with exit 0.
    let world = World::generate(&Generate {
        count: 30,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        share_disabled_key: 0.0,
        seed: 5,
        ..Generate::default()
    });
    let mut config = fast_config(20);
    config.faults = Faults {
        internal_applied: 0.2,
        ..Faults::default()
    };
    let emu = EmulatorThread::start(config, world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let mut c = env.cmd(SECRET_KEY);
    c.args(["--log-format", "json", "-v", "run", "--instances"])
        .arg(&fleet)
        .args(FAST);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));

    // As `jq 'select(.span.instance_id == ID)'` would: per instance, in log order.
    let mut stories: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stderr).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(id) = v["span"]["instance_id"].as_str() {
            stories.entry(id.to_string()).or_default().push(v);
        }
    }
    let report = report_json(&env);
    let instances = report["instances"].as_array().expect("instances");
    let mut opened_once = 0;
    for inst in instances {
        let id = inst["instance_id"].as_str().unwrap();
        let story = stories
            .get(id)
            .unwrap_or_else(|| panic!("{id}: not one log line names it"));
        for line in story {
            let span = &line["span"];
            assert_eq!(span["name"], "step", "{line}");
            assert!(
                span["action"].as_str().is_some_and(|a| !a.is_empty()),
                "{line}"
            );
            assert!(
                span["endpoint"].as_str().is_some_and(|e| !e.is_empty()),
                "{line}"
            );
            assert!(span["attempt"].is_u64(), "{line}");
            let message = line["fields"]["message"].as_str().unwrap_or("");
            if message.starts_with("answered") || message.starts_with("journaled Encryption") {
                assert!(
                    span["request_id"].as_str().is_some(),
                    "{id}: no RequestId on {line}"
                );
            }
        }
        let messages: Vec<&str> = story
            .iter()
            .map(|l| l["fields"]["message"].as_str().unwrap_or(""))
            .collect();
        let state: State = inst["state"].as_str().unwrap().parse().unwrap();
        if state == State::Encrypted && inst["attempts"] == 1 {
            opened_once += 1;
            let mut want = ONE_OPEN_STORY.iter().peekable();
            for m in &messages {
                if want.peek() == Some(&m) {
                    want.next();
                }
            }
            assert!(
                want.peek().is_none(),
                "{id}: the story stops before {:?}:\n{}",
                want.peek(),
                messages.join("\n")
            );
            // The send's lines name the attempt being sent.
            assert!(story
                .iter()
                .filter(|l| l["fields"]["message"] == "sending OpenDBInstanceEncryption")
                .all(|l| l["span"]["attempt"] == 1));
        }
        if state.is_success() {
            assert_eq!(
                messages.iter().rev().find(|m| m.starts_with("journaled")),
                Some(&"journaled EncryptionReadYes"),
                "{id}: the last journaled fact of a {state} instance"
            );
        }
    }
    assert!(
        opened_once >= 10,
        "only {opened_once} instances took one Open"
    );
}
