//! Typed views of the CRM items certportal reads. Every UNCONFIRMED shape in the API reference is
//! accepted: numbers as JSON numbers or strings, custom fields under their original or camelCase
//! names, binding fields as `T<hex>_<id>` or a bare id, single values or one-element arrays.

use serde_json::Value;

/// A number sent either as a JSON number or a string of digits.
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A text value: strings as they are, numbers printed, arrays by their first non-empty element.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.iter().find_map(as_text),
        Value::Object(map) => map
            .get("VALUE")
            .or_else(|| map.get("value"))
            .and_then(as_text),
        _ => None,
    }
}

/// The camelCase names `crm.item.*` may use for an original `UF_CRM_…` name (API reference §2.1).
fn camel_names(original: &str) -> Vec<String> {
    let Some(rest) = original.strip_prefix("UF_CRM_") else {
        return Vec::new();
    };
    let simplified = format!("ufCrm_{rest}");
    let parts: Vec<&str> = rest.split('_').collect();
    let mixed = parts.iter().any(|p| {
        p.chars().any(|c| c.is_ascii_digit()) && p.chars().any(|c| c.is_ascii_alphabetic())
    });
    if mixed {
        return vec![simplified];
    }
    let mut regular = String::from("ufCrm");
    for (i, part) in parts.iter().enumerate() {
        let digits = part.chars().all(|c| c.is_ascii_digit());
        if digits {
            if i > 0 {
                regular.push('_');
            }
            regular.push_str(part);
        } else {
            let lower = part.to_lowercase();
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                regular.extend(first.to_uppercase());
                regular.push_str(chars.as_str());
            }
        }
    }
    vec![regular, simplified]
}

/// The regular camelCase spelling of an original custom field name.
pub fn camel_name(original: &str) -> String {
    camel_names(original)
        .into_iter()
        .next()
        .unwrap_or_else(|| original.to_string())
}

/// Back from a camelCase custom field name to the original (`ufCrm20Qr` → `UF_CRM_20_QR`).
pub fn original_name(camel: &str) -> Option<String> {
    if let Some(rest) = camel.strip_prefix("ufCrm_") {
        return Some(format!("UF_CRM_{rest}"));
    }
    let rest = camel.strip_prefix("ufCrm")?;
    let mut out = String::from("UF_CRM");
    let mut prev_digit = false;
    for (i, c) in rest.chars().enumerate() {
        if c == '_' {
            out.push('_');
            prev_digit = false;
            continue;
        }
        let digit = c.is_ascii_digit();
        if i == 0 || c.is_ascii_uppercase() || (digit && !prev_digit && !out.ends_with('_')) {
            out.push('_');
        }
        out.extend(c.to_uppercase());
        prev_digit = digit;
    }
    Some(out)
}

/// Looks a custom field up by its original name, then by the camelCase spellings.
pub fn field<'a>(item: &'a Value, original: &str) -> Option<&'a Value> {
    if let Some(v) = item.get(original) {
        return Some(v);
    }
    camel_names(original)
        .iter()
        .find_map(|n| item.get(n.as_str()))
}

/// Reads a "CRM binding" value pointing at an item of `entity_type_id`: `T<hex>_<id>`, a bare id, or
/// either inside an array. A binding to another type is ignored.
pub fn parse_binding(v: &Value, entity_type_id: u32) -> Option<u64> {
    match v {
        Value::Array(items) => items.iter().find_map(|i| parse_binding(i, entity_type_id)),
        Value::Number(n) => n.as_u64().filter(|id| *id > 0),
        Value::String(s) => {
            let s = s.trim();
            if let Some((prefix, id)) = s.split_once('_') {
                let hex = prefix
                    .strip_prefix('T')
                    .or_else(|| prefix.strip_prefix('t'))?;
                let ty = u32::from_str_radix(hex, 16).ok()?;
                (ty == entity_type_id).then(|| id.parse().ok()).flatten()
            } else {
                s.parse().ok().filter(|id| *id > 0)
            }
        }
        _ => None,
    }
}

