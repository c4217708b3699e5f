//! The CRM operations certportal performs, in the portal's vocabulary (API reference §9).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{BitrixClient, BitrixError, Idempotent};
use super::model::{Contact, Participant, as_text, as_u64, field};
use crate::config::FieldCodes;

/// An event card's certificate settings, as stored (not yet validated).
#[derive(Debug, Clone, PartialEq)]
pub struct EventCard {
    pub id: u64,
    pub template: Option<String>,
    pub title: Option<String>,
    pub points: Option<String>,
    pub letter: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Crm {
    pub client: BitrixClient,
    pub participant_type: u32,
    pub event_type: u32,
    pub fields: Arc<FieldCodes>,
    /// List-field option texts of the event type, and the unknown option ids already re-read for.
    event_field_options: Arc<tokio::sync::Mutex<Option<OptionsCache>>>,
    /// Event cards read in bulk, kept for `EVENT_TTL`.
    recent_events: Arc<std::sync::Mutex<HashMap<u64, (Instant, EventCard)>>>,
}

/// Hundreds of participants of one event are issued in several batches: the event is read once for
/// them, and an edit to the event card is seen within this long.
const EVENT_TTL: Duration = Duration::from_secs(30);

pub const CONTACT_TYPE: u32 = 3;

impl Crm {
    pub fn new(
        client: BitrixClient,
        participant_type: u32,
        event_type: u32,
        fields: FieldCodes,
    ) -> Self {
        Self {
            client,
            participant_type,
            event_type,
            fields: Arc::new(fields),
            event_field_options: Arc::default(),
            recent_events: Arc::default(),
        }
    }

