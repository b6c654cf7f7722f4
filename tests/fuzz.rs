//! Fuzzing on stable: property tests that throw arbitrary bytes at the three parsers
//! that read what the outside world sends (the input loader, the response-envelope
//! parser, the TC3 signature verifier), and check that valid inputs round-trip.
//!
//! `cargo test --test fuzz` runs 256 cases per target. The hardening run is
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release --test fuzz
//! ```
//!
//! (acceptance: 0 panics in 100,000 cases per target).

use std::io::Write as _;

use fleetcrypt::api::cdb::EncryptionReading;
use fleetcrypt::api::parse_envelope;
use fleetcrypt::api::sign::{self, SignInput, ALGORITHM, SIGNED_HEADERS};
use fleetcrypt::api::Failure;
use fleetcrypt::input::{self, Defaults, InstanceSpec, KNOWN_REGIONS};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};

/// Cases per target: `PROPTEST_CASES`, 256 by default so that `cargo test` stays fast.
/// (`with_cases` overrides proptest's own reading of the variable, so read it here.)
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // No regression files written into the source tree by a long run.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases())
    }
}

// ---------------------------------------------------------------------------
// 1. The input loader
// ---------------------------------------------------------------------------

/// One row of a generated valid fleet.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    region: String,
    key: Option<(String, String)>,
    labels: Vec<String>,
}

#[derive(Debug, Clone)]
struct Fleet {
    /// Label column names, distinct from each other and from the known columns.
    label_names: Vec<String>,
    /// Column order: indices into [InstanceId, Region, KeyId, KeyRegion, labels…].
    order: Vec<usize>,
    rows: Vec<Row>,
    crlf: bool,
    bom: bool,
}

fn region() -> impl Strategy<Value = String> {
    prop::sample::select(KNOWN_REGIONS).prop_map(str::to_string)
}

/// Printable text, commas, quotes and some non-ASCII; never CR or LF.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "[ -~é中\u{feff}\t]{0,12}",
        "(,|\"|\"\"|#| |a|;){0,8}",
    ]
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (
        prop::collection::btree_set("[A-Za-z][A-Za-z0-9 _-]{0,10}", 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(names, with_key, crlf, bom)| {
            let label_names: Vec<String> = names
                .into_iter()
                .filter(|n| {
                    let t = n.trim().to_ascii_lowercase();
                    !["instanceid", "region", "keyid", "keyregion"].contains(&t.as_str())
                })
                // Distinct once trimmed and case-folded, as the loader compares them.
                .fold(Vec::<String>::new(), |mut acc, n| {
                    if !acc.iter().any(|a| a.trim().eq_ignore_ascii_case(n.trim())) {
                        acc.push(n);
                    }
                    acc
                });
            let n_labels = label_names.len();
            let mut cols: Vec<usize> = vec![0, 1];
            if with_key {
                cols.extend([2, 3]);
            }
            cols.extend((0..n_labels).map(|i| 4 + i));
            let row = (
                "[a-z0-9]{8}",
                region(),
                prop::option::of(("[A-Za-z0-9-]{1,40}", region())),
                prop::collection::vec(label_value(), n_labels),
            )
                .prop_map(move |(id, region, key, labels)| Row {
                    id: format!("cdb-{id}"),
                    region,
                    key: if with_key { key } else { None },
                    labels,
                });
            (
                Just(label_names),
                Just(cols).prop_shuffle(),
                prop::collection::vec(row, 1..20),
                Just(crlf),
                Just(bom),
            )
        })
        .prop_map(|(label_names, order, rows, crlf, bom)| {
            // One row per instance id (a repeated id is a duplicate, tested elsewhere).
            let mut seen = std::collections::HashSet::new();
            let rows = rows
                .into_iter()
                .filter(|r| seen.insert(r.id.clone()))
                .collect();
            Fleet {
                label_names,
                order,
                rows,
                crlf,
                bom,
            }
        })
}

