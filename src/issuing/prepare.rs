//! Gathers and checks what one certificate needs. Anything staff must fix in the CRM becomes a
//! `Problem` with a Russian reason that ends up in the participant's timeline.

use super::prefetch::Prefetch;
use crate::bitrix::{BitrixError, Crm, Participant};
use crate::domain::{Points, RecipientEmail, pick_last_added};
use crate::render::{CertificateData, Renderer};

/// A certificate ready to render and send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub data: CertificateData,
    pub template: String,
    pub email: RecipientEmail,
    pub letter: String,
    pub event_id: u64,
}

#[derive(Debug)]
pub enum PrepareError {
    /// Staff must fix the CRM data.
    Problem(String),
    Bitrix(BitrixError),
}

impl From<BitrixError> for PrepareError {
    fn from(e: BitrixError) -> Self {
        Self::Bitrix(e)
    }
}

/// The letter sent when an event card leaves its letter text empty.
pub const DEFAULT_LETTER: &str = "Здравствуйте!\n\nБлагодарим вас за участие в мероприятии. \
Ваш сертификат — во вложении к этому письму.\n\nС уважением,\nОтдел организации набора \
Томского политехнического университета";

pub async fn prepare(
    crm: &Crm,
    prefetch: &Prefetch,
    renderer: &Renderer,
    participant: &Participant,
) -> Result<Prepared, PrepareError> {
    use PrepareError::Problem;
    let fields = &crm.fields;
    let event_id = participant.event_id.ok_or_else(|| {
        Problem(format!(
            "участник не привязан к мероприятию (поле {} пусто)",
            fields.participant_event
        ))
    })?;
    let event = prefetch
        .event(crm, event_id)
        .await?
        .ok_or_else(|| Problem(format!("мероприятие №{event_id} не найдено в CRM")))?;
    let template = event.template.clone().ok_or_else(|| {
        Problem(format!(
            "в мероприятии №{event_id} не выбран шаблон сертификата"
        ))
    })?;
    if !renderer.has_template(&template) {
        let known: Vec<&str> = renderer.templates().names().collect();
        return Err(Problem(format!(
            "шаблон сертификата «{template}» не найден (доступны: {})",
            known.join(", ")
        )));
    }
    let title = event.title.clone().ok_or_else(|| {
        Problem(format!(
            "в мероприятии №{event_id} не заполнено название для сертификата"
        ))
    })?;
    let points = match &participant.achievement {
        Some(text) => Points::parse(text)
            .map_err(|e| Problem(format!("индивидуальные достижения участника: {e}")))?,
        None => {
            let text = event.points.clone().ok_or_else(|| {
                Problem(format!(
                    "в мероприятии №{event_id} не заполнен балл на сертификате"
                ))
            })?;
            Points::parse(&text)
                .map_err(|e| Problem(format!("балл на сертификате мероприятия №{event_id}: {e}")))?
        }
    };
    let contact_id = participant
        .contact_id
        .ok_or_else(|| Problem("к участнику не привязан контакт".into()))?;
    let contact = prefetch
        .contact(crm, contact_id)
        .await?
        .ok_or_else(|| Problem(format!("контакт №{contact_id} не найден в CRM")))?;
    let email = pick_last_added(contact.emails.iter().map(|(id, v)| (*id, v.as_str())))
        .map_err(|e| {
            Problem(format!(
                "последний добавленный e-mail контакта некорректен: {e}"
            ))
        })?
        .ok_or_else(|| Problem(format!("у контакта №{contact_id} нет e-mail")))?;
    if contact.last_name.is_empty() && contact.first_name.is_empty() {
        return Err(Problem(format!(
            "у контакта №{contact_id} не заполнены фамилия и имя"
        )));
    }
    Ok(Prepared {
        data: CertificateData::new(
            participant.id,
            &contact.last_name,
            &contact.first_name,
            &contact.second_name,
            &title,
            points,
        ),
        template,
        email,
        letter: event
            .letter
            .clone()
            .unwrap_or_else(|| DEFAULT_LETTER.to_string()),
        event_id,
    })
}
