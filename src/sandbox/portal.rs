//! The sandbox portal's data and the REST methods certportal uses, answering with the shapes and
//! error codes of the API reference.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::bitrix::model::{as_text, as_u64};

pub const CONTACT: u32 = 3;

#[derive(Debug, Clone)]
pub struct ApiErr {
    pub status: u16,
    pub code: String,
    pub description: String,
}

fn err(status: u16, code: &str, description: &str) -> ApiErr {
    ApiErr {
        status,
        code: code.into(),
        description: description.into(),
    }
}

/// A method's answer before it is wrapped in the envelope.
#[derive(Debug, Default)]
pub struct Answer {
    pub result: Value,
    pub total: Option<u64>,
    pub next: Option<u64>,
}

impl From<Value> for Answer {
    fn from(result: Value) -> Self {
        Self {
            result,
            ..Self::default()
        }
    }
}

/// A change the portal reports to its event handler.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: &'static str,
    pub entity_type: u32,
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct Portal {
    /// Items by entityTypeId, then id; custom fields under their original names.
    pub items: BTreeMap<u32, BTreeMap<u64, Map<String, Value>>>,
    /// Contacts' e-mails: contact id → [(multi-field id, value)].
    pub emails: BTreeMap<u64, Vec<(u64, String)>>,
    pub categories: BTreeMap<u32, Vec<Value>>,
    pub statuses: Vec<Value>,
    /// `crm.item.fields` answers by entityTypeId.
    pub fields: BTreeMap<u32, Value>,
    pub comments: Vec<(String, u64, String)>,
    pub files: BTreeMap<u64, (String, Vec<u8>)>,
    pub next_id: u64,
    pub changes: Vec<Change>,
    /// Stages whose entry requires fields to be filled (for required-field failures).
    pub required_on_stage: BTreeMap<String, Vec<String>>,
}

fn param_u64(p: &Value, key: &str) -> Option<u64> {
    p.get(key).and_then(as_u64)
}

