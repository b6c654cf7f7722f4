//! CDB (TencentDB for MySQL) 2017-03-20: the actions fleetcrypt calls. Field
//! names follow the API (PascalCase); both directions derive serde so the
//! emulator answers with exactly the models the client parses.

use serde::{Deserialize, Serialize};

use crate::model::Action;

pub const OPEN_DB_INSTANCE_ENCRYPTION: &str = Action::OpenDBInstanceEncryption.as_str();
pub const DESCRIBE_DB_INSTANCE_INFO: &str = Action::DescribeDBInstanceInfo.as_str();
pub const DESCRIBE_DB_FEATURES: &str = Action::DescribeDBFeatures.as_str();
pub const DESCRIBE_DB_INSTANCES: &str = Action::DescribeDBInstances.as_str();

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceIdRequest {
    pub instance_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDBInstanceEncryptionRequest {
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_region: Option<String>,
}

/// `OpenDBInstanceEncryption` answers only a RequestId.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDBInstanceEncryptionResponse {
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstanceInfoResponse {
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub instance_name: Option<String>,
    /// `"YES"` or `"NO"`.
    pub encryption: String,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub key_region: Option<String>,
    #[serde(default)]
    pub default_kms_region: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Only the two encryption fields are required; the rest default when a server omits them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBFeaturesResponse {
    #[serde(default)]
    pub is_support_audit: bool,
    #[serde(default)]
    pub audit_need_upgrade: bool,
    pub is_support_encryption: bool,
    pub encryption_need_upgrade: bool,
    #[serde(default)]
    pub is_remote_ro: bool,
    #[serde(default)]
    pub master_region: String,
    #[serde(default)]
    pub is_support_update_sub_version: bool,
    #[serde(default)]
    pub current_sub_version: String,
    #[serde(default)]
    pub target_sub_version: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Request tag filter (`Key`/`Value`; the response uses `TagKey`/`TagValue`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TagFilter {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstancesRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_types: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_flag: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagFilter>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

/// The subset of `InstanceInfo` fleetcrypt reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceInfo {
    pub instance_id: String,
    #[serde(default)]
    pub instance_name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    /// 0 creating, 1 running, 4 isolating, 5 isolated.
    #[serde(default)]
    pub status: i64,
    /// 0 not initialised, 1 initialised.
    #[serde(default)]
    pub init_flag: i64,
    #[serde(default)]
    pub task_status: i64,
    /// 1 master, 2 disaster recovery, 3 read-only.
    #[serde(default)]
    pub instance_type: i64,
    #[serde(default)]
    pub engine_version: String,
    #[serde(default)]
    pub device_type: String,
    #[serde(default)]
    pub tag_list: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstancesResponse {
    pub total_count: i64,
    pub items: Vec<InstanceInfo>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_request_omits_empty_key_fields() {
        let r = OpenDBInstanceEncryptionRequest {
            instance_id: "cdb-abcd1234".into(),
            key_id: None,
            key_region: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"InstanceId":"cdb-abcd1234"}"#
        );
    }

    #[test]
    fn only_the_fields_fleetcrypt_uses_are_required() {
        let f: DescribeDBFeaturesResponse = serde_json::from_str(
            r#"{"IsSupportEncryption": true, "EncryptionNeedUpgrade": false, "RequestId": "r"}"#,
        )
        .unwrap();
        assert!(f.is_support_encryption && !f.encryption_need_upgrade);
        assert!(
            serde_json::from_str::<DescribeDBFeaturesResponse>(r#"{"RequestId": "r"}"#).is_err()
        );
        let i: DescribeDBInstanceInfoResponse =
            serde_json::from_str(r#"{"Encryption": "YES"}"#).unwrap();
        assert_eq!(i.encryption, "YES");
    }

    #[test]
    fn info_response_parses_the_doc_example() {
        let doc = r#"{"DefaultKmsRegion":"ap-hongkong","Encryption":"NO","InstanceId":"cdb-oaj9cbla","InstanceName":"cdb_name","KeyId":"***-CDB","KeyRegion":"ap-hongkong","RequestId":"x"}"#;
        let r: DescribeDBInstanceInfoResponse = serde_json::from_str(doc).unwrap();
        assert_eq!(r.encryption, "NO");
        assert_eq!(r.key_region.as_deref(), Some("ap-hongkong"));
    }
}

/// What a `DescribeDBInstanceInfo` answer says about encryption. Only the exact
/// strings count (SPEC §1): `"YES"` is encrypted, `"NO"` is not, and anything
/// else — empty, missing, `null`, another word or another type — is unreadable,
/// which is never a `NO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptionReading {
    Yes,
    No,
    /// The raw value as JSON text (`""`, `null`, `"yes"`, `1`, or `<missing>`).
    Unreadable(String),
}

impl EncryptionReading {
    /// Reads the `Encryption` field of a `DescribeDBInstanceInfo` `Response` object.
    pub fn of(response: &serde_json::Value) -> EncryptionReading {
        match response.get("Encryption") {
            Some(serde_json::Value::String(s)) if s == "YES" => EncryptionReading::Yes,
            Some(serde_json::Value::String(s)) if s == "NO" => EncryptionReading::No,
            Some(v) => {
                let raw = v.to_string();
                if raw.chars().count() > 200 {
                    EncryptionReading::Unreadable(raw.chars().take(200).collect::<String>() + "…")
                } else {
                    EncryptionReading::Unreadable(raw)
                }
            }
            None => EncryptionReading::Unreadable("<missing>".into()),
        }
    }
}

#[cfg(test)]
mod reading_tests {
    use super::EncryptionReading::{self, *};
    use serde_json::json;

    #[test]
    fn only_the_exact_words_count() {
        let r = |v: serde_json::Value| EncryptionReading::of(&json!({ "Encryption": v }));
        assert_eq!(r(json!("YES")), Yes);
        assert_eq!(r(json!("NO")), No);
        for (v, raw) in [
            (json!(""), "\"\""),
            (json!(null), "null"),
            (json!("no"), "\"no\""),
            (json!("yes"), "\"yes\""),
            (json!(" NO"), "\" NO\""),
            (json!("NO "), "\"NO \""),
            (json!("UNKNOWN"), "\"UNKNOWN\""),
            (json!(false), "false"),
            (json!(0), "0"),
            (json!(["NO"]), "[\"NO\"]"),
            (json!({"v": "NO"}), "{\"v\":\"NO\"}"),
        ] {
            assert_eq!(r(v.clone()), Unreadable(raw.into()), "{v}");
        }
        assert_eq!(
            EncryptionReading::of(&json!({"RequestId": "r"})),
            Unreadable("<missing>".into())
        );
        let long = "N".repeat(1000);
        match r(json!(long)) {
            Unreadable(raw) => assert!(raw.chars().count() <= 201, "{}", raw.len()),
            other => panic!("{other:?}"),
        }
    }
}
