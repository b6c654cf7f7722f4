//! TC3-HMAC-SHA256 request signing, as a pure function of the request, the
//! credentials and a given timestamp (no clock inside), so that it can be
//! checked against the vectors the official SDK produces and reused by the
//! emulator to verify what clients send.
//!
//! Like the official SDKs we sign exactly `content-type;host` over a POST to
//! `/` with an empty query string (reference §1.3).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The signing algorithm name, first token of the `Authorization` header.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The only header set the SDKs sign.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// Product name, e.g. `cdb` or `kms` (not taken from the host).
    pub service: &'a str,
    /// The `Host` header exactly as sent (may carry a port, or with tccli even a scheme).
    pub host: &'a str,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// The exact body bytes.
    pub payload: &'a [u8],
    /// Unix seconds; also sent as `X-TC-Timestamp`.
    pub timestamp: i64,
}

/// Every intermediate value, so tests and the emulator can compare step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub hashed_payload: String,
    pub canonical_request: String,
    pub hashed_canonical_request: String,
    pub date: String,
    pub credential_scope: String,
    pub string_to_sign: String,
    pub signature: String,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// UTC calendar date (`YYYY-MM-DD`) of a Unix timestamp, as the credential scope wants it.
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

/// The derived signing key chain: kDate, kService, kSigning.
pub fn signing_key(secret_key: &str, date: &str, service: &str) -> [Vec<u8>; 3] {
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    [k_date, k_service, k_signing]
}

/// Computes the TC3 signature of `input` with `secret_key`, signing `content-type;host`.
pub fn sign(input: &SignInput<'_>, secret_key: &str) -> Signed {
    sign_headers(
        input,
        &[("content-type", input.content_type), ("host", input.host)],
        secret_key,
    )
}

/// The generic form: signs the given `(lower-case name, value)` headers, which must be
/// sorted by name. The docs' own example signs `x-tc-action` too; the emulator accepts that.
pub fn sign_headers(input: &SignInput<'_>, headers: &[(&str, &str)], secret_key: &str) -> Signed {
    let hashed_payload = sha256_hex(input.payload);
    let mut canonical_headers = String::new();
    for (name, value) in headers {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value.trim());
        canonical_headers.push('\n');
    }
    let signed_headers: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{}\n{hashed_payload}",
        signed_headers.join(";")
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{hashed_canonical_request}",
        input.timestamp
    );
    let [_, _, k_signing] = signing_key(secret_key, &date, input.service);
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    Signed {
        hashed_payload,
        canonical_request,
        hashed_canonical_request,
        date,
        credential_scope,
        string_to_sign,
        signature,
    }
}

/// The `Authorization` header value (note the `", "` separators).
pub fn authorization(secret_id: &str, signed: &Signed) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        signed.credential_scope, signed.signature
    )
}

