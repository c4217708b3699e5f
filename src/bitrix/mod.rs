//! Everything about talking to Bitrix24: the REST client, its rate limiter, the shapes of CRM items,
//! and the CRM operations built on them.

mod client;
mod crm;
mod limiter;
pub mod model;
mod operating;
mod stages;

pub use client::{BitrixClient, BitrixError, BitrixStats, Idempotent, parse_envelope};
pub use crm::{CONTACT_TYPE, Crm, EventCard, items_of};
pub use limiter::LeakyBucket;
pub use model::{Contact, Participant};
pub use stages::{StageError, Stages};