/// A participant item as the pipeline needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub id: u64,
    pub stage_id: String,
    pub category_id: Option<i64>,
    pub moved_time: String,
    pub contact_id: Option<u64>,
    pub event_id: Option<u64>,
    pub achievement: Option<String>,
}

impl Participant {
    pub fn from_item(
        item: &Value,
        event_type_id: u32,
        event_field: &str,
        achievement_field: &str,
    ) -> Option<Self> {
        let id = item.get("id").or_else(|| item.get("ID")).and_then(as_u64)?;
        let stage_id = item
            .get("stageId")
            .or_else(|| item.get("STAGE_ID"))
            .and_then(as_text)
            .unwrap_or_default();
        let category_id = item
            .get("categoryId")
            .and_then(as_u64)
            .map(|c| c as i64)
            .or_else(|| category_of_stage(&stage_id));
        let moved_time = item
            .get("movedTime")
            .and_then(as_text)
            .or_else(|| item.get("updatedTime").and_then(as_text))
            .unwrap_or_default();
        let contact_id = item
            .get("contactId")
            .and_then(as_u64)
            .filter(|c| *c > 0)
            .or_else(|| {
                item.get("contactIds")
                    .and_then(Value::as_array)
                    .and_then(|ids| ids.iter().find_map(as_u64))
                    .filter(|c| *c > 0)
            });
        let event_id = field(item, event_field)
            .and_then(|v| parse_binding(v, event_type_id))
            .or_else(|| {
                item.get(format!("parentId{event_type_id}"))
                    .and_then(as_u64)
                    .filter(|id| *id > 0)
            });
        let achievement = field(item, achievement_field).and_then(as_text);
        Some(Self {
            id,
            stage_id,
            category_id,
            moved_time,
            contact_id,
            event_id,
            achievement,
        })
    }
}

/// `DT1038_12:NEW` → 12.
pub fn category_of_stage(stage_id: &str) -> Option<i64> {
    let (entity, _) = stage_id.split_once(':')?;
    entity.rsplit_once('_')?.1.parse().ok()
}

/// A contact's names and e-mails (id, value), from `crm.item.get` or the legacy `crm.contact.get`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contact {
    pub last_name: String,
    pub first_name: String,
    pub second_name: String,
    pub emails: Vec<(u64, String)>,
    /// False when the answer carried no e-mail list at all (only flat helpers).
    pub has_full_email_list: bool,
}