    async fn get_item(&self, entity_type: u32, id: u64) -> Result<Option<Value>, BitrixError> {
        let params = json!({"entityTypeId": entity_type, "id": id, "useOriginalUfNames": "Y"});
        match self
            .client
            .result("crm.item.get", &params, Idempotent::Yes)
            .await
        {
            Ok(mut r) => Ok(r.get_mut("item").map(Value::take)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The same operations for a visitor waiting on a page: a method blocked by the portal's time
    /// limit fails at once instead of being waited for.
    pub fn impatient(&self) -> Self {
        Self {
            client: self.client.impatient(),
            ..self.clone()
        }
    }

    pub fn participant_from(&self, item: &Value) -> Option<Participant> {
        Participant::from_item(
            item,
            self.event_type,
            &self.fields.participant_event,
            &self.fields.participant_achievement,
        )
    }

    pub async fn participant(&self, id: u64) -> Result<Option<Participant>, BitrixError> {
        Ok(self
            .get_item(self.participant_type, id)
            .await?
            .and_then(|item| self.participant_from(&item)))
    }

    /// Participants by id in one `crm.item.list` call (up to 50 ids).
    pub async fn participants(&self, ids: &[u64]) -> Result<Vec<Participant>, BitrixError> {
        let params = json!({"entityTypeId": self.participant_type, "filter": {"@id": ids},
            "select": ["*"], "useOriginalUfNames": "Y", "start": -1});
        let result = self
            .client
            .result("crm.item.list", &params, Idempotent::Yes)
            .await?;
        Ok(items_of(&result)
            .iter()
            .filter_map(|i| self.participant_from(i))
            .collect())
    }

    pub async fn event(&self, id: u64) -> Result<Option<EventCard>, BitrixError> {
        match self.get_item(self.event_type, id).await? {
            Some(item) => Ok(Some(self.event_from(id, &item).await?)),
            None => Ok(None),
        }
    }

    /// Events by id: the ones read in the last `EVENT_TTL` from memory, the rest in one
    /// `crm.item.list` call (up to 50 ids); absent ids do not exist.
    pub async fn events(&self, ids: &[u64]) -> Result<BTreeMap<u64, EventCard>, BitrixError> {
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let recent = self.recent_events.lock().expect("event cache lock");
            for id in ids {
                match recent.get(id) {
                    Some((at, card)) if at.elapsed() < EVENT_TTL => {
                        out.insert(*id, card.clone());
                    }
                    _ => missing.push(*id),
                }
            }
        }
        let items = self.list_by_ids(self.event_type, &missing).await?;
        let mut fresh = Vec::new();
        for item in items {
            if let Some(id) = item.get("id").and_then(as_u64) {
                fresh.push((id, self.event_from(id, &item).await?));
            }
        }
        let mut recent = self.recent_events.lock().expect("event cache lock");
        recent.retain(|_, (at, _)| at.elapsed() < EVENT_TTL);
        for (id, card) in fresh {
            recent.insert(id, (Instant::now(), card.clone()));
            out.insert(id, card);
        }
        Ok(out)
    }

    /// Contacts by id in one `crm.item.list` call; `select: ["*"]` brings the `fm` e-mail list.
    pub async fn contacts(&self, ids: &[u64]) -> Result<BTreeMap<u64, Contact>, BitrixError> {
        let items = self.list_by_ids(CONTACT_TYPE, ids).await?;
        Ok(items
            .iter()
            .filter_map(|i| Some((i.get("id").and_then(as_u64)?, Contact::from_item(i))))
            .collect())
    }

    async fn list_by_ids(&self, entity_type: u32, ids: &[u64]) -> Result<Vec<Value>, BitrixError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let params = json!({"entityTypeId": entity_type, "filter": {"@id": ids},
            "select": ["*"], "useOriginalUfNames": "Y", "start": -1});
        let result = self
            .client
            .result("crm.item.list", &params, Idempotent::Yes)
            .await?;
        Ok(items_of(&result))
    }

    async fn event_from(&self, id: u64, item: &Value) -> Result<EventCard, BitrixError> {
        let f = &self.fields;
        let mut card = EventCard {
            id,
            template: field(item, &f.event_template).and_then(as_text),
            title: field(item, &f.event_title).and_then(as_text),
            points: field(item, &f.event_points).and_then(as_text),
            letter: field(item, &f.event_letter).and_then(as_text),
        };
        // A list field stores an option id; its text is in crm.item.fields.
        if let Some(option) = card
            .template
            .clone()
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        {
            let text = |o: &FieldOptions| o.get(&f.event_template)?.get(&option).cloned();
            let mut found = text(&*self.event_field_options(None).await?);
            if found.is_none() {
                // Perhaps an option added since the texts were read.
                found = text(&*self.event_field_options(Some(&option)).await?);
            }
            if let Some(t) = found {
                card.template = Some(t);
            }
        }
        Ok(card)
    }

    /// The event type's list-field options, read once, and again for an option id they lack (once
    /// per id, so an unknown option cannot make every job re-read them).
    async fn event_field_options(
        &self,
        missing: Option<&str>,
    ) -> Result<Arc<FieldOptions>, BitrixError> {
        let mut refreshed_for = BTreeSet::new();
        {
            let cached = self.event_field_options.lock().await;
            if let Some((options, tried)) = cached.as_ref() {
                match missing {
                    Some(id) if !tried.contains(id) => {
                        refreshed_for = tried.clone();
                        refreshed_for.insert(id.to_string());
                    }
                    _ => return Ok(options.clone()),
                }
            }
        }
        // Read without holding the lock: a slow portal must not stall every other event read.
        let params = json!({"entityTypeId": self.event_type, "useOriginalUfNames": "Y"});
        let result = self
            .client
            .result("crm.item.fields", &params, Idempotent::Yes)
            .await?;
        let mut out = BTreeMap::new();
        if let Some(fields) = result.get("fields").and_then(Value::as_object) {
            for (key, def) in fields {
                let name = def
                    .get("upperName")
                    .and_then(Value::as_str)
                    .unwrap_or(key)
                    .to_string();
                let Some(items) = def.get("items").and_then(Value::as_array) else {
                    continue;
                };
                let options = items
                    .iter()
                    .filter_map(|o| {
                        let id = o.get("ID").or_else(|| o.get("id")).and_then(as_text)?;
                        let v = o
                            .get("VALUE")
                            .or_else(|| o.get("value"))
                            .and_then(as_text)?;
                        Some((id, v))
                    })
                    .collect();
                out.insert(name, options);
            }
        }
        let out = Arc::new(out);
        *self.event_field_options.lock().await = Some((out.clone(), refreshed_for));
        Ok(out)
    }

    /// Names and e-mails. `crm.item.get` first; the legacy `crm.contact.get` when that answer has no
    /// full e-mail list (the flat helpers hold only the first address of each kind).
    pub async fn contact(&self, id: u64) -> Result<Option<Contact>, BitrixError> {
        let from_item = match self.get_item(CONTACT_TYPE, id).await {
            Ok(Some(item)) => Some(Contact::from_item(&item)),
            Ok(None) => return Ok(None),
            Err(e) if e.is_temporary() => return Err(e),
            Err(_) => None,
        };
        if let Some(c) = from_item.as_ref().filter(|c| c.has_full_email_list) {
            return Ok(Some(c.clone()));
        }
        let params = json!({"id": id});
        match self
            .client
            .result("crm.contact.get", &params, Idempotent::Yes)
            .await
        {
            Ok(r) if r.is_object() => Ok(Some(Contact::from_legacy(&r))),
            Ok(_) => Ok(from_item),
            Err(e) if e.is_not_found() => Ok(from_item),
            Err(e) if e.is_temporary() => Err(e),
            Err(_) => Ok(from_item),
        }
    }

    /// Writes the QR into its field and moves the item, in one update.
    pub async fn complete(
        &self,
        participant_id: u64,
        stage_id: &str,
        qr_png: &[u8],
    ) -> Result<(), BitrixError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(qr_png);
        let mut fields = serde_json::Map::new();
        fields.insert(
            self.fields.participant_qr.clone(),
            json!([format!("qr-{participant_id}.png"), b64]),
        );
        fields.insert("stageId".into(), json!(stage_id));
        let result = self.update(participant_id, Value::Object(fields)).await?;
        self.check_kept(participant_id, &result);
        Ok(())
    }