/// The fleet as CSV bytes, written by the csv crate.
fn write_fleet(f: &Fleet) -> Vec<u8> {
    let mut out = Vec::new();
    if f.bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let terminator = if f.crlf {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(terminator)
        .from_writer(&mut out);
    let header = |c: usize| -> String {
        match c {
            0 => "InstanceId".into(),
            1 => "Region".into(),
            2 => "KeyId".into(),
            3 => "KeyRegion".into(),
            n => f.label_names[n - 4].clone(),
        }
    };
    w.write_record(f.order.iter().map(|&c| header(c))).unwrap();
    for r in &f.rows {
        let cell = |c: usize| -> String {
            match c {
                0 => r.id.clone(),
                1 => r.region.clone(),
                2 => r.key.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
                3 => r.key.as_ref().map(|k| k.1.clone()).unwrap_or_default(),
                n => r.labels[n - 4].clone(),
            }
        };
        w.write_record(f.order.iter().map(|&c| cell(c))).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    out
}

/// What the loader must give back for a generated fleet.
fn expected(f: &Fleet) -> Vec<InstanceSpec> {
    f.rows
        .iter()
        .enumerate()
        .map(|(i, r)| InstanceSpec {
            id: r.id.parse().unwrap(),
            region: r.region.clone(),
            key_id: r.key.as_ref().map(|k| k.0.clone()),
            key_region: r.key.as_ref().map(|k| k.1.clone()),
            account: None,
            // Label columns in file order; cells are trimmed (csv::Trim::All).
            labels: f
                .order
                .iter()
                .filter(|&&c| c >= 4)
                .map(|&c| {
                    (
                        f.label_names[c - 4].trim().to_string(),
                        r.labels[c - 4].trim().to_string(),
                    )
                })
                .collect(),
            line: i as u64 + 2,
        })
        .collect()
}

/// Bytes that look enough like an input file to get past the first checks.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    let noisy = "(InstanceId|Region|KeyId|KeyRegion|cdb-[a-z0-9]{8}|cdbro-x|ap-guangzhou|ap-tokyo|[a-z0-9-]{1,6}|,|;|\"|#| |\t|\r|\n|\r\n|\u{feff}|é){0,40}";
    prop_oneof![
        // Raw bytes, including invalid UTF-8 and UTF-16 marks.
        prop::collection::vec(any::<u8>(), 0..300),
        (
            prop::sample::select(vec![
                &b""[..],
                b"\xff\xfe",
                b"\xef\xbb\xbf",
                b"InstanceId,Region\n",
                b"InstanceId,Region,KeyId,KeyRegion\r\n",
                b"Team,\"InstanceId\",Region\n",
            ]),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(head, tail)| [head, &tail[..]].concat()),
        noisy.prop_map(String::into_bytes),
        // A plain instance list: ids, regions, comments, blank lines, odd spacing.
        prop::collection::vec(
            (
                "(cdb-[a-z0-9]{8}|cdb-[a-zA-Z0-9]{0,9}|cdbro-[a-z0-9]{8}|)",
                prop::option::of(prop_oneof![region(), "[a-z-]{0,12}".boxed()]),
                "( |\t|  )",
                "(| # [ -~]{0,10}|#|,| x)",
                prop::sample::select(vec!["\n", "\r\n", "\r"]),
            ),
            0..12,
        )
        .prop_map(|lines| {
            lines
                .into_iter()
                .map(|(id, r, sp, tail, eol)| {
                    format!("{id}{sp}{}{tail}{eol}", r.unwrap_or_default())
                })
                .collect::<String>()
                .into_bytes()
        }),
        // A valid fleet with one to four bytes changed, inserted or removed.
        (
            fleet(),
            prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 0..4)
        )
            .prop_map(|(f, edits)| {
                let mut b = write_fleet(&f);
                for (at, op, byte) in edits {
                    let i = at.index(b.len() + 1);
                    match op {
                        0 if i < b.len() => b[i] = byte,
                        1 => b.insert(i, byte),
                        _ if i < b.len() => {
                            b.remove(i);
                        }
                        _ => b.push(byte),
                    }
                }
                b
            }),
    ]
}

