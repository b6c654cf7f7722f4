//! The four reads, answered from the world: `DescribeDBInstanceInfo` (the
//! encryption reading, and the one that can make a re-send safe),
//! `DescribeDBFeatures`, `DescribeDBInstances` and kms `DescribeKey`.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use std::time::Instant;

use axum::response::Response;
use rand::Rng;
use serde_json::Value;

use super::config::Faults;
use super::server::Inner;
use super::wire::{error, str_param, success};
use super::world::{Instance, World, MASTER};
use crate::api::cdb::*;
use crate::api::kms::{DescribeKeyResponse, KeyMetadata};

/// Looks up a master instance in the request's region, or says why not.
pub(super) fn lookup<'a>(
    world: &'a mut World,
    params: &Value,
    region: &str,
    caller: &str,
) -> Result<&'a mut Instance, Response> {
    let Some(id) = str_param(params, "InstanceId") else {
        return Err(error(
            "MissingParameter",
            "The request is missing a required parameter `InstanceId`.",
        ));
    };
    match world.instances.get_mut(id) {
        Some(i) if i.region == region && i.owner.as_ref().is_none_or(|o| o == caller) => {
            if i.instance_type != MASTER {
                return Err(error(
                    "InvalidParameter",
                    &format!("{id} is not a master instance; pass the master instance id."),
                ));
            }
            Ok(i)
        }
        _ => Err(error(
            "InvalidParameter.InstanceNotFound",
            &format!("The instance {id} does not exist in region {region:?}."),
        )),
    }
}

/// `DescribeDBInstanceInfo`: the encryption reading as of `now`, unless the
/// injected internal error fires first.
pub(super) fn describe_instance_info(
    faults: &Faults,
    inner: &mut Inner,
    params: &Value,
    region: &str,
    now: Instant,
) -> Response {
    if faults.describe_internal > 0.0 && inner.rng.random_bool(faults.describe_internal) {
        return error(
            "InternalError.DBOperationError",
            "Internal error (injected).",
        );
    }
    let inst = match lookup(&mut inner.world, params, region, &inner.caller) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let reading = inst.encryption_reading(now);
    let visible = reading == "YES";
    if reading == "NO" && inst.pending_apply == 0 && inst.opens_in_progress == 0 {
        // A NO read taken after the last Open fully settled (nothing still
        // working on it, nothing left to apply): re-sending is safe now.
        inst.no_read_since_last_open = true;
    }
    let resp = DescribeDBInstanceInfoResponse {
        instance_id: inst.id.clone(),
        instance_name: Some(inst.name.clone()),
        encryption: reading.into(),
        key_id: if visible { inst.key_id.clone() } else { None },
        key_region: if visible {
            inst.key_region.clone()
        } else {
            None
        },
        default_kms_region: Some(inst.region.clone()),
        request_id: None,
    };
    success(serde_json::to_value(resp).unwrap())
}

/// The `Response` of a `DescribeDBFeatures` (no side effects).
pub(super) fn features_answer(
    world: &mut World,
    params: &Value,
    region: &str,
    caller: &str,
) -> Result<Value, Response> {
    let inst = lookup(world, params, region, caller)?;
    let resp = DescribeDBFeaturesResponse {
        is_support_audit: true,
        audit_need_upgrade: false,
        is_support_encryption: inst.supports_encryption,
        encryption_need_upgrade: inst.needs_upgrade,
        is_remote_ro: false,
        master_region: inst.region.clone(),
        is_support_update_sub_version: inst.needs_upgrade,
        current_sub_version: "20211030".into(),
        target_sub_version: if inst.needs_upgrade {
            "20230630"
        } else {
            "20211030"
        }
        .into(),
        request_id: None,
    };
    Ok(serde_json::to_value(resp).unwrap())
}

/// The `Response` of a kms `DescribeKey` (no side effects).
pub(super) fn key_answer(world: &World, params: &Value, region: &str) -> Result<Value, Response> {
    let Some(key_id) = str_param(params, "KeyId") else {
        return Err(error(
            "MissingParameter",
            "The request is missing a required parameter `KeyId`.",
        ));
    };
    match world.keys.get(&(region.to_string(), key_id.to_string())) {
        None => Err(error(
            "ResourceUnavailable.CmkNotFound",
            &format!("The key {key_id} does not exist in region {region:?}."),
        )),
        Some(k) => {
            let resp = DescribeKeyResponse {
                key_metadata: KeyMetadata {
                    key_id: k.id.clone(),
                    alias: format!("alias-{}", &k.id[..8.min(k.id.len())]),
                    create_time: 1_700_000_000,
                    description: "emulated key".into(),
                    key_state: k.state.clone(),
                    key_usage: "ENCRYPT_DECRYPT".into(),
                    origin: "TENCENT_KMS".into(),
                },
                request_id: None,
            };
            Ok(serde_json::to_value(resp).unwrap())
        }
    }
}

pub(super) fn describe_instances(
    world: &World,
    params: &Value,
    region: &str,
    caller: &str,
) -> Response {
    let req: DescribeDBInstancesRequest = match serde_json::from_value(params.clone()) {
        Ok(r) => r,
        Err(e) => return error("InvalidParameter", &format!("Invalid parameters: {e}")),
    };
    if region.is_empty() {
        return error(
            "InvalidParameter",
            "X-TC-Region is required for DescribeDBInstances.",
        );
    }
    let offset = req.offset.unwrap_or(0);
    let limit = req.limit.unwrap_or(20);
    if offset < 0 || !(1..=2000).contains(&limit) {
        return error(
            "InvalidParameterValue",
            "Offset must be >= 0 and Limit within 1..2000.",
        );
    }
    let matching: Vec<&Instance> = world
        .instances
        .values()
        .filter(|i| i.region == region && i.owner.as_ref().is_none_or(|o| o == caller))
        .filter(|i| {
            req.instance_types
                .as_ref()
                .is_none_or(|t| t.contains(&i.instance_type))
        })
        .filter(|i| req.status.as_ref().is_none_or(|s| s.contains(&i.status)))
        .filter(|i| req.init_flag.is_none_or(|f| f == i.init_flag))
        .filter(|i| {
            req.instance_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&i.id))
        })
        .filter(|i| {
            req.tags.as_ref().is_none_or(|tags| {
                tags.iter()
                    .all(|t| i.tags.iter().any(|(k, v)| *k == t.key && *v == t.value))
            })
        })
        .collect();
    let items: Vec<InstanceInfo> = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|i| listed(i))
        .collect();
    let resp = DescribeDBInstancesResponse {
        total_count: matching.len() as i64,
        items,
        request_id: None,
    };
    success(serde_json::to_value(resp).unwrap())
}

/// One instance as `DescribeDBInstances` lists it.
fn listed(i: &Instance) -> InstanceInfo {
    InstanceInfo {
        instance_id: i.id.clone(),
        instance_name: i.name.clone(),
        region: i.region.clone(),
        zone: i.zone.clone(),
        status: i.status,
        init_flag: i.init_flag,
        task_status: 0,
        instance_type: i.instance_type,
        engine_version: "8.0".into(),
        device_type: "UNIVERSAL".into(),
        tag_list: i
            .tags
            .iter()
            .map(|(k, v)| Tag {
                tag_key: k.clone(),
                tag_value: v.clone(),
            })
            .collect(),
    }
}
