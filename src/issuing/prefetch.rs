//! Bulk reads for a batch of jobs: participants, their events and contacts in one `crm.item.list`
//! call each, instead of several calls per certificate. Whatever the bulk read missed is read one
//! by one, so a failed bulk call only costs speed.

use std::collections::BTreeMap;

use crate::bitrix::{BitrixError, Contact, Crm, EventCard, Participant};

#[derive(Default)]
pub struct Prefetch {
    participants: BTreeMap<u64, Participant>,
    events: BTreeMap<u64, EventCard>,
    contacts: BTreeMap<u64, Contact>,
}

impl Prefetch {
    /// Nothing prefetched: every lookup goes to the CRM (the unbatched mode).
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the participants, then events and contacts only of those `needs_details` keeps (the
    /// rest, e.g. hints caused by our own stage moves, will be ignored and need nothing more).
    pub async fn load(
        crm: &Crm,
        participant_ids: &[u64],
        needs_details: impl Fn(&Participant) -> bool,
    ) -> Self {
        let mut p = Self::none();
        if participant_ids.is_empty() {
            return p;
        }
        match crm.participants(participant_ids).await {
            Ok(list) => p.participants = list.into_iter().map(|x| (x.id, x)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "bulk participant read failed; reading one by one");
                return p;
            }
        }
        let all: Vec<&Participant> = p
            .participants
            .values()
            .filter(|x| needs_details(x))
            .collect();
        let mut event_ids: Vec<u64> = all.iter().filter_map(|x| x.event_id).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let mut contact_ids: Vec<u64> = all.iter().filter_map(|x| x.contact_id).collect();
        contact_ids.sort_unstable();
        contact_ids.dedup();
        let (events, contacts) = tokio::join!(crm.events(&event_ids), crm.contacts(&contact_ids));
        match events {
            Ok(e) => p.events = e,
            Err(e) => tracing::warn!(error = %e, "bulk event read failed"),
        }
        match contacts {
            // Contacts without the full e-mail list are read again one by one.
            Ok(c) => {
                p.contacts = c
                    .into_iter()
                    .filter(|(_, c)| c.has_full_email_list)
                    .collect()
            }
            Err(e) => tracing::warn!(error = %e, "bulk contact read failed"),
        }
        p
    }

    pub async fn participant(
        &self,
        crm: &Crm,
        id: u64,
    ) -> Result<Option<Participant>, BitrixError> {
        // Missing from the bulk answer is read directly before it counts as deleted: a portal may
        // page or filter a list differently than documented.
        match self.participants.get(&id) {
            Some(p) => Ok(Some(p.clone())),
            None => crm.participant(id).await,
        }
    }

    pub async fn event(&self, crm: &Crm, id: u64) -> Result<Option<EventCard>, BitrixError> {
        match self.events.get(&id) {
            Some(e) => Ok(Some(e.clone())),
            None => crm.event(id).await,
        }
    }

    pub async fn contact(&self, crm: &Crm, id: u64) -> Result<Option<Contact>, BitrixError> {
        match self.contacts.get(&id) {
            Some(c) => Ok(Some(c.clone())),
            None => crm.contact(id).await,
        }
    }
}
