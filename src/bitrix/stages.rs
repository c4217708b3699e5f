//! The participants' stages: configured names resolved to STATUS_IDs per pipeline at start-up,
//! and the target stage for an item in its own pipeline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::client::{BitrixError, Idempotent};
use super::crm::Crm;
use super::model::{as_text, as_u64};
use crate::config::StageNames;

/// Stage ids by role, per pipeline (category) of the participant type.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    pub generate: BTreeSet<String>,
    pub sent: BTreeMap<i64, String>,
    pub problem: BTreeMap<i64, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{var}: no stage named {name:?} in any pipeline of the participant type")]
    NotFound { var: &'static str, name: String },
    #[error("{var}: pipeline {category} has two stages named {name:?}")]
    Ambiguous {
        var: &'static str,
        name: String,
        category: i64,
    },
    #[error("cannot read the participant stages from Bitrix24: {0}")]
    Bitrix(#[from] BitrixError),
}

impl Stages {
    /// The stage for `role` in the item's pipeline (never another pipeline's: the update would
    /// move the item there). Only when the item's pipeline is unknown, the one pipeline configured.
    pub fn target(map: &BTreeMap<i64, String>, category: Option<i64>) -> Option<&String> {
        match category {
            Some(c) => map.get(&c),
            None => (map.len() == 1).then(|| map.values().next()).flatten(),
        }
    }
}

impl Crm {
    /// Resolves configured stage names (or STATUS_IDs, recognised by a ':') to ids per pipeline.
    pub async fn resolve_stages(&self, names: &StageNames) -> Result<Stages, StageError> {
        let all_ids = [&names.generate, &names.sent, &names.problem]
            .iter()
            .all(|n| n.contains(':'));
        let statuses = if all_ids {
            Vec::new()
        } else {
            self.stage_list().await?
        };
        let resolve =
            |var: &'static str, name: &str| -> Result<BTreeMap<i64, String>, StageError> {
                if name.contains(':') {
                    let cat = super::model::category_of_stage(name).unwrap_or(0);
                    return Ok(BTreeMap::from([(cat, name.to_string())]));
                }
                let mut found: BTreeMap<i64, String> = BTreeMap::new();
                for (cat, status_id, stage_name) in &statuses {
                    if stage_name.trim() == name.trim()
                        && found.insert(*cat, status_id.clone()).is_some()
                    {
                        return Err(StageError::Ambiguous {
                            var,
                            name: name.to_string(),
                            category: *cat,
                        });
                    }
                }
                if found.is_empty() {
                    return Err(StageError::NotFound {
                        var,
                        name: name.to_string(),
                    });
                }
                Ok(found)
            };
        Ok(Stages {
            generate: resolve("BITRIX_STAGE_GENERATE", &names.generate)?
                .into_values()
                .collect(),
            sent: resolve("BITRIX_STAGE_SENT", &names.sent)?,
            problem: resolve("BITRIX_STAGE_PROBLEM", &names.problem)?,
        })
    }

    /// (category, STATUS_ID, NAME) of every stage of every pipeline of the participant type.
    async fn stage_list(&self) -> Result<Vec<(i64, String, String)>, BitrixError> {
        let params = json!({"entityTypeId": self.participant_type});
        let result = self
            .client
            .result("crm.category.list", &params, Idempotent::Yes)
            .await?;
        let mut categories: Vec<i64> = result
            .get("categories")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("id").and_then(as_u64))
                    .map(|c| c as i64)
                    .collect()
            })
            .unwrap_or_default();
        if categories.is_empty() {
            categories.push(0);
        }
        let mut out = Vec::new();
        for cat in categories {
            let params = json!({"order": {"SORT": "ASC"},
                "filter": {"ENTITY_ID": format!("DYNAMIC_{}_STAGE_{cat}", self.participant_type)}});
            let result = self
                .client
                .result("crm.status.list", &params, Idempotent::Yes)
                .await?;
            for s in result.as_array().into_iter().flatten() {
                let (Some(id), Some(name)) = (
                    s.get("STATUS_ID").and_then(as_text),
                    s.get("NAME").and_then(as_text),
                ) else {
                    continue;
                };
                let category = s
                    .get("CATEGORY_ID")
                    .and_then(as_u64)
                    .map_or(cat, |c| c as i64);
                out.push((category, id, name));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_never_taken_from_another_pipeline() {
        let map = BTreeMap::from([(12, "DT1040_12:UC_SENT01".to_string())]);
        assert_eq!(
            Stages::target(&map, Some(12)).map(String::as_str),
            Some("DT1040_12:UC_SENT01")
        );
        assert_eq!(Stages::target(&map, Some(14)), None);
        assert_eq!(
            Stages::target(&map, None).map(String::as_str),
            Some("DT1040_12:UC_SENT01")
        );
    }
}
