//! The `{"Response": …}` envelope every Tencent Cloud API 3.0 answer comes in
//! (reference §3.1, §7.3), read whatever the HTTP status or content type.

use serde_json::Value;

use super::classify::Failure;
use super::client::Answer;

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// Reads a `{"Response": …}` envelope whatever the HTTP status or content type:
/// `Response.Error` marks failure (reference §3.1, §7.3).
pub fn parse_envelope(status: u16, bytes: &[u8]) -> Result<Answer<Value>, Failure> {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let response = parsed
        .as_ref()
        .and_then(|v| v.get("Response"))
        .filter(|r| r.is_object());
    match response {
        Some(r) => {
            let request_id = r
                .get("RequestId")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(err) = r.get("Error") {
                let code = err
                    .get("Code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let message = err
                    .get("Message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if code.is_empty() {
                    return Err(Failure::Unreadable(format!(
                        "error envelope without a code: {}",
                        excerpt(bytes)
                    )));
                }
                return Err(Failure::Api {
                    code,
                    message,
                    request_id,
                    http_status: status,
                });
            }
            if status != 200 {
                return Err(Failure::BadStatus {
                    status,
                    body: excerpt(bytes),
                });
            }
            Ok(Answer {
                request_id,
                data: r.clone(),
            })
        }
        None if status != 200 => Err(Failure::BadStatus {
            status,
            body: excerpt(bytes),
        }),
        None => Err(Failure::Unreadable(format!(
            "not a Response envelope: {}",
            excerpt(bytes)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_error_under_any_status() {
        let body = br#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":"slow down"},"RequestId":"r-1"}}"#;
        for status in [200, 429, 500] {
            match parse_envelope(status, body) {
                Err(Failure::Api {
                    code,
                    request_id,
                    http_status,
                    ..
                }) => {
                    assert_eq!(code, "RequestLimitExceeded");
                    assert_eq!(request_id.as_deref(), Some("r-1"));
                    assert_eq!(http_status, status);
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn success_and_non_envelopes() {
        let ok =
            parse_envelope(200, br#"{"Response":{"Encryption":"YES","RequestId":"r"}}"#).unwrap();
        assert_eq!(ok.request_id.as_deref(), Some("r"));
        assert_eq!(ok.data["Encryption"], "YES");
        assert!(matches!(
            parse_envelope(502, b"<html>Bad Gateway</html>"),
            Err(Failure::BadStatus { status: 502, .. })
        ));
        assert!(matches!(
            parse_envelope(200, b"{\"Respo"),
            Err(Failure::Unreadable(_))
        ));
        assert!(matches!(
            parse_envelope(503, br#"{"Response":{"RequestId":"r"}}"#),
            Err(Failure::BadStatus { status: 503, .. })
        ));
    }
}
