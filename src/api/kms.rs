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
