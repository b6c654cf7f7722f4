//! CAM 2019-01-16 `ListAttachedRolePolicies`: the CDB service role the seed
//! names as a precondition of encryption (reference §5.6). Region-free.

use serde::{Deserialize, Serialize};

pub const LIST_ATTACHED_ROLE_POLICIES: &str = "ListAttachedRolePolicies";

/// The service role through which CDB reaches KMS.
pub const MYSQL_ROLE: &str = "MySQL_QCSRole";
/// The preset policy that role needs.
pub const MYSQL_ROLE_POLICY: &str = "QcloudAccessForMySQLRole";
/// The answer when the role does not exist.
pub const ROLE_NOT_EXIST: &str = "InvalidParameter.RoleNotExist";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedRolePoliciesRequest {
    /// Page number, from 1.
    pub page: u32,
    /// Rows per page, at most 200.
    pub rp: u32,
    pub role_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedPolicyOfRole {
    #[serde(default)]
    pub policy_id: u64,
    pub policy_name: String,
    #[serde(default)]
    pub add_time: String,
    /// `User` or `QCS` (preset).
    #[serde(default)]
    pub policy_type: String,
    #[serde(default)]
    pub create_mode: u64,
    #[serde(default)]
    pub deactived: u64,
    #[serde(default)]
    pub deactived_detail: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedRolePoliciesResponse {
    #[serde(default)]
    pub list: Vec<AttachedPolicyOfRole>,
    #[serde(default)]
    pub total_num: u64,
    #[serde(default)]
    pub request_id: Option<String>,
}
