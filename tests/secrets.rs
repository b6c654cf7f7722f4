//! Secrets scan (issue item 5): a full job with a recognisable SecretKey and
//! session token, then every report format, `status`, `status --json` and
//! `journal verify`, all with `--log-format json -v`. Neither secret may appear
//! — as is, in base64 (standard and URL-safe, padded or not) or in hex (either
//! case) — in any file under the scratch directory (journal, its -wal/-shm,
//! reports, lock) or in any stdout/stderr. Every file the tool creates is 0600.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use fleetcrypt::api::Secret;
use fleetcrypt::emulator::{Faults, Generate, World};

// Every 4-character window holds an unusual symbol next to mixed-case letters and
// digits, so no window turns up in harmless text (hex hashes, ids, JSON, English),
// and a partial leak — say the first four characters — is caught.
const LEAKY_KEY: &str = "Qz7#Vx9!Kp2$Wm4%Jq";
// Header-safe (visible ASCII tchars) so it can travel as X-TC-Token.
const LEAKY_TOKEN: &str = "Tk8~Rw3^Yh6*Gd1@Lf";

/// Every 4-character substring of `secret`.
fn windows4(secret: &str) -> Vec<String> {
    secret
        .as_bytes()
        .windows(4)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect()
}

#[test]
fn every_4_char_window_of_the_secrets_is_unusual() {
    for s in [LEAKY_KEY, LEAKY_TOKEN] {
        for w in windows4(s) {
            assert!(
                w.bytes().any(|b| b.is_ascii_punctuation()),
                "{w:?} of {s:?} could turn up by chance"
            );
        }
    }
    // A redacted Secret shows none of them.
    for s in [LEAKY_KEY, LEAKY_TOKEN] {
        let shown = format!("{:?} {}", Secret::new(s), Secret::new(s));
        for w in windows4(s) {
            assert!(!shown.contains(&w), "{w:?} shown: {shown}");
        }
    }
}

fn base64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every form of `secret` the scan looks for, with a name for the message.
fn forms(secret: &str) -> Vec<(String, String)> {
    let b = secret.as_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    vec![
        ("plain".into(), secret.to_string()),
        ("base64".into(), base64(b, STD, true)),
        ("base64 unpadded".into(), base64(b, STD, false)),
        ("base64url".into(), base64(b, URL, true)),
        ("base64url unpadded".into(), base64(b, URL, false)),
        ("hex".into(), hex.clone()),
        ("HEX".into(), hex.to_uppercase()),
    ]
}

#[test]
fn base64_matches_known_vectors() {
    assert_eq!(base64(b"foobar", STD, true), "Zm9vYmFy");
    assert_eq!(base64(b"fooba", STD, true), "Zm9vYmE=");
    assert_eq!(base64(b"foob", STD, true), "Zm9vYg==");
    assert_eq!(base64(b"foob", STD, false), "Zm9vYg");
    assert_eq!(base64(&[0xfb, 0xff], STD, true), "+/8=");
    assert_eq!(base64(&[0xfb, 0xff], URL, false), "-_8");
}