impl Contact {
    /// `crm.item.get` with entityTypeId 3: camelCase names and the `fm` multi-field list.
    pub fn from_item(item: &Value) -> Self {
        let text = |k: &str| item.get(k).and_then(as_text).unwrap_or_default();
        let fm = item.get("fm").and_then(Value::as_array);
        let emails = fm
            .map(|list| {
                list.iter()
                    .filter(|e| {
                        e.get("typeId")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case("EMAIL"))
                    })
                    .filter_map(|e| {
                        Some((
                            e.get("id").and_then(as_u64)?,
                            e.get("value").and_then(Value::as_str)?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_else(|| {
                // Without `fm` only the flat helpers remain (first address of each kind); the
                // caller asks `crm.contact.get` for the full list and uses these as a last resort.
                ["emailMailing", "emailHome", "emailWork", "email"]
                    .iter()
                    .filter_map(|k| item.get(*k).and_then(Value::as_str))
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (0, v.to_string()))
                    .collect()
            });
        Self {
            last_name: text("lastName"),
            first_name: text("name"),
            second_name: text("secondName"),
            emails,
            has_full_email_list: fm.is_some(),
        }
    }

    /// Legacy `crm.contact.get`: UPPER_CASE keys and `EMAIL: [{ID, VALUE, …}]`.
    pub fn from_legacy(result: &Value) -> Self {
        let text = |k: &str| result.get(k).and_then(as_text).unwrap_or_default();
        let emails = result
            .get("EMAIL")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("ID").and_then(as_u64)?,
                            e.get("VALUE").and_then(Value::as_str)?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            last_name: text("LAST_NAME"),
            first_name: text("NAME"),
            second_name: text("SECOND_NAME"),
            emails,
            has_full_email_list: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_fields_are_found_under_every_documented_spelling() {
        assert_eq!(camel_names("UF_CRM_20_EVENT")[0], "ufCrm20Event");
        assert_eq!(
            camel_names("UF_CRM_19_1775713913090")[0],
            "ufCrm19_1775713913090"
        );
        assert_eq!(camel_names("UF_CRM_10_DIGIT")[0], "ufCrm10Digit");
        assert_eq!(camel_names("UF_CRM_3_DIGIT10"), vec!["ufCrm_3_DIGIT10"]);
        assert_eq!(camel_names("UF_CRM_1747309879")[1], "ufCrm_1747309879");
        for name in [
            "UF_CRM_20_EVENT",
            "UF_CRM_19_1775713913090",
            "UF_CRM_20_QR",
            "UF_CRM_3_DIGIT10",
        ] {
            assert_eq!(original_name(&camel_name(name)).as_deref(), Some(name));
        }
        let item = json!({"ufCrm20Qr": 1});
        assert_eq!(field(&item, "UF_CRM_20_QR"), Some(&json!(1)));
    }

    #[test]
    fn bindings_accept_prefixed_and_bare_ids() {
        assert_eq!(parse_binding(&json!("T80_6"), 128), Some(6));
        assert_eq!(parse_binding(&json!("T80_6"), 129), None);
        assert_eq!(parse_binding(&json!("6"), 128), Some(6));
        assert_eq!(parse_binding(&json!(6), 128), Some(6));
        assert_eq!(parse_binding(&json!(["C_3", "T80_7"]), 128), Some(7));
        assert_eq!(parse_binding(&json!(""), 128), None);
        assert_eq!(parse_binding(&Value::Null, 128), None);
    }

    #[test]
    fn a_participant_is_read_with_string_or_number_ids() {
        let item = json!({"id": "24", "stageId": "DT1040_12:UC_GEN", "contactId": null,
            "contactIds": [45], "movedTime": "2026-05-14T10:26:32+03:00",
            "UF_CRM_20_EVENT": "T40e_7", "UF_CRM_20_ACHIEVEMENT": " "});
        let p = Participant::from_item(&item, 0x40e, "UF_CRM_20_EVENT", "UF_CRM_20_ACHIEVEMENT")
            .unwrap();
        assert_eq!(p.id, 24);
        assert_eq!(p.category_id, Some(12));
        assert_eq!(p.contact_id, Some(45));
        assert_eq!(p.event_id, Some(7));
        assert_eq!(p.achievement, None);
    }

    #[test]
    fn contacts_are_read_from_both_methods() {
        let item = json!({"name": "Иван", "lastName": "Петров", "secondName": null,
            "fm": [{"id": 5, "typeId": "PHONE", "value": "+7"},
                   {"id": 9, "typeId": "EMAIL", "valueType": "WORK", "value": "b@x.org"}]});
        let c = Contact::from_item(&item);
        assert_eq!(c.emails, vec![(9, "b@x.org".to_string())]);
        assert_eq!(c.second_name, "");
        let legacy = json!({"NAME": "Иван", "LAST_NAME": "Петров",
            "EMAIL": [{"ID": "158", "VALUE": "a@x.org"}, {"ID": "159", "VALUE": "b@x.org"}]});
        let c = Contact::from_legacy(&legacy);
        assert_eq!(c.emails.len(), 2);
        assert_eq!(c.last_name, "Петров");
        let flat = Contact::from_item(&json!({"name": "x", "email": "a@b.c", "emailWork": ""}));
        assert!(!flat.has_full_email_list);
        assert_eq!(flat.emails, vec![(0, "a@b.c".to_string())], "a last resort");
    }
}
