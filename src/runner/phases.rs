//! The phases of a run (issue 11): an optional canary, then each wave in turn
//! (or everything selected, in one phase). Each phase is driven to the end —
//! every instance it touches verified or failed — before the next begins.

use std::collections::HashSet;
use std::sync::Arc;

use super::dispatcher::Filter;
use super::rollout::{default_budget, Rollout};
use super::{RunError, StopReason};
use crate::journal::{read, Journal};
use crate::model::{InstanceId, RolloutEvent};

pub(super) enum Kind {
    All,
    Canary(Vec<InstanceId>),
    Wave {
        index: usize,
        of: usize,
        wave: String,
    },
}

pub(super) struct Phase {
    pub kind: Kind,
    pub filter: Filter,
    /// Unfinished instances it touches when the run starts.
    pub size: u64,
}

pub(super) struct Plan {
    pub phases: Vec<Phase>,
    /// Unfinished instances the run touches (selection × waves).
    pub touched: u64,
    pub budget: u64,
}

impl Plan {
    /// The `Plan` milestone: what this run was told to do.
    pub fn event(&self, r: &Rollout) -> RolloutEvent {
        let mut selection: Vec<String> = r.selection.only.iter().map(|m| m.to_string()).collect();
        selection.extend(r.selection.exclude.iter().map(|m| format!("not {m}")));
        RolloutEvent::Plan {
            selection: if selection.is_empty() {
                format!("every unfinished instance ({})", self.touched)
            } else {
                format!("{} ({} unfinished)", selection.join(" and "), self.touched)
            },
            waves: r
                .waves
                .as_ref()
                .map(|w| w.0.iter().map(|m| m.to_string()).collect())
                .unwrap_or_default(),
            canary: self.phases.iter().find_map(|p| match &p.kind {
                Kind::Canary(ids) => Some(ids.len() as u64),
                _ => None,
            }),
            budget: self.budget,
            window: r.window.as_ref().map(|w| w.to_string()),
        }
    }
}

impl Phase {
    pub fn is_canary(&self) -> bool {
        matches!(self.kind, Kind::Canary(_))
    }

    pub fn started(&self) -> Option<RolloutEvent> {
        match &self.kind {
            Kind::All => None,
            Kind::Canary(ids) => Some(RolloutEvent::CanaryStarted {
                instances: ids.iter().map(|i| i.to_string()).collect(),
            }),
            Kind::Wave { index, of, wave } => Some(RolloutEvent::WaveStarted {
                index: *index,
                of: *of,
                wave: wave.clone(),
                instances: self.size,
            }),
        }
    }

    /// Records the end of the phase; a canary with a failed instance stops the run.
    pub async fn finished(
        &self,
        journal: &Journal,
        run_id: Option<i64>,
    ) -> Result<Option<StopReason>, RunError> {
        let event = match &self.kind {
            Kind::All => return Ok(None),
            Kind::Canary(ids) => {
                let ids: HashSet<String> = ids.iter().map(|i| i.to_string()).collect();
                let mut failed: Vec<String> = journal
                    .query(move |c| {
                        let mut failed = Vec::new();
                        read::for_each_instance(c, |row| {
                            if ids.contains(row.instance_id.as_str()) && !row.state.is_success() {
                                failed.push(row.instance_id.to_string());
                            }
                            Ok(())
                        })
                        .map(|_| failed)
                    })
                    .await?;
                failed.sort();
                if !failed.is_empty() {
                    journal
                        .note_rollout(
                            run_id,
                            &RolloutEvent::CanaryFailed {
                                failed: failed.clone(),
                            },
                        )
                        .await?;
                    return Ok(Some(StopReason::CanaryFailed { failed }));
                }
                RolloutEvent::CanaryPassed {
                    instances: self.size,
                }
            }
            Kind::Wave { index, of, wave } => RolloutEvent::WaveFinished {
                index: *index,
                of: *of,
                wave: wave.clone(),
            },
        };
        journal.note_rollout(run_id, &event).await?;
        Ok(None)
    }
}

/// The phases for `rollout` over the journal's unfinished instances.
pub(super) async fn plan(journal: &Journal, rollout: &Rollout) -> Result<Plan, RunError> {
    let selection = rollout.selection.clone();
    let waves = rollout.waves.clone().map(|w| w.0).unwrap_or_default();
    let everything = selection.is_everything() && waves.is_empty() && rollout.canary.is_none();
    // Unfinished instances per wave (index `waves.len()` = no wave), and the
    // first ones of the first wave that has any (canary candidates), in order.
    let (per_wave, first): (Vec<u64>, Vec<InstanceId>) = if everything {
        let counts = journal.query(read::counts).await?;
        let open = counts
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        (vec![open], Vec::new())
    } else {
        let waves = waves.clone();
        let want = rollout.canary.is_some();
        journal
            .query(move |c| {
                let mut per_wave = vec![0u64; waves.len().max(1)];
                let mut first: Vec<(usize, InstanceId)> = Vec::new();
                read::for_each_instance(c, |row| {
                    if row.state.is_terminal() || !selection.selects(&row) {
                        return Ok(());
                    }
                    let wave = if waves.is_empty() {
                        Some(0)
                    } else {
                        waves.iter().position(|w| w.matches(&row))
                    };
                    if let Some(w) = wave {
                        per_wave[w] += 1;
                        if want {
                            first.push((w, row.instance_id.clone()));
                        }
                    }
                    Ok(())
                })
                .map(|_| {
                    let lead = first.iter().map(|(w, _)| *w).min();
                    let first = first
                        .into_iter()
                        .filter(|(w, _)| Some(*w) == lead)
                        .map(|(_, id)| id)
                        .collect();
                    (per_wave, first)
                })
            })
            .await?
    };
    let touched: u64 = per_wave.iter().sum();
    let budget = rollout
        .max_errors
        .map(|a| a.of(touched))
        .unwrap_or_else(|| default_budget(touched));
    let mut phases = Vec::new();
    if let Some(amount) = rollout.canary {
        let n = amount.of(touched).max(1) as usize;
        let ids: Vec<InstanceId> = first.into_iter().take(n).collect();
        if !ids.is_empty() {
            let set: HashSet<InstanceId> = ids.iter().cloned().collect();
            phases.push(Phase {
                size: ids.len() as u64,
                kind: Kind::Canary(ids),
                filter: Arc::new(move |row| set.contains(&row.instance_id)),
            });
        }
    }
    let selection = rollout.selection.clone();
    if waves.is_empty() {
        phases.push(Phase {
            kind: Kind::All,
            size: touched,
            filter: Arc::new(move |row| selection.selects(row)),
        });
    } else {
        let of = waves.len();
        for (index, wave) in waves.iter().enumerate() {
            let earlier: Vec<_> = waves[..index].to_vec();
            let (wave_match, selection) = (wave.clone(), selection.clone());
            phases.push(Phase {
                kind: Kind::Wave {
                    index: index + 1,
                    of,
                    wave: wave.to_string(),
                },
                size: per_wave[index],
                filter: Arc::new(move |row| {
                    selection.selects(row)
                        && wave_match.matches(row)
                        && !earlier.iter().any(|w| w.matches(row))
                }),
            });
        }
    }
    Ok(Plan {
        phases,
        touched,
        budget,
    })
}
