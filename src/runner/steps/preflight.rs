//! Preflight beyond the first read: does the instance support encryption, and
//! (with `--check-kms`) is its custom key enabled?

use std::time::Duration;

use super::read::read_failed;
use super::{Active, Ctx, Heard, Next, Step, StepOutcome, Stepped};
use crate::api::cdb::{DescribeDBFeaturesResponse, InstanceIdRequest};
use crate::api::kms::{DescribeKeyRequest, DescribeKeyResponse};
use crate::api::{Gate, Service};
use crate::journal::{CallRecord, Fact, JournalError};
use crate::model::{Action, Code};

pub(super) async fn features(ctx: &Ctx, a: &mut Active, gate: &dyn Gate) -> StepOutcome {
    let req = InstanceIdRequest {
        instance_id: a.id().to_string(),
    };
    let reply = ctx
        .call::<_, DescribeDBFeaturesResponse>(
            a,
            &a.cdb,
            Service::Cdb,
            Action::DescribeDBFeatures,
            &a.row.region,
            &req,
            gate,
        )
        .await;
    let (heard, rec) = (reply.heard, reply.rec);
    let f = match reply.result {
        Ok(f) => f,
        Err(f) => return read_failed(ctx, a, Step::Features, f, rec, heard).await,
    };
    a.read_failures = 0;
    let refusal = if !f.is_support_encryption {
        Some((
            Code::UnsupportedEncryption,
            "DescribeDBFeatures: IsSupportEncryption is false; this instance cannot use TDE"
                .to_string(),
        ))
    } else if f.encryption_need_upgrade {
        Some((
            Code::EncryptionNeedUpgrade,
            format!(
                "DescribeDBFeatures: EncryptionNeedUpgrade is true; upgrade the kernel minor version ({} -> {}) first",
                f.current_sub_version, f.target_sub_version
            ),
        ))
    } else {
        None
    };
    let next = match refusal {
        Some((code, message)) => {
            let code = code.as_str().into();
            ctx.finish(a, Fact::PreflightFailed { code, message }, Some(rec))
                .await?
        }
        None => {
            ctx.apply(a, Fact::Called, Some(rec)).await?;
            after_preflight(ctx, a, Step::Features)
        }
    };
    Ok(Stepped::new(heard, next))
}

fn after_preflight(ctx: &Ctx, a: &Active, done: Step) -> Next {
    if done == Step::Features && ctx.config.check_kms && a.row.key_id.is_some() {
        return Next::After(Step::KmsKey, Duration::ZERO);
    }
    if ctx.config.plan_only {
        return Next::Done;
    }
    Next::After(Step::WriteAhead, Duration::ZERO)
}

pub(super) async fn kms_key(ctx: &Ctx, a: &mut Active, gate: &dyn Gate) -> StepOutcome {
    let (Some(key_id), Some(key_region), Some(ep)) = (
        a.row.key_id.clone(),
        a.row.key_region.clone(),
        a.kms.clone(),
    ) else {
        return Ok(Stepped::new(
            Heard::Nothing,
            after_preflight(ctx, a, Step::KmsKey),
        ));
    };
    // Each distinct key is asked about once: one instance at a time per key
    // asks (the others wait for its answer), and a state read decides for
    // every other instance with that key, with no request.
    let slot = ctx.key_slot(a.row.account.as_deref(), &key_region, &key_id);
    let mut known = slot.lock().await;
    if let Some(state) = known.clone() {
        let next = key_decides(ctx, a, &key_id, &key_region, &state, None).await?;
        return Ok(Stepped::new(Heard::Nothing, next));
    }
    let reply = ctx
        .call::<_, DescribeKeyResponse>(
            a,
            &ep,
            Service::Kms,
            Action::DescribeKey,
            &key_region,
            &DescribeKeyRequest {
                key_id: key_id.clone(),
            },
            gate,
        )
        .await;
    let (heard, rec) = (reply.heard, reply.rec);
    let meta = match reply.result {
        Ok(ans) => ans.key_metadata,
        Err(f) => return read_failed(ctx, a, Step::KmsKey, f, rec, heard).await,
    };
    a.read_failures = 0;
    *known = Some(meta.key_state.clone());
    drop(known);
    let next = key_decides(ctx, a, &key_id, &key_region, &meta.key_state, Some(rec)).await?;
    Ok(Stepped::new(heard, next))
}

/// A key's state decides: not `Enabled` fails the instance before any Open.
async fn key_decides(
    ctx: &Ctx,
    a: &mut Active,
    key_id: &str,
    key_region: &str,
    state: &str,
    rec: Option<CallRecord>,
) -> Result<Next, JournalError> {
    if state != "Enabled" {
        let fact = Fact::PreflightFailed {
            code: Code::KmsKeyNotEnabled.as_str().into(),
            message: format!("KMS key {key_id} in {key_region} is {state}, not Enabled"),
        };
        return ctx.finish(a, fact, rec).await;
    }
    if rec.is_some() {
        ctx.apply(a, Fact::Called, rec).await?;
    }
    Ok(after_preflight(ctx, a, Step::KmsKey))
}
