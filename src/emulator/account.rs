//! The account-wide answers behind the seed's preconditions (reference §5.5,
//! §5.6): kms `GetServiceStatus` (is KMS on in this region?) and cam
//! `ListAttachedRolePolicies` (does `MySQL_QCSRole` carry
//! `QcloudAccessForMySQLRole`?), shaped by the config's switches.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use axum::response::Response;
use serde_json::Value;

use super::config::{EmulatorConfig, RoleState};
use super::wire::{error, str_param, success};
use crate::api::cam::{
    AttachedPolicyOfRole, ListAttachedRolePoliciesResponse, MYSQL_ROLE, MYSQL_ROLE_POLICY,
    ROLE_NOT_EXIST,
};
use crate::api::kms::GetServiceStatusResponse;

/// kms `GetServiceStatus` for the request's region.
pub(super) fn service_status(config: &EmulatorConfig, region: &str) -> Response {
    let enabled = config.kms_enabled(region);
    let resp = GetServiceStatusResponse {
        service_enabled: enabled,
        // 0: not purchased; 1: normal.
        invalid_type: Some(if enabled { 1 } else { 0 }),
        user_level: Some(0),
        request_id: None,
    };
    success(serde_json::to_value(resp).unwrap())
}

/// cam `ListAttachedRolePolicies`: only `MySQL_QCSRole` exists (when it does),
/// with its preset policy attached unless the config dropped it.
pub(super) fn attached_role_policies(config: &EmulatorConfig, params: &Value) -> Response {
    if config.cam_denied {
        return error(
            "AuthFailure.UnauthorizedOperation",
            "You are not authorized to perform cam:ListAttachedRolePolicies (emulated sub-account without CAM read access).",
        );
    }
    let page = params.get("Page").and_then(Value::as_u64);
    let rp = params.get("Rp").and_then(Value::as_u64);
    let (Some(page), Some(rp)) = (page, rp) else {
        return error(
            "MissingParameter",
            "The request is missing a required parameter `Page` or `Rp`.",
        );
    };
    if page < 1 || !(1..=200).contains(&rp) {
        return error(
            "InvalidParameter.ParamError",
            "Page starts at 1 and Rp is within 1..200.",
        );
    }
    let role = str_param(params, "RoleName").or_else(|| str_param(params, "RoleId"));
    if role != Some(MYSQL_ROLE) || config.mysql_role == RoleState::Missing {
        return error(
            ROLE_NOT_EXIST,
            &format!("role {} not exist", role.unwrap_or("")),
        );
    }
    let list = match config.mysql_role {
        RoleState::Attached => vec![AttachedPolicyOfRole {
            policy_id: 16_313_162,
            policy_name: MYSQL_ROLE_POLICY.into(),
            add_time: "2023-11-14 22:13:20".into(),
            policy_type: "QCS".into(),
            create_mode: 2,
            deactived: 0,
            deactived_detail: Vec::new(),
            description: "Access to KMS for TencentDB for MySQL (emulated)".into(),
        }],
        RoleState::NoPolicy | RoleState::Missing => Vec::new(),
    };
    let total = list.len() as u64;
    let shown = if page == 1 { list } else { Vec::new() };
    let resp = ListAttachedRolePoliciesResponse {
        list: shown,
        total_num: total,
        request_id: None,
    };
    success(serde_json::to_value(resp).unwrap())
}
