//! KMS 2019-01-18 `DescribeKey`: a key is regional, so the call goes out with
//! `X-TC-Region = KeyRegion`.

use serde::{Deserialize, Serialize};

use crate::model::Action;

pub const DESCRIBE_KEY: &str = Action::DescribeKey.as_str();

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyRequest {
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub alias: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub description: String,
    /// `Enabled` | `Disabled` | `PendingDelete` | `PendingImport` | `Archived`.
    pub key_state: String,
    #[serde(default)]
    pub key_usage: String,
    #[serde(default)]
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyResponse {
    pub key_metadata: KeyMetadata,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `GetServiceStatus`: whether the account has KMS at all (reference §5.5).
pub const GET_SERVICE_STATUS: &str = "GetServiceStatus";

/// The fields of a `GetServiceStatus` answer that say whether KMS can be used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct GetServiceStatusResponse {
    pub service_enabled: bool,
    /// Why the service is unavailable: 0 not purchased, 1 normal, 2 suspended
    /// for arrears, 3 resource released.
    #[serde(default)]
    pub invalid_type: Option<i64>,
    /// 0 basic edition, 1 ultimate edition.
    #[serde(default)]
    pub user_level: Option<i64>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl GetServiceStatusResponse {
    /// What `InvalidType` means, for messages.
    pub fn invalid_reason(&self) -> &'static str {
        match self.invalid_type {
            Some(0) => "not purchased",
            Some(1) => "normal",
            Some(2) => "suspended for arrears",
            Some(3) => "resource released",
            _ => "unknown",
        }
    }
}