    /// The portal ignores unknown fields silently (API reference §2.4): when the updated item it
    /// returns shows the QR field empty, the configured field code is probably wrong.
    fn check_kept(&self, participant_id: u64, result: &Value) {
        let item = &result["item"];
        let qr = field(item, &self.fields.participant_qr);
        let empty = |v: &Value| match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if qr.is_some_and(empty) {
            tracing::warn!(
                participant_id,
                field = %self.fields.participant_qr,
                "Bitrix24 did not keep the QR file; check the field code"
            );
        }
    }

    /// `complete` for many participants in `batch` calls of up to 50 (and of bounded size: the
    /// files travel URL-encoded); one result per item, so one failure leaves the others done. A batch
    /// the portal refuses as a whole is written item by item instead, never reported as 50 failures.
    pub async fn complete_many(
        &self,
        items: &[(u64, String, Vec<u8>)],
    ) -> Vec<Result<(), BitrixError>> {
        use base64::Engine;
        let mut out = Vec::with_capacity(items.len());
        let mut rest = items;
        while !rest.is_empty() {
            let mut cmd = serde_json::Map::new();
            let mut size = 0;
            let mut taken = 0;
            for (pid, stage, qr) in rest {
                let b64 = base64::engine::general_purpose::STANDARD.encode(qr);
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("entityTypeId", &self.participant_type.to_string())
                    .append_pair("id", &pid.to_string())
                    .append_pair("useOriginalUfNames", "Y")
                    .append_pair(
                        &format!("fields[{}][0]", self.fields.participant_qr),
                        &format!("qr-{pid}.png"),
                    )
                    .append_pair(&format!("fields[{}][1]", self.fields.participant_qr), &b64)
                    .append_pair("fields[stageId]", stage)
                    .finish();
                if taken > 0 && (taken == 50 || size + query.len() > MAX_BATCH_BYTES) {
                    break;
                }
                size += query.len();
                taken += 1;
                cmd.insert(format!("u{pid}"), json!(format!("crm.item.update?{query}")));
            }
            let (chunk, later) = rest.split_at(taken);
            rest = later;
            let params = json!({"halt": 0, "cmd": cmd});
            match self.client.result("batch", &params, Idempotent::Yes).await {
                Ok(result) => {
                    for (pid, _, _) in chunk {
                        let r = match sub_result(&result, *pid) {
                            // The command's method is out of time: wait for its window.
                            Err(e) if e.code() == Some("OPERATION_TIME_LIMIT") => {
                                Err(self.client.blocked("crm.item.update"))
                            }
                            r => r,
                        };
                        if r.is_ok() {
                            self.check_kept(*pid, &result["result"][format!("u{pid}")]);
                        }
                        out.push(r);
                    }
                }
                Err(e) if e.is_temporary() => out.extend(chunk.iter().map(|_| Err(e.clone()))),
                Err(e) => {
                    tracing::warn!(error = %e, "batch write refused; writing one by one");
                    for (pid, stage, qr) in chunk {
                        out.push(self.complete(*pid, stage, qr).await);
                    }
                }
            }
        }
        out
    }