/// The parts of a received `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub signed_headers: String,
    pub signature: String,
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=..., Signature=...`.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut scope = credential?.splitn(4, '/');
    let secret_id = scope.next()?.to_string();
    let date = scope.next()?.to_string();
    let service = scope.next()?.to_string();
    if scope.next()? != "tc3_request" {
        return None;
    }
    Some(ParsedAuthorization {
        secret_id,
        date,
        service,
        signed_headers: signed_headers?.to_string(),
        signature: signature?.to_string(),
    })
}

/// Constant-time comparison of two hex signatures.
pub fn signatures_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AKIDEXAMPLE0123456789abcdefghijklmn";
    const SKEY: &str = "EXAMPLEKEY0123456789abcdefghijklm";

    fn input<'a>(host: &'a str, payload: &'a [u8], ts: i64) -> SignInput<'a> {
        SignInput {
            service: "cdb",
            host,
            content_type: "application/json",
            payload,
            timestamp: ts,
        }
    }

    #[test]
    fn vector_1_default_endpoint() {
        let body = br#"{"InstanceId": "cdb-abcd1234"}"#;
        assert_eq!(body.len(), 30);
        let s = sign(&input("cdb.tencentcloudapi.com", body, 1_700_000_000), SKEY);
        assert_eq!(
            s.hashed_payload,
            "ac03baa3a294905cd765a4ebfcae0825f06b24ed680acd64cef135176580a534"
        );
        assert_eq!(s.canonical_request, "POST\n/\n\ncontent-type:application/json\nhost:cdb.tencentcloudapi.com\n\ncontent-type;host\nac03baa3a294905cd765a4ebfcae0825f06b24ed680acd64cef135176580a534");
        assert_eq!(
            s.hashed_canonical_request,
            "3c26d77cb33db09580c5f2d9b0be6a16928f992a388b94b227f88ff2c018f5c3"
        );
        assert_eq!(s.string_to_sign, "TC3-HMAC-SHA256\n1700000000\n2023-11-14/cdb/tc3_request\n3c26d77cb33db09580c5f2d9b0be6a16928f992a388b94b227f88ff2c018f5c3");
        let [k_date, k_service, k_signing] = signing_key(SKEY, "2023-11-14", "cdb");
        assert_eq!(
            hex::encode(k_date),
            "2f74c9a532cd8a51a583335e82760a881e5fa06bcd5c68ba74529db9dfcad5ab"
        );
        assert_eq!(
            hex::encode(k_service),
            "c4057300ad1483db0b534b00cd67a5a149591e02657f63f77e4534b1936dfd71"
        );
        assert_eq!(
            hex::encode(k_signing),
            "00d0229fb037fc57e0acb9225f7c07bd06581c8a244df76c4c9d83a7324f553e"
        );
        assert_eq!(
            s.signature,
            "28eb6d343fcf70b0148354548c5deded816c6888e26363509355f536d180bd42"
        );
        assert_eq!(authorization(SID, &s), "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE0123456789abcdefghijklmn/2023-11-14/cdb/tc3_request, SignedHeaders=content-type;host, Signature=28eb6d343fcf70b0148354548c5deded816c6888e26363509355f536d180bd42");
    }

    #[test]
    fn vector_2_regional_host_with_key() {
        let body = br#"{"InstanceId": "cdb-abcd1234", "KeyId": "23e80852-1e38-11e9-b129-5cb9019b4b01", "KeyRegion": "ap-shanghai"}"#;
        assert_eq!(body.len(), 107);
        let s = sign(
            &input("cdb.ap-shanghai.tencentcloudapi.com", body, 1_700_000_000),
            SKEY,
        );
        assert_eq!(
            s.hashed_payload,
            "3b8825f9c20439a1cfb584aac957b2d5a287603fd90dfddc026c7b4989db21d7"
        );
        assert_eq!(
            s.hashed_canonical_request,
            "d3a0669888728f73d9e7ac70eb69658c83fc74ee140c31b352871368ffe09253"
        );
        assert_eq!(
            s.signature,
            "579c0bf050b451f00ecad7abb6951ab96d3b3fc170fd41569f45eadc55dc4cf7"
        );
    }

    #[test]
    fn vector_3_host_with_port() {
        let body = br#"{"InstanceId": "cdb-abcd1234"}"#;
        let s = sign(&input("127.0.0.1:9000", body, 1_700_000_000), SKEY);
        assert_eq!(s.canonical_request, "POST\n/\n\ncontent-type:application/json\nhost:127.0.0.1:9000\n\ncontent-type;host\nac03baa3a294905cd765a4ebfcae0825f06b24ed680acd64cef135176580a534");
        assert_eq!(
            s.hashed_canonical_request,
            "e1f3149557ecf7a276e5d34bc1485b20ea4d7f82f6035044d194453e76898f52"
        );
        assert_eq!(
            s.signature,
            "0fcfca2718c1729c352b214ba39cd7804f7fca724659d55049f4db34f5a48d78"
        );
    }

    #[test]
    fn vector_4_utc_date_rollover() {
        assert_eq!(utc_date(1_700_006_399), "2023-11-14");
        let body = br#"{"Offset": 0, "Limit": 100}"#;
        let s = sign(&input("cdb.tencentcloudapi.com", body, 1_700_006_400), SKEY);
        assert_eq!(
            s.hashed_payload,
            "aff87ab028f0ef26d7b5fdf24cfb49c7b488c0c67caddbb9bc2e0aea92c308cb"
        );
        assert_eq!(
            s.hashed_canonical_request,
            "c8ac4d1367ed826b5f7ae166f057b441b60eebf23f54616a5968503a27ae97df"
        );
        assert_eq!(s.string_to_sign, "TC3-HMAC-SHA256\n1700006400\n2023-11-15/cdb/tc3_request\nc8ac4d1367ed826b5f7ae166f057b441b60eebf23f54616a5968503a27ae97df");
        let [k_date, k_service, k_signing] = signing_key(SKEY, &s.date, "cdb");
        assert_eq!(
            hex::encode(k_date),
            "74c1a8caddf5681b34c90b3e4b15c4c04298a33d2cf84be2ece5840167f5b891"
        );
        assert_eq!(
            hex::encode(k_service),
            "1af303cc0ef044d71543a6794a2a56fd633102b0089d7c377e01d52109d0b64c"
        );
        assert_eq!(
            hex::encode(k_signing),
            "13dba3abb3d5e8e2ab34fc8999b5ffee585aacc5d7b23d6c9676d7c91d0cb39b"
        );
        assert_eq!(
            s.signature,
            "106898dbc8a7a9aa50e208cde46317c6132eefe4c41480e74ee1f88c5a01dab5"
        );
    }

    #[test]
    fn doc_example_hashes_are_reproduced() {
        // Key-independent check of the official docs' example (reference §1.7), which
        // signs three headers; only the hashing parts are reproducible.
        let payload = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        assert_eq!(
            sha256_hex(payload.as_bytes()),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        let canon = format!("POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\nx-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n{}", sha256_hex(payload.as_bytes()));
        assert_eq!(
            sha256_hex(canon.as_bytes()),
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        // The generic signer builds the same canonical request.
        let s = sign_headers(
            &SignInput {
                service: "cvm",
                host: "cvm.tencentcloudapi.com",
                content_type: "application/json; charset=utf-8",
                payload: payload.as_bytes(),
                timestamp: 1_551_113_065,
            },
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("host", "cvm.tencentcloudapi.com"),
                ("x-tc-action", "describeinstances"),
            ],
            "any",
        );
        assert_eq!(s.canonical_request, canon);
        assert_eq!(s.string_to_sign, "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84");
    }

    #[test]
    fn authorization_round_trips_through_the_parser() {
        let s = sign(&input("h", b"{}", 1_700_000_000), SKEY);
        let parsed = parse_authorization(&authorization(SID, &s)).unwrap();
        assert_eq!(parsed.secret_id, SID);
        assert_eq!(parsed.date, "2023-11-14");
        assert_eq!(parsed.service, "cdb");
        assert_eq!(parsed.signed_headers, SIGNED_HEADERS);
        assert_eq!(parsed.signature, s.signature);
        assert!(parse_authorization("Basic abc").is_none());
        assert!(parse_authorization(
            "TC3-HMAC-SHA256 Credential=a/b/c/x, SignedHeaders=h, Signature=s"
        )
        .is_none());
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "abcd"));
    }

    #[test]
    fn signatures_differing_in_two_places_do_not_match_even_when_the_differences_cancel() {
        // 'a' ^ 'b' == 'b' ^ 'a': differences must be OR-ed together, never XOR-ed.
        assert!(!signatures_match("ab", "ba"));
        assert!(!signatures_match("0f0f", "f0f0"));
        assert!(signatures_match("0f0f", "0f0f"));
    }
}