/// Portal time carries the portal's offset (Moscow here), as the real API does.
fn now_iso() -> String {
    let msk = chrono::FixedOffset::east_opt(3 * 3600).expect("a valid offset");
    chrono::Utc::now()
        .with_timezone(&msk)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

impl Portal {
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn item(&self, entity_type: u32, id: u64) -> Option<&Map<String, Value>> {
        self.items.get(&entity_type)?.get(&id)
    }

    pub fn item_mut(&mut self, entity_type: u32, id: u64) -> Option<&mut Map<String, Value>> {
        self.items.get_mut(&entity_type)?.get_mut(&id)
    }

    /// Adds an item as a user would; system fields are filled in.
    pub fn add_item(
        &mut self,
        entity_type: u32,
        id: Option<u64>,
        fields: Map<String, Value>,
    ) -> u64 {
        let id = id.unwrap_or_else(|| self.new_id());
        self.next_id = self.next_id.max(id);
        let now = now_iso();
        let mut item = Map::new();
        item.insert("id".into(), json!(id));
        item.insert("entityTypeId".into(), json!(entity_type));
        item.insert("createdTime".into(), json!(now));
        item.insert("updatedTime".into(), json!(now));
        item.insert("movedTime".into(), json!(now));
        item.insert("assignedById".into(), json!(1));
        for (k, v) in fields {
            item.insert(k, v);
        }
        if let Some(stage) = item.get("stageId").and_then(Value::as_str) {
            let cat = crate::bitrix::model::category_of_stage(stage).unwrap_or(0);
            item.insert("categoryId".into(), json!(cat));
        }
        self.items.entry(entity_type).or_default().insert(id, item);
        if entity_type >= 128 {
            self.changes.push(Change {
                event: "ONCRMDYNAMICITEMADD",
                entity_type,
                id,
            });
        }
        id
    }

    /// Moves an item as a user dragging its card would.
    pub fn move_item(&mut self, entity_type: u32, id: u64, stage: &str) -> bool {
        let mut fields = Map::new();
        fields.insert("stageId".into(), json!(stage));
        self.update_fields(entity_type, id, fields).is_ok()
    }

    pub fn call(&mut self, method: &str, p: &Value) -> Result<Answer, ApiErr> {
        match method {
            "crm.item.get" => self.item_get(p).map(Answer::from),
            "crm.item.list" => self.item_list(p),
            "crm.item.update" => self.item_update(p).map(Answer::from),
            "crm.item.add" => self.item_add(p).map(Answer::from),
            "crm.item.fields" => self.item_fields(p).map(Answer::from),
            "crm.contact.get" => self.contact_get(p).map(Answer::from),
            "crm.status.list" => Ok(self.status_list(p).into()),
            "crm.category.list" => self.category_list(p).map(Answer::from),
            "crm.timeline.comment.add" => self.comment_add(p).map(Answer::from),
            _ => Err(err(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")),
        }
    }

    fn entity_type(&self, p: &Value) -> Result<u32, ApiErr> {
        let t = param_u64(p, "entityTypeId")
            .ok_or_else(|| err(400, "INVALID_ARG_VALUE", "entityTypeId is required"))?
            as u32;
        if self.items.contains_key(&t) || t == CONTACT {
            Ok(t)
        } else {
            Err(err(400, "NOT_FOUND", "SPA not found"))
        }
    }

    /// The item as `crm.item.*` shows it: camelCase custom fields unless `useOriginalUfNames=Y`.
    fn present(&self, entity_type: u32, item: &Map<String, Value>, original: bool) -> Value {
        let mut out = Map::new();
        for (k, v) in item {
            let key = if !original && k.starts_with("UF_CRM_") {
                camel(k)
            } else {
                k.clone()
            };
            out.insert(key, v.clone());
        }
        if entity_type == CONTACT {
            let id = item.get("id").and_then(as_u64).unwrap_or(0);
            let fm: Vec<Value> = self
                .emails
                .get(&id)
                .into_iter()
                .flatten()
                .map(|(fid, v)| json!({"id": fid, "typeId": "EMAIL", "valueType": "WORK", "value": v}))
                .collect();
            out.insert(
                "hasEmail".into(),
                json!(if fm.is_empty() { "N" } else { "Y" }),
            );
            out.insert("fm".into(), Value::Array(fm));
        }
        Value::Object(out)
    }

    fn item_get(&self, p: &Value) -> Result<Value, ApiErr> {
        let t = self.entity_type(p)?;
        let id =
            param_u64(p, "id").ok_or_else(|| err(400, "INVALID_ARG_VALUE", "id is required"))?;
        let item = self
            .item(t, id)
            .ok_or_else(|| err(400, "NOT_FOUND", "Element not found"))?;
        let original = p.get("useOriginalUfNames").and_then(Value::as_str) == Some("Y");
        Ok(json!({"item": self.present(t, item, original)}))
    }

    fn item_list(&self, p: &Value) -> Result<Answer, ApiErr> {
        let t = self.entity_type(p)?;
        let original = p.get("useOriginalUfNames").and_then(Value::as_str) == Some("Y");
        let filter = p.get("filter").cloned().unwrap_or(Value::Null);
        let mut items: Vec<&Map<String, Value>> = self
            .items
            .get(&t)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|item| matches_filter(item, &filter))
            .collect();
        let desc = p
            .get("order")
            .and_then(|o| o.get("id").or_else(|| o.get("ID")))
            .and_then(Value::as_str)
            .is_some_and(|d| d.eq_ignore_ascii_case("DESC"));
        if desc {
            items.reverse();
        }
        let start = p.get("start").and_then(|s| match s {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        let total = items.len() as u64;
        let offset = start.filter(|s| *s > 0).unwrap_or(0) as usize;
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(50)
            .map(|i| self.present(t, i, original))
            .collect();
        let page = select(page, p.get("select"));
        let no_count = start == Some(-1);
        let next = (offset + 50 < items.len() && !no_count).then_some((offset + 50) as u64);
        Ok(Answer {
            result: json!({"items": page}),
            total: (!no_count).then_some(total),
            next,
        })
    }

    fn item_add(&mut self, p: &Value) -> Result<Value, ApiErr> {
        let t = self.entity_type(p)?;
        let fields = p
            .get("fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let id = self.add_item(t, None, fields);
        let original = p.get("useOriginalUfNames").and_then(Value::as_str) == Some("Y");
        let item = self.item(t, id).expect("just added");
        Ok(json!({"item": self.present(t, item, original)}))
    }

    fn item_update(&mut self, p: &Value) -> Result<Value, ApiErr> {
        let t = self.entity_type(p)?;
        let id =
            param_u64(p, "id").ok_or_else(|| err(400, "INVALID_ARG_VALUE", "id is required"))?;
        let fields = p
            .get("fields")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| err(400, "INVALID_ARG_VALUE", "fields are required"))?;
        self.update_fields(t, id, fields)?;
        let original = p.get("useOriginalUfNames").and_then(Value::as_str) == Some("Y");
        let item = self.item(t, id).expect("just updated");
        Ok(json!({"item": self.present(t, item, original)}))
    }

    fn update_fields(&mut self, t: u32, id: u64, fields: Map<String, Value>) -> Result<(), ApiErr> {
        let required = fields
            .get("stageId")
            .and_then(Value::as_str)
            .and_then(|s| self.required_on_stage.get(s))
            .cloned()
            .unwrap_or_default();
        let mut new_files = Vec::new();
        let mut converted = Map::new();
        for (key, value) in fields {
            // A ["name", "base64"] pair uploads a file; the field then holds the file object.
            let upload = value
                .as_array()
                .filter(|a| a.len() == 2 && a.iter().all(Value::is_string));
            if let (true, Some(pair)) = (
                key.starts_with("UF_CRM_") || key.starts_with("ufCrm"),
                upload,
            ) {
                let name = pair[0].as_str().unwrap_or_default().to_string();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(pair[1].as_str().unwrap_or_default())
                    .map_err(|_| err(400, "CRM_FIELD_ERROR_VALUE_NOT_VALID", "bad file content"))?;
                self.next_id += 1;
                let file_id = self.next_id;
                new_files.push((file_id, name, bytes));
                converted.insert(
                    original_name(&key),
                    json!({"id": file_id,
                        "url": format!("/bitrix/services/main/ajax.php?action=crm.controller.item.getFile&fileId={file_id}"),
                        "urlMachine": format!("/rest/crm.controller.item.getFile.json?auth=secret&fileId={file_id}")}),
                );
            } else {
                converted.insert(original_name(&key), value);
            }
        }
        let item = self
            .item_mut(t, id)
            .ok_or_else(|| err(400, "NOT_FOUND", "Element not found"))?;
        for field in &required {
            if item.get(field).and_then(as_text).is_none() && !converted.contains_key(field) {
                return Err(err(
                    400,
                    "",
                    &format!("Поле \"{field}\" обязательно для заполнения"),
                ));
            }
        }
        let now = now_iso();
        let mut changed = false;
        for (key, value) in converted {
            if key == "stageId" {
                let old = item.get("stageId").cloned().unwrap_or(Value::Null);
                if old != value {
                    item.insert("previousStageId".into(), old);
                    item.insert("movedTime".into(), json!(now));
                    if let Some(cat) = value
                        .as_str()
                        .and_then(crate::bitrix::model::category_of_stage)
                    {
                        item.insert("categoryId".into(), json!(cat));
                    }
                }
            }
            if item.get(&key) != Some(&value) {
                changed = true;
                item.insert(key, value);
            }
        }
        if changed {
            item.insert("updatedTime".into(), json!(now));
        }
        for (file_id, name, bytes) in new_files {
            self.files.insert(file_id, (name, bytes));
        }
        if changed && t >= 128 {
            self.changes.push(Change {
                event: "ONCRMDYNAMICITEMUPDATE",
                entity_type: t,
                id,
            });
        }
        Ok(())
    }

    fn item_fields(&self, p: &Value) -> Result<Value, ApiErr> {
        let t = self.entity_type(p)?;
        Ok(json!({"fields": self.fields.get(&t).cloned().unwrap_or_else(|| json!({}))}))
    }

    fn contact_get(&self, p: &Value) -> Result<Value, ApiErr> {
        let id = param_u64(p, "id")
            .or_else(|| param_u64(p, "ID"))
            .ok_or_else(|| err(400, "", "ID is not defined or invalid."))?;
        let c = self
            .item(CONTACT, id)
            .ok_or_else(|| err(400, "", "Not found"))?;
        let text = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
        let emails: Vec<Value> = self
            .emails
            .get(&id)
            .into_iter()
            .flatten()
            .map(|(fid, v)| json!({"ID": fid.to_string(), "VALUE_TYPE": "WORK", "VALUE": v, "TYPE_ID": "EMAIL"}))
            .collect();
        let mut out = json!({"ID": id.to_string(), "NAME": text("name"), "LAST_NAME": text("lastName"),
            "SECOND_NAME": text("secondName"), "HAS_EMAIL": if emails.is_empty() { "N" } else { "Y" }});
        if !emails.is_empty() {
            out["EMAIL"] = Value::Array(emails);
        }
        Ok(out)
    }

    fn status_list(&self, p: &Value) -> Value {
        let entity = p
            .get("filter")
            .and_then(|f| f.get("ENTITY_ID"))
            .and_then(Value::as_str);
        Value::Array(
            self.statuses
                .iter()
                .filter(|s| {
                    entity.is_none_or(|e| s.get("ENTITY_ID").and_then(Value::as_str) == Some(e))
                })
                .cloned()
                .collect(),
        )
    }

    fn category_list(&self, p: &Value) -> Result<Value, ApiErr> {
        let t = self.entity_type(p)?;
        Ok(json!({"categories": self.categories.get(&t).cloned().unwrap_or_default()}))
    }

    fn comment_add(&mut self, p: &Value) -> Result<Value, ApiErr> {
        let fields = p
            .get("fields")
            .ok_or_else(|| err(400, "100", "Required fields are missing"))?;
        let entity = fields
            .get("ENTITY_TYPE")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let id = fields.get("ENTITY_ID").and_then(as_u64).unwrap_or(0);
        let comment = fields.get("COMMENT").and_then(as_text).unwrap_or_default();
        if comment.is_empty() {
            return Err(err(400, "INVALID_ARG_VALUE", "Empty comment"));
        }
        let t: Option<u32> = entity.strip_prefix("dynamic_").and_then(|t| t.parse().ok());
        let exists = t.is_some_and(|t| self.item(t, id).is_some());
        if !exists {
            return Err(err(400, "OWNER_NOT_FOUND", "Owner not found"));
        }
        self.comments.push((entity, id, comment));
        Ok(json!(self.comments.len()))
    }
}

/// `UF_CRM_20_QR` → `ufCrm20Qr` and the other documented spellings, via the client's own rules.
fn camel(original: &str) -> String {
    crate::bitrix::model::camel_name(original)
}

fn original_name(key: &str) -> String {
    if key.starts_with("ufCrm") {
        crate::bitrix::model::original_name(key).unwrap_or_else(|| key.to_string())
    } else {
        key.to_string()
    }
}

fn select(items: Vec<Value>, select: Option<&Value>) -> Vec<Value> {
    let Some(fields) = select.and_then(Value::as_array) else {
        return items;
    };
    if fields.iter().any(|f| f == "*") || fields.is_empty() {
        return items;
    }
    items
        .into_iter()
        .map(|item| {
            let mut out = Map::new();
            out.insert("id".into(), item["id"].clone());
            for f in fields.iter().filter_map(Value::as_str) {
                if let Some(v) = item.get(f) {
                    out.insert(f.to_string(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect()
}

/// `crm.item.list` filters: `=` (default), `!=`, `>`, `>=`, `<`, `<=`, `@` (in), `!@`.
fn matches_filter(item: &Map<String, Value>, filter: &Value) -> bool {
    let Some(conds) = filter.as_object() else {
        return true;
    };
    conds.iter().all(|(key, want)| {
        let ops = ["!@", "!=", ">=", "<=", "@", ">", "<", "=", "!"];
        let (op, field) = ops
            .iter()
            .find_map(|op| key.strip_prefix(op).map(|f| (*op, f)))
            .unwrap_or(("=", key.as_str()));
        let field = original_name(field);
        let have = item.get(&field).or_else(|| item.get(&field.to_lowercase()));
        let as_str = |v: &Value| as_text(v).unwrap_or_default();
        let have_s = have.map(as_str).unwrap_or_default();
        let cmp = |w: &Value| -> std::cmp::Ordering {
            match (have.and_then(as_u64), as_u64(w)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => have_s.cmp(&as_str(w)),
            }
        };
        let list = || -> Vec<Value> {
            want.as_array()
                .cloned()
                .unwrap_or_else(|| vec![want.clone()])
        };
        match op {
            "@" => list().iter().any(|w| cmp(w).is_eq()),
            "!@" => !list().iter().any(|w| cmp(w).is_eq()),
            "!=" | "!" => !cmp(want).is_eq(),
            ">" => cmp(want).is_gt(),
            ">=" => cmp(want).is_ge(),
            "<" => cmp(want).is_lt(),
            "<=" => cmp(want).is_le(),
            _ => cmp(want).is_eq(),
        }
    })
}