    pub async fn move_to(&self, participant_id: u64, stage_id: &str) -> Result<(), BitrixError> {
        self.update(participant_id, json!({"stageId": stage_id}))
            .await
            .map(drop)
    }

    /// `crm.item.update`; its `result` holds the updated item.
    async fn update(&self, participant_id: u64, fields: Value) -> Result<Value, BitrixError> {
        let params = json!({"entityTypeId": self.participant_type, "id": participant_id,
            "useOriginalUfNames": "Y", "fields": fields});
        self.client
            .result("crm.item.update", &params, Idempotent::Yes)
            .await
    }

    /// A timeline comment on the participant, where staff will see it.
    pub async fn comment(&self, participant_id: u64, text: &str) -> Result<(), BitrixError> {
        let params = json!({"fields": {"ENTITY_ID": participant_id,
            "ENTITY_TYPE": format!("DYNAMIC_{}", self.participant_type), "COMMENT": text}});
        self.client
            .call("crm.timeline.comment.add", &params, Idempotent::No)
            .await
            .map(drop)
    }

    /// Ids of every participant sitting in one of `stage_ids`, by keyset paging.
    pub async fn ids_in_stages(&self, stage_ids: &[String]) -> Result<Vec<u64>, BitrixError> {
        let mut ids = Vec::new();
        let mut last = 0u64;
        loop {
            let params = json!({"entityTypeId": self.participant_type,
                "filter": {"@stageId": stage_ids, ">id": last}, "select": ["id"],
                "order": {"id": "ASC"}, "start": -1});
            let result = self
                .client
                .result("crm.item.list", &params, Idempotent::Yes)
                .await?;
            let page: Vec<u64> = items_of(&result)
                .iter()
                .filter_map(|i| i.get("id").and_then(as_u64))
                .collect();
            // Pages hold 50, but a short page is not taken as the end: only an empty one is.
            match page.iter().max() {
                Some(max) if *max > last => last = *max,
                _ => break,
            }
            ids.extend(page);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

/// `result.items` of a list answer (an empty list may come as `[]` or be missing).
pub fn items_of(result: &Value) -> Vec<Value> {
    result
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Option id → text, per list field (by its original UF name).
type FieldOptions = BTreeMap<String, BTreeMap<String, String>>;
/// The options read, and the unknown option ids already re-read for.
type OptionsCache = (Arc<FieldOptions>, BTreeSet<String>);

/// A batch's own size limit is not documented (API reference §5); stay well below what a proxy
/// in front of the portal is likely to accept.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One `crm.item.update` sub-call's outcome in a `batch` answer.
fn sub_result(result: &Value, pid: u64) -> Result<(), BitrixError> {
    let key = format!("u{pid}");
    let error = result.get("result_error").and_then(|e| e.get(&key));
    let done = result
        .get("result")
        .and_then(|r| r.get(&key))
        .is_some_and(|v| !v.is_null());
    match error {
        Some(e) => {
            let code = e.get("error").and_then(as_text).unwrap_or_default();
            Err(BitrixError::Api {
                method: "crm.item.update".into(),
                status: if code == "OPERATION_TIME_LIMIT" {
                    429
                } else {
                    400
                },
                code,
                description: e
                    .get("error_description")
                    .and_then(as_text)
                    .unwrap_or_default(),
            })
        }
        None if done => Ok(()),
        None => Err(BitrixError::Unexpected {
            method: "batch".into(),
            status: 200,
            snippet: format!("no result for {key}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_batch_sub_call_is_judged_on_its_own() {
        let answer = json!({"result": {"u1": {"item": {"id": 1}}, "u2": null},
            "result_error": {"u3": {"error": "OPERATION_TIME_LIMIT", "error_description": "x"}}});
        assert!(sub_result(&answer, 1).is_ok());
        assert!(matches!(
            sub_result(&answer, 2),
            Err(BitrixError::Unexpected { .. })
        ));
        let limited = sub_result(&answer, 3).unwrap_err();
        assert!(limited.is_transient());
        let empty_groups = json!({"result": {"u4": {"item": {}}}, "result_error": []});
        assert!(sub_result(&empty_groups, 4).is_ok());
    }
}
