//! The sandbox portal's shape (from the office's instruction) and the demo's example data.

use serde_json::{Map, Value, json};

use super::Portal;
use super::portal::CONTACT;

/// «Мероприятия [new]»: type id 19, so its fields are `UF_CRM_19_…`.
pub const EVENT_TYPE: u32 = 1038;
/// «Участники мероприятий»: type id 20, fields `UF_CRM_20_…`.
pub const PARTICIPANT_TYPE: u32 = 1040;
pub const CATEGORY: i64 = 12;
pub const STAGE_NEW: &str = "DT1040_12:NEW";
pub const STAGE_GENERATE: &str = "DT1040_12:UC_GEN001";
pub const STAGE_SENT: &str = "DT1040_12:UC_SENT01";
pub const STAGE_PROBLEM: &str = "DT1040_12:UC_PROB01";
pub const TEMPLATE_OPTION: &str = "45";

/// Types, the participants' pipeline and stages, and the event's list field.
pub fn structure(p: &mut Portal) {
    p.items.entry(EVENT_TYPE).or_default();
    p.items.entry(PARTICIPANT_TYPE).or_default();
    p.items.entry(CONTACT).or_default();
    p.categories.insert(
        PARTICIPANT_TYPE,
        vec![json!({"id": CATEGORY, "name": "Участники", "sort": 500, "entityTypeId": PARTICIPANT_TYPE, "isDefault": "Y"})],
    );
    p.categories.insert(
        EVENT_TYPE,
        vec![json!({"id": 10, "name": "Мероприятия", "sort": 500, "entityTypeId": EVENT_TYPE, "isDefault": "Y"})],
    );
    let stages = [
        (STAGE_NEW, "Новые", 10, ""),
        ("DT1040_12:PREPARATION", "Зарегистрирован", 20, ""),
        (STAGE_GENERATE, "Сформировать документ", 30, ""),
        (STAGE_SENT, "Выслан файл", 40, ""),
        (STAGE_PROBLEM, "Проблемные", 50, ""),
        ("DT1040_12:SUCCESS", "Успешно", 60, "S"),
        ("DT1040_12:FAIL", "Не участвовал", 70, "F"),
    ];
    for (i, (id, name, sort, sem)) in stages.iter().enumerate() {
        p.statuses.push(json!({"ID": (100 + i).to_string(), "ENTITY_ID": format!("DYNAMIC_{PARTICIPANT_TYPE}_STAGE_{CATEGORY}"),
            "STATUS_ID": id, "NAME": name, "NAME_INIT": name, "SORT": sort.to_string(), "SYSTEM": "N",
            "CATEGORY_ID": CATEGORY.to_string(), "COLOR": "#39A8EF", "SEMANTICS": if sem.is_empty() { Value::Null } else { json!(sem) },
            "EXTRA": {"SEMANTICS": match *sem { "S" => "success", "F" => "failure", _ => "process" }, "COLOR": "#39A8EF"}}));
    }
    p.fields.insert(
        EVENT_TYPE,
        json!({
            "ufCrm19Template": {"type": "enumeration", "isRequired": false, "isMultiple": false,
                "title": "Шаблон сертификата", "upperName": "UF_CRM_19_TEMPLATE",
                "items": [{"ID": TEMPLATE_OPTION, "VALUE": "2026-Сертификат"}]},
            "ufCrm19_1775713913090": {"type": "string", "title": "Название мероприятия в сертификате", "upperName": "UF_CRM_19_1775713913090"},
            "ufCrm19Ball": {"type": "string", "title": "Балл на сертификате", "upperName": "UF_CRM_19_BALL"},
            "ufCrm19Letter": {"type": "string", "title": "Письмо с сертификатом", "upperName": "UF_CRM_19_LETTER"}
        }),
    );
    p.next_id = p.next_id.max(1000);
}

pub struct NewEvent<'a> {
    pub id: u64,
    pub template: &'a str,
    pub title: &'a str,
    pub points: &'a str,
    pub letter: &'a str,
}

pub fn add_event(p: &mut Portal, e: &NewEvent<'_>) -> u64 {
    let fields = obj(json!({"title": e.title, "stageId": "DT1038_10:NEW",
        "UF_CRM_19_TEMPLATE": e.template, "UF_CRM_19_1775713913090": e.title,
        "UF_CRM_19_BALL": e.points, "UF_CRM_19_LETTER": e.letter}));
    p.add_item(EVENT_TYPE, Some(e.id), fields)
}

/// A contact with e-mails given as (multi-field id, address).
pub fn add_contact(
    p: &mut Portal,
    id: u64,
    last: &str,
    first: &str,
    second: &str,
    emails: &[(u64, &str)],
) -> u64 {
    let fields = obj(json!({"name": first, "lastName": last, "secondName": second}));
    let id = p.add_item(CONTACT, Some(id), fields);
    p.emails.insert(
        id,
        emails.iter().map(|(i, e)| (*i, e.to_string())).collect(),
    );
    id
}

pub fn add_participant(
    p: &mut Portal,
    id: u64,
    contact: u64,
    event: u64,
    achievement: Option<&str>,
    stage: &str,
) -> u64 {
    let fields = obj(json!({"title": format!("Участник {id}"), "stageId": stage,
        "contactId": contact, "contactIds": [contact],
        "UF_CRM_20_EVENT": format!("T{EVENT_TYPE:x}_{event}"),
        "UF_CRM_20_ACHIEVEMENT": achievement.unwrap_or(""), "UF_CRM_20_QR": Value::Null}));
    p.add_item(PARTICIPANT_TYPE, Some(id), fields)
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

pub const DEMO_LETTER: &str = "Здравствуйте!\n\nБлагодарим вас за участие в инженерной олимпиаде \
«Будущее Сибири». Ваш сертификат участника — во вложении к письму.\n\nПодлинность сертификата \
можно проверить по QR-коду на нём.\n\nС уважением,\nОтдел организации набора ТПУ";

/// The seed instruction's example: an event on «2026-Сертификат» worth "7 баллов", and participants
/// with one e-mail, two e-mails (the later wins), an individual achievement, and no e-mail.
pub fn demo(p: &mut Portal) {
    add_event(
        p,
        &NewEvent {
            id: 7,
            template: TEMPLATE_OPTION,
            title: "Инженерная олимпиада школьников «Будущее Сибири»",
            points: "7 баллов",
            letter: DEMO_LETTER,
        },
    );
    add_contact(
        p,
        45,
        "Иванова",
        "Анастасия",
        "Сергеевна",
        &[(158, "a.ivanova@example.org")],
    );
    add_contact(
        p,
        46,
        "Петров",
        "Дмитрий",
        "Олегович",
        &[
            (305, "d.petrov@example.org"),
            (201, "petrov.old@example.org"),
        ],
    );
    add_contact(p, 47, "Сидоров", "Максим", "", &[]);
    add_contact(
        p,
        48,
        "Кузнецова",
        "Мария",
        "Андреевна",
        &[(410, "m.kuznetsova@example.org")],
    );
    add_participant(p, 100500, 45, 7, None, STAGE_NEW);
    add_participant(p, 100501, 46, 7, None, STAGE_NEW);
    add_participant(p, 100502, 47, 7, None, STAGE_NEW);
    add_participant(p, 100503, 48, 7, Some("10 баллов"), STAGE_NEW);
    p.changes.clear();
}
