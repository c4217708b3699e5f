//! What verification read from the CRM, kept for a while so a popular certificate costs the portal
//! one lookup per TTL rather than one per visitor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bitrix::{Contact, EventCard, Participant};

#[derive(Debug)]
pub struct CrmView {
    pub participant: Option<Participant>,
    pub event: Option<EventCard>,
    pub contact: Option<Contact>,
}

pub struct LookupCache {
    ttl: Duration,
    negative_ttl: Duration,
    entries: Mutex<HashMap<u64, (Instant, Arc<CrmView>)>>,
}

const MAX_ENTRIES: usize = 50_000;

impl LookupCache {
    pub fn new(ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            ttl,
            negative_ttl,
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<CrmView>> {
        let entries = self.entries.lock().expect("cache lock");
        let (at, view) = entries.get(&id)?;
        let ttl = if view.participant.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        (at.elapsed() < ttl).then(|| view.clone())
    }

    pub fn put(&self, id: u64, view: Arc<CrmView>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id, (Instant::now(), view));
    }

    pub fn remove(&self, id: u64) {
        self.entries.lock().expect("cache lock").remove(&id);
    }
}