/// Loads `bytes` both ways the CLI does: [`input::parse`] (in memory, the demo) and
/// [`input::validate`] + [`input::Validated::collect`] on a file (what `run` uses).
fn load_both(
    bytes: &[u8],
) -> (
    Result<Vec<InstanceSpec>, input::InputError>,
    Result<Vec<InstanceSpec>, input::InputError>,
) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let path = file.path().display().to_string();
    let defaults = Defaults::default();
    let parsed = input::parse(&path, bytes, &defaults);
    let validated = input::validate(&path, &defaults).and_then(|v| {
        v.collect().map_err(|e| input::InputError {
            problems: vec![input::Problem {
                file: path.clone(),
                line: 0,
                message: e.to_string(),
            }],
        })
    });
    (parsed, validated)
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: never a panic; an error names at least one problem with a
    /// message; the streaming path (`run`) and the in-memory path agree exactly.
    #[test]
    fn fuzz_input_arbitrary_bytes(bytes in input_bytes()) {
        let (parsed, validated) = load_both(&bytes);
        match &parsed {
            Ok(rows) => {
                prop_assert!(!rows.is_empty());
                for r in rows {
                    prop_assert!(r.id.as_str().starts_with("cdb-") && r.id.as_str().len() == 12, "{r:?}");
                    prop_assert!(input::is_known_region(&r.region), "{r:?}");
                    prop_assert_eq!(r.key_id.is_some(), r.key_region.is_some());
                }
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                prop_assert!(e.problems.iter().all(|p| !p.message.is_empty()), "{e}");
                let _ = e.to_string();
            }
        }
        match (&parsed, &validated) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(&a.problems, &b.problems),
            _ => prop_assert!(false, "parse {parsed:?} but validate {validated:?}"),
        }
    }

    /// A valid fleet written by the csv crate (any column order, labels with commas and
    /// quotes, CRLF or LF, with or without a BOM) reads back row for row, both ways.
    #[test]
    fn fuzz_input_valid_fleet_round_trips(f in fleet()) {
        let bytes = write_fleet(&f);
        let want = expected(&f);
        let (parsed, validated) = load_both(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        match parsed {
            Ok(got) => prop_assert_eq!(&got, &want, "{}", text),
            Err(e) => prop_assert!(false, "{e}\n{text}"),
        }
        match validated {
            Ok(got) => prop_assert_eq!(&got, &want, "{}", text),
            Err(e) => prop_assert!(false, "{e}\n{text}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 2. The response-envelope parser
// ---------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec!["YES", "NO", "yes", " NO", "NO ", ""])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,8}",
                    prop::sample::select(vec![
                        "Response",
                        "RequestId",
                        "Error",
                        "Code",
                        "Message",
                        "Encryption"
                    ])
                    .prop_map(str::to_string),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An envelope field: mostly a string, sometimes any JSON.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => ".{0,12}".prop_map(Value::String),
        1 => json_value(),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        prop::sample::select(vec![0u16, 100, 204, 400, 401, 403, 429, 500, 502, 503, 504]),
        any::<u16>(),
    ]
}

/// Bytes for a body: raw, JSON-ish noise, or a real JSON value (maybe cut short).
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "(\\{|\\}|\\[|\\]|\"Response\"|\"Error\"|\"Code\"|\"RequestId\"|:|,|\"[a-z]{0,4}\"|null|1e999|-0|\\\\u[0-9a-fA-F]{0,4}| ){0,40}"
            .prop_map(String::into_bytes),
        // An envelope whose fields have any JSON type.
        (field(), field(), field(), field(), any::<bool>()).prop_map(
            |(code, message, request_id, extra, with_error)| {
                let mut r = json!({ "RequestId": request_id, "Encryption": extra });
                if with_error {
                    r["Error"] = json!({ "Code": code, "Message": message });
                }
                serde_json::to_vec(&json!({ "Response": r })).unwrap()
            }
        ),
        (json_value(), any::<bool>(), any::<prop::sample::Index>()).prop_map(|(v, wrap, cut)| {
            let v = if wrap { json!({ "Response": v }) } else { v };
            let mut b = serde_json::to_vec(&v).unwrap();
            if cut.index(4) == 0 {
                let at = cut.index(b.len() + 1);
                b.truncate(at);
            }
            b
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes and statuses: never a panic; success only with 200 and an object;
    /// every failure can be coded and printed.
    #[test]
    fn fuzz_envelope_arbitrary_bytes(status in status(), bytes in body_bytes()) {
        match parse_envelope(status, &bytes) {
            Ok(answer) => {
                prop_assert_eq!(status, 200);
                prop_assert!(answer.data.is_object());
                let _ = EncryptionReading::of(&answer.data);
            }
            Err(f) => {
                prop_assert!(!f.code().is_empty());
                let _ = format!("{f:?}");
                if let Failure::Api { http_status, code, .. } = &f {
                    prop_assert_eq!(*http_status, status);
                    prop_assert!(!code.is_empty());
                }
            }
        }
    }

    /// `EncryptionReading::of` on any JSON value: never a panic; YES/NO only for the
    /// exact strings; anything else is unreadable with a bounded excerpt.
    #[test]
    fn fuzz_encryption_reading_arbitrary_json(v in json_value(), wrap in any::<bool>()) {
        let response = if wrap { json!({ "Encryption": v }) } else { v.clone() };
        let reading = EncryptionReading::of(&response);
        match response.get("Encryption") {
            Some(Value::String(s)) if s == "YES" => prop_assert_eq!(reading, EncryptionReading::Yes),
            Some(Value::String(s)) if s == "NO" => prop_assert_eq!(reading, EncryptionReading::No),
            Some(_) => match reading {
                EncryptionReading::Unreadable(raw) => prop_assert!(raw.chars().count() <= 201),
                other => prop_assert!(false, "{other:?}"),
            },
            None => prop_assert_eq!(reading, EncryptionReading::Unreadable("<missing>".into())),
        }
    }

    /// A valid envelope built from arbitrary strings reads back: the error's code,
    /// message, request id and status; or the success's request id and data.
    #[test]
    fn fuzz_envelope_round_trips(
        status in status(),
        request_id in prop::option::of(".{0,40}"),
        error in prop::option::of((".{1,40}", prop::option::of(".{0,80}"))),
        encryption in prop::option::of(prop_oneof![Just("YES".to_string()), Just("NO".to_string()), ".{0,10}"]),
    ) {
        let mut response = serde_json::Map::new();
        if let Some(id) = &request_id {
            response.insert("RequestId".into(), json!(id));
        }
        if let Some((code, message)) = &error {
            let mut e = serde_json::Map::new();
            e.insert("Code".into(), json!(code));
            if let Some(m) = message {
                e.insert("Message".into(), json!(m));
            }
            response.insert("Error".into(), Value::Object(e));
        }
        if let Some(enc) = &encryption {
            response.insert("Encryption".into(), json!(enc));
        }
        let response = Value::Object(response);
        let body = serde_json::to_vec(&json!({ "Response": response.clone() })).unwrap();
        let got = parse_envelope(status, &body);
        match (&error, status) {
            (Some((code, message)), _) => prop_assert_eq!(
                got.unwrap_err(),
                Failure::Api {
                    code: code.clone(),
                    message: message.clone().unwrap_or_default(),
                    request_id: request_id.clone(),
                    http_status: status,
                }
            ),
            (None, 200) => {
                let answer = got.unwrap();
                prop_assert_eq!(&answer.request_id, &request_id);
                prop_assert_eq!(&answer.data, &response);
                let want = match encryption.as_deref() {
                    Some("YES") => EncryptionReading::Yes,
                    Some("NO") => EncryptionReading::No,
                    Some(other) => EncryptionReading::Unreadable(json!(other).to_string()),
                    None => EncryptionReading::Unreadable("<missing>".into()),
                };
                prop_assert_eq!(EncryptionReading::of(&answer.data), want);
            }
            (None, _) => {
                let is_bad_status = matches!(got, Err(Failure::BadStatus { status: s, .. }) if s == status);
                prop_assert!(is_bad_status, "{got:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. The signature verifier
// ---------------------------------------------------------------------------

/// The emulator's verification (src/emulator/server.rs `authenticate`), minus the
/// clock and key lookup: parse the header, re-sign the named headers, compare.
fn verify(auth: &str, headers: &[(&str, &str)], payload: &[u8], ts: i64, key: &str) -> bool {
    let Some(parsed) = sign::parse_authorization(auth) else {
        return false;
    };
    let mut names: Vec<&str> = parsed.signed_headers.split(';').collect();
    names.sort_unstable();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(h, _)| *h == n)
            .map(|(_, v)| *v)
            .unwrap_or("")
    };
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, get(n))).collect();
    let input = SignInput {
        service: &parsed.service,
        host: get("host"),
        content_type: get("content-type"),
        payload,
        timestamp: ts,
    };
    let expected = sign::sign_headers(&input, &pairs, key);
    parsed.date == sign::utc_date(ts)
        && names.contains(&"host")
        && names.contains(&"content-type")
        && sign::signatures_match(&expected.signature, &parsed.signature)
}

fn authorization_header() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        "(TC3-HMAC-SHA256|Credential=|SignedHeaders=|Signature=|tc3_request|content-type;host|/|,|, | |[a-zA-Z0-9-]{1,6}|é){0,24}",
        "(Credential=|SignedHeaders=|Signature=|tc3_request|/|,|, | |;|=|[a-z0-9]{1,4}){0,16}"
            .prop_map(|rest| format!("{ALGORITHM} {rest}")),
        // Well-formed in shape, with odd pieces: most of these parse.
        (
            prop::collection::vec("(|[A-Za-z0-9]{1,8}|[ -~]{0,6}|é|/|,)", 4),
            prop::sample::select(vec!["tc3_request", "tc3_request/x", "TC3_REQUEST", ""]),
            prop::sample::select(vec![", ", ",", " , ", ",,"]),
        )
            .prop_map(|(p, scope, sep)| {
                format!(
                    "{ALGORITHM} Credential={}/{}/{}/{scope}{sep}SignedHeaders={}{sep}Signature={}",
                    p[0], p[1], p[2], SIGNED_HEADERS, p[3]
                )
            }),
        // A real header with one character changed, inserted or removed.
        (
            prop::collection::vec(any::<u8>(), 0..64),
            any::<i64>(),
            any::<prop::sample::Index>(),
            0u8..3,
            any::<char>(),
        )
            .prop_map(|(payload, ts, at, op, c)| {
                let signed = sign::sign(
                    &SignInput {
                        service: "cdb",
                        host: "h",
                        content_type: "application/json",
                        payload: &payload,
                        timestamp: ts,
                    },
                    "key",
                );
                let mut chars: Vec<char> = sign::authorization("AKID", &signed).chars().collect();
                let i = at.index(chars.len());
                match op {
                    0 => chars[i] = c,
                    1 => chars.insert(i, c),
                    _ => {
                        chars.remove(i);
                    }
                }
                chars.into_iter().collect()
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary Authorization headers: never a panic, and whatever parses fails to
    /// verify against a real signature it did not come from.
    #[test]
    fn fuzz_signature_arbitrary_authorization(auth in authorization_header(), ts in any::<i64>()) {
        if let Some(p) = sign::parse_authorization(&auth) {
            prop_assert!(auth.starts_with(ALGORITHM));
            prop_assert!(!p.secret_id.contains('/') && !p.date.contains('/') && !p.service.contains('/'));
        }
        let headers = [("content-type", "application/json"), ("host", "h")];
        let ok = verify(&auth, &headers, b"{}", ts, "key");
        // Only a header that carries the real signature could verify.
        if ok {
            let real = sign::sign(&SignInput {
                service: &sign::parse_authorization(&auth).unwrap().service,
                host: "h",
                content_type: "application/json",
                payload: b"{}",
                timestamp: ts,
            }, "key");
            prop_assert!(auth.contains(&real.signature), "{auth}");
        }
        let _ = sign::signatures_match(&auth, "0");
        let _ = sign::signatures_match(&auth, &auth);
    }

    /// For arbitrary payloads, timestamps, hosts and content types, what `sign` produces
    /// verifies; a one-byte change to the payload, or to one hex char of the signature,
    /// does not.
    #[test]
    fn fuzz_signature_round_trips_and_detects_tampering(
        payload in prop::collection::vec(any::<u8>(), 0..256),
        ts in prop_oneof![any::<i64>(), 0i64..4_102_444_800],
        host in ".{0,40}",
        content_type in prop_oneof![Just("application/json".to_string()), ".{0,30}"],
        service in "[a-z]{1,8}",
        secret_id in "[A-Za-z0-9]{1,40}",
        secret_key in ".{0,40}",
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
        hex_at in 0usize..64,
        hex_to in 0usize..15,
    ) {
        let input = SignInput { service: &service, host: &host, content_type: &content_type, payload: &payload, timestamp: ts };
        let signed = sign::sign(&input, &secret_key);
        prop_assert_eq!(signed.signature.len(), 64);
        prop_assert!(signed.signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let auth = sign::authorization(&secret_id, &signed);
        let parsed = sign::parse_authorization(&auth).expect("our own header parses");
        prop_assert_eq!(&parsed.secret_id, &secret_id);
        prop_assert_eq!(&parsed.date, &sign::utc_date(ts));
        prop_assert_eq!(&parsed.service, &service);
        prop_assert_eq!(parsed.signed_headers.as_str(), SIGNED_HEADERS);
        prop_assert_eq!(&parsed.signature, &signed.signature);

        let headers = [("content-type", content_type.as_str()), ("host", host.as_str())];
        prop_assert!(verify(&auth, &headers, &payload, ts, &secret_key), "{auth}");

        // One byte of the payload changed (or one added when it is empty).
        let mut tampered = payload.clone();
        if tampered.is_empty() {
            tampered.push(delta);
        } else {
            let i = at.index(tampered.len());
            tampered[i] ^= delta;
        }
        prop_assert!(!verify(&auth, &headers, &tampered, ts, &secret_key));
        let resigned = sign::sign(&SignInput { payload: &tampered, ..input }, &secret_key);
        prop_assert!(!sign::signatures_match(&resigned.signature, &signed.signature));

        // One hex char of the signature changed.
        let mut sig = signed.signature.clone().into_bytes();
        let hex = b"0123456789abcdef";
        let others: Vec<u8> = hex.iter().copied().filter(|&c| c != sig[hex_at]).collect();
        sig[hex_at] = others[hex_to];
        let sig = String::from_utf8(sig).unwrap();
        prop_assert!(!sign::signatures_match(&signed.signature, &sig));
        let forged = auth.replace(&signed.signature, &sig);
        prop_assert!(!verify(&forged, &headers, &payload, ts, &secret_key), "{forged}");
    }
}