fn find(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

struct Scan {
    needles: Vec<(String, String)>,
    hits: Vec<String>,
}

impl Scan {
    fn new() -> Scan {
        let mut needles = Vec::new();
        for (what, secret) in [("SecretKey", LEAKY_KEY), ("token", LEAKY_TOKEN)] {
            for (form, text) in forms(secret) {
                needles.push((format!("{what} ({form})"), text));
            }
            // A partial leak: any 4 characters of it, in order.
            for w in windows4(secret) {
                needles.push((format!("{what} (4 characters {w:?})"), w));
            }
        }
        Scan {
            needles,
            hits: Vec::new(),
        }
    }

    fn bytes(&mut self, place: &str, hay: &[u8]) {
        for (what, needle) in &self.needles {
            if find(hay, needle) {
                self.hits.push(format!("{what} in {place}"));
            }
        }
    }

    fn output(&mut self, command: &str, o: &Output) {
        self.bytes(&format!("stdout of {command}"), &o.stdout);
        self.bytes(&format!("stderr of {command}"), &o.stderr);
    }
}

#[test]
fn no_secret_reaches_any_file_or_output() {
    let world = World::generate(&Generate {
        count: 40,
        share_encrypted: 0.1,
        share_unsupported: 0.05,
        share_needs_upgrade: 0.05,
        share_custom_key: 0.3,
        share_disabled_key: 0.3,
        seed: 21,
        ..Generate::default()
    });
    let mut cfg = fast_config(20);
    // Errors too: their messages and codes reach the journal, logs and reports.
    cfg.faults = Faults::mixed(0.3);
    cfg.credentials = vec![(SECRET_ID.into(), Secret::new(LEAKY_KEY))];
    cfg.tokens
        .insert(SECRET_ID.into(), Secret::new(LEAKY_TOKEN));
    let emu = EmulatorThread::start(cfg, world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.dir.path().join("fleet.csv");
    std::fs::write(&fleet, world.fleet_csv()).unwrap();
    let made_by_test: Vec<PathBuf> = vec![fleet.clone()];

    let mut scan = Scan::new();
    let cmd = |args: &[&str]| {
        let mut c = env.cmd(LEAKY_KEY);
        c.env("TENCENTCLOUD_TOKEN", LEAKY_TOKEN)
            .args(["--log-format", "json", "-vv"])
            .args(args);
        c
    };

    // The emulator checks the token: a wrong one is refused (and not echoed).
    let mut c = env.cmd(LEAKY_KEY);
    c.env("TENCENTCLOUD_TOKEN", "wrong-token-1234").args([
        "call",
        "cdb",
        "DescribeDBInstances",
        "{}",
        "--region",
        "ap-guangzhou",
    ]);
    let o = output(c);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("AuthFailure.TokenFailure"),
        "{}",
        text(&o)
    );
    scan.output("call with a wrong token", &o);

    let fleet_arg = fleet.display().to_string();
    let mut run: Vec<&str> = vec!["run", "--instances", &fleet_arg, "--rate", "20"];
    run.extend(FAST);
    run.extend(NO_BUDGET);
    // While it runs, scan the scratch directory over and over: the journal's
    // -wal and -shm exist only while it is open.
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = cmd(&run)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut seen_live: std::collections::BTreeSet<String> = Default::default();
    let mut wrong_mode = Vec::new();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed().as_secs() < 180, "the run did not finish");
        let mut files = Vec::new();
        files_under(env.dir.path(), &mut files);
        for f in files.iter().filter(|f| !made_by_test.contains(f)) {
            // A file may vanish between listing and reading (the -wal at close).
            let (Ok(bytes), Ok(meta)) = (std::fs::read(f), std::fs::metadata(f)) else {
                continue;
            };
            seen_live.insert(f.file_name().unwrap().to_string_lossy().into_owned());
            scan.bytes(&format!("{} (during the run)", f.display()), &bytes);
            let mode = meta.permissions().mode() & 0o777;
            if mode != 0o600 {
                wrong_mode.push(format!("{} is {mode:o} (during the run)", f.display()));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let o = Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    // Some instances fail (unsupported, disabled keys): exit 1, not 3 (auth).
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    scan.output("run", &o);
    assert!(
        seen_live.contains("fleet.db-wal"),
        "the scan never saw the WAL: {seen_live:?}"
    );
    let truth = emu.truth();
    assert_eq!(
        truth.auth_failures, 1,
        "only the wrong-token call fails auth"
    );
    assert!(truth.instances.values().filter(|i| i.encrypted).count() > 20);
    // The JSON log really is JSON and verbose (so the scan covers it).
    let stderr = String::from_utf8_lossy(&o.stderr);
    let json_lines = stderr
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(json_lines >= 2, "{stderr}");
    assert!(stderr.contains("credentials loaded"), "{stderr}");

    for (format, file) in [
        ("csv", "report.csv"),
        ("json", "report.json"),
        ("md", "report.md"),
        ("html", "report.html"),
    ] {
        let path = env.dir.path().join(file).display().to_string();
        let o = output(cmd(&["report", "--format", format, "-o", &path]));
        assert!(o.status.success(), "{format}: {}", text(&o));
        scan.output(&format!("report --format {format}"), &o);
        // And to stdout.
        let o = output(cmd(&["report", "--format", format]));
        assert!(o.status.success(), "{format}: {}", text(&o));
        assert!(!o.stdout.is_empty());
        scan.output(&format!("report --format {format} (stdout)"), &o);
    }
    for args in [
        &["status"][..],
        &["status", "--json"][..],
        &["journal", "verify"][..],
    ] {
        let o = output(cmd(args));
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        scan.output(&args.join(" "), &o);
    }

    let mut files = Vec::new();
    files_under(env.dir.path(), &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "fleet.db",
        "report.csv",
        "report.json",
        "report.md",
        "report.html",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    for f in &files {
        scan.bytes(&f.display().to_string(), &std::fs::read(f).unwrap());
        if made_by_test.contains(f) {
            continue;
        }
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        if mode != 0o600 {
            wrong_mode.push(format!("{} is {mode:o}", f.display()));
        }
    }
    eprintln!("scanned {} files: {names:?}", files.len());
    assert!(scan.hits.is_empty(), "secrets leaked: {:#?}", scan.hits);
    assert!(wrong_mode.is_empty(), "files not 0600: {wrong_mode:#?}");
}
